use std::collections::BTreeSet;
use std::fmt::{self, Write};
use std::time::Duration;

use super::{unknown_keys, Field};
use crate::protocol::{Properties, ValidationError};

pub const FIELDS: &[Field] = &[
    Field { key: "runtime", required: false, secure: false, label: "Runtime", help: "docker (default): one Docker Engine runs the agent pods. kubernetes: pods on a cluster." },
    Field { key: "go_server_url", required: false, secure: false, label: "GoCD server URL", help: "URL agents use to reach the server, ending in /go, e.g. https://gocd.example.com/go. Blank: the server's secure site URL." },
    Field { key: "auto_register_timeout", required: false, secure: false, label: "Auto-register timeout (minutes)", help: "A pod whose agent has not registered within this many minutes is removed. Default 10." },
    Field { key: "max_pending_agents", required: false, secure: false, label: "Maximum pending agents", help: "Pods whose agent has not registered yet. Default 10." },
    Field { key: "max_running_agents", required: false, secure: false, label: "Maximum agents", help: "All agent pods of this cluster profile, pending or running. Default 50." },
    Field { key: "agent_image", required: false, secure: false, label: "Default agent image", help: "GoCD agent image used when an elastic profile sets no Image, e.g. gocd/gocd-agent-wolfi:v25.4.0." },
    Field { key: "dind_image", required: false, secure: false, label: "Docker-in-docker image", help: "Image of the per-pod Docker daemon. Default docker:dind." },
    Field { key: "dind_security", required: false, secure: false, label: "Docker-in-docker security", help: "privileged (default), or capabilities: explicit capabilities without --privileged, for hosts that refuse privileged containers." },
    Field { key: "registry_mirror", required: false, secure: false, label: "Registry mirror", help: "Passed to each pod's dockerd as --registry-mirror, e.g. https://mirror.example.com." },
    Field { key: "allowed_secrets", required: false, secure: false, label: "Secrets elastic profiles may use", help: "Kubernetes runtime: names of Secrets in the agents' namespace that an elastic profile's PodSpecPatch may name (imagePullSecrets, secret volumes, secretKeyRef, envFrom), separated by commas, e.g. registry-push. Blank: none." },
    Field { key: "docker_host", required: false, secure: false, label: "Docker host", help: "Docker runtime: engine address, e.g. tcp://docker.example.com:2376. Blank: DOCKER_HOST of the service, else the local socket." },
    Field { key: "docker_ca_cert", required: false, secure: false, label: "Docker CA certificate", help: "Docker runtime over TLS: PEM of the CA that signed the engine's certificate." },
    Field { key: "docker_client_cert", required: false, secure: false, label: "Docker client certificate", help: "Docker runtime over TLS: PEM client certificate." },
    Field { key: "docker_client_key", required: false, secure: true, label: "Docker client key", help: "Docker runtime over TLS: PEM client private key." },
    Field { key: "kubernetes_cluster_url", required: false, secure: false, label: "Kubernetes API URL", help: "Kubernetes runtime: API server URL. Blank: the in-cluster service account." },
    Field { key: "namespace", required: false, secure: false, label: "Namespace", help: "Kubernetes runtime: namespace of the agent pods. Blank: the service account's namespace." },
    Field { key: "security_token", required: false, secure: true, label: "Security token", help: "Kubernetes runtime: bearer token. Blank: the mounted service-account token." },
    Field { key: "kubernetes_cluster_ca_cert", required: false, secure: false, label: "Kubernetes CA certificate", help: "Kubernetes runtime: PEM of the API server's CA. Blank: the in-cluster CA." },
    Field { key: "cluster_request_timeout", required: false, secure: false, label: "Cluster request timeout (ms)", help: "Kubernetes runtime: timeout of each API call in milliseconds. Default 10000." },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeKind {
    Docker,
    Kubernetes,
    /// In-process fake for tests (feature `test-doubles`); accepted only when the
    /// service runs with `--allow-memory-runtime`.
    #[cfg(feature = "test-doubles")]
    Memory,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Kubernetes => "kubernetes",
            #[cfg(feature = "test-doubles")]
            Self::Memory => "memory",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DindSecurity {
    Privileged,
    Capabilities,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerConnection {
    pub host: Option<String>,
    pub ca_cert: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubernetesConnection {
    pub cluster_url: Option<String>,
    pub namespace: Option<String>,
    pub security_token: Option<String>,
    pub ca_cert: Option<String>,
    pub request_timeout: Duration,
}

/// Which pods belong to a cluster profile. GoCD never sends profile ids, so the identity
/// is a hash of where the pods live (runtime, engine or API address, namespace) and
/// deliberately not of limits or images: raising a limit must not orphan running pods.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(pub String);

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    pub runtime: RuntimeKind,
    pub go_server_url: Option<String>,
    pub auto_register_timeout: Duration,
    pub max_pending_agents: usize,
    pub max_running_agents: usize,
    pub agent_image: Option<String>,
    pub dind_image: String,
    pub dind_security: DindSecurity,
    pub registry_mirror: Option<String>,
    /// Secrets of the namespace an elastic profile's patch may name: elastic profiles may
    /// be administered by people who must not read every Secret there.
    pub allowed_secrets: BTreeSet<String>,
    pub docker: DockerConnection,
    pub kubernetes: KubernetesConnection,
}

impl ClusterSettings {
    pub fn fields() -> &'static [Field] {
        FIELDS
    }

    /// Every problem with the profile at once, or the settings.
    #[allow(clippy::too_many_lines)] // one short stanza per profile key reads best
    #[cfg_attr(not(feature = "test-doubles"), allow(unused_variables))] // only test builds know `memory`
    pub fn parse(props: &Properties, allow_memory_runtime: bool) -> Result<Self, Vec<ValidationError>> {
        let mut errors = Vec::new();
        unknown_keys(props, FIELDS, &mut errors);
        let mut check = |key: &str, result: Result<(), String>| {
            if let Err(message) = result {
                errors.push(ValidationError::new(key, message));
            }
        };

        let runtime = match props.get("runtime").unwrap_or("docker") {
            "docker" => RuntimeKind::Docker,
            "kubernetes" => RuntimeKind::Kubernetes,
            #[cfg(feature = "test-doubles")]
            "memory" if allow_memory_runtime => RuntimeKind::Memory,
            other => {
                check("runtime", Err(format!("'{other}' is not a runtime: use docker or kubernetes")));
                RuntimeKind::Docker
            }
        };
        let go_server_url = props.get("go_server_url").map(str::to_owned);
        if let Some(url) = &go_server_url {
            check("go_server_url", validate_server_url(url));
        }
        let minutes = number(props, "auto_register_timeout", 10, 1, 24 * 60, &mut check);
        let max_pending_agents = number(props, "max_pending_agents", 10, 1, 10_000, &mut check);
        let max_running_agents = number(props, "max_running_agents", 50, 1, 10_000, &mut check);
        let dind_security = match props.get("dind_security").unwrap_or("privileged") {
            "privileged" => DindSecurity::Privileged,
            "capabilities" => DindSecurity::Capabilities,
            other => {
                check(
                    "dind_security",
                    Err(format!("'{other}' is not a dind security mode: use privileged or capabilities")),
                );
                DindSecurity::Privileged
            }
        };
        let registry_mirror = props.get("registry_mirror").map(str::to_owned);
        if let Some(mirror) = &registry_mirror {
            check("registry_mirror", validate_http_url(mirror));
        }
        let allowed_secrets = props.get("allowed_secrets").map_or(Ok(BTreeSet::new()), parse_secret_names);
        let allowed_secrets = allowed_secrets.unwrap_or_else(|message| {
            check("allowed_secrets", Err(message));
            BTreeSet::new()
        });
        for key in ["agent_image", "dind_image"] {
            if let Some(image) = props.get(key) {
                check(key, validate_image(image));
            }
        }
        let docker = DockerConnection {
            host: props.get("docker_host").map(str::to_owned),
            ca_cert: props.get("docker_ca_cert").map(str::to_owned),
            client_cert: props.get("docker_client_cert").map(str::to_owned),
            client_key: props.get("docker_client_key").map(str::to_owned),
        };
        if let Some(host) = &docker.host {
            let known = ["unix://", "tcp://", "http://", "https://"];
            if !known.iter().any(|scheme| host.starts_with(scheme)) {
                check(
                    "docker_host",
                    Err(format!("'{host}' is not a Docker address: use unix:///path or tcp://host:port")),
                );
            }
        }
        let tls_parts = [&docker.ca_cert, &docker.client_cert, &docker.client_key];
        let given = tls_parts.iter().filter(|part| part.is_some()).count();
        if given != 0 && given != 3 {
            check(
                "docker_client_cert",
                Err("Docker over TLS needs all three of docker_ca_cert, docker_client_cert and docker_client_key"
                    .into()),
            );
        }
        if given == 3 && docker.host.as_deref().is_none_or(|h| !h.starts_with("tcp://") && !h.starts_with("https://")) {
            check("docker_host", Err("Docker over TLS needs a tcp:// docker_host".into()));
        }
        for (key, pem) in [
            ("docker_ca_cert", &docker.ca_cert),
            ("docker_client_cert", &docker.client_cert),
            ("kubernetes_cluster_ca_cert", &props.get("kubernetes_cluster_ca_cert").map(str::to_owned)),
        ] {
            if pem.as_deref().is_some_and(|p| !p.contains("-----BEGIN CERTIFICATE-----")) {
                check(key, Err("must be a PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
            }
        }
        if docker.client_key.as_deref().is_some_and(|k| !k.contains("PRIVATE KEY-----")) {
            check("docker_client_key", Err("must be a PEM private key".into()));
        }
        let timeout_ms = number(props, "cluster_request_timeout", 10_000, 100, 600_000, &mut check);
        let kubernetes = KubernetesConnection {
            cluster_url: props.get("kubernetes_cluster_url").map(str::to_owned),
            namespace: props.get("namespace").map(str::to_owned),
            security_token: props.get("security_token").map(str::to_owned),
            ca_cert: props.get("kubernetes_cluster_ca_cert").map(str::to_owned),
            request_timeout: Duration::from_millis(timeout_ms as u64),
        };
        if let Some(url) = &kubernetes.cluster_url {
            check("kubernetes_cluster_url", validate_http_url(url));
        }
        if let Some(ns) = &kubernetes.namespace {
            check("namespace", validate_dns_label(ns));
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            runtime,
            go_server_url,
            auto_register_timeout: Duration::from_secs(minutes as u64 * 60),
            max_pending_agents,
            max_running_agents,
            agent_image: props.get("agent_image").map(str::to_owned),
            dind_image: props.get("dind_image").unwrap_or("docker:dind").to_owned(),
            dind_security,
            registry_mirror,
            allowed_secrets,
            docker,
            kubernetes,
        })
    }

    pub fn id(&self) -> ClusterId {
        let place = match self.runtime {
            RuntimeKind::Docker => self.docker.host.clone().unwrap_or_default(),
            RuntimeKind::Kubernetes => format!(
                "{}\n{}",
                self.kubernetes.cluster_url.as_deref().unwrap_or_default(),
                self.kubernetes.namespace.as_deref().unwrap_or_default()
            ),
            #[cfg(feature = "test-doubles")]
            RuntimeKind::Memory => String::new(),
        };
        let digest =
            ring::digest::digest(&ring::digest::SHA256, format!("{}\n{place}", self.runtime.as_str()).as_bytes());
        ClusterId(digest.as_ref()[..6].iter().fold(String::new(), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        }))
    }
}

fn number(
    props: &Properties,
    key: &str,
    default: usize,
    min: usize,
    max: usize,
    check: &mut impl FnMut(&str, Result<(), String>),
) -> usize {
    let Some(text) = props.get(key) else { return default };
    match text.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => n,
        _ => {
            check(key, Err(format!("'{text}' must be a whole number from {min} to {max}")));
            default
        }
    }
}

/// GoCD's agent bootstrapper only accepts an http(s) URL ending in `/go`; anything else
/// surfaces much later as an agent that never registers.
pub fn validate_server_url(url: &str) -> Result<(), String> {
    validate_http_url(url)?;
    if !url.trim_end_matches('/').ends_with("/go") {
        return Err(format!("'{url}' must end in /go, e.g. https://gocd.example.com/go"));
    }
    Ok(())
}

fn validate_http_url(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !rest.contains(char::is_whitespace) => Ok(()),
        _ => Err(format!("'{url}' is not an http:// or https:// URL")),
    }
}

