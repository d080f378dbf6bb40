package cd.go.contrib.dind;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import com.thoughtworks.go.plugin.api.GoApplicationAccessor;
import com.thoughtworks.go.plugin.api.GoPluginIdentifier;
import com.thoughtworks.go.plugin.api.logging.Logger;
import com.thoughtworks.go.plugin.api.request.DefaultGoApiRequest;
import com.thoughtworks.go.plugin.api.response.GoApiResponse;

import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The processor bridge (docs/protocol.md, "Processor bridge"): only code inside GoCD's JVM can call GoCD
 * back, so the service asks us over loopback HTTP and we submit its request through the
 * {@link GoApplicationAccessor} GoCD handed the plugin.
 *
 * <p>{@code POST /processor/{api-name}}, header {@code X-GoCD-Api-Version} (default
 * {@code 1.0}), {@code Authorization: Bearer <token>}, body verbatim (an empty body is
 * submitted as GoCD's "no body", null). The answer is GoCD's response code and body,
 * verbatim.
 */
final class ProcessorBridge implements AutoCloseable {
    private static final Logger LOG = Logger.getLoggerFor(ProcessorBridge.class);
    static final String PREFIX = "/processor/";
    static final String VERSION_HEADER = "X-GoCD-Api-Version";
    static final String DEFAULT_VERSION = "1.0";
    /** Far above any processor body (console lines, agent lists); stops a runaway caller. */
    static final int MAX_BODY_BYTES = 8 * 1024 * 1024;
    static final String NODELAY_PROPERTY = "sun.net.httpserver.nodelay";

    private final HttpServer server;
    private final ExecutorService executor;
    private final byte[] tokenDigest;
    private final GoApplicationAccessor accessor;
    private final GoPluginIdentifier identifier;

    private ProcessorBridge(HttpServer server, String token, GoApplicationAccessor accessor,
                            GoPluginIdentifier identifier) {
        this.server = server;
        this.tokenDigest = sha256(token);
        this.accessor = accessor;
        this.identifier = identifier;
        AtomicInteger count = new AtomicInteger();
        // A few threads: the service calls back from concurrent create-agent/server-ping work.
        this.executor = Executors.newFixedThreadPool(4, runnable -> {
            Thread thread = new Thread(runnable, "gocd-dind-processor-bridge-" + count.incrementAndGet());
            thread.setDaemon(true);
            return thread;
        });
        server.setExecutor(executor);
        server.createContext("/", this::handle);
    }

    /** Binds {@code listen} and starts serving; throws (BindException) if the port is taken. */
    static ProcessorBridge start(InetSocketAddress listen, String token, GoApplicationAccessor accessor,
                                 GoPluginIdentifier identifier) throws IOException {
        // The JDK server writes a response's headers and body as two TCP segments; with Nagle's
        // algorithm the body then waits for the caller's delayed ACK, about 40 ms per call on
        // Linux. The switch is JVM-wide and read when the first HttpServer is created, so set it
        // before ours unless the operator chose otherwise.
        if (System.getProperty(NODELAY_PROPERTY) == null) {
            System.setProperty(NODELAY_PROPERTY, "true");
        }
        ProcessorBridge bridge = new ProcessorBridge(HttpServer.create(listen, 0), token, accessor, identifier);
        bridge.server.start();
        return bridge;
    }

    /** The bound address (the real port when asked for port 0). */
    InetSocketAddress address() {
        return server.getAddress();
    }

    /** Stops at once: GoCD is unloading the plugin, in-flight calls could not complete anyway. */
    @Override
    public void close() {
        server.stop(0);
        executor.shutdownNow();
    }

    private void handle(HttpExchange exchange) throws IOException {
        try {
            if (!authorized(exchange.getRequestHeaders().getFirst("Authorization"))) {
                reply(exchange, 401, JsonMessage.of("missing or wrong bearer token; the service's token must equal"
                        + " the plugin's (" + ShimConfig.TOKEN_FILE.env() + " / " + ShimConfig.TOKEN.env() + ")"));
                return;
            }
            String path = exchange.getRequestURI().getPath();
            String api = path.startsWith(PREFIX) ? path.substring(PREFIX.length()) : "";
            if (api.isEmpty() || api.contains("/")) {
                reply(exchange, 404, JsonMessage.of("no such endpoint: " + path
                        + "; the processor bridge serves POST " + PREFIX + "{api-name}"));
                return;
            }
            if (!"POST".equals(exchange.getRequestMethod())) {
                exchange.getResponseHeaders().set("Allow", "POST");
                reply(exchange, 405, JsonMessage.of(exchange.getRequestMethod() + " is not allowed; use POST"));
                return;
            }
            byte[] body = readBody(exchange.getRequestBody());
            if (body == null) {
                reply(exchange, 413, JsonMessage.of("body over " + MAX_BODY_BYTES + " bytes"));
                return;
            }
            String version = exchange.getRequestHeaders().getFirst(VERSION_HEADER);
            if (version == null || version.isBlank()) {
                version = DEFAULT_VERSION;
            }
            submit(exchange, api, version.trim(), body);
        } catch (RuntimeException e) {
            LOG.error("gocd-dind processor bridge: unexpected error", e);
            try {
                reply(exchange, 500, JsonMessage.of("internal error in the processor bridge: " + e));
            } catch (IOException | RuntimeException ignored) {
                // the response had already started; closing the exchange is all that is left
            }
        } finally {
            exchange.close();
        }
    }

    private void submit(HttpExchange exchange, String api, String version, byte[] body) throws IOException {
        DefaultGoApiRequest request = new DefaultGoApiRequest(api, version, identifier);
        request.setRequestBody(body.length == 0 ? null : new String(body, StandardCharsets.UTF_8));
        GoApiResponse response;
        try {
            response = accessor.submit(request);
        } catch (RuntimeException e) {
            String message = "GoCD failed processor call " + api + " (version " + version + "): " + e;
            LOG.error("gocd-dind processor bridge: " + message, e);
            reply(exchange, 502, JsonMessage.of(message));
            return;
        }
        if (response == null || response.responseCode() < 100 || response.responseCode() > 599) {
            String message = "GoCD gave no usable response to processor call " + api + " (version " + version + ")"
                    + (response == null ? "" : ": code " + response.responseCode());
            LOG.error("gocd-dind processor bridge: " + message);
            reply(exchange, 502, JsonMessage.of(message));
            return;
        }
        reply(exchange, response.responseCode(), response.responseBody());
    }

    private boolean authorized(String header) {
        if (header == null || header.length() < 7 || !header.regionMatches(true, 0, "Bearer ", 0, 7)) {
            return false;
        }
        // Comparing digests keeps the comparison constant-time and hides the token's length.
        return MessageDigest.isEqual(tokenDigest, sha256(header.substring(7).trim()));
    }

    private static byte[] readBody(InputStream in) throws IOException {
        byte[] body = in.readNBytes(MAX_BODY_BYTES + 1);
        return body.length > MAX_BODY_BYTES ? null : body;
    }

    private static void reply(HttpExchange exchange, int code, String body) throws IOException {
        byte[] bytes = body == null ? new byte[0] : body.getBytes(StandardCharsets.UTF_8);
        exchange.getResponseHeaders().set("Content-Type", "application/json");
        exchange.sendResponseHeaders(code, bytes.length == 0 ? -1 : bytes.length);
        if (bytes.length > 0) {
            exchange.getResponseBody().write(bytes);
        }
    }

    private static byte[] sha256(String text) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(text.getBytes(StandardCharsets.UTF_8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("every JVM has SHA-256", e);
        }
    }
}
