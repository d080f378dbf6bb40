//! The GoCD rules, table by table: plain data in, decisions out. No runtime, no HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use super::*;
use crate::protocol::AgentMetadata;

const TIMEOUT: Duration = Duration::from_secs(10 * 60);
const LIMITS: Limits = Limits { max_pending: 2, max_total: 3 };

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

fn pod(name: &str, job_id: i64, phase: PodPhase) -> PodInfo {
    PodInfo { name: name.to_owned(), job_id, job: None, created: t0(), phase, warm: None }
}

fn agent(id: &str, agent_state: &str, build_state: &str, config_state: &str) -> AgentMetadata {
    AgentMetadata {
        agent_id: id.to_owned(),
        agent_state: agent_state.to_owned(),
        build_state: build_state.to_owned(),
        config_state: config_state.to_owned(),
    }
}

fn cluster(name: &str) -> ClusterId {
    ClusterId(name.to_owned())
}

fn snapshot(pods: Vec<PodInfo>) -> ClusterSnapshot {
    ClusterSnapshot {
        cluster: cluster("c1"),
        pods,
        auto_register_timeout: TIMEOUT,
        limits: Limits { max_pending: 100, max_total: 100 },
        pools: BTreeMap::new(),
    }
}

fn delete_pod(name: &str, reason: RemovalReason) -> Action {
    Action::DeletePod { cluster: cluster("c1"), name: name.to_owned(), reason }
}

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|&id| id.to_owned()).collect()
}

