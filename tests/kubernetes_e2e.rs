//! Kubernetes end to end: the service against the local cluster that `.ci/k8s-up.sh`
//! brings up, driven over HTTP the way GoCD (through the shim) drives it, as the
//! ServiceAccount bound to the Role in `deploy/kubernetes` (so that Role is proven to be
//! enough), and inspected with an admin client and `kubectl`.
//!
//! They need the cluster and FAIL without it: `bash .ci/k8s-up.sh` (as root; scripts/test.sh
//! runs it) prints the kubeconfig path these tests read from GOCD_DIND_KUBECONFIG (default
//! `/var/lib/gocd-dind-k8s/kubeconfig/admin.kubeconfig`).
//!
//! Each test uses job ids of its own and, at its end, checks that no pod or Secret of them
//! is left; a [`Sweep`] removes what a failed test left behind.

use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use gocd_dind::clock::Clock;
use gocd_dind::demo::{create_agent_body, job_identifier, Harness};
use gocd_dind::pod::label_keys;
use gocd_dind::runtime::Runtimes;
use gocd_dind::service::ServiceOptions;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{json, Value};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::local_cluster::{self, admin, kubeconfig, kubectl, kubectl_status, kubectl_with_input, NAMESPACE};
use crate::support::{Served, JOB_IMAGE, JOB_IMAGE_TAR};

/// A bound for waits that would otherwise hang a broken run; never a timing claim.
const GONE_WITHIN: Duration = Duration::from_secs(120);

/// Pods that may start at once across this file's tests (2 cores, dind images).
static POD_SLOTS: Semaphore = Semaphore::const_new(2);

pub(crate) async fn pod_slots(pods: u32) -> SemaphorePermit<'static> {
    POD_SLOTS.acquire_many(pods).await.expect("the pod semaphore is never closed")
}

/// The cluster profile every test starts from (`local_cluster::prepare`, once per binary).
pub(crate) fn profile() -> &'static Value {
    static PROFILE: OnceLock<Value> = OnceLock::new();
    PROFILE.get_or_init(local_cluster::prepare)
}

pub(crate) fn pods(client: &kube::Client) -> Api<Pod> {
    Api::namespaced(client.clone(), NAMESPACE)
}

fn secrets(client: &kube::Client) -> Api<Secret> {
    Api::namespaced(client.clone(), NAMESPACE)
}

/// Job ids no other test (and no earlier run) uses: they are the handle on a test's pods.
pub(crate) fn job_id() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static NEXT: OnceLock<AtomicI64> = OnceLock::new();
    NEXT.get_or_init(|| {
        let micros = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros();
        AtomicI64::new(i64::try_from(micros % 1_000_000_000_000).unwrap() * 100 + 50)
    })
    .fetch_add(1, Ordering::Relaxed)
}

async fn harness() -> Harness {
    harness_with(Clock::default()).await
}

pub(crate) async fn harness_with(clock: Clock) -> Harness {
    Harness::start(std::sync::Arc::new(Runtimes::new()), clock, ServiceOptions::default())
        .await
        .expect("the service starts on loopback")
}

pub(crate) async fn send(h: &Harness, request: &str, body: &Value) -> String {
    let (status, text) = h.send(request, body).await.unwrap_or_else(|e| panic!("{request}: no answer: {e}"));
    assert_eq!(status, 200, "{request} answered {status}: {text}");
    text
}

pub(crate) fn completion(profile: &Value, pod: &str, job: i64) -> Value {
    json!({"elastic_agent_id": pod, "job_identifier": job_identifier(job), "cluster_profile_properties": profile, "elastic_agent_profile_properties": {}})
}

/// Waits until the pod start create-agent began has ended; returns the pod's name when
/// it is up (its agent container runs).
pub(crate) async fn wait_up(h: &Harness, job: i64) -> String {
    h.service.settle().await;
    match h.service.pod_of_job(job) {
        Some(record) => record.info.name,
        None => panic!(
            "the pod for job {job} did not start: {:?}; console:\n{}",
            h.service.last_failure(job).map(|f| f.reason),
            h.gocd.console_text()
        ),
    }
}

