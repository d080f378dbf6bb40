//! Warm pools on the local Kubernetes cluster, as the Role's ServiceAccount: a warm pod is
//! dind up over TLS and an agent waiting on a pipe, with nothing of a job in the pod or its
//! Secret; a job's claim binds the pod to the job (labels, annotations) and hands the
//! waiting agent the job's key through exec stdin (in no command line, in no file at
//! rest); a restarted service claims what the pool holds; the pool drains by the idle rule.

use std::time::Duration;

use gocd_dind::clock::Clock;
use gocd_dind::demo::job_identifier;
use gocd_dind::demo::Harness;
use gocd_dind::pod::{annotation, label_keys, secret_key};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use serde_json::{json, Value};

use crate::kubernetes_e2e::{
    assert_gone, completion, exec, exec_ok, harness_with, job_id, pod_slots, pods, profile, run_job, send, wait_up,
    Sweep,
};
use crate::local_cluster::{admin, kubeconfig, NAMESPACE};

fn create_body(cluster: &Value, elastic: &Value, job: i64) -> Value {
    json!({
        "auto_register_key": format!("warm-key-{job}"),
        "elastic_agent_profile_properties": elastic,
        "cluster_profile_properties": cluster,
        "environment": "warm-e2e",
        "job_identifier": job_identifier(job),
    })
}

/// The unclaimed warm pods of a GoCD server (the fake's id): a pool label, no job's.
async fn warm_pods(client: &kube::Client, server: &str) -> Vec<Pod> {
    let selector = format!("{}={server},{},!{}", label_keys::SERVER_ID, label_keys::POOL, label_keys::JOB_ID);
    let listed = pods(client).list(&ListParams::default().labels(&selector)).await.unwrap().items;
    listed.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
}

/// Removes every pod and Secret of a GoCD server, also when the test panicked.
struct SweepServer(String);

impl Drop for SweepServer {
    fn drop(&mut self) {
        let selector = format!("{}={}", label_keys::SERVER_ID, self.0);
        let _ = std::process::Command::new("kubectl")
            .args(["--kubeconfig", &kubeconfig(), "-n", NAMESPACE, "delete", "pods,secrets", "-l", &selector])
            .args(["--wait=false"])
            .output();
    }
}

