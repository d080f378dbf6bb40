//! The Kubernetes runtime against a fake API server (tower-test) for what a real cluster
//! cannot do on demand: calls that never answer, credentials that expire, a pod replaced
//! under the same name, admission and RBAC refusals. Each fake answers by method and path
//! and records every call, so a test asserts exactly what reached the API server. The
//! real-cluster proofs are in kubernetes_e2e.rs.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gocd_dind::listing::PoolShape;
use gocd_dind::pod::{build, AgentPod, Binding, Ownership, PodRequest};
use gocd_dind::protocol::{JobIdentifier, Properties};
use gocd_dind::runtime::kubernetes::KubernetesRuntime;
use gocd_dind::runtime::{Runtime, RuntimeError, StartOptions};
use gocd_dind::settings::{ClusterId, ClusterSettings, ElasticSettings, PoolId};
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::client::Body;
use serde_json::{json, Value};
use tokio::sync::mpsc;

type Reply = Response<BoxBody<Bytes, Infallible>>;
type Handle = tower_test::mock::Handle<Request<Body>, Reply>;
type Frame = Result<http_body::Frame<Bytes>, Infallible>;

/// What the fake API server answers to one call.
enum Answer {
    Json(u16, Value),
    /// Never answers (a hung API server, or a watch with nothing to say).
    Hang,
}

#[derive(Debug, Clone)]
struct Call {
    method: String,
    target: String,
    body: Value,
}

/// A fake API server: `answer` decides each reply; every call is recorded.
fn api_server(answer: impl Fn(&Call) -> Answer + Send + 'static) -> (kube::Client, Arc<Mutex<Vec<Call>>>) {
    let (service, mut handle): (_, Handle) = tower_test::mock::pair();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let recorded = calls.clone();
    tokio::spawn(async move {
        // Hung calls and open watch streams stay pending as long as the fake runs.
        let (mut hung, mut open_streams) = (Vec::new(), Vec::new());
        while let Some((request, respond)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let call = Call {
                method: parts.method.to_string(),
                target: parts.uri.path_and_query().unwrap().to_string(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            recorded.lock().unwrap().push(call.clone());
            match answer(&call) {
                Answer::Json(status, value) => {
                    let body = Full::new(Bytes::from(serde_json::to_vec(&value).unwrap())).boxed();
                    respond.send_response(Response::builder().status(status).body(body).unwrap());
                }
                Answer::Hang if call.target.contains("watch=true") => {
                    let (sender, receiver) = mpsc::channel::<Frame>(1);
                    let stream = StreamBody::new(stream_of(receiver)).boxed();
                    respond.send_response(Response::builder().status(200).body(stream).unwrap());
                    open_streams.push(sender);
                }
                Answer::Hang => hung.push(respond),
            }
        }
    });
    (kube::Client::new(service, "agents"), calls)
}

fn stream_of<T: Send + 'static>(mut receiver: mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
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
        binding: Binding::Job {
            job: &JobIdentifier { job_id: 9, ..JobIdentifier::default() },
            environment: None,
            auto_register_key: "key-9",
        },
        tls: Some(&gocd_dind::tls::mint("gocd-dind-k1").unwrap()),
    })
    .unwrap()
}

fn start() -> StartOptions {
    StartOptions { budget: Duration::from_secs(60), progress: Box::new(|_| {}), dockerd_ready: Box::new(|| {}) }
}

fn status(code: u16, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": "", "code": code})
}

fn pod_list(items: &[Value]) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "10"}, "items": items})
}

