//! A pod as a runtime's listing shows it: the plain data the GoCD rules ([`crate::agents`])
//! and the service's registry decide over. Runtimes produce it; nothing here does I/O.

use std::time::{Duration, SystemTime};

use crate::protocol::JobIdentifier;
use crate::settings::PoolId;

/// A pod as a listing shows it: enough to decide, rebuilt from labels alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub name: String,
    /// The job it serves; 0 (no job) for a warm pod.
    pub job_id: i64,
    pub job: Option<JobIdentifier>,
    /// When it was made, or for a warm pod a job claimed, when it was claimed: the
    /// auto-register timeout runs from there.
    pub created: SystemTime,
    pub phase: PodPhase,
    /// Set while it is a warm pod no job has claimed.
    pub warm: Option<WarmPod>,
}

impl PodInfo {
    /// Whether it is the pod of this job (a warm pod is nobody's).
    pub fn serves(&self, job_id: i64) -> bool {
        self.warm.is_none() && self.job_id == job_id
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodPhase {
    /// Created; dockerd or the agent not up yet.
    Starting,
    /// The agent container runs (a warm pod: its dockerd answers, waiting for a job).
    Running,
    /// Something in it stopped: the pod can no longer serve its job.
    Stopped(String),
}

/// A pod started ahead of jobs: its dockerd answers over TLS, nothing of a job is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmPod {
    pub pool: PoolId,
    /// The pool's size and idle time when the pod was made (its labels).
    pub shape: PoolShape,
    pub state: WarmState,
}

impl WarmState {
    /// As the status pages and the `gocd_dind_warm_pods` gauge name it: being made and
    /// not up yet are both `warming`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Making | Self::Warming => "warming",
            Self::Ready => "ready",
            Self::Leaving => "leaving",
        }
    }
}

/// How many warm pods a pool keeps, and how long one may wait for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolShape {
    pub size: usize,
    pub idle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmState {
    /// Being made by this service: dockerd starting, images being pulled. Its maker
    /// bounds it by `auto_register_timeout`, so no rule removes it meanwhile.
    Making,
    /// Not up yet, and nobody here is making it (say, made before a restart): removed
    /// once it has not come up within `auto_register_timeout`.
    Warming,
    /// Up and claimable.
    Ready,
    /// Being removed: never claimed.
    Leaving,
}
