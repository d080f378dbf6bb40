//! The warm pools' rules, table by table: which warm pod a job claims, how many are made,
//! which are removed. Plain data in, decisions out.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use super::*;
use crate::agents::{plan_create, plan_ping, Action, CreateDecision};
use crate::listing::PoolShape;
use crate::settings::ClusterId;

const LIMITS: Limits = Limits { max_pending: 2, max_total: 3 };
const SHAPE: PoolShape = PoolShape { size: 2, idle: Duration::from_secs(30 * 60) };

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

fn pool(name: &str) -> PoolId {
    PoolId(name.to_owned())
}

/// A pod serving a job, made at t0.
fn job_pod(name: &str, job_id: i64) -> PodInfo {
    PodInfo { name: name.to_owned(), job_id, job: None, created: t0(), phase: PodPhase::Running, warm: None }
}

/// A warm pod of `pool_name` made `age` minutes before t0 + 60 min (so a larger age is older).
fn warm_pod(name: &str, pool_name: &str, state: WarmState, age: u64) -> PodInfo {
    let phase =
        if matches!(state, WarmState::Warming | WarmState::Making) { PodPhase::Starting } else { PodPhase::Running };
    PodInfo {
        name: name.to_owned(),
        job_id: 0,
        job: None,
        created: t0() + minutes(60) - minutes(age),
        phase,
        warm: Some(WarmPod { pool: pool(pool_name), shape: SHAPE, state }),
    }
}

fn ready(name: &str, pool_name: &str, age: u64) -> PodInfo {
    warm_pod(name, pool_name, WarmState::Ready, age)
}

