//! The agent pod on a Docker Engine, the way `podman kube play` would run it: pure
//! translation, so what the Docker runtime does is testable without a daemon.
//!
//! - dind is created first and owns the network namespace; the agent joins it
//!   (`container:<dind>`), so `127.0.0.1:2376` is the pod's loopback and nobody else's.
//! - each `emptyDir` becomes a labelled named volume; `/godata` is the same volume at
//!   the same path in both containers.
//! - each `secret` volume becomes files copied into that one container through the API
//!   before it starts, never through the host filesystem.
//! - `hostAliases` and `dnsConfig` go to dind, which owns the network namespace: the
//!   agent shares its `/etc/hosts` and `/etc/resolv.conf`.
//! - a pod field Docker cannot honour is an error, never dropped. The engine has no
//!   Secrets: the pod's own is copied in as files; any other Secret a pod names is refused.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Secret, SecurityContext, Volume};
use serde_json::Value;

use crate::pod::{label_keys, AgentPod, DIND_CONTAINER};
use crate::settings::{Cpu, Memory};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// One file placed into a container before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

#[derive(Debug, Clone)]
pub struct ContainerPlan {
    pub name: String,
    pub body: ContainerCreateBody,
    pub files: Vec<File>,
    /// Mount points of the volumes a patch added, made world-writable before the
    /// container starts: Kubernetes creates every `emptyDir` 0777, Docker a fresh volume
    /// root-owned 0755, which GoCD's agent user could not write.
    pub open_dirs: Vec<String>,
    /// Directories to put in front of the container's `PATH` (the image's, unless the
    /// pod sets one): how a command mounted by `subPath` reaches the `PATH` here.
    pub path_prepend: Vec<String>,
}

/// Docker Engine 20.10 cannot mount a file out of a volume (`subPath`). A command
/// mounted onto `/usr/local/bin` is served instead from a directory of its own, put in
/// front of the `PATH`: the same command, found the same way.
const SUBPATH_DIR: &str = "/gocd-dind/path";

#[derive(Debug, Clone)]
pub struct DockerPod {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub volumes: Vec<String>,
    /// dind first: it owns the network namespace the agent joins.
    pub dind: ContainerPlan,
    pub agent: ContainerPlan,
    pub probe: Vec<String>,
    pub probe_period_seconds: u64,
    pub probe_attempts: u32,
    pub probe_timeout_seconds: u64,
}

pub fn container_name(pod: &str, container: &str) -> String {
    format!("{pod}-{container}")
}

pub fn volume_name(pod: &str, volume: &str) -> String {
    format!("{pod}-{volume}")
}

const POD_FIELDS: &[&str] = &[
    "restartPolicy",
    "automountServiceAccountToken",
    "enableServiceLinks",
    "terminationGracePeriodSeconds",
    "initContainers",
    "containers",
    "volumes",
    "hostAliases",
    "dnsConfig",
];

const CONTAINER_FIELDS: &[&str] = &[
    "name",
    "image",
    "imagePullPolicy",
    "command",
    "args",
    "env",
    "restartPolicy",
    "securityContext",
    "startupProbe",
    "resources",
    "volumeMounts",
    "workingDir",
];

const SECURITY_FIELDS: &[&str] = &[
    "privileged",
    "allowPrivilegeEscalation",
    "capabilities",
    "seccompProfile",
    "appArmorProfile",
    "procMount",
    "runAsUser",
    "runAsGroup",
];

/// A part of the pod this translation cannot honour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// Where, as a JSON path into the pod: `spec.nodeSelector`, `spec.volumes[docker-lib].emptyDir.sizeLimit`.
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

const NOT_SUPPORTED: &str = "not supported by the docker runtime";

fn problem(path: impl Into<String>, reason: impl Into<String>) -> Unsupported {
    Unsupported { path: path.into(), reason: reason.into() }
}