/// Waits until the API server has the kubelet's `Started` event of one of the pod's
/// containers (events are written asynchronously, after the status).
async fn started_event(client: &kube::Client, pod: &str) {
    use futures_util::TryStreamExt;
    use kube::runtime::{watcher, WatchStreamExt};
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), NAMESPACE);
    let config = watcher::Config::default().fields(&format!("involvedObject.name={pod}"));
    let mut stream = std::pin::pin!(watcher(events, config).applied_objects());
    let started = async {
        while let Some(event) = stream.try_next().await.unwrap() {
            if event.reason.as_deref() == Some("Started") {
                return;
            }
        }
    };
    tokio::time::timeout(GONE_WITHIN, started)
        .await
        .unwrap_or_else(|_| panic!("no Started event for pod {pod} after {} s", GONE_WITHIN.as_secs()));
}

/// Waits until the pod and its Secret are gone from the API.
pub(crate) async fn assert_gone(client: &kube::Client, pod: &str) {
    let pod_uid = pods(client).get_opt(pod).await.unwrap().and_then(|p| p.metadata.uid);
    if let Some(uid) = pod_uid {
        tokio::time::timeout(GONE_WITHIN, await_condition(pods(client), pod, conditions::is_deleted(&uid)))
            .await
            .unwrap_or_else(|_| panic!("pod {pod} still exists after {} s", GONE_WITHIN.as_secs()))
            .unwrap();
    }
    let secret = format!("{pod}-tls");
    let secret_uid = secrets(client).get_opt(&secret).await.unwrap().and_then(|s| s.metadata.uid);
    if let Some(uid) = secret_uid {
        tokio::time::timeout(GONE_WITHIN, await_condition(secrets(client), &secret, conditions::is_deleted(&uid)))
            .await
            .unwrap_or_else(|_| panic!("Secret {secret} still exists after {} s", GONE_WITHIN.as_secs()))
            .unwrap();
    }
}

/// Pods and Secrets labelled with these job ids.
async fn objects_of(client: &kube::Client, jobs: &[i64]) -> Vec<String> {
    let mut found = Vec::new();
    for job in jobs {
        let selector = ListParams::default().labels(&format!("{}={job}", label_keys::JOB_ID));
        found.extend(
            pods(client)
                .list(&selector)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|p| format!("pod {}", p.metadata.name.unwrap_or_default())),
        );
        found.extend(
            secrets(client)
                .list(&selector)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|s| format!("secret {}", s.metadata.name.unwrap_or_default())),
        );
    }
    found
}

/// Removes whatever a test leaves under its job ids, also when it panicked.
pub(crate) struct Sweep(pub Vec<i64>);

impl Drop for Sweep {
    fn drop(&mut self) {
        let jobs: Vec<String> = self.0.iter().map(i64::to_string).collect();
        let selector = format!("{} in ({})", label_keys::JOB_ID, jobs.join(","));
        let _ = std::process::Command::new("kubectl")
            .args([
                "--kubeconfig",
                &kubeconfig(),
                "-n",
                NAMESPACE,
                "delete",
                "pods,secrets",
                "-l",
                &selector,
                "--wait=false",
            ])
            .output();
    }
}

