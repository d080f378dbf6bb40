package cd.go.contrib.dind;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.fail;

/**
 * The real gocd-dind service ({@code -Dgocd.dind.binary=...}) on loopback ports, for the
 * ITs named Service*IT. {@link #start} returns once the process answers {@code GET /healthz}.
 */
final class ServiceProcess implements AutoCloseable {
    private static final HttpClient CLIENT = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(2)).build();

    private final Process process;
    private final int port;
    private final String token;
    private final Path log;

    private ServiceProcess(Process process, int port, String token, Path log) {
        this.process = process;
        this.port = port;
        this.token = token;
        this.log = log;
    }

    /** The binary named by -Dgocd.dind.binary; fails (never skips) without it. */
    static Path binary() {
        String binary = System.getProperty("gocd.dind.binary");
        if (binary == null || binary.isBlank()) {
            fail("this test needs the Rust service binary: run `mvn -B verify -Pround-trip -Dgocd.dind.binary=/path/to/gocd-dind`"
                    + " (build it first with `cargo build --features test-doubles` at the repository root: a test build, with the in-memory runtime; the binary is target/debug/gocd-dind)");
        }
        Path executable = Path.of(binary).toAbsolutePath();
        if (!Files.isRegularFile(executable) || !Files.isExecutable(executable)) {
            fail("-Dgocd.dind.binary=" + binary + " is not an executable file (build it with `cargo build --features test-doubles`)");
        }
        return executable;
    }

    static String randomToken() {
        byte[] secret = new byte[32];
        new SecureRandom().nextBytes(secret);
        return HexFormat.of().formatHex(secret);
    }

    static int freePort() throws IOException {
        try (ServerSocket socket = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return socket.getLocalPort();
        }
    }

    /** {@code gocd-dind serve} on {@code port}, calling GoCD back on {@code bridgePort}; output to {@code log}. */
    static ServiceProcess start(Path binary, int port, int bridgePort, String token, Path log) throws Exception {
        Files.createDirectories(log.toAbsolutePath().getParent());
        ProcessBuilder builder = new ProcessBuilder(binary.toString(), "serve",
                "--listen", "127.0.0.1:" + port,
                "--processor-url", "http://127.0.0.1:" + bridgePort);
        builder.environment().keySet().removeIf(name -> name.startsWith("GOCD_DIND_"));
        builder.environment().put("GOCD_DIND_TOKEN", token);
        builder.redirectErrorStream(true).redirectOutput(log.toFile());
        ServiceProcess service = new ServiceProcess(builder.start(), port, token, log);
        try {
            service.awaitHealthz();
        } catch (Exception | AssertionError e) {
            service.close();
            throw e;
        }
        return service;
    }

    String url() {
        return "http://127.0.0.1:" + port;
    }

    /** A GoCD request sent straight to the service, as the shim sends it. */
    HttpResponse<String> post(String requestName, String body) throws Exception {
        HttpRequest request = HttpRequest.newBuilder(URI.create(url() + "/gocd/elastic-agent/" + requestName))
                .timeout(Duration.ofSeconds(30))
                .header("Authorization", "Bearer " + token)
                .POST(HttpRequest.BodyPublishers.ofString(body == null ? "" : body, StandardCharsets.UTF_8))
                .build();
        return CLIENT.send(request, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
    }

    /** How many {@code requestName} requests the service answered with {@code status}, from its /metrics. */
    long answered(String requestName, int status) throws Exception {
        HttpRequest request = HttpRequest.newBuilder(URI.create(url() + "/metrics")).timeout(Duration.ofSeconds(30))
                .GET().build();
        String metrics = CLIENT.send(request, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8)).body();
        Matcher count = Pattern.compile("gocd_dind_requests_total\\{request=\"" + Pattern.quote(requestName)
                + "\",status=\"" + status + "\"} (\\d+)").matcher(metrics);
        return count.find() ? Long.parseLong(count.group(1)) : 0;
    }

    /** The last lines of the service's output, to append to a failure message. */
    String logTail() throws IOException {
        if (!Files.exists(log)) {
            return "";
        }
        List<String> lines = Files.readAllLines(log, StandardCharsets.UTF_8);
        List<String> tail = lines.subList(Math.max(0, lines.size() - 40), lines.size());
        return "\n--- service log (" + log + ", last " + tail.size() + " lines) ---\n" + String.join("\n", tail);
    }

    /**
     * Polls the process's /healthz until it answers (the signal that it listens), failing at
     * once if the process exits. The deadline only keeps a hung binary from hanging the build.
     */
    private void awaitHealthz() throws Exception {
        HttpRequest healthz = HttpRequest.newBuilder(URI.create(url() + "/healthz")).timeout(Duration.ofSeconds(2))
                .GET().build();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (System.nanoTime() < deadline) {
            if (!process.isAlive()) {
                fail("gocd-dind serve exited with " + process.exitValue() + " before answering /healthz" + logTail());
            }
            try {
                if (CLIENT.send(healthz, HttpResponse.BodyHandlers.discarding()).statusCode() == 200) {
                    return;
                }
            } catch (IOException e) {
                // not listening yet
            }
            Thread.sleep(50);
        }
        fail("gocd-dind serve did not answer GET /healthz within 60 s" + logTail());
    }

    @Override
    public void close() throws InterruptedException {
        process.destroy();
        if (!process.waitFor(10, TimeUnit.SECONDS)) {
            process.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
        }
    }
}
