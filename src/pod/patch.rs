//! `PodSpecPatch`: a strategic-merge patch of the pod spec for what the profile fields
//! don't cover. What the merged spec may differ in is decided by `allowed`.
//!
//! The merge follows Kubernetes' strategic-merge rules for the lists a pod spec uses:
//! lists of named objects (containers, volumes, env, ...) merge element by element on
//! their merge key, `{"$patch": "delete"}` removes an element, `null` removes a field,
//! and every other list is replaced.

use k8s_openapi::api::core::v1::PodSpec;
use serde_json::{Map, Value};

pub fn apply_spec_patch(spec: &PodSpec, patch: &Map<String, Value>) -> Result<PodSpec, String> {
    let mut value = serde_json::to_value(spec).map_err(|e| e.to_string())?;
    merge_object(value.as_object_mut().expect("a pod spec is an object"), patch);
    let patched: PodSpec = serde_json::from_value(value.clone()).map_err(|e| {
        // The patch may carry values an operator would not want echoed into job consoles.
        format!("the patched spec is not a valid pod spec: {}", crate::error::redact(&e.to_string()))
    })?;
    // Deserialising drops fields a pod spec does not have; a misspelt key must not
    // vanish silently.
    let kept = serde_json::to_value(&patched).map_err(|e| e.to_string())?;
    let mut unknown = Vec::new();
    unknown_fields(&value, &kept, "spec", &mut unknown);
    if !unknown.is_empty() {
        return Err(format!("not pod spec fields: {}", unknown.join(", ")));
    }
    Ok(patched)
}

fn unknown_fields(merged: &Value, kept: &Value, path: &str, unknown: &mut Vec<String>) {
    match (merged, kept) {
        (Value::Object(merged), Value::Object(kept)) => {
            for (key, value) in merged {
                match kept.get(key) {
                    Some(kept_value) => unknown_fields(value, kept_value, &format!("{path}.{key}"), unknown),
                    None => unknown.push(format!("{path}.{key}")),
                }
            }
        }
        (Value::Array(merged), Value::Array(kept)) => {
            for (i, (m, k)) in merged.iter().zip(kept).enumerate() {
                unknown_fields(m, k, &format!("{path}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

fn merge_object(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, patch_value) in patch {
        match (target.get_mut(key), patch_value) {
            (_, Value::Null) => {
                target.remove(key);
            }
            (Some(Value::Object(existing)), Value::Object(p)) => merge_object(existing, p),
            (Some(Value::Array(existing)), Value::Array(p)) if merge_key(key).is_some() => {
                merge_list(existing, p, merge_key(key).expect("checked"));
            }
            _ => {
                target.insert(key.clone(), strip_directives(patch_value));
            }
        }
    }
}

fn merge_key(list: &str) -> Option<&'static str> {
    match list {
        "containers" | "initContainers" | "ephemeralContainers" | "volumes" | "env" | "imagePullSecrets" => {
            Some("name")
        }
        "volumeMounts" => Some("mountPath"),
        "ports" => Some("containerPort"),
        _ => None,
    }
}

fn merge_list(target: &mut Vec<Value>, patch: &[Value], key: &str) {
    for element in patch {
        let Some(id) = element.get(key).cloned() else {
            target.push(element.clone());
            continue;
        };
        let position = target.iter().position(|t| t.get(key) == Some(&id));
        let delete = element.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, element) {
            (Some(i), _) if delete => {
                target.remove(i);
            }
            (Some(i), Value::Object(p)) => {
                if let Some(existing) = target[i].as_object_mut() {
                    merge_object(existing, p);
                }
            }
            (None, _) if !delete => target.push(strip_directives(element)),
            _ => {}
        }
    }
}

fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip_directives(v))).collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}
