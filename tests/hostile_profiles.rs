//! Hostile elastic profiles: each `PodSpecPatch` escape found in review, sent the way
//! GoCD sends it, through validate-elastic-agent-profile and through create-agent on
//! both runtimes (a real Docker Engine; a mock Kubernetes API server that fails the test
//! on any write). Each is refused naming the field, and nothing is created.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use bollard::query_parameters::ListContainersOptions;
use gocd_dind::clock::Clock;
use gocd_dind::demo::{create_agent_body, Harness};
use gocd_dind::pod::{label_keys, MANAGED_BY};
use gocd_dind::runtime::kubernetes::KubernetesRuntime;
use gocd_dind::runtime::{Runtime, RuntimeError, RuntimeProvider, Runtimes};
use gocd_dind::service::ServiceOptions;
use gocd_dind::settings::ClusterSettings;
use http::{Request, Response};
use kube::client::Body;
use serde_json::{json, Value};

use crate::support::{docker, memory_cluster, memory_harness, AGENT_IMAGE, DIND_IMAGE};

/// (what it tries, the patch, the field the refusal must name).
pub const ESCAPES: &[(&str, &str, &str)] = &[
    (
        "a projected service-account token mounted in the agent",
        r#"{"volumes": [{"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}], "containers": [{"name": "agent", "volumeMounts": [{"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}]}"#,
        "spec.volumes[token].projected",
    ),
    ("a service account", r#"{"serviceAccountName": "gocd-dind"}"#, "spec.serviceAccountName"),
    (
        "dind's command replaced",
        r#"{"initContainers": [{"name": "dind", "command": ["dockerd", "-H", "tcp://0.0.0.0:2375"]}]}"#,
        "spec.initContainers[dind].command",
    ),
    (
        "dockerd on the pod IP without TLS",
        r#"{"initContainers": [{"name": "dind", "args": ["gocd-dind", "-H", "tcp://0.0.0.0:2375"]}]}"#,
        "spec.initContainers[dind].args",
    ),
    (
        "a host port",
        r#"{"containers": [{"name": "agent", "ports": [{"containerPort": 2376, "hostPort": 2376}]}]}"#,
        "spec.containers[agent].ports",
    ),
    ("a pod security context", r#"{"securityContext": {"runAsUser": 0}}"#, "spec.securityContext"),
    (
        "capabilities for the agent",
        r#"{"containers": [{"name": "agent", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}]}"#,
        "spec.containers[agent].securityContext",
    ),
    (
        "the agent's no-new-privileges removed",
        r#"{"containers": [{"name": "agent", "securityContext": null}]}"#,
        "spec.containers[agent].securityContext",
    ),
    ("dind's processes visible to the agent", r#"{"shareProcessNamespace": true}"#, "spec.shareProcessNamespace"),
    (
        "the host's Docker socket",
        r#"{"volumes": [{"name": "sock", "hostPath": {"path": "/var/run/docker.sock"}}]}"#,
        "spec.volumes[sock].hostPath",
    ),
    (
        "the daemon's server key in the agent",
        r#"{"containers": [{"name": "agent", "volumeMounts": [{"name": "dind-tls", "mountPath": "/server"}]}]}"#,
        "spec.containers[agent].volumeMounts[/server]",
    ),
    (
        "another daemon for the job",
        r#"{"containers": [{"name": "agent", "env": [{"name": "DOCKER_HOST", "value": "tcp://10.0.0.1:2375"}]}]}"#,
        "spec.containers[agent].env[DOCKER_HOST]",
    ),
    (
        "another cluster's ownership label",
        r#"{"metadata": {"labels": {"gocd-dind.gocd.org/cluster": "other"}}}"#,
        "metadata.labels[gocd-dind.gocd.org/cluster]",
    ),
];

fn profile(patch: &str) -> Value {
    json!({"PodSpecPatch": patch})
}

async fn validate(h: &Harness, patch: &str) -> Vec<Value> {
    let (status, answer) = h.send("cd.go.elastic-agent.validate-elastic-agent-profile", &profile(patch)).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    serde_json::from_str(&answer).unwrap()
}

fn assert_refused_naming(errors: &[Value], what: &str, path: &str) {
    assert!(
        errors.iter().any(|e| e["key"] == "PodSpecPatch" && e["message"].as_str().unwrap().contains(path)),
        "{what}: validation did not refuse naming {path}: {errors:?}"
    );
}

#[tokio::test]
async fn validation_refuses_every_escape_whichever_runtimes_are_in_use() {
    let h = memory_harness().await;
    for (what, patch, path) in ESCAPES {
        assert_refused_naming(&validate(&h.harness, patch).await, what, path);
    }
    let kubernetes = json!({"all_cluster_profile_properties": [{"runtime": "kubernetes", "kubernetes_cluster_url": "https://127.0.0.1:1"}]});
    h.harness.send("cd.go.elastic-agent.server-ping", &kubernetes).await.unwrap();
    for (what, patch, path) in ESCAPES {
        assert_refused_naming(&validate(&h.harness, patch).await, what, path);
    }
}

async fn create(h: &Harness, cluster: &Value, job_id: i64, patch: &str) -> (u16, String) {
    let mut body = create_agent_body(cluster, job_id);
    body["elastic_agent_profile_properties"] = profile(patch);
    h.send("cd.go.elastic-agent.create-agent", &body).await.unwrap()
}

/// create-agent answers 422 naming `field`, and the job console says so.
async fn assert_create_refused(h: &Harness, cluster: &Value, job_id: i64, (what, patch, field): (&str, &str, &str)) {
    let (status, answer) = create(h, cluster, job_id, patch).await;
    assert_eq!(status, 422, "{what}: create-agent answered {status}: {answer}");
    assert!(answer.contains(field), "{what}: the refusal does not name {field}: {answer}");
    // The console line is written in the background; so would be a pod's creation.
    h.service.settle().await;
    assert!(h.gocd.console_text().contains(field), "{what}: the job console does not name {field}");
}

#[tokio::test]
async fn create_agent_on_docker_refuses_every_escape_and_creates_nothing() {
    let engine = docker().await;
    let h = Harness::start(Arc::new(Runtimes::new()), Clock::default(), ServiceOptions::default()).await.unwrap();
    let cluster = json!({"runtime": "docker", "go_server_url": "https://127.0.0.1:8154/go", "agent_image": AGENT_IMAGE,
                         "dind_image": DIND_IMAGE, "dind_security": "capabilities"});
    let first_job = 8_800_000 + i64::from(std::process::id() % 10_000) * 100;
    for (i, escape) in ESCAPES.iter().enumerate() {
        let job_id = first_job + i64::try_from(i).unwrap();
        assert_create_refused(&h, &cluster, job_id, *escape).await;
        let labels =
            vec![format!("{}={MANAGED_BY}", label_keys::MANAGED_BY), format!("{}={job_id}", label_keys::JOB_ID)];
        let filters = std::collections::HashMap::from([("label".to_owned(), labels)]);
        let left = engine
            .list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() }))
            .await
            .unwrap();
        assert!(left.is_empty(), "{}: containers were created: {left:?}", escape.0);
    }
}

