//! The agent pod: pure code from (cluster profile, elastic profile, create-agent request)
//! to a Kubernetes `Pod` plus the `Secret` it mounts. Both runtimes realise exactly this
//! object; the Docker runtime translates it the way `podman kube play` would.
//!
//! Layout (see docs/architecture.md):
//! - `dind`, a native sidecar (init container with `restartPolicy: Always`) started
//!   first: copies its docker CLI into the `docker-cli` volume, hands `/godata` to the
//!   agent's user, then runs dockerd on `tcp://127.0.0.1:2376` with mutual TLS only.
//!   A startup probe makes a real TLS API call, so the agent starts only once it answers.
//! - `agent`, the GoCD agent image, unprivileged, with the client certificate and the
//!   CLI mounted at `/usr/local/bin/docker`; `/godata` is shared at the same path so `docker run -v $PWD:...`
//!   resolves inside the job's own daemon.

mod allowed;
mod dind_script;
mod labels;
mod patch;
mod warm_script;

pub use allowed::{secret_references, unallowed_secrets, SecretReference};
pub use dind_script::pull_command;
pub use labels::{annotation, annotations, keys as label_keys, pool_of, Ownership, MANAGED_BY};
pub use patch::apply_spec_patch;
pub use warm_script::{claim_command, claim_payload, CLAIM_DIR, CLAIM_PIPE};

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    AppArmorProfile, Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, KeyToPath, Pod,
    PodSpec, Probe, ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

use crate::listing::PoolShape;
use crate::protocol::JobIdentifier;
use crate::settings::{elastic, ClusterSettings, Cpu, DindSecurity, ElasticSettings, Memory, PoolId};
use crate::tls::PodTls;

pub const PLUGIN_ID: &str = "gocd-dind";
pub const AGENT_CONTAINER: &str = "agent";
pub const DIND_CONTAINER: &str = "dind";
pub const DOCKER_PORT: u16 = 2376;
pub const TLS_DIR: &str = "/gocd-dind/tls";
/// Where dind leaves its docker CLI (the `docker-cli` volume).
pub const CLI_DIR: &str = "/gocd-dind/bin";
/// Where the agent sees that CLI: one file mounted onto the standard `PATH`, so the
/// image's own `PATH` (custom images often extend it) stays as it is.
pub const AGENT_CLI: &str = "/usr/local/bin/docker";
pub const WORKSPACE: &str = "/godata";
/// uid and gid of GoCD's agent images (user `go`, group root).
pub const AGENT_UID: i64 = 1000;
pub const AGENT_GID: i64 = 0;
/// How long dind may take to answer before the pod is given up: `period × threshold`.
pub const STARTUP_PERIOD_SECONDS: i32 = 1;
pub const STARTUP_FAILURE_THRESHOLD: i32 = 120;

pub mod volume {
    pub const WORKSPACE: &str = "godata";
    pub const DOCKER_LIB: &str = "docker-lib";
    pub const DOCKER_CLI: &str = "docker-cli";
    pub const DIND_TLS: &str = "dind-tls";
    pub const AGENT_TLS: &str = "agent-tls";
    /// A warm pod's agent waits for its claim here.
    pub const CLAIM: &str = "claim";
    /// Every volume `build` makes; a patch may only add others.
    pub const BUILT: &[&str] = &[WORKSPACE, DOCKER_LIB, DOCKER_CLI, DIND_TLS, AGENT_TLS, CLAIM];
}

/// Keys of the pod's Secret.
pub mod secret_key {
    pub const CA_CERT: &str = "ca.pem";
    pub const SERVER_CERT: &str = "server-cert.pem";
    pub const SERVER_KEY: &str = "server-key.pem";
    pub const CLIENT_CERT: &str = "client-cert.pem";
    pub const CLIENT_KEY: &str = "client-key.pem";
    pub const AUTO_REGISTER_KEY: &str = "auto-register-key";
}

