use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::*;

fn pod(status: &Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "gocd-dind-p1", "labels": {"gocd-dind.gocd.org/job-id": "7"}},
        "status": status,
    }))
    .unwrap()
}

fn waiting(reason: &str) -> Value {
    json!({"waiting": {"reason": reason, "message": format!("{reason} message")}})
}

fn container(name: &str, state: &Value) -> Value {
    json!({"name": name, "image": format!("{name}-image"), "imageID": "", "ready": false, "restartCount": 0, "state": state})
}

#[test]
fn startup_reads_each_situation_a_starting_pod_can_be_in() {
    let running = json!({"running": {}});
    let cases: &[(&str, Value, Startup)] = &[
        ("just created", json!({"phase": "Pending"}), Startup::Waiting { unschedulable: None }),
        (
            "no node fits",
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available"}]}),
            Startup::Waiting { unschedulable: Some("0/1 nodes are available".into()) },
        ),
        (
            "dind still starting",
            json!({"phase": "Pending", "initContainerStatuses": [container("dind", &running)], "containerStatuses": [container("agent", &waiting("PodInitializing"))]}),
            Startup::Waiting { unschedulable: None },
        ),
        (
            "agent running",
            json!({"phase": "Running", "initContainerStatuses": [container("dind", &running)], "containerStatuses": [container("agent", &running)]}),
            Startup::Running,
        ),
        (
            "image missing",
            json!({"phase": "Pending", "initContainerStatuses": [container("dind", &waiting("ErrImagePull"))]}),
            Startup::Failed("dind: ErrImagePull: ErrImagePull message".into()),
        ),
        ("pod failed", json!({"phase": "Failed", "message": "evicted"}), Startup::Failed("pod failed: evicted".into())),
    ];
    for (situation, status, expected) in cases {
        assert_eq!(&startup(&pod(status)), expected, "{situation}");
    }
}

#[test]
fn a_dind_that_exited_before_the_agent_started_fails_the_pod_even_while_kubernetes_restarts_it() {
    let mut dind = container("dind", &waiting("PodInitializing"));
    dind["restartCount"] = json!(1);
    dind["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error"}});
    let p = pod(
        &json!({"phase": "Pending", "initContainerStatuses": [dind], "containerStatuses": [container("agent", &waiting("PodInitializing"))]}),
    );
    assert_eq!(startup(&p), Startup::Failed("dind exited with code 1 (Error) before dockerd answered".into()));
    assert!(dind_restarted(&p), "the log worth reading is the previous run's");
}

#[test]
fn a_pod_being_deleted_is_stopped_and_says_so() {
    let mut p = pod(&json!({"phase": "Running", "containerStatuses": [container("agent", &json!({"running": {}}))]}));
    assert_eq!(phase(&p), PodPhase::Running);
    p.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    assert!(matches!(phase(&p), PodPhase::Stopped(why) if why.contains("deleted")));
    assert!(notes(&p).contains(&"being deleted".to_owned()));
}

#[test]
fn the_agent_exiting_stops_the_pod() {
    let p = pod(
        &json!({"phase": "Running", "containerStatuses": [container("agent", &json!({"terminated": {"exitCode": 137}}))]}),
    );
    assert_eq!(phase(&p), PodPhase::Stopped("agent exited with code 137".into()));
}

#[test]
fn pod_info_comes_from_labels_and_the_report_lists_containers_and_scheduling_trouble() {
    let p = pod(&json!({
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector"}],
        "initContainerStatuses": [container("dind", &json!({"terminated": {"exitCode": 2, "reason": "Error"}}))],
        "containerStatuses": [container("agent", &waiting("PodInitializing"))],
    }));
    let info = pod_info(&p);
    assert_eq!((info.name.as_str(), info.job_id), ("gocd-dind-p1", 7));
    let shown: Vec<(String, String)> = containers(&p).into_iter().map(|c| (c.name, c.state)).collect();
    assert_eq!(
        shown,
        [("dind".into(), "terminated: exit code 2 (Error)".into()), ("agent".into(), "PodInitializing".into())]
    );
    assert_eq!(
        notes(&p),
        ["PodScheduled: 0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector"]
    );
}

#[test]
fn dockerd_is_ready_once_dinds_startup_probe_passed() {
    let mut dind = container("dind", &json!({"running": {}}));
    assert!(!dockerd_ready(&pod(&json!({"initContainerStatuses": [dind.clone()]}))), "running, probe not passed yet");
    dind["started"] = json!(true);
    assert!(dockerd_ready(&pod(&json!({"initContainerStatuses": [dind]}))));
    assert!(!dockerd_ready(&pod(&json!({"phase": "Pending"}))));
}

#[test]
fn containers_carry_exit_codes_oom_kills_and_restarts() {
    let mut dind = container("dind", &json!({"running": {}}));
    dind["restartCount"] = json!(2);
    dind["lastState"] = json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}});
    let agent = container("agent", &json!({"terminated": {"exitCode": 1, "reason": "Error"}}));
    let read = containers(&pod(&json!({"initContainerStatuses": [dind], "containerStatuses": [agent]})));
    let summary: Vec<_> = read.iter().map(|c| (c.name.as_str(), c.exit_code, c.oom_killed, c.restarts)).collect();
    assert_eq!(summary, [("dind", Some(137), true, 2), ("agent", Some(1), false, 0)]);
    assert_eq!(read[1].state, "terminated: exit code 1 (Error)");
}

#[test]
fn events_are_read_oldest_first_with_their_kind_and_count() {
    let event = |reason: &str, kind: &str, at: &str, count: Option<i32>| -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": format!("e-{reason}")},
            "involvedObject": {"kind": "Pod", "name": "gocd-dind-p1"},
            "reason": reason, "message": format!("{reason} message"), "type": kind,
            "lastTimestamp": at, "count": count,
        }))
        .unwrap()
    };
    let read = events(&[
        event("Failed", "Warning", "2026-01-01T00:00:05Z", Some(3)),
        event("Scheduled", "Normal", "2026-01-01T00:00:01Z", None),
    ]);
    let summary: Vec<_> = read.iter().map(|e| (e.reason.as_str(), e.warning, e.count)).collect();
    assert_eq!(summary, [("Scheduled", false, 1), ("Failed", true, 3)]);
    assert_eq!(read[1].message, "Failed message");
    assert!(read[0].at < read[1].at);
}
