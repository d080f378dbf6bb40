use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use gocd_dind::clock::Clock;
use gocd_dind::config::{Cli, Command, HealthcheckArgs, LogFormat, ServeArgs};
use gocd_dind::processor::ProcessorClient;
use gocd_dind::runtime::Runtimes;
use gocd_dind::service::postmortem::PostmortemLog;
use gocd_dind::service::{Service, ServiceOptions};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("GOCD_DIND_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    match cli.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init(),
        LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::io::stderr).init(),
    }
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Demo(args) => gocd_dind::demo::run(args).await,
        Command::Healthcheck(args) => healthcheck(&args).await,
        Command::Doctor(args) => std::process::exit(gocd_dind::doctor::cli(&args).await),
    }
}

async fn healthcheck(args: &HealthcheckArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(Duration::from_millis(args.timeout_ms)).build()?;
    let response = client.get(&args.url).send().await.with_context(|| format!("no answer from {}", args.url))?;
    anyhow::ensure!(response.status().is_success(), "{} answered {}", args.url, response.status());
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let token = args.token()?;
    // Before anything is announced: a SIGTERM that arrives as soon as the service says
    // it serves must drain, not kill the process with the default action.
    let shutdown = shutdown_signal()?;
    let clock = Clock::default();
    let (runtimes, options) = runtimes(&args, &clock);
    let service = Service::new(Arc::new(runtimes), ProcessorClient::new(&args.processor_url, &token), clock, options);
    if let Some(path) = &args.postmortem_log {
        let log = PostmortemLog::open(path).with_context(|| {
            format!("cannot append to {} (GOCD_DIND_POSTMORTEM_LOG, --postmortem-log)", path.display())
        })?;
        service.write_postmortems_to(log);
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (GOCD_DIND_LISTEN)", args.listen))?;
    tracing::info!(listen = %args.listen, processor = %args.processor_url, "gocd-dind serving");
    gocd_dind::serve(listener, gocd_dind::http::router(service.clone(), &token), shutdown).await?;
    service.drain(Duration::from_secs(args.shutdown_grace)).await;
    tracing::info!("stopped");
    Ok(())
}

/// The real runtimes; in test builds, also the in-memory one when asked for.
#[cfg(feature = "test-doubles")]
fn runtimes(args: &ServeArgs, clock: &Clock) -> (Runtimes, ServiceOptions) {
    let allow = args.allow_memory_runtime;
    let runtimes = if allow {
        Runtimes::with_memory(gocd_dind::runtime::memory::MemoryRuntime::new(clock.clone()))
    } else {
        Runtimes::new()
    };
    (runtimes, ServiceOptions { allow_memory_runtime: allow })
}

#[cfg(not(feature = "test-doubles"))]
fn runtimes(_args: &ServeArgs, _clock: &Clock) -> (Runtimes, ServiceOptions) {
    (Runtimes::new(), ServiceOptions::default())
}

/// Installs the SIGTERM and SIGINT handlers now; the future completes at either signal.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("shutting down");
    })
}
