//! Shared test helpers: fixtures, an in-memory service behind the real router.

use std::path::PathBuf;
use std::sync::Arc;

use gocd_dind::clock::Clock;
use gocd_dind::demo::Harness;
use gocd_dind::runtime::memory::{MemoryProvider, MemoryRuntime};
use gocd_dind::service::ServiceOptions;
use serde_json::Value;

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/requests")
}

/// Every fixture as (request name, file name, body); an empty file is a request without
/// a body.
pub fn fixtures() -> Vec<(String, String, String)> {
    let mut all: Vec<_> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures directory")
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| std::path::Path::new(name).extension().is_some_and(|e| e == "json"))
        .map(|file| {
            let request = file.trim_end_matches(".json").split('+').next().unwrap().to_owned();
            let body = std::fs::read_to_string(fixtures_dir().join(&file)).unwrap();
            (request, file, body)
        })
        .collect();
    all.sort();
    all
}

pub fn fixture(file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures_dir().join(file)).unwrap()).unwrap()
}

/// A cluster profile on the in-memory runtime, with `overrides` applied.
pub fn memory_cluster(overrides: &[(&str, &str)]) -> Value {
    let mut cluster = serde_json::json!({"runtime": "memory", "go_server_url": "https://gocd.example.com/go", "agent_image": "gocd/gocd-agent-wolfi:v25.4.0"});
    for (k, v) in overrides {
        cluster[*k] = Value::String((*v).to_owned());
    }
    cluster
}

pub struct MemoryHarness {
    pub harness: Harness,
    pub runtime: Arc<MemoryRuntime>,
    pub clock: Clock,
}

pub async fn memory_harness() -> MemoryHarness {
    let clock = Clock::default();
    service_over(MemoryRuntime::new(clock.clone()), clock).await
}

async fn service_over(runtime: Arc<MemoryRuntime>, clock: Clock) -> MemoryHarness {
    let harness = Harness::start(
        Arc::new(MemoryProvider::new(runtime.clone())),
        clock.clone(),
        ServiceOptions { allow_memory_runtime: true },
    )
    .await
    .expect("harness starts");
    MemoryHarness { harness, runtime, clock }
}

impl MemoryHarness {
    /// Another service of the same GoCD server over the same runtime and clock, with
    /// empty memory: a restarted service, or a second replica beside this one.
    pub async fn another_service(&self) -> MemoryHarness {
        let other = service_over(self.runtime.clone(), self.clock.clone()).await;
        other.harness.gocd.set_server_id(&self.harness.gocd.server_id());
        other
    }
}

pub use crate::local_cluster::{AGENT_IMAGE, DIND_IMAGE, JOB_IMAGE};
pub const JOB_IMAGE_TAR: &str = "/var/cache/gocd-dind/debian-bookworm.tar";

/// The engine and the test images, or a panic that says how to get them: Docker tests
/// fail without Docker, they never skip.
pub async fn docker() -> bollard::Docker {
    let how = "run `bash .ci/docker-up.sh && bash .ci/build-test-images.sh` (as root) first";
    let docker = bollard::Docker::connect_with_defaults()
        .unwrap_or_else(|e| panic!("Docker end-to-end tests need a Docker Engine ({e}); {how}"));
    let docker = docker.negotiate_version().await.unwrap_or_else(|e| {
        panic!("Docker end-to-end tests need a Docker Engine, and none answers at the default socket ({e}); {how}")
    });
    for image in [AGENT_IMAGE, DIND_IMAGE, JOB_IMAGE] {
        if let Err(e) = docker.inspect_image(image).await {
            panic!("test image {image} is missing ({e}); {how}");
        }
    }
    assert!(std::path::Path::new(JOB_IMAGE_TAR).is_file(), "{JOB_IMAGE_TAR} is missing; {how}");
    docker
}

