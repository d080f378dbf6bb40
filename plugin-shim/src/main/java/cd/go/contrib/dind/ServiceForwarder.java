package cd.go.contrib.dind;

import com.thoughtworks.go.plugin.api.logging.Logger;
import com.thoughtworks.go.plugin.api.response.DefaultGoPluginApiResponse;
import com.thoughtworks.go.plugin.api.response.GoPluginApiResponse;

import java.io.IOException;
import java.net.ConnectException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.charset.StandardCharsets;

/**
 * Sends one GoCD request to {@code POST {service}/gocd/elastic-agent/{request-name}} and
 * hands back the service's status and body verbatim (docs/protocol.md, "Service HTTP contract").
 *
 * <p>Only when the service cannot give an answer of its own (down, slow, or refusing our
 * token) does the shim answer itself: a 500 with {@code {"message": ...}} that says what to
 * check. GoCD treats any non-200 as a failure and shows the body, so the message is what
 * an operator sees in the GoCD UI and server log. (GoCD's load-time requests are the
 * exception: {@link ServiceGate} answers those without the service, see there.)
 */
final class ServiceForwarder {
    private static final Logger LOG = Logger.getLoggerFor(ServiceForwarder.class);
    private static final String CHECK = "Check that the gocd-dind service is running beside the GoCD server"
            + " (gocd-dind serve), that " + ShimConfig.SERVICE_URL.names()
            + " matches its --listen address, and the service logs.";

    private final ShimConfig config;
    private final HttpClient client;

    ServiceForwarder(ShimConfig config) {
        this.config = config;
        // HTTP/1.1 on purpose: the service speaks plain HTTP/1.1 on loopback, and the default
        // HTTP/2 client would add an h2c upgrade attempt to every request.
        this.client = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(config.connectTimeout())
                .followRedirects(HttpClient.Redirect.NEVER)
                .build();
    }

    /**
     * What came of one attempt to reach the service.
     */
    sealed interface Outcome {
        /** The service answered; a 401 has already become the shim's 500 about the token. */
        record Answered(GoPluginApiResponse response) implements Outcome {}

        /**
         * No answer. {@code neverConnected}: the request did not reach the service
         * (connection refused, connect timeout), so sending it again is safe. {@code reason}
         * is the operator message the 500 carries.
         */
        record Unreachable(String reason, boolean neverConnected) implements Outcome {}
    }

    /** Never throws: every failure becomes a 500 that names what to check. */
    GoPluginApiResponse forward(String requestName, String body) {
        Outcome outcome = send(requestName, body);
        if (outcome instanceof Outcome.Answered answered) {
            return answered.response();
        }
        return fail(requestName, ((Outcome.Unreachable) outcome).reason());
    }

    /** One attempt; never throws, and logs only a refused token (the caller decides what an unreachable service means). */
    Outcome send(String requestName, String body) {
        URI target = URI.create(config.serviceUrl() + "/gocd/elastic-agent/"
                + URLEncoder.encode(requestName, StandardCharsets.UTF_8));
        HttpRequest request = HttpRequest.newBuilder(target)
                .timeout(config.requestTimeout())
                .header("Authorization", "Bearer " + config.token())
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body == null ? "" : body, StandardCharsets.UTF_8))
                .build();
        HttpResponse<String> response;
        try {
            response = client.send(request, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
        } catch (HttpConnectTimeoutException e) {
            return new Outcome.Unreachable("the gocd-dind service at " + config.serviceUrl()
                    + " did not accept a connection within " + config.connectTimeout().toMillis() + " ms. " + CHECK, true);
        } catch (HttpTimeoutException e) {
            return new Outcome.Unreachable("the gocd-dind service at " + config.serviceUrl() + " did not answer "
                    + requestName + " within " + config.requestTimeout().toMillis() + " ms. Check the service logs"
                    + " and its /readyz (a slow Docker daemon or Kubernetes API shows there); if the runtime is"
                    + " legitimately slow, raise " + ShimConfig.REQUEST_TIMEOUT_MS.names() + ".", false);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return new Outcome.Unreachable("interrupted while waiting for the gocd-dind service at "
                    + config.serviceUrl(), false);
        } catch (IOException e) {
            if (causedBy(e, ConnectException.class)) {
                return new Outcome.Unreachable("cannot reach the gocd-dind service at " + config.serviceUrl()
                        + " (connection refused). " + CHECK, true);
            }
            return new Outcome.Unreachable("error talking to the gocd-dind service at " + config.serviceUrl()
                    + ": " + e + ". " + CHECK, false);
        }
        if (response.statusCode() == 401) {
            return new Outcome.Answered(fail(requestName, "the gocd-dind service at " + config.serviceUrl()
                    + " refused the plugin's token (HTTP 401). The token the plugin reads ("
                    + ShimConfig.TOKEN_FILE.env() + " or " + ShimConfig.TOKEN.env()
                    + " on the GoCD server) must equal the service's (--token-file / GOCD_DIND_TOKEN_FILE or"
                    + " GOCD_DIND_TOKEN). Check both and the service logs. The service said: "
                    + abbreviate(response.body())));
        }
        return new Outcome.Answered(new DefaultGoPluginApiResponse(response.statusCode(), response.body()));
    }

    static GoPluginApiResponse fail(String requestName, String message) {
        LOG.error("gocd-dind plugin: " + requestName + " failed: " + message);
        return new DefaultGoPluginApiResponse(DefaultGoPluginApiResponse.INTERNAL_ERROR, JsonMessage.of(message));
    }

    private static boolean causedBy(Throwable e, Class<? extends Throwable> type) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (type.isInstance(t)) {
                return true;
            }
        }
        return false;
    }

    private static String abbreviate(String text) {
        if (text == null || text.isEmpty()) {
            return "(no body)";
        }
        return text.length() <= 300 ? text : text.substring(0, 300) + "...";
    }
}
