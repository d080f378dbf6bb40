//! Ownership labels: everything the service knows about a pod can be rebuilt from
//! these after a restart, and two GoCD servers (or two cluster profiles) sharing an
//! engine or namespace never touch each other's pods.

use std::collections::BTreeMap;

use crate::protocol::JobIdentifier;
use crate::settings::ClusterId;

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
            annotation::JOB_IDENTIFIER,
            annotation::ENVIRONMENT,
        ];
        assert!(own.iter().all(|key| is_reserved(key)), "{own:?}");
        assert!(!is_reserved("team") && !is_reserved("app.kubernetes.io/name"));
    }
}
