//! Every request name through the real router, shaped like GoCD's own bodies; auth; and
//! bad input, which must get a 4xx JSON message and change nothing.

use base64::Engine;
use serde_json::{json, Value};

use crate::support::{fixture, fixtures, memory_cluster, memory_harness};

#[tokio::test]
async fn every_fixture_gets_an_answer_gocd_accepts() {
    let h = memory_harness().await;
    let fixtures = fixtures();
    assert!(fixtures.len() >= 26, "fixtures missing: {}", fixtures.len());
    for (request, file, body) in fixtures {
        let body: Value = if body.trim().is_empty() { Value::Null } else { serde_json::from_str(&body).unwrap() };
        let (status, answer) = h.harness.send(&request, &body).await.unwrap();
        assert_eq!(status, 200, "{file}: {answer}");
        let answer: Value =
            serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{file}: not JSON ({e}): {answer}"));
        check_shape(&request, &file, &body, &answer);
    }
}

fn check_shape(request: &str, file: &str, body: &Value, answer: &Value) {
    let name = request.trim_start_matches("cd.go.elastic-agent.");
    match name {
        "get-icon" => {
            assert_eq!(answer["content_type"], "image/svg+xml");
            let svg = base64::engine::general_purpose::STANDARD.decode(answer["data"].as_str().unwrap()).unwrap();
            assert!(String::from_utf8(svg).unwrap().starts_with("<svg"));
        }
        "get-capabilities" => {
            for key in
                ["supports_plugin_status_report", "supports_cluster_status_report", "supports_agent_status_report"]
            {
                assert_eq!(answer[key], true, "{key}");
            }
        }
        "get-elastic-agent-profile-metadata" | "get-cluster-profile-metadata" => {
            let entries = answer.as_array().unwrap();
            assert!(!entries.is_empty());
            for entry in entries {
                assert!(
                    entry["key"].is_string()
                        && entry["metadata"]["required"].is_boolean()
                        && entry["metadata"]["secure"].is_boolean(),
                    "{entry}"
                );
            }
        }
        "get-elastic-agent-profile-view" | "get-cluster-profile-view" | "go.plugin-settings.get-view" => {
            assert!(!answer["template"].as_str().unwrap().trim().is_empty());
        }
        "validate-elastic-agent-profile" | "validate-cluster-profile" => {
            let errors = answer.as_array().unwrap();
            if file.contains("+invalid") {
                assert!(errors.len() >= 3, "{file}: {answer}");
                assert!(errors.iter().all(|e| e["key"].is_string() && e["message"].is_string()));
            } else {
                assert!(errors.is_empty(), "{file}: {answer}");
            }
        }
        "should-assign-work" => assert!(answer.is_boolean(), "{answer}"),
        "migrate-config" => assert_eq!(answer, body, "migrate-config must echo the profiles"),
        "agent-status-report" | "cluster-status-report" | "plugin-status-report" => {
            assert!(!answer["view"].as_str().unwrap().trim().is_empty());
        }
        _ => {}
    }
}

#[tokio::test]
async fn views_bind_one_input_per_metadata_key_and_show_server_errors() {
    let h = memory_harness().await;
    for profile in ["elastic-agent-profile", "cluster-profile"] {
        let (_, metadata) =
            h.harness.send(&format!("cd.go.elastic-agent.get-{profile}-metadata"), &Value::Null).await.unwrap();
        let (_, view) = h.harness.send(&format!("cd.go.elastic-agent.get-{profile}-view"), &Value::Null).await.unwrap();
        let template = serde_json::from_str::<Value>(&view).unwrap()["template"].as_str().unwrap().to_owned();
        for entry in serde_json::from_str::<Vec<Value>>(&metadata).unwrap() {
            let key = entry["key"].as_str().unwrap();
            assert_eq!(template.matches(&format!("ng-model=\"{key}\"")).count(), 1, "{profile}: {key}");
            assert!(template.contains(&format!("GOINPUTNAME[{key}].$error.server")), "{profile}: {key}");
        }
    }
}

