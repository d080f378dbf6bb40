package cd.go.contrib.dind;

import com.thoughtworks.go.plugin.api.GoPluginIdentifier;
import com.thoughtworks.go.plugin.api.response.GoPluginApiResponse;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.MethodSource;

import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static cd.go.contrib.dind.TestPlugins.TOKEN;
import static cd.go.contrib.dind.TestPlugins.plugin;
import static cd.go.contrib.dind.TestPlugins.request;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** handle(): every GoCD request reaches the service unchanged, and every failure is a 500 that says why. */
class ForwardingTest {
    /** Every request GoCD sends an elastic-agent v5 plugin (docs/protocol.md, "Requests at a glance"). */
    private static final Set<String> GOCD_REQUESTS = Set.of(
            "cd.go.elastic-agent.get-icon",
            "cd.go.elastic-agent.get-capabilities",
            "cd.go.elastic-agent.get-elastic-agent-profile-metadata",
            "cd.go.elastic-agent.get-elastic-agent-profile-view",
            "cd.go.elastic-agent.validate-elastic-agent-profile",
            "cd.go.elastic-agent.get-cluster-profile-metadata",
            "cd.go.elastic-agent.get-cluster-profile-view",
            "cd.go.elastic-agent.validate-cluster-profile",
            "cd.go.elastic-agent.create-agent",
            "cd.go.elastic-agent.should-assign-work",
            "cd.go.elastic-agent.server-ping",
            "cd.go.elastic-agent.job-completion",
            "cd.go.elastic-agent.migrate-config",
            "cd.go.elastic-agent.cluster-profile-changed",
            "cd.go.elastic-agent.agent-status-report",
            "cd.go.elastic-agent.cluster-status-report",
            "cd.go.elastic-agent.plugin-status-report",
            "go.plugin-settings.get-configuration",
            "go.plugin-settings.get-view");

    private FakeService service;

    @BeforeEach
    void startService() throws Exception {
        service = FakeService.start();
    }

    @AfterEach
    void stopService() {
        service.close();
    }

    static List<Fixtures.Fixture> fixtures() {
        return Fixtures.all();
    }

    @Test
    void theFixturesCoverEveryRequestGoCdSends() {
        Set<String> names = new TreeSet<>();
        fixtures().forEach(fixture -> names.add(fixture.requestName()));
        Set<String> missing = new TreeSet<>(GOCD_REQUESTS);
        missing.removeAll(names);
        assertTrue(missing.isEmpty(), "no fixture for " + missing);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("fixtures")
    void forwardsEachFixtureVerbatim(Fixtures.Fixture fixture) {
        String answer = "{\"answer_for\":\"" + fixture.file() + "\",\"text\":\"\u00e9\u00e8 \\\"quoted\\\"\"}";
        service.responder = request -> new FakeService.Reply(200, answer);

        GoPluginApiResponse response = plugin(service.url()).handle(request(fixture.requestName(), fixture.body()));

        assertEquals(200, response.responseCode());
        assertEquals(answer, response.responseBody());
        assertEquals(1, service.requests.size());
        FakeService.Recorded sent = service.requests.get(0);
        assertEquals("POST", sent.method());
        assertEquals("/gocd/elastic-agent/" + fixture.requestName(), sent.path());
        byte[] expected = fixture.body() == null ? new byte[0] : fixture.body().getBytes(StandardCharsets.UTF_8);
        assertArrayEquals(expected, sent.body(), "body must arrive byte for byte (null -> empty)");
        assertEquals(String.valueOf(expected.length), sent.header("Content-Length"));
        assertEquals("Bearer " + TOKEN, sent.header("Authorization"));
        assertEquals("application/json", sent.header("Content-Type"));
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
            "200|true",
            "200|''",
            "400|{\"message\":\"malformed JSON at line 1\"}",
            "404|{\"message\":\"unknown request name\"}",
            "413|{\"message\":\"body over the size limit\"}",
            "422|{\"message\":\"missing field job_identifier\"}",
            "500|{\"message\":\"internal error\"}",
            "502|plain text, not JSON",
            "503|{\"message\":\"runtime not ready\"}",
    })
    void passesTheServiceStatusAndBodyThrough(int status, String body) {
        service.responder = request -> new FakeService.Reply(status, body);

        GoPluginApiResponse response = plugin(service.url())
                .handle(request("cd.go.elastic-agent.validate-cluster-profile", "{}"));

        assertEquals(status, response.responseCode());
        assertEquals(body, response.responseBody());
    }

    /** Requests that only the service can answer; GoCD's load-time requests: see ServiceGateTest. */
    @Test
    void serviceDownIsA500ThatSaysWhatToCheck() throws Exception {
        String url;
        try (ServerSocket socket = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            url = "http://127.0.0.1:" + socket.getLocalPort();
        }
        GoPluginApiResponse response;
        try (Logs logs = Logs.capture()) {
            response = plugin(url).handle(request("cd.go.elastic-agent.create-agent", "{}"));
            assertTrue(logs.text().contains("cannot reach the gocd-dind service at " + url), logs.text());
            assertFalse(logs.text().contains(TOKEN));
        }

        assertEquals(500, response.responseCode());
        String body = response.responseBody();
        assertTrue(body.startsWith("{\"message\":\""), body);
        assertTrue(body.contains(url), body);
        assertTrue(body.contains("connection refused"), body);
        assertTrue(body.contains("GOCD_DIND_SERVICE_URL"), body);
        assertTrue(body.contains("service logs"), body);
        assertFalse(body.contains(TOKEN));
    }

