//! What the status pages show, gathered from the runtimes, the registry and the journal.
//! Nothing here carries a secret: no environment values, no keys, no secure settings.
//!
//! The plugin page groups GoCD's cluster profiles by the place their pods live (one
//! engine, or one namespace of one cluster): profiles that share a place share its pods
//! and count them against their own limits.

use std::time::Duration;

use super::journal::{Hold, Story};
use super::{Cluster, Lifecycle, Service};
use crate::listing::PodPhase;
use crate::processor::ServerInfo;
use crate::protocol::{AgentStatusReportRequest, JobIdentifier, Properties};
use crate::runtime::PodDetails;
use crate::settings::{cluster, Choice, ClusterId, ClusterSettings};

/// Failures each place lists on the plugin page (newest first).
const RECENT_FAILURES: usize = 10;
/// Post-mortems the plugin page lists (newest first); the agent pages show each in full.
const RECENT_POSTMORTEMS: usize = 25;

/// A pod's state as the pages show it; `pending` is started but not registered with GoCD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    Creating,
    Pending,
    Running,
    Terminating,
    Stopped(String),
}

impl PodState {
    pub fn text(&self) -> String {
        match self {
            Self::Creating => "creating".into(),
            Self::Pending => "pending".into(),
            Self::Running => "running".into(),
            Self::Terminating => "terminating".into(),
            Self::Stopped(why) => format!("stopped: {why}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PodRow {
    pub name: String,
    pub job_id: i64,
    pub job: Option<JobIdentifier>,
    pub state: PodState,
    pub age: Duration,
}

/// How many pods are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub creating: usize,
    pub pending: usize,
    pub running: usize,
    pub terminating: usize,
    pub stopped: usize,
    /// Warm pods no job has claimed yet (being made or up): no agent of theirs registers
    /// before a claim, so they count as pending.
    pub warm: usize,
}

impl StateCounts {
    /// What `max_pending_agents` counts: pods whose agent has not registered yet.
    pub fn unregistered(&self) -> usize {
        self.creating + self.pending + self.warm
    }

    pub fn all(&self) -> usize {
        self.creating + self.pending + self.running + self.terminating + self.stopped + self.warm
    }
}

/// One warm pool of a place: what its profile last asked for (unknown after a restart
/// until a job of it asks), and its unclaimed warm pods.
#[derive(Debug, Clone, Default)]
pub struct PoolView {
    pub pool: String,
    /// The agent image and the images it pre-pulls, to recognise the elastic profile by.
    pub image: Option<String>,
    pub pre_pull: Vec<String>,
    pub shape: Option<crate::listing::PoolShape>,
    pub pods: Vec<WarmRow>,
}

/// An unclaimed warm pod.
#[derive(Debug, Clone)]
pub struct WarmRow {
    pub name: String,
    /// `warming` (dockerd starting, images being pulled), `ready`, or `leaving`.
    pub state: &'static str,
    pub age: Duration,
    /// Images it could not pre-pull, each with why (known only to the process that made it).
    pub pull_failures: Vec<String>,
}

/// One cluster profile that names a place.
#[derive(Debug, Clone, Default)]
pub struct ProfileView {
    /// The settings that tell it from the other profiles of its place; empty when alone.
    pub distinguishing: Vec<(&'static str, String)>,
    pub settings: Vec<(&'static str, String)>,
    pub max_pending: usize,
    pub max_total: usize,
}

/// One place where agent pods run, and the profiles that point there.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub cluster: Option<ClusterId>,
    pub description: String,
    /// The engine's or API server's version; `None` when it did not answer.
    pub engine: Option<String>,
    pub profiles: Vec<ProfileView>,
    pub counts: StateCounts,
    /// Pods serving (or made for) jobs; unclaimed warm pods are under `pools`.
    pub pods: Vec<PodRow>,
    pub pools: Vec<PoolView>,
    /// Post-mortems of pods here whose start failed, newest first.
    pub failures: Vec<Story>,
    pub error: Option<String>,
}

/// The plugin page: every place, profiles that cannot be used, recent post-mortems.
#[derive(Debug, Clone, Default)]
pub struct PluginView {
    pub places: Vec<ClusterView>,
    pub unusable: Vec<String>,
    pub postmortems: Vec<Story>,
    pub server: Option<ServerInfo>,
}

/// The agent page of one job.
#[derive(Debug, Clone, Default)]
pub struct AgentView {
    pub job: JobIdentifier,
    pub place: String,
    /// The agent id GoCD asked about, when it named one.
    pub asked_for: Option<String>,
    pub row: Option<PodRow>,
    /// The pod's timeline so far.
    pub story: Option<Story>,
    pub details: Option<PodDetails>,
    /// Why create-agent has not created a pod (yet).
    pub hold: Option<Hold>,
    /// The last pod of this job that is gone.
    pub postmortem: Option<Story>,
    pub error: Option<String>,
    pub server: Option<ServerInfo>,
}

/// The settings a page shows of a profile: never a key, token or certificate.
fn shown_settings(s: &ClusterSettings) -> Vec<(&'static str, String)> {
    vec![
        (cluster::GO_SERVER_URL.key, s.go_server_url.clone().unwrap_or_else(|| "(GoCD's secure site URL)".into())),
        (cluster::AUTO_REGISTER_TIMEOUT.key, format!("{} minutes", s.auto_register_timeout.as_secs() / 60)),
        (cluster::MAX_PENDING_AGENTS.key, s.max_pending_agents.to_string()),
        (cluster::MAX_RUNNING_AGENTS.key, s.max_running_agents.to_string()),
        (cluster::AGENT_IMAGE.key, s.agent_image.clone().unwrap_or_else(|| "(set per elastic profile)".into())),
        (cluster::DIND_IMAGE.key, s.dind_image.clone()),
        (cluster::DIND_SECURITY.key, s.dind_security.name().to_owned()),
        (cluster::ALLOWED_SECRETS.key, {
            let names: Vec<&str> = s.allowed_secrets.iter().map(String::as_str).collect();
            if names.is_empty() {
                "(none)".to_owned()
            } else {
                names.join(", ")
            }
        }),
    ]
}

/// Each profile's settings, and those that differ among the profiles of one place.
fn profile_views(settings: &[ClusterSettings]) -> Vec<ProfileView> {
    let shown: Vec<Vec<(&'static str, String)>> = settings.iter().map(shown_settings).collect();
    settings
        .iter()
        .zip(&shown)
        .map(|(s, mine)| ProfileView {
            distinguishing: if shown.len() > 1 {
                mine.iter()
                    .filter(|(key, value)| shown.iter().any(|other| other.iter().any(|(k, v)| k == key && v != value)))
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            },
            settings: mine.clone(),
            max_pending: s.max_pending_agents,
            max_total: s.max_running_agents,
        })
        .collect()
}

impl Service {
    /// GoCD's server info when it can be had (the pages link into GoCD with it).
    async fn known_server(&self) -> Option<ServerInfo> {
        self.server_info().await.ok()
    }

    /// The cluster status report: the place of one profile.
    pub async fn cluster_view(&self, props: &Properties) -> ClusterView {
        match self.resolve(props).await {
            Ok(cluster) => self.place_view(&[cluster]).await,
            Err(e) => ClusterView {
                description: "cluster profile not usable".into(),
                error: Some(e.to_string()),
                ..ClusterView::default()
            },
        }
    }

    /// The plugin status report: one section per place, profiles grouped.
    pub async fn plugin_view(&self, all: &[Properties]) -> PluginView {
        let mut groups: Vec<Vec<Cluster>> = Vec::new();
        let mut unusable = Vec::new();
        for props in all {
            match self.resolve(props).await {
                Ok(cluster) => match groups.iter_mut().find(|g| g[0].id == cluster.id) {
                    Some(group) => group.push(cluster),
                    None => groups.push(vec![cluster]),
                },
                Err(e) => unusable.push(e.to_string()),
            }
        }
        let mut places = Vec::new();
        for group in &groups {
            places.push(self.place_view(group).await);
        }
        let postmortems = self.journal.lock().unwrap().postmortems().take(RECENT_POSTMORTEMS).cloned().collect();
        PluginView { places, unusable, postmortems, server: self.known_server().await }
    }

    /// One place, as the profiles in `group` (all naming it) see it.
    async fn place_view(&self, group: &[Cluster]) -> ClusterView {
        let cluster = &group[0];
        let settings: Vec<ClusterSettings> = group.iter().map(|c| c.settings.clone()).collect();
        let mut view = ClusterView {
            cluster: Some(cluster.id.clone()),
            description: cluster.describe(),
            profiles: profile_views(&settings),
            ..ClusterView::default()
        };
        match cluster.runtime.describe().await {
            Ok(engine) => view.engine = Some(engine),
            Err(e) => {
                self.note_engine(&cluster.id, Some(e.to_string()));
                view.error = Some(e.to_string());
            }
        }
        if let Err(e) = self.refresh(cluster).await {
            view.error = Some(e.to_string());
        }
        view.pods = self.rows(|r| r.cluster == cluster.id && r.info.warm.is_none());
        view.pools = self.pool_views(&cluster.id);
        view.counts.warm = view.pools.iter().map(|p| p.pods.iter().filter(|w| w.state != "leaving").count()).sum();
        for row in &view.pods {
            let count = match row.state {
                PodState::Creating => &mut view.counts.creating,
                PodState::Pending => &mut view.counts.pending,
                PodState::Running => &mut view.counts.running,
                PodState::Terminating => &mut view.counts.terminating,
                PodState::Stopped(_) => &mut view.counts.stopped,
            };
            *count += 1;
        }
        let journal = self.journal.lock().unwrap();
        view.failures = journal
            .postmortems()
            .filter(|s| s.cluster == cluster.id && s.failure.is_some())
            .take(RECENT_FAILURES)
            .cloned()
            .collect();
        view
    }

    fn rows(&self, keep: impl Fn(&super::PodRecord) -> bool) -> Vec<PodRow> {
        let now = self.clock.now();
        let records: Vec<super::PodRecord> = self.registry.lock().unwrap().all().filter(|r| keep(r)).cloned().collect();
        let known: std::collections::HashSet<String> =
            self.last_agents.lock().unwrap().iter().map(|a| a.agent_id.clone()).collect();
        let journal = self.journal.lock().unwrap();
        records
            .into_iter()
            .map(|r| {
                let registered =
                    known.contains(&r.info.name) || journal.story(&r.info.name).is_some_and(Story::registered);
                PodRow {
                    state: match (&r.info.phase, r.lifecycle) {
                        (_, Lifecycle::Terminating) => PodState::Terminating,
                        (_, Lifecycle::Creating) => PodState::Creating,
                        (PodPhase::Stopped(why), _) => PodState::Stopped(why.clone()),
                        (PodPhase::Running, _) if registered => PodState::Running,
                        (PodPhase::Starting | PodPhase::Running, _) => PodState::Pending,
                    },
                    age: now.duration_since(r.info.created).unwrap_or_default(),
                    name: r.info.name,
                    job_id: r.info.job_id,
                    job: r.info.job,
                }
            })
            .collect()
    }

    /// The warm pools of a cluster: those jobs asked for since this process started, and
    /// those its warm pods name (after a restart), each with its unclaimed warm pods.
    fn pool_views(&self, cluster: &ClusterId) -> Vec<PoolView> {
        let now = self.clock.now();
        let mut pools: std::collections::BTreeMap<String, PoolView> = self
            .known_pools(cluster)
            .into_iter()
            .map(|(pool, known)| {
                let view = PoolView {
                    pool: pool.0.clone(),
                    image: Some(known.image),
                    pre_pull: known.pre_pull,
                    shape: Some(known.shape),
                    pods: Vec::new(),
                };
                (pool.0, view)
            })
            .collect();
        let registry = self.registry.lock().unwrap();
        for record in registry.all().filter(|r| &r.cluster == cluster) {
            let (Some(warm), Some(state)) = (record.info.warm.as_ref(), record.warm_state()) else { continue };
            let state = state.as_str();
            let pool = pools.entry(warm.pool.0.clone()).or_insert_with(|| PoolView {
                pool: warm.pool.0.clone(),
                shape: Some(warm.shape),
                ..PoolView::default()
            });
            pool.pods.push(WarmRow {
                name: record.info.name.clone(),
                state,
                age: now.duration_since(record.info.created).unwrap_or_default(),
                pull_failures: record.pull_failures.clone(),
            });
        }
        pools.into_values().collect()
    }

    /// Works with or without `elastic_agent_id`: an agent that has not registered yet is
    /// found by its job id.
    pub async fn agent_view(&self, req: &AgentStatusReportRequest) -> AgentView {
        let job_id = req.job_identifier.job_id;
        let mut view = AgentView {
            job: req.job_identifier.clone(),
            asked_for: req.elastic_agent_id.clone(),
            server: self.known_server().await,
            ..AgentView::default()
        };
        let cluster =
            self.resolve(&req.cluster_profile_properties).await.map_err(|e| view.error = Some(e.to_string())).ok();
        if let Some(cluster) = &cluster {
            view.place = cluster.describe();
            if let Err(e) = self.refresh(cluster).await {
                view.error = Some(e.to_string());
            }
        }
        let name = req
            .elastic_agent_id
            .clone()
            .filter(|id| self.registry.lock().unwrap().get(id).is_some())
            .or_else(|| self.registry.lock().unwrap().find_by_job(job_id).map(|r| r.info.name.clone()));
        {
            let journal = self.journal.lock().unwrap();
            view.hold = journal.hold_of(job_id).cloned();
            view.postmortem = journal.postmortem_of_job(job_id).cloned();
            view.story = name.as_deref().and_then(|n| journal.story(n)).cloned();
        }
        if let Some(name) = &name {
            view.row = self.rows(|r| &r.info.name == name).into_iter().next();
            if let Some(cluster) = &cluster {
                match cluster.runtime.pod_details(&cluster.owner, name).await {
                    Ok(details) => view.details = details,
                    Err(e) => view.error = Some(e.to_string()),
                }
            }
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> ClusterSettings {
        ClusterSettings::parse(&Properties::from_pairs(pairs), false).unwrap()
    }

    #[test]
    fn profiles_of_one_place_are_told_apart_by_what_differs() {
        let views = profile_views(&[
            settings(&[("max_pending_agents", "2"), ("dind_image", "docker:dind")]),
            settings(&[("max_pending_agents", "2"), ("dind_image", "registry.example/no-such:1")]),
        ]);
        let keys = |v: &ProfileView| v.distinguishing.clone();
        assert_eq!(keys(&views[0]), [("dind_image", "docker:dind".to_owned())]);
        assert_eq!(keys(&views[1]), [("dind_image", "registry.example/no-such:1".to_owned())]);
        assert_eq!((views[0].max_pending, views[0].max_total), (2, 50));
        let alone = profile_views(&[settings(&[])]);
        assert!(alone[0].distinguishing.is_empty(), "a profile alone needs no telling apart");
        assert!(alone[0].settings.iter().any(|(k, _)| *k == "dind_image"));
    }

    #[test]
    fn pages_never_show_a_secret_setting() {
        let secret = settings(&[
            ("runtime", "kubernetes"),
            ("kubernetes_cluster_url", "https://k8s.example:6443"),
            ("security_token", "SECRET-TOKEN"),
        ]);
        let shown = format!("{:?}", shown_settings(&secret));
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
