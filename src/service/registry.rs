//! What the service remembers about pods between requests. It is a cache of the
//! runtimes' listings plus what only this process knows (pods being created or torn
//! down, why a creation failed); every listing refreshes it, so a restart loses nothing
//! that matters.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::SystemTime;

use crate::protocol::JobIdentifier;
use crate::runtime::{PodInfo, PodPhase};
use crate::settings::ClusterId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Creating,
    Live,
    Terminating,
}

#[derive(Debug, Clone)]
pub struct PodRecord {
    pub cluster: ClusterId,
    pub info: PodInfo,
    pub lifecycle: Lifecycle,
}

/// Why a job's pod could not be created; kept (bounded) for the agent status report
/// after the pod itself is gone.
#[derive(Debug, Clone)]
pub struct Failure {
    pub job_id: i64,
    pub pod: String,
    pub at: SystemTime,
    pub reason: String,
}

const FAILURES_KEPT: usize = 200;

#[derive(Debug, Default)]
pub struct Registry {
    pods: BTreeMap<String, PodRecord>,
    failures: VecDeque<Failure>,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<&PodRecord> {
        self.pods.get(name)
    }

    pub fn find_by_job(&self, job_id: i64) -> Option<&PodRecord> {
        self.pods.values().find(|r| r.info.job_id == job_id)
    }

    pub fn cluster_pods(&self, cluster: &ClusterId) -> Vec<PodInfo> {
        self.pods.values().filter(|r| &r.cluster == cluster).map(|r| r.info.clone()).collect()
    }

    pub fn all(&self) -> impl Iterator<Item = &PodRecord> {
        self.pods.values()
    }

    pub fn insert_creating(&mut self, cluster: ClusterId, name: &str, job: &JobIdentifier, now: SystemTime) {
        let info = PodInfo {
            name: name.to_owned(),
            job_id: job.job_id,
            job: Some(job.clone()),
            created: now,
            phase: PodPhase::Starting,
        };
        self.pods.insert(name.to_owned(), PodRecord { cluster, info, lifecycle: Lifecycle::Creating });
    }

    pub fn set_lifecycle(&mut self, name: &str, lifecycle: Lifecycle) {
        if let Some(record) = self.pods.get_mut(name) {
            record.lifecycle = lifecycle;
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<PodRecord> {
        self.pods.remove(name)
    }

    /// Replaces what we know of one cluster with a fresh listing, keeping pods that are
    /// still being created (they may not be listed yet) and what only we know.
    pub fn refresh(&mut self, cluster: &ClusterId, listed: Vec<PodInfo>) {
        let listed: HashMap<String, PodInfo> = listed.into_iter().map(|p| (p.name.clone(), p)).collect();
        self.pods.retain(|name, record| {
            &record.cluster != cluster || record.lifecycle == Lifecycle::Creating || listed.contains_key(name)
        });
        for (name, mut info) in listed {
            match self.pods.get_mut(&name) {
                Some(record) => {
                    if info.job.is_none() {
                        info.job = record.info.job.take();
                    }
                    record.info = info;
                    if record.lifecycle == Lifecycle::Creating && record.info.phase == PodPhase::Running {
                        record.lifecycle = Lifecycle::Live;
                    }
                }
                None => {
                    self.pods.insert(name, PodRecord { cluster: cluster.clone(), info, lifecycle: Lifecycle::Live });
                }
            }
        }
    }

    pub fn record_failure(&mut self, failure: Failure) {
        if self.failures.len() == FAILURES_KEPT {
            self.failures.pop_front();
        }
        self.failures.push_back(failure);
    }

    pub fn last_failure(&self, job_id: i64) -> Option<&Failure> {
        self.failures.iter().rev().find(|f| f.job_id == job_id)
    }
}
