//! What a `PodSpecPatch` may change. GoCD lets people who do not own a cluster profile
//! administer elastic profiles (role policies delegate `elastic_agent_profile`), so the
//! patch is a trust boundary: it may set the fields listed here and nothing else.
//!
//! The check compares the patched spec with the one `build` made, rather than reading
//! the patch: whatever route the merge takes (`null`, `$patch: delete`, a merge key that
//! lands on a built element), the result is what runs, so the result is what is judged.
//! docs/configuration.md#what-a-patch-may-set gives operators the same list.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::PodSpec;
use serde_json::{Map, Value};

use super::{labels, AGENT_CONTAINER};
use crate::settings::{is_dns_subdomain, is_reserved_env};

/// Pod-level fields a patch may set: where the pod is scheduled, how it resolves names,
/// and which Secrets it pulls images with (those named in `allowed_secrets`).
pub const POD_FIELDS: &[&str] = &[
    "nodeSelector",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
    "priorityClassName",
    "runtimeClassName",
    "imagePullSecrets",
    "dnsPolicy",
    "dnsConfig",
    "hostAliases",
];

/// Fields of the agent container a patch may set. The agent's securityContext, command,
/// image, ports and probes stay as built; dind is not patchable at all.
pub const AGENT_FIELDS: &[&str] = &["env", "envFrom", "resources", "volumeMounts", "workingDir"];

/// Kinds of volume a patch may add: none of them reaches the host or the cluster's
/// credentials (`secret` only for Secrets named in `allowed_secrets`).
pub const VOLUME_KINDS: &[&str] = &["emptyDir", "configMap", "secret"];

/// Fields of a mount a patch adds to the agent (no propagation from or to the host).
const MOUNT_FIELDS: &[&str] = &["name", "mountPath", "readOnly", "subPath"];

const NOT_ALLOWED: &str = "not allowed";
const BUILT: &str = "set by gocd-dind, a patch cannot change or remove it";

/// What a patch may set, for refusals: the operator sees the whole list at once.
pub fn summary() -> String {
    format!(
        "a patch may set only spec.{}, metadata.labels, metadata.annotations, the agent container's {}, and {} volumes mounted in the agent",
        POD_FIELDS.join(", spec."),
        AGENT_FIELDS.join(", "),
        VOLUME_KINDS.join(", "),
    )
}

/// Everything in `patched` that a patch may not have changed in `built`, by JSON path.
pub fn check(built: &PodSpec, patched: &PodSpec, own_secret: &str) -> Vec<String> {
    let mut problems: Vec<String> = secret_references(patched, own_secret)
        .into_iter()
        .filter(|r| !is_dns_subdomain(&r.name))
        .map(|r| format!("{}: '{}' is not a Secret name (lowercase letters, digits, '-', '.')", r.path, r.name))
        .collect();
    let (built, patched) = (object(built), object(patched));
    let mut added_volumes = BTreeSet::new();
    // Volumes first: the agent's mounts are judged against the volumes the patch added.
    if let Some(volumes) = differing(&built, &patched, "volumes") {
        added_volumes = check_volumes(volumes, &mut problems);
    }
    for key in keys(&built, &patched) {
        let (b, p) = (built.get(key), patched.get(key));
        if b == p || key == "volumes" || POD_FIELDS.contains(&key) {
            continue;
        }
        match key {
            "containers" => check_containers(b, p, &added_volumes, &mut problems),
            "initContainers" => check_unchanged_containers("spec.initContainers", b, p, &mut problems),
            _ => problems.push(format!("spec.{key}: {NOT_ALLOWED}")),
        }
    }
    problems
}

fn object<T: serde::Serialize>(value: &T) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

fn keys<'a>(a: &'a Map<String, Value>, b: &'a Map<String, Value>) -> BTreeSet<&'a str> {
    a.keys().chain(b.keys()).map(String::as_str).collect()
}

fn differing<'a>(
    built: &'a Map<String, Value>,
    patched: &'a Map<String, Value>,
    key: &str,
) -> Option<(Option<&'a Value>, Option<&'a Value>)> {
    let pair = (built.get(key), patched.get(key));
    (pair.0 != pair.1).then_some(pair)
}

/// The elements of a list of objects, keyed by `key` (the strategic-merge key), in order.
fn by<'a>(list: Option<&'a Value>, key: &str) -> BTreeMap<String, &'a Map<String, Value>> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, element)| {
            let object = element.as_object()?;
            let id = object.get(key).and_then(Value::as_str).map_or_else(|| i.to_string(), str::to_owned);
            Some((id, object))
        })
        .collect()
}

