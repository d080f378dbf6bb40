//! The pod lifecycle on the local Kubernetes cluster (`.ci/k8s-up.sh`): the service against
//! a baseline of the same pod applied with `kubectl` and waited for, side by side in one
//! run.
//!
//!   cargo bench --bench kubernetes      (GOCD_DIND_BENCH_RUNS=5 by default)
//!
//! For each run:
//! - create → agent started: create-agent sent → the service's pod start finished, which it
//!   reports once the agent container runs (after dind's TLS startup probe passed). The
//!   baseline: the same pod and Secret (`gocd_dind::pod::build`, same profile) written by
//!   `kubectl create -f`, then watched until the agent container runs.
//! - teardown: job-completion sent → the pod and its Secret gone from the API. The
//!   baseline: `kubectl delete pod,secret --wait=false`, then watched until both are gone.
//!
//! Both sides wait through a watch from this process, so they pay the same to observe.
//! Service and baseline runs alternate (ABBA) and one warm-up of each is not counted.
//! Target: service/baseline ≤ 1.10.

// Shared with the end-to-end tests, which use more of it.
#[allow(dead_code)]
#[path = "../tests/local_cluster.rs"]
mod local_cluster;

use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use gocd_dind::clock::Clock;
use gocd_dind::demo::{create_agent_body, job_identifier, Harness};
use gocd_dind::pod::{Binding, Ownership, PodRequest};
use gocd_dind::protocol::{JobIdentifier, Properties};
use gocd_dind::runtime::Runtimes;
use gocd_dind::service::ServiceOptions;
use gocd_dind::settings::{ClusterId, ClusterSettings, ElasticSettings};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::runtime::wait::{await_condition, conditions};
use kube::Api;
use local_cluster::NAMESPACE;
use serde_json::{json, Value};

#[allow(dead_code)] // shared by the pod benchmarks; each uses its part
mod side_by_side;

use side_by_side::Sample;

fn main() -> anyhow::Result<()> {
    let runs = side_by_side::runs()?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench(runs))
}

async fn bench(runs: usize) -> anyhow::Result<()> {
    let profile = local_cluster::prepare();
    let client = local_cluster::admin().await;
    let harness = Harness::start(Arc::new(Runtimes::new()), Clock::default(), ServiceOptions::default()).await?;
    let first_job = side_by_side::first_job()?;
    println!("gocd-dind kubernetes bench: {runs} runs of the service and of kubectl (1 warm-up each)");
    let (service, baseline) = side_by_side::interleaved(
        runs,
        first_job,
        async |job| service_run(&client, &harness, &profile, job).await,
        async |job| baseline_run(&client, &profile, job).await,
    )
    .await?;
    side_by_side::report(
        "create-agent -> agent container started (ms)",
        "job-completion -> pod and Secret gone (ms)",
        &service,
        &baseline,
    );
    Ok(())
}

async fn service_run(client: &kube::Client, h: &Harness, profile: &Value, job: i64) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let (status, text) = h.send("cd.go.elastic-agent.create-agent", &create_agent_body(profile, job)).await?;
    if status != 200 {
        bail!("create-agent answered {status}: {text}");
    }
    h.service.settle().await;
    let ready = started.elapsed();
    let Some(pod) = h.service.pod_of_job(job).map(|r| r.info.name) else {
        bail!("the pod did not start: {:?}\n{}", h.service.last_failure(job).map(|f| f.reason), h.gocd.console_text());
    };
    h.gocd.set_agent(&pod, "Idle", "Enabled");
    let completion = json!({"elastic_agent_id": pod, "job_identifier": job_identifier(job), "cluster_profile_properties": profile, "elastic_agent_profile_properties": {}});
    let started = Instant::now();
    let (status, text) = h.send("cd.go.elastic-agent.job-completion", &completion).await?;
    if status != 200 {
        bail!("job-completion answered {status}: {text}");
    }
    gone(client, &pod).await?;
    Ok(Sample { ready, teardown: started.elapsed() })
}

async fn baseline_run(client: &kube::Client, profile: &Value, job: i64) -> anyhow::Result<Sample> {
    let name = gocd_dind::pod::new_name();
    let manifest = baseline_manifest(profile, &name, job)?;
    let file = std::env::temp_dir().join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_vec(&manifest)?)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let started = Instant::now();
    kubectl(&["create", "-f", file.to_str().unwrap()]).await?;
    await_condition(pods, &name, agent_running).await?;
    let ready = started.elapsed();
    let _ = std::fs::remove_file(&file);
    let started = Instant::now();
    kubectl(&["-n", NAMESPACE, "delete", "--wait=false", &format!("pod/{name}"), &format!("secret/{name}-tls")])
        .await?;
    gone(client, &name).await?;
    Ok(Sample { ready, teardown: started.elapsed() })
}

/// The pod the service would build for this job, under an owner the service does not know.
fn baseline_manifest(profile: &Value, name: &str, job: i64) -> anyhow::Result<Value> {
    let props: Properties = serde_json::from_value(profile.clone())?;
    let cluster = ClusterSettings::parse(&props, false).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let elastic = ElasticSettings::parse(&Properties::default()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let owner = Ownership::new("kubectl-baseline", ClusterId("kubectl-baseline".into()));
    let built = gocd_dind::pod::build(&PodRequest {
        name,
        ownership: &owner,
        go_server_url: "https://127.0.0.1:8154/go",
        cluster: &cluster,
        elastic: &elastic,
        binding: Binding::Job {
            job: &JobIdentifier { job_id: job, ..JobIdentifier::default() },
            environment: None,
            auto_register_key: "baseline",
        },
        tls: Some(&gocd_dind::tls::mint(name)?),
    })?;
    Ok(json!({"apiVersion": "v1", "kind": "List", "items": [
        with_kind(serde_json::to_value(&built.pod)?, "Pod"),
        with_kind(serde_json::to_value(&built.secret)?, "Secret"),
    ]}))
}

fn with_kind(mut object: Value, kind: &str) -> Value {
    object["apiVersion"] = json!("v1");
    object["kind"] = json!(kind);
    object
}

fn agent_running(pod: Option<&Pod>) -> bool {
    let statuses = pod.and_then(|p| p.status.as_ref()).and_then(|s| s.container_statuses.as_ref());
    statuses.is_some_and(|all| {
        all.iter().any(|c| c.name == "agent" && c.state.as_ref().is_some_and(|s| s.running.is_some()))
    })
}

/// Waits until the pod and its Secret are gone from the API.
async fn gone(client: &kube::Client, pod: &str) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let secret = format!("{pod}-tls");
    if let Some(uid) = pods.get_opt(pod).await?.and_then(|p| p.metadata.uid) {
        await_condition(pods, pod, conditions::is_deleted(&uid)).await?;
    }
    if let Some(uid) = secrets.get_opt(&secret).await?.and_then(|s| s.metadata.uid) {
        await_condition(secrets, &secret, conditions::is_deleted(&uid)).await?;
    }
    Ok(())
}

async fn kubectl(args: &[&str]) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(local_cluster::kubeconfig())
        .args(args)
        .output()
        .await?;
    if !out.status.success() {
        bail!("kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
