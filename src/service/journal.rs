//! What the service saw happen to each pod, for the status pages and the metrics: the
//! timeline of every pod from the creation decision to its removal, why a job has no pod
//! (a limit, a refusal, an engine that does not answer), and the post-mortems of the last
//! pods once they are gone. Everything here is bounded, and nothing in it is secret: job
//! identifiers, pod names, places, reasons, container states and dockerd's own log.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use crate::protocol::JobIdentifier;
use crate::runtime::{FailureReason, PodDetails};
use crate::settings::ClusterId;

/// Post-mortems kept: a few hundred pods, each with at most [`LOG_KEPT`] of log.
pub const POSTMORTEMS_KEPT: usize = 300;
/// Jobs whose wait is remembered; GoCD re-sends create-agent for each while it waits.
const HOLDS_KEPT: usize = 1000;
/// dockerd's log a post-mortem keeps: its last lines, at most this many bytes.
pub const LOG_KEPT: usize = 16 * 1024;
/// Kubernetes events a post-mortem keeps (the newest).
const EVENTS_KEPT: usize = 30;

/// A point in a pod's life, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// create-agent decided to create it.
    Created,
    /// Its dockerd answered over TLS.
    DockerdReady,
    /// Its agent container started.
    AgentStarted,
    /// GoCD knows the agent (its agent list, or the agent asked for work).
    Registered,
    /// should-assign-work answered true for its job, or GoCD shows it Building.
    Assigned,
    /// job-completion arrived.
    Completed,
    Removed,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::DockerdReady => "dockerd ready",
            Self::AgentStarted => "agent started",
            Self::Registered => "registered",
            Self::Assigned => "assigned",
            Self::Completed => "completed",
            Self::Removed => "removed",
        }
    }

    /// The `stage` label of `gocd_dind_agent_start_seconds`, for the stages it times.
    pub fn metric(self) -> Option<&'static str> {
        match self {
            Self::DockerdReady => Some("pod_ready"),
            Self::AgentStarted => Some("agent_started"),
            Self::Registered => Some("agent_registered"),
            Self::Assigned => Some("job_assigned"),
            Self::Created | Self::Completed | Self::Removed => None,
        }
    }
}

/// Why a pod could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFailure {
    pub reason: FailureReason,
    pub message: String,
}

/// One pod's life as the service saw it.
#[derive(Debug, Clone)]
pub struct Story {
    pub pod: String,
    pub cluster: ClusterId,
    /// Where it ran, as operators recognise it (`docker at …`, `kubernetes namespace …`).
    pub place: String,
    /// `docker` or `kubernetes` (the `runtime` label of the start-latency histogram).
    pub runtime: &'static str,
    pub job: JobIdentifier,
    /// Each stage reached, once, in the order reached.
    pub timeline: Vec<(Stage, SystemTime)>,
    /// Found in a listing rather than created by this process (a restart): its stages
    /// before that are unknown, and it is left out of the start-latency histogram.
    pub adopted: bool,
    pub failure: Option<StartFailure>,
    /// Why it was removed: `job completed`, `never registered`, …
    pub removal: Option<String>,
    /// The last look at it before it went: containers, events, dockerd's log.
    pub last_look: Option<PodDetails>,
    /// Made as a warm pod, before any job asked: when, and when a job claimed it (its
    /// timeline then starts at the claim, which is what the job waited from).
    pub warm: Option<WarmStory>,
}

/// A warm pod's life before its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmStory {
    pub made: SystemTime,
    pub claimed: Option<SystemTime>,
    /// Images it could not pre-pull when it was made, each with why: the job that claims
    /// it pulls them itself, and its agent page says so (as its console does).
    pub pull_failures: Vec<String>,
}

impl Story {
    pub fn at(&self, stage: Stage) -> Option<SystemTime> {
        self.timeline.iter().find(|(s, _)| *s == stage).map(|(_, at)| *at)
    }

