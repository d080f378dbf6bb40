//! One GoCD request in, one answer out: the body and status the shim hands to GoCD.
//! Only 200 is success to GoCD, so every handler answers 200 unless the request itself
//! is wrong.

mod profiles;
mod reports;
mod views;

use std::sync::Arc;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::protocol::RequestName;
use crate::service::Service;

pub async fn handle(service: &Arc<Service>, name: RequestName, body: &[u8]) -> Result<Value> {
    match name {
        RequestName::GetIcon => Ok(profiles::icon()),
        RequestName::GetCapabilities => Ok(json!({
            "supports_plugin_status_report": true,
            "supports_cluster_status_report": true,
            "supports_agent_status_report": true,
        })),
        RequestName::GetElasticAgentProfileMetadata => Ok(profiles::elastic_metadata()),
        RequestName::GetElasticAgentProfileView => Ok(json!({"template": views::elastic_profile()})),
        RequestName::ValidateElasticAgentProfile => Ok(profiles::validate_elastic(service, &parse(name, body)?)),
        RequestName::GetClusterProfileMetadata => Ok(profiles::cluster_metadata()),
        RequestName::GetClusterProfileView => Ok(json!({"template": views::cluster_profile()})),
        RequestName::ValidateClusterProfile => Ok(profiles::validate_cluster(service, &parse(name, body)?)),
        RequestName::MigrateConfig => profiles::migrate_config(service, with_body(name, body)?),
        RequestName::ClusterProfileChanged => {
            let change: crate::protocol::ClusterProfileChangedRequest = parse(name, body)?;
            tracing::info!(status = %change.status, "cluster profile changed");
            if change.status != "deleted" {
                service.note_cluster_profiles(std::slice::from_ref(&change.cluster_profiles_properties), false);
            }
            Ok(json!({}))
        }
        RequestName::CreateAgent => service.create_agent(parse(name, body)?).await.map(|()| json!({})),
        RequestName::ShouldAssignWork => Ok(Value::Bool(service.should_assign_work(&parse(name, body)?))),
        RequestName::JobCompletion => service.job_completion(parse(name, body)?).await.map(|()| json!({})),
        RequestName::ServerPing => service.server_ping(parse(name, body)?).await.map(|()| json!({})),
        RequestName::AgentStatusReport => Ok(reports::agent(service, &parse(name, body)?).await),
        RequestName::ClusterStatusReport => Ok(reports::cluster(service, &parse(name, body)?).await),
        RequestName::PluginStatusReport => Ok(reports::plugin(service, &parse(name, body)?).await),
        RequestName::PluginSettingsGetConfiguration => Ok(json!({})),
        RequestName::PluginSettingsGetView => Ok(json!({"template": views::plugin_settings()})),
    }
}

fn parse<T: serde::de::DeserializeOwned>(name: RequestName, body: &[u8]) -> Result<T> {
    Error::parse_body(name.as_str(), with_body(name, body)?)
}

fn with_body(name: RequestName, body: &[u8]) -> Result<&[u8]> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::BadRequest(format!("{name}: the request needs a JSON body and none was sent")));
    }
    Ok(body)
}
