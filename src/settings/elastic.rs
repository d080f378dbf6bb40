//! The elastic agent profile: what one kind of job gets in its pod. Each key is defined
//! once below; docs/configuration.md#elastic-agent-profile describes them for operators.

use std::time::Duration;

use super::checks::validate_image;
use super::field::{Field, Input};
use super::{unknown_keys, Cpu, Memory};
use crate::protocol::{Properties, ValidationError};

pub const IMAGE: Field = Field::line("Image", "Agent image", "GoCD agent image for this profile, e.g. gocd/gocd-agent-wolfi:v25.4.0. Blank: the cluster profile's agent_image. A stock image works: the docker CLI is provided by the pod.");
pub const DIND_IMAGE: Field =
    Field::line("DindImage", "Docker-in-docker image", "Overrides the cluster profile's dind_image for this profile.");
pub const AGENT_CPU: Field =
    Field::line("AgentCpu", "Agent CPU", "CPU request and limit of the agent container: 2, 0.5 or 500m.");
pub const AGENT_MEMORY: Field =
    Field::line("AgentMemory", "Agent memory", "Memory request and limit of the agent container: 512Mi, 2Gi.");
pub const DIND_CPU: Field = Field::line(
    "DindCpu",
    "Docker daemon CPU",
    "CPU request and limit of the dind container (the job's docker builds run here).",
);
pub const DIND_MEMORY: Field =
    Field::line("DindMemory", "Docker daemon memory", "Memory request and limit of the dind container.");
pub const ENVIRONMENT: Field = Field::lines(
    "Environment",
    "Environment variables",
    "One KEY=VALUE per line for the agent container; values may contain '='. Lines starting with # are ignored.",
);
pub const DOCKER_STORAGE_SIZE: Field = Field::line(
    "DockerStorageSize",
    "Docker storage size",
    "Kubernetes runtime: size limit of the daemon's /var/lib/docker volume, e.g. 20Gi.",
);
pub const POD_SPEC_PATCH: Field = Field::lines("PodSpecPatch", "Pod spec patch", "A strategic-merge patch of the pod spec, as JSON, for what the fields don't cover. It may set placement (nodeSelector, tolerations, affinity...), DNS and host aliases, imagePullSecrets, labels and annotations under metadata, and the agent container's env, resources and extra emptyDir, configMap or secret volumes (Secrets only those the cluster profile allows). The agent container is named agent.");

pub const WARM_POOL_SIZE: Field = Field {
    key: "WarmPoolSize",
    label: "Warm pool size",
    help: "Pods of this profile kept started ahead of jobs, their Docker daemon up and PrePullImages pulled; the next job of this profile claims one (a pod still serves exactly one job and is removed after it) and a replacement starts. They count against the cluster profile's max_running_agents and max_pending_agents, and each holds a dockerd and its memory while it waits. 0: every pod is started when its job asks.",
    input: Input::Number { default: 0, min: 0, max: 50 },
};
pub const WARM_POOL_IDLE_MINUTES: Field = Field {
    key: "WarmPoolIdleMinutes",
    label: "Warm pod idle time (minutes)",
    help: "A warm pod no job claimed within this many minutes is removed, and not replaced until a job of this profile asks again: the pool of a profile no longer used drains.",
    input: Input::Number { default: 30, min: 1, max: 24 * 60 },
};
pub const PRE_PULL_IMAGES: Field = Field::lines(
    "PrePullImages",
    "Images to pre-pull",
    "One image reference per line, pulled into a warm pod's own Docker daemon before it counts as warm, so the job's first docker run of them pulls nothing (through registry_mirror when set). Lines starting with # are ignored. Only warm pods pull them; a pull that fails is reported in the job console and the status report, never fatal.",
);

pub const AGENT_ENTRYPOINT: Field = Field {
    key: "AgentEntrypoint",
    label: "Agent image entrypoint",
    help: "Kubernetes warm pools: the agent image's entrypoint, which a warm pod's agent runs once a job claims it (a pod's containers are fixed when it is made, so the agent waits in a small shell until then). GoCD's agent images use /docker-entrypoint.sh.",
    input: Input::Line { default: Some("/docker-entrypoint.sh") },
};

/// Every key, in the order GoCD's form shows them.
pub const FIELDS: &[Field] = &[
    IMAGE,
    DIND_IMAGE,
    AGENT_CPU,
    AGENT_MEMORY,
    DIND_CPU,
    DIND_MEMORY,
    ENVIRONMENT,
    DOCKER_STORAGE_SIZE,
    POD_SPEC_PATCH,
    WARM_POOL_SIZE,
    WARM_POOL_IDLE_MINUTES,
    PRE_PULL_IMAGES,
    AGENT_ENTRYPOINT,
];