    /// The `start` label of the start-latency histogram: `warm` for a claimed warm pod.
    pub fn start(&self) -> &'static str {
        if self.warm.is_some() {
            "warm"
        } else {
            "cold"
        }
    }

    /// Waiting in its pool for a job: nothing a job waited for is timed yet.
    pub fn unclaimed(&self) -> bool {
        self.warm.as_ref().is_some_and(|w| w.claimed.is_none())
    }

    /// Whether GoCD knows its agent.
    pub fn registered(&self) -> bool {
        self.at(Stage::Registered).is_some()
    }

    /// The time from its creation decision (a warm pod's: its claim) to `stage`, for pods
    /// this process created (or claimed) for a job.
    fn since_created(&self, at: SystemTime) -> Option<Duration> {
        if self.adopted || self.unclaimed() {
            return None;
        }
        self.at(Stage::Created).map(|created| at.duration_since(created).unwrap_or_default())
    }
}

/// Which limit of a cluster profile held a job back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Limit {
    Pending,
    Total,
}

impl Limit {
    /// The `limit` label of the limit metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Total => "total",
        }
    }

    pub fn setting(self) -> &'static str {
        match self {
            Self::Pending => "max_pending_agents",
            Self::Total => "max_running_agents",
        }
    }
}

/// Why create-agent did not create a pod for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldReason {
    /// A limit is reached; the text says how many pods count against which maximum.
    Limit(Limit, String),
    /// The engine, the API server or GoCD could not be asked; GoCD asks again.
    Postponed(String),
    /// The request cannot be served as it is (invalid profile, a pod the runtime cannot
    /// run); it stays refused until the profile changes.
    Refused(String),
}

/// A job held back, since when and until when it was last asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub cluster: Option<ClusterId>,
    pub reason: HoldReason,
    pub since: SystemTime,
    pub last: SystemTime,
}

/// How a cluster's engine or API server last answered a listing or probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineHealth {
    pub up: bool,
    pub at: SystemTime,
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct Journal {
    live: HashMap<String, Story>,
    /// Post-mortems, newest last.
    gone: VecDeque<Story>,
    holds: HashMap<i64, Hold>,
    engines: HashMap<ClusterId, EngineHealth>,
}

impl Journal {
    /// create-agent decided to create `story.pod`; the job is no longer held.
    pub fn created(&mut self, story: Story) {
        self.holds.remove(&story.job.job_id);
        self.live.insert(story.pod.clone(), story);
    }

    /// A job claimed the warm pod: from now on its story is the job's, timed from the
    /// claim; what it was before stays in `warm`, with the images it could not pre-pull
    /// (`pull_failures`, known to the process that made it). A warm pod found after a
    /// restart has a story too (adopted), so every claim has one.
    pub fn claimed(&mut self, pod: &str, job: JobIdentifier, at: SystemTime, pull_failures: Vec<String>) {
        self.holds.remove(&job.job_id);
        let Some(story) = self.live.get_mut(pod) else { return };
        let made = story.warm.as_ref().map_or_else(|| story.at(Stage::Created).unwrap_or(at), |w| w.made);
        story.warm = Some(WarmStory { made, claimed: Some(at), pull_failures });
        story.job = job;
        story.timeline = vec![(Stage::Created, at)];
        story.adopted = false;
    }

    /// A pod the listing shows that this process has no story of (it restarted).
    pub fn adopt(&mut self, story: Story) {
        self.live.entry(story.pod.clone()).or_insert(story);
    }

    /// Records that `pod` reached `stage` (only the first time). Returns the time from its
    /// creation decision when this was the first time and the pod was created here.
    pub fn reached(&mut self, pod: &str, stage: Stage, at: SystemTime) -> Option<Duration> {
        let story = self.live.get_mut(pod)?;
        if story.at(stage).is_some() {
            return None;
        }
        story.timeline.push((stage, at));
        story.since_created(at)
    }

    /// The pod could not be started and is gone; `look` is what is known of it (dockerd's
    /// log, the runtime's events).
    pub fn failed(&mut self, pod: &str, failure: StartFailure, look: PodDetails, at: SystemTime) {
        let Some(mut story) = self.live.remove(pod) else { return };
        story.failure = Some(failure);
        story.last_look = Some(look);
        self.bury(story, "its start failed", at);
    }

