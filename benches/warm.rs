//! Warm pools on the local Docker Engine: create-agent → the job's agent container started,
//! for pods made for their job (cold) and for warm pods a job claims (warm), measured side
//! by side in one run.
//!
//!   cargo bench --bench warm            (GOCD_DIND_BENCH_JOBS=10 by default)
//!
//! Needs `bash .ci/docker-up.sh && bash .ci/build-test-images.sh`. Two elastic profiles on
//! one cluster profile: `WarmPoolSize = 0` (cold) and `WarmPoolSize = 2` (warm). Jobs run
//! one after another, cold and warm alternating so drift on a shared machine hits both;
//! each job's create-agent is sent, its agent container's `start` event taken from the
//! engine (its timestamp, so polling adds nothing), then its job-completion, then the
//! service's background work (a warm pool's replacement) is let finish before the next
//! job: jobs "in a row", as jobs that run longer than a pod takes to warm. One warm-up job
//! of each profile is not counted (it fills the pool). Goal: warm p50 ≤ 0.2 s and ≥ 6×
//! faster than cold.
//!
//! Then a job's first `docker run` of a ~117 MB image, pulled through the project's test
//! registry (`.ci/registry-up.sh`, which must be up) against pre-pulled into a claimed
//! warm pod (`PrePullImages`), up to 5 of each, alternating. Goal: ≥ 5× faster pre-pulled.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bollard::Docker;
use gocd_dind::clock::Clock;
use gocd_dind::demo::{job_identifier, Harness};
use gocd_dind::pod::label_keys;
use gocd_dind::runtime::Runtimes;
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
    let hint = "no Docker Engine answers: run `bash .ci/docker-up.sh && bash .ci/build-test-images.sh`";
    let docker = Docker::connect_with_defaults().context(hint)?.negotiate_version().await.context(hint)?;
    let harness = Harness::start(Arc::new(Runtimes::new()), Clock::default(), ServiceOptions::default()).await?;
    let cluster = json!({
        "runtime": "docker",
        "go_server_url": "https://127.0.0.1:8154/go",
        "agent_image": "gocd-dind-test/agent:latest",
        "dind_image": "gocd-dind-test/dind:latest",
        "dind_security": "capabilities",
    });
    // The profiles differ in more than their pool keys: profiles that build the same pods
    // share one pool (see docs/configuration.md#warm-pools).
    let cold = json!({"Environment": "BENCH_PROFILE=cold"});
    let warm = json!({"Environment": "BENCH_PROFILE=warm", "WarmPoolSize": "2"});
    let first_job = side_by_side::first_job()?;
    println!("gocd-dind warm-pool bench: {jobs} jobs of each profile in a row, alternating (1 warm-up each)");
    let mut job = first_job;
    for profile in [&cold, &warm] {
        job += 1;
        run_job(&docker, &harness, &cluster, profile, job).await.context("warm-up")?;
    }
    let (mut cold_starts, mut warm_starts) = (Vec::new(), Vec::new());
    println!("\n  {:>3}  {:>12}  {:>12}", "job", "cold ms", "warm ms");
    for n in 0..jobs {
        job += 2;
        let c = run_job(&docker, &harness, &cluster, &cold, job).await?;
        let w = run_job(&docker, &harness, &cluster, &warm, job + 1).await?;
        println!("  {:>3}  {:>12.1}  {:>12.1}", n + 1, ms(c), ms(w));
        cold_starts.push(c);
        warm_starts.push(w);
    }
    let (c50, cmax) = p50_max(cold_starts);
    let (w50, wmax) = p50_max(warm_starts);
    println!("\n  create-agent -> agent container started   {:>9} {:>9}", "p50 ms", "max ms");
    println!("  cold (pod made for the job)              {:>9.1} {:>9.1}", ms(c50), ms(cmax));
    println!("  warm (pool of 2, pod claimed)            {:>9.1} {:>9.1}", ms(w50), ms(wmax));
    println!("  cold / warm at p50: {:.1}x", ms(c50) / ms(w50));
    println!("  goal: warm p50 <= 200 ms and >= 6x faster than cold");
    first_runs(&docker, &harness, &cluster, job + 10, jobs.min(5)).await?;
    let console = harness.gocd.console_text();
    let claims = console.matches("Claimed warm pod").count();
    let expected = jobs + jobs.min(5);
    println!("\n  claims told in job consoles: {claims} (one per counted warm and pre-pulled job: {expected})");
    if claims != expected {
        bail!("expected a claim for every warm job, saw {claims}:\n{console}");
    }
    // Nothing of the bench stays: the pool's pods go once nobody asks (server-ping after
    // their idle time); remove them now by their owner's labels.
    drain(&docker, &harness.gocd.server_id()).await
}