/// Our pod as the API server shows it, running.
fn listed_pod(uid: &str) -> Value {
    let mut value = serde_json::to_value(agent_pod().pod).unwrap();
    value["metadata"]["uid"] = json!(uid);
    value["metadata"]["resourceVersion"] = json!("9");
    value["metadata"]["creationTimestamp"] = json!("2026-11-30T00:00:00Z");
    value["status"] = json!({"phase": "Running", "containerStatuses": [{"name": "agent", "image": "a", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]});
    value
}

fn is_list(call: &Call) -> bool {
    call.method == "GET"
        && call.target.starts_with("/api/v1/namespaces/agents/pods?")
        && !call.target.contains("watch=true")
}

fn is_watch(call: &Call) -> bool {
    call.target.starts_with("/api/v1/namespaces/agents/pods?") && call.target.contains("watch=true")
}

#[tokio::test]
async fn a_call_the_api_server_never_answers_fails_within_the_request_timeout() {
    let (client, _) = api_server(|_| Answer::Hang);
    let runtime = KubernetesRuntime::with_client(client, "agents", Duration::from_millis(300));
    let error = runtime.describe().await.unwrap_err();
    assert!(
        matches!(&error, RuntimeError::Unreachable(m) if m.contains("300 ms") && m.contains("cluster_request_timeout")),
        "{error}"
    );
    // The watch's first listing hangs too: a listing is refused, never answered stale.
    let error = runtime.list_pods(&owner()).await.unwrap_err();
    assert!(matches!(&error, RuntimeError::Unreachable(m) if m.contains("has not listed pods")), "{error}");
}

#[tokio::test]
async fn the_watch_selects_gocd_dind_pods_and_lists_only_this_owners_live_pods() {
    let mut foreign = listed_pod("uid-2");
    foreign["metadata"]["name"] = json!("gocd-dind-theirs");
    foreign["metadata"]["labels"]["gocd-dind.gocd.org/server-id"] = json!("another-gocd");
    let mut leaving = listed_pod("uid-3");
    leaving["metadata"]["name"] = json!("gocd-dind-leaving");
    leaving["metadata"]["deletionTimestamp"] = json!("2026-11-30T00:01:00Z");
    let items = [listed_pod("uid-1"), foreign, leaving];
    let (client, calls) = api_server(move |call| match call {
        c if is_list(c) => Answer::Json(200, pod_list(&items)),
        _ => Answer::Hang,
    });
    let runtime = KubernetesRuntime::with_client(client, "agents", Duration::from_secs(5));
    let pods = runtime.list_pods(&owner()).await.unwrap();
    let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["gocd-dind-k1"], "another server's pod and a pod being deleted are not ours to count");
    assert_eq!(pods[0].job.as_ref().map(|j| j.job_id), Some(9), "the job identifier comes back from the annotation");
    runtime.list_pods(&owner()).await.unwrap();
    let calls = calls.lock().unwrap().clone();
    let lists: Vec<&Call> = calls.iter().filter(|c| is_list(c)).collect();
    assert_eq!(lists.len(), 1, "listing twice asks the API server once: {calls:?}");
    assert!(
        lists[0].target.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dgocd-dind"),
        "{}",
        lists[0].target
    );
}

#[tokio::test]
async fn a_refused_listing_names_rbac_at_once() {
    let (client, _) = api_server(|call| match call {
        c if is_list(c) => {
            Answer::Json(403, status(403, "pods is forbidden: User \"system:serviceaccount:gocd:x\" cannot list"))
        }
        _ => Answer::Hang,
    });
    // A long request timeout: the refusal must not wait for it.
    let runtime = KubernetesRuntime::with_client(client, "agents", Duration::from_secs(600));
    let error = tokio::time::timeout(Duration::from_secs(30), runtime.list_pods(&owner()))
        .await
        .expect("a refusal is reported as soon as it arrives")
        .unwrap_err();
    assert!(error.to_string().contains("RBAC") && error.to_string().contains("deploy/kubernetes"), "{error}");
}

#[tokio::test]
async fn a_401_rebuilds_the_client_and_the_call_is_tried_once_more() {
    let (expired, first_calls) = api_server(|_| Answer::Json(401, status(401, "Unauthorized")));
    let (renewed, second_calls) = api_server(|call| match call.target.as_str() {
        "/version" => Answer::Json(
            200,
            json!({"major": "1", "minor": "32", "gitVersion": "v1.32.9", "gitCommit": "", "gitTreeState": "", "buildDate": "", "goVersion": "", "compiler": "", "platform": ""}),
        ),
        _ => Answer::Hang,
    });
    let clients = Mutex::new(vec![renewed, expired]);
    let runtime = KubernetesRuntime::with_clients(
        move || clients.lock().unwrap().pop().expect("rebuilt once"),
        "agents",
        Duration::from_secs(5),
    );
    let described = runtime.describe().await.unwrap();
    assert!(described.contains("v1.32.9"), "{described}");
    assert_eq!(first_calls.lock().unwrap().len(), 1, "the expired client was asked once");
    assert_eq!(second_calls.lock().unwrap().len(), 1, "the rebuilt client answered");
}