#[tokio::test]
async fn cluster_profile_keys_are_the_fixed_ones() {
    let h = memory_harness().await;
    let (_, metadata) = h.harness.send("cd.go.elastic-agent.get-cluster-profile-metadata", &Value::Null).await.unwrap();
    let keys: Vec<String> = serde_json::from_str::<Vec<Value>>(&metadata)
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_owned())
        .collect();
    let expected = [
        "runtime",
        "go_server_url",
        "auto_register_timeout",
        "max_pending_agents",
        "max_running_agents",
        "agent_image",
        "dind_image",
        "dind_security",
        "registry_mirror",
        "insecure_registries",
        "allowed_secrets",
        "docker_host",
        "docker_ca_cert",
        "docker_client_cert",
        "docker_client_key",
        "kubernetes_cluster_url",
        "namespace",
        "security_token",
        "kubernetes_cluster_ca_cert",
        "cluster_request_timeout",
    ];
    assert_eq!(keys, expected);
    let secure: Vec<String> = serde_json::from_str::<Vec<Value>>(&metadata)
        .unwrap()
        .iter()
        .filter(|e| e["metadata"]["secure"] == true)
        .map(|e| e["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(secure, ["docker_client_key", "security_token"]);
    let (_, metadata) =
        h.harness.send("cd.go.elastic-agent.get-elastic-agent-profile-metadata", &Value::Null).await.unwrap();
    let keys: Vec<String> = serde_json::from_str::<Vec<Value>>(&metadata)
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        keys,
        [
            "Image",
            "DindImage",
            "AgentCpu",
            "AgentMemory",
            "DindCpu",
            "DindMemory",
            "Environment",
            "DockerStorageSize",
            "PodSpecPatch",
            "WarmPoolSize",
            "WarmPoolIdleMinutes",
            "PrePullImages",
            "AgentEntrypoint"
        ]
    );
}

#[tokio::test]
async fn missing_or_wrong_token_is_refused_and_changes_nothing() {
    let h = memory_harness().await;
    let body = crate::lifecycle::create_body(&memory_cluster(&[]), 11);
    let client = reqwest::Client::new();
    let url = format!("{}/gocd/elastic-agent/cd.go.elastic-agent.create-agent", h.harness.url);
    for auth in [None, Some("Bearer wrong-token"), Some("Basic abc"), Some(&*format!("Bearer {}x", h.harness.token))] {
        let mut request = client.post(&url).body(body.to_string());
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{auth:?}");
        let message: Value = response.json().await.unwrap();
        assert!(message["message"].as_str().unwrap().contains("token"));
    }
    h.harness.service.settle().await;
    assert_eq!(h.runtime.created_total(), 0);
    assert!(h.harness.gocd.calls().is_empty(), "an unauthenticated request reached GoCD");
    // The same body with the token does create a pod: the refusals above were the token's.
    assert_eq!(h.harness.send("cd.go.elastic-agent.create-agent", &body).await.unwrap().0, 200);
    h.harness.service.settle().await;
    assert_eq!(h.runtime.created_total(), 1);
}

