//! The HTTP face of the service (docs/protocol.md, "Service HTTP contract"): GoCD's
//! requests as forwarded by the shim, health and readiness probes, and metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::error::Error;
use crate::metrics::{RequestLabels, RequestName as NameLabel};
use crate::protocol::RequestName;
use crate::service::Service;

/// GoCD's largest bodies are migrate-config and server-ping with every profile; a
/// megabyte leaves room for hundreds of profiles.
pub const BODY_LIMIT: usize = 1 << 20;

#[derive(Clone)]
struct AppState {
    service: Arc<Service>,
    token_digest: Arc<[u8]>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        (self.status(), Json(json!({"message": self.to_string()}))).into_response()
    }
}

pub fn router(service: Arc<Service>, token: &str) -> Router {
    let state = AppState { service, token_digest: digest(token.as_bytes()).into() };
    let gocd = Router::new()
        .route("/gocd/elastic-agent/{request}", post(gocd_request))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(gocd)
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({"message": "no such route: GoCD requests go to POST /gocd/elastic-agent/{request-name}"})),
            )
        })
        .with_state(state)
}

fn digest(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().to_vec()
}

/// Compares digests in constant time, so neither the token nor its length leaks
/// through timing.
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|token| digest(token.trim().as_bytes()));
    match given {
        Some(d) if bool::from(d.ct_eq(&state.token_digest)) => next.run(request).await,
        _ => Error::Unauthorized.into_response(),
    }
}

async fn gocd_request(
    State(state): State<AppState>,
    Path(name): Path<String>,
    _headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let known = name.parse::<RequestName>().ok();
    let result = match (known, body) {
        (None, _) => Err(Error::UnknownRequest(name.chars().take(100).collect())),
        (Some(_), Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(Error::TooLarge { limit: BODY_LIMIT })
        }
        (Some(_), Err(rejection)) => Err(Error::BadRequest(rejection.body_text())),
        (Some(request), Ok(body)) => crate::plugin::handle(&state.service, request, &body).await,
    };
    let response = match result {
        Ok(value) => (StatusCode::OK, Json(value)).into_response(),
        Err(error) => {
            if !matches!(error, Error::Internal(_)) {
                tracing::warn!(request = %name, status = error.status().as_u16(), %error, "request refused");
            }
            error.into_response()
        }
    };
    let label = known.map_or("unknown", RequestName::as_str).to_owned();
    let metrics = &state.service.metrics;
    metrics.requests.get_or_create(&RequestLabels { request: label.clone(), status: response.status().as_u16() }).inc();
    metrics.request_seconds.get_or_create(&NameLabel { request: label }).observe(started.elapsed().as_secs_f64());
    response
}

/// The engines of live cluster profiles, asked at once, each briefly: see
/// `Service::readiness`.
async fn ready(State(state): State<AppState>) -> Response {
    let (problems, clusters) = state.service.readiness().await;
    if problems.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ready", "clusters": clusters}))).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unready", "problems": problems}))).into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.service.metrics_text(),
    )
        .into_response()
}
