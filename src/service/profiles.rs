//! State that follows GoCD's list of cluster profiles. GoCD never tells the plugin that
//! a profile was deleted or pointed elsewhere, but server-ping and migrate-config carry
//! every profile it has: whatever the service keeps per cluster (resolved clusters,
//! create locks, server-health messages, refresh times, runtime clients, registry
//! records) is pruned to the clusters those profiles name. Readiness probes only those.

use std::collections::BTreeSet;
use std::time::Duration;

use tracing::{info, warn};

use super::{Cluster, Service};
use crate::protocol::Properties;
use crate::settings::{ClusterId, ClusterSettings};

/// How long `/readyz` waits for each engine. The engines are asked at once, so this is
/// also about the longest `/readyz` takes: within a kubelet probe's timeout of 3 s.
pub const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The clusters each per-cluster map holds, for tests and diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackedClusters {
    pub clusters: BTreeSet<ClusterId>,
    pub create_locks: BTreeSet<ClusterId>,
    pub health: BTreeSet<ClusterId>,
    pub last_refresh: BTreeSet<ClusterId>,
    pub registry: BTreeSet<ClusterId>,
}

impl TrackedClusters {
    /// Every cluster any map holds.
    pub fn all(&self) -> BTreeSet<ClusterId> {
        [&self.clusters, &self.create_locks, &self.health, &self.last_refresh, &self.registry]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

impl Service {
    /// Prunes every per-cluster map to the clusters `profiles` (GoCD's complete list)
    /// name. Invalid profiles name none. When a profile's cluster cannot be told now,
    /// nothing is pruned: its state may be among what would go.
    #[allow(clippy::unused_async)] // identifying a cluster will ask its engine (issue 8 item 3)
    pub(crate) async fn follow_profiles(&self, profiles: &[Properties]) {
        let mut live = BTreeSet::new();
        let mut settings = Vec::new();
        for props in profiles {
            let Ok(parsed) = ClusterSettings::parse(props, self.options.allow_memory_runtime) else { continue };
            match self.cluster_id(&parsed) {
                Ok(id) => {
                    live.insert(id);
                    settings.push(parsed);
                }
                Err(e) => {
                    warn!(error = %e, "a cluster profile cannot be identified now; state of deleted profiles is kept until it can");
                    return;
                }
            }
        }
        self.retain_clusters(&live, &settings);
    }

    fn retain_clusters(&self, live: &BTreeSet<ClusterId>, settings: &[ClusterSettings]) {
        let gone: Vec<Cluster> = {
            let mut clusters = self.clusters.lock().unwrap();
            let gone = clusters.values().filter(|c| !live.contains(&c.id)).cloned().collect();
            clusters.retain(|id, _| live.contains(id));
            gone
        };
        self.create_locks.lock().unwrap().retain(|id, _| live.contains(id));
        self.last_refresh.lock().unwrap().retain(|id, _| live.contains(id));
        let forgotten = self.registry.lock().unwrap().retain_clusters(live);
        self.runtimes.retain(settings);
        for cluster in &gone {
            info!(cluster = %cluster.id, place = %cluster.describe(), "no cluster profile names this cluster any more; forgotten");
        }
        if !forgotten.is_empty() {
            let pods: Vec<&str> = forgotten.iter().map(|r| r.info.name.as_str()).collect();
            warn!(?pods, "pods of clusters no cluster profile names any more are no longer managed");
        }
        let messages = {
            let mut health = self.health.lock().unwrap();
            let before = health.len();
            health.retain(|id, _| live.contains(id));
            (health.len() != before).then(|| health.values().cloned().collect())
        };
        if let Some(messages) = messages {
            self.send_health(messages);
        }
    }

    /// The clusters each per-cluster map holds.
    pub fn tracked_clusters(&self) -> TrackedClusters {
        TrackedClusters {
            clusters: self.clusters.lock().unwrap().keys().cloned().collect(),
            create_locks: self.create_locks.lock().unwrap().keys().cloned().collect(),
            health: self.health.lock().unwrap().keys().cloned().collect(),
            last_refresh: self.last_refresh.lock().unwrap().keys().cloned().collect(),
            registry: self.registry.lock().unwrap().all().map(|r| r.cluster.clone()).collect(),
        }
    }

    /// Asks every engine of a live cluster profile for its version, all at once, each
    /// within [`READY_PROBE_TIMEOUT`]; returns the problems (none: ready) and how many
    /// engines were asked.
    pub async fn readiness(&self) -> (Vec<String>, usize) {
        let clusters = self.known_clusters();
        let probes = clusters.iter().map(|cluster| async move {
            match tokio::time::timeout(READY_PROBE_TIMEOUT, cluster.runtime.describe()).await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(format!("{}: {e}", cluster.describe())),
                Err(_) => {
                    Some(format!("{}: no answer within {} ms", cluster.describe(), READY_PROBE_TIMEOUT.as_millis()))
                }
            }
        });
        let problems = futures_util::future::join_all(probes).await.into_iter().flatten().collect();
        (problems, clusters.len())
    }
}