#[tokio::test]
async fn delete_carries_the_uid_and_leaves_a_pod_that_replaced_ours() {
    let (client, calls) = api_server(|call| match (call.method.as_str(), call.target.as_str()) {
        (_, _) if is_list(call) => Answer::Json(200, pod_list(&[listed_pod("uid-1")])),
        ("DELETE", t) if t.starts_with("/api/v1/namespaces/agents/pods/gocd-dind-k1") => {
            Answer::Json(409, status(409, "Precondition failed: UID in precondition: uid-1, UID in object meta: uid-7"))
        }
        ("GET", t) if t.starts_with("/api/v1/namespaces/agents/secrets/gocd-dind-k1-tls") => {
            Answer::Json(404, status(404, "not found"))
        }
        _ => Answer::Hang,
    });
    let runtime = KubernetesRuntime::with_client(client, "agents", Duration::from_secs(5));
    runtime.delete_pod(&owner(), "gocd-dind-k1").await.expect("a pod replaced under our name is left, not an error");
    let calls = calls.lock().unwrap().clone();
    let delete = calls.iter().find(|c| c.method == "DELETE").expect("a DELETE reached the API server");
    assert_eq!(delete.body["preconditions"]["uid"], "uid-1", "{delete:?}");
}

#[tokio::test]
async fn someone_elses_pod_of_the_same_name_is_never_deleted() {
    let mut foreign = listed_pod("uid-1");
    foreign["metadata"]["labels"]["gocd-dind.gocd.org/server-id"] = json!("another-gocd");
    let (client, calls) = api_server(move |call| match call {
        c if is_list(c) => Answer::Json(200, pod_list(std::slice::from_ref(&foreign))),
        c if c.target.contains("/secrets/") => Answer::Json(404, status(404, "not found")),
        _ => Answer::Hang,
    });
    let runtime = KubernetesRuntime::with_client(client, "agents", Duration::from_secs(5));
    runtime.delete_pod(&owner(), "gocd-dind-k1").await.unwrap();
    assert!(!calls.lock().unwrap().iter().any(|c| c.method == "DELETE"), "{:?}", calls.lock().unwrap());
}

#[tokio::test]
async fn a_pod_security_refusal_is_not_blamed_on_rbac_and_nothing_is_left() {
    let (client, calls) = api_server(|call| match (call.method.as_str(), call.target.as_str()) {
        (_, _) if is_list(call) => Answer::Json(200, pod_list(&[])),
        ("POST", t) if t.starts_with("/api/v1/namespaces/agents/pods") => Answer::Json(
            403,
            status(403, "pods \"gocd-dind-k1\" is forbidden: violates PodSecurity \"baseline:latest\": privileged"),
        ),
        _ => Answer::Hang,
    });
    let runtime = KubernetesRuntime::with_client(client, "agents", Duration::from_secs(5));
    let error = runtime.create_pod(&agent_pod(), &start()).await.unwrap_err().to_string();
    assert!(error.contains("pod-security.kubernetes.io/enforce") && !error.contains("RBAC"), "{error}");
    let calls = calls.lock().unwrap().clone();
    assert!(!calls.iter().any(|c| c.target.contains("/secrets")), "no Secret without its pod: {calls:?}");
    assert!(calls.iter().any(is_watch), "the pod watch was running before the create: {calls:?}");
}

/// The service keys a Kubernetes profile by this (`Runtime::identity`): one read of the
/// agents' namespace; a refusal names RBAC.
#[tokio::test]
async fn identity_is_the_uid_of_the_agents_namespace() {
    let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refusing = refuse.clone();
    let (client, calls) = api_server(move |call| match (call.method.as_str(), call.target.as_str()) {
        ("GET", "/api/v1/namespaces/agents") if refusing.load(std::sync::atomic::Ordering::SeqCst) => {
            Answer::Json(403, status(403, "namespaces \"agents\" is forbidden"))
        }
        ("GET", "/api/v1/namespaces/agents") => Answer::Json(
            200,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "agents", "uid": "4b0c-agents"}}),
        ),
        _ => Answer::Hang,
    });
    let runtime = KubernetesRuntime::with_client(client, "agents", Duration::from_secs(5));
    assert_eq!(runtime.identity().await.unwrap(), "4b0c-agents");
    refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    let refused = runtime.identity().await.unwrap_err().to_string();
    assert!(refused.contains("RBAC"), "{refused}");
    let targets: Vec<String> = calls.lock().unwrap().iter().map(|c| format!("{} {}", c.method, c.target)).collect();
    assert_eq!(targets, ["GET /api/v1/namespaces/agents", "GET /api/v1/namespaces/agents"]);
}

