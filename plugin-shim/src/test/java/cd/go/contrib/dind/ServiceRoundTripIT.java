package cd.go.contrib.dind;

import com.thoughtworks.go.plugin.api.GoPlugin;
import com.thoughtworks.go.plugin.api.annotation.UnLoad;
import com.thoughtworks.go.plugin.api.info.PluginContext;
import com.thoughtworks.go.plugin.api.response.GoPluginApiResponse;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.lang.reflect.Method;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.URLClassLoader;
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
import java.util.Set;
import java.util.concurrent.TimeUnit;

import static cd.go.contrib.dind.TestPlugins.request;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The cross-language round trip: the real Rust service ({@code -Dgocd.dind.binary=...},
 * started with the in-memory runtime), the plugin class loaded from the BUILT jar, and a
 * {@link RecordingAccessor} playing GoCD's processor side. It drives one job through
 * get-capabilities, create-agent, should-assign-work, job-completion and server-ping.
 *
 * <p>Without the property this test fails on purpose: a CI step that asked for the round
 * trip must not pass by skipping it. It only runs when selected (see README.md).
 */
class ServiceRoundTripIT {
    private static final Set<String> PROPERTIES = Set.of("gocd.dind.service.url", "gocd.dind.token",
            "gocd.dind.token.file", "gocd.dind.processor.listen", "gocd.dind.connect.timeout.ms",
            "gocd.dind.request.timeout.ms");
    private static final HttpClient CLIENT = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(2)).build();

    private static Process service;
    private static Path log;
    private static String token;
    private static int servicePort;
    private static int bridgePort;

    @BeforeAll
    static void startTheService() throws Exception {
        String binary = System.getProperty("gocd.dind.binary");
        if (binary == null || binary.isBlank()) {
            fail("ServiceRoundTripIT needs the Rust service binary: run `mvn -B verify -Pround-trip -Dgocd.dind.binary=/path/to/gocd-dind`"
                    + " (build it first with `cargo build --features test-doubles` at the repository root: a test build, with the in-memory runtime; the binary is target/debug/gocd-dind)");
        }
        Path executable = Path.of(binary).toAbsolutePath();
        if (!Files.isRegularFile(executable) || !Files.isExecutable(executable)) {
            fail("-Dgocd.dind.binary=" + binary + " is not an executable file (build it with `cargo build --features test-doubles`)");
        }
        byte[] secret = new byte[32];
        new SecureRandom().nextBytes(secret);
        token = HexFormat.of().formatHex(secret);
        servicePort = freePort();
        bridgePort = freePort();
        log = Path.of(System.getProperty("gocd.dind.it.log", "target/gocd-dind-service-it.log"));
        Files.createDirectories(log.toAbsolutePath().getParent());

        ProcessBuilder builder = new ProcessBuilder(executable.toString(), "serve",
                "--listen", "127.0.0.1:" + servicePort,
                "--processor-url", "http://127.0.0.1:" + bridgePort,
                "--allow-memory-runtime");
        builder.environment().keySet().removeIf(name -> name.startsWith("GOCD_DIND_"));
        builder.environment().put("GOCD_DIND_TOKEN", token);
        builder.redirectErrorStream(true).redirectOutput(log.toFile());
        service = builder.start();
        waitForHealthz();
    }

    @AfterAll
    static void stopTheService() throws Exception {
        if (service != null) {
            service.destroy();
            if (!service.waitFor(10, TimeUnit.SECONDS)) {
                service.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
            }
        }
    }

    @AfterEach
    void clearProperties() {
        PROPERTIES.forEach(System::clearProperty);
    }

    @Test
    void drivesAJobFromThePluginJarThroughTheService() throws Exception {
        configure(token);
        RecordingAccessor accessor = new RecordingAccessor();
        try (URLClassLoader loader = PluginJar.classLoader(PluginJar.path())) {
            GoPlugin plugin = loadPlugin(loader);
            plugin.initializeGoApplicationAccessor(accessor);
            try {
                GoPluginApiResponse capabilities = call(plugin, "cd.go.elastic-agent.get-capabilities", null);
                assertTrue(capabilities.responseBody().trim().startsWith("{"), capabilities.responseBody());

                call(plugin, "cd.go.elastic-agent.create-agent", memoryRuntime("cd.go.elastic-agent.create-agent.json"));

                GoPluginApiResponse assign = call(plugin, "cd.go.elastic-agent.should-assign-work",
                        memoryRuntime("cd.go.elastic-agent.should-assign-work.json"));
                assertTrue(Set.of("true", "false").contains(assign.responseBody().trim()),
                        "should-assign-work answers a bare JSON boolean: " + assign.responseBody());

                call(plugin, "cd.go.elastic-agent.job-completion", memoryRuntime("cd.go.elastic-agent.job-completion.json"));
                call(plugin, "cd.go.elastic-agent.server-ping", memoryRuntime("cd.go.elastic-agent.server-ping.json"));

                // The service calls back through the bridge (its server-ping work may finish after the answer).
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
                while (accessor.apis().stream().noneMatch(ServiceRoundTripIT::isReadCall) && System.nanoTime() < deadline) {
                    Thread.sleep(100);
                }
                assertTrue(accessor.apis().stream().anyMatch(ServiceRoundTripIT::isReadCall),
                        "the service should have called list-agents or server-info through the bridge; recorded "
                                + accessor.apis() + serviceLog());
                for (RecordingAccessor.Call recorded : accessor.calls) {
                    assertTrue(recorded.api().startsWith("go.processor."), recorded.toString());
                    assertTrue(Set.of("1.0", "2.0").contains(recorded.version()), recorded.toString());
                    assertEquals("elastic-agent", recorded.extension(), recorded.toString());
                }
            } finally {
                unload(plugin);
            }
        }
    }

    @Test
    void aWrongTokenIsReportedAsATokenProblem() throws Exception {
        configure(token + "-wrong");
        try (URLClassLoader loader = PluginJar.classLoader(PluginJar.path())) {
            GoPlugin plugin = loadPlugin(loader);
            plugin.initializeGoApplicationAccessor(new RecordingAccessor());
            try {
                GoPluginApiResponse response = plugin.handle(request("cd.go.elastic-agent.get-capabilities", null));

                assertEquals(500, response.responseCode(), response.responseBody());
                assertTrue(response.responseBody().contains("refused the plugin's token"), response.responseBody());
                assertFalse(response.responseBody().contains(token), "the token is never echoed");
            } finally {
                unload(plugin);
            }
        }
    }

    private static boolean isReadCall(String api) {
        return api.equals("go.processor.elastic-agents.list-agents") || api.equals("go.processor.server-info.get");
    }

    private static void configure(String pluginToken) {
        System.setProperty("gocd.dind.service.url", "http://127.0.0.1:" + servicePort);
        System.setProperty("gocd.dind.token", pluginToken);
        System.setProperty("gocd.dind.processor.listen", "127.0.0.1:" + bridgePort);
    }

    private static GoPlugin loadPlugin(URLClassLoader loader) throws Exception {
        Class<?> type = loader.loadClass("cd.go.contrib.dind.DindPlugin");
        assertSame(loader, type.getClassLoader(), "the plugin class must come from the built jar");
        return (GoPlugin) type.getConstructor().newInstance();
    }

    private static void unload(GoPlugin plugin) throws Exception {
        for (Method method : plugin.getClass().getMethods()) {
            if (method.isAnnotationPresent(UnLoad.class)) {
                method.invoke(plugin, (PluginContext) null);
            }
        }
    }

    private static GoPluginApiResponse call(GoPlugin plugin, String name, String body) throws Exception {
        GoPluginApiResponse response = plugin.handle(request(name, body));
        assertEquals(200, response.responseCode(), name + " answered " + response.responseCode() + ": "
                + response.responseBody() + serviceLog());
        return response;
    }

    /** A shared fixture with its cluster profile switched to the service's in-memory runtime. */
    private static String memoryRuntime(String file) {
        String body = Fixtures.named(file).body();
        assertTrue(body.contains("\"runtime\":\"docker\""), file + " no longer names a runtime");
        return body.replace("\"runtime\":\"docker\"", "\"runtime\":\"memory\"");
    }

    private static void waitForHealthz() throws Exception {
        HttpRequest healthz = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + servicePort + "/healthz"))
                .timeout(Duration.ofSeconds(2)).GET().build();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (System.nanoTime() < deadline) {
            if (!service.isAlive()) {
                fail("gocd-dind serve exited with " + service.exitValue() + " before answering /healthz" + serviceLog());
            }
            try {
                if (CLIENT.send(healthz, HttpResponse.BodyHandlers.discarding()).statusCode() == 200) {
                    return;
                }
            } catch (IOException e) {
                // not listening yet
            }
            Thread.sleep(100);
        }
        fail("gocd-dind serve did not answer GET /healthz with 200 within 30 s" + serviceLog());
    }

    private static String serviceLog() throws IOException {
        if (log == null || !Files.exists(log)) {
            return "";
        }
        List<String> lines = Files.readAllLines(log, StandardCharsets.UTF_8);
        List<String> tail = lines.subList(Math.max(0, lines.size() - 40), lines.size());
        return "\n--- service log (" + log + ", last " + tail.size() + " lines) ---\n" + String.join("\n", tail);
    }

    private static int freePort() throws IOException {
        try (ServerSocket socket = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return socket.getLocalPort();
        }
    }
}
