package cd.go.contrib.dind;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;
import java.util.function.Function;

/** A stand-in for the gocd-dind service: records every request and answers as told. */
final class FakeService implements AutoCloseable {
    record Recorded(String method, String path, Map<String, List<String>> headers, byte[] body) {
        String header(String name) {
            List<String> values = headers.get(name.toLowerCase());
            return values == null ? null : String.join(",", values);
        }
    }

    record Reply(int status, String body) {}

    final List<Recorded> requests = new CopyOnWriteArrayList<>();
    volatile Function<Recorded, Reply> responder = request -> new Reply(200, "{}");
    /** When set, every answer waits until the test counts it down (a service that does not answer). */
    volatile CountDownLatch holdAnswers;
    private final HttpServer server;

    private FakeService(HttpServer server) {
        this.server = server;
        server.setExecutor(Executors.newCachedThreadPool(runnable -> {
            Thread thread = new Thread(runnable, "fake-service");
            thread.setDaemon(true);
            return thread;
        }));
        server.createContext("/", this::handle);
        server.start();
    }

    static FakeService start() throws IOException {
        return startOn(0);
    }

    /** On a given loopback port: a service that starts where the plugin already looks. */
    static FakeService startOn(int port) throws IOException {
        return new FakeService(HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), port), 0));
    }

    /** A loopback port nothing listens on (until a test starts something there). */
    static int freePort() throws IOException {
        try (java.net.ServerSocket socket = new java.net.ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return socket.getLocalPort();
        }
    }

    String url() {
        return "http://127.0.0.1:" + server.getAddress().getPort();
    }

    private void handle(HttpExchange exchange) throws IOException {
        try {
            Map<String, List<String>> headers = new TreeMap<>();
            exchange.getRequestHeaders().forEach((name, values) -> headers.put(name.toLowerCase(), List.copyOf(values)));
            Recorded request = new Recorded(exchange.getRequestMethod(), exchange.getRequestURI().getRawPath(), headers,
                    exchange.getRequestBody().readAllBytes());
            requests.add(request);
            CountDownLatch hold = holdAnswers;
            if (hold != null) {
                try {
                    hold.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return;
                }
            }
            Reply reply = responder.apply(request);
            byte[] body = reply.body() == null ? new byte[0] : reply.body().getBytes(java.nio.charset.StandardCharsets.UTF_8);
            exchange.getResponseHeaders().set("Content-Type", "application/json");
            exchange.sendResponseHeaders(reply.status(), body.length == 0 ? -1 : body.length);
            if (body.length > 0) {
                exchange.getResponseBody().write(body);
            }
        } catch (IOException e) {
            // the client gave up (timeout tests); nothing to answer
        } finally {
            exchange.close();
        }
    }

    @Override
    public void close() {
        server.stop(0);
    }
}
