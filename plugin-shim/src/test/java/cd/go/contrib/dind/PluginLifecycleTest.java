package cd.go.contrib.dind;

import com.thoughtworks.go.plugin.api.response.GoPluginApiResponse;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.net.ConnectException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.Map;

import static cd.go.contrib.dind.TestPlugins.TOKEN;
import static cd.go.contrib.dind.TestPlugins.plugin;
import static cd.go.contrib.dind.TestPlugins.request;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What GoCD does with the plugin: hand over the accessor (bridge starts), call it, unload it. */
class PluginLifecycleTest {
    private final HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    private final RecordingAccessor accessor = new RecordingAccessor();
    private FakeService service;

    @BeforeEach
    void startService() throws Exception {
        service = FakeService.start();
    }

    @AfterEach
    void stopService() {
        service.close();
    }

    private HttpResponse<String> callBridge(InetSocketAddress address) throws Exception {
        HttpRequest request = HttpRequest.newBuilder(URI.create(
                        "http://127.0.0.1:" + address.getPort() + "/processor/go.processor.server-info.get"))
                .header("Authorization", "Bearer " + TOKEN)
                .POST(HttpRequest.BodyPublishers.noBody())
                .build();
        return client.send(request, HttpResponse.BodyHandlers.ofString());
    }

    @Test
    void theAccessorStartsTheBridgeAndUnloadStopsIt() throws Exception {
        DindPlugin plugin = plugin(service.url());

        plugin.initializeGoApplicationAccessor(accessor);
        InetSocketAddress address = plugin.bridgeAddress();
        assertNotNull(address, "bridge should be listening");
        HttpResponse<String> response = callBridge(address);
        assertEquals(200, response.statusCode());
        assertEquals(RecordingAccessor.SERVER_INFO, response.body());
        assertEquals("go.processor.server-info.get", accessor.calls.get(0).api());

        plugin.onUnload(null);

        assertNull(plugin.bridgeAddress());
        assertThrows(ConnectException.class, () -> callBridge(address));
    }

    @Test
    void aTakenPortIsReportedAndRequestsAreStillForwarded() throws Exception {
        ServerSocket taken = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
        try {
            String listen = "127.0.0.1:" + taken.getLocalPort();
            DindPlugin plugin = plugin(service.url(), Map.of("gocd.dind.processor.listen", listen));
            GoPluginApiResponse icon;
            try (Logs logs = Logs.capture()) {
                plugin.initializeGoApplicationAccessor(accessor);
                icon = plugin.handle(request("cd.go.elastic-agent.get-icon", null));
                String log = logs.text();
                assertTrue(log.contains("cannot listen on " + listen), log);
                assertTrue(log.contains("GOCD_DIND_PROCESSOR_LISTEN"), log);
                assertTrue(log.contains("--processor-url"), log);
            }
            assertNull(plugin.bridgeAddress());
            assertEquals(200, icon.responseCode(), "load-time requests still reach the service");
            assertEquals("/gocd/elastic-agent/cd.go.elastic-agent.get-icon", service.requests.get(0).path());

            taken.close();
            plugin.handle(request("cd.go.elastic-agent.server-ping", "{\"all_cluster_profile_properties\":[]}"));

            assertNotNull(plugin.bridgeAddress(), "server-ping retries the bridge once the port is free");
            assertEquals(taken.getLocalPort(), plugin.bridgeAddress().getPort());
            plugin.onUnload(null);
        } finally {
            taken.close();
        }
    }

    @Test
    void aBadConfigurationIsLoggedAtLoadWithoutThrowing() {
        DindPlugin plugin = plugin(service.url(), Map.of("gocd.dind.processor.listen", "not-an-address"));

        try (Logs logs = Logs.capture()) {
            plugin.initializeGoApplicationAccessor(accessor);
            assertTrue(logs.text().contains("'not-an-address' is not a usable listen address"), logs.text());
        }
        GoPluginApiResponse response = plugin.handle(request("cd.go.elastic-agent.get-capabilities", null));

        assertNull(plugin.bridgeAddress());
        assertEquals(500, response.responseCode());
        assertTrue(response.responseBody().contains("gocd.dind.processor.listen"), response.responseBody());
        assertTrue(service.requests.isEmpty());
    }

    @Test
    void theTokenIsNeverLogged() throws Exception {
        service.responder = request -> new FakeService.Reply(401, "{\"message\":\"wrong token\"}");
        DindPlugin plugin = plugin(service.url());
        try (Logs logs = Logs.capture()) {
            plugin.initializeGoApplicationAccessor(accessor);
            plugin.handle(request("cd.go.elastic-agent.get-icon", null));
            service.close();
            plugin.handle(request("cd.go.elastic-agent.get-icon", null));
            accessor.answer = request -> {
                throw new IllegalStateException("boom");
            };
            callBridge(plugin.bridgeAddress());
            plugin.onUnload(null);
            assertFalse(logs.text().isEmpty());
            assertFalse(logs.text().contains(TOKEN), logs.text());
        }
    }

    @Test
    void unloadWithoutLoadIsHarmless() {
        DindPlugin plugin = plugin(service.url());

        plugin.onUnload(null);

        assertNull(plugin.bridgeAddress());
    }
}
