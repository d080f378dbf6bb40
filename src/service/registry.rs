//! What the service remembers about pods between requests. It is a cache of the
//! runtimes' listings plus what only this process knows (pods being created or torn
//! down); every listing refreshes it, so a restart loses nothing that matters. Why a
//! creation failed, and what became of pods, is in the journal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::SystemTime;

use crate::listing::{PodInfo, PodPhase, PoolShape, WarmPod, WarmState};
use crate::protocol::JobIdentifier;
use crate::settings::{ClusterId, PoolId};

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
    /// What making a warm pod left to tell the job that claims it: images that could not
    /// be pre-pulled, each with the reason. Known only to the process that made it.
    pub pull_failures: Vec<String>,
    /// A warm pod whose claim failed and could not be removed: the job the failed claim
    /// may have bound it to, and the warm pod it stays (listings never overwrite this).
    failed_claim: Option<(i64, WarmPod)>,
}

/// The job id of a pod another claim won: bound to a job this process does not know
/// until a listing shows it. GoCD's job ids are positive.
pub const CLAIMED_ELSEWHERE: i64 = -1;

/// Why a job's pod could not be created (from its post-mortem in the journal).
#[derive(Debug, Clone)]
pub struct Failure {
    pub job_id: i64,
    pub pod: String,
    pub at: SystemTime,
    pub reason: String,
}

impl PodRecord {
    fn new(cluster: ClusterId, info: PodInfo, lifecycle: Lifecycle) -> Self {
        Self { cluster, info, lifecycle, pull_failures: Vec::new(), failed_claim: None }
    }

    /// An unclaimed warm pod's state by what this process knows: being made here, being
    /// removed, else as listed (up or not).
    pub fn warm_state(&self) -> Option<WarmState> {
        self.info.warm.as_ref()?;
        Some(match self.lifecycle {
            Lifecycle::Terminating => WarmState::Leaving,
            Lifecycle::Creating => WarmState::Making,
            Lifecycle::Live if self.info.phase == PodPhase::Running => WarmState::Ready,
            Lifecycle::Live => WarmState::Warming,
        })
    }

    fn as_rules_see_it(&self) -> PodInfo {
        let mut info = self.info.clone();
        if let (Some(warm), Some(state)) = (&mut info.warm, self.warm_state()) {
            warm.state = state;
        }
        info
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    pods: BTreeMap<String, PodRecord>,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<&PodRecord> {
        self.pods.get(name)
    }

    pub fn find_by_job(&self, job_id: i64) -> Option<&PodRecord> {
        self.pods.values().find(|r| r.info.serves(job_id))
    }

    /// The cluster's pods as the rules see them: a warm pod being made is warming, one
    /// being removed is leaving, whatever the listing said.
    pub fn cluster_pods(&self, cluster: &ClusterId) -> Vec<PodInfo> {
        self.pods.values().filter(|r| &r.cluster == cluster).map(PodRecord::as_rules_see_it).collect()
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
            warm: None,
        };
        self.pods.insert(name.to_owned(), PodRecord::new(cluster, info, Lifecycle::Creating));
    }

    /// A warm pod of `pool` is being made.
    pub fn insert_warming(&mut self, cluster: ClusterId, name: &str, pool: PoolId, shape: PoolShape, now: SystemTime) {
        let warm = Some(WarmPod { pool, shape, state: WarmState::Making });
        let info =
            PodInfo { name: name.to_owned(), job_id: 0, job: None, created: now, phase: PodPhase::Starting, warm };
        self.pods.insert(name.to_owned(), PodRecord::new(cluster, info, Lifecycle::Creating));
    }

    /// The warm pod being made is up (its dockerd answers, its images are pulled): it
    /// may be claimed from now on.
    pub fn warm_ready(&mut self, name: &str, pull_failures: Vec<String>) {
        if let Some(record) = self.pods.get_mut(name).filter(|r| r.info.warm.is_some()) {
            record.info.phase = PodPhase::Running;
            record.pull_failures = pull_failures;
            if record.lifecycle == Lifecycle::Creating {
                record.lifecycle = Lifecycle::Live;
            }
        }
    }