/// An agent as GoCD reports it: agent state, build state, config state.
type States = (&'static str, &'static str, &'static str);

/// A case of one pod: name, phase, age in minutes, its agent's states, the actions.
type PodCase = (&'static str, PodPhase, u64, Option<States>, Vec<Action>);

/// A case of an agent without a pod: name, its states, whether every listing
/// succeeded, the actions.
type AgentCase = (&'static str, States, bool, Vec<Action>);

fn registered(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|&id| id.to_owned()).collect()
}

#[test]
fn plan_create_by_existing_pods_registrations_and_limits() {
    let running = |name: &str, job| pod(name, job, PodPhase::Running);
    let cases: Vec<(&str, Vec<PodInfo>, &[&str], CreateDecision)> = vec![
        ("no pods", vec![], &[], CreateDecision::Create),
        ("this job has a pod", vec![running("p1", 7)], &[], CreateDecision::AlreadyExists("p1".into())),
        (
            "this job's pod even at the limits",
            vec![running("p1", 1), running("p2", 2), running("p3", 7)],
            &[],
            CreateDecision::AlreadyExists("p3".into()),
        ),
        (
            "a stopped pod of this job still counts",
            vec![pod("p1", 7, PodPhase::Stopped("x".into()))],
            &["p1"],
            CreateDecision::AlreadyExists("p1".into()),
        ),
        ("one pending of two", vec![running("p1", 1)], &[], CreateDecision::Create),
        (
            "two pending of two",
            vec![running("p1", 1), running("p2", 2)],
            &[],
            CreateDecision::PendingLimit { pending: 2, max: 2 },
        ),
        (
            "a starting pod is pending",
            vec![running("p1", 1), pod("p2", 2, PodPhase::Starting)],
            &["p1"],
            CreateDecision::Create,
        ),
        (
            "registered agents are not pending",
            vec![running("p1", 1), running("p2", 2)],
            &["p1", "p2"],
            CreateDecision::Create,
        ),
        (
            "an agent registered without a pod does not count",
            vec![running("p1", 1), running("p2", 2)],
            &["other"],
            CreateDecision::PendingLimit { pending: 2, max: 2 },
        ),
        (
            "three of three, all registered",
            vec![running("p1", 1), running("p2", 2), running("p3", 3)],
            &["p1", "p2", "p3"],
            CreateDecision::TotalLimit { total: 3, max: 3 },
        ),
        (
            "the total limit is checked before the pending one",
            vec![running("p1", 1), running("p2", 2), running("p3", 3)],
            &[],
            CreateDecision::TotalLimit { total: 3, max: 3 },
        ),
    ];
    for (name, pods, agents, expected) in cases {
        assert_eq!(plan_create(&pods, &registered(agents), 7, LIMITS, None), expected, "{name}");
    }
}

#[test]
fn should_assign_only_the_pods_own_job_and_never_while_terminating() {
    let cases = [
        ("its own job", Some(7), false, true),
        ("another job", Some(8), false, false),
        ("its own job, being torn down", Some(7), true, false),
        ("another job, being torn down", Some(8), true, false),
        ("an agent with no pod", None, false, false),
    ];
    for (name, pod_job, terminating, expected) in cases {
        assert_eq!(should_assign(pod_job, terminating, 7), expected, "{name}");
    }
}

/// One pod and at most one agent for it, at an age: what server-ping does.
#[test]
fn plan_ping_for_one_pod_by_phase_agent_state_and_age() {
    use RemovalReason::{NeverRegistered, Stopped, Unused};
    let stopped = || PodPhase::Stopped("agent exited".into());
    let disable = || Action::DisableAgents(ids(&["p"]));
    let delete_agent = || Action::DeleteAgents(ids(&["p"]));
    #[rustfmt::skip]
    let cases: Vec<PodCase> = vec![
        // No agent registered for the pod.
        ("starting, young, no agent", PodPhase::Starting, 1, None, vec![]),
        ("running, just under the timeout", PodPhase::Running, 9, None, vec![]),
        ("running, at the timeout", PodPhase::Running, 10, None, vec![delete_pod("p", NeverRegistered)]),
        ("starting, past the timeout", PodPhase::Starting, 30, None, vec![delete_pod("p", NeverRegistered)]),
        ("stopped, young, no agent", stopped(), 0, None, vec![delete_pod("p", Stopped)]),
        ("stopped, old, no agent", stopped(), 60, None, vec![delete_pod("p", Stopped)]),
        // A registered, enabled agent.
        ("idle, young", PodPhase::Running, 1, Some(("Idle", "Idle", "Enabled")), vec![]),
        ("idle past the timeout: its job was cancelled", PodPhase::Running, 11, Some(("Idle", "Idle", "Enabled")), vec![disable()]),
        ("idle, pod stopped", stopped(), 1, Some(("Idle", "Idle", "Enabled")), vec![disable()]),
        ("lost contact past the timeout", PodPhase::Running, 11, Some(("LostContact", "Idle", "Enabled")), vec![disable()]),
        ("missing, pod stopped", stopped(), 1, Some(("Missing", "Idle", "Enabled")), vec![disable()]),
        ("pending approval, old", PodPhase::Running, 60, Some(("Idle", "Idle", "Pending")), vec![]),
        // Disabled (by us, or an operator): remove the pod, then the agent.
        ("disabled and idle", PodPhase::Running, 1, Some(("Idle", "Idle", "Disabled")), vec![delete_pod("p", Unused), delete_agent()]),
        ("disabled and lost", PodPhase::Running, 1, Some(("LostContact", "Idle", "Disabled")), vec![delete_pod("p", Unused), delete_agent()]),
        ("disabled, pod stopped", stopped(), 1, Some(("Missing", "Idle", "Disabled")), vec![delete_pod("p", Unused), delete_agent()]),
        // Building: never touched, whatever else is true.
        ("building, old", PodPhase::Running, 600, Some(("Building", "Building", "Enabled")), vec![]),
        ("building, pod stopped", stopped(), 600, Some(("Building", "Building", "Enabled")), vec![]),
        ("building, disabled", PodPhase::Running, 600, Some(("Building", "Building", "Disabled")), vec![]),
        ("job cancelled, still winding down", PodPhase::Running, 600, Some(("Idle", "Cancelled", "Disabled")), vec![]),
        ("lost contact while building", stopped(), 600, Some(("LostContact", "Building", "Disabled")), vec![]),
    ];
    for (name, phase, age, agent_states, expected) in cases {
        let mut pod = pod("p", 1, phase);
        pod.created = t0();
        let agents: Vec<AgentMetadata> = agent_states.map(|(a, b, c)| agent("p", a, b, c)).into_iter().collect();
        for complete in [true, false] {
            let actions = plan_ping(&[snapshot(vec![pod.clone()])], &agents, t0() + minutes(age), complete);
            assert_eq!(actions, expected, "{name} (complete listing: {complete})");
        }
    }
}

/// Agents GoCD lists that no pod backs.
#[test]
fn plan_ping_for_agents_without_a_pod() {
    let cases: Vec<AgentCase> = vec![
        (
            "enabled: disabled, then deleted",
            ("LostContact", "Idle", "Enabled"),
            true,
            vec![Action::DisableAgents(ids(&["gone"])), Action::DeleteAgents(ids(&["gone"]))],
        ),
        (
            "already disabled: deleted",
            ("Missing", "Idle", "Disabled"),
            true,
            vec![Action::DeleteAgents(ids(&["gone"]))],
        ),
        ("building: kept", ("Building", "Building", "Enabled"), true, vec![]),
        ("a listing failed: kept", ("LostContact", "Idle", "Enabled"), false, vec![]),
    ];
    for (name, (a, b, c), complete, expected) in cases {
        let actions = plan_ping(&[snapshot(vec![])], &[agent("gone", a, b, c)], t0(), complete);
        assert_eq!(actions, expected, "{name}");
    }
}

#[test]
fn plan_ping_orders_disable_then_pods_then_agents_across_clusters() {
    let other = ClusterSnapshot {
        cluster: cluster("c2"),
        pods: vec![pod("q-old", 2, PodPhase::Running)],
        auto_register_timeout: minutes(1),
        ..snapshot(vec![])
    };
    let clusters =
        [snapshot(vec![pod("p-disabled", 1, PodPhase::Running), pod("p-idle", 3, PodPhase::Running)]), other];
    let agents = [
        agent("p-disabled", "Idle", "Idle", "Disabled"),
        agent("p-idle", "Idle", "Idle", "Enabled"),
        agent("no-pod", "LostContact", "Idle", "Enabled"),
    ];
    let actions = plan_ping(&clusters, &agents, t0() + minutes(11), true);
    assert_eq!(
        actions,
        [
            Action::DisableAgents(ids(&["no-pod", "p-idle"])),
            delete_pod("p-disabled", RemovalReason::Unused),
            Action::DeletePod { cluster: cluster("c2"), name: "q-old".into(), reason: RemovalReason::NeverRegistered },
            Action::DeleteAgents(ids(&["no-pod", "p-disabled"])),
        ]
    );
}

#[test]
fn a_pod_created_in_the_future_is_not_expired() {
    // Clocks differ between the service and an engine: age never goes negative.
    let mut young = pod("p", 1, PodPhase::Running);
    young.created = t0() + minutes(5);
    assert_eq!(plan_ping(&[snapshot(vec![young])], &[], t0(), true), []);
}
