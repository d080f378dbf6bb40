package cd.go.contrib.dind;

import com.thoughtworks.go.plugin.api.GoApplicationAccessor;
import com.thoughtworks.go.plugin.api.request.GoApiRequest;
import com.thoughtworks.go.plugin.api.response.DefaultGoApiResponse;
import com.thoughtworks.go.plugin.api.response.GoApiResponse;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Function;

/**
 * Plays GoCD's processor side: records every {@link GoApiRequest} the plugin submits and
 * answers like a GoCD server with no agents (list-agents {@code []}, server-info with a
 * fixed server id, everything else 200 with no body) unless a test sets {@link #answer}.
 */
public class RecordingAccessor extends GoApplicationAccessor {
    public static final String SERVER_INFO = "{\"server_id\":\"test-server\",\"site_url\":\"http://gocd:8153/go\","
            + "\"secure_site_url\":\"https://gocd.example.com/go\"}";

    /** What the plugin submitted, copied out of the request. */
    public record Call(String api, String version, String body, String extension, List<String> extensionVersions) {}

    public final List<Call> calls = new CopyOnWriteArrayList<>();
    public volatile Function<GoApiRequest, GoApiResponse> answer = RecordingAccessor::likeGoCd;

    @Override
    public GoApiResponse submit(GoApiRequest request) {
        calls.add(new Call(request.api(), request.apiVersion(), request.requestBody(),
                request.pluginIdentifier().getExtension(), request.pluginIdentifier().getSupportedExtensionVersions()));
        return answer.apply(request);
    }

    public List<String> apis() {
        return calls.stream().map(Call::api).toList();
    }

    public static GoApiResponse likeGoCd(GoApiRequest request) {
        return switch (request.api()) {
            case "go.processor.elastic-agents.list-agents" -> DefaultGoApiResponse.success("[]");
            case "go.processor.server-info.get" -> DefaultGoApiResponse.success(SERVER_INFO);
            default -> new DefaultGoApiResponse(200);
        };
    }
}
