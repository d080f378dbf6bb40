//! The cluster profile: where agent pods run, their limits, default images and how dind
//! is secured. Each key is defined once, in `cluster/fields.rs`;
//! docs/configuration.md#cluster-profile describes them for operators.

use std::collections::BTreeSet;
use std::fmt::{self, Write};
use std::time::Duration;

mod fields;

pub use fields::*;

use super::checks::{
    parse_registries, parse_secret_names, validate_dns_label, validate_http_url, validate_image, validate_server_url,
};
use super::field::{Choice, Field};
use super::unknown_keys;
use crate::protocol::{Properties, ValidationError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeKind {
    Docker,
    Kubernetes,
    /// In-process fake for tests (feature `test-doubles`); accepted only when the
    /// service runs with `--allow-memory-runtime`, and never offered in the form.
    #[cfg(feature = "test-doubles")]
    Memory,
}

impl Choice for RuntimeKind {
    const ALL: &'static [Self] = &[Self::Docker, Self::Kubernetes];
    const WHAT: &'static str = "a runtime";
    const FIELD: Field = RUNTIME;

    fn name(self) -> &'static str {
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

impl Choice for DindSecurity {
    const ALL: &'static [Self] = &[Self::Privileged, Self::Capabilities];
    const WHAT: &'static str = "a dind security mode";
    const FIELD: Field = DIND_SECURITY;

    fn name(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::Capabilities => "capabilities",
        }
    }
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

/// Which cluster pods belong to: an engine, or a Kubernetes namespace, as the engine
/// itself tells it (`Runtime::identity`: the engine's ID, the namespace's UID), never as
/// a profile spells its address. Profiles that reach one engine share its pods, and
/// re-spelling an address (`tcp://host:2376/`, a blank namespace for the service
/// account's own) or raising a limit orphans nothing. GoCD never sends profile ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(pub String);

impl ClusterId {
    /// The cluster an engine identity names, within one kind of runtime.
    pub fn of_identity(runtime: RuntimeKind, identity: &str) -> Self {
        Self(short_hash(&format!("{}\n{identity}", runtime.name())))
    }
}

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
    /// Registries each pod's dockerd reaches over plain HTTP (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// Secrets of the namespace an elastic profile's patch may name: elastic profiles may
    /// be administered by people who must not read every Secret there.
    pub allowed_secrets: BTreeSet<String>,
    pub docker: DockerConnection,
    pub kubernetes: KubernetesConnection,
}

/// A text value that `check` accepts; `None` when blank or refused (then in `errors`).
fn text(
    field: &Field,
    props: &Properties,
    check: fn(&str) -> Result<(), String>,
    errors: &mut Vec<ValidationError>,
) -> Option<String> {
    field.parse(props, |t| check(t).map(|()| t.to_owned()), errors)
}

fn docker_address(host: &str) -> Result<(), String> {
    let known = ["unix://", "tcp://", "http://", "https://"];
    if known.iter().any(|scheme| host.starts_with(scheme)) {
        Ok(())
    } else {
        Err(format!("'{host}' is not a Docker address: use unix:///path or tcp://host:port"))
    }
}

fn pem_certificate(pem: &str) -> Result<(), String> {
    if pem.contains("-----BEGIN CERTIFICATE-----") {
        Ok(())
    } else {
        Err("must be a PEM certificate (-----BEGIN CERTIFICATE-----)".into())
    }
}

fn pem_private_key(pem: &str) -> Result<(), String> {
    if pem.contains("PRIVATE KEY-----") {
        Ok(())
    } else {
        Err("must be a PEM private key".into())
    }
}

impl ClusterSettings {
    pub fn fields() -> &'static [Field] {
        FIELDS
    }

    /// Every problem with the profile at once, or the settings.
    #[cfg_attr(not(feature = "test-doubles"), allow(unused_variables))] // only test builds know `memory`
    pub fn parse(props: &Properties, allow_memory_runtime: bool) -> Result<Self, Vec<ValidationError>> {
        let mut errors = Vec::new();
        unknown_keys(props, FIELDS, &mut errors);
        let e = &mut errors;
        let runtime = match RUNTIME.get(props) {
            #[cfg(feature = "test-doubles")]
            Some(name) if allow_memory_runtime && name == RuntimeKind::Memory.name() => RuntimeKind::Memory,
            _ => RuntimeKind::from_profile(props, e),
        };
        let go_server_url = text(&GO_SERVER_URL, props, validate_server_url, e);
        let minutes = AUTO_REGISTER_TIMEOUT.number(props, e);
        let max_pending_agents = MAX_PENDING_AGENTS.number(props, e);
        let max_running_agents = MAX_RUNNING_AGENTS.number(props, e);
        let dind_security = DindSecurity::from_profile(props, e);
        let registry_mirror = text(&REGISTRY_MIRROR, props, validate_http_url, e);
        let insecure_registries = INSECURE_REGISTRIES.parse(props, parse_registries, e).unwrap_or_default();
        let allowed_secrets = ALLOWED_SECRETS.parse(props, parse_secret_names, e).unwrap_or_default();
        let agent_image = text(&AGENT_IMAGE, props, validate_image, e);
        let dind_image = text(&DIND_IMAGE, props, validate_image, e);
        let docker = Self::docker(props, e);
        let timeout_ms = CLUSTER_REQUEST_TIMEOUT.number(props, e);
        let kubernetes = KubernetesConnection {
            cluster_url: text(&KUBERNETES_CLUSTER_URL, props, validate_http_url, e),
            namespace: text(&NAMESPACE, props, validate_dns_label, e),
            security_token: SECURITY_TOKEN.get(props).map(str::to_owned),
            ca_cert: text(&KUBERNETES_CLUSTER_CA_CERT, props, pem_certificate, e),
            request_timeout: Duration::from_millis(timeout_ms as u64),
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            runtime,
            go_server_url,
            auto_register_timeout: Duration::from_secs(minutes as u64 * 60),
            max_pending_agents,
            max_running_agents,
            agent_image,
            dind_image: dind_image.or_else(|| DIND_IMAGE.default_value()).unwrap_or_default(),
            dind_security,
            registry_mirror,
            insecure_registries,
            allowed_secrets,
            docker,
            kubernetes,
        })
    }

    /// The Docker keys, which are checked together: TLS needs all three parts and a
    /// `tcp://` address.
    fn docker(props: &Properties, errors: &mut Vec<ValidationError>) -> DockerConnection {
        let host = text(&DOCKER_HOST, props, docker_address, errors);
        let parts = [&DOCKER_CA_CERT, &DOCKER_CLIENT_CERT, &DOCKER_CLIENT_KEY];
        let given = parts.iter().filter(|field| field.get(props).is_some()).count();
        let connection = DockerConnection {
            host,
            ca_cert: text(&DOCKER_CA_CERT, props, pem_certificate, errors),
            client_cert: text(&DOCKER_CLIENT_CERT, props, pem_certificate, errors),
            client_key: text(&DOCKER_CLIENT_KEY, props, pem_private_key, errors),
        };
        if given != 0 && given != 3 {
            errors.push(ValidationError::new(
                DOCKER_CLIENT_CERT.key,
                "Docker over TLS needs all three of docker_ca_cert, docker_client_cert and docker_client_key",
            ));
        }
        let tcp = DOCKER_HOST.get(props).is_some_and(|h| h.starts_with("tcp://") || h.starts_with("https://"));
        if given == 3 && !tcp {
            errors.push(ValidationError::new(DOCKER_HOST.key, "Docker over TLS needs a tcp:// docker_host"));
        }
        connection
    }

    /// Where the profile says its pods live, as spelled (runtime, engine or API address,
    /// namespace): the key under which runtimes and engine identities are cached. Not
    /// the cluster: two spellings of one place are one cluster ([`ClusterId::of_identity`]).
    /// Deliberately not of limits or images.
    pub fn place(&self) -> String {
        let place = match self.runtime {
            RuntimeKind::Docker => self.docker.host.clone().unwrap_or_default(),
            RuntimeKind::Kubernetes => format!(
                "{}\n{}",
                self.kubernetes.cluster_url.as_deref().unwrap_or_default(),
                self.kubernetes.namespace.as_deref().unwrap_or_default()
            ),
            // Tests play several engines by `docker_host`.
            #[cfg(feature = "test-doubles")]
            RuntimeKind::Memory => self.docker.host.clone().unwrap_or_default(),
        };
        short_hash(&format!("{}\n{place}", self.runtime.name()))
    }
}