/// Everything in the pod this translation does not honour.
pub fn unsupported(pod: &AgentPod) -> Vec<Unsupported> {
    let Some(spec) = &pod.pod.spec else { return vec![problem("spec", "the pod has no spec")] };
    let mut problems = Vec::new();
    let own_secret = pod.secret.metadata.name.as_deref().unwrap_or_default();
    let spec_json = serde_json::to_value(spec).unwrap_or_default();
    unknown_fields(&spec_json, POD_FIELDS, "spec", &mut problems);
    if spec.containers.len() != 1 || spec.init_containers.as_ref().is_none_or(|i| i.len() != 1) {
        problems.push(problem("spec", "the Docker runtime runs exactly one agent container and one dind sidecar"));
    }
    let init = spec.init_containers.iter().flatten().map(|c| ("initContainers", c));
    for (list, container) in spec.containers.iter().map(|c| ("containers", c)).chain(init) {
        let path = format!("spec.{list}[{}]", container.name);
        let json = serde_json::to_value(container).unwrap_or_default();
        unknown_fields(&json, CONTAINER_FIELDS, &path, &mut problems);
        if let Some(security) = json.get("securityContext") {
            unknown_fields(security, SECURITY_FIELDS, &format!("{path}.securityContext"), &mut problems);
        }
        if let Some(resources) = &container.resources {
            let amounts = resources.limits.iter().chain(&resources.requests).flatten();
            for (name, amount) in amounts {
                let fits = match name.as_str() {
                    "cpu" => Cpu::parse(&amount.0).is_ok(),
                    "memory" => Memory::parse(&amount.0).is_ok(),
                    _ => false,
                };
                if !fits {
                    problems.push(problem(
                        format!("{path}.resources"),
                        format!("{name} = {} is {NOT_SUPPORTED}", amount.0),
                    ));
                }
            }
        }
        if container.startup_probe.as_ref().is_some_and(|probe| probe.exec.is_none()) {
            problems.push(problem(format!("{path}.startupProbe"), "only exec probes are supported"));
        }
        for var in container.env.iter().flatten() {
            let var_path = format!("{path}.env[{}]", var.name);
            match var.value_from.as_ref().map(|f| &f.secret_key_ref) {
                None => {}
                Some(Some(key)) if key.name == own_secret => {}
                Some(Some(key)) => problems.push(problem(var_path, no_secret(&key.name))),
                Some(None) => problems.push(problem(var_path, "only values and secretKeyRef are supported")),
            }
        }
        for mount in container.volume_mounts.iter().flatten() {
            let json = serde_json::to_value(mount).unwrap_or_default();
            let mount_path = format!("{path}.volumeMounts[{}]", mount.mount_path);
            unknown_fields(&json, &["name", "mountPath", "readOnly", "subPath"], &mount_path, &mut problems);
            if let Some(file) = &mount.sub_path {
                if mount.mount_path != format!("/usr/local/bin/{file}") || file.contains('/') {
                    problems.push(problem(
                        format!("{mount_path}.subPath"),
                        "supported only for a command in /usr/local/bin",
                    ));
                }
            }
        }
    }
    for volume in spec.volumes.iter().flatten() {
        let path = format!("spec.volumes[{}]", volume.name);
        match (&volume.empty_dir, &volume.secret) {
            (Some(dir), None) => {
                if dir.size_limit.is_some() {
                    problems.push(problem(
                        format!("{path}.emptyDir.sizeLimit"),
                        "not supported: Docker volumes have no size limit; leave DockerStorageSize blank",
                    ));
                }
                if dir.medium.as_deref().is_some_and(|m| !m.is_empty()) {
                    problems.push(problem(format!("{path}.emptyDir.medium"), NOT_SUPPORTED));
                }
            }
            (None, Some(secret)) => {
                let name = secret.secret_name.as_deref().unwrap_or_default();
                if name != own_secret {
                    problems.push(problem(format!("{path}.secret"), no_secret(name)));
                }
            }
            _ => problems.push(problem(path, "only emptyDir and secret volumes are supported")),
        }
    }
    problems
}

fn no_secret(name: &str) -> String {
    format!("Secret '{name}' is {NOT_SUPPORTED}: the engine has no Secrets but the pod's own")
}

fn unknown_fields(value: &Value, allowed: &[&str], path: &str, problems: &mut Vec<Unsupported>) {
    for key in value.as_object().into_iter().flat_map(|o| o.keys()) {
        if !allowed.contains(&key.as_str()) {
            problems.push(problem(format!("{path}.{key}"), NOT_SUPPORTED));
        }
    }
}