/// Capabilities dockerd needs when it is not privileged: everything Docker 20.10 knows
/// except `SYS_RESOURCE`, which restricted hosts withhold from the bounding set.
pub const DIND_CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// Everything `build` needs; all of it is already validated.
pub struct PodRequest<'a> {
    pub name: &'a str,
    pub ownership: &'a Ownership,
    pub go_server_url: &'a str,
    pub cluster: &'a ClusterSettings,
    pub elastic: &'a ElasticSettings,
    /// The job the pod serves, or the warm pool it waits in.
    pub binding: Binding<'a>,
    /// The pod's certificates and keys; `None` in the claim of a warm pod, which has its
    /// own since it was made (and in validation's sample pod).
    pub tls: Option<&'a PodTls>,
}

/// What a pod is made for.
#[derive(Clone, Copy)]
pub enum Binding<'a> {
    /// One job: its labels and annotations, its register key and GoCD environment.
    Job { job: &'a JobIdentifier, environment: Option<&'a str>, auto_register_key: &'a str },
    /// A warm pod of a pool: nothing of any job (no register key, no job environment, no
    /// job labels); the pool, its size and idle time in its labels.
    Warm { pool: &'a PoolId, shape: PoolShape },
}

/// The pod and the Secret it mounts (TLS material and the one-shot register key).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentPod {
    pub pod: Pod,
    pub secret: Secret,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PodError {
    #[error("no agent image: set Image in the elastic profile or agent_image in the cluster profile")]
    NoAgentImage,
    #[error("PodSpecPatch: {0}")]
    Patch(String),
}

/// The elastic-profile key a part of the pod (a JSON path such as a runtime reports)
/// comes from, so validation shows a refusal under the field that caused it.
/// `DockerStorageSize` is the size limit of dind's storage volume; every other part a
/// runtime may refuse can only come from `PodSpecPatch`: the other fields build only
/// what both runtimes honour.
pub fn elastic_key_of(path: &str) -> &'static str {
    if path == format!("spec.volumes[{}].emptyDir.sizeLimit", volume::DOCKER_LIB) {
        elastic::DOCKER_STORAGE_SIZE.key
    } else {
        elastic::POD_SPEC_PATCH.key
    }
}

/// A fresh pod name, which is also the GoCD elastic agent id.
pub fn new_name() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("gocd-dind-{}", &id[..20])
}

pub fn secret_name(pod_name: &str) -> String {
    format!("{pod_name}-tls")
}

pub fn build(req: &PodRequest<'_>) -> Result<AgentPod, PodError> {
    let agent_image =
        req.elastic.image.as_deref().or(req.cluster.agent_image.as_deref()).ok_or(PodError::NoAgentImage)?;
    let dind_image = req.elastic.dind_image.as_deref().unwrap_or(&req.cluster.dind_image);
    let own_labels = match req.binding {
        Binding::Job { job, .. } => req.ownership.labels(req.name, job.job_id),
        Binding::Warm { pool, shape } => req.ownership.warm_labels(req.name, pool, shape),
    };
    let mut labels = own_labels.clone();
    let mut annotations = match req.binding {
        Binding::Job { job, environment, .. } => annotations(job, environment),
        Binding::Warm { .. } => BTreeMap::new(),
    };
    let mut spec = PodSpec {
        restart_policy: Some("Never".into()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(30),
        init_containers: Some(vec![dind_container(req, dind_image)]),
        containers: vec![agent_container(req, agent_image)],
        volumes: Some(volumes(req)),
        ..PodSpec::default()
    };
    if let Some(patch) = &req.elastic.pod_spec_patch {
        let refuse =
            |problems: Vec<String>| PodError::Patch(format!("{} ({})", problems.join("; "), allowed::summary()));
        let mut spec_patch = patch.clone();
        if let Some(metadata) = spec_patch.remove("metadata") {
            let extra = allowed::metadata(&metadata).map_err(refuse)?;
            // Never over gocd-dind's own keys: `metadata` refused those already.
            labels = extra.labels.into_iter().chain(labels).collect();
            annotations = extra.annotations.into_iter().chain(annotations).collect();
        }
        let patched = apply_spec_patch(&spec, &spec_patch).map_err(PodError::Patch)?;
        let problems = allowed::check(&spec, &patched, &secret_name(req.name));
        if !problems.is_empty() {
            return Err(refuse(problems));
        }
        spec = patched;
    }
    let metadata = ObjectMeta {
        name: Some(req.name.to_owned()),
        namespace: req.cluster.kubernetes.namespace.clone(),
        labels: Some(labels),
        annotations: Some(annotations),
        ..ObjectMeta::default()
    };
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(req.name)),
            namespace: metadata.namespace.clone(),
            labels: Some(own_labels),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(secret_data(req)),
        ..Secret::default()
    };
    Ok(AgentPod { pod: Pod { metadata, spec: Some(spec), ..Pod::default() }, secret })
}

