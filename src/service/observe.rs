//! The service noting what happens to pods as it happens: each pod's timeline in the
//! journal, the start-latency histogram, failures and limit hits, the health of each
//! engine, post-mortems when a pod goes; and the per-cluster gauges, set at each scrape
//! from the registry, the journal and the clusters GoCD's profiles name now.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use super::journal::{HoldReason, Stage, StartFailure, Story};
use super::{Cluster, Lifecycle, Service};
use crate::listing::PodInfo;
use crate::metrics::ClusterGauges;
use crate::protocol::{AgentMetadata, JobIdentifier};
use crate::runtime::{PodDetails, RuntimeError};
use crate::settings::{Choice, ClusterId};

/// How long the last look at a pod before it is removed may take: job-completion and
/// server-ping wait for it.
const LAST_LOOK_WITHIN: Duration = Duration::from_secs(2);

impl Cluster {
    /// The `runtime` label: what the pods run on.
    pub fn runtime_name(&self) -> &'static str {
        self.settings.runtime.name()
    }

    fn story(&self, pod: &str, job: JobIdentifier, created: std::time::SystemTime, adopted: bool) -> Story {
        Story {
            pod: pod.to_owned(),
            cluster: self.id.clone(),
            place: self.describe(),
            runtime: self.runtime_name(),
            job,
            timeline: vec![(Stage::Created, created)],
            adopted,
            failure: None,
            removal: None,
            last_look: None,
            warm: None,
        }
    }
}

impl Service {
    /// create-agent decided to create `pod` for `job`.
    pub(crate) fn note_created(&self, cluster: &Cluster, pod: &str, job: &JobIdentifier) {
        let story = cluster.story(pod, job.clone(), self.clock.now(), false);
        self.journal.lock().unwrap().created(story);
    }

    /// `pod` reached `stage`; the first time, a timed stage is observed in the histogram.
    pub(crate) fn note_stage(&self, pod: &str, stage: Stage) {
        let mut journal = self.journal.lock().unwrap();
        let took = journal.reached(pod, stage, self.clock.now());
        let labels = journal.story(pod).map(|s| (s.runtime, s.start()));
        drop(journal);
        if let (Some(took), Some(label), Some((runtime, start))) = (took, stage.metric(), labels) {
            self.metrics.start_stage(label, runtime, start, took.as_secs_f64());
        }
    }

    /// A warm pod is being made for `cluster`'s pool: its story, with no job yet.
    pub(crate) fn note_warm_created(&self, cluster: &Cluster, pod: &str) {
        let now = self.clock.now();
        let mut story = cluster.story(pod, JobIdentifier::default(), now, false);
        story.warm = Some(super::journal::WarmStory { made: now, claimed: None, pull_failures: Vec::new() });
        self.journal.lock().unwrap().created(story);
    }

    /// A job claimed warm pod `pod`: its timeline restarts at the claim, and its dockerd
    /// answers already (the `pod_ready` stage of a warm start is the claim's decision).
    /// What making it left to tell the job (images it could not pre-pull) is copied from
    /// the registry, which forgets it with the pod, into the story, which the job's agent
    /// page shows and the post-mortem keeps.
    pub(crate) fn note_claimed(&self, pod: &str, job: &JobIdentifier) {
        let pull_failures = self.registry.lock().unwrap().get(pod).map(|r| r.pull_failures.clone()).unwrap_or_default();
        self.journal.lock().unwrap().claimed(pod, job.clone(), self.clock.now(), pull_failures);
        self.note_stage(pod, Stage::DockerdReady);
    }

    /// GoCD's agent list: agents it knows are registered, `Building` ones assigned.
    pub(crate) fn note_agents(&self, agents: &[AgentMetadata]) {
        for agent in agents {
            self.note_stage(&agent.agent_id, Stage::Registered);
            if agent.is_building() {
                self.note_stage(&agent.agent_id, Stage::Assigned);
            }
        }
    }

    /// The pod's start failed and the runtime removed what it had made of it.
    pub(crate) async fn note_start_failure(&self, cluster: &Cluster, pod: &str, error: &RuntimeError) {
        let reason = error.reason();
        self.metrics.pod_failure(reason.as_str());
        // Kubernetes keeps a pod's events after the pod: why it was not scheduled, pulls.
        let events = tokio::time::timeout(LAST_LOOK_WITHIN, cluster.runtime.pod_events(pod)).await;
        let look = PodDetails {
            dind_log_tail: error.log_tail().to_owned(),
            events: events.ok().and_then(Result::ok).unwrap_or_default(),
            ..PodDetails::default()
        };
        let failure = StartFailure { reason, message: error.summary() };
        self.journal.lock().unwrap().failed(pod, failure, look, self.clock.now());
        self.write_postmortem(pod);
    }

    /// What the pod looks like just before it is removed (containers, dockerd's log,
    /// events), for its post-mortem; nothing when the runtime does not tell in time.
    pub(crate) async fn last_look(&self, cluster: &Cluster, pod: &str) -> Option<PodDetails> {
        let look = tokio::time::timeout(LAST_LOOK_WITHIN, cluster.runtime.pod_details(&cluster.owner, pod)).await;
        look.ok().and_then(Result::ok).flatten()
    }