/// A warm pod of pool P as built, or `None`: the job's claim of it (no TLS material).
fn warm_or_claim(warm: bool) -> AgentPod {
    let cluster = ClusterSettings::parse(
        &Properties::from_pairs(&[("agent_image", "gocd/gocd-agent-wolfi:v25.4.0"), ("runtime", "kubernetes")]),
        false,
    )
    .unwrap();
    let elastic = ElasticSettings::parse(&Properties::default()).unwrap();
    let (pool, shape) = (PoolId("P".into()), PoolShape { size: 1, idle: Duration::from_secs(1800) });
    let job = JobIdentifier { job_id: 9, ..JobIdentifier::default() };
    let binding = if warm {
        Binding::Warm { pool: &pool, shape }
    } else {
        Binding::Job { job: &job, environment: None, auto_register_key: "key-9" }
    };
    let tls = gocd_dind::tls::mint("gocd-dind-w1").unwrap();
    build(&PodRequest {
        name: "gocd-dind-w1",
        ownership: &owner(),
        go_server_url: "https://gocd.example.com/go",
        cluster: &cluster,
        elastic: &elastic,
        binding,
        tls: warm.then_some(&tls),
    })
    .unwrap()
}

/// The warm pod as the API server shows it, up; with `job` set, bound to that job.
fn listed_warm(job: Option<i64>) -> Value {
    let mut value = serde_json::to_value(warm_or_claim(true).pod).unwrap();
    value["metadata"]["uid"] = json!("uid-w1");
    value["metadata"]["resourceVersion"] = json!("9");
    value["metadata"]["creationTimestamp"] = json!("2026-11-30T00:00:00Z");
    if let Some(job) = job {
        value["metadata"]["labels"][gocd_dind::pod::label_keys::JOB_ID] = json!(job.to_string());
    }
    value["status"] = json!({"phase": "Running", "containerStatuses": [
        {"name": "agent", "image": "a", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}},
        {"name": "dind", "image": "d", "imageID": "", "ready": true, "restartCount": 0, "started": true, "state": {"running": {}}}]});
    value
}

/// A claim whose bind the API server refuses (422): a lost race only when the pod, read
/// from the API server, is bound to a job now; else a refusal, so the pod is removed
/// rather than left warm for the next job to "lose" again.
#[tokio::test]
async fn a_refused_bind_is_a_lost_race_only_when_another_job_holds_the_pod() {
    for (now_bound, lost) in [(Some(12), true), (None, false)] {
        let (client, calls) = api_server(move |call| match (call.method.as_str(), call.target.as_str()) {
            (_, _) if is_list(call) => Answer::Json(200, pod_list(&[listed_warm(None)])),
            ("PATCH", t) if t.starts_with("/api/v1/namespaces/agents/pods/gocd-dind-w1") => {
                Answer::Json(422, status(422, "the server rejected our request due to an error in our request"))
            }
            ("GET", t) if t.starts_with("/api/v1/namespaces/agents/pods/gocd-dind-w1") => {
                Answer::Json(200, listed_warm(now_bound))
            }
            _ => Answer::Hang,
        });
        let runtime = KubernetesRuntime::with_client(client, "agents", Duration::from_secs(5));
        let error = runtime.claim_pod(&owner(), &warm_or_claim(false)).await.unwrap_err();
        assert_eq!(matches!(error, RuntimeError::AlreadyClaimed(_)), lost, "bound to {now_bound:?}: {error}");
        let calls = calls.lock().unwrap().clone();
        assert!(!calls.iter().any(|c| c.method == "POST"), "no exec after a refused bind: {calls:?}");
    }
}
