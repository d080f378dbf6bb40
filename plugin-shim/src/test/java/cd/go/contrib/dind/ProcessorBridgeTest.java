package cd.go.contrib.dind;

import com.thoughtworks.go.plugin.api.response.DefaultGoApiResponse;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.List;

import static cd.go.contrib.dind.TestPlugins.TOKEN;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The processor bridge on its own: auth, routing, and GoCD's answers passed back verbatim. */
class ProcessorBridgeTest {
    private static final String LIST_AGENTS = "go.processor.elastic-agents.list-agents";
    private final HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    private final RecordingAccessor accessor = new RecordingAccessor();
    private ProcessorBridge bridge;

    @BeforeEach
    void start() throws Exception {
        bridge = ProcessorBridge.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), TOKEN, accessor,
                DindPlugin.IDENTIFIER);
    }

    @AfterEach
    void stop() {
        bridge.close();
    }

    private HttpRequest.Builder post(String path, String body) {
        return HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + bridge.address().getPort() + path))
                .POST(HttpRequest.BodyPublishers.ofString(body));
    }

    private HttpResponse<String> send(HttpRequest.Builder request) throws Exception {
        return client.send(request.build(), HttpResponse.BodyHandlers.ofString());
    }

    @Test
    void missingTokenIs401AndGoCdIsNotCalled() throws Exception {
        HttpResponse<String> response = send(post("/processor/" + LIST_AGENTS, ""));

        assertEquals(401, response.statusCode());
        assertTrue(response.body().startsWith("{\"message\":"), response.body());
        assertEquals("application/json", response.headers().firstValue("Content-Type").orElse(null));
        assertTrue(accessor.calls.isEmpty());
    }

    @ParameterizedTest
    @ValueSource(strings = {"Bearer wrong", "Bearer " + TOKEN + "x", "Bearer", "Basic " + TOKEN, TOKEN, "Bearer  "})
    void wrongTokenIs401AndGoCdIsNotCalled(String authorization) throws Exception {
        HttpResponse<String> response = send(post("/processor/" + LIST_AGENTS, "").header("Authorization", authorization));

        assertEquals(401, response.statusCode());
        assertTrue(accessor.calls.isEmpty());
    }

    @Test
    void submitsTheCallWithVersion1ByDefaultAndNoBodyForAnEmptyOne() throws Exception {
        HttpResponse<String> response = send(post("/processor/" + LIST_AGENTS, "")
                .header("Authorization", "Bearer " + TOKEN));

        assertEquals(200, response.statusCode());
        assertEquals("[]", response.body());
        assertEquals(1, accessor.calls.size());
        RecordingAccessor.Call call = accessor.calls.get(0);
        assertEquals(LIST_AGENTS, call.api());
        assertEquals("1.0", call.version());
        assertNull(call.body());
        assertEquals("elastic-agent", call.extension());
        assertEquals(List.of("5.0"), call.extensionVersions());
    }

    @Test
    void passesTheVersionHeaderAndBodyThrough() throws Exception {
        String body = "{\"pipeline_name\":\"build\",\"pipeline_counter\":\"42\",\"stage_name\":\"test\","
                + "\"stage_counter\":\"1\",\"job_name\":\"unit\",\"text\":\"Creating pod \u00e9\\n\"}";

        HttpResponse<String> response = send(post("/processor/go.processor.console-log.append", body)
                .header("authorization", "bearer " + TOKEN)
                .header("X-GoCD-Api-Version", "2.0"));

        assertEquals(200, response.statusCode());
        RecordingAccessor.Call call = accessor.calls.get(0);
        assertEquals("go.processor.console-log.append", call.api());
        assertEquals("2.0", call.version());
        assertEquals(body, call.body());
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
            "200|{\"server_id\":\"abc\"}",
            "400|{\"message\":\"bad request\"}",
            "500|{\"message\":\"Error: no such job\"}",
            "200|''",
    })
    void answersWithGoCdsCodeAndBodyVerbatim(int code, String body) throws Exception {
        accessor.answer = request -> {
            DefaultGoApiResponse answer = new DefaultGoApiResponse(code);
            answer.setResponseBody(body.isEmpty() ? null : body);
            return answer;
        };

        HttpResponse<String> response = send(post("/processor/go.processor.server-info.get", "")
                .header("Authorization", "Bearer " + TOKEN));

        assertEquals(code, response.statusCode());
        assertEquals(body, response.body());
    }

    @Test
    void anExceptionFromGoCdIs502WithAMessage() throws Exception {
        accessor.answer = request -> {
            throw new IllegalStateException("no processor for version 9.0");
        };

        HttpResponse<String> response;
        try (Logs logs = Logs.capture()) {
            response = send(post("/processor/" + LIST_AGENTS, "")
                    .header("Authorization", "Bearer " + TOKEN)
                    .header("X-GoCD-Api-Version", "9.0"));
            assertTrue(logs.text().contains("no processor for version 9.0"), logs.text());
        }

        assertEquals(502, response.statusCode());
        assertTrue(response.body().startsWith("{\"message\":\""), response.body());
        assertTrue(response.body().contains(LIST_AGENTS), response.body());
        assertTrue(response.body().contains("no processor for version 9.0"), response.body());
    }

    @Test
    void noResponseFromGoCdIs502() throws Exception {
        accessor.answer = request -> null;

        HttpResponse<String> response = send(post("/processor/" + LIST_AGENTS, "")
                .header("Authorization", "Bearer " + TOKEN));

        assertEquals(502, response.statusCode());
    }

    @ParameterizedTest
    @ValueSource(strings = {"GET", "PUT", "DELETE"})
    void otherMethodsAre405(String method) throws Exception {
        HttpResponse<String> response = send(HttpRequest.newBuilder(
                        URI.create("http://127.0.0.1:" + bridge.address().getPort() + "/processor/" + LIST_AGENTS))
                .method(method, HttpRequest.BodyPublishers.noBody())
                .header("Authorization", "Bearer " + TOKEN));

        assertEquals(405, response.statusCode());
        assertEquals("POST", response.headers().firstValue("Allow").orElse(null));
        assertTrue(accessor.calls.isEmpty());
    }

    @ParameterizedTest
    @ValueSource(strings = {"/", "/processor", "/processor/", "/gocd/elastic-agent/x", "/processor/a/b"})
    void unknownPathsAre404(String path) throws Exception {
        HttpResponse<String> response = send(post(path, "").header("Authorization", "Bearer " + TOKEN));

        assertEquals(404, response.statusCode());
        assertTrue(response.body().startsWith("{\"message\":"), response.body());
        assertTrue(accessor.calls.isEmpty());
    }

    @Test
    void turnsOffNagleForTheJdkServer() {
        // Otherwise every answer waits ~40 ms for the caller's delayed ACK (see ProcessorBridge.start).
        assertEquals("true", System.getProperty(ProcessorBridge.NODELAY_PROPERTY));
    }

    @Test
    void anOversizedBodyIs413() throws Exception {
        String body = "x".repeat(ProcessorBridge.MAX_BODY_BYTES + 1);

        HttpResponse<String> response = send(post("/processor/go.processor.console-log.append", body)
                .header("Authorization", "Bearer " + TOKEN));

        assertEquals(413, response.statusCode());
        assertTrue(accessor.calls.isEmpty());
    }
}