#[tokio::test]
async fn health_readiness_and_metrics_need_no_token() {
    let h = memory_harness().await;
    h.harness.send("cd.go.elastic-agent.get-capabilities", &Value::Null).await.unwrap();
    for path in ["/healthz", "/readyz"] {
        let response = reqwest::get(format!("{}{path}", h.harness.url)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let metrics = reqwest::get(format!("{}/metrics", h.harness.url)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"gocd_dind_requests_total{request="cd.go.elastic-agent.get-capabilities",status="200"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("gocd_dind_request_duration_seconds_bucket"), "{metrics}");
}

async fn expect_client_error(
    h: &crate::support::MemoryHarness,
    request: &str,
    body: &str,
    status: u16,
    mentions: &str,
) {
    let response = reqwest::Client::new()
        .post(format!("{}/gocd/elastic-agent/{request}", h.harness.url))
        .bearer_auth(&h.harness.token)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), status, "{request} {body:.80}");
    let message: Value = response.json().await.unwrap_or_else(|_| panic!("{request}: error body is not JSON"));
    let text = message["message"].as_str().unwrap();
    assert!(text.contains(mentions), "{request}: '{text}' does not mention '{mentions}'");
}

#[tokio::test]
async fn bad_input_gets_a_json_4xx_naming_the_problem_and_creates_nothing() {
    let h = memory_harness().await;
    let mut good = fixture("cd.go.elastic-agent.create-agent.json");
    good["cluster_profile_properties"] = memory_cluster(&[]);
    let create = "cd.go.elastic-agent.create-agent";
    expect_client_error(&h, create, "{not json", 400, "invalid body").await;
    expect_client_error(&h, create, "", 400, "needs a JSON body").await;
    expect_client_error(&h, create, "[]", 400, "invalid body").await;
    let mut no_job = good.clone();
    no_job.as_object_mut().unwrap().remove("job_identifier");
    expect_client_error(&h, create, &no_job.to_string(), 400, "job_identifier").await;
    let mut no_key = good.clone();
    no_key.as_object_mut().unwrap().remove("auto_register_key");
    expect_client_error(&h, create, &no_key.to_string(), 400, "auto_register_key").await;
    let mut wrong_type = good.clone();
    wrong_type["job_identifier"]["job_id"] = json!("SECRET-LOOKING-VALUE");
    expect_client_error(&h, create, &wrong_type.to_string(), 400, "job_identifier.job_id").await;
    let mut bad_profile = good.clone();
    bad_profile["elastic_agent_profile_properties"]["AgentMemory"] = json!("2X");
    expect_client_error(&h, create, &bad_profile.to_string(), 422, "AgentMemory").await;
    let mut bad_cluster = good.clone();
    bad_cluster["cluster_profile_properties"]["max_running_agents"] = json!("lots");
    expect_client_error(&h, create, &bad_cluster.to_string(), 422, "max_running_agents").await;
    expect_client_error(&h, "cd.go.elastic-agent.delete-everything", "{}", 404, "unknown request name").await;
    expect_client_error(&h, "cd.go.elastic-agent.should-assign-work", r#"{"agent":{}}"#, 400, "agent").await;
    expect_client_error(
        &h,
        "cd.go.elastic-agent.server-ping",
        r#"{"all_cluster_profile_properties":"x"}"#,
        400,
        "all_cluster_profile_properties",
    )
    .await;
    expect_client_error(
        &h,
        "cd.go.elastic-agent.migrate-config",
        r#"{"cluster_profiles":{}}"#,
        400,
        "cluster_profiles",
    )
    .await;
    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2 << 20));
    expect_client_error(&h, create, &huge, 413, "over").await;
    h.harness.service.settle().await;
    assert_eq!(h.runtime.created_total(), 0, "bad input created a pod");
    // The body the bad ones were made from does create a pod.
    assert_eq!(h.harness.send(create, &good).await.unwrap().0, 200);
    h.harness.service.settle().await;
    assert_eq!(h.runtime.created_total(), 1, "the good body created no pod");
}

#[tokio::test]
async fn error_messages_never_echo_the_offending_value() {
    let h = memory_harness().await;
    let mut body = fixture("cd.go.elastic-agent.create-agent.json");
    body["auto_register_key"] = json!({"value": "SECRET-KEY-123"});
    let (status, answer) = h.harness.send("cd.go.elastic-agent.create-agent", &body).await.unwrap();
    assert_eq!(status, 400);
    assert!(!answer.contains("SECRET-KEY-123"), "{answer}");
    body["auto_register_key"] = json!("ok");
    body["job_identifier"]["job_id"] = json!("SECRET-KEY-123");
    let (_, answer) = h.harness.send("cd.go.elastic-agent.create-agent", &body).await.unwrap();
    assert!(!answer.contains("SECRET-KEY-123"), "{answer}");
}

