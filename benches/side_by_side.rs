//! What the pod benchmarks share: one pod's two figures, the run count, runs of the
//! service and of its baseline interleaved (ABBA, so drift on a shared, noisy machine hits
//! both), and the min/median table with ratios against the baseline.

use std::time::Duration;

use anyhow::Context;

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
