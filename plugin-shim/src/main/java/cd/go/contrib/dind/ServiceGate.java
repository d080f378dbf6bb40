package cd.go.contrib.dind;

import com.thoughtworks.go.plugin.api.logging.Logger;
import com.thoughtworks.go.plugin.api.response.DefaultGoPluginApiResponse;
import com.thoughtworks.go.plugin.api.response.GoPluginApiResponse;

import java.net.URI;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.LongSupplier;

/**
 * What GoCD gets when the service may not be up: GoCD loads the plugin once, at server
 * start, and marks it invalid until the next restart if migrate-config or any of the
 * icon, capabilities, metadata and view requests fails. The GoCD server and the service
 * usually start together, so the plugin must load without the service.
 *
 * <ul>
 *   <li>The service's own answer always wins when it gives one (so a jar and service of
 *       different releases never hide the service's forms).</li>
 *   <li>The first load-time request (migrate-config, in GoCD) waits up to
 *       {@link ShimConfig#startupWait()} for a service that refuses connections, saying so
 *       in the plugin log. Only once: it runs on GoCD's plugin-loading thread, holding
 *       GoCD's config write lock.</li>
 *   <li>Without the service, load-time requests get {@link StaticAnswers}: migrate-config
 *       its own body, the others the jar's copies of the service's answers. Once the service
 *       is known to be down they are answered at once, without trying it again, until some
 *       other request (server-ping, every minute) reaches it.</li>
 *   <li>Every other request still needs the service and fails with a 500 saying why; GoCD
 *       retries those.</li>
 *   <li>When the service answers again after GoCD took copies from the jar, the copies are
 *       compared with its answers, and a difference (jar and service of different
 *       releases) is logged with what to do.</li>
 * </ul>
 */
final class ServiceGate {
    private static final Logger LOG = Logger.getLoggerFor(ServiceGate.class);
    /** How often the startup wait tries again; a refused connection costs well under a millisecond. */
    static final Duration RETRY_EVERY = Duration.ofMillis(200);

    /** One attempt to reach the service ({@link ServiceForwarder#send}); tests script the outcomes. */
    @FunctionalInterface
    interface Sender {
        ServiceForwarder.Outcome send(String name, String body);
    }

    /** Waits between attempts; tests pass one that starts the service or advances a clock. */
    @FunctionalInterface
    interface Pause {
        void pause(Duration duration) throws InterruptedException;
    }

    private enum Reachability { UNKNOWN, UP, DOWN }

    private final Sender service;
    private final StaticAnswers answers;
    private final URI serviceUrl;
    private final Duration startupWait;
    private final Pause pause;
    private final LongSupplier nanoTime;
    private final AtomicBoolean startupWaitTaken = new AtomicBoolean();
    private Reachability reachability = Reachability.UNKNOWN;
    private final Set<String> servedFromJar = new TreeSet<>();

    ServiceGate(ShimConfig config, ServiceForwarder forwarder, StaticAnswers answers) {
        this(config, forwarder::send, answers, duration -> TimeUnit.NANOSECONDS.sleep(duration.toNanos()),
                System::nanoTime);
    }

    ServiceGate(ShimConfig config, Sender service, StaticAnswers answers, Pause pause, LongSupplier nanoTime) {
        this.service = service;
        this.answers = answers;
        this.serviceUrl = config.serviceUrl();
        this.startupWait = config.startupWait();
        this.pause = pause;
        this.nanoTime = nanoTime;
        if (!answers.missing().isEmpty()) {
            LOG.error("gocd-dind plugin: this jar lacks its copies of the service's answers to " + answers.missing()
                    + ", so GoCD cannot load the plugin while the service is down. Use the jar built by"
                    + " `mvn package` in plugin-shim/.");
        }
    }

    /** Never throws. */
    GoPluginApiResponse handle(String name, String body) {
        String withoutService = answers.withoutTheService(name, body);
        if (withoutService == null) {
            ServiceForwarder.Outcome outcome = service.send(name, body);
            note(outcome);
            if (outcome instanceof ServiceForwarder.Outcome.Answered answered) {
                return answered.response();
            }
            return ServiceForwarder.fail(name, ((ServiceForwarder.Outcome.Unreachable) outcome).reason());
        }
        ServiceForwarder.Outcome outcome;
        if (startupWaitTaken.compareAndSet(false, true)) {
            outcome = sendWaiting(name, body);
        } else if (knownDown()) {
            return answerWithoutService(name, withoutService);
        } else {
            outcome = service.send(name, body);
        }
        note(outcome);
        if (outcome instanceof ServiceForwarder.Outcome.Answered answered) {
            return answered.response();
        }
        return answerWithoutService(name, withoutService);
    }

