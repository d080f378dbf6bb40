//! Pure readings of a pod's status: its phase for the GoCD rules, whether waiting longer
//! can help, and what the status report shows. No I/O, so each rule has a unit test.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::listing::{WarmPod, WarmState};
use crate::pod::{annotation, label_keys, pool_of, Ownership, AGENT_CONTAINER, DIND_CONTAINER};
use crate::runtime::{ContainerDetails, PodEvent, PodInfo, PodPhase};

/// Waiting reasons that will not resolve by waiting.
const HOPELESS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CrashLoopBackOff",
    "RunContainerError",
];

/// What a pod being started tells whoever waits for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// The agent container runs (so dind's startup probe passed before it).
    Running,
    /// Still starting; with what the scheduler said, if it could not place the pod.
    Waiting { unschedulable: Option<String> },
    /// It will not start: why.
    Failed(String),
}

pub fn owned(pod: &Pod, owner: &Ownership) -> bool {
    let labels = pod.metadata.labels.as_ref();
    owner.selector().iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

pub fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    let init = status.and_then(|s| s.init_container_statuses.as_ref()).into_iter().flatten();
    init.chain(status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten())
}

fn container<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    statuses(pod).find(|c| c.name == name)
}

pub fn startup(pod: &Pod) -> Startup {
    match phase(pod) {
        PodPhase::Running => return Startup::Running,
        PodPhase::Stopped(why) => return Startup::Failed(why),
        PodPhase::Starting => {}
    }
    for c in statuses(pod) {
        let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
        if let Some(reason) = waiting.and_then(|w| w.reason.as_deref()).filter(|r| HOPELESS.contains(r)) {
            let message = waiting.and_then(|w| w.message.as_deref()).unwrap_or_default();
            return Startup::Failed(format!("{}: {reason}: {message}", c.name));
        }
    }
    // dind runs as a sidecar that Kubernetes restarts; once it has exited before the
    // agent started, dockerd did not come up, and restarting will not change that.
    if let Some(dind) = container(pod, DIND_CONTAINER) {
        let exited = dind
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .or_else(|| dind.last_state.as_ref().and_then(|s| s.terminated.as_ref()));
        if let Some(exit) = exited {
            return Startup::Failed(format!(
                "dind exited with code {} ({}) before dockerd answered",
                exit.exit_code,
                exit.reason.as_deref().unwrap_or("no reason given")
            ));
        }
    }
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten();
    let unschedulable = conditions
        .filter(|c| c.type_ == "PodScheduled" && c.status == "False")
        .find_map(|c| c.message.clone().or_else(|| c.reason.clone()));
    Startup::Waiting { unschedulable }
}

/// Whether dockerd answered over TLS: dind (a native sidecar) is `started` once its
/// startup probe, a TLS API call, passed.
pub fn dockerd_ready(pod: &Pod) -> bool {
    container(pod, DIND_CONTAINER).is_some_and(|c| c.started == Some(true))
}

/// Whether dind's log of interest is its previous run (it exited and was restarted).
pub fn dind_restarted(pod: &Pod) -> bool {
    container(pod, DIND_CONTAINER).is_some_and(|c| c.restart_count > 0)
}

pub fn phase(pod: &Pod) -> PodPhase {
    if terminating(pod) {
        return PodPhase::Stopped("the pod is being deleted".into());
    }
    let status = pod.status.as_ref();
    if let Some(phase @ ("Failed" | "Succeeded")) = status.and_then(|s| s.phase.as_deref()) {
        let message = status.and_then(|s| s.message.as_deref()).unwrap_or_default();
        return PodPhase::Stopped(format!("pod {}: {message}", phase.to_lowercase()));
    }
    match container(pod, AGENT_CONTAINER).and_then(|c| c.state.as_ref()) {
        Some(state) if state.running.is_some() => PodPhase::Running,
        Some(state) if state.terminated.is_some() => {
            let code = state.terminated.as_ref().map_or(0, |t| t.exit_code);
            PodPhase::Stopped(format!("agent exited with code {code}"))
        }
        _ => PodPhase::Starting,
    }
}

fn system_time(time: &Time) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(time.0.as_second()).unwrap_or_default())
}

