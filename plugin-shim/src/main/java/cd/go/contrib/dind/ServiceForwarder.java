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
 * hands back the service's status and body verbatim (ARCHITECTURE.md §2).
 *
 * <p>Only when the service cannot give an answer of its own (down, slow, or refusing our
 * token) does the shim answer itself: a 500 with {@code {"message": ...}} that says what to
 * check. GoCD treats any non-200 as a failure and shows the body, so the message is what
 * an operator sees in the GoCD UI and server log.
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

    /** Never throws: every failure becomes a 500 that names what to check. */
    GoPluginApiResponse forward(String requestName, String body) {
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
            return fail(requestName, "the gocd-dind service at " + config.serviceUrl()
                    + " did not accept a connection within " + config.connectTimeout().toMillis() + " ms. " + CHECK);
        } catch (HttpTimeoutException e) {
            return fail(requestName, "the gocd-dind service at " + config.serviceUrl() + " did not answer "
                    + requestName + " within " + config.requestTimeout().toMillis() + " ms. Check the service logs"
                    + " and its /readyz (a slow Docker daemon or Kubernetes API shows there); if the runtime is"
                    + " legitimately slow, raise " + ShimConfig.REQUEST_TIMEOUT_MS.names() + ".");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return fail(requestName, "interrupted while waiting for the gocd-dind service at " + config.serviceUrl());
        } catch (IOException e) {
            if (causedBy(e, ConnectException.class)) {
                return fail(requestName, "cannot reach the gocd-dind service at " + config.serviceUrl()
                        + " (connection refused). " + CHECK);
            }
            return fail(requestName, "error talking to the gocd-dind service at " + config.serviceUrl() + ": " + e
                    + ". " + CHECK);
        }
        if (response.statusCode() == 401) {
            return fail(requestName, "the gocd-dind service at " + config.serviceUrl()
                    + " refused the plugin's token (HTTP 401). The token the plugin reads ("
                    + ShimConfig.TOKEN_FILE.env() + " or " + ShimConfig.TOKEN.env()
                    + " on the GoCD server) must equal the service's (--token-file / GOCD_DIND_TOKEN_FILE or"
                    + " GOCD_DIND_TOKEN). Check both and the service logs. The service said: "
                    + abbreviate(response.body()));
        }
        return new DefaultGoPluginApiResponse(response.statusCode(), response.body());
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