pub fn translate(pod: &AgentPod) -> Result<DockerPod, Vec<Unsupported>> {
    let problems = unsupported(pod);
    if !problems.is_empty() {
        return Err(problems);
    }
    let Pod { metadata, spec, .. } = &pod.pod;
    let spec = spec.as_ref().expect("checked by unsupported");
    let name = metadata.name.clone().unwrap_or_default();
    let mut labels: HashMap<String, String> = metadata.labels.clone().unwrap_or_default().into_iter().collect();
    // Docker has no annotations: they travel as labels, so a restart can rebuild them.
    labels.extend(metadata.annotations.clone().unwrap_or_default());
    labels.insert(label_keys::POD.into(), name.clone());
    let dind_spec = &spec.init_containers.as_ref().expect("checked")[0];
    let agent_spec = &spec.containers[0];
    let dind_name = container_name(&name, &dind_spec.name);
    let probe = dind_spec.startup_probe.as_ref();
    Ok(DockerPod {
        volumes: spec
            .volumes
            .iter()
            .flatten()
            .filter(|v| v.empty_dir.is_some())
            .map(|v| volume_name(&name, &v.name))
            .collect(),
        dind: plan(&name, dind_spec, spec, &pod.secret, &labels, None),
        agent: plan(&name, agent_spec, spec, &pod.secret, &labels, Some(&dind_name)),
        probe: probe.and_then(|p| p.exec.as_ref()).and_then(|e| e.command.clone()).unwrap_or_default(),
        probe_period_seconds: probe.and_then(|p| p.period_seconds).map_or(1, |s| u64::try_from(s).unwrap_or(1).max(1)),
        probe_attempts: probe.and_then(|p| p.failure_threshold).map_or(60, |n| u32::try_from(n).unwrap_or(60).max(1)),
        probe_timeout_seconds: probe
            .and_then(|p| p.timeout_seconds)
            .map_or(5, |s| u64::try_from(s).unwrap_or(5).max(1)),
        labels,
        name,
    })
}

