package cd.go.contrib.dind;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

/**
 * Captures what GoCD's plugin {@code Logger} writes. Outside GoCD it has no logging
 * service and prints to System.out (debug/info) and System.err (warn/error), so the
 * tests swap those streams for the duration of a block.
 */
final class Logs implements AutoCloseable {
    private final PrintStream out = System.out;
    private final PrintStream err = System.err;
    private final ByteArrayOutputStream captured = new ByteArrayOutputStream();

    static Logs capture() {
        return new Logs();
    }

    private Logs() {
        PrintStream sink = new PrintStream(captured, true, StandardCharsets.UTF_8);
        System.setOut(sink);
        System.setErr(sink);
    }

    String text() {
        synchronized (captured) {
            return captured.toString(StandardCharsets.UTF_8);
        }
    }

    @Override
    public void close() {
        System.setOut(out);
        System.setErr(err);
    }
}
