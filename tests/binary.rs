//! The `gocd-dind` binary as operators run it: configuration errors, graceful shutdown,
//! and logs that never carry a secret.

use std::process::Command;

use gocd_dind::fake_gocd::FakeGocd;
use serde_json::json;

use crate::support::Served;

const BINARY: &str = env!("CARGO_BIN_EXE_gocd-dind");

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
    let mut served =
        Served::start(&gocd.url, "ignored-env-token", &["--token-file", file.to_str().unwrap()], &[]).await;
    served.token = "file-token-value".into();
    assert_eq!(served.send("cd.go.elastic-agent.get-capabilities", &serde_json::Value::Null).await.0, 200);
    served.terminate().await;
}

#[tokio::test]
async fn a_sigterm_as_soon_as_it_says_it_serves_stops_it_cleanly() {
    // The handler used to be installed only once serving began: a SIGTERM in between
    // killed the process with the default action (exit by signal 15, no drain).
    let gocd = FakeGocd::start("t").await.unwrap();
    let served = Served::start(&gocd.url, "t", &[], &[]).await;
    let log = served.terminate().await;
    assert!(log.contains("shutting down"), "{log}");
}

#[tokio::test]
async fn logs_never_carry_tokens_register_keys_or_secure_values() {
    let token = "SECRET-SHARED-TOKEN-0001";
    let gocd = FakeGocd::start(token).await.unwrap();
    let served = Served::start(&gocd.url, token, &["--allow-memory-runtime"], &[("GOCD_DIND_LOG", "debug")]).await;
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
    let log = served.terminate().await;
    assert!(log.contains("create-agent") || log.contains("pod started"), "the log is suspiciously empty:\n{log}");
    assert!(!log.contains("SECRET"), "a secret reached the log:\n{log}");
}

#[tokio::test]
async fn metrics_count_requests_by_name_and_status() {
    let gocd = FakeGocd::start("t").await.unwrap();
    let served = Served::start(&gocd.url, "t", &[], &[]).await;
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
    served.terminate().await;
}

#[tokio::test]
async fn post_mortems_go_to_the_log_file_one_json_line_per_pod_without_secrets() {
    let dir = std::env::temp_dir().join(format!("gocd-dind-postmortems-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("postmortems.jsonl");
    let gocd = FakeGocd::start("t").await.unwrap();
    let env = [("GOCD_DIND_POSTMORTEM_LOG", file.to_str().unwrap())];
    let served = Served::start(&gocd.url, "t", &["--allow-memory-runtime"], &env).await;
    let cluster = json!({"runtime": "memory", "go_server_url": "https://gocd.example.com/go", "agent_image": "a:1", "security_token": "SECRET-CLUSTER-TOKEN"});
    let create = json!({
        "auto_register_key": "SECRET-REGISTER-KEY",
        "elastic_agent_profile_properties": {"Environment": "PASSWORD=SECRET-ENV"},
        "cluster_profile_properties": cluster,
        "job_identifier": crate::lifecycle::job(88),
    });
    assert_eq!(served.send("cd.go.elastic-agent.create-agent", &create).await.0, 200);
    gocd.wait_until(|g| g.console_text().contains("is up after")).await;
    let console = gocd.console_text();
    let pod = crate::support::pod_in_console(&console);
    let completion = json!({"elastic_agent_id": pod, "job_identifier": crate::lifecycle::job(88), "cluster_profile_properties": cluster, "elastic_agent_profile_properties": {}});
    assert_eq!(served.send("cd.go.elastic-agent.job-completion", &completion).await.0, 200);
    served.terminate().await;
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["pod"], pod.as_str());
    assert_eq!(lines[0]["removed"], "its job completed");
    assert_eq!(lines[0]["job"]["job_id"], 88);
    assert!(!text.contains("SECRET"), "a secret reached the post-mortem log: {text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_post_mortem_log_that_cannot_be_written_stops_the_start_and_is_named() {
    let output = Command::new(BINARY)
        .arg("serve")
        .env("GOCD_DIND_TOKEN", "t")
        .env("GOCD_DIND_POSTMORTEM_LOG", "/nonexistent/dir/postmortems.jsonl")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("GOCD_DIND_POSTMORTEM_LOG") && stderr.contains("/nonexistent/dir"), "{stderr}");
}