fn plan(
    pod: &str,
    c: &Container,
    spec: &PodSpec,
    secret: &Secret,
    labels: &HashMap<String, String>,
    join: Option<&str>,
) -> ContainerPlan {
    let volumes: BTreeMap<&str, &Volume> = spec.volumes.iter().flatten().map(|v| (v.name.as_str(), v)).collect();
    let secret_data = secret.data.clone().unwrap_or_default();
    let mut mounts = Vec::new();
    let mut files = Vec::new();
    let mut path_prepend = Vec::new();
    let mut open_dirs = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let Some(volume) = volumes.get(m.name.as_str()) else { continue };
        if volume.empty_dir.is_some() {
            let target = if m.sub_path.is_some() {
                let dir = format!("{SUBPATH_DIR}/{}", volume.name);
                path_prepend.push(dir.clone());
                dir
            } else {
                if !crate::pod::volume::BUILT.contains(&volume.name.as_str()) && m.read_only != Some(true) {
                    open_dirs.push(m.mount_path.clone());
                }
                m.mount_path.clone()
            };
            mounts.push(Mount {
                target: Some(target),
                source: Some(volume_name(pod, &volume.name)),
                typ: Some(MountType::VOLUME),
                read_only: m.read_only,
                ..Mount::default()
            });
        } else if let Some(source) = &volume.secret {
            let mode = source.default_mode.map_or(0o440, |m| u32::try_from(m).unwrap_or(0o440));
            for item in source.items.iter().flatten() {
                if let Some(bytes) = secret_data.get(&item.key) {
                    files.push(File {
                        path: format!("{}/{}", m.mount_path.trim_end_matches('/'), item.path),
                        contents: bytes.0.clone(),
                        mode,
                    });
                }
            }
        }
    }
    let env = c.env.iter().flatten().filter_map(|v| {
        let value = match (&v.value, &v.value_from) {
            (Some(value), _) => value.clone(),
            (None, Some(from)) => {
                let key = &from.secret_key_ref.as_ref()?.key;
                String::from_utf8_lossy(&secret_data.get(key)?.0).into_owned()
            }
            (None, None) => String::new(),
        };
        Some(format!("{}={value}", v.name))
    });
    let limits = c.resources.as_ref().and_then(|r| r.limits.clone()).unwrap_or_default();
    let requests = c.resources.as_ref().and_then(|r| r.requests.clone()).unwrap_or_default();
    let cpu = |q: Option<&Quantity>| q.and_then(|q| Cpu::parse(&q.0).ok());
    let memory = |q: Option<&Quantity>| q.and_then(|q| Memory::parse(&q.0).ok()).map(Memory::bytes);
    let mut container_labels = labels.clone();
    container_labels.insert(label_keys::CONTAINER.into(), c.name.clone());
    let security = c.security_context.clone().unwrap_or_default();
    let user = match (security.run_as_user, security.run_as_group) {
        (Some(u), Some(g)) => Some(format!("{u}:{g}")),
        (Some(u), None) => Some(u.to_string()),
        _ => None,
    };
    let mut host_config = HostConfig {
        mounts: Some(mounts),
        network_mode: join.map(|dind| format!("container:{dind}")),
        memory: memory(limits.get("memory")),
        memory_reservation: memory(requests.get("memory")),
        nano_cpus: cpu(limits.get("cpu")).map(Cpu::nano_cpus),
        // 1024 shares per requested core, Docker's weight for one CPU.
        cpu_shares: cpu(requests.get("cpu")).map(|c| c.nano_cpus() * 1024 / 1_000_000_000),
        ..security_host_config(&security, c.name == DIND_CONTAINER)
    };
    if join.is_none() {
        resolve_names(spec, &mut host_config);
    }
    ContainerPlan {
        name: container_name(pod, &c.name),
        files,
        open_dirs,
        path_prepend,
        body: ContainerCreateBody {
            image: c.image.clone(),
            // Kubernetes' command/args are Docker's entrypoint/cmd; a command without
            // args replaces the image's cmd too, as on Kubernetes.
            entrypoint: c.command.clone(),
            cmd: c.args.clone().or_else(|| c.command.as_ref().map(|_| Vec::new())),
            env: Some(env.collect()),
            labels: Some(container_labels),
            hostname: join.is_none().then(|| pod.to_owned()),
            working_dir: c.working_dir.clone(),
            user,
            host_config: Some(host_config),
            ..ContainerCreateBody::default()
        },
    }
}

/// `hostAliases` and `dnsConfig` for the container that owns the network namespace; a
/// container that joins it shares its `/etc/hosts` and `/etc/resolv.conf`. As with
/// `dnsPolicy: None` on Kubernetes, `nameservers` replace the engine's default servers.
fn resolve_names(spec: &PodSpec, host: &mut HostConfig) {
    let aliases = spec.host_aliases.iter().flatten();
    let hosts: Vec<String> =
        aliases.flat_map(|a| a.hostnames.iter().flatten().map(move |name| format!("{name}:{}", a.ip))).collect();
    host.extra_hosts = (!hosts.is_empty()).then_some(hosts);
    if let Some(dns) = &spec.dns_config {
        host.dns.clone_from(&dns.nameservers);
        host.dns_search.clone_from(&dns.searches);
        host.dns_options = dns.options.as_ref().map(|options| {
            options
                .iter()
                .filter_map(|o| {
                    let name = o.name.as_deref()?;
                    Some(o.value.as_deref().map_or_else(|| name.to_owned(), |value| format!("{name}:{value}")))
                })
                .collect()
        });
    }
}

