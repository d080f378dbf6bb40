//! A pod as a runtime's listing shows it: the plain data the GoCD rules ([`crate::agents`])
//! and the service's registry decide over. Runtimes produce it; nothing here does I/O.

use std::time::SystemTime;

use crate::protocol::JobIdentifier;

/// A pod as a listing shows it: enough to decide, rebuilt from labels alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub name: String,
    pub job_id: i64,
    pub job: Option<JobIdentifier>,
    pub created: SystemTime,
    pub phase: PodPhase,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodPhase {
    /// Created; dockerd or the agent not up yet.
    Starting,
    /// The agent container runs.
    Running,
    /// Something in it stopped: the pod can no longer serve its job.
    Stopped(String),
}