    @Test
    void slowServiceIsA500AfterTheRequestTimeout() {
        // The service answers only after the plugin has answered GoCD: handle() can return
        // only through the request timeout.
        CountDownLatch answerLater = new CountDownLatch(1);
        service.holdAnswers = answerLater;
        DindPlugin plugin = plugin(service.url(), Map.of("gocd.dind.request.timeout.ms", "300"));

        GoPluginApiResponse response;
        try (Logs logs = Logs.capture()) {
            response = plugin.handle(request("cd.go.elastic-agent.create-agent", "{}"));
            assertTrue(logs.text().contains("did not answer"), logs.text());
        } finally {
            answerLater.countDown();
        }

        assertEquals(500, response.responseCode());
        assertEquals(1, service.requests.size(), "the request reached the service, which had not answered");
        String body = response.responseBody();
        assertTrue(body.contains("did not answer cd.go.elastic-agent.create-agent within 300 ms"), body);
        assertTrue(body.contains("service logs"), body);
        assertTrue(body.contains("GOCD_DIND_REQUEST_TIMEOUT_MS"), body);
    }

    @Test
    void a401FromTheServiceIsA500AboutTheToken() {
        service.responder = request -> new FakeService.Reply(401, "{\"message\":\"missing or wrong token\"}");

        GoPluginApiResponse response;
        try (Logs logs = Logs.capture()) {
            response = plugin(service.url()).handle(request("cd.go.elastic-agent.get-capabilities", null));
            assertTrue(logs.text().contains("refused the plugin's token"), logs.text());
            assertFalse(logs.text().contains(TOKEN), "the token must never be logged");
        }

        assertEquals(500, response.responseCode());
        String body = response.responseBody();
        assertTrue(body.contains("token"), body);
        assertTrue(body.contains("GOCD_DIND_TOKEN_FILE"), body);
        assertTrue(body.contains("missing or wrong token"), "includes what the service said: " + body);
        assertFalse(body.contains(TOKEN));
    }

    @Test
    void aMisconfiguredPluginAnswers500WithTheReasonAndCallsNothing() {
        DindPlugin plugin = plugin(service.url(), Map.of("gocd.dind.token", ""));

        GoPluginApiResponse response;
        try (Logs logs = Logs.capture()) {
            response = plugin.handle(request("cd.go.elastic-agent.get-icon", null));
            assertTrue(logs.text().contains("misconfigured"), logs.text());
        }

        assertEquals(500, response.responseCode());
        assertTrue(response.responseBody().contains("no token"), response.responseBody());
        assertTrue(response.responseBody().contains("GOCD_DIND_TOKEN_FILE"), response.responseBody());
        assertTrue(service.requests.isEmpty());
    }

    @Test
    void keepsAPathPrefixOfTheServiceUrl() {
        plugin(service.url() + "/dind/").handle(request("cd.go.elastic-agent.get-icon", null));

        assertEquals("/dind/gocd/elastic-agent/cd.go.elastic-agent.get-icon", service.requests.get(0).path());
    }

    @Test
    void nothingEscapesHandle() {
        DindPlugin plugin = plugin(service.url());

        GoPluginApiResponse noRequest = plugin.handle(null);
        GoPluginApiResponse noName = plugin.handle(request(null, "{}"));

        assertEquals(500, noRequest.responseCode());
        assertEquals(500, noName.responseCode());
        assertTrue(service.requests.isEmpty());
    }

    @Test
    void forwardsConcurrentRequests() throws Exception {
        service.responder = request -> new FakeService.Reply(200, new String(request.body(), StandardCharsets.UTF_8));
        DindPlugin plugin = plugin(service.url());
        ExecutorService pool = Executors.newFixedThreadPool(8);
        try {
            List<Future<GoPluginApiResponse>> answers = new ArrayList<>();
            for (int i = 0; i < 40; i++) {
                String body = "{\"n\":" + i + "}";
                answers.add(pool.submit(() -> plugin.handle(request("cd.go.elastic-agent.create-agent", body))));
            }
            for (int i = 0; i < answers.size(); i++) {
                GoPluginApiResponse response = answers.get(i).get();
                assertEquals(200, response.responseCode());
                assertEquals("{\"n\":" + i + "}", response.responseBody());
            }
        } finally {
            pool.shutdownNow();
        }
        assertEquals(40, service.requests.size());
    }

    @Test
    void identifiesAsAnElasticAgentV5Plugin() {
        GoPluginIdentifier identifier = new DindPlugin().pluginIdentifier();

        assertEquals("elastic-agent", identifier.getExtension());
        assertEquals(List.of("5.0"), identifier.getSupportedExtensionVersions());
    }
}
