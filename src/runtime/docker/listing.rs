//! A pod as the engine lists it: one pod per `gocd-dind.gocd.org/pod` label, its phase
//! from its containers' states, its job from the agent container's labels, a warm pod's
//! pool from dind's.

use std::time::{Duration, UNIX_EPOCH};

use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};

use crate::listing::{PodInfo, PodPhase, WarmPod, WarmState};
use crate::pod::{annotation, label_keys, pool_of, AGENT_CONTAINER, DIND_CONTAINER};

/// A pod from its containers: the job it serves from the agent container's labels (a
/// claimed warm pod carries the binding only there), a warm pod's pool from dind's.
pub fn pod_info(name: String, containers: &[ContainerSummary]) -> PodInfo {
    let of = |which: &str| {
        containers
            .iter()
            .find(|c| c.labels.as_ref().and_then(|l| l.get(label_keys::CONTAINER)).map(String::as_str) == Some(which))
    };
    let (dind, agent) = (of(DIND_CONTAINER), of(AGENT_CONTAINER));
    let labels = agent.or(dind).and_then(|c| c.labels.clone()).unwrap_or_default();
    let pool = dind.and_then(|c| c.labels.as_ref()).and_then(|l| pool_of(|k| l.get(k).cloned()));
    // A claimed warm pod's timeout runs from its claim: its agent container's creation.
    let created = match (&pool, agent) {
        (Some(_), Some(agent)) => agent.created.unwrap_or_default(),
        _ => containers.iter().filter_map(|c| c.created).min().unwrap_or_default(),
    };
    let state = |c: Option<&ContainerSummary>| c.map(|c| (c.state, c.status.clone().unwrap_or_default()));
    let running = Some(ContainerSummaryStateEnum::RUNNING);
    let ended = |s: Option<ContainerSummaryStateEnum>| {
        matches!(s, Some(ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD))
    };
    let phase = match (state(dind), state(agent)) {
        (Some((d, _)), Some((a, _))) if d == running && a == running => PodPhase::Running,
        (Some((d, status)), _) if ended(d) => PodPhase::Stopped(format!("dind {status}")),
        (_, Some((a, status))) if ended(a) => PodPhase::Stopped(format!("agent {status}")),
        (None, Some(_)) => PodPhase::Stopped("dind container is missing".into()),
        // A warm pod has no agent until a job claims it.
        (Some((d, _)), None) if pool.is_some() && d == running => PodPhase::Running,
        _ => PodPhase::Starting,
    };
    let warm = match (pool, agent) {
        (Some((pool, shape)), None) => {
            let state = if phase == PodPhase::Running { WarmState::Ready } else { WarmState::Warming };
            Some(WarmPod { pool, shape, state })
        }
        _ => None,
    };
    PodInfo {
        job_id: labels.get(label_keys::JOB_ID).and_then(|j| j.parse().ok()).unwrap_or_default(),
        job: labels.get(annotation::JOB_IDENTIFIER).and_then(|j| serde_json::from_str(j).ok()),
        created: UNIX_EPOCH + Duration::from_secs(u64::try_from(created).unwrap_or_default()),
        phase,
        name,
        warm,
    }
}