/// `gocd-dind serve` as operators run it, on a free port of loopback. Its log is read as
/// it is written: [`Served::start`] returns when the log says the service listens, and
/// fails with the log when the process exits first. Killed when dropped.
pub struct Served {
    pub child: tokio::process::Child,
    pub url: String,
    pub token: String,
    log: Arc<std::sync::Mutex<String>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Served {
    pub async fn start(processor_url: &str, token: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_gocd-dind"));
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--processor-url", processor_url])
            .args(extra)
            .env("GOCD_DIND_TOKEN", token)
            .env_remove("GOCD_DIND_TOKEN_FILE")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("the binary starts");
        let log = Arc::new(std::sync::Mutex::new(String::new()));
        let (listening, serving) = tokio::sync::oneshot::channel();
        let reader = tokio::spawn(read_log(child.stderr.take().unwrap(), log.clone(), listening));
        let served = Self { child, url: format!("http://127.0.0.1:{port}"), token: token.to_owned(), log, reader };
        assert!(serving.await.is_ok(), "gocd-dind serve exited without serving; log:\n{}", served.log_text());
        served
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub async fn send(&self, request: &str, body: &Value) -> (u16, String) {
        let response = reqwest::Client::new()
            .post(format!("{}/gocd/elastic-agent/{request}", self.url))
            .bearer_auth(&self.token)
            .body(if body.is_null() { String::new() } else { body.to_string() })
            .send()
            .await
            .unwrap_or_else(|e| panic!("{request}: gocd-dind serve did not answer ({e}); log:\n{}", self.log_text()));
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// SIGTERM, then the exit (which must be clean); returns everything it logged.
    pub async fn terminate(mut self) -> String {
        let pid = self.child.id().expect("still running").to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = self.child.wait().await.unwrap();
        // The log ends when the process does.
        (&mut self.reader).await.unwrap();
        let log = self.log_text();
        assert!(status.success(), "exit {status} after SIGTERM:\n{log}");
        log
    }
}

/// Collects the log line by line; says when the service listens.
async fn read_log(
    stderr: tokio::process::ChildStderr,
    log: Arc<std::sync::Mutex<String>>,
    listening: tokio::sync::oneshot::Sender<()>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut listening = Some(listening);
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let serving = line.contains("gocd-dind serving");
        let mut text = log.lock().unwrap();
        text.push_str(&line);
        text.push('\n');
        drop(text);
        if serving {
            if let Some(listening) = listening.take() {
                let _ = listening.send(());
            }
        }
    }
}

/// The pod a job's console names: the first line the service writes for a pod is
/// `Creating agent pod <name> on …`.
pub fn pod_in_console(console: &str) -> String {
    let after =
        console.split("Creating agent pod ").nth(1).unwrap_or_else(|| panic!("no pod in the console:\n{console}"));
    after.split_whitespace().next().expect("a pod name").to_owned()
}

/// The project's test registries on the local engine (`.ci/registry-up.sh`): addresses as
/// pods on the engine's default bridge reach them, and the origin's on the host's
/// loopback. Tests that need them fail, never skip, without them.
pub struct TestRegistry {
    /// `IP:5000`: push and pull with `insecure_registries` set to it.
    pub origin: String,
    /// `http://IP:5000`: a pull-through mirror of the origin, for `registry_mirror`.
    pub mirror: String,
}

pub async fn registry(docker: &bollard::Docker) -> TestRegistry {
    let how = "run `bash .ci/registry-up.sh` (as root) first";
    let address = |name: &'static str| async move {
        let inspected = docker
            .inspect_container(name, None)
            .await
            .unwrap_or_else(|e| panic!("test registry container {name} is missing ({e}); {how}"));
        assert_eq!(inspected.state.and_then(|s| s.running), Some(true), "{name} is not running; {how}");
        let networks = inspected.network_settings.and_then(|n| n.networks).unwrap_or_default();
        let ip = networks.values().find_map(|e| e.ip_address.clone().filter(|ip| !ip.is_empty())).unwrap_or_default();
        assert!(!ip.is_empty(), "{name} has no bridge address; {how}");
        format!("{ip}:5000")
    };
    TestRegistry {
        origin: address("gocd-dind-test-registry").await,
        mirror: format!("http://{}", address("gocd-dind-test-mirror").await),
    }
}