/// Variables the pod itself sets; a profile overriding them would break registration or
/// point the job at another daemon.
const RESERVED_ENV: &[&str] = &["DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"];

/// Whether the pod sets this variable itself, so no profile may: `Environment` and
/// `PodSpecPatch` follow the same rule.
pub fn is_reserved_env(name: &str) -> bool {
    name.starts_with("GO_EA_") || RESERVED_ENV.contains(&name)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ElasticSettings {
    pub image: Option<String>,
    pub dind_image: Option<String>,
    pub agent_cpu: Option<Cpu>,
    pub agent_memory: Option<Memory>,
    pub dind_cpu: Option<Cpu>,
    pub dind_memory: Option<Memory>,
    pub environment: Vec<EnvVar>,
    pub docker_storage_size: Option<Memory>,
    pub pod_spec_patch: Option<serde_json::Map<String, serde_json::Value>>,
    /// Warm pods kept for this profile; 0: none, every pod is started on demand.
    pub warm_pool_size: usize,
    /// How long a warm pod may wait for a job before it is removed.
    pub warm_pool_idle: Duration,
    /// Images a warm pod pulls into its dockerd before it counts as warm.
    pub pre_pull_images: Vec<String>,
    /// What a warm pod's agent runs once claimed (Kubernetes).
    pub agent_entrypoint: String,
}

/// A blank profile: every key's default.
impl Default for ElasticSettings {
    fn default() -> Self {
        Self::parse(&Properties::default()).expect("a blank elastic profile is valid")
    }
}

impl ElasticSettings {
    pub fn fields() -> &'static [Field] {
        FIELDS
    }

    pub fn parse(props: &Properties) -> Result<Self, Vec<ValidationError>> {
        let mut errors = Vec::new();
        unknown_keys(props, FIELDS, &mut errors);
        let e = &mut errors;
        let image = |t: &str| validate_image(t).map(|()| t.to_owned());
        let settings = Self {
            image: IMAGE.parse(props, image, e),
            dind_image: DIND_IMAGE.parse(props, image, e),
            agent_cpu: AGENT_CPU.parse(props, Cpu::parse, e),
            agent_memory: AGENT_MEMORY.parse(props, Memory::parse, e),
            dind_cpu: DIND_CPU.parse(props, Cpu::parse, e),
            dind_memory: DIND_MEMORY.parse(props, Memory::parse, e),
            environment: ENVIRONMENT.parse(props, parse_environment, e).unwrap_or_default(),
            docker_storage_size: DOCKER_STORAGE_SIZE.parse(props, Memory::parse, e),
            pod_spec_patch: POD_SPEC_PATCH.parse(props, parse_patch, e),
            warm_pool_size: WARM_POOL_SIZE.number(props, e),
            warm_pool_idle: Duration::from_secs(WARM_POOL_IDLE_MINUTES.number(props, e) as u64 * 60),
            pre_pull_images: PRE_PULL_IMAGES.parse(props, parse_images, e).unwrap_or_default(),
            agent_entrypoint: AGENT_ENTRYPOINT
                .parse(props, |t| absolute_path(t).map(|()| t.to_owned()), e)
                .or_else(|| AGENT_ENTRYPOINT.default_value())
                .unwrap_or_default(),
        };
        if errors.is_empty() {
            Ok(settings)
        } else {
            Err(errors)
        }
    }
}

fn parse_patch(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(patch)) => Ok(patch),
        Ok(_) => Err("must be a JSON object, e.g. {\"nodeSelector\": {\"pool\": \"ci\"}}".into()),
        Err(e) => Err(format!("is not valid JSON: {e}")),
    }
}

/// An absolute path of a program in the image: it is run as it is, with no shell.
fn absolute_path(text: &str) -> Result<(), String> {
    let plain = text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c));
    if text.starts_with('/') && plain {
        Ok(())
    } else {
        Err(format!("'{text}' is not an absolute path like /docker-entrypoint.sh"))
    }
}

/// One image reference per line, each at most once; blank lines and `#` comments skipped.
fn parse_images(text: &str) -> Result<Vec<String>, String> {
    let mut images: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Err(why) = validate_image(line) {
            problems.push(format!("line {number}: {why}"));
        } else if images.iter().any(|i| i == line) {
            problems.push(format!("line {number}: {line} is listed twice"));
        } else {
            images.push(line.to_owned());
        }
    }
    if problems.is_empty() {
        Ok(images)
    } else {
        Err(problems.join("; "))
    }
}