    /// Binds the warm pod to `job` if it is still claimable (up, unclaimed, not being
    /// removed): from now on it is the job's pod being made, and nobody else's. Returns
    /// whether it was bound.
    pub fn claim(&mut self, name: &str, job: &JobIdentifier, now: SystemTime) -> bool {
        let Some(record) = self.pods.get_mut(name) else { return false };
        let claimable =
            record.lifecycle == Lifecycle::Live && record.info.phase == PodPhase::Running && record.info.warm.is_some();
        if claimable {
            record.info.warm = None;
            record.info.job_id = job.job_id;
            record.info.job = Some(job.clone());
            record.info.created = now;
            record.lifecycle = Lifecycle::Creating;
        }
        claimable
    }

    /// A claim of warm pod `name` failed, and so did removing it: it is the pool's warm
    /// pod again, being removed (leaving: counted against the limits, serving no job,
    /// removed again by server-ping), though the failed claim may have bound it to the
    /// job: a listing showing that binding does not turn it into the job's pod
    /// (`refresh`).
    pub fn claim_failed(&mut self, name: &str, pool: PoolId, shape: PoolShape) {
        if let Some(record) = self.pods.get_mut(name) {
            let warm = WarmPod { pool, shape, state: WarmState::Leaving };
            record.failed_claim = Some((record.info.job_id, warm.clone()));
            record.info.warm = Some(warm);
            record.lifecycle = Lifecycle::Terminating;
        }
    }

    /// Our claim of warm pod `name` lost to another claim: the pod serves a job this
    /// process does not know yet. It stays counted, is nobody's here and never warm
    /// again, until a listing shows whose it is.
    pub fn claimed_elsewhere(&mut self, name: &str) {
        if let Some(record) = self.pods.get_mut(name) {
            record.info.warm = None;
            record.info.job_id = CLAIMED_ELSEWHERE;
            record.info.job = None;
            record.lifecycle = Lifecycle::Live;
        }
    }

    /// Marks an unclaimed warm pod as being removed; `false` (and nothing changed) when a
    /// job claimed it meanwhile, it is still being made (its maker would go on making
    /// it), or it is gone.
    pub fn begin_warm_removal(&mut self, name: &str) -> bool {
        let removable = |r: &&mut PodRecord| r.info.warm.is_some() && r.lifecycle != Lifecycle::Creating;
        let Some(record) = self.pods.get_mut(name).filter(removable) else { return false };
        record.lifecycle = Lifecycle::Terminating;
        true
    }

    /// The pod's start (or claim) is done: live, unless it is already being removed.
    pub fn started(&mut self, name: &str) {
        if let Some(record) = self.pods.get_mut(name).filter(|r| r.lifecycle == Lifecycle::Creating) {
            record.lifecycle = Lifecycle::Live;
        }
    }