#[tokio::test]
async fn environment_absent_and_unknown_fields_are_accepted() {
    let h = memory_harness().await;
    for (file, job_id) in [
        ("cd.go.elastic-agent.create-agent+no-environment.json", 21),
        ("cd.go.elastic-agent.create-agent+extra-fields.json", 22),
    ] {
        let mut body = fixture(file);
        body["cluster_profile_properties"] = memory_cluster(&[]);
        body["job_identifier"]["job_id"] = json!(job_id);
        let (status, answer) = h.harness.send("cd.go.elastic-agent.create-agent", &body).await.unwrap();
        assert_eq!(status, 200, "{file}: {answer}");
    }
    crate::lifecycle::wait_pods(&h, 2).await;
    let pods = h.runtime.pods();
    let env = |job_id: i64| -> Vec<String> {
        let pod = pods.iter().find(|p| p.info.job_id == job_id).unwrap();
        pod.pod.pod.spec.as_ref().unwrap().containers[0].env.iter().flatten().map(|e| e.name.clone()).collect()
    };
    assert!(!env(21).contains(&"GO_EA_AUTO_REGISTER_ENVIRONMENT".to_owned()));
    assert!(env(22).contains(&"GO_EA_AUTO_REGISTER_ENVIRONMENT".to_owned()));
}

#[tokio::test]
async fn status_reports_never_show_secrets() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[("security_token", "SECRET-CLUSTER-TOKEN")]);
    let mut body = crate::lifecycle::create_body(&cluster, 31);
    body["auto_register_key"] = json!("SECRET-REGISTER-KEY");
    body["elastic_agent_profile_properties"] = json!({"Environment": "DEPLOY_PASSWORD=SECRET-ENV-VALUE"});
    assert_eq!(h.harness.send("cd.go.elastic-agent.create-agent", &body).await.unwrap().0, 200);
    crate::lifecycle::wait_pods(&h, 1).await;
    let job = body["job_identifier"].clone();
    let reports = [
        ("cd.go.elastic-agent.plugin-status-report", json!({"all_cluster_profiles_properties": [cluster]})),
        ("cd.go.elastic-agent.cluster-status-report", json!({"cluster_profile_properties": cluster})),
        (
            "cd.go.elastic-agent.agent-status-report",
            json!({"cluster_profile_properties": cluster, "job_identifier": job}),
        ),
    ];
    for (request, report) in reports {
        let (status, view) = h.harness.send(request, &report).await.unwrap();
        assert_eq!(status, 200);
        assert!(view.contains("gocd-dind-"), "{request} does not list the pod: {view}");
        for secret in ["SECRET-CLUSTER-TOKEN", "SECRET-REGISTER-KEY", "SECRET-ENV-VALUE", "PRIVATE KEY"] {
            assert!(!view.contains(secret), "{request} shows {secret}");
        }
    }
    let console = h.harness.gocd.console_text();
    assert!(!console.contains("SECRET"), "{console}");
}

#[tokio::test]
async fn status_reports_answer_200_with_html_when_things_are_wrong() {
    let h = memory_harness().await;
    h.runtime.set_unreachable(true);
    let bad = json!({"runtime": "swarm"});
    let job = crate::lifecycle::job(41);
    for (request, body) in [
        ("cd.go.elastic-agent.cluster-status-report", json!({"cluster_profile_properties": bad})),
        (
            "cd.go.elastic-agent.plugin-status-report",
            json!({"all_cluster_profiles_properties": [bad, memory_cluster(&[])]}),
        ),
        (
            "cd.go.elastic-agent.agent-status-report",
            json!({"cluster_profile_properties": memory_cluster(&[]), "job_identifier": job}),
        ),
        (
            "cd.go.elastic-agent.agent-status-report",
            json!({"cluster_profile_properties": {}, "job_identifier": job, "elastic_agent_id": "gocd-dind-gone"}),
        ),
    ] {
        let (status, answer) = h.harness.send(request, &body).await.unwrap();
        assert_eq!(status, 200, "{request}");
        let view = serde_json::from_str::<Value>(&answer).unwrap()["view"].as_str().unwrap().to_owned();
        assert!(view.contains("class=\"error\""), "{request}: no error shown: {view}");
    }
}

#[tokio::test]
async fn report_values_are_html_escaped() {
    let h = memory_harness().await;
    let mut job = crate::lifecycle::job(51);
    job["pipeline_name"] = json!("<script>alert(1)</script>");
    let (_, answer) = h
        .harness
        .send(
            "cd.go.elastic-agent.agent-status-report",
            &json!({"cluster_profile_properties": memory_cluster(&[]), "job_identifier": job}),
        )
        .await
        .unwrap();
    assert!(!answer.contains("<script>"), "{answer}");
    assert!(answer.contains("&lt;script&gt;"));
}

