package cd.go.contrib.dind;

import com.thoughtworks.go.plugin.api.request.DefaultGoPluginApiRequest;

import java.util.HashMap;
import java.util.Map;

/** Builds plugins configured through a map of system properties, with an empty environment. */
final class TestPlugins {
    static final String TOKEN = "s3cr3t-t0ken-for-tests-0123456789abcdef";

    private TestPlugins() {}

    static DindPlugin plugin(String serviceUrl, Map<String, String> extra) {
        Map<String, String> properties = new HashMap<>();
        properties.put("gocd.dind.service.url", serviceUrl);
        properties.put("gocd.dind.token", TOKEN);
        properties.put("gocd.dind.processor.listen", "127.0.0.1:0");
        properties.putAll(extra);
        return new DindPlugin(properties::get, name -> null);
    }

    static DindPlugin plugin(String serviceUrl) {
        return plugin(serviceUrl, Map.of());
    }

    static DefaultGoPluginApiRequest request(String name, String body) {
        DefaultGoPluginApiRequest request = new DefaultGoPluginApiRequest("elastic-agent", "5.0", name);
        request.setRequestBody(body);
        return request;
    }
}