/// `KEY=VALUE` lines; only the first `=` separates, so values keep theirs.
fn parse_environment(text: &str) -> Result<Vec<EnvVar>, String> {
    let mut vars: Vec<EnvVar> = Vec::new();
    let mut problems = Vec::new();
    for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            problems.push(format!("line {number} has no '=': write KEY=VALUE"));
            continue;
        };
        let name = name.trim();
        let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            problems.push(format!("line {number}: '{name}' is not a variable name (letters, digits, '_')"));
        } else if is_reserved_env(name) {
            problems.push(format!("line {number}: {name} is set by gocd-dind and cannot be overridden"));
        } else if vars.iter().any(|v| v.name == name) {
            problems.push(format!("line {number}: {name} is set twice"));
        } else {
            vars.push(EnvVar { name: name.to_owned(), value: value.to_owned() });
        }
    }
    if problems.is_empty() {
        Ok(vars)
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_values_keep_their_equals_signs() {
        let s = ElasticSettings::parse(&Properties::from_pairs(&[("Environment", "A=x=y\n# note\n\nB=")])).unwrap();
        assert_eq!(
            s.environment,
            [EnvVar { name: "A".into(), value: "x=y".into() }, EnvVar { name: "B".into(), value: String::new() }]
        );
    }

    #[test]
    fn warm_pool_keys_have_their_defaults_and_bounds() {
        let blank = ElasticSettings::parse(&Properties::default()).unwrap();
        assert_eq!((blank.warm_pool_size, blank.warm_pool_idle), (0, Duration::from_secs(30 * 60)));
        assert!(blank.pre_pull_images.is_empty());
        let set = ElasticSettings::parse(&Properties::from_pairs(&[
            ("WarmPoolSize", "2"),
            ("WarmPoolIdleMinutes", "5"),
            ("PrePullImages", &format!("# tools\nbusybox:1.36\n\nregistry.example.com:5000/team/build@{DIGEST}\n")),
        ]))
        .unwrap();
        assert_eq!((set.warm_pool_size, set.warm_pool_idle), (2, Duration::from_secs(300)));
        assert_eq!(
            set.pre_pull_images,
            ["busybox:1.36".to_owned(), format!("registry.example.com:5000/team/build@{DIGEST}")]
        );
        let errors = ElasticSettings::parse(&Properties::from_pairs(&[
            ("WarmPoolSize", "-1"),
            ("WarmPoolIdleMinutes", "0"),
            ("PrePullImages", "busybox\nnot an image\nbusybox"),
        ]))
        .unwrap_err();
        let messages: Vec<_> = errors.iter().map(|e| format!("{}: {}", e.key, e.message)).collect();
        assert_eq!(
            messages,
            [
                "WarmPoolSize: '-1' must be a whole number from 0 to 50",
                "WarmPoolIdleMinutes: '0' must be a whole number from 1 to 1440",
                "PrePullImages: line 2: 'not an image' is not an image reference like registry.example.com/team/image:tag: the repository name 'not an image' must be lowercase letters and digits, separated by '.', '_', '__' or '-', with '/' between parts; line 3: busybox is listed twice",
            ]
        );
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// What Docker would refuse only at pull time, after a pod was made for it, is
    /// refused with the profile, under its key, saying what is wrong.
    #[test]
    fn an_image_reference_follows_the_registry_grammar() {
        let errors = ElasticSettings::parse(&Properties::from_pairs(&[
            ("Image", "gocd/Agent:v1"),
            ("DindImage", "docker:dind@"),
            ("PrePullImages", "busybox:1.36\nregistry.example.com/team/\nmaven@sha256:0123"),
        ]))
        .unwrap_err();
        let messages: Vec<_> = errors.iter().map(|e| format!("{}: {}", e.key, e.message)).collect();
        let like = "is not an image reference like registry.example.com/team/image:tag";
        assert_eq!(
            messages,
            [
                format!("Image: 'gocd/Agent:v1' {like}: the repository name 'gocd/Agent' must be lowercase"),
                format!("DindImage: 'docker:dind@' {like}: '@' must be followed by a digest, e.g. @sha256:<64 hex digits>"),
                format!(
                    "PrePullImages: line 2: 'registry.example.com/team/' {like}: the repository name has an empty part (a leading, trailing or doubled '/'); line 3: 'maven@sha256:0123' {like}: 'sha256:0123' is not a digest: an algorithm, ':' and at least 32 hex digits, e.g. sha256:<64 hex digits>"
                ),
            ]
        );
    }

    #[test]
    fn bad_values_and_unknown_keys_are_all_reported() {
        let errors = ElasticSettings::parse(&Properties::from_pairs(&[
            ("AgentMemory", "2X"),
            ("AgentCpu", "lots"),
            ("Environment", "NOEQUALS\nGO_EA_SERVER_URL=x"),
            ("PodSpecType", "properties"),
            ("PodSpecPatch", "[1]"),
        ]))
        .unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["PodSpecType", "AgentCpu", "AgentMemory", "Environment", "PodSpecPatch"]);
        assert!(errors[3].message.contains("line 1") && errors[3].message.contains("line 2"));
    }
}
