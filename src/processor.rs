//! Client of the processor bridge: the shim's HTTP face of GoCD's
//! `GoApplicationAccessor`, the only way to call GoCD back.
//!
//! Every call has a timeout, and callers treat failures as "try again at the next ping":
//! a GoCD request never fails because the bridge did.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::protocol::{AgentMetadata, JobIdentifier};

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("processor bridge call {api} failed: {reason}")]
    Call { api: &'static str, reason: String },
    #[error("processor bridge call {api} answered {status}: {body}")]
    Status { api: &'static str, status: u16, body: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServerInfo {
    pub server_id: String,
    #[serde(default)]
    pub site_url: Option<String>,
    #[serde(default)]
    pub secure_site_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthMessage {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub message: String,
}

#[derive(Clone)]
pub struct ProcessorClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

pub const TIMEOUT: Duration = Duration::from_secs(10);

impl ProcessorClient {
    pub fn new(base: &str, token: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .build()
            .expect("a plain HTTP client builds");
        Self { http, base: base.trim_end_matches('/').to_owned(), token: token.to_owned() }
    }

    async fn call(
        &self,
        api: &'static str,
        version: &str,
        body: Option<serde_json::Value>,
    ) -> Result<String, ProcessorError> {
        let mut request = self
            .http
            .post(format!("{}/processor/{api}", self.base))
            .bearer_auth(&self.token)
            .header("X-GoCD-Api-Version", version);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| ProcessorError::Call { api, reason: describe(&e) })?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| ProcessorError::Call { api, reason: describe(&e) })?;
        if status == 200 {
            Ok(text)
        } else {
            Err(ProcessorError::Status { api, status, body: text.chars().take(300).collect() })
        }
    }

    pub async fn list_agents(&self) -> Result<Vec<AgentMetadata>, ProcessorError> {
        const API: &str = "go.processor.elastic-agents.list-agents";
        let body = self.call(API, "1.0", None).await?;
        if body.trim().is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_str(&body)
            .map_err(|e| ProcessorError::Call { api: API, reason: format!("unreadable answer: {e}") })
    }

    pub async fn disable_agents(&self, ids: &[String]) -> Result<(), ProcessorError> {
        self.call("go.processor.elastic-agents.disable-agents", "1.0", Some(agent_list(ids))).await.map(drop)
    }

    pub async fn delete_agents(&self, ids: &[String]) -> Result<(), ProcessorError> {
        self.call("go.processor.elastic-agents.delete-agents", "1.0", Some(agent_list(ids))).await.map(drop)
    }

    pub async fn server_info(&self) -> Result<ServerInfo, ProcessorError> {
        const API: &str = "go.processor.server-info.get";
        let body = self.call(API, "1.0", None).await?;
        serde_json::from_str(&body)
            .map_err(|e| ProcessorError::Call { api: API, reason: format!("unreadable answer: {e}") })
    }

    /// Replaces every earlier message of this plugin; an empty list clears them.
    pub async fn set_health_messages(&self, messages: &[HealthMessage]) -> Result<(), ProcessorError> {
        self.call("go.processor.server-health.add-messages", "1.0", Some(json!(messages))).await.map(drop)
    }

    /// A line in the job's console (API 1.0 uses camelCase keys).
    pub async fn append_console(&self, job: &JobIdentifier, text: &str) -> Result<(), ProcessorError> {
        let body = json!({
            "pipelineName": job.pipeline_name,
            "pipelineCounter": job.pipeline_counter,
            "stageName": job.stage_name,
            "stageCounter": job.stage_counter,
            "jobName": job.job_name,
            "text": format!("[gocd-dind] {text}\n"),
        });
        self.call("go.processor.console-log.append", "1.0", Some(body)).await.map(drop)
    }
}

fn agent_list(ids: &[String]) -> serde_json::Value {
    json!(ids.iter().map(|id| json!({"agent_id": id})).collect::<Vec<_>>())
}

fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        format!("no answer within {} s", TIMEOUT.as_secs())
    } else if error.is_connect() {
        "connection refused: is the shim loaded and GOCD_DIND_PROCESSOR_LISTEN matching --processor-url?".into()
    } else {
        error.to_string()
    }
}