/// A pod as the GoCD rules see it. A warm pod carries its pool's labels and no job's; a
/// job's claim adds the job's label and annotations, and `claimed-at` (seconds since the
/// epoch), from which its timeout runs.
pub fn pod_info(pod: &Pod) -> PodInfo {
    let labels = pod.metadata.labels.as_ref();
    let annotations = pod.metadata.annotations.as_ref();
    let claimed = annotations.and_then(|a| a.get(annotation::CLAIMED_AT)).and_then(|t| t.parse::<u64>().ok());
    let created = match claimed {
        Some(seconds) => UNIX_EPOCH + Duration::from_secs(seconds),
        None => pod.metadata.creation_timestamp.as_ref().map_or_else(SystemTime::now, system_time),
    };
    let job_id = labels.and_then(|l| l.get(label_keys::JOB_ID)).and_then(|j| j.parse().ok());
    let phase = phase(pod);
    let warm = match (job_id, labels.and_then(|l| pool_of(|k| l.get(k).cloned()))) {
        (None, Some((pool, shape))) => {
            let state = if phase == PodPhase::Running { WarmState::Ready } else { WarmState::Warming };
            Some(WarmPod { pool, shape, state })
        }
        _ => None,
    };
    PodInfo {
        name: pod.metadata.name.clone().unwrap_or_default(),
        job_id: job_id.unwrap_or_default(),
        job: annotations.and_then(|a| a.get(annotation::JOB_IDENTIFIER)).and_then(|j| serde_json::from_str(j).ok()),
        created,
        phase,
        warm,
    }
}

/// Each container as the status report shows it, dind (the sidecar) first. The exit code
/// and an OOM kill are its current run's when it ended, else its previous run's (dind
/// restarted by the kubelet).
pub fn containers(pod: &Pod) -> Vec<ContainerDetails> {
    statuses(pod)
        .map(|c| {
            let ended = c
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.as_ref()));
            ContainerDetails {
                name: c.name.clone(),
                image: c.image.clone(),
                state: match &c.state {
                    Some(s) if s.running.is_some() => "running".into(),
                    Some(s) if s.terminated.is_some() => {
                        let t = s.terminated.as_ref().expect("checked");
                        format!("terminated: exit code {} ({})", t.exit_code, t.reason.as_deref().unwrap_or("-"))
                    }
                    Some(s) => s.waiting.as_ref().and_then(|w| w.reason.clone()).unwrap_or_else(|| "waiting".into()),
                    None => "unknown".into(),
                },
                exit_code: ended.map(|t| i64::from(t.exit_code)),
                oom_killed: ended.is_some_and(|t| t.reason.as_deref() == Some("OOMKilled")),
                restarts: u32::try_from(c.restart_count).unwrap_or(0),
            }
        })
        .collect()
}

/// The events of one pod, oldest first, as `kubectl describe pod` lists them.
pub fn events(events: &[Event]) -> Vec<PodEvent> {
    let mut read: Vec<PodEvent> = events
        .iter()
        .map(|e| PodEvent {
            at: e
                .last_timestamp
                .as_ref()
                .or(e.first_timestamp.as_ref())
                .map(system_time)
                .or_else(|| {
                    e.event_time
                        .as_ref()
                        .map(|t| UNIX_EPOCH + Duration::from_secs(u64::try_from(t.0.as_second()).unwrap_or_default()))
                })
                .or_else(|| e.metadata.creation_timestamp.as_ref().map(system_time)),
            warning: e.type_.as_deref() == Some("Warning"),
            reason: e.reason.clone().unwrap_or_default(),
            message: e.message.clone().unwrap_or_default(),
            count: e.count.and_then(|n| u32::try_from(n).ok()).unwrap_or(1),
        })
        .collect();
    read.sort_by_key(|e| e.at);
    read
}

/// Pod-level facts worth a line in the report: scheduling trouble, the phase's message.
pub fn notes(pod: &Pod) -> Vec<String> {
    let status = pod.status.as_ref();
    let mut notes: Vec<String> = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.status == "False" && c.message.is_some())
        .map(|c| format!("{}: {}", c.type_, c.message.as_deref().unwrap_or_default()))
        .collect();
    if terminating(pod) {
        notes.push("being deleted".into());
    }
    notes
}

#[cfg(test)]
mod tests;
