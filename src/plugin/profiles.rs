//! Icon, profile metadata, validation and migrate-config.

use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::pod::{self, Binding, Ownership, PodRequest};
use crate::protocol::{JobIdentifier, Properties, ValidationError};
use crate::runtime::docker::translate;
use crate::service::Service;
use crate::settings::{elastic, ClusterId, ClusterSettings, ElasticSettings, Field};

const ICON: &str = include_str!("icon.svg");

pub fn icon() -> Value {
    json!({"content_type": "image/svg+xml", "data": base64::engine::general_purpose::STANDARD.encode(ICON)})
}

pub fn elastic_metadata() -> Value {
    json!(ElasticSettings::fields().iter().map(Field::metadata).collect::<Vec<_>>())
}

pub fn cluster_metadata() -> Value {
    json!(ClusterSettings::fields().iter().map(Field::metadata).collect::<Vec<_>>())
}

pub fn validate_elastic(service: &Service, props: &Properties) -> Value {
    match ElasticSettings::parse(props) {
        Err(errors) => json!(errors),
        Ok(elastic) => json!(fits_the_pod(&elastic, !service.kubernetes_in_use())),
    }
}

/// Builds a sample pod from the profile so a patch that sets what a patch may not is
/// refused when the profile is saved rather than at the first job; and, while every
/// cluster profile GoCD reported runs on Docker, so is a field Docker cannot honour.
/// (GoCD does not say which cluster profile an elastic profile being validated belongs
/// to: with Kubernetes in use, Docker's limits are reported at create-agent instead.)
fn fits_the_pod(elastic: &ElasticSettings, docker_rules: bool) -> Vec<ValidationError> {
    let mut cluster = ClusterSettings::parse(&Properties::default(), false).expect("the defaults are valid");
    cluster.agent_image = Some("validation".into());
    let built = pod::build(&PodRequest {
        name: "validation",
        ownership: &Ownership::new("validation", ClusterId("validation".into())),
        go_server_url: "https://gocd.example.com/go",
        cluster: &cluster,
        elastic,
        binding: Binding::Job { job: &JobIdentifier::default(), environment: None, auto_register_key: "" },
        tls: None,
    });
    match built {
        Err(e) => vec![ValidationError::new(elastic::POD_SPEC_PATCH.key, e.to_string())],
        Ok(_) if !docker_rules => Vec::new(),
        Ok(pod) => translate::unsupported(&pod)
            .into_iter()
            .map(|problem| ValidationError::new(pod::elastic_key_of(&problem.path), problem.to_string()))
            .collect(),
    }
}

pub fn validate_cluster(service: &Service, props: &Properties) -> Value {
    json!(ClusterSettings::parse(props, service.options.allow_memory_runtime).err().unwrap_or_default())
}

/// GoCD replaces all of this plugin's profiles with what we answer, so the answer is
/// exactly what came in: returning less would delete operators' configuration.
pub fn migrate_config(service: &Arc<Service>, body: &[u8]) -> Result<Value> {
    let bad = |why: &str| Error::BadRequest(format!("cd.go.elastic-agent.migrate-config: {why}"));
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad(&format!("invalid JSON at line {}, column {}", e.line(), e.column())))?;
    let object = value.as_object().ok_or_else(|| bad("the body must be a JSON object"))?;
    for key in ["cluster_profiles", "elastic_agent_profiles"] {
        if !object.get(key).is_some_and(Value::is_array) {
            return Err(bad(&format!("`{key}` must be a list")));
        }
    }
    let profiles: Vec<Properties> = object["cluster_profiles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| serde_json::from_value(p["properties"].clone()).ok())
        .collect();
    service.note_cluster_profiles(&profiles, true);
    // The list is complete: state of profiles no longer in it goes. In the background,
    // so the answer (GoCD waits for it while loading the plugin) never waits on an engine.
    let pruning = Arc::clone(service);
    service.tasks.spawn(async move { pruning.follow_profiles(&profiles).await });
    Ok(value)
}
