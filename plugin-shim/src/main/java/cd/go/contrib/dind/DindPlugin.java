package cd.go.contrib.dind;

import com.thoughtworks.go.plugin.api.GoApplicationAccessor;
import com.thoughtworks.go.plugin.api.GoPlugin;
import com.thoughtworks.go.plugin.api.GoPluginIdentifier;
import com.thoughtworks.go.plugin.api.annotation.Extension;
import com.thoughtworks.go.plugin.api.annotation.UnLoad;
import com.thoughtworks.go.plugin.api.info.PluginContext;
import com.thoughtworks.go.plugin.api.logging.Logger;
import com.thoughtworks.go.plugin.api.request.GoPluginApiRequest;
import com.thoughtworks.go.plugin.api.response.GoPluginApiResponse;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.function.Function;

/**
 * The GoCD plugin: an elastic-agent extension (v5) that parses nothing. Every request goes
 * to the gocd-dind service ({@link ServiceForwarder}); while the service is not up, GoCD's
 * load-time requests get the answers it would give ({@link ServiceGate}), so the plugin
 * loads whichever starts first. The service calls GoCD back through the
 * {@link ProcessorBridge} this class starts once GoCD hands over the
 * {@link GoApplicationAccessor}.
 *
 * <p>Configuration is read when GoCD first calls in, not in the constructor: GoCD (and the
 * jar-layout test) instantiate the class just to inspect it. A bad configuration never
 * throws out of a GoCD call; each request answers 500 with the reasons, so GoCD marks the
 * plugin invalid at load and shows them.
 */
@Extension
public class DindPlugin implements GoPlugin {
    public static final String PLUGIN_ID = "gocd-dind";
    static final GoPluginIdentifier IDENTIFIER = new GoPluginIdentifier("elastic-agent", List.of("5.0"));
    static final String SERVER_PING = "cd.go.elastic-agent.server-ping";
    private static final Logger LOG = Logger.getLoggerFor(DindPlugin.class);

    /** Either a usable configuration with its gate to the service, or the reason there is none. */
    private record Loaded(ShimConfig config, ServiceGate gate, String error) {}

    private final Function<String, String> properties;
    private final Function<String, String> env;
    private volatile Loaded loaded;
    private GoApplicationAccessor accessor;
    private ProcessorBridge bridge;

    public DindPlugin() {
        this(System::getProperty, System::getenv);
    }

    /** Tests pass their own system-property and environment lookups. */
    DindPlugin(Function<String, String> properties, Function<String, String> env) {
        this.properties = properties;
        this.env = env;
    }

    @Override
    public void initializeGoApplicationAccessor(GoApplicationAccessor goApplicationAccessor) {
        try {
            synchronized (this) {
                accessor = goApplicationAccessor;
            }
            Loaded current = load();
            if (current.error() != null) {
                LOG.error(current.error());
                return;
            }
            LOG.info("gocd-dind plugin: forwarding requests to " + current.config().serviceUrl());
            startBridge();
        } catch (RuntimeException e) {
            // GoCD would mark the plugin invalid with a stack trace; the forwarded requests say more.
            LOG.error("gocd-dind plugin: could not initialise", e);
        }
    }

    @Override
    public GoPluginApiResponse handle(GoPluginApiRequest request) {
        String name = request == null ? null : request.requestName();
        try {
            if (name == null || name.isBlank()) {
                return ServiceForwarder.fail("(no request name)", "GoCD sent a request without a name");
            }
            Loaded current = load();
            if (current.error() != null) {
                return ServiceForwarder.fail(name, current.error());
            }
            if (SERVER_PING.equals(name)) {
                // Once a minute: a good moment to retry a bridge whose port was taken at load.
                startBridge();
            }
            return current.gate().handle(name, request.requestBody());
        } catch (RuntimeException e) {
            return ServiceForwarder.fail(name, "unexpected error in the gocd-dind plugin: " + e
                    + ". Check the plugin log (plugin-" + PLUGIN_ID + ".log) and the service logs.");
        }
    }

    @Override
    public GoPluginIdentifier pluginIdentifier() {
        return IDENTIFIER;
    }

    /** GoCD calls this when it unloads the plugin; frees the bridge's port. */
    @UnLoad
    public void onUnload(PluginContext context) {
        ProcessorBridge stopping;
        synchronized (this) {
            stopping = bridge;
            bridge = null;
            accessor = null;
        }
        if (stopping != null) {
            stopping.close();
            LOG.info("gocd-dind plugin: processor bridge stopped");
        }
    }

    /** The bridge's bound address, or null when it is not running (tests). */
    synchronized InetSocketAddress bridgeAddress() {
        return bridge == null ? null : bridge.address();
    }

    private Loaded load() {
        Loaded current = loaded;
        if (current == null) {
            synchronized (this) {
                current = loaded;
                if (current == null) {
                    try {
                        ShimConfig config = ShimConfig.load(properties, env);
                        current = new Loaded(config,
                                new ServiceGate(config, new ServiceForwarder(config), StaticAnswers.fromJar()), null);
                    } catch (ShimConfig.Invalid e) {
                        current = new Loaded(null, null, e.getMessage());
                    }
                    loaded = current;
                }
            }
        }
        return current;
    }

    private synchronized void startBridge() {
        Loaded current = loaded;
        if (bridge != null || accessor == null || current == null || current.config() == null) {
            return;
        }
        ShimConfig config = current.config();
        try {
            bridge = ProcessorBridge.start(config.processorListen(), config.token(), accessor, IDENTIFIER);
            LOG.info("gocd-dind plugin: processor bridge listening on " + ShimConfig.hostPort(bridge.address()));
        } catch (LinkageError e) {
            // The JDK's HTTP server is not visible to the plugin's class loader.
            LOG.error("gocd-dind plugin: the processor bridge cannot start: com.sun.net.httpserver is not available"
                    + " to plugins in this GoCD server (" + e + "). Run GoCD on a full JDK/JRE that includes the"
                    + " jdk.httpserver module. Requests are still forwarded to the service, but it cannot call GoCD back.");
        } catch (IOException | RuntimeException e) {
            LOG.error("gocd-dind plugin: the processor bridge cannot listen on " + ShimConfig.hostPort(config.processorListen())
                    + " (" + e + "). Another process may hold that address (a second copy of this plugin, or an"
                    + " old GoCD server still running). Set " + ShimConfig.PROCESSOR_LISTEN.names()
                    + " to a free host:port and the service's --processor-url (GOCD_DIND_PROCESSOR_URL) to match,"
                    + " then restart the GoCD server. Requests are still forwarded to the service, but it cannot"
                    + " list, disable or delete agents, read server info or write to job consoles until the bridge"
                    + " runs; the plugin retries at every server-ping.");
        }
    }
}
