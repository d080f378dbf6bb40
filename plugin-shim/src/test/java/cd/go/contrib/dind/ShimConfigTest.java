package cd.go.contrib.dind;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ShimConfigTest {
    private final Map<String, String> properties = new HashMap<>();
    private final Map<String, String> env = new HashMap<>();

    private ShimConfig load() throws ShimConfig.Invalid {
        return ShimConfig.load(properties::get, env::get);
    }

    private String problem() {
        return assertThrows(ShimConfig.Invalid.class, this::load).getMessage();
    }

    @Test
    void defaultsNeedOnlyAToken() throws Exception {
        env.put("GOCD_DIND_TOKEN", "abc");

        ShimConfig config = load();

        assertEquals(URI.create("http://127.0.0.1:8790"), config.serviceUrl());
        assertEquals("abc", config.token());
        assertEquals(new InetSocketAddress("127.0.0.1", 8791), config.processorListen());
        assertEquals(Duration.ofSeconds(5), config.connectTimeout());
        assertEquals(Duration.ofSeconds(60), config.requestTimeout());
        assertEquals(Duration.ofSeconds(5), config.startupWait());
    }

    @Test
    void readsEverySettingFromTheEnvironment(@TempDir Path dir) throws Exception {
        Path tokenFile = Files.writeString(dir.resolve("token"), "  from-file\n");
        env.put("GOCD_DIND_SERVICE_URL", "https://dind.internal:9000/");
        env.put("GOCD_DIND_TOKEN_FILE", tokenFile.toString());
        env.put("GOCD_DIND_PROCESSOR_LISTEN", "0.0.0.0:9791");
        env.put("GOCD_DIND_CONNECT_TIMEOUT_MS", "1500");
        env.put("GOCD_DIND_REQUEST_TIMEOUT_MS", "90000");
        env.put("GOCD_DIND_STARTUP_WAIT_MS", "0");

        ShimConfig config = load();

        assertEquals(URI.create("https://dind.internal:9000"), config.serviceUrl(), "trailing slash dropped");
        assertEquals("from-file", config.token(), "file contents trimmed");
        assertEquals(new InetSocketAddress("0.0.0.0", 9791), config.processorListen());
        assertEquals(Duration.ofMillis(1500), config.connectTimeout());
        assertEquals(Duration.ofSeconds(90), config.requestTimeout());
        assertEquals(Duration.ZERO, config.startupWait(), "0 turns the startup wait off");
    }

    @Test
    void aSystemPropertyWinsOverTheEnvironment(@TempDir Path dir) throws Exception {
        env.put("GOCD_DIND_SERVICE_URL", "http://from-env:1");
        env.put("GOCD_DIND_PROCESSOR_LISTEN", "127.0.0.1:1111");
        env.put("GOCD_DIND_REQUEST_TIMEOUT_MS", "1");
        env.put("GOCD_DIND_TOKEN", "env-token");
        properties.put("gocd.dind.service.url", "http://127.0.0.2:2");
        properties.put("gocd.dind.processor.listen", "127.0.0.1:2222");
        properties.put("gocd.dind.request.timeout.ms", "2");
        properties.put("gocd.dind.token", "property-token");

        ShimConfig config = load();

        assertEquals(URI.create("http://127.0.0.2:2"), config.serviceUrl());
        assertEquals(2222, config.processorListen().getPort());
        assertEquals(Duration.ofMillis(2), config.requestTimeout());
        assertEquals("property-token", config.token());

        Path tokenFile = Files.writeString(dir.resolve("token"), "file-token");
        env.remove("GOCD_DIND_TOKEN");
        properties.remove("gocd.dind.token");
        env.put("GOCD_DIND_TOKEN_FILE", "/nonexistent/token");
        properties.put("gocd.dind.token.file", tokenFile.toString());
        assertEquals("file-token", load().token());
    }

    @Test
    void blankValuesCountAsUnset() throws Exception {
        properties.put("gocd.dind.service.url", "  ");
        env.put("GOCD_DIND_SERVICE_URL", "http://from-env:1");
        env.put("GOCD_DIND_TOKEN", "t");
        env.put("GOCD_DIND_TOKEN_FILE", "");

        ShimConfig config = load();

        assertEquals(URI.create("http://from-env:1"), config.serviceUrl());
        assertEquals("t", config.token());
    }

    @Test
    void noTokenIsAnError() {
        String message = problem();

        assertTrue(message.startsWith("gocd-dind plugin is misconfigured: no token"), message);
        assertTrue(message.contains("GOCD_DIND_TOKEN_FILE (system property gocd.dind.token.file)"), message);
        assertTrue(message.contains("restart the GoCD server"), message);
    }

    @Test
    void anUnreadableTokenFileIsAnErrorNamingThePath(@TempDir Path dir) {
        Path missing = dir.resolve("missing-token");
        env.put("GOCD_DIND_TOKEN_FILE", missing.toString());

        String message = problem();

        assertTrue(message.contains("cannot read the token file named by environment variable GOCD_DIND_TOKEN_FILE '"
                + missing + "'"), message);
        assertTrue(message.contains("NoSuchFileException"), message);
    }

    @Test
    void anEmptyTokenFileIsAnError(@TempDir Path dir) throws Exception {
        env.put("GOCD_DIND_TOKEN_FILE", Files.writeString(dir.resolve("token"), " \n").toString());

        assertTrue(problem().contains("is empty"));
    }

    @Test
    void aTokenWithInnerWhitespaceIsAnErrorThatDoesNotEchoIt() {
        env.put("GOCD_DIND_TOKEN", "two words");

        String message = problem();

        assertTrue(message.contains("contains whitespace or control characters"), message);
        assertFalse(message.contains("two words"), message);
    }

    @Test
    void bothATokenAndATokenFileIsAnError(@TempDir Path dir) throws Exception {
        env.put("GOCD_DIND_TOKEN", "t");
        properties.put("gocd.dind.token.file", Files.writeString(dir.resolve("token"), "f").toString());

        String message = problem();

        assertTrue(message.contains("both environment variable GOCD_DIND_TOKEN and system property gocd.dind.token.file"),
                message);
    }

    @ParameterizedTest
    @ValueSource(strings = {"127.0.0.1:8790", "ftp://host:1", "http://", "http://user:pw@host:1", "http://host:1/?q=1",
            "http://host:1/#f", "http://bad host:1", "://x"})
    void aBadServiceUrlIsAnError(String url) {
        env.put("GOCD_DIND_TOKEN", "t");
        properties.put("gocd.dind.service.url", url);

        String message = problem();

        assertTrue(message.contains("system property gocd.dind.service.url '"), message);
        assertTrue(message.contains("' is not a usable service URL"), message);
        assertFalse(message.contains("pw@"), "credentials in the URL are not echoed: " + message);
    }

    @ParameterizedTest
    @ValueSource(strings = {"8791", "127.0.0.1", "127.0.0.1:", ":8791", "127.0.0.1:65536", "127.0.0.1:-1",
            "127.0.0.1:http", "::1:8791", "[::1]"})
    void aBadListenAddressIsAnError(String listen) {
        env.put("GOCD_DIND_TOKEN", "t");
        env.put("GOCD_DIND_PROCESSOR_LISTEN", listen);

        String message = problem();

        assertTrue(message.contains("environment variable GOCD_DIND_PROCESSOR_LISTEN '" + listen
                + "' is not a usable listen address"), message);
        assertTrue(message.contains("--processor-url"), message);
    }

    @Test
    void acceptsABracketedIpv6ListenAddress() throws Exception {
        env.put("GOCD_DIND_TOKEN", "t");
        env.put("GOCD_DIND_PROCESSOR_LISTEN", "[::1]:8791");

        InetSocketAddress listen = load().processorListen();

        assertEquals(8791, listen.getPort());
        assertEquals("[0:0:0:0:0:0:0:1]:8791", ShimConfig.hostPort(listen));
    }

    @ParameterizedTest
    @ValueSource(strings = {"0", "-5", "soon", "1.5"})
    void aBadTimeoutIsAnError(String value) {
        env.put("GOCD_DIND_TOKEN", "t");
        env.put("GOCD_DIND_CONNECT_TIMEOUT_MS", value);

        assertTrue(problem().contains("GOCD_DIND_CONNECT_TIMEOUT_MS '" + value + "' must be a positive number"));
    }

    @ParameterizedTest
    @ValueSource(strings = {"-1", "later", "2.5"})
    void aBadStartupWaitIsAnError(String value) {
        env.put("GOCD_DIND_TOKEN", "t");
        properties.put("gocd.dind.startup.wait.ms", value);

        assertTrue(problem().contains("system property gocd.dind.startup.wait.ms '" + value
                + "' must be a whole number of milliseconds, 0 or more"));
    }

    @Test
    void reportsEveryProblemAtOnce() {
        env.put("GOCD_DIND_SERVICE_URL", "nope");
        env.put("GOCD_DIND_PROCESSOR_LISTEN", "nope");

        String message = problem();

        assertTrue(message.contains("not a usable service URL"), message);
        assertTrue(message.contains("no token"), message);
        assertTrue(message.contains("not a usable listen address"), message);
    }

    @Test
    void toStringLeavesTheTokenOut() throws Exception {
        env.put("GOCD_DIND_TOKEN", "very-secret-value");

        String text = load().toString();

        assertFalse(text.contains("very-secret-value"), text);
        assertTrue(text.contains("processorListen=127.0.0.1:8791"), text);
    }

    @Test
    void jsonMessagesAreEscaped() {
        assertEquals("{\"message\":\"a \\\"b\\\" \\\\ c\\nd\\te\\u0001 \u00e9\"}",
                JsonMessage.of("a \"b\" \\ c\nd\te\u0001 \u00e9"));
    }
}