    pub fn set_lifecycle(&mut self, name: &str, lifecycle: Lifecycle) {
        if let Some(record) = self.pods.get_mut(name) {
            record.lifecycle = lifecycle;
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<PodRecord> {
        self.pods.remove(name)
    }

    /// Removes the record if it is still being created: its creation ended without
    /// saying how.
    pub fn remove_if_creating(&mut self, name: &str) -> Option<PodRecord> {
        if self.pods.get(name)?.lifecycle != Lifecycle::Creating {
            return None;
        }
        self.pods.remove(name)
    }

    /// Forgets the pods of clusters not in `live`; returns them.
    pub fn retain_clusters(&mut self, live: &BTreeSet<ClusterId>) -> Vec<PodRecord> {
        let gone: Vec<String> =
            self.pods.iter().filter(|(_, r)| !live.contains(&r.cluster)).map(|(name, _)| name.clone()).collect();
        gone.iter().filter_map(|name| self.pods.remove(name)).collect()
    }

    /// Replaces what we know of one cluster with a fresh listing, keeping pods that are
    /// still being created (they may not be listed yet) and what only we know. Returns
    /// the pods that are no longer listed.
    pub fn refresh(&mut self, cluster: &ClusterId, listed: Vec<PodInfo>) -> Vec<String> {
        let listed: HashMap<String, PodInfo> = listed.into_iter().map(|p| (p.name.clone(), p)).collect();
        let mut dropped = Vec::new();
        self.pods.retain(|name, record| {
            let kept =
                &record.cluster != cluster || record.lifecycle == Lifecycle::Creating || listed.contains_key(name);
            if !kept {
                dropped.push(name.clone());
            }
            kept
        });
        for (name, mut info) in listed {
            match self.pods.get_mut(&name) {
                // A warm pod being made, or one being claimed: what this process knows
                // wins until it says it is done (a listing may still show the claimed
                // pod as warm, or the warm pod as up before its images are pulled).
                Some(record)
                    if record.lifecycle == Lifecycle::Creating
                        && (record.info.warm.is_some() || info.warm.is_some()) => {}
                // A pod bound to a job (by this process, or by a claim that beat ours),
                // listed from a cache that has not seen the claim yet (Kubernetes' watch
                // may lag): still bound, never warm again.
                Some(record) if record.info.job_id != 0 && record.info.warm.is_none() && info.warm.is_some() => {}
                Some(record) => {
                    // A warm pod whose failed claim bound it to this job stays a warm pod
                    // being removed (`claim_failed`).
                    if let Some((job_id, warm)) = &record.failed_claim {
                        if info.warm.is_none() && info.job_id == *job_id {
                            info.warm = Some(warm.clone());
                        }
                    }
                    if info.job.is_none() {
                        info.job = record.info.job.take();
                    }
                    record.info = info;
                    if record.lifecycle == Lifecycle::Creating && record.info.phase == PodPhase::Running {
                        record.lifecycle = Lifecycle::Live;
                    }
                }
                None => {
                    self.pods.insert(name, PodRecord::new(cluster.clone(), info, Lifecycle::Live));
                }
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str) -> ClusterId {
        ClusterId(name.to_owned())
    }

    fn job(job_id: i64) -> JobIdentifier {
        serde_json::from_value(serde_json::json!({"pipeline_name": "p", "pipeline_counter": 1, "pipeline_label": "1", "stage_name": "s", "stage_counter": "1", "job_name": "j", "job_id": job_id})).unwrap()
    }

    fn listed(name: &str, job_id: i64, phase: PodPhase) -> PodInfo {
        PodInfo { name: name.to_owned(), job_id, job: None, created: SystemTime::UNIX_EPOCH, phase, warm: None }
    }

    /// A registry holding, in cluster c1, one record per lifecycle, and one record in c2.
    fn registry() -> Registry {
        let mut r = Registry::default();
        let now = SystemTime::UNIX_EPOCH;
        r.insert_creating(c("c1"), "creating", &job(1), now);
        r.insert_creating(c("c1"), "live", &job(2), now);
        r.set_lifecycle("live", Lifecycle::Live);
        r.insert_creating(c("c1"), "terminating", &job(3), now);
        r.set_lifecycle("terminating", Lifecycle::Terminating);
        r.insert_creating(c("c2"), "elsewhere", &job(4), now);
        r.set_lifecycle("elsewhere", Lifecycle::Live);
        r
    }

    /// A record as the tests compare it: name, lifecycle, phase.
    type Row = (&'static str, Lifecycle, PodPhase);

    fn state(r: &Registry) -> Vec<(String, Lifecycle, PodPhase)> {
        r.all().map(|p| (p.info.name.clone(), p.lifecycle, p.info.phase.clone())).collect()
    }

    #[test]
    fn refresh_says_which_pods_are_no_longer_listed() {
        let mut r = registry();
        let dropped = r.refresh(&c("c1"), vec![listed("live", 2, PodPhase::Running)]);
        assert_eq!(dropped, ["terminating"], "the pod being created stays, the other cluster's too");
    }

    #[test]
    fn refresh_by_what_the_listing_shows() {
        use Lifecycle::{Creating, Live, Terminating};
        use PodPhase::{Running, Starting};
        let stopped = PodPhase::Stopped("exited".into());
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<PodInfo>, Vec<Row>)> = vec![
            (
                "an empty listing keeps only the pod being created (and other clusters')",
                vec![],
                vec![("creating", Creating, Starting), ("elsewhere", Live, Starting)],
            ),
            (
                "the pod being created is listed running: it is live",
                vec![listed("creating", 1, Running), listed("live", 2, Running), listed("terminating", 3, Running)],
                vec![("creating", Live, Running), ("elsewhere", Live, Starting), ("live", Live, Running), ("terminating", Terminating, Running)],
            ),
            (
                "listed but still starting: still being created",
                vec![listed("creating", 1, Starting), listed("live", 2, stopped.clone()), listed("terminating", 3, Running)],
                vec![("creating", Creating, Starting), ("elsewhere", Live, Starting), ("live", Live, stopped.clone()), ("terminating", Terminating, Running)],
            ),
            (
                "a pod this process did not create (a restart) is live",
                vec![listed("creating", 1, Starting), listed("found", 9, Starting)],
                vec![("creating", Creating, Starting), ("elsewhere", Live, Starting), ("found", Live, Starting)],
            ),
        ];
        for (name, listing, expected) in cases {
            let mut r = registry();
            r.refresh(&c("c1"), listing);
            let expected: Vec<_> = expected.into_iter().map(|(n, l, p)| (n.to_owned(), l, p)).collect();
            assert_eq!(state(&r), expected, "{name}");
        }
    }

    #[test]
    fn refresh_keeps_the_job_identifier_the_listing_lacks_and_the_cluster() {
        let mut r = registry();
        r.refresh(&c("c1"), vec![listed("live", 2, PodPhase::Running)]);
        let live = r.get("live").unwrap();
        assert_eq!(live.info.job.as_ref().map(|j| j.job_id), Some(2));
        assert_eq!(live.cluster, c("c1"));
        let mut from_labels = listed("live", 2, PodPhase::Running);
        from_labels.job = Some(job(22));
        r.refresh(&c("c1"), vec![from_labels]);
        assert_eq!(r.get("live").unwrap().info.job.as_ref().map(|j| j.job_id), Some(22), "the listing's own wins");
        assert_eq!(r.find_by_job(2).map(|p| p.info.name.as_str()), Some("live"));
        assert_eq!(r.cluster_pods(&c("c2")).len(), 1);
    }

    #[test]
    fn only_a_record_still_being_created_goes_with_its_task() {
        let mut r = registry();
        for name in ["live", "terminating", "missing"] {
            assert!(r.remove_if_creating(name).is_none(), "{name}");
        }
        assert_eq!(r.remove_if_creating("creating").map(|p| p.info.job_id), Some(1));
        assert_eq!(r.all().count(), 3);
    }

    fn listed_warm(name: &str, phase: PodPhase) -> PodInfo {
        let shape = PoolShape { size: 2, idle: std::time::Duration::from_secs(1800) };
        let warm = Some(WarmPod { pool: PoolId("A".into()), shape, state: WarmState::Ready });
        PodInfo { warm, ..listed(name, 0, phase) }
    }

    fn warm_state(r: &Registry, name: &str) -> Option<WarmState> {
        r.cluster_pods(&c("c1")).into_iter().find(|p| p.name == name).and_then(|p| p.warm).map(|w| w.state)
    }

    #[test]
    fn a_warm_pod_is_claimable_once_made_bound_once_and_never_unbound_by_a_listing() {
        let mut r = Registry::default();
        let shape = PoolShape { size: 2, idle: std::time::Duration::from_secs(1800) };
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(100);
        r.insert_warming(c("c1"), "w1", PoolId("A".into()), shape, SystemTime::UNIX_EPOCH);
        r.refresh(&c("c1"), vec![listed_warm("w1", PodPhase::Running)]);
        assert_eq!(warm_state(&r, "w1"), Some(WarmState::Making), "up in the listing, images still being pulled");
        assert!(!r.claim("w1", &job(7), now), "not claimable while being made");
        assert!(!r.begin_warm_removal("w1"), "not removed while being made: its maker goes on");
        r.warm_ready("w1", vec!["busybox: manifest unknown".into()]);
        assert_eq!(warm_state(&r, "w1"), Some(WarmState::Ready));
        assert!(r.find_by_job(0).is_none(), "a warm pod is nobody's");
        assert!(r.claim("w1", &job(7), now));
        assert!(!r.claim("w1", &job(8), now), "a second job never gets it");
        assert!(!r.begin_warm_removal("w1"), "a claimed pod is not drained");
        r.refresh(&c("c1"), vec![listed_warm("w1", PodPhase::Running)]);
        let claimed = r.get("w1").unwrap();
        assert_eq!((claimed.info.job_id, claimed.lifecycle, claimed.info.created), (7, Lifecycle::Creating, now));
        assert_eq!(claimed.pull_failures, ["busybox: manifest unknown"]);
        r.refresh(&c("c1"), vec![listed("w1", 7, PodPhase::Running)]);
        assert_eq!(r.get("w1").unwrap().lifecycle, Lifecycle::Live, "the listing shows it bound and running");
        assert_eq!(r.find_by_job(7).map(|p| p.info.name.as_str()), Some("w1"));
    }

    #[test]
    fn a_failed_claim_stays_a_leaving_warm_pod_whatever_order_the_listings_come_in() {
        let mut r = Registry::default();
        let shape = PoolShape { size: 2, idle: std::time::Duration::from_secs(1800) };
        r.refresh(&c("c1"), vec![listed_warm("w1", PodPhase::Running)]);
        assert!(r.claim("w1", &job(7), SystemTime::UNIX_EPOCH));
        r.claim_failed("w1", PoolId("A".into()), shape);
        // A lagging listing (still warm), then one that saw the failed claim's binding.
        for listing in [listed_warm("w1", PodPhase::Running), listed("w1", 7, PodPhase::Running)] {
            r.refresh(&c("c1"), vec![listing]);
            assert_eq!(warm_state(&r, "w1"), Some(WarmState::Leaving));
            assert!(r.find_by_job(7).is_none(), "never the job's pod");
            assert!(!r.claim("w1", &job(8), SystemTime::UNIX_EPOCH), "never claimed again");
        }
    }

    #[test]
    fn a_pod_another_claim_won_is_nobodys_here_until_a_listing_says_whose() {
        let mut r = Registry::default();
        r.refresh(&c("c1"), vec![listed_warm("w1", PodPhase::Running)]);
        assert!(r.claim("w1", &job(7), SystemTime::UNIX_EPOCH));
        r.claimed_elsewhere("w1");
        r.refresh(&c("c1"), vec![listed_warm("w1", PodPhase::Running)]);
        assert!(warm_state(&r, "w1").is_none(), "a lagging listing does not make it warm again");
        assert!(r.find_by_job(7).is_none(), "not the loser's job's");
        assert!(!r.claim("w1", &job(8), SystemTime::UNIX_EPOCH));
        assert_eq!(r.cluster_pods(&c("c1")).len(), 1, "still counted");
        r.refresh(&c("c1"), vec![listed("w1", 12, PodPhase::Running)]);
        assert_eq!(r.find_by_job(12).map(|p| p.info.name.as_str()), Some("w1"), "the winner's job's");
    }

    #[test]
    fn a_listing_that_has_not_seen_a_claim_leaves_the_pod_bound() {
        let mut r = Registry::default();
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(100);
        r.refresh(&c("c1"), vec![listed_warm("w1", PodPhase::Running)]);
        assert!(r.claim("w1", &job(7), now));
        // The claim is done (the agent has its key); Kubernetes' watch still shows the
        // pod as it was before the bind.
        r.set_lifecycle("w1", Lifecycle::Live);
        r.refresh(&c("c1"), vec![listed_warm("w1", PodPhase::Running)]);
        let bound = r.get("w1").unwrap();
        assert_eq!((bound.info.job_id, bound.info.created), (7, now), "still the job's pod, timed from its claim");
        assert!(warm_state(&r, "w1").is_none(), "not warm again");
        assert!(!r.claim("w1", &job(8), now), "never claimed by another job");
        assert!(!r.begin_warm_removal("w1"), "never drained as warm");
    }

    #[test]
    fn a_warm_pod_being_removed_is_leaving_and_a_restarted_service_finds_warm_pods_ready() {
        let mut r = Registry::default();
        r.refresh(&c("c1"), vec![listed_warm("w2", PodPhase::Running), listed_warm("w3", PodPhase::Starting)]);
        assert_eq!(warm_state(&r, "w2"), Some(WarmState::Ready), "found after a restart: up");
        assert_eq!(warm_state(&r, "w3"), Some(WarmState::Warming));
        assert!(r.begin_warm_removal("w2"));
        assert_eq!(warm_state(&r, "w2"), Some(WarmState::Leaving));
        assert!(!r.claim("w2", &job(9), SystemTime::UNIX_EPOCH), "never claimed while being removed");
        r.refresh(&c("c1"), vec![listed_warm("w2", PodPhase::Running)]);
        assert_eq!(warm_state(&r, "w2"), Some(WarmState::Leaving), "a listing does not bring it back");
    }

    #[test]
    fn retaining_clusters_forgets_the_others_records() {
        let mut r = registry();
        let forgotten = r.retain_clusters(&BTreeSet::from([c("c2")]));
        let mut names: Vec<_> = forgotten.iter().map(|p| p.info.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["creating", "live", "terminating"]);
        assert_eq!(state(&r), [("elsewhere".to_owned(), Lifecycle::Live, PodPhase::Starting)]);
        assert_eq!(r.retain_clusters(&BTreeSet::new()).len(), 1);
    }
}
