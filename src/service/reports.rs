//! What the status reports show, gathered from the runtimes and the registry. Nothing
//! here carries a secret: no environment values, no keys, no secure settings.

use std::time::Duration;

use super::{Failure, Service};
use crate::listing::PodPhase;
use crate::protocol::{AgentStatusReportRequest, JobIdentifier, Properties};
use crate::runtime::PodDetails;
use crate::settings::{cluster, Choice};

#[derive(Debug, Clone)]
pub struct PodRow {
    pub name: String,
    pub job_id: i64,
    pub job: Option<JobIdentifier>,
    pub state: String,
    pub age: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub description: String,
    pub engine: String,
    pub settings: Vec<(&'static str, String)>,
    pub pods: Vec<PodRow>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AgentView {
    pub pod: Option<String>,
    pub cluster: String,
    pub row: Option<PodRow>,
    pub details: Option<PodDetails>,
    pub failure: Option<Failure>,
    pub error: Option<String>,
}

impl Service {
    pub async fn cluster_view(&self, props: &Properties) -> ClusterView {
        let cluster = match self.resolve(props).await {
            Ok(c) => c,
            Err(e) => {
                return ClusterView {
                    description: "cluster profile not usable".into(),
                    error: Some(e.to_string()),
                    ..ClusterView::default()
                }
            }
        };
        let s = &cluster.settings;
        let mut view = ClusterView {
            description: cluster.describe(),
            settings: vec![
                (
                    cluster::GO_SERVER_URL.key,
                    s.go_server_url.clone().unwrap_or_else(|| "(GoCD's secure site URL)".into()),
                ),
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
            ],
            ..ClusterView::default()
        };
        match cluster.runtime.describe().await {
            Ok(engine) => view.engine = engine,
            Err(e) => view.error = Some(e.to_string()),
        }
        if let Err(e) = self.refresh(&cluster).await {
            view.error = Some(e.to_string());
        }
        view.pods = self.rows(|r| r.cluster == cluster.id);
        view
    }

    fn rows(&self, keep: impl Fn(&super::PodRecord) -> bool) -> Vec<PodRow> {
        let now = self.clock.now();
        self.registry
            .lock()
            .unwrap()
            .all()
            .filter(|r| keep(r))
            .map(|r| PodRow {
                name: r.info.name.clone(),
                job_id: r.info.job_id,
                job: r.info.job.clone(),
                state: match (&r.info.phase, r.lifecycle) {
                    (_, super::Lifecycle::Terminating) => "terminating".into(),
                    (PodPhase::Starting, _) => "starting".into(),
                    (PodPhase::Running, _) => "running".into(),
                    (PodPhase::Stopped(why), _) => format!("stopped: {why}"),
                },
                age: now.duration_since(r.info.created).unwrap_or_default(),
            })
            .collect()
    }

    /// Works with or without `elastic_agent_id`: an agent that has not registered yet is
    /// found by its job id.
    pub async fn agent_view(&self, req: &AgentStatusReportRequest) -> AgentView {
        let job_id = req.job_identifier.job_id;
        let mut view = AgentView::default();
        let cluster =
            self.resolve(&req.cluster_profile_properties).await.map_err(|e| view.error = Some(e.to_string())).ok();
        if let Some(cluster) = &cluster {
            view.cluster = cluster.describe();
            if let Err(e) = self.refresh(cluster).await {
                view.error = Some(e.to_string());
            }
        }
        let name = req
            .elastic_agent_id
            .clone()
            .or_else(|| self.registry.lock().unwrap().find_by_job(job_id).map(|r| r.info.name.clone()));
        view.failure = self.registry.lock().unwrap().last_failure(job_id).cloned();
        if let Some(name) = &name {
            view.row = self.rows(|r| &r.info.name == name).into_iter().next();
            if let Some(cluster) = &cluster {
                match cluster.runtime.pod_details(&cluster.owner, name).await {
                    Ok(details) => view.details = details,
                    Err(e) => view.error = Some(e.to_string()),
                }
            }
        }
        view.pod = name;
        view
    }

    pub async fn plugin_view(&self, all: &[Properties]) -> Vec<ClusterView> {
        let mut views = Vec::new();
        for props in all {
            views.push(self.cluster_view(props).await);
        }
        views
    }
}