/// `sh -c script` in one container of a pod; returns exit status and output.
pub(crate) async fn exec(pod: &str, container: &str, script: &str, stdin: Option<&str>) -> (bool, String) {
    let mut command = tokio::process::Command::new("kubectl");
    command.args(["--kubeconfig", &kubeconfig(), "-n", NAMESPACE, "exec"]);
    if stdin.is_some() {
        command.arg("-i");
    }
    command.args([pod, "-c", container, "--", "sh", "-c", script]);
    command.stdin(match stdin {
        Some(file) => Stdio::from(std::fs::File::open(file).unwrap()),
        None => Stdio::null(),
    });
    let out = command.output().await.expect("kubectl exec runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

pub(crate) async fn exec_ok(pod: &str, container: &str, script: &str) -> String {
    let (ok, out) = exec(pod, container, script, None).await;
    assert!(ok, "in {pod}/{container}: `{script}` failed:\n{out}");
    out
}

/// What a job does: talks to its pod's dockerd over TLS, loads an image (no registry
/// here), and `docker run -v $PWD` from a workspace under /godata (play-job checks the
/// inner container sees the file the agent wrote).
pub(crate) async fn run_job(pod: &str) -> String {
    let (ok, out) = exec(pod, "agent", "docker load -q", Some(JOB_IMAGE_TAR)).await;
    assert!(ok, "docker load in {pod} failed:\n{out}");
    exec_ok(pod, "agent", "play-job").await
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_run_docker_run_v_from_godata_over_mutual_tls_in_both_dind_security_modes() {
    let client = admin().await;
    let _slots = pod_slots(2).await;
    let jobs = [job_id(), job_id()];
    let _sweep = Sweep(jobs.to_vec());
    let h = harness().await;
    let capabilities = profile().clone();
    let mut privileged = profile().clone();
    privileged["dind_security"] = json!("privileged");

    send(&h, "cd.go.elastic-agent.create-agent", &create_agent_body(&capabilities, jobs[0])).await;
    send(&h, "cd.go.elastic-agent.create-agent", &create_agent_body(&privileged, jobs[1])).await;
    let names = [wait_up(&h, jobs[0]).await, wait_up(&h, jobs[1]).await];

    for (name, mode) in names.iter().zip(["capabilities", "privileged"]) {
        let pod = pods(&client).get(name).await.unwrap();
        let spec = pod.spec.as_ref().unwrap();
        let dind = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(
            (dind.name.as_str(), dind.restart_policy.as_deref()),
            ("dind", Some("Always")),
            "dind is a native sidecar"
        );
        let probe = dind.startup_probe.as_ref().and_then(|p| p.exec.as_ref()).and_then(|e| e.command.clone()).unwrap();
        assert!(probe.contains(&"--tlsverify".to_owned()), "the startup probe is an API call over TLS: {probe:?}");
        let status = pod.status.as_ref().unwrap();
        assert!(status.init_container_statuses.as_ref().unwrap()[0].started == Some(true), "{mode}: dind started");
        let version =
            exec_ok(name, "agent", "docker version --format '{{.Server.Version}}' && env | grep ^DOCKER_ | sort").await;
        assert!(
            version.contains("DOCKER_HOST=tcp://127.0.0.1:2376") && version.contains("DOCKER_TLS_VERIFY=1"),
            "{mode}: {version}"
        );
        let (plain, out) =
            exec(name, "agent", "DOCKER_TLS_VERIFY= DOCKER_CERT_PATH= docker -H tcp://127.0.0.1:2376 version", None)
                .await;
        assert!(!plain, "{mode}: dockerd answered without a client certificate:\n{out}");
        let job = run_job(name).await;
        assert!(job.contains("play-job: OK"), "{mode}: {job}");
        println!("{mode}: {}", job.trim());
    }

    // The agent page: the pod's timeline and its events, read under the Role.
    started_event(&client, &names[0]).await;
    let report = send(
        &h,
        "cd.go.elastic-agent.agent-status-report",
        &json!({"job_identifier": job_identifier(jobs[0]), "cluster_profile_properties": profile()}),
    )
    .await;
    for text in ["<td>dockerd ready</td>", "<td>agent started</td>", "Kubernetes events", "Started"] {
        assert!(report.contains(text), "the agent status report shows {text:?}:\n{report}");
    }

    for (name, job) in names.iter().zip(jobs) {
        h.gocd.set_agent(name, "Idle", "Enabled");
        send(&h, "cd.go.elastic-agent.job-completion", &completion(profile(), name, job)).await;
    }
    let report = send(
        &h,
        "cd.go.elastic-agent.agent-status-report",
        &json!({"job_identifier": job_identifier(jobs[0]), "cluster_profile_properties": profile()}),
    )
    .await;
    assert!(report.contains("Post-mortem of pod") && report.contains("its job completed"), "{report}");
    for name in &names {
        assert_gone(&client, name).await;
    }
    assert_eq!(objects_of(&client, &jobs).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_holds_no_cluster_credentials_no_host_socket_and_no_other_pod_reaches_its_dockerd() {
    let client = admin().await;
    let _slots = pod_slots(2).await;
    let jobs = [job_id(), job_id()];
    let _sweep = Sweep(jobs.to_vec());
    let h = harness().await;
    for job in jobs {
        send(&h, "cd.go.elastic-agent.create-agent", &create_agent_body(profile(), job)).await;
    }
    let [a, b] = [wait_up(&h, jobs[0]).await, wait_up(&h, jobs[1]).await];

    let pod = pods(&client).get(&a).await.unwrap();
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.automount_service_account_token, Some(false));
    let agent = spec.containers.iter().find(|c| c.name == "agent").unwrap();
    let security = agent.security_context.as_ref().unwrap();
    assert_eq!((security.privileged, security.allow_privilege_escalation), (Some(false), Some(false)));
    let inside = exec_ok(
        &a,
        "agent",
        "ls /var/run/secrets/kubernetes.io 2>&1; ls -l /var/run/docker.sock /run/docker.sock 2>&1; \
         grep CapEff /proc/self/status; id -u; ls /gocd-dind/tls",
    )
    .await;
    assert!(
        inside.contains("cannot access '/var/run/secrets/kubernetes.io': No such file"),
        "no service-account token:\n{inside}"
    );
    assert!(!inside.contains("srw"), "no Docker socket in the agent:\n{inside}");
    assert!(inside.contains("CapEff:\t0000000000000000"), "the agent (uid 1000) holds no capabilities:\n{inside}");
    assert!(inside.contains("ca.pem") && inside.contains("key.pem"), "the client certificate is mounted:\n{inside}");
    let secret = secrets(&client).get(&format!("{a}-tls")).await.unwrap();
    let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Pod", a.as_str()));
    assert_eq!(Some(&owner.uid), pod.metadata.uid.as_ref(), "the Secret is owned by this very pod");

    // From the other pod, the first pod's address: dockerd listens on its loopback only.
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("a pod IP");
    for port in [2376, 2375] {
        let probe = format!("timeout 5 bash -c '</dev/tcp/{ip}/{port}' && echo CONNECTED || echo REFUSED");
        let out = exec_ok(&b, "agent", &probe).await;
        assert!(out.contains("REFUSED") && !out.contains("CONNECTED"), "pod {b} reached {ip}:{port}:\n{out}");
    }
    let theirs = format!("docker --tlsverify -H tcp://{ip}:2376 version 2>&1 || true");
    let out = exec_ok(&b, "agent", &theirs).await;
    assert!(!out.contains("Server:"), "pod {b} talked to the dockerd of {a}:\n{out}");

    for (name, job) in [(&a, jobs[0]), (&b, jobs[1])] {
        h.gocd.set_agent(name, "Idle", "Enabled");
        send(&h, "cd.go.elastic-agent.job-completion", &completion(profile(), name, job)).await;
        assert_gone(&client, name).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_agent_sent_five_times_at_once_makes_one_pod() {
    let client = admin().await;
    let _slots = pod_slots(1).await;
    let job = job_id();
    let _sweep = Sweep(vec![job]);
    let h = harness().await;
    let body = create_agent_body(profile(), job);
    let answers =
        futures_util::future::join_all((0..5).map(|_| h.send("cd.go.elastic-agent.create-agent", &body))).await;
    for answer in answers {
        let (status, text) = answer.unwrap();
        assert_eq!(status, 200, "{text}");
    }
    let name = wait_up(&h, job).await;
    // GoCD keeps asking while the job waits: once more after the pod is up.
    send(&h, "cd.go.elastic-agent.create-agent", &body).await;
    let listed = objects_of(&client, &[job]).await;
    assert_eq!(listed, [format!("pod {name}"), format!("secret {name}-tls")], "one pod (and its Secret) for job {job}");
    assert_eq!(h.gocd.console_text().matches("Creating agent pod").count(), 1, "{}", h.gocd.console_text());
    h.gocd.set_agent(&name, "Idle", "Enabled");
    send(&h, "cd.go.elastic-agent.job-completion", &completion(profile(), &name, job)).await;
    assert_gone(&client, &name).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_whose_agent_never_registers_is_removed_by_server_ping() {
    let client = admin().await;
    let _slots = pod_slots(1).await;
    let job = job_id();
    let _sweep = Sweep(vec![job]);
    let clock = Clock::default();
    let h = harness_with(clock.clone()).await;
    let ping = json!({"all_cluster_profile_properties": [profile()]});
    send(&h, "cd.go.elastic-agent.create-agent", &create_agent_body(profile(), job)).await;
    let name = wait_up(&h, job).await;
    send(&h, "cd.go.elastic-agent.server-ping", &ping).await;
    assert!(
        pods(&client).get_opt(&name).await.unwrap().is_some_and(|p| p.metadata.deletion_timestamp.is_none()),
        "a pod within its auto-register timeout stays"
    );

    // This service's own pods only: each fake GoCD is a server of its own.
    clock.advance(Duration::from_secs(11 * 60));
    send(&h, "cd.go.elastic-agent.server-ping", &ping).await;
    assert_gone(&client, &name).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn job_completion_after_the_service_was_killed_and_restarted_removes_the_pod_and_its_secret() {
    let client = admin().await;
    let _slots = pod_slots(1).await;
    let job = job_id();
    let _sweep = Sweep(vec![job]);
    let token = uuid::Uuid::new_v4().simple().to_string();
    let gocd = gocd_dind::fake_gocd::FakeGocd::start(&token).await.unwrap();

    let mut first = Served::start(&gocd.url, &token, &[], &[]).await;
    let (status, text) = first.send("cd.go.elastic-agent.create-agent", &create_agent_body(profile(), job)).await;
    assert_eq!(status, 200, "{text}");
    // The service says so in the job's console once the agent container runs.
    gocd.wait_until(|g| g.console_text().contains("is up after") || g.console_text().contains("failed to start")).await;
    let console = gocd.console_text();
    let name = crate::support::pod_in_console(&console);
    assert!(console.contains("is up after"), "{console}");
    gocd.set_agent(&name, "Building", "Enabled");
    first.child.kill().await.expect("SIGKILL to the first service");
    assert!(pods(&client).get_opt(&name).await.unwrap().is_some(), "killing the service leaves the job's pod");

    let second = Served::start(&gocd.url, &token, &[], &[]).await;
    gocd.set_agent(&name, "Idle", "Enabled");
    let completed = second.send("cd.go.elastic-agent.job-completion", &completion(profile(), &name, job)).await;
    assert_eq!(completed.0, 200, "{}", completed.1);
    assert_gone(&client, &name).await;
    let deleted = gocd.calls_to("go.processor.elastic-agents.delete-agents");
    assert!(deleted.iter().any(|c| c.body.contains(&name)), "the agent was deleted: {deleted:?}");
}

/// A pod that cannot start, whatever the reason, is explained in the job's console and
/// the agent status report, and removed.
async fn assert_explained_and_removed(h: &Harness, profile: &Value, job: i64, expected: &[&str]) {
    let client = admin().await;
    h.service.settle().await;
    assert!(
        h.service.last_failure(job).is_some(),
        "the pod start ended without a failure; console:\n{}",
        h.gocd.console_text()
    );
    let console = h.gocd.console_text();
    let report = send(
        h,
        "cd.go.elastic-agent.agent-status-report",
        &json!({"job_identifier": job_identifier(job), "cluster_profile_properties": profile}),
    )
    .await;
    for text in expected {
        assert!(console.contains(text), "the job console says {text:?}:\n{console}");
        assert!(
            report.contains(&html_escape::encode_text(text).to_string()),
            "the agent status report says {text:?}:\n{report}"
        );
    }
    assert!(console.contains("failed to start and was removed"), "{console}");
    let pod = h.service.last_failure(job).unwrap().pod;
    assert_gone(&client, &pod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_that_does_not_exist_is_explained_and_the_pod_removed() {
    let _slots = pod_slots(1).await;
    let job = job_id();
    let _sweep = Sweep(vec![job]);
    let h = harness().await;
    let mut profile = profile().clone();
    profile["agent_image"] = json!("gocd-dind-test/no-such-image:1");
    send(&h, "cd.go.elastic-agent.create-agent", &create_agent_body(&profile, job)).await;
    assert_explained_and_removed(&h, &profile, job, &["ErrImagePull", "gocd-dind-test/no-such-image:1"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dind_that_never_answers_is_explained_with_its_log_and_the_pod_removed() {
    let _slots = pod_slots(1).await;
    let job = job_id();
    let _sweep = Sweep(vec![job]);
    let h = harness().await;
    // Debian without docker.io: the dind script fails at once (no docker CLI, no dockerd).
    let mut profile = profile().clone();
    profile["dind_image"] = json!(JOB_IMAGE);
    send(&h, "cd.go.elastic-agent.create-agent", &create_agent_body(&profile, job)).await;
    assert_explained_and_removed(&h, &profile, job, &["dind exited with code", "cannot stat"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_no_node_can_take_is_explained_and_removed_when_its_start_budget_ends() {
    let job = job_id();
    let _sweep = Sweep(vec![job]);
    let h = harness().await;
    // The start budget is the auto-register timeout: a pod must be up before its agent
    // can register. One minute, the shortest a profile allows.
    let mut profile = profile().clone();
    profile["auto_register_timeout"] = json!("1");
    let mut body = create_agent_body(&profile, job);
    body["elastic_agent_profile_properties"] =
        json!({"PodSpecPatch": r#"{"nodeSelector": {"gocd-dind.test/no-such-node": "true"}}"#});
    send(&h, "cd.go.elastic-agent.create-agent", &body).await;
    // Told while it waits, not only when it gives up.
    h.gocd.wait_until(|g| g.console_text().contains("cannot be scheduled yet")).await;
    assert!(h.service.pod_of_job(job).is_some(), "the console told before the pod was given up");
    assert_explained_and_removed(
        &h,
        &profile,
        job,
        &["not scheduled within 60 s", "didn't match Pod's node affinity/selector"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_without_the_role_is_refused_and_the_refusal_names_rbac() {
    let job = job_id();
    let _sweep = Sweep(vec![job]);
    let token = local_cluster::token_without_role();
    let mut profile = profile().clone();
    profile["security_token"] = json!(token);
    let h = harness().await;
    send(&h, "cd.go.elastic-agent.create-agent", &create_agent_body(&profile, job)).await;
    h.service.settle().await;
    let console = h.gocd.console_text();
    assert!(
        console.contains("403") && console.contains("deploy/kubernetes"),
        "the refusal says what to grant:\n{console}"
    );
    assert!(!console.contains(&token), "the token never reaches the console");
    assert_eq!(objects_of(&admin().await, &[job]).await, Vec::<String>::new());
}

/// GoCD's Helm chart's server Deployment as `helm template gocd gocd/gocd -n gocd` renders
/// it, reduced to what the sidecar patch meets (no chart can be fetched here).
const CHART_SERVER: &str = r"
apiVersion: apps/v1
kind: Deployment
metadata: {name: gocd-server, namespace: gocd, labels: {app: gocd, component: server}}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app: gocd, release: gocd, component: server}}
  template:
    metadata: {labels: {app: gocd, release: gocd, component: server}}
    spec:
      securityContext: {runAsUser: 1000, runAsGroup: 0, fsGroup: 0}
      serviceAccountName: gocd
      containers:
        - name: gocd-server
          image: gocd/gocd-server:v25.4.0
          ports: [{containerPort: 8153}]
";

#[tokio::test(flavor = "multi_thread")]
async fn both_deploy_layouts_are_accepted_by_the_api_server_and_the_sidecar_starts_first() {
    profile();
    let copy = local_cluster::copy_deploy(&["gocd-sidecar", "standalone"]);
    std::fs::write(copy.join("gocd-sidecar/gocd.yaml"), CHART_SERVER).unwrap();

    let sidecar = kubectl(&["kustomize", copy.join("gocd-sidecar").to_str().unwrap()]);
    let rendered: Vec<serde_json::Value> = sidecar
        .split("\n---\n")
        .map(|doc| kubectl_with_input(&["create", "--dry-run=client", "-o", "json", "-f", "-"], Some(doc)))
        .map(|json| serde_json::from_str(&json).unwrap())
        .collect();
    let server = rendered.iter().find(|o| o["kind"] == "Deployment").expect("the server Deployment");
    let pod = &server["spec"]["template"]["spec"];
    assert_eq!(pod["initContainers"][0]["name"], "gocd-dind");
    assert_eq!(pod["initContainers"][0]["restartPolicy"], "Always", "the service is a native sidecar: {pod}");
    assert!(pod["initContainers"][0]["startupProbe"].is_object(), "GoCD starts after the service answers");
    let gocd_env = pod["containers"][0]["env"].to_string();
    assert!(gocd_env.contains("GOCD_DIND_TOKEN_FILE") && gocd_env.contains("GOCD_DIND_SERVICE_URL"), "{gocd_env}");
    let binding = rendered.iter().find(|o| o["kind"] == "RoleBinding").expect("the RoleBinding");
    assert_eq!(binding["subjects"][0]["name"], "gocd", "the sidecar runs as the GoCD server's account");
    let role = rendered.iter().find(|o| o["kind"] == "Role").expect("the Role").to_string();
    assert!(!role.contains('*'), "no wildcard in the Role: {role}");

    // The API server's own validation and admission, without changing anything.
    for layout in ["gocd-sidecar", "standalone"] {
        kubectl(&["apply", "--dry-run=server", "-k", copy.join(layout).to_str().unwrap()]);
    }
    let _ = std::fs::remove_dir_all(&copy);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_role_lets_the_runtime_read_its_namespaces_uid_and_nothing_else_cluster_wide() {
    let profile: gocd_dind::protocol::Properties = serde_json::from_value(profile().clone()).unwrap();
    let settings = gocd_dind::settings::ClusterSettings::parse(&profile, false).unwrap();
    let runtime = gocd_dind::runtime::kubernetes::KubernetesRuntime::connect(&settings.kubernetes).unwrap();
    let uid = runtime.namespace_uid().await.unwrap();
    let expected = kubectl(&["get", "namespace", NAMESPACE, "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(uid, expected, "the uid of {NAMESPACE}");
    let account = "--as=system:serviceaccount:gocd:gocd-dind";
    // As the API server sees a request, a namespace object lies in its own namespace.
    let can = |namespace: &str, verb: &str, what: &str| {
        let mut args = vec!["auth", "can-i", account, "-n", namespace, verb];
        args.extend(what.split(' '));
        kubectl_status(&args)
    };
    assert!(can(NAMESPACE, "get", &format!("namespaces/{NAMESPACE}")), "the Role grants its own namespace");
    assert!(can(NAMESPACE, "list", "events"), "the Role grants the pods' events to the agent status report");
    // Warm pools: a claim binds the pod (patch) and hands its waiting agent the job's key
    // through exec stdin; pre-pulls exec in dind. Granted deliberately since issue 9 (it
    // was refused before): exec into the agents' namespace only (docs/security.md#warm-pods).
    assert!(can(NAMESPACE, "create", "pods --subresource=exec"), "warm pools need exec into the agents' pods");
    assert!(can(NAMESPACE, "patch", "pods"), "a claim patches the pod's labels");
    for (namespace, verb, what) in [
        ("kube-system", "get", "namespaces/kube-system"),
        (NAMESPACE, "watch", "events"),
        (NAMESPACE, "create", "events"),
        ("gocd", "list", "events"),
        (NAMESPACE, "list", "secrets"),
        (NAMESPACE, "update", "pods"),
        ("gocd", "create", "pods --subresource=exec"),
        (NAMESPACE, "create", "pods --subresource=attach"),
        (NAMESPACE, "create", "pods --subresource=portforward"),
        ("gocd", "list", "pods"),
    ] {
        assert!(!can(namespace, verb, what), "the Role must not grant {verb} {what} in {namespace}");
    }
}