/// A Kubernetes runtime on a mock API server that answers reads with the namespace (its
/// uid identifies the cluster) or an empty pod list, and records every other call
/// (refusing it): a refused pod must never be written.
struct MockKubernetes {
    runtime: Arc<KubernetesRuntime>,
    writes: Arc<Mutex<Vec<(String, Value)>>>,
    written: Arc<Notify>,
}

impl MockKubernetes {
    fn start() -> Self {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let writes = Arc::new(Mutex::new(Vec::new()));
        let written = Arc::new(Notify::new());
        let (recorded, notify) = (writes.clone(), written.clone());
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (status, body) = if request.uri().path() == "/api/v1/namespaces/agents" {
                    // The namespace's uid: which cluster the profile names.
                    (
                        200,
                        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "agents", "uid": "uid-of-agents"}}),
                    )
                } else if request.method() == http::Method::GET {
                    (
                        200,
                        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": []}),
                    )
                } else {
                    let call = format!("{} {}", request.method(), request.uri().path());
                    let body = request.into_body().collect_bytes().await.unwrap();
                    recorded.lock().unwrap().push((call, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                    notify.notify_one();
                    (
                        500,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "no writes", "code": 500}),
                    )
                };
                respond.send_response(
                    Response::builder().status(status).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap(),
                );
            }
        });
        let runtime = Arc::new(KubernetesRuntime::with_client(
            kube::Client::new(service, "agents"),
            "agents",
            std::time::Duration::from_secs(5),
        ));
        Self { runtime, writes, written }
    }
}