fn check_volumes((built, patched): (Option<&Value>, Option<&Value>), problems: &mut Vec<String>) -> BTreeSet<String> {
    let (built, patched) = (by(built, "name"), by(patched, "name"));
    let mut added = BTreeSet::new();
    for (name, volume) in &built {
        if patched.get(name) != Some(volume) {
            problems.push(format!("spec.volumes[{name}]: {BUILT}"));
        }
    }
    for (name, volume) in patched.iter().filter(|(name, _)| !built.contains_key(*name)) {
        for kind in volume.keys().filter(|k| *k != "name" && !VOLUME_KINDS.contains(&k.as_str())) {
            problems.push(format!(
                "spec.volumes[{name}].{kind}: a patch may add only emptyDir, configMap and secret volumes"
            ));
        }
        added.insert(name.clone());
    }
    added
}

fn check_containers(
    built: Option<&Value>,
    patched: Option<&Value>,
    added_volumes: &BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    let (built, patched) = (by(built, "name"), by(patched, "name"));
    for name in built.keys().chain(patched.keys()).collect::<BTreeSet<_>>() {
        let path = format!("spec.containers[{name}]");
        match (built.get(name), patched.get(name)) {
            (Some(b), Some(p)) if name == AGENT_CONTAINER => check_agent(&path, b, p, added_volumes, problems),
            (Some(b), Some(p)) => check_unchanged(&path, b, p, problems),
            (Some(_), None) => problems.push(format!("{path}: {BUILT}")),
            (None, _) => problems.push(format!("{path}: a patch cannot add containers")),
        }
    }
}

fn check_unchanged_containers(list: &str, built: Option<&Value>, patched: Option<&Value>, problems: &mut Vec<String>) {
    let (built, patched) = (by(built, "name"), by(patched, "name"));
    for name in built.keys().chain(patched.keys()).collect::<BTreeSet<_>>() {
        let path = format!("{list}[{name}]");
        match (built.get(name), patched.get(name)) {
            (Some(b), Some(p)) => check_unchanged(&path, b, p, problems),
            (Some(_), None) => problems.push(format!("{path}: {BUILT}")),
            (None, _) => problems.push(format!("{path}: a patch cannot add containers")),
        }
    }
}

/// dind, and anything else the patch may not touch: every field exactly as built.
fn check_unchanged(path: &str, built: &Map<String, Value>, patched: &Map<String, Value>, problems: &mut Vec<String>) {
    for key in keys(built, patched) {
        if built.get(key) != patched.get(key) {
            problems.push(format!("{path}.{key}: {BUILT}"));
        }
    }
}

fn check_agent(
    path: &str,
    built: &Map<String, Value>,
    patched: &Map<String, Value>,
    added_volumes: &BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    for key in keys(built, patched) {
        let (b, p) = (built.get(key), patched.get(key));
        if b == p {
            continue;
        }
        match key {
            "env" => check_env(path, b, p, problems),
            "volumeMounts" => check_mounts(path, b, p, added_volumes, problems),
            _ if AGENT_FIELDS.contains(&key) => {}
            _ if built.contains_key(key) => problems.push(format!("{path}.{key}: {BUILT}")),
            _ => problems.push(format!("{path}.{key}: {NOT_ALLOWED}")),
        }
    }
}

/// The variables gocd-dind sets (registration, the daemon's address and TLS) stay
/// exactly as built: present or absent. The profile's own variables may change.
fn check_env(path: &str, built: Option<&Value>, patched: Option<&Value>, problems: &mut Vec<String>) {
    let (built, patched) = (by(built, "name"), by(patched, "name"));
    for name in built.keys().chain(patched.keys()).collect::<BTreeSet<_>>() {
        if is_reserved_env(name) && built.get(name) != patched.get(name) {
            problems.push(format!("{path}.env[{name}]: set by gocd-dind, a patch cannot set or change it"));
        }
    }
}

fn check_mounts(
    path: &str,
    built: Option<&Value>,
    patched: Option<&Value>,
    added_volumes: &BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    let (built, patched) = (by(built, "mountPath"), by(patched, "mountPath"));
    for (mount_path, mount) in &built {
        if patched.get(mount_path) != Some(mount) {
            problems.push(format!("{path}.volumeMounts[{mount_path}]: {BUILT}"));
        }
    }
    for (mount_path, mount) in patched.iter().filter(|(p, _)| !built.contains_key(*p)) {
        let mount_path = format!("{path}.volumeMounts[{mount_path}]");
        let volume = mount.get("name").and_then(Value::as_str).unwrap_or_default();
        if !added_volumes.contains(volume) {
            problems.push(format!("{mount_path}: mounts volume '{volume}': a patch may mount only volumes it adds"));
        }
        for key in mount.keys().filter(|k| !MOUNT_FIELDS.contains(&k.as_str())) {
            problems.push(format!("{mount_path}.{key}: {NOT_ALLOWED}"));
        }
    }
}