/// A job's first `docker run` of the ~117 MB test image (`gocd-dind-test/job:1` on the
/// project's registry, `.ci/registry-up.sh`, pulled through its mirror): in a pod made for
/// the job (it pulls) and in a claimed warm pod that pre-pulled it. Timed around the
/// exec of `docker run` in the agent, which both sides pay.
async fn first_runs(
    docker: &Docker,
    harness: &Harness,
    cluster: &Value,
    first_job: i64,
    runs: usize,
) -> anyhow::Result<()> {
    let mirror = registry_mirror(docker).await?;
    let mut cluster = cluster.clone();
    cluster["registry_mirror"] = json!(mirror);
    let image = "gocd-dind-test/job:1";
    let pulls = json!({"Environment": "BENCH_PROFILE=pull"});
    let prepulled = json!({"Environment": "BENCH_PROFILE=prepulled", "WarmPoolSize": "1", "PrePullImages": image});
    let mut job = first_job;
    // Warm-up: fills the pre-pulling pool; not counted.
    run_job(docker, harness, &cluster, &prepulled, job).await?;
    println!(
        "
  a job's first `docker run {image}` (~117 MB), through the mirror at {mirror}"
    );
    println!("  {:>3}  {:>14}  {:>14}", "run", "pulls ms", "pre-pulled ms");
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for n in 0..runs {
        job += 2;
        let c = first_run(docker, harness, &cluster, &pulls, job, image).await?;
        let w = first_run(docker, harness, &cluster, &prepulled, job + 1, image).await?;
        println!("  {:>3}  {:>14.0}  {:>14.0}", n + 1, ms(c), ms(w));
        cold.push(c);
        warm.push(w);
    }
    let (c50, cmax) = p50_max(cold);
    let (w50, wmax) = p50_max(warm);
    println!("  {:<38} {:>9} {:>9}", "", "p50 ms", "max ms");
    println!("  {:<38} {:>9.0} {:>9.0}", "without PrePullImages (pulls)", ms(c50), ms(cmax));
    println!("  {:<38} {:>9.0} {:>9.0}", "with PrePullImages (claimed warm pod)", ms(w50), ms(wmax));
    println!("  pulling / pre-pulled at p50: {:.1}x (goal >= 5x)", ms(c50) / ms(w50));
    Ok(())
}

/// One job whose first act is `docker run IMAGE true`: its duration.
async fn first_run(
    docker: &Docker,
    harness: &Harness,
    cluster: &Value,
    elastic: &Value,
    job_id: i64,
    image: &str,
) -> anyhow::Result<Duration> {
    let body = json!({
        "auto_register_key": uuid::Uuid::new_v4().to_string(),
        "elastic_agent_profile_properties": elastic,
        "cluster_profile_properties": cluster,
        "job_identifier": job_identifier(job_id),
    });
    side_by_side::send_ok(harness, "cd.go.elastic-agent.create-agent", &body).await?;
    harness.service.settle().await;
    let pod = harness.service.pod_of_job(job_id).context("the job has no pod")?.info.name;
    let agent = format!("{pod}-agent");
    let started = std::time::Instant::now();
    let (code, output) =
        gocd_dind::runtime::docker::exec(docker, &agent, None, &["docker", "run", "--rm", image, "true"]).await?;
    let took = started.elapsed();
    if code != 0 {
        bail!("docker run {image} in {pod} exited {code}: {output}");
    }
    side_by_side::complete(harness, cluster, elastic, &pod, job_id).await?;
    Ok(took)
}

/// The test registry's mirror, as pods on the engine's bridge reach it.
async fn registry_mirror(docker: &Docker) -> anyhow::Result<String> {
    let hint = "the test registry is not running: run `bash .ci/registry-up.sh`";
    let inspected = docker.inspect_container("gocd-dind-test-mirror", None).await.context(hint)?;
    let networks = inspected.network_settings.and_then(|n| n.networks).unwrap_or_default();
    let ip = networks.values().find_map(|e| e.ip_address.clone().filter(|ip| !ip.is_empty())).context(hint)?;
    Ok(format!("http://{ip}:5000"))
}

/// One job: create-agent → its agent container's `start` event; job-completion; the
/// service's background work finished.
async fn run_job(
    docker: &Docker,
    harness: &Harness,
    cluster: &Value,
    elastic: &Value,
    job_id: i64,
) -> anyhow::Result<Duration> {
    let body = json!({
        "auto_register_key": uuid::Uuid::new_v4().to_string(),
        "elastic_agent_profile_properties": elastic,
        "cluster_profile_properties": cluster,
        "job_identifier": job_identifier(job_id),
    });
    let (took, pod) = side_by_side::create_until_agent_started(docker, harness, &body, job_id).await?;
    side_by_side::complete(harness, cluster, elastic, &pod, job_id).await?;
    Ok(took)
}

async fn drain(docker: &Docker, server_id: &str) -> anyhow::Result<()> {
    use bollard::query_parameters::{
        ListContainersOptions, ListVolumesOptions, RemoveContainerOptions, RemoveVolumeOptions,
    };
    let filters = HashMap::from([("label".to_owned(), vec![format!("{}={server_id}", label_keys::SERVER_ID)])]);
    let options = ListContainersOptions { all: true, filters: Some(filters.clone()), ..Default::default() };
    for c in docker.list_containers(Some(options)).await? {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        docker.remove_container(&c.id.unwrap_or_default(), Some(options)).await?;
    }
    for v in docker.list_volumes(Some(ListVolumesOptions { filters: Some(filters) })).await?.volumes.unwrap_or_default()
    {
        docker.remove_volume(&v.name, Some(RemoveVolumeOptions { force: true })).await?;
    }
    Ok(())
}