    /// The pod is gone: its story becomes a post-mortem.
    pub(crate) fn note_removed(&self, pod: &str, why: &str, look: Option<PodDetails>) {
        self.journal.lock().unwrap().removed(pod, why, look, self.clock.now());
        self.write_postmortem(pod);
    }

    fn write_postmortem(&self, pod: &str) {
        let Some(log) = self.postmortem_log.get() else { return };
        let story = self.journal.lock().unwrap().postmortems().find(|s| s.pod == pod).cloned();
        if let Some(story) = story {
            log.write(&story);
        }
    }

    /// Writes each post-mortem as a JSON line to `log` from now on.
    pub fn write_postmortems_to(&self, log: super::postmortem::PostmortemLog) {
        let _ = self.postmortem_log.set(log);
    }

    /// create-agent did not create a pod for the job, for `reason`.
    pub(crate) fn note_hold(&self, job: &JobIdentifier, cluster: Option<&ClusterId>, reason: HoldReason) {
        if let HoldReason::Limit(limit, _) = &reason {
            if let Some(cluster) = cluster {
                self.metrics.limit_hit(&cluster.0, limit.as_str());
            }
        }
        self.journal.lock().unwrap().hold(job.job_id, cluster.cloned(), reason, self.clock.now());
    }

    /// A listing or probe of the cluster's engine or API server succeeded or failed.
    pub(crate) fn note_engine(&self, cluster: &ClusterId, error: Option<String>) {
        self.journal.lock().unwrap().engine_answered(cluster, error, self.clock.now());
    }

    /// A listing of the cluster: pods this process has no story of (it restarted) are
    /// adopted; pods no longer listed are gone.
    pub(crate) fn note_listing(&self, cluster: &Cluster, listed: &[PodInfo], dropped: &[String]) {
        let mut journal = self.journal.lock().unwrap();
        for pod in listed {
            if journal.story(&pod.name).is_none() {
                let job = pod.job.clone().unwrap_or(JobIdentifier { job_id: pod.job_id, ..JobIdentifier::default() });
                let mut story = cluster.story(&pod.name, job, pod.created, true);
                if pod.warm.is_some() {
                    story.warm =
                        Some(super::journal::WarmStory { made: pod.created, claimed: None, pull_failures: Vec::new() });
                }
                journal.adopt(story);
            }
        }
        let now = self.clock.now();
        for pod in dropped {
            journal.removed(pod, "it is no longer listed by its engine", None, now);
        }
        drop(journal);
        for pod in dropped {
            self.write_postmortem(pod);
        }
    }

    /// Forgets what was noted of clusters no profile names any more.
    pub(crate) fn forget_observations(&self, live: &BTreeSet<ClusterId>, gone: &[Cluster]) {
        self.journal.lock().unwrap().retain_clusters(live, self.clock.now());
        let gone: Vec<String> = gone.iter().map(|c| c.id.0.clone()).collect();
        self.metrics.forget_clusters(&gone);
    }

    /// `/metrics`: the gauges of the clusters GoCD's profiles name now, then everything.
    pub fn metrics_text(&self) -> String {
        let clusters = self.known_clusters();
        let records: Vec<(ClusterId, String, Lifecycle)> = self
            .registry
            .lock()
            .unwrap()
            .all()
            .map(|r| (r.cluster.clone(), r.info.name.clone(), r.lifecycle))
            .collect();
        let warm = self.warm_counts();
        let known: HashSet<String> = self.last_agents.lock().unwrap().iter().map(|a| a.agent_id.clone()).collect();
        let journal = self.journal.lock().unwrap();
        let registered = |pod: &str| known.contains(pod) || journal.story(pod).is_some_and(Story::registered);
        let gauges: Vec<ClusterGauges> = clusters
            .iter()
            .map(|cluster| {
                let mut pods = [("creating", 0), ("pending", 0), ("running", 0), ("terminating", 0)];
                for (_, pod, lifecycle) in records.iter().filter(|(id, _, _)| *id == cluster.id) {
                    let state = match lifecycle {
                        Lifecycle::Creating => 0,
                        Lifecycle::Live if registered(pod) => 2,
                        Lifecycle::Live => 1,
                        Lifecycle::Terminating => 3,
                    };
                    pods[state].1 += 1;
                }
                let max = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
                ClusterGauges {
                    cluster: cluster.id.0.clone(),
                    pods,
                    max_pending: max(cluster.settings.max_pending_agents),
                    max_total: max(cluster.settings.max_running_agents),
                    up: journal.engine(&cluster.id).map(|h| h.up),
                    warm: warm
                        .iter()
                        .filter(|(c, ..)| *c == cluster.id)
                        .map(|(_, p, s, n)| (p.clone(), *s, *n))
                        .collect(),
                }
            })
            .collect();
        drop(journal);
        self.metrics.encode_with(&gauges)
    }
}
