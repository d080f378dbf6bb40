//! The `gocd-dind` binary as operators run it: configuration errors, graceful shutdown,
//! and logs that never carry a secret.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gocd_dind::fake_gocd::FakeGocd;
use serde_json::json;

const BINARY: &str = env!("CARGO_BIN_EXE_gocd-dind");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Served {
    pub child: Child,
    pub url: String,
    pub token: String,
}

/// Starts `gocd-dind serve` on a free port and waits for `/healthz`.
pub async fn serve(processor_url: &str, token: &str, extra: &[&str], env: &[(&str, &str)]) -> Served {
    let port = free_port();
    let mut command = Command::new(BINARY);
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--processor-url", processor_url])
        .args(extra)
        .env("GOCD_DIND_TOKEN", token)
        .env_remove("GOCD_DIND_TOKEN_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command.spawn().expect("the binary starts");
    let url = format!("http://127.0.0.1:{port}");
    let healthz = format!("{url}/healthz");
    gocd_dind::demo::wait_for(Duration::from_secs(20), "the service to answer /healthz", || {
        let healthz = healthz.clone();
        async move { reqwest::get(&healthz).await.is_ok_and(|r| r.status() == 200) }
    })
    .await
    .unwrap();
    Served { child, url, token: token.to_owned() }
}

impl Served {
    pub async fn send(&self, request: &str, body: &serde_json::Value) -> (u16, String) {
        let response = reqwest::Client::new()
            .post(format!("{}/gocd/elastic-agent/{request}", self.url))
            .bearer_auth(&self.token)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// SIGTERM, wait for a clean exit; returns everything it logged.
    pub fn terminate(mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "no exit 20 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut log = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
        assert!(status.success(), "exit {status} after SIGTERM:\n{log}");
        log
    }
}

#[test]
fn refuses_to_start_without_a_token_and_says_how_to_set_one() {
    let output = Command::new(BINARY)
        .arg("serve")
        .env_remove("GOCD_DIND_TOKEN")
        .env_remove("GOCD_DIND_TOKEN_FILE")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("GOCD_DIND_TOKEN_FILE") && stderr.contains("GOCD_DIND_TOKEN"), "{stderr}");
}

#[test]
fn an_unreadable_or_empty_token_file_is_named() {
    let output = Command::new(BINARY)
        .args(["serve", "--token-file", "/nonexistent/token"])
        .env_remove("GOCD_DIND_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/token"));
    let dir = std::env::temp_dir().join(format!("gocd-dind-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let output = Command::new(BINARY).args(["serve", "--token-file"]).arg(&empty).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("empty"));
}

#[tokio::test]
async fn token_file_works_and_sigterm_stops_cleanly() {
    let dir = std::env::temp_dir().join(format!("gocd-dind-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "file-token-value\n").unwrap();
    let gocd = FakeGocd::start("file-token-value").await.unwrap();
    let served = serve(&gocd.url, "ignored-env-token", &["--token-file", file.to_str().unwrap()], &[]).await;
    let served = Served { token: "file-token-value".into(), ..served };
    assert_eq!(served.send("cd.go.elastic-agent.get-capabilities", &serde_json::Value::Null).await.0, 200);
    served.terminate();
}

#[tokio::test]
async fn logs_never_carry_tokens_register_keys_or_secure_values() {
    let token = "SECRET-SHARED-TOKEN-0001";
    let gocd = FakeGocd::start(token).await.unwrap();
    let served = serve(&gocd.url, token, &["--allow-memory-runtime"], &[("GOCD_DIND_LOG", "debug")]).await;
    let cluster = json!({"runtime": "memory", "go_server_url": "https://gocd.example.com/go", "agent_image": "a:1", "security_token": "SECRET-CLUSTER-TOKEN-0002"});
    let create = json!({
        "auto_register_key": "SECRET-REGISTER-KEY-0003",
        "elastic_agent_profile_properties": {"Environment": "PASSWORD=SECRET-ENV-0004"},
        "cluster_profile_properties": cluster,
        "job_identifier": crate::lifecycle::job(77),
    });
    assert_eq!(served.send("cd.go.elastic-agent.create-agent", &create).await.0, 200);
    let bad =
        json!({"auto_register_key": {"x": "SECRET-REGISTER-KEY-0005"}, "job_identifier": crate::lifecycle::job(78)});
    assert_eq!(served.send("cd.go.elastic-agent.create-agent", &bad).await.0, 400);
    let invalid = json!({"auto_register_key": "SECRET-REGISTER-KEY-0006", "cluster_profile_properties": {"runtime": "memory", "security_token": "SECRET-CLUSTER-TOKEN-0007", "max_pending_agents": "x"}, "job_identifier": crate::lifecycle::job(79)});
    assert_eq!(served.send("cd.go.elastic-agent.create-agent", &invalid).await.0, 422);
    served.send("cd.go.elastic-agent.server-ping", &json!({"all_cluster_profile_properties": [cluster]})).await;
    served
        .send(
            "cd.go.elastic-agent.agent-status-report",
            &json!({"cluster_profile_properties": cluster, "job_identifier": crate::lifecycle::job(77)}),
        )
        .await;
    let wrong = reqwest::Client::new()
        .post(format!("{}/gocd/elastic-agent/cd.go.elastic-agent.get-icon", served.url))
        .bearer_auth("SECRET-WRONG-TOKEN-0008")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let log = served.terminate();
    assert!(log.contains("create-agent") || log.contains("pod started"), "the log is suspiciously empty:\n{log}");
    assert!(!log.contains("SECRET"), "a secret reached the log:\n{log}");
}

#[tokio::test]
async fn metrics_count_requests_by_name_and_status() {
    let gocd = FakeGocd::start("t").await.unwrap();
    let served = serve(&gocd.url, "t", &[], &[]).await;
    served.send("cd.go.elastic-agent.get-icon", &serde_json::Value::Null).await;
    served.send("cd.go.elastic-agent.create-agent", &json!({})).await;
    let metrics = reqwest::get(format!("{}/metrics", served.url)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"gocd_dind_requests_total{request="cd.go.elastic-agent.get-icon",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"gocd_dind_requests_total{request="cd.go.elastic-agent.create-agent",status="400"} 1"#),
        "{metrics}"
    );
    served.terminate();
}
