package cd.go.contrib.dind;

import com.thoughtworks.go.plugin.api.GoPlugin;
import com.thoughtworks.go.plugin.api.annotation.UnLoad;
import com.thoughtworks.go.plugin.api.info.PluginContext;
import com.thoughtworks.go.plugin.api.response.GoPluginApiResponse;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.reflect.Method;
import java.net.URLClassLoader;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static cd.go.contrib.dind.TestPlugins.request;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * GoCD loads the plugin before the service is up (issue 8, item 7): the plugin class from
 * the BUILT jar goes through GoCD's load-time sequence with nothing listening at the
 * service's address, and every answer is a 200 GoCD accepts. Then the real service starts
 * ({@code -Dgocd.dind.binary=...}), the answers GoCD took at load equal the service's, and
 * the plugin's requests reach it.
 */
class ServiceStartsLateIT {
    private static final Set<String> PROPERTIES = Set.of("gocd.dind.service.url", "gocd.dind.token",
            "gocd.dind.processor.listen", "gocd.dind.startup.wait.ms");
    private static final String MIGRATE = "cd.go.elastic-agent.migrate-config";
    private static final String CAPABILITIES = "cd.go.elastic-agent.get-capabilities";
    /** GoCD's order (docs/protocol.md, "Profiles, views and load-time requests"): migrate-config, the plugin info, the plugin settings. */
    private static final List<String> LOAD_SEQUENCE = List.of(MIGRATE,
            "cd.go.elastic-agent.get-elastic-agent-profile-metadata",
            "cd.go.elastic-agent.get-elastic-agent-profile-view",
            "cd.go.elastic-agent.get-cluster-profile-metadata",
            "cd.go.elastic-agent.get-cluster-profile-view",
            "cd.go.elastic-agent.get-icon",
            CAPABILITIES,
            "go.plugin-settings.get-configuration",
            "go.plugin-settings.get-view");

    @AfterEach
    void clearProperties() {
        PROPERTIES.forEach(System::clearProperty);
    }

    @Test
    void gocdLoadsThePluginBeforeTheServiceStartsAndThenReachesTheService() throws Exception {
        Path binary = ServiceProcess.binary();
        int servicePort = ServiceProcess.freePort();
        int bridgePort = ServiceProcess.freePort();
        String token = ServiceProcess.randomToken();
        String serviceUrl = "http://127.0.0.1:" + servicePort;
        System.setProperty("gocd.dind.service.url", serviceUrl);
        System.setProperty("gocd.dind.token", token);
        System.setProperty("gocd.dind.processor.listen", "127.0.0.1:" + bridgePort);
        // Short, so the test exercises the wait without lengthening the build.
        System.setProperty("gocd.dind.startup.wait.ms", "300");
        Path log = Path.of(System.getProperty("gocd.dind.it.log", "target/gocd-dind-service-it.log"))
                .resolveSibling("gocd-dind-service-starts-late-it.log");
        String migrateBody = Fixtures.named(MIGRATE + ".json").body();

        try (URLClassLoader loader = PluginJar.classLoader(PluginJar.path()); Logs logs = Logs.capture()) {
            Class<?> type = loader.loadClass("cd.go.contrib.dind.DindPlugin");
            assertSame(loader, type.getClassLoader(), "the plugin class must come from the built jar");
            GoPlugin plugin = (GoPlugin) type.getConstructor().newInstance();
            plugin.initializeGoApplicationAccessor(new RecordingAccessor());
            try {
                Map<String, String> atLoad = new LinkedHashMap<>();
                for (String name : LOAD_SEQUENCE) {
                    GoPluginApiResponse response = plugin.handle(request(name, MIGRATE.equals(name) ? migrateBody : null));
                    assertEquals(200, response.responseCode(), name + ": " + response.responseBody() + "\n" + logs.text());
                    atLoad.put(name, response.responseBody());
                }
                assertEquals(migrateBody, atLoad.get(MIGRATE), "migrate-config keeps GoCD's profiles");
                assertShapesGoCdAccepts(atLoad);
                assertTrue(logs.text().contains("waiting up to 300 ms for the gocd-dind service at " + serviceUrl),
                        logs.text());
                assertTrue(logs.text().contains("the gocd-dind service is unreachable"), logs.text());

                try (ServiceProcess service = ServiceProcess.start(binary, servicePort, bridgePort, token, log)) {
                    // A request only the service can answer goes through, and the plugin checks the
                    // copies GoCD took at load against the service's answers.
                    GoPluginApiResponse validate = plugin.handle(request("cd.go.elastic-agent.validate-cluster-profile",
                            Fixtures.named("cd.go.elastic-agent.validate-cluster-profile.json").body()));
                    assertEquals(200, validate.responseCode(), validate.responseBody() + service.logTail());
                    assertEquals("[]", validate.responseBody());
                    assertTrue(logs.text().contains("equal its answers"), logs.text());

                    for (String name : LOAD_SEQUENCE) {
                        HttpResponse<String> live = service.post(name, MIGRATE.equals(name) ? migrateBody : null);
                        assertEquals(200, live.statusCode(), name + ": " + live.body());
                        if (!MIGRATE.equals(name)) {
                            assertEquals(live.body(), atLoad.get(name), name + ": the jar's copy is the service's answer");
                        }
                    }

                    // Load-time requests go to the service again now that it answers.
                    long before = service.answered(CAPABILITIES, 200);
                    assertEquals(200, plugin.handle(request(CAPABILITIES, null)).responseCode());
                    assertEquals(before + 1, service.answered(CAPABILITIES, 200), service.logTail());
                }
                assertFalse(logs.text().contains(token), "the token is never logged");
            } finally {
                for (Method method : plugin.getClass().getMethods()) {
                    if (method.isAnnotationPresent(UnLoad.class)) {
                        method.invoke(plugin, (PluginContext) null);
                    }
                }
            }
        }
    }

    /** What GoCD's v5 converters read from each answer (docs/protocol.md, "Profiles, views and load-time requests"). */
    private static void assertShapesGoCdAccepts(Map<String, String> answers) {
        String icon = answers.get("cd.go.elastic-agent.get-icon");
        assertTrue(icon.contains("\"content_type\":\"image/svg+xml\"") && icon.matches(".*\"data\":\"[A-Za-z0-9+/=]+\".*"), icon);
        String capabilities = answers.get(CAPABILITIES);
        for (String key : List.of("supports_plugin_status_report", "supports_cluster_status_report", "supports_agent_status_report")) {
            assertTrue(capabilities.matches(".*\"" + key + "\":(true|false).*"), capabilities);
        }
        for (String profile : List.of("elastic-agent-profile", "cluster-profile")) {
            String metadata = answers.get("cd.go.elastic-agent.get-" + profile + "-metadata");
            assertTrue(metadata.startsWith("[{\"key\":") && metadata.contains("\"metadata\":{\"required\":"), metadata);
            String view = answers.get("cd.go.elastic-agent.get-" + profile + "-view");
            assertTrue(view.startsWith("{\"template\":\"<") && view.contains("ng-model"), view);
        }
        assertEquals("{}", answers.get("go.plugin-settings.get-configuration"));
        assertTrue(answers.get("go.plugin-settings.get-view").startsWith("{\"template\":\"<"));
    }
}
