package cd.go.contrib.dind;

import com.thoughtworks.go.plugin.api.response.DefaultGoPluginApiResponse;
import com.thoughtworks.go.plugin.api.response.GoPluginApiResponse;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Function;

import static cd.go.contrib.dind.TestPlugins.TOKEN;
import static cd.go.contrib.dind.TestPlugins.request;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * GoCD loads the plugin whether or not the service is up: the rules of {@link ServiceGate}
 * with the service scripted (no network, no clock); then over HTTP, {@link DindPlugin} with
 * nothing at the service's address, and a service that starts during the first call's wait.
 */
class ServiceGateTest {
    private static final String MIGRATE = StaticAnswers.MIGRATE_CONFIG;
    private static final String ICON = "cd.go.elastic-agent.get-icon";
    private static final String CREATE = "cd.go.elastic-agent.create-agent";
    private static final String URL = "http://127.0.0.1:1";
    /** GoCD's load-time order (docs/protocol.md, "Profiles, views and load-time requests"): migrate-config, then the plugin info. */
    private static final List<String> LOAD_SEQUENCE = List.of(MIGRATE,
            "cd.go.elastic-agent.get-elastic-agent-profile-metadata",
            "cd.go.elastic-agent.get-elastic-agent-profile-view",
            "cd.go.elastic-agent.get-cluster-profile-metadata",
            "cd.go.elastic-agent.get-cluster-profile-view",
            ICON,
            "cd.go.elastic-agent.get-capabilities",
            "go.plugin-settings.get-configuration",
            "go.plugin-settings.get-view");

    private static final ServiceForwarder.Outcome REFUSED =
            new ServiceForwarder.Outcome.Unreachable("cannot reach the gocd-dind service at " + URL + " (connection refused).", true);
    private static final ServiceForwarder.Outcome TIMED_OUT =
            new ServiceForwarder.Outcome.Unreachable("did not answer within 60000 ms", false);

    private static ServiceForwarder.Outcome answer(int status, String body) {
        return new ServiceForwarder.Outcome.Answered(new DefaultGoPluginApiResponse(status, body));
    }

    /** The service as a script: what each attempt gets, and the attempts made. */
    private static final class Service implements ServiceGate.Sender {
        final List<String> attempts = new CopyOnWriteArrayList<>();
        volatile Function<String, ServiceForwarder.Outcome> outcome = name -> REFUSED;

        @Override
        public ServiceForwarder.Outcome send(String name, String body) {
            attempts.add(name);
            return outcome.apply(name);
        }
    }

    /** A clock that moves only when the gate pauses, and a record of the pauses. */
    private static final class Clock implements ServiceGate.Pause {
        final AtomicLong nanos = new AtomicLong();
        final List<Duration> pauses = new CopyOnWriteArrayList<>();
        volatile Runnable onPause = () -> {};

        @Override
        public void pause(Duration duration) {
            pauses.add(duration);
            nanos.addAndGet(duration.toNanos());
            onPause.run();
        }
    }

    private final Service service = new Service();
    private final Clock clock = new Clock();
    private final StaticAnswers answers = StaticAnswers.fromJar();

    private ServiceGate gate(long startupWaitMillis) throws Exception {
        Map<String, String> properties = new HashMap<>();
        properties.put("gocd.dind.service.url", URL);
        properties.put("gocd.dind.token", TOKEN);
        properties.put("gocd.dind.startup.wait.ms", String.valueOf(startupWaitMillis));
        ShimConfig config = ShimConfig.load(properties::get, name -> null);
        return new ServiceGate(config, service, answers, clock, clock.nanos::get);
    }

    private static String migrateBody() {
        return Fixtures.named("cd.go.elastic-agent.migrate-config.json").body();
    }

    private static String body(String name) {
        return MIGRATE.equals(name) ? migrateBody() : null;
    }

    @Test
    void theJarCarriesACopyOfEveryStaticAnswer() {
        assertEquals(List.of(), answers.missing());
        for (String name : StaticAnswers.NAMES) {
            String copy = answers.copyOf(name);
            assertTrue(copy.startsWith("{") || copy.startsWith("["), name + ": " + copy);
        }
        assertNull(answers.copyOf(MIGRATE), "migrate-config is echoed, not copied");
        assertNull(answers.withoutTheService(CREATE, "{}"), "only the service can create an agent");
        assertNull(answers.withoutTheService(MIGRATE, null), "no body: nothing to echo (the service answers 400)");
    }

    @Test
    void withoutTheServiceEveryLoadTimeRequestGetsTheServicesAnswer() throws Exception {
        ServiceGate gate = gate(0);

        try (Logs logs = Logs.capture()) {
            for (String name : LOAD_SEQUENCE) {
                GoPluginApiResponse response = gate.handle(name, body(name));

                assertEquals(200, response.responseCode(), name + ": " + response.responseBody());
                String expected = MIGRATE.equals(name) ? migrateBody() : answers.copyOf(name);
                assertEquals(expected, response.responseBody(), name);
            }
            String log = logs.text();
            assertTrue(log.contains("the gocd-dind service is unreachable: cannot reach the gocd-dind service at " + URL), log);
            assertTrue(log.contains("answered " + MIGRATE + " by echoing GoCD's profiles unchanged"), log);
            assertTrue(log.contains("answered " + ICON + " with the jar's copy of the service's answer"), log);
        }
        assertEquals(List.of(MIGRATE), service.attempts, "once known down, the copies are served without trying again");
        assertEquals(List.of(), clock.pauses, "a startup wait of 0 does not wait");
    }

