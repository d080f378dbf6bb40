package cd.go.contrib.dind;

import com.thoughtworks.go.plugin.api.GoApplicationAccessor;
import com.thoughtworks.go.plugin.api.GoPlugin;
import com.thoughtworks.go.plugin.api.GoPluginIdentifier;
import com.thoughtworks.go.plugin.api.request.DefaultGoPluginApiRequest;
import com.thoughtworks.go.plugin.api.request.GoPluginApiRequest;
import com.thoughtworks.go.plugin.api.response.DefaultGoPluginApiResponse;
import com.thoughtworks.go.plugin.api.response.GoPluginApiResponse;

import java.util.Arrays;
import java.util.Locale;

/**
 * What the shim adds to a GoCD call: get-capabilities through {@link DindPlugin#handle}
 * (JVM → HTTP → service → JVM) against the same call answered by a stub plugin inside the
 * JVM. Not a test; run it by hand (README.md, "Benchmark"). Target: at most 1 ms added at
 * the median on loopback.
 *
 * <p>The service URL and token come from the plugin's own configuration
 * ({@code GOCD_DIND_SERVICE_URL}/{@code -Dgocd.dind.service.url}, {@code GOCD_DIND_TOKEN}...).
 * With {@code -Dbench.fake-service=true} it starts an in-JVM stand-in service instead, which
 * measures the shim's HTTP overhead without the Rust binary.
 */
public final class RoundTripBenchmark {
    private static final String REQUEST = "cd.go.elastic-agent.get-capabilities";
    private static final String CAPABILITIES = "{\"supports_plugin_status_report\":false,"
            + "\"supports_cluster_status_report\":true,\"supports_agent_status_report\":true}";

    private RoundTripBenchmark() {}

    public static void main(String[] args) throws Exception {
        int warmup = Integer.getInteger("bench.warmup", 3_000);
        int iterations = Integer.getInteger("bench.iterations", 10_000);
        FakeService fake = null;
        if (Boolean.getBoolean("bench.fake-service")) {
            // The Rust service writes each answer in one segment; keep the JDK stand-in from
            // adding Nagle/delayed-ACK stalls (~40 ms) that the real service does not have.
            System.setProperty(ProcessorBridge.NODELAY_PROPERTY, "true");
            fake = FakeService.start();
            fake.responder = request -> new FakeService.Reply(200, CAPABILITIES);
            System.setProperty("gocd.dind.service.url", fake.url());
            if (System.getProperty("gocd.dind.token") == null && System.getenv("GOCD_DIND_TOKEN") == null
                    && System.getenv("GOCD_DIND_TOKEN_FILE") == null) {
                System.setProperty("gocd.dind.token", "benchmark-token");
            }
        }
        try {
            ShimConfig config;
            try {
                config = ShimConfig.fromSystem();
            } catch (ShimConfig.Invalid e) {
                System.err.println(e.getMessage());
                System.exit(2);
                return;
            }
            GoPlugin shim = new DindPlugin();
            GoPlugin baseline = new StubPlugin();
            GoPluginApiResponse first = shim.handle(request());
            if (first.responseCode() != 200) {
                System.err.println("get-capabilities through the shim answered " + first.responseCode() + ": "
                        + first.responseBody());
                System.exit(1);
            }

            System.out.printf(Locale.ROOT, "%s via %s%s; %d warm-up + %d measured calls each%n", REQUEST,
                    config.serviceUrl(), fake != null ? " (in-JVM stand-in service)" : "", warmup, iterations);
            run(baseline, warmup);
            run(shim, warmup);
            long[] base = run(baseline, iterations);
            long[] through = run(shim, iterations);

            System.out.printf(Locale.ROOT, "%-28s %10s %10s %10s%n", "", "min", "median", "p99");
            print("in-JVM stub (baseline)", base);
            print("shim -> service -> shim", through);
            double added = (percentile(through, 50) - percentile(base, 50)) / 1_000.0;
            System.out.printf(Locale.ROOT, "added at the median: %.1f us (target <= 1000 us): %s%n", added,
                    added <= 1_000 ? "within target" : "ABOVE TARGET");
        } finally {
            if (fake != null) {
                fake.close();
            }
        }
    }

    private static GoPluginApiRequest request() {
        return new DefaultGoPluginApiRequest("elastic-agent", "5.0", REQUEST);
    }

    /** Nanoseconds per call, sorted. */
    private static long[] run(GoPlugin plugin, int count) throws Exception {
        long[] nanos = new long[count];
        for (int i = 0; i < count; i++) {
            long start = System.nanoTime();
            GoPluginApiResponse response = plugin.handle(request());
            nanos[i] = System.nanoTime() - start;
            if (response.responseCode() != 200) {
                throw new IllegalStateException("call " + i + " answered " + response.responseCode() + ": "
                        + response.responseBody());
            }
        }
        Arrays.sort(nanos);
        return nanos;
    }

    private static long percentile(long[] sorted, double percent) {
        int index = (int) Math.ceil(percent / 100.0 * sorted.length) - 1;
        return sorted[Math.max(0, Math.min(sorted.length - 1, index))];
    }

    private static void print(String label, long[] sorted) {
        System.out.printf(Locale.ROOT, "%-28s %8.1fus %8.1fus %8.1fus%n", label, sorted[0] / 1_000.0,
                percentile(sorted, 50) / 1_000.0, percentile(sorted, 99) / 1_000.0);
    }

    /** The baseline: the same call answered inside the JVM, no HTTP. */
    private static final class StubPlugin implements GoPlugin {
        @Override
        public void initializeGoApplicationAccessor(GoApplicationAccessor accessor) {}

        @Override
        public GoPluginApiResponse handle(GoPluginApiRequest request) {
            return DefaultGoPluginApiResponse.success(CAPABILITIES);
        }

        @Override
        public GoPluginIdentifier pluginIdentifier() {
            return DindPlugin.IDENTIFIER;
        }
    }
}
