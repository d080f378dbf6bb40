//! A stand-in for GoCD's side of the processor bridge, on loopback: it answers the
//! service's calls the way GoCD does and records them. Used by `gocd-dind demo` (which
//! plays GoCD on a machine without one) and by the tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::protocol::AgentMetadata;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub api: String,
    pub version: String,
    pub body: String,
}

#[derive(Debug, Default)]
struct Gocd {
    calls: Vec<Call>,
    agents: BTreeMap<String, AgentMetadata>,
    failing: bool,
}

#[derive(Clone)]
struct Shared {
    gocd: Arc<Mutex<Gocd>>,
    token: String,
    /// Each fake GoCD is its own server, so concurrent test runs on one engine own
    /// different pods.
    server_id: Arc<Mutex<String>>,
    /// Counts the calls received: [`FakeGocd::wait_until`] wakes on each.
    received: Arc<tokio::sync::watch::Sender<usize>>,
}

pub struct FakeGocd {
    pub url: String,
    shared: Shared,
    stop: CancellationToken,
}

impl FakeGocd {
    pub async fn start(token: &str) -> std::io::Result<Self> {
        let server_id = format!("fake-gocd-{}", uuid::Uuid::new_v4().simple());
        let shared = Shared {
            gocd: Arc::default(),
            token: token.to_owned(),
            server_id: Arc::new(Mutex::new(server_id)),
            received: Arc::new(tokio::sync::watch::Sender::new(0)),
        };
        let router = Router::new().route("/processor/{api}", post(processor)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let stop = CancellationToken::new();
        let until = stop.clone().cancelled_owned();
        tokio::spawn(async move { axum::serve(listener, router).with_graceful_shutdown(until).await });
        Ok(Self { url, shared, stop })
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.gocd.lock().unwrap().calls.clone()
    }

    pub fn calls_to(&self, api: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.api == api).collect()
    }

    /// Waits until `check` holds, looking again after each call the service makes: a
    /// test waits for the call it expects, not for a while.
    pub async fn wait_until(&self, check: impl Fn(&Self) -> bool) {
        let mut received = self.shared.received.subscribe();
        while !check(self) {
            received.changed().await.expect("the sender lives as long as self");
        }
    }

    /// What the service wrote into job consoles.
    pub fn console_text(&self) -> String {
        self.calls_to("go.processor.console-log.append")
            .iter()
            .filter_map(|c| serde_json::from_str::<Value>(&c.body).ok())
            .filter_map(|v| v["text"].as_str().map(str::to_owned))
            .collect()
    }

    /// An agent registers (or changes state), as GoCD would report it.
    pub fn set_agent(&self, agent_id: &str, agent_state: &str, config_state: &str) {
        let build_state = if agent_state == "Building" { "Building" } else { "Idle" };
        self.shared.gocd.lock().unwrap().agents.insert(
            agent_id.to_owned(),
            AgentMetadata {
                agent_id: agent_id.into(),
                agent_state: agent_state.into(),
                build_state: build_state.into(),
                config_state: config_state.into(),
            },
        );
    }

    pub fn server_id(&self) -> String {
        self.shared.server_id.lock().unwrap().clone()
    }

    /// Plays the same GoCD server as another fake (a GoCD restart keeps its id).
    pub fn set_server_id(&self, server_id: &str) {
        server_id.clone_into(&mut self.shared.server_id.lock().unwrap());
    }

    pub fn agents(&self) -> Vec<AgentMetadata> {
        self.shared.gocd.lock().unwrap().agents.values().cloned().collect()
    }

    /// Every call fails with 500 while set, as when GoCD is restarting.
    pub fn set_failing(&self, failing: bool) {
        self.shared.gocd.lock().unwrap().failing = failing;
    }
}

impl Drop for FakeGocd {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn processor(
    State(shared): State<Shared>,
    Path(api): Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let authorized =
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {}", shared.token));
    if !authorized {
        return (StatusCode::UNAUTHORIZED, r#"{"message":"bad token"}"#.into());
    }
    let version = headers.get("x-gocd-api-version").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mut gocd = shared.gocd.lock().unwrap();
    gocd.calls.push(Call { api: api.clone(), version, body: body.clone() });
    shared.received.send_modify(|n| *n += 1);
    if gocd.failing {
        return (StatusCode::INTERNAL_SERVER_ERROR, r#"{"message":"GoCD is unavailable"}"#.into());
    }
    let ids = || -> Vec<String> {
        serde_json::from_str::<Vec<Value>>(&body)
            .unwrap_or_default()
            .iter()
            .filter_map(|a| a["agent_id"].as_str().map(str::to_owned))
            .collect()
    };
    match api.as_str() {
        "go.processor.server-info.get" => (
            StatusCode::OK,
            format!(
                r#"{{"server_id":"{}","site_url":"http://127.0.0.1:8153/go","secure_site_url":"https://127.0.0.1:8154/go"}}"#,
                shared.server_id.lock().unwrap()
            ),
        ),
        "go.processor.elastic-agents.list-agents" => {
            (StatusCode::OK, serde_json::to_string(&gocd.agents.values().collect::<Vec<_>>()).unwrap())
        }
        "go.processor.elastic-agents.disable-agents" => {
            for id in ids() {
                if let Some(agent) = gocd.agents.get_mut(&id) {
                    agent.config_state = "Disabled".into();
                }
            }
            (StatusCode::OK, String::new())
        }
        "go.processor.elastic-agents.delete-agents" => {
            for id in ids() {
                gocd.agents.remove(&id);
            }
            (StatusCode::OK, String::new())
        }
        "go.processor.server-health.add-messages" | "go.processor.console-log.append" => {
            (StatusCode::OK, String::new())
        }
        _ => (StatusCode::NOT_FOUND, format!(r#"{{"message":"unknown api {api}"}}"#)),
    }
}
