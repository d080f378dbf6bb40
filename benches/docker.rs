//! The pod lifecycle on the local Docker Engine, the service against a baseline built with
//! bare `docker` commands (`benches/baseline-pod.sh`), measured side by side in one run.
//!
//!   cargo bench --bench docker          (GOCD_DIND_BENCH_RUNS=5 by default)
//!
//! Needs `bash .ci/docker-up.sh && bash .ci/build-test-images.sh`. For each run:
//! - create → ready: create-agent sent → the agent container started, which the service
//!   does only once dockerd answered over TLS inside the pod. Taken from the engine's own
//!   `start` event timestamp, so polling adds nothing. The baseline times the same span
//!   (mint TLS, volumes, dind, wait for dockerd over TLS, start the agent).
//! - teardown: job-completion sent → answered, which the service does once the pod's
//!   containers and volumes are gone (checked after, untimed). The baseline times
//!   `docker rm -f` + `docker volume rm`.
//!
//! - failure reported: create-agent sent → the failure in the job console, for a dind
//!   image without dockerd (it exits at once). The service stops probing when dind
//!   exits; the figure is set against the probe's budget, which it must stay well under.
//!
//! Service and baseline runs alternate (ABBA order) so drift on a shared, noisy machine
//! hits both; one warm-up of each is not counted. Target: service/baseline ≤ 1.10.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bollard::query_parameters::{ListContainersOptions, ListVolumesOptions};
use bollard::Docker;
use gocd_dind::clock::Clock;
use gocd_dind::demo::{create_agent_body, job_identifier, Harness};
use gocd_dind::pod::label_keys;
use gocd_dind::runtime::Runtimes;
use gocd_dind::service::ServiceOptions;
use serde_json::{json, Value};

#[allow(dead_code)] // shared by the pod benchmarks; each uses its part
mod side_by_side;

use side_by_side::{min_median, ms, Sample};

fn main() -> anyhow::Result<()> {
    let runs = side_by_side::runs()?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench(runs))
}

async fn bench(runs: usize) -> anyhow::Result<()> {
    let baseline = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/baseline-pod.sh");
    if !baseline.is_file() {
        bail!("{} is missing: the baseline is measured in the same run", baseline.display());
    }
    let hint = "no Docker Engine answers: run `bash .ci/docker-up.sh && bash .ci/build-test-images.sh`";
    let docker = Docker::connect_with_defaults().context(hint)?.negotiate_version().await.context(hint)?;
    let runtimes = Runtimes::new();
    let harness = Harness::start(Arc::new(runtimes), Clock::default(), ServiceOptions::default()).await?;
    let cluster = json!({
        "runtime": "docker",
        "go_server_url": "https://127.0.0.1:8154/go",
        "agent_image": "gocd-dind-test/agent:latest",
        "dind_image": "gocd-dind-test/dind:latest",
        "dind_security": "capabilities",
    });
    let first_job = side_by_side::first_job()?;

    println!("gocd-dind docker bench: {runs} runs of the service and of {} (1 warm-up each)", baseline.display());
    let (service, bare) = side_by_side::interleaved(
        runs,
        first_job,
        async |job| service_run(&docker, &harness, &cluster, job).await,
        async |_| baseline_run(&baseline).await,
    )
    .await?;
    side_by_side::report("create -> ready (ms)", "teardown (ms)", &service, &bare);

    let mut reported = Vec::new();
    for run in 0..runs {
        let job = first_job + 500 + i64::try_from(run)?;
        reported.push(failing_run(&harness, &cluster, job).await?);
    }
    let (min, median) = min_median(reported);
    println!(
        "\n  dind exiting at once -> failure in the job console: min {:.0} ms, median {:.0} ms (probe budget {} s)",
        ms(min),
        ms(median),
        PROBE_BUDGET.as_secs()
    );
    Ok(())
}

/// The startup probe's budget on Docker (period 1 s × 120 attempts, see
/// `runtime/docker/translate.rs`).
const PROBE_BUDGET: Duration = Duration::from_secs(120);

/// A pod whose dind has no dockerd (the plain Debian test image): create-agent sent → the
/// failure reported, which is when the service's background work has run.
async fn failing_run(harness: &Harness, cluster: &Value, job_id: i64) -> anyhow::Result<Duration> {
    let mut cluster = cluster.clone();
    cluster["dind_image"] = json!("gocd-dind-test/debian:bookworm");
    let sent = Instant::now();
    let (status, body) = harness.send("cd.go.elastic-agent.create-agent", &create_agent_body(&cluster, job_id)).await?;
    if status != 200 {
        bail!("create-agent answered {status}: {body}");
    }
    harness.service.settle().await;
    let took = sent.elapsed();
    if harness.service.last_failure(job_id).is_none() {
        bail!("a dind without dockerd did not fail; job console:\n{}", harness.gocd.console_text());
    }
    Ok(took)
}

fn label(key: &str, value: &str) -> String {
    format!("{key}={value}")
}

/// One pod through the service: create-agent → agent started, job-completion → answered.
async fn service_run(docker: &Docker, harness: &Harness, cluster: &Value, job_id: i64) -> anyhow::Result<Sample> {
    let body = create_agent_body(cluster, job_id);
    let (ready, pod) = side_by_side::create_until_agent_started(docker, harness, &body, job_id).await?;
    // The agent registers and works; GoCD then reports the job complete.
    harness.gocd.set_agent(&pod, "Idle", "Enabled");
    let completion = json!({"elastic_agent_id": pod, "job_identifier": job_identifier(job_id), "cluster_profile_properties": cluster, "elastic_agent_profile_properties": {}});
    let teardown_started = Instant::now();
    side_by_side::send_ok(harness, "cd.go.elastic-agent.job-completion", &completion).await?;
    let teardown = teardown_started.elapsed();
    let mine = HashMap::from([("label".to_owned(), vec![label(label_keys::POD, &pod)])]);
    let containers = docker
        .list_containers(Some(ListContainersOptions { all: true, filters: Some(mine.clone()), ..Default::default() }))
        .await?;
    let volumes =
        docker.list_volumes(Some(ListVolumesOptions { filters: Some(mine) })).await?.volumes.unwrap_or_default();
    if !containers.is_empty() || !volumes.is_empty() {
        bail!(
            "job-completion answered but {} containers and {} volumes of {pod} are left",
            containers.len(),
            volumes.len()
        );
    }
    Ok(Sample { ready, teardown })
}

/// One pod through `baseline-pod.sh --runs 1`, which times itself.
async fn baseline_run(script: &std::path::Path) -> anyhow::Result<Sample> {
    let output = tokio::process::Command::new("bash").arg(script).args(["--runs", "1"]).output().await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("{} failed ({}):\n{stdout}{}", script.display(), output.status, String::from_utf8_lossy(&output.stderr));
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with("run="))
        .with_context(|| format!("no run= line from the baseline:\n{stdout}"))?;
    let field = |name: &str| -> anyhow::Result<Duration> {
        let value = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .with_context(|| format!("no {name} in `{line}`"))?;
        Ok(Duration::from_millis(value.parse()?))
    };
    Ok(Sample { ready: field("create_to_ready_ms")?, teardown: field("teardown_ms")? })
}
