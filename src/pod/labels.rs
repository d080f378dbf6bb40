//! Ownership labels: everything the service knows about a pod can be rebuilt from
//! these after a restart, and two GoCD servers (or two cluster profiles) sharing an
//! engine or namespace never touch each other's pods.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::listing::PoolShape;
use crate::protocol::JobIdentifier;
use crate::settings::{ClusterId, PoolId};

pub const MANAGED_BY: &str = "gocd-dind";

pub mod keys {
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const SERVER_ID: &str = "gocd-dind.gocd.org/server-id";
    pub const CLUSTER: &str = "gocd-dind.gocd.org/cluster";
    pub const JOB_ID: &str = "gocd-dind.gocd.org/job-id";
    pub const AGENT_ID: &str = "gocd-dind.gocd.org/agent-id";
    pub const POD: &str = "gocd-dind.gocd.org/pod";
    pub const CONTAINER: &str = "gocd-dind.gocd.org/container";
    pub const VOLUME: &str = "gocd-dind.gocd.org/volume";
    /// A warm pod's pool ([`crate::settings::PoolId`]), and the pool's size and idle time
    /// in minutes when it was made: what server-ping needs after a restart.
    pub const POOL: &str = "gocd-dind.gocd.org/pool";
    pub const POOL_SIZE: &str = "gocd-dind.gocd.org/pool-size";
    pub const POOL_IDLE_MINUTES: &str = "gocd-dind.gocd.org/pool-idle-minutes";
}

/// Keys gocd-dind sets and reads back: the ownership labels, the job annotations, and
/// anything else under its prefix. Docker has no annotations and keeps them as labels, so
/// the rule covers both maps.
pub fn is_reserved(key: &str) -> bool {
    key == keys::MANAGED_BY || key.starts_with(PREFIX)
}

/// The prefix of gocd-dind's own label and annotation keys.
pub const PREFIX: &str = "gocd-dind.gocd.org/";

pub mod annotation {
    pub const JOB_IDENTIFIER: &str = "gocd-dind.gocd.org/job-identifier";
    pub const ENVIRONMENT: &str = "gocd-dind.gocd.org/environment";
    /// When a job claimed a warm pod (seconds since the epoch): its auto-register
    /// timeout runs from there. Kubernetes only; Docker has the agent's creation time.
    pub const CLAIMED_AT: &str = "gocd-dind.gocd.org/claimed-at";
}

/// Whose pods these are: one GoCD server, one cluster profile.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ownership {
    pub server_id: String,
    pub cluster: ClusterId,
}

impl Ownership {
    pub fn new(server_id: &str, cluster: ClusterId) -> Self {
        // A label value is at most 63 characters of [A-Za-z0-9-_.]; GoCD's ids are UUIDs,
        // but nothing in the protocol promises that.
        let server_id: String = server_id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
            .take(63)
            .collect();
        Self { server_id, cluster }
    }

    /// The labels every list call filters on.
    pub fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (keys::MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
            (keys::SERVER_ID.to_owned(), self.server_id.clone()),
            (keys::CLUSTER.to_owned(), self.cluster.0.clone()),
        ])
    }

    pub fn labels(&self, pod_name: &str, job_id: i64) -> BTreeMap<String, String> {
        let mut labels = self.selector();
        labels.insert(keys::JOB_ID.to_owned(), job_id.to_string());
        labels.insert(keys::AGENT_ID.to_owned(), pod_name.to_owned());
        labels
    }
}

impl Ownership {
    /// A warm pod's labels: its owner, its name and its pool; no job.
    pub fn warm_labels(&self, pod_name: &str, pool: &PoolId, shape: PoolShape) -> BTreeMap<String, String> {
        let mut labels = self.selector();
        labels.insert(keys::AGENT_ID.to_owned(), pod_name.to_owned());
        labels.insert(keys::POOL.to_owned(), pool.0.clone());
        labels.insert(keys::POOL_SIZE.to_owned(), shape.size.to_string());
        labels.insert(keys::POOL_IDLE_MINUTES.to_owned(), (shape.idle.as_secs() / 60).to_string());
        labels
    }
}

/// The pool a warm pod's labels name, with the pool's size and idle time; `None` when
/// they name no pool (a job's pod).
pub fn pool_of(label: impl Fn(&str) -> Option<String>) -> Option<(PoolId, PoolShape)> {
    let pool = label(keys::POOL).filter(|p| !p.is_empty())?;
    let number = |key| label(key).and_then(|v| v.parse::<u64>().ok()).unwrap_or_default();
    let shape = PoolShape {
        size: usize::try_from(number(keys::POOL_SIZE)).unwrap_or(usize::MAX),
        idle: Duration::from_secs(number(keys::POOL_IDLE_MINUTES) * 60),
    };
    Some((PoolId(pool), shape))
}

pub fn annotations(job: &JobIdentifier, environment: Option<&str>) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([(
        annotation::JOB_IDENTIFIER.to_owned(),
        serde_json::to_string(job).expect("a job identifier serialises"),
    )]);
    if let Some(environment) = environment {
        annotations.insert(annotation::ENVIRONMENT.to_owned(), environment.to_owned());
    }
    annotations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_gocd_dind_reads_back_is_reserved() {
        let own = [
            keys::MANAGED_BY,
            keys::SERVER_ID,
            keys::CLUSTER,
            keys::JOB_ID,
            keys::AGENT_ID,
            keys::POD,
            keys::CONTAINER,
            keys::VOLUME,
            keys::POOL,
            keys::POOL_SIZE,
            keys::POOL_IDLE_MINUTES,
            annotation::JOB_IDENTIFIER,
            annotation::ENVIRONMENT,
            annotation::CLAIMED_AT,
        ];
        assert!(own.iter().all(|key| is_reserved(key)), "{own:?}");
        assert!(!is_reserved("team") && !is_reserved("app.kubernetes.io/name"));
    }

    #[test]
    fn a_warm_pods_labels_name_its_pool_and_no_job() {
        let owner = Ownership::new("server-1", ClusterId("c1".into()));
        let shape = PoolShape { size: 2, idle: Duration::from_secs(30 * 60) };
        let labels = owner.warm_labels("gocd-dind-w1", &PoolId("0123456789ab".into()), shape);
        assert!(!labels.contains_key(keys::JOB_ID));
        assert_eq!(labels[keys::POOL_IDLE_MINUTES], "30");
        assert_eq!(pool_of(|k| labels.get(k).cloned()), Some((PoolId("0123456789ab".into()), shape)));
        let job = owner.labels("gocd-dind-p1", 7);
        assert_eq!(pool_of(|k| job.get(k).cloned()), None);
    }
}