/// What the agent container's processes were started with, all of them.
async fn command_lines(pod: &str) -> String {
    exec_ok(pod, "agent", "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' <\"$f\"; echo; done 2>/dev/null").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_claims_a_warm_pod_whose_waiting_agent_gets_its_key_through_exec_stdin_only() {
    let client = admin().await;
    let _slots = pod_slots(2).await;
    let (first, second, third) = (job_id(), job_id(), job_id());
    let _sweep = Sweep(vec![first, second, third]);
    let clock = Clock::default();
    let h: Harness = harness_with(clock.clone()).await;
    let server = h.gocd.server_id();
    let _sweep_server = SweepServer(server.clone());
    let cluster = profile().clone();
    let elastic = json!({"WarmPoolSize": "1", "WarmPoolIdleMinutes": "5"});

    send(&h, "cd.go.elastic-agent.create-agent", &create_body(&cluster, &elastic, first)).await;
    let first_pod = wait_up(&h, first).await;
    // The first job's create-agent filled the pool: one warm pod, up.
    h.service.settle().await;
    let warm = warm_pods(&client, &server).await;
    assert_eq!(warm.len(), 1, "one warm pod: {:?}", warm.iter().map(|p| &p.metadata.name).collect::<Vec<_>>());
    let warm_name = warm[0].metadata.name.clone().unwrap();
    let annotations = warm[0].metadata.annotations.clone().unwrap_or_default();
    assert!(
        !annotations.contains_key(annotation::JOB_IDENTIFIER) && !annotations.contains_key(annotation::ENVIRONMENT),
        "no job annotations on a warm pod: {annotations:?}"
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let secret = secrets.get(&format!("{warm_name}-tls")).await.unwrap();
    let keys: Vec<String> = secret.data.unwrap_or_default().into_keys().collect();
    assert!(
        !keys.iter().any(|k| k == secret_key::AUTO_REGISTER_KEY),
        "no register key in a warm pod's Secret: {keys:?}"
    );
    // Its agent waits on the pipe, has not run the image's entrypoint, has no key.
    exec_ok(
        &warm_name,
        "agent",
        "test -p /gocd-dind/claim/job && ! test -e /go-working-dir/config/autoregister.properties",
    )
    .await;
    let (has_key, env) = exec(&warm_name, "agent", "env | grep '^GO_EA_AUTO_REGISTER_KEY='", None).await;
    assert!(!has_key, "no key in a warm agent's environment: {env}");

    // The second job claims it.
    send(&h, "cd.go.elastic-agent.create-agent", &create_body(&cluster, &elastic, second)).await;
    let claimed = wait_up(&h, second).await;
    assert_eq!(claimed, warm_name, "job {second} got the warm pod");
    let console = h.gocd.console_text();
    assert!(console.contains(&format!("Claimed warm pod {claimed}")), "{console}");
    let pod = pods(&client).get(&claimed).await.unwrap();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get(label_keys::JOB_ID), Some(&second.to_string()), "bound to its job");
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    assert!(annotations.contains_key(annotation::CLAIMED_AT) && annotations.contains_key(annotation::JOB_IDENTIFIER));
    // The waiting shell read the key from the pipe and ran the image's entrypoint, which
    // writes autoregister.properties (a moment after the claim returned).
    let properties = exec_ok(
        &claimed,
        "agent",
        "f=/go-working-dir/config/autoregister.properties; for i in $(seq 300); do test -s $f && break; sleep 0.1; done; cat $f",
    )
    .await;
    assert!(properties.contains(&format!("agent.auto.register.key=warm-key-{second}")), "{properties}");
    assert!(properties.contains("agent.auto.register.environments=warm-e2e"), "{properties}");
    exec_ok(&claimed, "agent", "! test -e /gocd-dind/claim/job").await;
    let lines = command_lines(&claimed).await;
    assert!(!lines.contains(&format!("warm-key-{second}")), "the key is in no process's command line:\n{lines}");
    // And it works as a job's pod: its own dockerd over TLS, docker run -v from /godata.
    let output = run_job(&claimed).await;
    assert!(output.contains("play-job: OK"), "{output}");

    // A replacement was started once the claim was done; a restarted service (the same
    // GoCD server) claims it, finding it by its labels.
    h.service.settle().await;
    let replacement = warm_pods(&client, &server).await;
    assert_eq!(replacement.len(), 1, "one replacement");
    let replacement = replacement[0].metadata.name.clone().unwrap();
    let restarted = harness_with(clock.clone()).await;
    restarted.gocd.set_server_id(&server);
    send(&restarted, "cd.go.elastic-agent.create-agent", &create_body(&cluster, &elastic, third)).await;
    let third_pod = wait_up(&restarted, third).await;
    assert_eq!(third_pod, replacement, "claimed after the restart");

    for (service, pod, job) in [(&h, &first_pod, first), (&h, &claimed, second), (&restarted, &third_pod, third)] {
        service.gocd.set_agent(pod, "Idle", "Enabled");
        send(service, "cd.go.elastic-agent.job-completion", &completion(&cluster, pod, job)).await;
        assert_gone(&client, pod).await;
    }
    // The pool drains once its pods waited their idle time and nobody asked.
    restarted.service.settle().await;
    let left = warm_pods(&client, &server).await;
    assert_eq!(left.len(), 1, "the third claim's replacement");
    clock.advance(Duration::from_secs(6 * 60));
    send(&restarted, "cd.go.elastic-agent.server-ping", &json!({"all_cluster_profile_properties": [cluster]})).await;
    restarted.service.settle().await;
    assert_gone(&client, left[0].metadata.name.as_deref().unwrap()).await;
    assert!(warm_pods(&client, &server).await.is_empty());
}
