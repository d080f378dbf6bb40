//! The Kubernetes runtime against a mock API server (tower-test): each test asserts the
//! exact calls (method, path, query, body) and answers them as the API server would.

use gocd_dind::pod::{build, label_keys, secret_name, AgentPod, Ownership, PodRequest};
use gocd_dind::protocol::{JobIdentifier, Properties};
use gocd_dind::runtime::kubernetes::KubernetesRuntime;
use gocd_dind::runtime::{PodPhase, Runtime, RuntimeError};
use gocd_dind::settings::{ClusterId, ClusterSettings, ElasticSettings};
use http::{Request, Response};
use kube::client::Body;
use serde_json::{json, Value};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn runtime() -> (KubernetesRuntime, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (KubernetesRuntime::with_client(kube::Client::new(service, "agents"), "agents"), handle)
}

fn owner() -> Ownership {
    Ownership::new("server-1", ClusterId("c1".into()))
}

fn agent_pod() -> AgentPod {
    let cluster = ClusterSettings::parse(
        &Properties::from_pairs(&[("agent_image", "gocd/gocd-agent-wolfi:v25.4.0"), ("runtime", "kubernetes")]),
        false,
    )
    .unwrap();
    let elastic = ElasticSettings::parse(&Properties::default()).unwrap();
    build(&PodRequest {
        name: "gocd-dind-k1",
        ownership: &owner(),
        go_server_url: "https://gocd.example.com/go",
        cluster: &cluster,
        elastic: &elastic,
        job: &JobIdentifier { job_id: 9, ..JobIdentifier::default() },
        environment: None,
        auto_register_key: "key-9",
        tls: &gocd_dind::tls::mint("gocd-dind-k1").unwrap(),
    })
    .unwrap()
}

/// Takes the next call, checks it, answers `status` with `answer`; returns the call's body.
async fn expect(handle: &mut Handle, method: &str, path: &str, status: u16, answer: Value) -> Value {
    let (request, respond) = handle.next_request().await.expect("the runtime made no further call");
    assert_eq!(request.method().as_str(), method, "{}", request.uri());
    let target = request.uri().path_and_query().unwrap().as_str().to_owned();
    assert!(target.starts_with(path), "expected {method} {path}, got {target}");
    let body = request.into_body().collect_bytes().await.unwrap();
    respond.send_response(
        Response::builder().status(status).body(Body::from(serde_json::to_vec(&answer).unwrap())).unwrap(),
    );
    if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    }
}

fn pod_json(phase: &str, agent_state: &Value) -> Value {
    let pod = agent_pod().pod;
    let mut value = serde_json::to_value(&pod).unwrap();
    value["metadata"]["uid"] = json!("uid-1");
    value["metadata"]["creationTimestamp"] = json!("2026-11-30T00:00:00Z");
    value["status"] = json!({"phase": phase, "containerStatuses": [{"name": "agent", "image": "gocd/gocd-agent-wolfi:v25.4.0", "imageID": "", "ready": true, "restartCount": 0, "state": agent_state}]});
    value
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason, "code": code})
}

#[tokio::test]
async fn create_submits_the_pod_then_its_secret_owned_by_the_pod_and_waits_for_the_agent() {
    let (runtime, mut handle) = runtime();
    let pod = agent_pod();
    let api = tokio::spawn(async move {
        let submitted = expect(
            &mut handle,
            "POST",
            "/api/v1/namespaces/agents/pods?",
            201,
            pod_json("Pending", &json!({"waiting": {}})),
        )
        .await;
        assert_eq!(submitted["metadata"]["name"], "gocd-dind-k1");
        assert_eq!(submitted["spec"]["initContainers"][0]["restartPolicy"], "Always");
        assert_eq!(submitted["spec"]["automountServiceAccountToken"], false);
        assert!(!submitted.to_string().contains("key-9"), "the register key is not in the pod");
        let secret = expect(
            &mut handle,
            "POST",
            "/api/v1/namespaces/agents/secrets?",
            201,
            json!({"metadata": {"name": "gocd-dind-k1-tls"}}),
        )
        .await;
        assert_eq!(secret["metadata"]["name"], secret_name("gocd-dind-k1"));
        let owner = &secret["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["name"].as_str(), owner["uid"].as_str()),
            (Some("Pod"), Some("gocd-dind-k1"), Some("uid-1"))
        );
        assert!(secret["data"]["client-key.pem"].is_string() && secret["data"]["auto-register-key"].is_string());
        expect(
            &mut handle,
            "GET",
            "/api/v1/namespaces/agents/pods/gocd-dind-k1",
            200,
            pod_json("Pending", &json!({"waiting": {"reason": "PodInitializing"}})),
        )
        .await;
        expect(
            &mut handle,
            "GET",
            "/api/v1/namespaces/agents/pods/gocd-dind-k1",
            200,
            pod_json("Running", &json!({"running": {}})),
        )
        .await;
    });
    runtime.create_pod(&pod).await.unwrap();
    api.await.unwrap();
}

