package cd.go.contrib.dind;

import java.io.IOException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;

/**
 * The built plugin jar, and a class loader over it that sees what a GoCD plugin sees: the
 * JDK and go-plugin-api, nothing else. In particular not target/classes, so a class that
 * loads here came out of the jar.
 */
final class PluginJar {
    private PluginJar() {}

    static Path path() {
        String configured = System.getProperty("gocd.dind.plugin.jar");
        if (configured != null && !configured.isBlank()) {
            Path jar = Path.of(configured);
            if (!Files.isRegularFile(jar)) {
                throw new IllegalStateException(jar + " does not exist; build it with mvn -B package (the ITs run in mvn verify)");
            }
            return jar;
        }
        try (Stream<Path> files = Files.list(Path.of("target"))) {
            List<Path> jars = files.filter(p -> p.getFileName().toString().matches("gocd-dind-plugin-.*\\.jar")).toList();
            if (jars.size() != 1) {
                throw new IllegalStateException("expected one target/gocd-dind-plugin-*.jar, found " + jars);
            }
            return jars.get(0);
        } catch (IOException e) {
            throw new IllegalStateException("no target/ directory; run mvn -B verify", e);
        }
    }

    static URLClassLoader classLoader(Path jar) throws IOException {
        ClassLoader tests = PluginJar.class.getClassLoader();
        ClassLoader apiOnly = new ClassLoader("go-plugin-api-only", ClassLoader.getPlatformClassLoader()) {
            @Override
            protected Class<?> findClass(String name) throws ClassNotFoundException {
                if (name.startsWith("com.thoughtworks.go.plugin.api.")) {
                    return tests.loadClass(name);
                }
                throw new ClassNotFoundException(name);
            }

            @Override
            protected URL findResource(String name) {
                return name.startsWith("com/thoughtworks/go/plugin/api/") ? tests.getResource(name) : null;
            }
        };
        return new URLClassLoader("plugin-jar", new URL[]{jar.toUri().toURL()}, apiOnly);
    }
}
