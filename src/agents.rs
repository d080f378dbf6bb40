//! The GoCD rules as pure functions over snapshots: what to create, what to assign, what
//! to remove. No I/O here; the service gathers the snapshots and carries out the actions.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use crate::listing::{PodInfo, PodPhase};
use crate::protocol::AgentMetadata;
use crate::settings::ClusterId;

/// The limits of one cluster profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_pending: usize,
    pub max_total: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateDecision {
    Create,
    /// A pod for this job exists (or is being created): GoCD re-sends create-agent
    /// while a job waits, from several threads.
    AlreadyExists(String),
    PendingLimit {
        pending: usize,
        max: usize,
    },
    TotalLimit {
        total: usize,
        max: usize,
    },
}

/// `pods` are this cluster profile's pods, including those still being created;
/// `registered` are the agent ids GoCD knows.
pub fn plan_create(pods: &[PodInfo], registered: &BTreeSet<String>, job_id: i64, limits: Limits) -> CreateDecision {
    if let Some(pod) = pods.iter().find(|p| p.job_id == job_id) {
        return CreateDecision::AlreadyExists(pod.name.clone());
    }
    if pods.len() >= limits.max_total {
        return CreateDecision::TotalLimit { total: pods.len(), max: limits.max_total };
    }
    let pending = pods.iter().filter(|p| !registered.contains(&p.name)).count();
    if pending >= limits.max_pending {
        return CreateDecision::PendingLimit { pending, max: limits.max_pending };
    }
    CreateDecision::Create
}

/// Only the pod created for this very job, and never one being torn down (gocd/gocd#3095:
/// a job must not land on an agent that cleanup is removing).
pub fn should_assign(pod_job_id: Option<i64>, terminating: bool, job_id: i64) -> bool {
    pod_job_id == Some(job_id) && !terminating
}

/// One cluster profile as server-ping sees it.
#[derive(Debug, Clone)]
pub struct ClusterSnapshot {
    pub cluster: ClusterId,
    pub pods: Vec<PodInfo>,
    pub auto_register_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Stop GoCD assigning work to these agents; deleted on a later ping.
    DisableAgents(Vec<String>),
    DeletePod {
        cluster: ClusterId,
        name: String,
        reason: RemovalReason,
    },
    DeleteAgents(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RemovalReason {
    NeverRegistered,
    Stopped,
    Unused,
}

impl RemovalReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NeverRegistered => "never-registered",
            Self::Stopped => "stopped",
            Self::Unused => "unused",
        }
    }

    /// Why server-ping removed a pod, as its post-mortem says.
    pub fn explain(self) -> &'static str {
        match self {
            Self::NeverRegistered => "its agent never registered within auto_register_timeout",
            Self::Stopped => "it stopped (a container exited)",
            Self::Unused => "its job was cancelled before it got it, and GoCD disabled the agent",
        }
    }
}

/// server-ping's reconciliation, in the order the actions must run: disable, delete
/// pods, delete agents.
///
/// - A pod whose agent never registered within the timeout is removed.
/// - A registered, idle agent whose pod outlived the timeout never got its job (it was
///   cancelled before assignment, which sends no job-completion): disable it now, remove
///   it on a later ping once GoCD confirms it is disabled.
/// - A disabled, idle agent: remove its pod, then the agent.
/// - An agent with no pod in any cluster profile is removed, but only when every
///   listing succeeded (`complete`): an unreachable engine must not look like gone pods.
/// - An agent that is `Building` is never touched, and neither is its pod.
pub fn plan_ping(
    clusters: &[ClusterSnapshot],
    agents: &[AgentMetadata],
    now: SystemTime,
    complete: bool,
) -> Vec<Action> {
    let agents_by_id: HashMap<&str, &AgentMetadata> = agents.iter().map(|a| (a.agent_id.as_str(), a)).collect();
    let mut disable = BTreeSet::new();
    let mut delete_agents = BTreeSet::new();
    let mut delete_pods = Vec::new();

    for cluster in clusters {
        for pod in &cluster.pods {
            let expired = now.duration_since(pod.created).unwrap_or_default() >= cluster.auto_register_timeout;
            let stopped = matches!(pod.phase, PodPhase::Stopped(_));
            let mut remove = |reason| {
                delete_pods.push(Action::DeletePod {
                    cluster: cluster.cluster.clone(),
                    name: pod.name.clone(),
                    reason,
                });
            };
            let Some(agent) = agents_by_id.get(pod.name.as_str()) else {
                if stopped {
                    remove(RemovalReason::Stopped);
                } else if expired {
                    remove(RemovalReason::NeverRegistered);
                }
                continue;
            };
            if agent.is_building() || !agent.is_idle_or_gone() {
                continue;
            }
            if agent.is_disabled() {
                remove(RemovalReason::Unused);
                delete_agents.insert(agent.agent_id.clone());
            } else if agent.is_enabled() && (expired || stopped) {
                disable.insert(agent.agent_id.clone());
            }
        }
    }
    if complete {
        let pod_names: BTreeSet<&str> = clusters.iter().flat_map(|c| c.pods.iter().map(|p| p.name.as_str())).collect();
        for agent in agents.iter().filter(|a| !pod_names.contains(a.agent_id.as_str()) && !a.is_building()) {
            if !agent.is_disabled() {
                disable.insert(agent.agent_id.clone());
            }
            delete_agents.insert(agent.agent_id.clone());
        }
    }

    let mut actions = Vec::new();
    if !disable.is_empty() {
        actions.push(Action::DisableAgents(disable.into_iter().collect()));
    }
    actions.extend(delete_pods);
    if !delete_agents.is_empty() {
        actions.push(Action::DeleteAgents(delete_agents.into_iter().collect()));
    }
    actions
}

#[cfg(test)]
mod tests;