/// The `metadata` of a patch: labels and annotations, none of them gocd-dind's own (the
/// ownership labels decide which pods the service lists and removes).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PatchMetadata {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

pub fn metadata(value: &Value) -> Result<PatchMetadata, Vec<String>> {
    let mut problems = Vec::new();
    let mut metadata = PatchMetadata::default();
    let Some(object) = value.as_object() else {
        return Err(vec!["metadata: must be an object with labels and annotations".into()]);
    };
    for (key, value) in object {
        let (slot, check_value): (_, fn(&str) -> bool) = match key.as_str() {
            "labels" => (&mut metadata.labels, is_label_value),
            "annotations" => (&mut metadata.annotations, |_| true),
            _ => {
                problems.push(format!("metadata.{key}: {NOT_ALLOWED} (only labels and annotations)"));
                continue;
            }
        };
        let Some(entries) = value.as_object() else {
            problems.push(format!("metadata.{key}: must be an object of strings"));
            continue;
        };
        for (name, value) in entries {
            let path = format!("metadata.{key}[{name}]");
            if labels::is_reserved(name) {
                problems.push(format!("{path}: gocd-dind's own key, a patch cannot set it"));
            } else if !is_qualified_name(name) {
                problems.push(format!("{path}: not a valid key (name or prefix/name, letters, digits, '-', '_', '.')"));
            } else {
                match value.as_str() {
                    Some(text) if check_value(text) => {
                        slot.insert(name.clone(), text.to_owned());
                    }
                    Some(_) => problems
                        .push(format!("{path}: not a valid label value (at most 63 letters, digits, '-', '_', '.')")),
                    None => problems.push(format!("{path}: must be a string")),
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(metadata)
    } else {
        Err(problems)
    }
}

/// Kubernetes' qualified name: an optional DNS-subdomain prefix and `/`, then a name of
/// at most 63 characters that starts and ends alphanumeric.
fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = key.rsplit_once('/').map_or((None, key), |(p, n)| (Some(p), n));
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

fn is_label_value(value: &str) -> bool {
    let edges_ok = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    value.len() <= 63
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && edges_ok(value.chars().next())
        && edges_ok(value.chars().last())
}

/// A Secret the pod names, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretReference {
    pub path: String,
    pub name: String,
}

/// Every Secret the spec names other than the pod's own (`own`): image pull secrets,
/// secret volumes, and variables taken from Secrets.
pub fn secret_references(spec: &PodSpec, own: &str) -> Vec<SecretReference> {
    let mut found = Vec::new();
    let mut add = |path: String, name: &str| {
        if name != own {
            found.push(SecretReference { path, name: name.to_owned() });
        }
    };
    for secret in spec.image_pull_secrets.iter().flatten() {
        add(format!("spec.imagePullSecrets[{}]", secret.name), &secret.name);
    }
    for volume in spec.volumes.iter().flatten() {
        if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.as_deref()) {
            add(format!("spec.volumes[{}].secret", volume.name), name);
        }
    }
    let init = spec.init_containers.iter().flatten().map(|c| ("initContainers", c));
    for (list, container) in spec.containers.iter().map(|c| ("containers", c)).chain(init) {
        let path = format!("spec.{list}[{}]", container.name);
        for var in container.env.iter().flatten() {
            if let Some(key) = var.value_from.as_ref().and_then(|f| f.secret_key_ref.as_ref()) {
                add(format!("{path}.env[{}]", var.name), &key.name);
            }
        }
        for (i, source) in container.env_from.iter().flatten().enumerate() {
            if let Some(secret) = &source.secret_ref {
                add(format!("{path}.envFrom[{i}]"), &secret.name);
            }
        }
    }
    found
}

/// The Secrets `pod` names that the cluster profile does not allow, each with its path.
/// Checked at create-agent only: validate-elastic-agent-profile never sees the cluster
/// profile.
pub fn unallowed_secrets(spec: &PodSpec, own: &str, allowed: &BTreeSet<String>) -> Vec<String> {
    secret_references(spec, own)
        .into_iter()
        .filter(|r| !allowed.contains(&r.name))
        .map(|r| format!("{}: Secret '{}' is not in the cluster profile's allowed_secrets", r.path, r.name))
        .collect()
}
