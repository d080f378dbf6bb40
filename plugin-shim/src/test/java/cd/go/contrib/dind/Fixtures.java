package cd.go.contrib.dind;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;

/**
 * The shared request fixtures in {@code ../tests/fixtures/requests} (see its README):
 * {@code <request-name>[+<variant>].json}, an empty file meaning GoCD sends no body.
 */
final class Fixtures {
    private Fixtures() {}

    record Fixture(String file, String requestName, String body) {
        @Override
        public String toString() {
            return file;
        }
    }

    static Path dir() {
        String configured = System.getProperty("gocd.dind.fixtures");
        Path dir = Path.of(configured == null || configured.isBlank() ? "../tests/fixtures/requests" : configured);
        if (!Files.isDirectory(dir)) {
            throw new IllegalStateException("fixture directory " + dir.toAbsolutePath() + " is missing");
        }
        return dir;
    }

    static List<Fixture> all() {
        try (Stream<Path> files = Files.list(dir())) {
            return files.filter(path -> path.getFileName().toString().endsWith(".json"))
                    .sorted()
                    .map(Fixtures::read)
                    .toList();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static Fixture named(String file) {
        return read(dir().resolve(file));
    }

    private static Fixture read(Path path) {
        String file = path.getFileName().toString();
        String stem = file.substring(0, file.length() - ".json".length());
        int plus = stem.indexOf('+');
        String name = plus < 0 ? stem : stem.substring(0, plus);
        try {
            String body = Files.readString(path, StandardCharsets.UTF_8);
            return new Fixture(file, name, body.isEmpty() ? null : body);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