/// The TLS material (when the request carries it) and, for a job, its register key.
fn secret_data(req: &PodRequest<'_>) -> BTreeMap<String, ByteString> {
    let tls = req.tls.into_iter().flat_map(|tls| {
        [
            (secret_key::CA_CERT, tls.ca_cert.as_str()),
            (secret_key::SERVER_CERT, &tls.server_cert),
            (secret_key::SERVER_KEY, &tls.server_key),
            (secret_key::CLIENT_CERT, &tls.client_cert),
            (secret_key::CLIENT_KEY, &tls.client_key),
        ]
    });
    let key = match req.binding {
        Binding::Job { auto_register_key, .. } => Some((secret_key::AUTO_REGISTER_KEY, auto_register_key)),
        Binding::Warm { .. } => None,
    };
    tls.chain(key).map(|(key, value)| (key.to_owned(), ByteString(value.as_bytes().to_vec()))).collect()
}

fn dind_container(req: &PodRequest<'_>, image: &str) -> Container {
    let mut args = vec!["gocd-dind".to_owned()];
    args.extend(req.cluster.registry_mirror.iter().map(|m| format!("--registry-mirror={m}")));
    args.extend(req.cluster.insecure_registries.iter().map(|r| format!("--insecure-registry={r}")));
    let security = match req.cluster.dind_security {
        DindSecurity::Privileged => SecurityContext { privileged: Some(true), ..SecurityContext::default() },
        DindSecurity::Capabilities => SecurityContext {
            privileged: Some(false),
            capabilities: Some(Capabilities {
                add: Some(DIND_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()),
                drop: None,
            }),
            seccomp_profile: Some(SeccompProfile { type_: "Unconfined".into(), localhost_profile: None }),
            app_armor_profile: Some(AppArmorProfile { type_: "Unconfined".into(), localhost_profile: None }),
            proc_mount: Some("Unmasked".into()),
            ..SecurityContext::default()
        },
    };
    Container {
        name: DIND_CONTAINER.into(),
        image: Some(image.to_owned()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["sh".into(), "-c".into(), dind_script::script(req.cluster.dind_security)]),
        args: Some(args),
        restart_policy: Some("Always".into()),
        security_context: Some(security),
        startup_probe: Some(Probe {
            exec: Some(ExecAction { command: Some(dind_script::probe_command()) }),
            period_seconds: Some(STARTUP_PERIOD_SECONDS),
            failure_threshold: Some(STARTUP_FAILURE_THRESHOLD),
            timeout_seconds: Some(5),
            ..Probe::default()
        }),
        resources: resources(req.elastic.dind_cpu, req.elastic.dind_memory),
        volume_mounts: Some(vec![
            mount(volume::DOCKER_LIB, "/var/lib/docker", false),
            mount(volume::WORKSPACE, WORKSPACE, false),
            mount(volume::DOCKER_CLI, CLI_DIR, false),
            mount(volume::DIND_TLS, TLS_DIR, true),
        ]),
        ..Container::default()
    }
}