    @Test
    void requestsOnlyTheServiceCanAnswerStillFail() throws Exception {
        ServiceGate gate = gate(0);

        GoPluginApiResponse created = gate.handle(CREATE, "{}");
        GoPluginApiResponse migrated = gate.handle(MIGRATE, null);

        assertEquals(500, created.responseCode());
        assertTrue(created.responseBody().contains("connection refused"), created.responseBody());
        assertEquals(500, migrated.responseCode(), "nothing to echo");
        assertEquals(List.of(CREATE, MIGRATE), service.attempts);
    }

    @Test
    void theServicesAnswerWinsWhenItGivesOne() throws Exception {
        service.outcome = name -> answer(200, "{\"from\":\"the service\"}");
        ServiceGate gate = gate(5_000);

        for (String name : LOAD_SEQUENCE) {
            assertEquals("{\"from\":\"the service\"}", gate.handle(name, body(name)).responseBody(), name);
        }
        assertEquals(LOAD_SEQUENCE, service.attempts);
        assertEquals(List.of(), clock.pauses);
    }

    @Test
    void anErrorTheServiceAnswersIsPassedOnNotReplaced() throws Exception {
        service.outcome = name -> answer(500, "{\"message\":\"refused the plugin's token\"}");

        GoPluginApiResponse response = gate(5_000).handle(ICON, null);

        assertEquals(500, response.responseCode(), "a wrong token must still mark the plugin invalid with the reason");
        assertEquals("{\"message\":\"refused the plugin's token\"}", response.responseBody());
    }

    @Test
    void theFirstLoadTimeRequestWaitsForAServiceThatStartsLate() throws Exception {
        ServiceGate gate = gate(60_000);
        // The service comes up during the third pause.
        clock.onPause = () -> {
            if (clock.pauses.size() == 3) {
                service.outcome = name -> answer(200, "{\"from\":\"the service\"}");
            }
        };

        GoPluginApiResponse response;
        try (Logs logs = Logs.capture()) {
            response = gate.handle(MIGRATE, migrateBody());
            String log = logs.text();
            assertTrue(log.contains("waiting up to 60000 ms for the gocd-dind service at " + URL
                    + " to accept connections, to answer GoCD's " + MIGRATE + " while GoCD loads the plugin"), log);
            assertTrue(log.contains("GOCD_DIND_SERVICE_URL"), log);
            assertTrue(log.contains("accepted a connection after 600 ms"), log);
            assertFalse(log.contains(TOKEN));
        }

        assertEquals("{\"from\":\"the service\"}", response.responseBody());
        assertEquals(List.of(MIGRATE, MIGRATE, MIGRATE, MIGRATE), service.attempts);
        assertEquals(List.of(ServiceGate.RETRY_EVERY, ServiceGate.RETRY_EVERY, ServiceGate.RETRY_EVERY), clock.pauses);
    }

    @Test
    void theWaitIsBoundedAndTakenOnce() throws Exception {
        ServiceGate gate = gate(1_000);

        GoPluginApiResponse migrated;
        try (Logs logs = Logs.capture()) {
            migrated = gate.handle(MIGRATE, migrateBody());
            assertTrue(logs.text().contains("did not accept a connection within the 1000 ms the plugin waits at load"
                    + " (GOCD_DIND_STARTUP_WAIT_MS"), logs.text());
        }
        GoPluginApiResponse icon = gate.handle(ICON, null);

        assertEquals(migrateBody(), migrated.responseBody());
        assertEquals(answers.copyOf(ICON), icon.responseBody());
        assertEquals(Duration.ofMillis(1_000), clock.pauses.stream().reduce(Duration.ZERO, Duration::plus));
        assertEquals(6, service.attempts.size(), "one attempt, then one after each of 5 pauses of 200 ms: " + service.attempts);
        assertEquals(5, clock.pauses.size(), "no second wait");
    }

    @Test
    void aServiceThatConnectedButDidNotAnswerIsNotWaitedFor() throws Exception {
        service.outcome = name -> TIMED_OUT;

        GoPluginApiResponse response = gate(60_000).handle(ICON, null);

        assertEquals(answers.copyOf(ICON), response.responseBody(), "the request reached the service: no retry");
        assertEquals(List.of(ICON), service.attempts);
        assertEquals(List.of(), clock.pauses);
    }

    @Test
    void anInterruptedWaitAnswersWithoutTheService() throws Exception {
        ServiceGate gate = new ServiceGate(ShimConfig.load(Map.of("gocd.dind.token", TOKEN)::get, name -> null),
                service, answers, duration -> {
                    throw new InterruptedException("GoCD is shutting down");
                }, clock.nanos::get);
        try {
            GoPluginApiResponse response = gate.handle(MIGRATE, migrateBody());

            assertEquals(migrateBody(), response.responseBody());
            assertTrue(Thread.currentThread().isInterrupted(), "the interrupt is kept for GoCD");
        } finally {
            Thread.interrupted();
        }
    }

