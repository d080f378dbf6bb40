//! State that follows GoCD's list of cluster profiles. GoCD never tells the plugin that
//! a profile was deleted or pointed elsewhere, but server-ping and migrate-config carry
//! every profile it has: whatever the service keeps per cluster (resolved clusters,
//! create locks, server-health messages, refresh times, runtime clients, engine
//! identities, registry records) is pruned to the clusters those profiles name.
//! Readiness probes only those. A cluster no profile names any more is kept as an
//! orphan while it may hold pods of this server, for the plugin status report.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::{Cluster, Service};
use crate::protocol::Properties;
use crate::settings::{ClusterId, ClusterSettings, RuntimeKind};

/// Orphaned clusters remembered at most; the oldest goes first.
const ORPHANS_KEPT: usize = 20;

/// A cluster no profile names any more, with the pods it held when it was dropped.
#[derive(Clone)]
pub struct Orphan {
    pub cluster: Cluster,
    pub pods: Vec<String>,
    pub since: SystemTime,
}

/// How long `/readyz` waits for each engine. The engines are asked at once, so this is
/// also about the longest `/readyz` takes: within a kubelet probe's timeout of 3 s.
pub const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Pods of this server in a cluster no profile names any more, for the plugin status
/// report, with the command that removes them.
#[derive(Debug, Clone, Default)]
pub struct OrphanView {
    pub description: String,
    pub pods: Vec<String>,
    pub error: Option<String>,
    pub command: String,
}

/// Removes every pod (and what it owns) of this server in `cluster`, by the ownership
/// labels; TLS flags or a kube context for that place are the operator's to add.
fn removal_command(cluster: &Cluster) -> String {
    use crate::pod::label_keys::{CLUSTER, SERVER_ID};
    let labels = [(SERVER_ID, cluster.owner.server_id.as_str()), (CLUSTER, cluster.id.0.as_str())];
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if cluster.settings.runtime == RuntimeKind::Kubernetes {
        let namespace = cluster.settings.kubernetes.namespace.as_deref().unwrap_or("<the service account's namespace>");
        return format!("kubectl --namespace {namespace} delete pods,secrets --selector {}", pairs.join(","));
    }
    // Docker, and the in-memory runtime of tests, which plays a Docker engine.
    let host = cluster.settings.docker.host.as_deref().map(|h| format!(" -H {h}")).unwrap_or_default();
    let filters = pairs.iter().map(|pair| format!(" --filter label={pair}")).collect::<Vec<_>>().concat();
    format!("docker{host} rm -f $(docker{host} ps -aq{filters})\ndocker{host} volume rm $(docker{host} volume ls -q{filters})")
}

/// The clusters each per-cluster map holds, for tests and diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackedClusters {
    pub clusters: BTreeSet<ClusterId>,
    pub create_locks: BTreeSet<ClusterId>,
    pub health: BTreeSet<ClusterId>,
    pub last_refresh: BTreeSet<ClusterId>,
    pub registry: BTreeSet<ClusterId>,
    pub identities: BTreeSet<ClusterId>,
}