#[tokio::test]
async fn elastic_profile_validation_refuses_what_the_pod_cannot_run() {
    let h = memory_harness().await;
    let validate = |profile: Value| {
        let h = &h;
        async move {
            let (status, answer) =
                h.harness.send("cd.go.elastic-agent.validate-elastic-agent-profile", &profile).await.unwrap();
            assert_eq!(status, 200);
            serde_json::from_str::<Vec<Value>>(&answer).unwrap()
        }
    };
    let errors = validate(json!({"DockerStorageSize": "20Gi"})).await;
    assert_eq!(errors[0]["key"], "DockerStorageSize", "{errors:?}");
    let errors = validate(json!({"PodSpecPatch": r#"{"nodeSelector": {"pool": "ci"}}"#})).await;
    assert!(errors[0]["message"].as_str().unwrap().contains("nodeSelector"), "{errors:?}");
    let errors = validate(
        json!({"PodSpecPatch": r#"{"volumes": [{"name": "s", "hostPath": {"path": "/var/run/docker.sock"}}]}"#}),
    )
    .await;
    assert!(errors[0]["message"].as_str().unwrap().contains("hostPath"), "{errors:?}");
    let errors =
        validate(json!({"PodSpecPatch": r#"{"containers": [{"name": "agent", "workingDir": "/godata"}]}"#})).await;
    assert!(errors.is_empty(), "a patch Docker can run was refused: {errors:?}");
}

#[tokio::test]
async fn job_identifier_numbers_are_accepted_as_numbers_or_strings() {
    let h = memory_harness().await;
    let mut body = fixture("cd.go.elastic-agent.create-agent.json");
    body["cluster_profile_properties"] = memory_cluster(&[]);
    body["job_identifier"] = json!({"pipeline_name": "build", "pipeline_label": 42, "pipeline_counter": "42", "stage_name": "test", "stage_counter": 1, "job_name": "unit", "job_id": "61"});
    let (status, answer) = h.harness.send("cd.go.elastic-agent.create-agent", &body).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    crate::lifecycle::wait_pods(&h, 1).await;
    assert_eq!(h.runtime.pods()[0].info.job_id, 61);
}

async fn validate_storage_size(h: &crate::support::MemoryHarness) -> Vec<Value> {
    let storage = json!({"DockerStorageSize": "20Gi"});
    let (_, answer) = h.harness.send("cd.go.elastic-agent.validate-elastic-agent-profile", &storage).await.unwrap();
    serde_json::from_str(&answer).unwrap()
}

#[tokio::test]
async fn with_kubernetes_in_use_elastic_profiles_are_not_held_to_dockers_limits() {
    let h = memory_harness().await;
    assert_eq!(validate_storage_size(&h).await.len(), 1, "refused while every cluster profile runs on Docker");
    let both = json!({"all_cluster_profile_properties": [memory_cluster(&[]), {"runtime": "kubernetes", "kubernetes_cluster_url": "https://127.0.0.1:1"}]});
    h.harness.send("cd.go.elastic-agent.server-ping", &both).await.unwrap();
    assert!(validate_storage_size(&h).await.is_empty(), "a Kubernetes cluster profile can use it");
    let hostpath = json!({"PodSpecPatch": r#"{"volumes": [{"name": "s", "hostPath": {"path": "/"}}]}"#});
    let (_, answer) = h.harness.send("cd.go.elastic-agent.validate-elastic-agent-profile", &hostpath).await.unwrap();
    assert!(answer.contains("hostPath"), "invariants hold for every runtime: {answer}");
    let docker_only = json!({"all_cluster_profile_properties": [memory_cluster(&[])]});
    h.harness.send("cd.go.elastic-agent.server-ping", &docker_only).await.unwrap();
    assert_eq!(validate_storage_size(&h).await.len(), 1, "Docker-only again");
}