fn registered(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

/// Name, pods, registered agents, the job's pool, the decision for job 7.
type CreateCase = (&'static str, Vec<PodInfo>, &'static [&'static str], Option<&'static str>, CreateDecision);
/// Name, pods, registered agents, pool A's size, how many to make.
type FillCase = (&'static str, Vec<PodInfo>, &'static [&'static str], usize, usize);
/// Name, the cluster, the removals.
type DrainCase = (&'static str, ClusterSnapshot, Vec<(&'static str, RemovalReason)>);

#[test]
fn create_agent_claims_a_warm_pod_of_the_jobs_pool_or_makes_room() {
    use CreateDecision::{AlreadyExists, Claim, Create, CreateAfterEvicting, PendingLimit, TotalLimit};
    let stopped = || {
        let mut pod = ready("w-dead", "A", 1);
        pod.phase = PodPhase::Stopped("dind exited".into());
        pod
    };
    #[rustfmt::skip]
    let cases: Vec<CreateCase> = vec![
        ("a warm pod of the job's pool is claimed", vec![ready("w1", "A", 1)], &[], Some("A"), Claim("w1".into())),
        ("the oldest of two", vec![ready("w1", "A", 1), ready("w2", "A", 5)], &[], Some("A"), Claim("w2".into())),
        ("one still warming is not claimed", vec![warm_pod("w1", "A", WarmState::Warming, 1)], &[], Some("A"), Create),
        ("one being removed is not claimed", vec![warm_pod("w1", "A", WarmState::Leaving, 1)], &[], Some("A"), Create),
        ("one whose dockerd stopped is not claimed", vec![stopped()], &[], Some("A"), Create),
        ("another pool's is not claimed", vec![ready("w1", "B", 1)], &[], Some("A"), Create),
        ("a profile without a pool claims nothing", vec![ready("w1", "A", 1)], &[], None, Create),
        ("the job's own pod first", vec![job_pod("p7", 7), ready("w1", "A", 1)], &[], Some("A"), AlreadyExists("p7".into())),
        ("claimed at the limits: claiming adds no pod", vec![job_pod("p1", 1), job_pod("p2", 2), ready("w1", "A", 1)], &[], Some("A"), Claim("w1".into())),
        (
            "total limit held by another pool's warm pods: the oldest makes room",
            vec![job_pod("p1", 1), ready("w1", "B", 1), ready("w2", "B", 9)], &["p1"], Some("A"),
            CreateAfterEvicting("w2".into()),
        ),
        (
            "pending limit held by warm pods: one makes room",
            vec![ready("w1", "B", 1), warm_pod("w2", "B", WarmState::Warming, 2)], &[], None,
            CreateAfterEvicting("w2".into()),
        ),
        (
            "the job's own pool is warming: wait for it rather than evict it",
            vec![job_pod("p1", 1), job_pod("p2", 2), warm_pod("w1", "A", WarmState::Warming, 1)], &["p1", "p2"], Some("A"),
            TotalLimit { total: 3, max: 3 },
        ),
        (
            "one eviction would not be enough",
            vec![job_pod("p1", 1), job_pod("p2", 2), ready("w1", "B", 1)], &[], Some("A"),
            TotalLimit { total: 3, max: 3 },
        ),
        (
            "a pod this service is still making is not evicted (its maker would go on)",
            vec![job_pod("p1", 1), warm_pod("w1", "B", WarmState::Making, 1)], &[], Some("A"),
            PendingLimit { pending: 2, max: 2 },
        ),
        (
            "one nobody makes that is not up yet may make room",
            vec![job_pod("p1", 1), warm_pod("w1", "B", WarmState::Warming, 1)], &[], Some("A"),
            CreateAfterEvicting("w1".into()),
        ),
        (
            "a pod being removed is not evicted again",
            vec![job_pod("p1", 1), warm_pod("w1", "B", WarmState::Leaving, 1)], &[], Some("A"),
            PendingLimit { pending: 2, max: 2 },
        ),
    ];
    for (name, pods, agents, pool_name, expected) in cases {
        let pool = pool_name.map(pool);
        assert_eq!(plan_create(&pods, &registered(agents), 7, LIMITS, pool.as_ref()), expected, "{name}");
    }
    // A warm pod serves no job, whatever job id it carries until claimed.
    assert_eq!(plan_create(&[ready("w1", "B", 1)], &BTreeSet::new(), 0, LIMITS, None), Create);
}

#[test]
fn a_pool_is_filled_to_its_size_within_the_limits() {
    let stopped = {
        let mut pod = ready("w-dead", "A", 1);
        pod.phase = PodPhase::Stopped("dind exited".into());
        pod
    };
    #[rustfmt::skip]
    let cases: Vec<FillCase> = vec![
        ("an empty pool", vec![], &[], 2, 2),
        ("size 0 makes none", vec![], &[], 0, 0),
        ("one ready", vec![ready("w1", "A", 1)], &[], 2, 1),
        ("one warming counts", vec![warm_pod("w1", "A", WarmState::Warming, 1)], &[], 2, 1),
        ("one being made counts", vec![warm_pod("w1", "A", WarmState::Making, 1)], &[], 2, 1),
        ("full", vec![ready("w1", "A", 1), ready("w2", "A", 2)], &[], 2, 0),
        ("above its size (resized down): none", vec![ready("w1", "A", 1), ready("w2", "A", 2)], &[], 1, 0),
        ("one being removed does not count", vec![warm_pod("w1", "A", WarmState::Leaving, 1)], &["x"], 2, 1),
        ("a stopped one does not count, but takes its slot", vec![stopped], &[], 2, 1),
        ("another pool's do not count, but take their slots", vec![ready("w1", "B", 1)], &[], 2, 1),
        ("bounded by the total limit", vec![job_pod("p1", 1), job_pod("p2", 2)], &["p1", "p2"], 2, 1),
        ("bounded by the pending limit", vec![job_pod("p1", 1)], &[], 2, 1),
        ("no room at all", vec![job_pod("p1", 1), job_pod("p2", 2)], &[], 2, 0),
    ];
    for (name, pods, agents, size, expected) in cases {
        assert_eq!(plan_fill(&pods, &registered(agents), LIMITS, &pool("A"), size), expected, "{name}");
    }
}

fn snapshot(pods: Vec<PodInfo>, limits: Limits, pools: &[(&str, PoolShape)]) -> ClusterSnapshot {
    ClusterSnapshot {
        cluster: ClusterId("c1".into()),
        pods,
        auto_register_timeout: minutes(10),
        limits,
        pools: pools.iter().map(|(name, shape)| (pool(name), *shape)).collect(),
    }
}

const ROOMY: Limits = Limits { max_pending: 100, max_total: 100 };

#[test]
fn server_ping_drains_idle_surplus_and_over_limit_warm_pods() {
    use RemovalReason::{Stopped, WarmIdle, WarmNotUp, WarmRetried, WarmSurplus};
    let resized = PoolShape { size: 1, ..SHAPE };
    let quicker = PoolShape { idle: minutes(5), ..SHAPE };
    let stopped = {
        let mut pod = ready("w-dead", "A", 1);
        pod.phase = PodPhase::Stopped("dind exited".into());
        pod
    };
    #[rustfmt::skip]
    let cases: Vec<DrainCase> = vec![
        ("young warm pods stay", snapshot(vec![ready("w1", "A", 1), ready("w2", "A", 29)], ROOMY, &[]), vec![]),
        ("one that waited its idle time goes", snapshot(vec![ready("w1", "A", 1), ready("w2", "A", 30)], ROOMY, &[]), vec![("w2", WarmIdle)]),
        ("a pool no profile asked for since a restart goes by its labels", snapshot(vec![ready("w1", "Z", 45)], ROOMY, &[("A", SHAPE)]), vec![("w1", WarmIdle)]),
        ("a shorter idle time the profile asks for now", snapshot(vec![ready("w1", "A", 6)], ROOMY, &[("A", quicker)]), vec![("w1", WarmIdle)]),
        ("one still being made is never removed", snapshot(vec![warm_pod("w1", "A", WarmState::Making, 45)], ROOMY, &[]), vec![]),
        ("one nobody makes, not up yet, stays within auto_register_timeout", snapshot(vec![warm_pod("w1", "A", WarmState::Warming, 9)], ROOMY, &[]), vec![]),
        ("one nobody makes, not up within auto_register_timeout, goes", snapshot(vec![warm_pod("w1", "A", WarmState::Warming, 10)], ROOMY, &[]), vec![("w1", WarmNotUp)]),
        (
            "beyond the pool's size: one being made counts but is not the one removed",
            snapshot(vec![ready("w1", "A", 1), ready("w2", "A", 2), warm_pod("w3", "A", WarmState::Making, 5)], ROOMY, &[]),
            vec![("w2", WarmSurplus)],
        ),
        (
            "over a lowered limit: one being made is left to the next ping",
            snapshot(vec![job_pod("p1", 1), warm_pod("w1", "A", WarmState::Making, 3)], Limits { max_pending: 100, max_total: 1 }, &[]),
            vec![],
        ),
        ("a stopped one goes", snapshot(vec![stopped], ROOMY, &[]), vec![("w-dead", Stopped)]),
        ("one whose removal did not finish goes", snapshot(vec![warm_pod("w1", "A", WarmState::Leaving, 1)], ROOMY, &[]), vec![("w1", WarmRetried)]),
        (
            "beyond the pool's size: the oldest go",
            snapshot(vec![ready("w1", "A", 1), ready("w2", "A", 3), warm_pod("w3", "A", WarmState::Warming, 2)], ROOMY, &[]),
            vec![("w2", WarmSurplus)],
        ),
        (
            "a pool resized down",
            snapshot(vec![ready("w1", "A", 1), ready("w2", "A", 3)], ROOMY, &[("A", resized)]),
            vec![("w2", WarmSurplus)],
        ),
        (
            "a pool resized to nothing",
            snapshot(vec![ready("w1", "A", 1)], ROOMY, &[("A", PoolShape { size: 0, ..SHAPE })]),
            vec![("w1", WarmSurplus)],
        ),
        (
            "pools are counted apart",
            snapshot(vec![ready("w1", "A", 1), ready("w2", "A", 3), ready("v1", "B", 2), ready("v2", "B", 4)], ROOMY, &[]),
            vec![],
        ),
        (
            "over a lowered total limit: warm pods go first, oldest first",
            snapshot(vec![job_pod("p1", 1), ready("w1", "A", 1), ready("w2", "A", 3)], Limits { max_pending: 100, max_total: 2 }, &[]),
            vec![("w2", WarmSurplus)],
        ),
        (
            "over a lowered pending limit",
            snapshot(vec![job_pod("p1", 1), ready("w1", "A", 1), ready("v1", "B", 3)], Limits { max_pending: 1, max_total: 100 }, &[]),
            vec![("v1", WarmSurplus)],
        ),
        (
            "pods serving jobs are never removed for a limit",
            snapshot(vec![job_pod("p1", 1), job_pod("p2", 2), job_pod("p3", 3)], Limits { max_pending: 1, max_total: 2 }, &[]),
            vec![],
        ),
        (
            "removals of other rules count towards the limits",
            snapshot(vec![job_pod("p1", 1), ready("w1", "A", 1), ready("w2", "A", 40)], Limits { max_pending: 100, max_total: 2 }, &[]),
            vec![("w2", WarmIdle)],
        ),
    ];
    for (name, cluster, expected) in cases {
        let removals = plan_drain(&cluster, &registered(&["p1", "p2", "p3"]), t0() + minutes(60));
        let expected: Vec<(String, RemovalReason)> = expected.into_iter().map(|(n, r)| (n.to_owned(), r)).collect();
        assert_eq!(removals, expected, "{name}");
    }
}

#[test]
fn a_warm_pod_never_counts_as_never_registered_and_a_claimed_one_counts_from_its_claim() {
    // Older than the auto-register timeout (10 min), younger than its idle time (30 min).
    let young_enough = snapshot(vec![ready("w1", "A", 20)], ROOMY, &[]);
    assert_eq!(plan_ping(&[young_enough], &[], t0() + minutes(60), true), []);
    // A pod claimed 5 minutes ago (its `created` is the claim) has not outlived the timeout.
    let mut claimed = job_pod("p7", 7);
    claimed.created = t0() + minutes(55);
    let cluster = snapshot(vec![claimed], ROOMY, &[]);
    assert_eq!(plan_ping(std::slice::from_ref(&cluster), &[], t0() + minutes(60), true), []);
    let removed = plan_ping(&[cluster], &[], t0() + minutes(65), true);
    assert!(matches!(&removed[..], [Action::DeletePod { reason: RemovalReason::NeverRegistered, .. }]), "{removed:?}");
    let drained = plan_ping(&[snapshot(vec![ready("w1", "A", 45)], ROOMY, &[])], &[], t0() + minutes(60), true);
    assert!(matches!(&drained[..], [Action::DeletePod { reason: RemovalReason::WarmIdle, .. }]), "{drained:?}");
}