pub fn validate_image(image: &str) -> Result<(), String> {
    let ok = !image.is_empty()
        && image.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
        && !image.starts_with(['-', '/', ':', '@']);
    if ok {
        Ok(())
    } else {
        Err(format!("'{image}' is not an image reference like registry.example.com/team/image:tag"))
    }
}

/// Comma- (or whitespace-) separated Secret names, each a Kubernetes object name. The
/// agent pods' own Secrets are refused: they hold a pod's TLS keys and register key.
fn parse_secret_names(text: &str) -> Result<BTreeSet<String>, String> {
    let names: BTreeSet<String> =
        text.split(|c: char| c == ',' || c.is_whitespace()).filter(|n| !n.is_empty()).map(str::to_owned).collect();
    let mut problems = Vec::new();
    for name in &names {
        if !is_dns_subdomain(name) {
            problems.push(format!("'{name}' is not a Secret name (lowercase letters, digits, '-', '.')"));
        } else if name.starts_with("gocd-dind-") && name.ends_with("-tls") {
            problems.push(format!("'{name}' is an agent pod's own Secret (its TLS keys and register key)"));
        }
    }
    if problems.is_empty() {
        Ok(names)
    } else {
        Err(problems.join("; "))
    }
}

/// A Kubernetes object name such as a Secret's: lowercase DNS labels joined by dots.
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn validate_dns_label(name: &str) -> Result<(), String> {
    let ok = name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("'{name}' is not a Kubernetes namespace name (lowercase letters, digits, '-', at most 63)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_profile_takes_the_defaults() {
        let s = ClusterSettings::parse(&Properties::from_pairs(&[]), false).unwrap();
        assert_eq!(s.runtime, RuntimeKind::Docker);
        assert_eq!(s.auto_register_timeout, Duration::from_secs(600));
        assert_eq!((s.max_pending_agents, s.max_running_agents), (10, 50));
        assert_eq!(s.dind_image, "docker:dind");
        assert_eq!(s.dind_security, DindSecurity::Privileged);
    }

    #[test]
    fn every_bad_value_is_reported() {
        let errors = ClusterSettings::parse(
            &Properties::from_pairs(&[
                ("runtime", "swarm"),
                ("go_server_url", "http://gocd:8153/gocd"),
                ("max_pending_agents", "ten"),
                ("pending_pods_count", "3"),
            ]),
            false,
        )
        .unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["pending_pods_count", "runtime", "go_server_url", "max_pending_agents"]);
    }

    #[test]
    #[cfg(feature = "test-doubles")]
    fn memory_runtime_only_when_allowed() {
        assert!(ClusterSettings::parse(&Properties::from_pairs(&[("runtime", "memory")]), false).is_err());
        assert!(ClusterSettings::parse(&Properties::from_pairs(&[("runtime", "memory")]), true).is_ok());
    }

    #[test]
    fn allowed_secrets_are_secret_names_and_never_a_pods_own() {
        let parse = |text: &str| ClusterSettings::parse(&Properties::from_pairs(&[("allowed_secrets", text)]), false);
        let names = parse("registry-push, maven.settings\nnpm").unwrap().allowed_secrets;
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["maven.settings", "npm", "registry-push"]);
        assert!(ClusterSettings::parse(&Properties::default(), false).unwrap().allowed_secrets.is_empty());
        let errors = parse("Registry, gocd-dind-0123456789abcdef0123-tls").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "allowed_secrets");
        assert!(errors[0].message.contains("'Registry' is not a Secret name"), "{}", errors[0].message);
        assert!(errors[0].message.contains("agent pod's own Secret"), "{}", errors[0].message);
    }

    #[test]
    fn identity_ignores_limits_but_not_place() {
        let a = ClusterSettings::parse(&Properties::from_pairs(&[("max_pending_agents", "3")]), false).unwrap();
        let b = ClusterSettings::parse(&Properties::from_pairs(&[("max_pending_agents", "4")]), false).unwrap();
        let c = ClusterSettings::parse(&Properties::from_pairs(&[("docker_host", "tcp://other:2376")]), false).unwrap();
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), c.id());
    }
}
