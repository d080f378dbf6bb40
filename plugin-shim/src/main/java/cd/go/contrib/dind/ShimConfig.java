package cd.go.contrib.dind;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;

/**
 * The shim's configuration, read from Java system properties and the environment
 * (docs/install.md, "Configuration"). A system property wins over the environment variable of the same
 * setting, because an operator adding {@code -D...} to the GoCD server's JVM options means
 * to override what the image sets.
 *
 * <p>Loading never throws for a bad value: it collects every problem into
 * {@link Invalid} so the plugin can answer each GoCD request with all the reasons at once
 * (GoCD then shows the plugin invalid at load with something an operator can act on).
 *
 * <p>{@link #toString()} leaves the token out; nothing in the shim logs it.
 */
public record ShimConfig(
        URI serviceUrl,
        String token,
        InetSocketAddress processorListen,
        Duration connectTimeout,
        Duration requestTimeout,
        Duration startupWait) {

    static final Setting SERVICE_URL = new Setting("GOCD_DIND_SERVICE_URL", "gocd.dind.service.url");
    static final Setting TOKEN = new Setting("GOCD_DIND_TOKEN", "gocd.dind.token");
    static final Setting TOKEN_FILE = new Setting("GOCD_DIND_TOKEN_FILE", "gocd.dind.token.file");
    static final Setting PROCESSOR_LISTEN =
            new Setting("GOCD_DIND_PROCESSOR_LISTEN", "gocd.dind.processor.listen");
    static final Setting CONNECT_TIMEOUT_MS =
            new Setting("GOCD_DIND_CONNECT_TIMEOUT_MS", "gocd.dind.connect.timeout.ms");
    static final Setting REQUEST_TIMEOUT_MS =
            new Setting("GOCD_DIND_REQUEST_TIMEOUT_MS", "gocd.dind.request.timeout.ms");
    static final Setting STARTUP_WAIT_MS =
            new Setting("GOCD_DIND_STARTUP_WAIT_MS", "gocd.dind.startup.wait.ms");

    static final String DEFAULT_SERVICE_URL = "http://127.0.0.1:8790";
    static final String DEFAULT_PROCESSOR_LISTEN = "127.0.0.1:8791";
    static final long DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
    static final long DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
    /**
     * How long the first load-time request waits for a service that refuses connections.
     * GoCD sends migrate-config holding its config write lock, on the thread that loads
     * every plugin: keep it short (README.md, "When the service is not up").
     */
    static final long DEFAULT_STARTUP_WAIT_MS = 5_000;

    /** One setting: its environment variable and its system property. */
    record Setting(String env, String property) {
        /** How an operator would name it in a message. */
        String names() {
            return env + " (system property " + property + ")";
        }
    }

    /** Where a value came from, so messages name the variable the operator actually set. */
    private record Value(String text, String source) {}

    /** Every reason the configuration cannot be used, joined into one operator message. */
    public static final class Invalid extends Exception {
        private static final long serialVersionUID = 1L;

        Invalid(List<String> problems) {
            super("gocd-dind plugin is misconfigured: " + String.join("; ", problems)
                    + ". Fix the GoCD server's environment (or -D system properties) and restart the GoCD server.");
        }
    }

    /** The configuration of this JVM: system properties, then the environment. */
    public static ShimConfig fromSystem() throws Invalid {
        return load(System::getProperty, System::getenv);
    }

    /**
     * Reads every setting through the two lookups (tests pass maps). Blank values count as
     * unset: Kubernetes and Compose often set a variable to "" rather than leave it out.
     */
    public static ShimConfig load(Function<String, String> properties, Function<String, String> env)
            throws Invalid {
        List<String> problems = new ArrayList<>();
        Function<Setting, Value> lookup = setting -> {
            String property = properties.apply(setting.property());
            if (property != null && !property.isBlank()) {
                return new Value(property.trim(), "system property " + setting.property());
            }
            String variable = env.apply(setting.env());
            if (variable != null && !variable.isBlank()) {
                return new Value(variable.trim(), "environment variable " + setting.env());
            }
            return null;
        };

        URI serviceUrl = parseServiceUrl(orDefault(lookup.apply(SERVICE_URL), SERVICE_URL, DEFAULT_SERVICE_URL), problems);
        String token = readToken(lookup.apply(TOKEN), lookup.apply(TOKEN_FILE), problems);
        InetSocketAddress listen = parseListen(
                orDefault(lookup.apply(PROCESSOR_LISTEN), PROCESSOR_LISTEN, DEFAULT_PROCESSOR_LISTEN), problems);
        Duration connect = parseMillis(lookup.apply(CONNECT_TIMEOUT_MS), DEFAULT_CONNECT_TIMEOUT_MS, false, problems);
        Duration request = parseMillis(lookup.apply(REQUEST_TIMEOUT_MS), DEFAULT_REQUEST_TIMEOUT_MS, false, problems);
        Duration startupWait = parseMillis(lookup.apply(STARTUP_WAIT_MS), DEFAULT_STARTUP_WAIT_MS, true, problems);

        if (!problems.isEmpty()) {
            throw new Invalid(problems);
        }
        return new ShimConfig(serviceUrl, token, listen, connect, request, startupWait);
    }

    private static Value orDefault(Value value, Setting setting, String fallback) {
        return value != null ? value : new Value(fallback, "the default of " + setting.env());
    }

    private static URI parseServiceUrl(Value value, List<String> problems) {
        String why;
        try {
            URI uri = new URI(value.text());
            String scheme = uri.getScheme();
            if (scheme == null || !(scheme.equalsIgnoreCase("http") || scheme.equalsIgnoreCase("https"))) {
                why = "it must start with http:// or https://";
            } else if (uri.getHost() == null) {
                why = "it has no host";
            } else if (uri.getRawUserInfo() != null) {
                // Credentials in the URL would end up in log lines; the token has its own setting.
                why = "it must not contain credentials (put the token in " + TOKEN_FILE.env() + ")";
            } else if (uri.getRawQuery() != null || uri.getRawFragment() != null) {
                why = "it must not have a query or fragment";
            } else {
                String text = value.text();
                while (text.endsWith("/")) {
                    text = text.substring(0, text.length() - 1);
                }
                return URI.create(text);
            }
        } catch (URISyntaxException e) {
            why = e.getMessage();
        }
        // Echo the value so the operator sees the typo, but never credentials it might carry.
        String shown = value.text().replaceAll("//[^/@]*@", "//***@");
        problems.add(value.source() + " '" + shown + "' is not a usable service URL: " + why
                + " (expected e.g. " + DEFAULT_SERVICE_URL + ", the service's --listen address)");
        return null;
    }

    private static String readToken(Value token, Value tokenFile, List<String> problems) {
        if (token != null && tokenFile != null) {
            problems.add("both " + token.source() + " and " + tokenFile.source()
                    + " are set; set only one, so it is clear which token must match the service's");
            return null;
        }
        if (token == null && tokenFile == null) {
            problems.add("no token: set " + TOKEN_FILE.names() + " to a file holding the shared token, or "
                    + TOKEN.names() + "; it must equal the gocd-dind service's token");
            return null;
        }
        String text;
        String source;
        if (token != null) {
            text = token.text();
            source = token.source();
        } else {
            source = tokenFile.source() + " '" + tokenFile.text() + "'";
            try {
                text = Files.readString(Path.of(tokenFile.text()), StandardCharsets.UTF_8).trim();
            } catch (IOException | RuntimeException e) {
                // The exception names the path and the cause (missing, permission), never the content.
                problems.add("cannot read the token file named by " + source + ": " + e
                        + "; check that the file (or Secret) is mounted into the GoCD server container and readable by its user");
                return null;
            }
            if (text.isEmpty()) {
                problems.add("the token file named by " + source + " is empty");
                return null;
            }
        }
        // The token goes into an HTTP header: whitespace or control characters would break it.
        if (text.chars().anyMatch(c -> c <= ' ' || c == 0x7f)) {
            problems.add("the token from " + source + " contains whitespace or control characters");
            return null;
        }
        return text;
    }

    /** {@code host:port}, {@code [v6]:port}; port 0 picks a free port (tests). */
    private static InetSocketAddress parseListen(Value value, List<String> problems) {
        String text = value.text();
        String why;
        int colon = text.lastIndexOf(':');
        if (colon <= 0 || colon == text.length() - 1) {
            why = "expected host:port";
        } else {
            String host = text.substring(0, colon);
            if (host.startsWith("[") && host.endsWith("]")) {
                host = host.substring(1, host.length() - 1);
            } else if (host.contains(":")) {
                host = null;
            }
            Integer port = null;
            try {
                port = Integer.parseInt(text.substring(colon + 1));
            } catch (NumberFormatException e) {
                // reported below
            }
            if (host == null || host.isEmpty()) {
                why = "expected host:port (write an IPv6 address as [::1]:8791)";
            } else if (port == null || port < 0 || port > 65535) {
                why = "the port must be a number from 0 to 65535";
            } else {
                InetSocketAddress address = new InetSocketAddress(host, port);
                if (!address.isUnresolved()) {
                    return address;
                }
                why = "cannot resolve host '" + host + "'";
            }
        }
        problems.add(value.source() + " '" + text + "' is not a usable listen address: " + why
                + " (expected e.g. " + DEFAULT_PROCESSOR_LISTEN + "; it must match the service's --processor-url)");
        return null;
    }

    private static Duration parseMillis(Value value, long fallback, boolean zeroAllowed, List<String> problems) {
        if (value == null) {
            return Duration.ofMillis(fallback);
        }
        try {
            long millis = Long.parseLong(value.text());
            if (millis > 0 || (zeroAllowed && millis == 0)) {
                return Duration.ofMillis(millis);
            }
        } catch (NumberFormatException e) {
            // reported below
        }
        problems.add(value.source() + " '" + value.text() + "' must be a "
                + (zeroAllowed ? "whole number of milliseconds, 0 or more" : "positive number of milliseconds"));
        return null;
    }

    /** {@code host:port} as an operator writes it ({@code [::1]:8791} for IPv6), not InetSocketAddress's "/host:port". */
    static String hostPort(InetSocketAddress address) {
        String host = address.getHostString();
        return (host.contains(":") ? "[" + host + "]" : host) + ":" + address.getPort();
    }

    /** Without the token, so the record can be logged. */
    @Override
    public String toString() {
        return "ShimConfig[serviceUrl=" + serviceUrl + ", token=<redacted>, processorListen=" + (processorListen == null ? null : hostPort(processorListen))
                + ", connectTimeout=" + connectTimeout + ", requestTimeout=" + requestTimeout
                + ", startupWait=" + startupWait + "]";
    }
}
