use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// A profile as GoCD sends it: a flat string map. GoCD may send `null` for a value the
/// user never filled in; that reads as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Properties(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Option::<BTreeMap<String, Option<String>>>::deserialize(deserializer)?;
        Ok(Properties(raw.unwrap_or_default().into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect()))
    }
}

impl Properties {
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    /// The trimmed value, `None` when absent or blank.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
}

/// GoCD's job identifier. `job_id` is the database build id: unique per job run, and the
/// key every decision uses. GoCD sends `stage_counter` as a string and the counters and
/// `job_id` as numbers; either form is accepted for each, so a change of serialisation on
/// GoCD's side cannot make us refuse every job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobIdentifier {
    #[serde(deserialize_with = "number")]
    pub job_id: i64,
    #[serde(default)]
    pub pipeline_name: String,
    #[serde(default, deserialize_with = "text")]
    pub pipeline_label: String,
    #[serde(default, deserialize_with = "number")]
    pub pipeline_counter: i64,
    #[serde(default)]
    pub stage_name: String,
    #[serde(default, deserialize_with = "text")]
    pub stage_counter: String,
    #[serde(default)]
    pub job_name: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(i64),
    Text(String),
}

fn number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    match NumberOrText::deserialize(deserializer)? {
        NumberOrText::Number(n) => Ok(n),
        NumberOrText::Text(t) => t.trim().parse().map_err(|_| serde::de::Error::custom("expected a whole number")),
    }
}

fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(match NumberOrText::deserialize(deserializer)? {
        NumberOrText::Number(n) => n.to_string(),
        NumberOrText::Text(t) => t,
    })
}

impl JobIdentifier {
    /// `pipeline/counter/stage/counter/job`, as GoCD shows it.
    pub fn path(&self) -> String {
        format!(
            "{}/{}/{}/{}/{}",
            self.pipeline_name, self.pipeline_counter, self.stage_name, self.stage_counter, self.job_name
        )
    }
}

/// An agent as GoCD reports it (`list-agents`, `should-assign-work`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentMetadata {
    pub agent_id: String,
    #[serde(default)]
    pub agent_state: String,
    #[serde(default)]
    pub build_state: String,
    #[serde(default)]
    pub config_state: String,
}

impl AgentMetadata {
    /// A job is running (or being cancelled) on it: never disable or delete it.
    pub fn is_building(&self) -> bool {
        self.agent_state == "Building" || matches!(self.build_state.as_str(), "Building" | "Cancelled")
    }

    pub fn is_disabled(&self) -> bool {
        self.config_state == "Disabled"
    }

    pub fn is_enabled(&self) -> bool {
        self.config_state == "Enabled"
    }

    /// Idle, lost or missing: safe to take away.
    pub fn is_idle_or_gone(&self) -> bool {
        matches!(self.agent_state.as_str(), "Idle" | "Missing" | "LostContact")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CreateAgentRequest {
    pub auto_register_key: String,
    #[serde(default)]
    pub elastic_agent_profile_properties: Properties,
    #[serde(default)]
    pub cluster_profile_properties: Properties,
    #[serde(default)]
    pub environment: Option<String>,
    pub job_identifier: JobIdentifier,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ShouldAssignWorkRequest {
    pub agent: AgentMetadata,
    pub job_identifier: JobIdentifier,
    #[serde(default)]
    pub cluster_profile_properties: Properties,
    #[serde(default)]
    pub environment: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JobCompletionRequest {
    pub elastic_agent_id: String,
    pub job_identifier: JobIdentifier,
    #[serde(default)]
    pub cluster_profile_properties: Properties,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerPingRequest {
    pub all_cluster_profile_properties: Vec<Properties>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AgentStatusReportRequest {
    pub job_identifier: JobIdentifier,
    #[serde(default)]
    pub cluster_profile_properties: Properties,
    #[serde(default)]
    pub elastic_agent_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClusterStatusReportRequest {
    pub cluster_profile_properties: Properties,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PluginStatusReportRequest {
    pub all_cluster_profiles_properties: Vec<Properties>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClusterProfileChangedRequest {
    pub status: String,
    #[serde(default)]
    pub cluster_profiles_properties: Properties,
}

/// One `{key, message}` entry of a validation answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationError {
    pub key: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(key: &str, message: impl Into<String>) -> Self {
        Self { key: key.to_owned(), message: message.into() }
    }

    /// `key: message; key: message`, for the job console and logs.
    pub fn join(errors: &[ValidationError]) -> String {
        errors.iter().map(|e| format!("{}: {}", e.key, e.message)).collect::<Vec<_>>().join("; ")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ProfileMetadata {
    pub key: &'static str,
    pub metadata: MetadataFlags,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetadataFlags {
    pub required: bool,
    pub secure: bool,
}
