//! What the pod benchmarks share: one pod's two figures, the run count, runs of the
//! service and of its baseline interleaved (ABBA, so drift on a shared, noisy machine hits
//! both), the min/median table with ratios against the baseline, medians and maxima, and
//! the steps of a job through the service (create-agent until the engine starts its
//! agent, job-completion).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures_util::StreamExt;
use gocd_dind::demo::{job_identifier, Harness};
use gocd_dind::pod::label_keys;
use serde_json::{json, Value};

/// One pod: created until its agent started, and torn down until gone.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub ready: Duration,
    pub teardown: Duration,
}

/// `GOCD_DIND_BENCH_RUNS`, 5 by default. (`cargo bench` passes `--bench`: nothing to filter.)
pub fn runs() -> anyhow::Result<usize> {
    let runs: usize =
        std::env::var("GOCD_DIND_BENCH_RUNS").ok().map_or(Ok(5), |r| r.parse()).context("GOCD_DIND_BENCH_RUNS")?;
    Ok(runs.max(1))
}

/// Job ids no earlier run used.
pub fn first_job() -> anyhow::Result<i64> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    Ok(i64::try_from(now.as_secs() % 1_000_000_000)? * 1000)
}

/// One warm-up of each, then `runs` of each, interleaved, printing a row per run.
pub async fn interleaved(
    runs: usize,
    first_job: i64,
    mut service: impl AsyncFnMut(i64) -> anyhow::Result<Sample>,
    mut baseline: impl AsyncFnMut(i64) -> anyhow::Result<Sample>,
) -> anyhow::Result<(Vec<Sample>, Vec<Sample>)> {
    service(first_job).await.context("service warm-up")?;
    baseline(first_job).await.context("baseline warm-up")?;
    println!(
        "\n  {:>3}  {:>18}  {:>18}  {:>18}  {:>18}",
        "run", "service ready ms", "baseline ready ms", "service teardown", "baseline teardown"
    );
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let job = first_job + 1 + i64::try_from(run)?;
        let (s, b) = if run % 2 == 0 {
            let s = service(job).await?;
            (s, baseline(job).await?)
        } else {
            let b = baseline(job).await?;
            (service(job).await?, b)
        };
        println!(
            "  {:>3}  {:>18.0}  {:>18.0}  {:>18.0}  {:>18.0}",
            run + 1,
            ms(s.ready),
            ms(b.ready),
            ms(s.teardown),
            ms(b.teardown)
        );
        ours.push(s);
        theirs.push(b);
    }
    Ok((ours, theirs))
}

/// The table: min and median of each side, and their ratios (target ≤ 1.10).
pub fn report(ready: &str, teardown: &str, service: &[Sample], baseline: &[Sample]) {
    println!(
        "\n  {:<40} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "", "svc min", "svc med", "base min", "base med", "ratio min", "ratio med"
    );
    for (what, pick) in
        [(ready, (|s: &Sample| s.ready) as fn(&Sample) -> Duration), (teardown, |s: &Sample| s.teardown)]
    {
        let (s_min, s_med) = min_median(service.iter().map(pick).collect());
        let (b_min, b_med) = min_median(baseline.iter().map(pick).collect());
        println!(
            "  {what:<40} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.2} {:>9.2}",
            ms(s_min),
            ms(s_med),
            ms(b_min),
            ms(b_med),
            ms(s_min) / ms(b_min),
            ms(s_med) / ms(b_med)
        );
    }
    println!("\n  target: ratio (service / baseline) <= 1.10");
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn min_median(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let n = samples.len();
    let median = if n % 2 == 1 { samples[n / 2] } else { (samples[n / 2 - 1] + samples[n / 2]) / 2 };
    (samples[0], median)
}

/// The median and the largest of `samples`.
pub fn p50_max(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let n = samples.len();
    let median = if n % 2 == 1 { samples[n / 2] } else { (samples[n / 2 - 1] + samples[n / 2]) / 2 };
    (median, samples[n - 1])
}

/// Sends `request` with `body` to the service; an error unless it answers 200.
pub async fn send_ok(harness: &Harness, request: &str, body: &Value) -> anyhow::Result<()> {
    let (status, answer) = harness.send(request, body).await?;
    if status != 200 {
        anyhow::bail!("{request} answered {status}: {answer}");
    }
    Ok(())
}

/// The job's agent registers and works, GoCD reports the job complete, and the service's
/// background work (a warm pool's replacement) is let finish.
pub async fn complete(
    harness: &Harness,
    cluster: &Value,
    elastic: &Value,
    pod: &str,
    job_id: i64,
) -> anyhow::Result<()> {
    harness.gocd.set_agent(pod, "Idle", "Enabled");
    let completion = json!({"elastic_agent_id": pod, "job_identifier": job_identifier(job_id), "cluster_profile_properties": cluster, "elastic_agent_profile_properties": elastic});
    send_ok(harness, "cd.go.elastic-agent.job-completion", &completion).await?;
    harness.service.settle().await;
    Ok(())
}

/// Sends create-agent (`body`, for job `job_id`) and waits for the engine's `start` event
/// of the job's agent container: the time from sending to that event (by the event's own
/// timestamp, so listening adds nothing) and the pod's name. The event is replayed from
/// just before sending, so one that comes before the stream is read is not missed.
pub async fn create_until_agent_started(
    docker: &Docker,
    harness: &Harness,
    body: &Value,
    job_id: i64,
) -> anyhow::Result<(Duration, String)> {
    let since = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let filters = HashMap::from([
        ("type".to_owned(), vec!["container".to_owned()]),
        ("event".to_owned(), vec!["start".to_owned()]),
        (
            "label".to_owned(),
            vec![format!("{}={job_id}", label_keys::JOB_ID), format!("{}=agent", label_keys::CONTAINER)],
        ),
    ]);
    let options =
        EventsOptions { since: Some((since.as_secs() - 1).to_string()), filters: Some(filters), ..Default::default() };
    let mut events = docker.events(Some(options));
    let sent = SystemTime::now();
    send_ok(harness, "cd.go.elastic-agent.create-agent", body).await?;
    let event = tokio::time::timeout(Duration::from_secs(180), events.next())
        .await
        .map_err(|_| anyhow::anyhow!("no agent started within 180 s; job console:\n{}", harness.gocd.console_text()))?
        .context("the engine's event stream ended")??;
    let started_ns = u128::try_from(event.time_nano.context("event without a time")?)?;
    let took =
        Duration::from_nanos(u64::try_from(started_ns.saturating_sub(sent.duration_since(UNIX_EPOCH)?.as_nanos()))?);
    let pod = event
        .actor
        .and_then(|a| a.attributes)
        .and_then(|a| a.get(label_keys::POD).cloned())
        .context("the agent's start event carries no pod label")?;
    Ok((took, pod))
}
