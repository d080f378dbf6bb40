package cd.go.contrib.dind;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The answers GoCD's load-time requests get when the service cannot be reached: exactly
 * what the service of the same release answers.
 *
 * <p>The icon, capabilities, profile metadata and views (and the generic plugin-settings
 * pair) depend on nothing but the service's version. The service writes them into
 * {@code src/main/resources/static-answers/<request-name>.json}, byte for byte as its
 * router answers, and a Rust test fails when they are stale (README.md, "Regenerating the
 * static answers"). migrate-config is answered by echoing GoCD's body, which is what the
 * service answers too: GoCD replaces the plugin's profiles with the answer, so the echo
 * keeps them.
 */
final class StaticAnswers {
    static final String MIGRATE_CONFIG = "cd.go.elastic-agent.migrate-config";
    static final String RESOURCE_DIR = "/static-answers/";
    /** GoCD's body-less load-time requests (docs/protocol.md, "Profiles, views and load-time requests"). */
    static final List<String> NAMES = List.of(
            "cd.go.elastic-agent.get-icon",
            "cd.go.elastic-agent.get-capabilities",
            "cd.go.elastic-agent.get-elastic-agent-profile-metadata",
            "cd.go.elastic-agent.get-elastic-agent-profile-view",
            "cd.go.elastic-agent.get-cluster-profile-metadata",
            "cd.go.elastic-agent.get-cluster-profile-view",
            "go.plugin-settings.get-configuration",
            "go.plugin-settings.get-view");

    private final Map<String, String> copies;
    private final List<String> missing;

    private StaticAnswers(Map<String, String> copies, List<String> missing) {
        this.copies = Map.copyOf(copies);
        this.missing = List.copyOf(missing);
    }

    /** The copies packaged in the jar beside this class. */
    static StaticAnswers fromJar() {
        Map<String, String> copies = new HashMap<>();
        List<String> missing = new ArrayList<>();
        for (String name : NAMES) {
            try (InputStream in = StaticAnswers.class.getResourceAsStream(RESOURCE_DIR + name + ".json")) {
                if (in == null) {
                    missing.add(name);
                } else {
                    copies.put(name, new String(in.readAllBytes(), StandardCharsets.UTF_8));
                }
            } catch (IOException e) {
                missing.add(name + " (" + e + ")");
            }
        }
        return new StaticAnswers(copies, missing);
    }

    /** Requests whose copy is not in the jar (a broken build); empty in a jar built by Maven. */
    List<String> missing() {
        return missing;
    }

    /**
     * The answer the service would give to {@code name} with {@code body}, or null when only
     * the service can answer it.
     */
    String withoutTheService(String name, String body) {
        if (MIGRATE_CONFIG.equals(name)) {
            // No body: the service would refuse it (400) too, so there is nothing to echo.
            return body == null || body.isBlank() ? null : body;
        }
        return copies.get(name);
    }

    /** The jar's copy of a static answer, or null (also for migrate-config, which has none). */
    String copyOf(String name) {
        return copies.get(name);
    }
}
