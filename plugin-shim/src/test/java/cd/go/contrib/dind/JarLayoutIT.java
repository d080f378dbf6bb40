package cd.go.contrib.dind;

import com.thoughtworks.go.plugin.api.GoPlugin;
import com.thoughtworks.go.plugin.api.GoPluginIdentifier;
import com.thoughtworks.go.plugin.api.annotation.Extension;
import com.thoughtworks.go.plugin.api.annotation.UnLoad;
import com.thoughtworks.go.plugin.api.info.PluginContext;
import org.junit.jupiter.api.Test;
import org.w3c.dom.Document;
import org.w3c.dom.Element;

import javax.xml.XMLConstants;
import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.transform.stream.StreamSource;
import javax.xml.validation.SchemaFactory;
import java.io.ByteArrayInputStream;
import java.io.InputStream;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.jar.Attributes;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The packaged jar, checked the way GoCD loads it (plugin-shim/README.md): plugin.xml at
 * the root and valid against go-plugin-api's schema, one {@code @Extension} class found by
 * scanning the jar's classes outside lib/ and META-INF/, no Bundle-SymbolicName, no
 * go-plugin-api inside, and the service's static answers (for loading without the service). Runs in {@code mvn verify}, after the jar exists.
 */
class JarLayoutIT {
    private final Path jar = PluginJar.path();

    @Test
    void pluginXmlIsAtTheRootAndValid() throws Exception {
        byte[] xml;
        try (JarFile file = new JarFile(jar.toFile()); InputStream in = file.getInputStream(entry(file, "plugin.xml"))) {
            xml = in.readAllBytes();
        }
        URL xsd = GoPlugin.class.getResource("/plugin-descriptor.xsd");
        assertNotNull(xsd, "go-plugin-api ships plugin-descriptor.xsd");
        SchemaFactory.newInstance(XMLConstants.W3C_XML_SCHEMA_NS_URI).newSchema(xsd).newValidator()
                .validate(new StreamSource(new ByteArrayInputStream(xml)));

        Document document = DocumentBuilderFactory.newInstance().newDocumentBuilder().parse(new ByteArrayInputStream(xml));
        Element root = document.getDocumentElement();
        assertEquals("go-plugin", root.getTagName());
        assertEquals("gocd-dind", root.getAttribute("id"));
        assertEquals("1", root.getAttribute("version"));
        assertEquals(System.getProperty("gocd.dind.plugin.version", "0.1.0"), text(root, "version"));
        assertFalse(text(root, "name").isBlank());
        assertFalse(text(root, "description").isBlank());
        Element vendor = (Element) root.getElementsByTagName("vendor").item(0);
        assertNotNull(vendor);
        assertFalse(text(vendor, "name").isBlank());
    }

    @Test
    void theManifestHasNoBundleSymbolicName() throws Exception {
        try (JarFile file = new JarFile(jar.toFile())) {
            Attributes main = file.getManifest().getMainAttributes();
            assertFalse(main.containsKey(new Attributes.Name("Bundle-SymbolicName")), main.keySet().toString());
            assertEquals("com.sun.net.httpserver", main.getValue("DynamicImport-Package"),
                    "the processor bridge needs the JDK HTTP server wired into GoCD's OSGi class loader");
        }
    }

    @Test
    void goPluginApiIsNotBundledAndDependenciesLiveUnderLib() throws Exception {
        try (JarFile file = new JarFile(jar.toFile())) {
            for (JarEntry entry : Collections.list(file.entries())) {
                String name = entry.getName();
                assertFalse(name.startsWith("com/thoughtworks/go/plugin/"), "bundled GoCD API class: " + name);
                assertFalse(name.contains("go-plugin-api"), "bundled go-plugin-api: " + name);
                if (name.endsWith(".jar")) {
                    assertTrue(name.startsWith("lib/"), "dependency jars go under lib/: " + name);
                }
            }
        }
    }

    @Test
    void gocdFindsExactlyOneExtensionInTheJar() throws Exception {
        List<Class<?>> extensions = new ArrayList<>();
        try (URLClassLoader loader = PluginJar.classLoader(jar); JarFile file = new JarFile(jar.toFile())) {
            for (JarEntry entry : Collections.list(file.entries())) {
                String name = entry.getName();
                // Like GoCD's DefaultGoPluginActivator: every class outside lib/ and META-INF/.
                if (!name.endsWith(".class") || name.startsWith("lib/") || name.startsWith("META-INF/")) {
                    continue;
                }
                Class<?> candidate = loader.loadClass(name.substring(0, name.length() - 6).replace('/', '.'));
                assertSame(loader, candidate.getClassLoader(), name + " must come from the jar");
                if (candidate.isAnnotationPresent(Extension.class)) {
                    extensions.add(candidate);
                }
            }
            assertEquals(1, extensions.size(), "@Extension classes: " + extensions);
            Class<?> plugin = extensions.get(0);
            assertEquals("cd.go.contrib.dind.DindPlugin", plugin.getName());
            assertTrue(Modifier.isPublic(plugin.getModifiers()));
            assertFalse(Modifier.isAbstract(plugin.getModifiers()));
            assertTrue(GoPlugin.class.isAssignableFrom(plugin));

            GoPlugin instance = (GoPlugin) plugin.getConstructor().newInstance();
            GoPluginIdentifier identifier = instance.pluginIdentifier();
            assertEquals("elastic-agent", identifier.getExtension());
            assertEquals(List.of("5.0"), identifier.getSupportedExtensionVersions());

            List<Method> unload = Arrays.stream(plugin.getMethods()).filter(m -> m.isAnnotationPresent(UnLoad.class)).toList();
            assertEquals(1, unload.size());
            assertEquals(List.of(PluginContext.class), List.of(unload.get(0).getParameterTypes()));
        }
    }

    @Test
    void theServicesStaticAnswersArePackagedUnfiltered() throws Exception {
        List<String> packaged = new ArrayList<>();
        try (JarFile file = new JarFile(jar.toFile())) {
            for (JarEntry entry : Collections.list(file.entries())) {
                if (entry.getName().startsWith("static-answers/") && !entry.isDirectory()) {
                    packaged.add(entry.getName());
                }
            }
            for (String name : StaticAnswers.NAMES) {
                String path = "static-answers/" + name + ".json";
                try (InputStream in = file.getInputStream(entry(file, path))) {
                    // Byte for byte as the service answers (the Rust test checks the sources): no resource filtering.
                    assertArrayEquals(Files.readAllBytes(Path.of("src/main/resources", path)), in.readAllBytes(), path);
                }
            }
        }
        assertEquals(StaticAnswers.NAMES.stream().map(name -> "static-answers/" + name + ".json").sorted().toList(),
                packaged.stream().sorted().toList());
    }

    @Test
    void classesTargetJava17() throws Exception {
        try (JarFile file = new JarFile(jar.toFile()); InputStream in = file.getInputStream(
                entry(file, "cd/go/contrib/dind/DindPlugin.class"))) {
            byte[] header = in.readNBytes(8);
            int major = ((header[6] & 0xff) << 8) | (header[7] & 0xff);
            assertEquals(61, major, "class file version (61 = Java 17)");
        }
    }

    private static JarEntry entry(JarFile file, String name) {
        JarEntry entry = file.getJarEntry(name);
        assertNotNull(entry, name + " missing from " + file.getName());
        return entry;
    }

    private static String text(Element parent, String tag) {
        return parent.getElementsByTagName(tag).item(0).getTextContent().trim();
    }
}
