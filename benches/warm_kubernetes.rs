//! Warm pools on the local Kubernetes cluster: create-agent → the job's agent started, for
//! pods made for their job (cold) and for warm pods a job claims (warm), in one run.
//!
//!   cargo bench --bench warm_kubernetes     (GOCD_DIND_BENCH_JOBS=10 by default)
//!
//! Needs the local cluster (`bash .ci/k8s-up.sh`, GOCD_DIND_KUBECONFIG). As `--bench warm`
//! does on Docker: two elastic profiles (`WarmPoolSize = 0` and `= 2`), jobs in a row,
//! alternating, each completed and the service's background work finished before the next;
//! one warm-up job of each not counted. The figure is the service's own timeline of the
//! pod (its agent page): from create-agent's decision to the agent started, which is the
//! agent container running on the watch for a cold pod, and the claim's exec having handed
//! the waiting agent its key for a warm one.

#[path = "../tests/local_cluster.rs"]
#[allow(dead_code)] // shared with the tests; this uses its part
mod local_cluster;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use gocd_dind::clock::Clock;
use gocd_dind::demo::{job_identifier, Harness};
use gocd_dind::runtime::Runtimes;
use gocd_dind::service::journal::Stage;
use gocd_dind::service::ServiceOptions;
use serde_json::{json, Value};

#[allow(dead_code)] // shared by the pod benchmarks; each uses its part
mod side_by_side;

use side_by_side::{ms, p50_max};

fn main() -> anyhow::Result<()> {
    let jobs: usize =
        std::env::var("GOCD_DIND_BENCH_JOBS").ok().map_or(Ok(10), |r| r.parse()).context("GOCD_DIND_BENCH_JOBS")?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench(jobs.max(1)))
}

async fn bench(jobs: usize) -> anyhow::Result<()> {
    let profile = local_cluster::prepare();
    let harness = Harness::start(Arc::new(Runtimes::new()), Clock::default(), ServiceOptions::default()).await?;
    let cold = json!({"Environment": "BENCH_PROFILE=cold"});
    let warm = json!({"Environment": "BENCH_PROFILE=warm", "WarmPoolSize": "2"});
    let mut job = side_by_side::first_job()? + 700;
    println!(
        "gocd-dind warm-pool bench on the local Kubernetes cluster: {jobs} jobs of each, alternating (1 warm-up each)"
    );
    for elastic in [&cold, &warm] {
        job += 1;
        run_job(&harness, &profile, elastic, job).await.context("warm-up")?;
    }
    let (mut cold_starts, mut warm_starts) = (Vec::new(), Vec::new());
    println!("\n  {:>3}  {:>12}  {:>12}", "job", "cold ms", "warm ms");
    for n in 0..jobs {
        job += 2;
        let c = run_job(&harness, &profile, &cold, job).await?;
        let w = run_job(&harness, &profile, &warm, job + 1).await?;
        println!("  {:>3}  {:>12.1}  {:>12.1}", n + 1, ms(c), ms(w));
        cold_starts.push(c);
        warm_starts.push(w);
    }
    let (c50, cmax) = p50_max(cold_starts);
    let (w50, wmax) = p50_max(warm_starts);
    println!("\n  create-agent -> agent started (service's timeline)   {:>9} {:>9}", "p50 ms", "max ms");
    println!("  cold (pod made for the job)                          {:>9.1} {:>9.1}", ms(c50), ms(cmax));
    println!("  warm (pool of 2, pod claimed)                        {:>9.1} {:>9.1}", ms(w50), ms(wmax));
    println!("  cold / warm at p50: {:.1}x", ms(c50) / ms(w50));
    // The pools' pods go by their owner's labels.
    local_cluster::kubectl(&[
        "-n",
        local_cluster::NAMESPACE,
        "delete",
        "pods,secrets",
        "-l",
        &format!("gocd-dind.gocd.org/server-id={}", harness.gocd.server_id()),
        "--wait=false",
    ]);
    Ok(())
}

/// One job: create-agent, the pod's start (or claim) done, its timeline read, completion.
async fn run_job(h: &Harness, profile: &Value, elastic: &Value, job: i64) -> anyhow::Result<Duration> {
    let body = json!({
        "auto_register_key": uuid::Uuid::new_v4().to_string(),
        "elastic_agent_profile_properties": elastic,
        "cluster_profile_properties": profile,
        "job_identifier": job_identifier(job),
    });
    side_by_side::send_ok(h, "cd.go.elastic-agent.create-agent", &body).await?;
    h.service.settle().await;
    let request =
        serde_json::from_value(json!({"job_identifier": job_identifier(job), "cluster_profile_properties": profile}))?;
    let view = h.service.agent_view(&request).await;
    let story = view.story.with_context(|| format!("no pod for job {job}; console:\n{}", h.gocd.console_text()))?;
    let (Some(created), Some(started)) = (story.at(Stage::Created), story.at(Stage::AgentStarted)) else {
        bail!("job {job}'s pod has no agent start; console:\n{}", h.gocd.console_text());
    };
    let took = started.duration_since(created)?;
    side_by_side::complete(h, profile, elastic, &story.pod, job).await?;
    Ok(took)
}