/// 12 hex digits of SHA-256: short enough for a label value, long enough not to collide
/// among one server's clusters.
pub(crate) fn short_hash(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..6].iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
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
    fn insecure_registries_are_host_and_port_each() {
        let parse =
            |text: &str| ClusterSettings::parse(&Properties::from_pairs(&[("insecure_registries", text)]), false);
        let registries = parse("172.17.0.2:5000, registry.ci.internal:5000\n[::1]:5000").unwrap().insecure_registries;
        assert_eq!(registries, ["172.17.0.2:5000", "registry.ci.internal:5000", "[::1]:5000"]);
        assert!(ClusterSettings::parse(&Properties::default(), false).unwrap().insecure_registries.is_empty());
        let errors = parse("http://10.0.0.5:5000, --debug").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "insecure_registries");
        let message = &errors[0].message;
        assert!(
            message.contains("'http://10.0.0.5:5000' is not a registry address") && message.contains("'--debug'"),
            "{message}"
        );
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
    fn place_ignores_limits_but_not_the_address() {
        let a = ClusterSettings::parse(&Properties::from_pairs(&[("max_pending_agents", "3")]), false).unwrap();
        let b = ClusterSettings::parse(&Properties::from_pairs(&[("max_pending_agents", "4")]), false).unwrap();
        let c = ClusterSettings::parse(&Properties::from_pairs(&[("docker_host", "tcp://other:2376")]), false).unwrap();
        assert_eq!(a.place(), b.place());
        assert_ne!(a.place(), c.place());
    }

    #[test]
    fn a_cluster_is_its_engines_identity_within_a_runtime() {
        let id = |runtime, identity| ClusterId::of_identity(runtime, identity);
        assert_eq!(id(RuntimeKind::Docker, "engine-1"), id(RuntimeKind::Docker, "engine-1"));
        assert_ne!(id(RuntimeKind::Docker, "engine-1"), id(RuntimeKind::Docker, "engine-2"));
        assert_ne!(id(RuntimeKind::Docker, "engine-1"), id(RuntimeKind::Kubernetes, "engine-1"));
        assert_eq!(id(RuntimeKind::Docker, "engine-1").0.len(), 12);
    }
}