    @Test
    void aRequestThatReachesTheServiceEndsTheJarAnswers() throws Exception {
        ServiceGate gate = gate(0);
        gate.handle(ICON, null);
        service.outcome = name -> answer(200, "{\"from\":\"the service\"}");

        assertEquals(answers.copyOf(ICON), gate.handle(ICON, null).responseBody(), "still known down");
        gate.handle(CREATE, "{}");

        assertEquals("{\"from\":\"the service\"}", gate.handle(ICON, null).responseBody());
    }

    @Test
    void copiesThatDifferFromTheRecoveredServiceAreReported() throws Exception {
        ServiceGate gate = gate(0);
        gate.handle(ICON, null);
        gate.handle("cd.go.elastic-agent.get-capabilities", null);
        List<String> checked = new ArrayList<>();
        service.outcome = name -> {
            checked.add(name);
            return ICON.equals(name) ? answer(200, "{\"content_type\":\"image/png\",\"data\":\"AA==\"}")
                    : name.equals(CREATE) ? answer(200, "{}") : answer(200, answers.copyOf(name));
        };

        try (Logs logs = Logs.capture()) {
            gate.handle(CREATE, "{}");
            gate.handle(CREATE, "{}");
            String log = logs.text();
            assertTrue(log.contains("answers [" + ICON + "] differently from the copies in this jar"), log);
            assertTrue(log.contains("restart the GoCD server"), log);
        }
        assertEquals(List.of(CREATE, "cd.go.elastic-agent.get-capabilities", ICON, CREATE), checked,
                "each copy GoCD took is checked once, after the first answer");
    }

    @Test
    void copiesEqualToTheRecoveredServiceAreSaidToBe() throws Exception {
        ServiceGate gate = gate(0);
        gate.handle(ICON, null);
        service.outcome = name -> name.equals(CREATE) ? answer(200, "{}") : answer(200, answers.copyOf(name));

        try (Logs logs = Logs.capture()) {
            gate.handle(CREATE, "{}");
            assertTrue(logs.text().contains("the copies GoCD took from the jar at load ([" + ICON + "]) equal its answers"),
                    logs.text());
            assertFalse(logs.text().contains("differently"), logs.text());
        }
    }

    /** Through the plugin and over HTTP: nothing listens at the service's address. */
    @Test
    void thePluginLoadsWithoutTheService() throws Exception {
        String url = "http://127.0.0.1:" + FakeService.freePort();
        DindPlugin plugin = TestPlugins.plugin(url, Map.of("gocd.dind.startup.wait.ms", "0"));

        try (Logs logs = Logs.capture()) {
            for (String name : LOAD_SEQUENCE) {
                GoPluginApiResponse response = plugin.handle(request(name, body(name)));

                assertEquals(200, response.responseCode(), name + ": " + response.responseBody());
                assertEquals(MIGRATE.equals(name) ? migrateBody() : answers.copyOf(name), response.responseBody(), name);
            }
            assertEquals(500, plugin.handle(request(CREATE, "{}")).responseCode());
            assertTrue(logs.text().contains("cannot reach the gocd-dind service at " + url + " (connection refused)"),
                    logs.text());
            assertFalse(logs.text().contains(TOKEN));
        }
    }

    /** Over HTTP: GoCD's first call finds nothing, and the service starts while the plugin waits. */
    @Test
    void thePluginAnswersFromAServiceStartedAfterItsFirstCall() throws Exception {
        int port = FakeService.freePort();
        String url = "http://127.0.0.1:" + port;
        List<FakeService> started = new CopyOnWriteArrayList<>();
        Map<String, String> properties = new HashMap<>(Map.of("gocd.dind.service.url", url, "gocd.dind.token", TOKEN,
                "gocd.dind.startup.wait.ms", "600000"));
        ShimConfig config = ShimConfig.load(properties::get, name -> null);
        ServiceForwarder forwarder = new ServiceForwarder(config);
        ServiceGate gate = new ServiceGate(config, forwarder::send, answers, duration -> {
            if (started.isEmpty()) {
                try {
                    FakeService late = FakeService.startOn(port);
                    late.responder = request -> new FakeService.Reply(200, "{\"from\":\"the late service\"}");
                    started.add(late);
                } catch (java.io.IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            }
        }, System::nanoTime);
        try (Logs logs = Logs.capture()) {
            GoPluginApiResponse response = gate.handle(MIGRATE, migrateBody());

            assertEquals(200, response.responseCode());
            assertEquals("{\"from\":\"the late service\"}", response.responseBody());
            assertTrue(logs.text().contains("waiting up to 600000 ms for the gocd-dind service at " + url), logs.text());
            assertEquals(1, started.get(0).requests.size(), "migrate-config reached the service once");
            assertEquals("/gocd/elastic-agent/" + MIGRATE, started.get(0).requests.get(0).path());
        } finally {
            started.forEach(FakeService::close);
        }
    }
}