fn agent_container(req: &PodRequest<'_>, image: &str) -> Container {
    let mut env = vec![var("GO_EA_SERVER_URL", req.go_server_url)];
    if let Binding::Job { environment, .. } = req.binding {
        env.push(EnvVar {
            name: "GO_EA_AUTO_REGISTER_KEY".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret_name(req.name),
                    key: secret_key::AUTO_REGISTER_KEY.into(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
        // GoCD matches environments before it asks should-assign-work: the agent must
        // register in exactly the job's environment, or in none.
        if let Some(environment) = environment.filter(|e| !e.is_empty()) {
            env.push(var("GO_EA_AUTO_REGISTER_ENVIRONMENT", environment));
        }
    }
    env.extend([
        var("GO_EA_AUTO_REGISTER_ELASTIC_AGENT_ID", req.name),
        var("GO_EA_AUTO_REGISTER_ELASTIC_PLUGIN_ID", PLUGIN_ID),
        var("DOCKER_HOST", &format!("tcp://127.0.0.1:{DOCKER_PORT}")),
        var("DOCKER_TLS_VERIFY", "1"),
        var("DOCKER_CERT_PATH", TLS_DIR),
    ]);
    env.extend(req.elastic.environment.iter().map(|v| var(&v.name, &v.value)));
    let mut mounts = vec![
        mount(volume::WORKSPACE, WORKSPACE, false),
        VolumeMount { sub_path: Some("docker".into()), ..mount(volume::DOCKER_CLI, AGENT_CLI, true) },
        mount(volume::AGENT_TLS, TLS_DIR, true),
    ];
    // A warm pod's agent waits for its job's claim, then runs the image's entrypoint.
    let (command, args) = match req.binding {
        Binding::Job { .. } => (None, None),
        Binding::Warm { .. } => {
            mounts.push(mount(volume::CLAIM, CLAIM_DIR, false));
            let command = vec!["sh".into(), "-c".into(), warm_script::wait_script()];
            (Some(command), Some(vec!["gocd-dind".into(), req.elastic.agent_entrypoint.clone()]))
        }
    };
    Container {
        name: AGENT_CONTAINER.into(),
        image: Some(image.to_owned()),
        image_pull_policy: Some("IfNotPresent".into()),
        env: Some(env),
        security_context: Some(SecurityContext {
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            ..SecurityContext::default()
        }),
        resources: resources(req.elastic.agent_cpu, req.elastic.agent_memory),
        volume_mounts: Some(mounts),
        command,
        args,
        ..Container::default()
    }
}

fn volumes(req: &PodRequest<'_>) -> Vec<Volume> {
    let empty = |name: &str, size: Option<Memory>| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource { size_limit: size.map(|s| Quantity(s.to_string())), medium: None }),
        ..Volume::default()
    };
    // Modes: the server key is for root in dind only; the agent's files are group-root
    // readable because GoCD's agent runs as uid 1000 with gid 0.
    let tls = |name: &str, cert: &str, key: &str, mode: i32| Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret_name(req.name)),
            default_mode: Some(mode),
            items: Some(vec![item(secret_key::CA_CERT, "ca.pem"), item(cert, "cert.pem"), item(key, "key.pem")]),
            optional: Some(false),
        }),
        ..Volume::default()
    };
    let mut volumes = vec![
        empty(volume::WORKSPACE, None),
        empty(volume::DOCKER_LIB, req.elastic.docker_storage_size),
        empty(volume::DOCKER_CLI, None),
        tls(volume::DIND_TLS, secret_key::SERVER_CERT, secret_key::SERVER_KEY, 0o400),
        tls(volume::AGENT_TLS, secret_key::CLIENT_CERT, secret_key::CLIENT_KEY, 0o440),
    ];
    if let Binding::Warm { .. } = req.binding {
        volumes.push(empty(volume::CLAIM, None));
    }
    volumes
}

fn resources(cpu: Option<Cpu>, memory: Option<Memory>) -> Option<ResourceRequirements> {
    let amounts: BTreeMap<String, Quantity> = cpu
        .map(|c| ("cpu".to_owned(), Quantity(c.to_string())))
        .into_iter()
        .chain(memory.map(|m| ("memory".to_owned(), Quantity(m.to_string()))))
        .collect();
    (!amounts.is_empty()).then(|| ResourceRequirements {
        requests: Some(amounts.clone()),
        limits: Some(amounts),
        ..ResourceRequirements::default()
    })
}

fn item(key: &str, path: &str) -> KeyToPath {
    KeyToPath { key: key.into(), path: path.into(), mode: None }
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn var(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), value_from: None }
}

#[cfg(test)]
mod tests;
