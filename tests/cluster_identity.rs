//! A cluster is its engine, not the spelling of its address: profiles are keyed by the
//! engine's identity (asked once, remembered), an engine never identified decides
//! nothing, and pods a profile left behind on an engine it no longer points at are
//! reported with the command that removes them.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::lifecycle::job;
use crate::profile_changes::{engines, on};

const DISABLE: &str = "go.processor.elastic-agents.disable-agents";
const DELETE: &str = "go.processor.elastic-agents.delete-agents";

fn completion(cluster: &Value, pod: &str, job_id: i64) -> Value {
    json!({"elastic_agent_id": pod, "job_identifier": job(job_id), "cluster_profile_properties": cluster, "elastic_agent_profile_properties": {}})
}

#[tokio::test]
async fn re_spelling_an_engines_address_orphans_nothing() {
    let e = engines().await;
    let spelled = on("tcp://a:2376", &[]);
    e.create(&spelled, 10).await;
    let pod = e.a.pods()[0].info.name.clone();
    let cluster = e.cluster_of(10);
    e.h.gocd.set_agent(&pod, "Building", "Enabled");
    // The operator edits the profile: the same engine, spelled with a trailing slash.
    let respelled = on("tcp://a:2376/", &[]);
    e.ping(&[&respelled]).await;
    assert_eq!(e.h.service.tracked_clusters().all(), BTreeSet::from([cluster.clone()]), "one cluster");
    assert_eq!(e.cluster_of(10), cluster, "the pod is still managed");
    let assign = json!({"agent": {"agent_id": pod, "agent_state": "Idle", "build_state": "Idle", "config_state": "Enabled"}, "job_identifier": job(10), "cluster_profile_properties": respelled});
    assert_eq!(e.send("cd.go.elastic-agent.should-assign-work", &assign).await, "true");
    e.send("cd.go.elastic-agent.job-completion", &completion(&respelled, &pod, 10)).await;
    assert!(e.a.pods().is_empty(), "job-completion under the new spelling removes the pod");
    let report = e
        .send("cd.go.elastic-agent.plugin-status-report", &json!({"all_cluster_profiles_properties": [respelled]}))
        .await;
    assert!(!report.contains("no cluster profile reaches"), "{report}");
}

#[tokio::test]
async fn an_engine_never_identified_decides_nothing() {
    let e = engines().await;
    let (a, b, gone) =
        (on("tcp://a:2376", &[]), on("tcp://b:2376", &[("max_pending_agents", "1")]), on("tcp://c:2376", &[]));
    e.create(&gone, 30).await;
    let gone_id = e.cluster_of(30);
    e.create(&b, 20).await;
    e.create(&b, 21).await;
    e.h.gocd.set_agent("gocd-dind-elsewhere", "LostContact", "Enabled");
    e.a.set_unreachable(true);
    // create-agent waits (GoCD asks again) and says why.
    e.create(&a, 10).await;
    assert!(e.h.service.pod_of_job(10).is_none());
    let console = e.h.gocd.console_text();
    assert!(console.contains("cannot tell which engine the cluster profile points at"), "{console}");
    // The profile on C is deleted, but A's cluster is unknown: nothing is pruned, no agent
    // is taken for orphaned (A may hold its pod).
    let before = e.h.service.tracked_clusters();
    e.ping(&[&a, &b]).await;
    assert_eq!(e.h.service.tracked_clusters(), before, "state was pruned on an incomplete picture");
    assert!(e.h.gocd.calls_to(DISABLE).is_empty() && e.h.gocd.calls_to(DELETE).is_empty());
    assert_eq!(e.other.pods().len(), 1, "no pod removed");
    // A answers: now the picture is complete.
    e.a.set_unreachable(false);
    e.ping(&[&a, &b]).await;
    assert!(!e.h.service.tracked_clusters().all().contains(&gone_id), "the deleted profile's state goes now");
    assert_eq!(e.h.gocd.calls_to(DELETE).len(), 1, "the podless agent goes once every engine is known");
}

#[tokio::test]
async fn an_engine_once_identified_stays_identified_while_it_is_down() {
    let e = engines().await;
    let (a, b) = (on("tcp://a:2376", &[]), on("tcp://b:2376", &[]));
    e.create(&a, 10).await;
    e.create(&b, 20).await;
    let (a_id, b_id) = (e.cluster_of(10), e.cluster_of(20));
    e.a.set_unreachable(true);
    // B is deleted while A is down: A's identity is remembered, so B's state can go.
    e.ping(&[&a]).await;
    let tracked = e.h.service.tracked_clusters();
    assert_eq!(tracked.all(), BTreeSet::from([a_id.clone()]), "{tracked:?}");
    assert!(!tracked.all().contains(&b_id));
    assert_eq!(e.a.pods().len(), 1, "nothing removed from the engine that is down");
    assert_eq!(e.cluster_of(10), a_id, "its pod is still known");
}

#[tokio::test]
async fn pods_left_by_a_re_pointed_profile_are_reported_then_removed_at_job_completion() {
    let e = engines().await;
    let before = on("tcp://a:2376", &[]);
    e.create(&before, 10).await;
    let (pod, old) = (e.a.pods()[0].info.name.clone(), e.cluster_of(10));
    e.h.gocd.set_agent(&pod, "Building", "Enabled");
    // The profile now points at engine C; the job still runs on A.
    let after = on("tcp://c:2376", &[]);
    e.ping(&[&after]).await;
    let report_request = json!({"all_cluster_profiles_properties": [after]});
    let report = e.send("cd.go.elastic-agent.plugin-status-report", &report_request).await;
    let view = serde_json::from_str::<Value>(&report).unwrap()["view"].as_str().unwrap().to_owned();
    assert!(view.contains("Pods no cluster profile reaches"), "{view}");
    assert!(view.contains("in-memory test runtime at tcp://a:2376") && view.contains(&pod), "{view}");
    let server = e.h.gocd.server_id();
    let filters =
        format!("--filter label=gocd-dind.gocd.org/server-id={server} --filter label=gocd-dind.gocd.org/cluster={old}");
    assert!(
        view.contains(&format!("docker -H tcp://a:2376 rm -f $(docker -H tcp://a:2376 ps -aq {filters})")),
        "{view}"
    );
    assert_eq!(e.a.pods().len(), 1, "reported, not removed");
    // The job completes: GoCD sends the profile as it is now; the pod is found on A.
    e.send("cd.go.elastic-agent.job-completion", &completion(&after, &pod, 10)).await;
    assert!(e.a.pods().is_empty());
    let report = e.send("cd.go.elastic-agent.plugin-status-report", &report_request).await;
    assert!(!report.contains("Pods no cluster profile reaches"), "an empty orphan is still reported: {report}");
}