impl TrackedClusters {
    /// Every cluster any map holds.
    pub fn all(&self) -> BTreeSet<ClusterId> {
        [&self.clusters, &self.create_locks, &self.health, &self.last_refresh, &self.registry, &self.identities]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

impl Service {
    /// Prunes every per-cluster map to the clusters `profiles` (GoCD's complete list)
    /// name. Invalid profiles (and profiles no runtime can be made for) name none. When
    /// a profile's cluster cannot be told now (its engine was never identified and does
    /// not answer), nothing is pruned: its state may be among what would go.
    pub(crate) async fn follow_profiles(&self, profiles: &[Properties]) {
        let mut live = BTreeSet::new();
        let mut settings = Vec::new();
        for props in profiles {
            let Ok(parsed) = ClusterSettings::parse(props, self.options.allow_memory_runtime) else { continue };
            let Ok(runtime) = self.runtimes.runtime(&parsed) else { continue };
            match self.cluster_id(&parsed, runtime.as_ref()).await {
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
        self.retain_pools(live);
        let forgotten = self.registry.lock().unwrap().retain_clusters(live);
        self.runtimes.retain(settings);
        self.forget_observations(live, &gone);
        let places: BTreeSet<String> = settings.iter().map(ClusterSettings::place).collect();
        self.identities.lock().unwrap().retain(|place, _| places.contains(place));
        let mut orphans = self.orphans.lock().unwrap();
        for cluster in gone {
            let pods: Vec<String> =
                forgotten.iter().filter(|r| r.cluster == cluster.id).map(|r| r.info.name.clone()).collect();
            info!(cluster = %cluster.id, place = %cluster.describe(), ?pods, "no cluster profile names this cluster any more: its pods are no longer managed");
            if !pods.is_empty() {
                let since = self.clock.now();
                orphans.insert(cluster.id.clone(), Orphan { cluster, pods, since });
            }
        }
        while orphans.len() > ORPHANS_KEPT {
            let oldest = orphans.iter().min_by_key(|(_, o)| o.since).map(|(id, _)| id.clone());
            oldest.map(|id| orphans.remove(&id));
        }
        drop(orphans);
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

    /// Clusters no profile names any more whose last known pods include `pod`: asked
    /// only for such a pod, so an unreachable orphan never holds up other requests.
    pub(crate) fn orphan_clusters_holding(&self, pod: &str) -> Vec<Cluster> {
        let orphans = self.orphans.lock().unwrap();
        orphans.values().filter(|o| o.pods.iter().any(|p| p == pod)).map(|o| o.cluster.clone()).collect()
    }

    /// The orphaned clusters as they are now: all listed again at once, each within
    /// [`READY_PROBE_TIMEOUT`]; one whose pods are all gone is forgotten.
    pub async fn orphan_views(&self) -> Vec<OrphanView> {
        let orphans: Vec<Orphan> = self.orphans.lock().unwrap().values().cloned().collect();
        let listings = orphans.iter().map(|orphan| {
            let cluster = &orphan.cluster;
            tokio::time::timeout(READY_PROBE_TIMEOUT, cluster.runtime.list_pods(&cluster.owner))
        });
        let listings = futures_util::future::join_all(listings).await;
        let mut views = Vec::new();
        for (orphan, listed) in orphans.into_iter().zip(listings) {
            let cluster = &orphan.cluster;
            let (pods, error) = match listed {
                Ok(Ok(pods)) if pods.is_empty() => {
                    self.orphans.lock().unwrap().remove(&cluster.id);
                    continue;
                }
                Ok(Ok(pods)) => {
                    let names: Vec<String> = pods.into_iter().map(|p| p.name).collect();
                    if let Some(kept) = self.orphans.lock().unwrap().get_mut(&cluster.id) {
                        kept.pods.clone_from(&names);
                    }
                    (names, None)
                }
                Ok(Err(e)) => (orphan.pods.clone(), Some(format!("cannot list its pods now ({e}); as last known:"))),
                Err(_) => (
                    orphan.pods.clone(),
                    Some(format!("no answer within {} ms; as last known:", READY_PROBE_TIMEOUT.as_millis())),
                ),
            };
            views.push(OrphanView { description: cluster.describe(), pods, error, command: removal_command(cluster) });
        }
        views
    }

    /// The clusters each per-cluster map holds.
    pub fn tracked_clusters(&self) -> TrackedClusters {
        TrackedClusters {
            clusters: self.clusters.lock().unwrap().keys().cloned().collect(),
            create_locks: self.create_locks.lock().unwrap().keys().cloned().collect(),
            health: self.health.lock().unwrap().keys().cloned().collect(),
            last_refresh: self.last_refresh.lock().unwrap().keys().cloned().collect(),
            registry: self.registry.lock().unwrap().all().map(|r| r.cluster.clone()).collect(),
            identities: self.identities.lock().unwrap().values().cloned().collect(),
        }
    }

    /// Asks every engine of a live cluster profile for its version, all at once, each
    /// within [`READY_PROBE_TIMEOUT`]; returns the problems (none: ready) and how many
    /// engines were asked.
    pub async fn readiness(&self) -> (Vec<String>, usize) {
        let clusters = self.known_clusters();
        let probes = clusters.iter().map(|cluster| async move {
            let problem = match tokio::time::timeout(READY_PROBE_TIMEOUT, cluster.runtime.describe()).await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(format!("{}: {e}", cluster.describe())),
                Err(_) => {
                    Some(format!("{}: no answer within {} ms", cluster.describe(), READY_PROBE_TIMEOUT.as_millis()))
                }
            };
            self.note_engine(&cluster.id, problem.clone());
            problem
        });
        let problems = futures_util::future::join_all(probes).await.into_iter().flatten().collect();
        (problems, clusters.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::pod::Ownership;
    use crate::runtime::memory::MemoryRuntime;

    fn cluster(pairs: &[(&str, &str)]) -> Cluster {
        let settings = ClusterSettings::parse(&Properties::from_pairs(pairs), false).unwrap();
        let id = ClusterId("0123456789ab".into());
        Cluster {
            owner: Ownership::new("server-1", id.clone()),
            id,
            runtime: MemoryRuntime::new(Clock::default()),
            settings,
        }
    }

    #[test]
    fn the_removal_command_selects_this_servers_pods_of_that_cluster() {
        let labels = "gocd-dind.gocd.org/server-id=server-1,gocd-dind.gocd.org/cluster=0123456789ab";
        let kubernetes = cluster(&[("runtime", "kubernetes"), ("namespace", "agents")]);
        assert_eq!(
            removal_command(&kubernetes),
            format!("kubectl --namespace agents delete pods,secrets --selector {labels}")
        );
        let filters = "--filter label=gocd-dind.gocd.org/server-id=server-1 --filter label=gocd-dind.gocd.org/cluster=0123456789ab";
        assert_eq!(
            removal_command(&cluster(&[])),
            format!("docker rm -f $(docker ps -aq {filters})\ndocker volume rm $(docker volume ls -q {filters})")
        );
    }
}
