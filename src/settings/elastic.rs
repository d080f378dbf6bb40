use super::cluster::validate_image;
use super::{unknown_keys, Cpu, Field, Memory};
use crate::protocol::{Properties, ValidationError};

pub const FIELDS: &[Field] = &[
    Field { key: "Image", required: false, secure: false, label: "Agent image", help: "GoCD agent image for this profile, e.g. gocd/gocd-agent-wolfi:v25.4.0. Blank: the cluster profile's agent_image. A stock image works: the docker CLI is provided by the pod." },
    Field { key: "DindImage", required: false, secure: false, label: "Docker-in-docker image", help: "Overrides the cluster profile's dind_image for this profile." },
    Field { key: "AgentCpu", required: false, secure: false, label: "Agent CPU", help: "CPU request and limit of the agent container: 2, 0.5 or 500m." },
    Field { key: "AgentMemory", required: false, secure: false, label: "Agent memory", help: "Memory request and limit of the agent container: 512Mi, 2Gi." },
    Field { key: "DindCpu", required: false, secure: false, label: "Docker daemon CPU", help: "CPU request and limit of the dind container (the job's docker builds run here)." },
    Field { key: "DindMemory", required: false, secure: false, label: "Docker daemon memory", help: "Memory request and limit of the dind container." },
    Field { key: "Environment", required: false, secure: false, label: "Environment variables", help: "One KEY=VALUE per line for the agent container; values may contain '='. Lines starting with # are ignored." },
    Field { key: "DockerStorageSize", required: false, secure: false, label: "Docker storage size", help: "Kubernetes runtime: size limit of the daemon's /var/lib/docker volume, e.g. 20Gi." },
    Field { key: "PodSpecPatch", required: false, secure: false, label: "Pod spec patch", help: "Kubernetes runtime: a strategic-merge patch of the pod spec, as JSON, for what the fields don't cover (nodeSelector, tolerations...). Containers merge by name: agent, dind." },
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

#[derive(Debug, Clone, Default, PartialEq)]
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
}

impl ElasticSettings {
    pub fn fields() -> &'static [Field] {
        FIELDS
    }

    pub fn parse(props: &Properties) -> Result<Self, Vec<ValidationError>> {
        let mut errors = Vec::new();
        unknown_keys(props, FIELDS, &mut errors);
        let mut settings = Self::default();
        for (key, slot) in [("Image", &mut settings.image), ("DindImage", &mut settings.dind_image)] {
            if let Some(image) = props.get(key) {
                match validate_image(image) {
                    Ok(()) => *slot = Some(image.to_owned()),
                    Err(message) => errors.push(ValidationError::new(key, message)),
                }
            }
        }
        for (key, slot) in [("AgentCpu", &mut settings.agent_cpu), ("DindCpu", &mut settings.dind_cpu)] {
            *slot = parse_optional(props, key, Cpu::parse, &mut errors);
        }
        for (key, slot) in [
            ("AgentMemory", &mut settings.agent_memory),
            ("DindMemory", &mut settings.dind_memory),
            ("DockerStorageSize", &mut settings.docker_storage_size),
        ] {
            *slot = parse_optional(props, key, Memory::parse, &mut errors);
        }
        if let Some(text) = props.get("Environment") {
            match parse_environment(text) {
                Ok(vars) => settings.environment = vars,
                Err(message) => errors.push(ValidationError::new("Environment", message)),
            }
        }
        if let Some(text) = props.get("PodSpecPatch") {
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(patch)) => settings.pod_spec_patch = Some(patch),
                Ok(_) => errors.push(ValidationError::new(
                    "PodSpecPatch",
                    "must be a JSON object, e.g. {\"nodeSelector\": {\"pool\": \"ci\"}}",
                )),
                Err(e) => errors.push(ValidationError::new("PodSpecPatch", format!("is not valid JSON: {e}"))),
            }
        }
        if errors.is_empty() {
            Ok(settings)
        } else {
            Err(errors)
        }
    }
}

fn parse_optional<T>(
    props: &Properties,
    key: &str,
    parse: fn(&str) -> Result<T, String>,
    errors: &mut Vec<ValidationError>,
) -> Option<T> {
    let text = props.get(key)?;
    parse(text).map_err(|message| errors.push(ValidationError::new(key, message))).ok()
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