#[tokio::test]
async fn a_pod_that_cannot_pull_its_image_is_removed_with_a_reason() {
    let (runtime, mut handle) = runtime();
    let pod = agent_pod();
    let api = tokio::spawn(async move {
        expect(
            &mut handle,
            "POST",
            "/api/v1/namespaces/agents/pods?",
            201,
            pod_json("Pending", &json!({"waiting": {}})),
        )
        .await;
        expect(&mut handle, "POST", "/api/v1/namespaces/agents/secrets?", 201, json!({})).await;
        let mut stuck =
            pod_json("Pending", &json!({"waiting": {"reason": "ImagePullBackOff", "message": "pull access denied"}}));
        stuck["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] = json!("ImagePullBackOff");
        expect(&mut handle, "GET", "/api/v1/namespaces/agents/pods/gocd-dind-k1", 200, stuck).await;
        expect(&mut handle, "GET", "/api/v1/namespaces/agents/pods/gocd-dind-k1/log?", 200, json!("")).await;
        expect(
            &mut handle,
            "DELETE",
            "/api/v1/namespaces/agents/pods/gocd-dind-k1",
            200,
            pod_json("Pending", &json!({})),
        )
        .await;
        expect(&mut handle, "DELETE", "/api/v1/namespaces/agents/secrets/gocd-dind-k1-tls", 200, json!({})).await;
    });
    let error = runtime.create_pod(&pod).await.unwrap_err();
    assert!(
        matches!(&error, RuntimeError::DaemonNotReady { why, .. } if why.contains("ImagePullBackOff") && why.contains("pull access denied")),
        "{error}"
    );
    api.await.unwrap();
}

#[tokio::test]
async fn listing_selects_by_ownership_labels_and_rebuilds_what_the_service_knows() {
    let (runtime, mut handle) = runtime();
    let api = tokio::spawn(async move {
        let (request, respond) = handle.next_request().await.unwrap();
        let query = request.uri().query().unwrap().to_owned();
        let selector =
            form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "labelSelector").unwrap().1.into_owned();
        for (key, value) in owner().selector() {
            assert!(selector.contains(&format!("{key}={value}")), "{selector}");
        }
        let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [pod_json("Running", &json!({"running": {}}))]});
        respond.send_response(
            Response::builder().status(200).body(Body::from(serde_json::to_vec(&list).unwrap())).unwrap(),
        );
    });
    let pods = runtime.list_pods(&owner()).await.unwrap();
    api.await.unwrap();
    assert_eq!(pods.len(), 1);
    assert_eq!((pods[0].name.as_str(), pods[0].job_id, &pods[0].phase), ("gocd-dind-k1", 9, &PodPhase::Running));
    assert_eq!(pods[0].job.as_ref().map(|j| j.job_id), Some(9), "the job identifier comes back from the annotation");
}

#[tokio::test]
async fn delete_removes_only_our_pod_and_its_secret_and_tolerates_gone() {
    let (runtime, mut handle) = runtime();
    let api = tokio::spawn(async move {
        expect(
            &mut handle,
            "GET",
            "/api/v1/namespaces/agents/pods/gocd-dind-k1",
            200,
            pod_json("Running", &json!({"running": {}})),
        )
        .await;
        expect(
            &mut handle,
            "DELETE",
            "/api/v1/namespaces/agents/pods/gocd-dind-k1",
            200,
            pod_json("Running", &json!({})),
        )
        .await;
        expect(
            &mut handle,
            "DELETE",
            "/api/v1/namespaces/agents/secrets/gocd-dind-k1-tls",
            404,
            status(404, "NotFound"),
        )
        .await;
        // Someone else's pod of the same name: looked at, never deleted.
        let mut foreign = pod_json("Running", &json!({"running": {}}));
        foreign["metadata"]["labels"][label_keys::SERVER_ID] = json!("another-gocd");
        expect(&mut handle, "GET", "/api/v1/namespaces/agents/pods/gocd-dind-k1", 200, foreign).await;
        // Already gone.
        expect(&mut handle, "GET", "/api/v1/namespaces/agents/pods/gocd-dind-gone", 404, status(404, "NotFound")).await;
        expect(
            &mut handle,
            "DELETE",
            "/api/v1/namespaces/agents/secrets/gocd-dind-gone-tls",
            404,
            status(404, "NotFound"),
        )
        .await;
    });
    runtime.delete_pod(&owner(), "gocd-dind-k1").await.unwrap();
    runtime.delete_pod(&owner(), "gocd-dind-k1").await.unwrap();
    runtime.delete_pod(&owner(), "gocd-dind-gone").await.unwrap();
    api.await.unwrap();
}

#[tokio::test]
async fn a_forbidden_call_names_rbac() {
    let (runtime, mut handle) = runtime();
    let api = tokio::spawn(async move {
        expect(&mut handle, "GET", "/api/v1/namespaces/agents/pods?", 403, status(403, "pods is forbidden")).await;
    });
    let error = runtime.list_pods(&owner()).await.unwrap_err();
    api.await.unwrap();
    assert!(error.to_string().contains("RBAC"), "{error}");
}

#[tokio::test]
async fn a_pod_security_refusal_is_not_blamed_on_rbac() {
    let (runtime, mut handle) = runtime();
    let pod = agent_pod();
    let api = tokio::spawn(async move {
        let refusal =
            status(403, "pods \"gocd-dind-k1\" is forbidden: violates PodSecurity \"baseline:latest\": privileged");
        expect(&mut handle, "POST", "/api/v1/namespaces/agents/pods?", 403, refusal).await;
    });
    let error = runtime.create_pod(&pod).await.unwrap_err().to_string();
    api.await.unwrap();
    assert!(error.contains("pod-security.kubernetes.io/enforce") && !error.contains("RBAC"), "{error}");
}