impl RuntimeProvider for MockKubernetes {
    fn runtime(&self, _cluster: &ClusterSettings) -> Result<Arc<dyn Runtime>, RuntimeError> {
        Ok(self.runtime.clone())
    }
}

#[tokio::test]
async fn create_agent_on_kubernetes_refuses_every_escape_and_writes_nothing() {
    let mock = Arc::new(MockKubernetes::start());
    let h = Harness::start(mock.clone(), Clock::default(), ServiceOptions::default()).await.unwrap();
    let cluster = json!({"runtime": "kubernetes", "go_server_url": "https://gocd.example.com/go", "agent_image": AGENT_IMAGE,
                         "kubernetes_cluster_url": "https://127.0.0.1:1", "namespace": "agents"});
    for (i, escape) in ESCAPES.iter().enumerate() {
        assert_create_refused(&h, &cluster, 100 + i64::try_from(i).unwrap(), *escape).await;
    }
    assert!(mock.writes.lock().unwrap().is_empty(), "the API server got writes");
}

#[tokio::test]
async fn a_patch_within_the_allow_list_creates_a_pod() {
    let h = memory_harness().await;
    let patch = r#"{"metadata": {"labels": {"team": "payments"}}, "volumes": [{"name": "cache", "emptyDir": {}}],
                    "containers": [{"name": "agent", "env": [{"name": "TEAM", "value": "payments"}], "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}]}"#;
    assert_eq!(validate(&h.harness, patch).await, Vec::<Value>::new());
    let (status, answer) = create(&h.harness, &memory_cluster(&[]), 7, patch).await;
    assert_eq!(status, 200, "{answer}");
    crate::lifecycle::wait_pods(&h, 1).await;
}

const PUSH_SECRET: &str = r#"{"volumes": [{"name": "push", "secret": {"secretName": "registry"}}],
    "containers": [{"name": "agent", "volumeMounts": [{"name": "push", "mountPath": "/home/go/.docker"}]}]}"#;

fn kubernetes_cluster(allowed_secrets: &str) -> Value {
    json!({"runtime": "kubernetes", "go_server_url": "https://gocd.example.com/go", "agent_image": AGENT_IMAGE,
           "kubernetes_cluster_url": "https://127.0.0.1:1", "namespace": "agents", "allowed_secrets": allowed_secrets})
}

#[tokio::test]
async fn a_secret_of_the_namespace_is_refused_at_create_agent_unless_the_cluster_profile_allows_it() {
    let mock = Arc::new(MockKubernetes::start());
    let h = Harness::start(mock.clone(), Clock::default(), ServiceOptions::default()).await.unwrap();
    let ping = json!({"all_cluster_profile_properties": [kubernetes_cluster("")]});
    h.send("cd.go.elastic-agent.server-ping", &ping).await.unwrap();
    assert!(validate(&h, PUSH_SECRET).await.is_empty(), "validation never sees the cluster profile: shape only");
    let refusal = "spec.volumes[push].secret: Secret 'registry' is not in the cluster profile's allowed_secrets";
    for allowed in ["", "registry-pull, maven"] {
        assert_create_refused(&h, &kubernetes_cluster(allowed), 1, ("another pod's Secret", PUSH_SECRET, refusal))
            .await;
    }
    assert!(mock.writes.lock().unwrap().is_empty(), "the API server got writes");

    let (status, answer) = create(&h, &kubernetes_cluster("registry-pull, registry"), 2, PUSH_SECRET).await;
    assert_eq!(status, 200, "{answer}");
    mock.written.notified().await;
    let (call, pod) = mock.writes.lock().unwrap()[0].clone();
    assert_eq!(call, "POST /api/v1/namespaces/agents/pods");
    let volumes = pod["spec"]["volumes"].as_array().unwrap();
    assert!(volumes.iter().any(|v| v["secret"]["secretName"] == "registry"), "{volumes:?}");
}
