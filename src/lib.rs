//! gocd-dind: GoCD elastic agents that each own a private Docker daemon.
//!
//! GoCD calls a thin Java shim, which forwards every elastic-agent v5 request over HTTP
//! to this service. For each job the service starts an agent pod (a GoCD agent plus its
//! own dockerd, mutual TLS on the pod's loopback) and removes it when the job completes.
//!
//! # Layout
//!
//! - [`config`]: command line and environment (clap).
//! - [`http`]: the router: auth, body limit, errors as JSON, health, metrics.
//! - [`plugin`]: one GoCD request in, one answer out (profiles, views, reports).
//! - [`protocol`]: GoCD's wire types and request names.
//! - [`settings`]: cluster and elastic profiles, parsed and validated.
//! - [`service`]: state, and the effects of the rules.
//! - [`agents`]: the GoCD rules as pure functions over snapshots ([`listing`]: a pod as
//!   a runtime lists it).
//! - [`pod`], [`tls`]: the agent pod and its per-pod certificates, as pure code.
//! - [`runtime`]: the narrow port to Docker Engine and Kubernetes (and an in-memory fake).
//! - [`processor`]: calls back into GoCD through the shim's processor bridge.
//! - [`doctor`]: `gocd-dind doctor`, which checks a place where pods would run.
//! - [`dockerd_log`]: dockerd's log read for its warnings and errors (the status pages).

pub mod agents;
pub mod clock;
pub mod config;
pub mod demo;
pub mod dockerd_log;
pub mod doctor;
pub mod error;
pub mod fake_gocd;
pub mod http;
pub mod listing;
pub mod metrics;
pub mod plugin;
pub mod pod;
pub mod processor;
pub mod protocol;
pub mod runtime;
pub mod service;
pub mod settings;
pub mod tls;

use std::future::Future;

use tokio::net::TcpListener;

/// Serves `router` until `shutdown` completes; tests bind `127.0.0.1:0` and pass their
/// own shutdown.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