    /** Sends, and while the service refuses connections tries again until the startup wait is over. */
    private ServiceForwarder.Outcome sendWaiting(String name, String body) {
        long started = nanoTime.getAsLong();
        ServiceForwarder.Outcome outcome = service.send(name, body);
        if (!neverConnected(outcome) || startupWait.isZero()) {
            return outcome;
        }
        LOG.warn("gocd-dind plugin: waiting up to " + startupWait.toMillis() + " ms for the gocd-dind service at "
                + serviceUrl + " to accept connections, to answer GoCD's " + name + " while GoCD loads the plugin"
                + " (" + ShimConfig.STARTUP_WAIT_MS.env() + " sets how long). Start the service beside the GoCD server"
                + " (gocd-dind serve) and check that its --listen address matches " + ShimConfig.SERVICE_URL.names()
                + ". Without the service the plugin loads anyway, with the answers in its jar.");
        while (neverConnected(outcome)) {
            long remaining = startupWait.toNanos() - (nanoTime.getAsLong() - started);
            if (remaining <= 0) {
                LOG.warn("gocd-dind plugin: the gocd-dind service at " + serviceUrl + " did not accept a connection"
                        + " within the " + startupWait.toMillis() + " ms the plugin waits at load ("
                        + ShimConfig.STARTUP_WAIT_MS.names() + ").");
                return outcome;
            }
            try {
                pause.pause(Duration.ofNanos(Math.min(remaining, RETRY_EVERY.toNanos())));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return outcome;
            }
            outcome = service.send(name, body);
        }
        LOG.info("gocd-dind plugin: the gocd-dind service at " + serviceUrl + " accepted a connection after "
                + TimeUnit.NANOSECONDS.toMillis(nanoTime.getAsLong() - started) + " ms");
        return outcome;
    }

    private static boolean neverConnected(ServiceForwarder.Outcome outcome) {
        return outcome instanceof ServiceForwarder.Outcome.Unreachable unreachable && unreachable.neverConnected();
    }

    private synchronized boolean knownDown() {
        return reachability == Reachability.DOWN;
    }

    /** Records what the attempt says about the service; logs the changes; checks the jar's copies on recovery. */
    private void note(ServiceForwarder.Outcome outcome) {
        boolean wentDown = false;
        List<String> toCheck = List.of();
        synchronized (this) {
            if (outcome instanceof ServiceForwarder.Outcome.Answered) {
                if (reachability == Reachability.DOWN && !servedFromJar.isEmpty()) {
                    toCheck = new ArrayList<>(servedFromJar);
                    servedFromJar.clear();
                }
                reachability = Reachability.UP;
            } else {
                wentDown = reachability != Reachability.DOWN;
                reachability = Reachability.DOWN;
            }
        }
        if (wentDown) {
            LOG.warn("gocd-dind plugin: the gocd-dind service is unreachable: "
                    + ((ServiceForwarder.Outcome.Unreachable) outcome).reason()
                    + " Until it answers, GoCD's load-time requests are answered without it, as the service would:"
                    + " migrate-config by echoing GoCD's profiles unchanged, the icon, capabilities, profile metadata"
                    + " and views with the copies in this jar. Everything else (create-agent, server-ping, profile"
                    + " validation, status reports) fails until the service is up, and GoCD retries it.");
        }
        if (!toCheck.isEmpty()) {
            compareCopies(toCheck);
        }
    }

    private GoPluginApiResponse answerWithoutService(String name, String answer) {
        boolean copy = !StaticAnswers.MIGRATE_CONFIG.equals(name);
        if (copy) {
            synchronized (this) {
                servedFromJar.add(name);
            }
        }
        LOG.info("gocd-dind plugin: answered " + name + (copy ? " with the jar's copy of the service's answer"
                : " by echoing GoCD's profiles unchanged") + ": the gocd-dind service at " + serviceUrl
                + " is unreachable");
        return new DefaultGoPluginApiResponse(DefaultGoPluginApiResponse.SUCCESS_RESPONSE_CODE, answer);
    }

    /**
     * GoCD keeps what it got at load until it restarts. The copies equal the answers of the
     * service release they were made from; a different service release may answer otherwise.
     */
    private void compareCopies(List<String> names) {
        List<String> differing = new ArrayList<>();
        for (String name : names) {
            ServiceForwarder.Outcome outcome = service.send(name, null);
            if (outcome instanceof ServiceForwarder.Outcome.Answered answered
                    && answered.response().responseCode() == DefaultGoPluginApiResponse.SUCCESS_RESPONSE_CODE
                    && !answered.response().responseBody().equals(answers.copyOf(name))) {
                differing.add(name);
            }
        }
        if (differing.isEmpty()) {
            LOG.info("gocd-dind plugin: the gocd-dind service at " + serviceUrl + " answers; the copies GoCD took"
                    + " from the jar at load (" + names + ") equal its answers");
        } else {
            LOG.warn("gocd-dind plugin: the gocd-dind service at " + serviceUrl + " answers " + differing
                    + " differently from the copies in this jar, which GoCD took at load while the service was"
                    + " unreachable: the jar and the service are of different releases. GoCD keeps showing the"
                    + " jar's profile forms until it restarts: install the jar of the service's release and"
                    + " restart the GoCD server.");
        }
    }
}