fn security_host_config(security: &SecurityContext, is_dind: bool) -> HostConfig {
    let mut options = Vec::new();
    if security.seccomp_profile.as_ref().is_some_and(|p| p.type_ == "Unconfined") {
        options.push("seccomp=unconfined".to_owned());
    }
    if security.app_armor_profile.as_ref().is_some_and(|p| p.type_ == "Unconfined") {
        options.push("apparmor=unconfined".to_owned());
    }
    // `docker run --security-opt systempaths=unconfined` is a CLI spelling: the engine
    // takes it as empty masked and read-only path lists.
    let unmasked = security.proc_mount.as_deref() == Some("Unmasked");
    if security.allow_privilege_escalation == Some(false) {
        options.push("no-new-privileges".to_owned());
    }
    HostConfig {
        privileged: Some(security.privileged == Some(true) && is_dind),
        cap_add: security.capabilities.as_ref().and_then(|c| c.add.clone()).filter(|_| is_dind),
        cap_drop: security.capabilities.as_ref().and_then(|c| c.drop.clone()),
        security_opt: (!options.is_empty()).then_some(options),
        masked_paths: unmasked.then(Vec::new),
        readonly_paths: unmasked.then(Vec::new),
        ..HostConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::{build, Binding, Ownership, PodRequest};
    use crate::protocol::{JobIdentifier, Properties};
    use crate::settings::{ClusterId, ClusterSettings, ElasticSettings};

    fn pod(cluster: &[(&str, &str)], elastic: &[(&str, &str)]) -> AgentPod {
        let cluster = ClusterSettings::parse(&Properties::from_pairs(cluster), false).unwrap();
        let elastic = ElasticSettings::parse(&Properties::from_pairs(elastic)).unwrap();
        build(&PodRequest {
            name: "p1",
            ownership: &Ownership::new("s", ClusterId("c".into())),
            go_server_url: "https://gocd.example.com/go",
            cluster: &cluster,
            elastic: &elastic,
            binding: Binding::Job {
                job: &JobIdentifier { job_id: 5, ..JobIdentifier::default() },
                environment: None,
                auto_register_key: "key-5",
            },
            tls: Some(&crate::tls::mint("p1").unwrap()),
        })
        .unwrap()
    }

    #[test]
    fn the_agent_joins_dinds_namespace_and_gets_only_client_material() {
        let plan = translate(&pod(&[("agent_image", "a:1"), ("dind_security", "capabilities")], &[])).unwrap();
        assert_eq!(plan.dind.name, "p1-dind");
        let agent_host = plan.agent.body.host_config.as_ref().unwrap();
        assert_eq!(agent_host.network_mode.as_deref(), Some("container:p1-dind"));
        assert_eq!(agent_host.privileged, Some(false));
        assert!(agent_host.security_opt.as_ref().unwrap().contains(&"no-new-privileges".to_owned()));
        let dind_host = plan.dind.body.host_config.as_ref().unwrap();
        assert!(dind_host.cap_add.as_ref().unwrap().contains(&"SYS_ADMIN".to_owned()));
        assert_eq!(dind_host.masked_paths.as_deref(), Some(&[][..]));
        let paths = |files: &[File]| files.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
        assert_eq!(
            paths(&plan.agent.files),
            ["/gocd-dind/tls/ca.pem", "/gocd-dind/tls/cert.pem", "/gocd-dind/tls/key.pem"]
        );
        let agent_key = &plan.agent.files[2];
        let dind_key = &plan.dind.files[2];
        assert!(agent_key.mode == 0o440 && dind_key.mode == 0o400);
        assert_ne!(agent_key.contents, dind_key.contents);
        let env = plan.agent.body.env.as_ref().unwrap();
        assert!(env.contains(&"GO_EA_AUTO_REGISTER_KEY=key-5".to_owned()), "the register key comes from the Secret");
        assert_eq!(plan.volumes, ["p1-godata", "p1-docker-lib", "p1-docker-cli"]);
        // The CLI's subPath mount: a directory of its own in front of the PATH.
        assert_eq!(plan.agent.path_prepend, ["/gocd-dind/path/docker-cli"]);
        let cli =
            agent_host.mounts.as_ref().unwrap().iter().find(|m| m.source.as_deref() == Some("p1-docker-cli")).unwrap();
        assert_eq!(cli.target.as_deref(), Some("/gocd-dind/path/docker-cli"));
        assert!(plan.dind.path_prepend.is_empty());
        assert_eq!((plan.probe_period_seconds, plan.probe_attempts), (1, 120));
    }

    #[test]
    fn resources_in_any_unit_become_engine_limits() {
        let plan = translate(&pod(&[("agent_image", "a:1")], &[("AgentMemory", "2Gi"), ("DindCpu", "1.5")])).unwrap();
        let agent = plan.agent.body.host_config.as_ref().unwrap();
        assert_eq!((agent.memory, agent.memory_reservation), (Some(2 << 30), Some(2 << 30)));
        let dind = plan.dind.body.host_config.as_ref().unwrap();
        assert_eq!((dind.nano_cpus, dind.cpu_shares), (Some(1_500_000_000), Some(1536)));
    }

    #[test]
    fn what_docker_cannot_honour_is_listed() {
        let patch = r#"{"nodeSelector":{"a":"b"},"containers":[{"name":"agent","resources":{"limits":{"nvidia.com/gpu":"1"}}}]}"#;
        let problems =
            unsupported(&pod(&[("agent_image", "a:1")], &[("PodSpecPatch", patch), ("DockerStorageSize", "1Gi")]));
        let text = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(text.contains("spec.nodeSelector: not supported by the docker runtime"), "{text}");
        assert!(problems.iter().any(|p| p.path == "spec.volumes[docker-lib].emptyDir.sizeLimit"), "{text}");
        assert!(text.contains("nvidia.com/gpu"), "{text}");
        assert!(text.contains("DockerStorageSize"), "{text}");
    }

    #[test]
    fn host_aliases_and_dns_go_to_the_namespace_owner() {
        let patch = r#"{"hostAliases": [{"ip": "10.0.0.5", "hostnames": ["registry.ci", "cache.ci"]}],
            "dnsConfig": {"nameservers": ["10.0.0.10"], "searches": ["ci.example.com"], "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}"#;
        let plan = translate(&pod(&[("agent_image", "a:1")], &[("PodSpecPatch", patch)])).unwrap();
        let dind = plan.dind.body.host_config.as_ref().unwrap();
        assert_eq!(
            dind.extra_hosts.as_deref(),
            Some(&["registry.ci:10.0.0.5".to_owned(), "cache.ci:10.0.0.5".to_owned()][..])
        );
        assert_eq!(dind.dns.as_deref(), Some(&["10.0.0.10".to_owned()][..]));
        assert_eq!(dind.dns_search.as_deref(), Some(&["ci.example.com".to_owned()][..]));
        assert_eq!(dind.dns_options.as_deref(), Some(&["ndots:2".to_owned(), "edns0".to_owned()][..]));
        let agent = plan.agent.body.host_config.as_ref().unwrap();
        assert!(agent.extra_hosts.is_none() && agent.dns.is_none(), "the agent joins dind's namespace and files");
    }

    #[test]
    fn secrets_other_than_the_pods_own_are_refused() {
        let patch = r#"{"volumes": [{"name": "push", "secret": {"secretName": "registry"}}],
            "containers": [{"name": "agent", "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "registry", "key": "server-key.pem"}}}],
                            "volumeMounts": [{"name": "push", "mountPath": "/push"}]}]}"#;
        let problems = unsupported(&pod(&[("agent_image", "a:1")], &[("PodSpecPatch", patch)]));
        let text = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(text.contains("spec.volumes[push].secret: Secret 'registry' is not supported"), "{text}");
        assert!(text.contains("spec.containers[agent].env[T]: Secret 'registry' is not supported"), "{text}");
    }

    #[test]
    fn extra_empty_dirs_and_labels_from_a_patch_are_honoured() {
        let patch = r#"{"metadata": {"labels": {"team": "payments"}, "annotations": {"example.com/note": "x"}},
            "volumes": [{"name": "cache", "emptyDir": {}}],
            "containers": [{"name": "agent", "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}]}"#;
        let plan = translate(&pod(&[("agent_image", "a:1")], &[("PodSpecPatch", patch)])).unwrap();
        assert!(plan.volumes.contains(&"p1-cache".to_owned()), "{:?}", plan.volumes);
        let mounts = plan.agent.body.host_config.as_ref().unwrap().mounts.as_ref().unwrap();
        assert!(mounts
            .iter()
            .any(|m| m.target.as_deref() == Some("/cache") && m.source.as_deref() == Some("p1-cache")));
        assert_eq!(plan.agent.open_dirs, ["/cache"], "writable by the agent's user, as on Kubernetes");
        assert!(plan.dind.open_dirs.is_empty());
        assert_eq!(plan.labels["team"], "payments");
        assert_eq!(plan.labels["example.com/note"], "x");
        assert_eq!(plan.labels[label_keys::JOB_ID], "5");
    }
}
