//! The cluster profile's keys, one definition each (see `settings/field.rs`), in the
//! order GoCD's form shows them.

use super::{DindSecurity, RuntimeKind};
use crate::settings::field::{Choice, Field, Input};

pub const RUNTIME: Field = Field {
    key: "runtime",
    label: "Runtime",
    help: "docker: one Docker Engine runs the agent pods. kubernetes: pods on a cluster.",
    input: Input::Choice { names: RuntimeKind::names },
};
pub const GO_SERVER_URL: Field = Field::line("go_server_url", "GoCD server URL", "URL agents use to reach the server, ending in /go, e.g. https://gocd.example.com/go. Blank: the server's secure site URL.");
pub const AUTO_REGISTER_TIMEOUT: Field = Field {
    key: "auto_register_timeout",
    label: "Auto-register timeout (minutes)",
    help: "A pod whose agent has not registered within this many minutes is removed.",
    input: Input::Number { default: 10, min: 1, max: 24 * 60 },
};
pub const MAX_PENDING_AGENTS: Field = Field {
    key: "max_pending_agents",
    label: "Maximum pending agents",
    help: "Pods whose agent has not registered yet.",
    input: Input::Number { default: 10, min: 1, max: 10_000 },
};
pub const MAX_RUNNING_AGENTS: Field = Field {
    key: "max_running_agents",
    label: "Maximum agents",
    help: "All agent pods of this cluster profile, pending or running.",
    input: Input::Number { default: 50, min: 1, max: 10_000 },
};
pub const AGENT_IMAGE: Field = Field::line(
    "agent_image",
    "Default agent image",
    "GoCD agent image used when an elastic profile sets no Image, e.g. gocd/gocd-agent-wolfi:v25.4.0.",
);
pub const DIND_IMAGE: Field = Field {
    key: "dind_image",
    label: "Docker-in-docker image",
    help: "Image of the per-pod Docker daemon.",
    input: Input::Line { default: Some("docker:dind") },
};
pub const DIND_SECURITY: Field = Field { key: "dind_security", label: "Docker-in-docker security", help: "privileged, or capabilities: explicit capabilities without --privileged, for hosts that refuse privileged containers.", input: Input::Choice { names: DindSecurity::names } };
pub const REGISTRY_MIRROR: Field = Field::line(
    "registry_mirror",
    "Registry mirror",
    "Passed to each pod's dockerd as --registry-mirror, e.g. https://mirror.example.com.",
);
pub const INSECURE_REGISTRIES: Field = Field::line("insecure_registries", "Insecure registries", "Registries each pod's dockerd may reach over plain HTTP (or TLS it does not verify), as host:port separated by commas: dockerd's --insecure-registry for each, e.g. 10.0.0.5:5000. Only for a registry on a network you trust, such as a test registry; prefer TLS. Blank: none.");
pub const ALLOWED_SECRETS: Field = Field::line("allowed_secrets", "Secrets elastic profiles may use", "Kubernetes runtime: names of Secrets in the agents' namespace that an elastic profile's PodSpecPatch may name (imagePullSecrets, secret volumes, secretKeyRef, envFrom), separated by commas, e.g. registry-push. Blank: none.");
pub const DOCKER_HOST: Field = Field::line("docker_host", "Docker host", "Docker runtime: engine address, e.g. tcp://docker.example.com:2376. Blank: DOCKER_HOST of the service, else the local socket.");
pub const DOCKER_CA_CERT: Field = Field::lines(
    "docker_ca_cert",
    "Docker CA certificate",
    "Docker runtime over TLS: PEM of the CA that signed the engine's certificate.",
);
pub const DOCKER_CLIENT_CERT: Field =
    Field::lines("docker_client_cert", "Docker client certificate", "Docker runtime over TLS: PEM client certificate.");
pub const DOCKER_CLIENT_KEY: Field = Field {
    key: "docker_client_key",
    label: "Docker client key",
    help: "Docker runtime over TLS: PEM client private key.",
    input: Input::Secret { lines: true },
};
pub const KUBERNETES_CLUSTER_URL: Field = Field::line(
    "kubernetes_cluster_url",
    "Kubernetes API URL",
    "Kubernetes runtime: API server URL. Blank: the in-cluster service account.",
);
pub const NAMESPACE: Field = Field::line(
    "namespace",
    "Namespace",
    "Kubernetes runtime: namespace of the agent pods. Blank: the service account's namespace.",
);
pub const SECURITY_TOKEN: Field = Field {
    key: "security_token",
    label: "Security token",
    help: "Kubernetes runtime: bearer token. Blank: the mounted service-account token.",
    input: Input::Secret { lines: false },
};
pub const KUBERNETES_CLUSTER_CA_CERT: Field = Field::lines(
    "kubernetes_cluster_ca_cert",
    "Kubernetes CA certificate",
    "Kubernetes runtime: PEM of the API server's CA. Blank: the in-cluster CA.",
);
pub const CLUSTER_REQUEST_TIMEOUT: Field = Field {
    key: "cluster_request_timeout",
    label: "Cluster request timeout (ms)",
    help: "Kubernetes runtime: timeout of each API call in milliseconds.",
    input: Input::Number { default: 10_000, min: 100, max: 600_000 },
};

/// Every key, in the order GoCD's form shows them.
pub const FIELDS: &[Field] = &[
    RUNTIME,
    GO_SERVER_URL,
    AUTO_REGISTER_TIMEOUT,
    MAX_PENDING_AGENTS,
    MAX_RUNNING_AGENTS,
    AGENT_IMAGE,
    DIND_IMAGE,
    DIND_SECURITY,
    REGISTRY_MIRROR,
    INSECURE_REGISTRIES,
    ALLOWED_SECRETS,
    DOCKER_HOST,
    DOCKER_CA_CERT,
    DOCKER_CLIENT_CERT,
    DOCKER_CLIENT_KEY,
    KUBERNETES_CLUSTER_URL,
    NAMESPACE,
    SECURITY_TOKEN,
    KUBERNETES_CLUSTER_CA_CERT,
    CLUSTER_REQUEST_TIMEOUT,
];

/// The keys that shape an agent pod (besides the elastic profile and the GoCD server URL):
/// a warm pod made under other values would be stale, so they are part of its pool's
/// identity ([`crate::settings::PoolId`]). Limits, timeouts and connection keys are not.
pub const POD_SHAPING: &[Field] = &[AGENT_IMAGE, DIND_IMAGE, DIND_SECURITY, REGISTRY_MIRROR, INSECURE_REGISTRIES];