    /// The pod is gone: `why`, and what it looked like just before, when known.
    pub fn removed(&mut self, pod: &str, why: &str, last_look: Option<PodDetails>, at: SystemTime) {
        let Some(mut story) = self.live.remove(pod) else { return };
        if last_look.is_some() {
            story.last_look = last_look;
        }
        self.bury(story, why, at);
    }

    fn bury(&mut self, mut story: Story, why: &str, at: SystemTime) {
        story.timeline.push((Stage::Removed, at));
        story.removal = Some(why.to_owned());
        if let Some(look) = &mut story.last_look {
            bound(look);
        }
        if self.gone.len() == POSTMORTEMS_KEPT {
            self.gone.pop_front();
        }
        self.gone.push_back(story);
    }

    pub fn story(&self, pod: &str) -> Option<&Story> {
        self.live.get(pod)
    }

    pub fn live(&self) -> impl Iterator<Item = &Story> {
        self.live.values()
    }

    /// The last post-mortem of a job's pod.
    pub fn postmortem_of_job(&self, job_id: i64) -> Option<&Story> {
        self.gone.iter().rev().find(|s| s.job.job_id == job_id)
    }

    /// Post-mortems, newest first.
    pub fn postmortems(&self) -> impl Iterator<Item = &Story> {
        self.gone.iter().rev()
    }

    /// The job was held back now: since when is kept while the reason stays the same.
    pub fn hold(&mut self, job_id: i64, cluster: Option<ClusterId>, reason: HoldReason, now: SystemTime) {
        if let Some(hold) = self.holds.get_mut(&job_id) {
            if hold.reason == reason {
                hold.last = now;
                return;
            }
        }
        if self.holds.len() >= HOLDS_KEPT && !self.holds.contains_key(&job_id) {
            let oldest = self.holds.iter().min_by_key(|(_, h)| h.last).map(|(id, _)| *id);
            oldest.map(|id| self.holds.remove(&id));
        }
        self.holds.insert(job_id, Hold { cluster, reason, since: now, last: now });
    }

    pub fn hold_of(&self, job_id: i64) -> Option<&Hold> {
        self.holds.get(&job_id)
    }

    pub fn engine_answered(&mut self, cluster: &ClusterId, error: Option<String>, at: SystemTime) {
        self.engines.insert(cluster.clone(), EngineHealth { up: error.is_none(), at, error });
    }

    pub fn engine(&self, cluster: &ClusterId) -> Option<&EngineHealth> {
        self.engines.get(cluster)
    }

    /// Forgets the live pods, holds and engine health of clusters no profile names; their
    /// pods' stories become post-mortems (the pods are no longer managed).
    pub fn retain_clusters(&mut self, live: &std::collections::BTreeSet<ClusterId>, now: SystemTime) {
        let gone: Vec<String> =
            self.live.values().filter(|s| !live.contains(&s.cluster)).map(|s| s.pod.clone()).collect();
        for pod in gone {
            if let Some(story) = self.live.remove(&pod) {
                self.bury(story, "no cluster profile names its cluster any more", now);
            }
        }
        self.holds.retain(|_, h| h.cluster.as_ref().is_none_or(|c| live.contains(c)));
        self.engines.retain(|id, _| live.contains(id));
    }
}

/// Keeps a post-mortem's look small: dockerd's last [`LOG_KEPT`] bytes (whole lines), the
/// newest [`EVENTS_KEPT`] events.
fn bound(look: &mut PodDetails) {
    let log = &look.dind_log_tail;
    if log.len() > LOG_KEPT {
        let mut start = log.len() - LOG_KEPT;
        while !log.is_char_boundary(start) {
            start += 1;
        }
        let kept = &log[start..];
        look.dind_log_tail = kept.split_once('\n').map_or(kept, |(_, rest)| rest).to_owned();
    }
    if look.events.len() > EVENTS_KEPT {
        look.events.drain(..look.events.len() - EVENTS_KEPT);
    }
}

#[cfg(test)]
mod tests;
