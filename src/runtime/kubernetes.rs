//! The Kubernetes runtime (kube-rs): the agent pod submitted as it is built, with its
//! Secret (TLS material, register key) owned by the pod so the garbage collector removes
//! it with the pod, and deleted at once besides so no key outlives the pod.
//!
//! Reads come from one label-selected watch per namespace ([`watch::PodWatch`]);
//! readiness is awaited on it. Every call is bounded by `cluster_request_timeout`,
//! deletes carry a uid precondition so a pod that replaced ours under the same name is
//! never touched, and a 401 rebuilds the client ([`api::ApiClient`]).

mod access;
mod api;
mod status;
mod warm;
mod watch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, Preconditions};
use kube::Client;
use tokio::sync::OnceCell;
use tracing::warn;

use self::api::ApiClient;
use self::status::Startup;
use self::watch::PodWatch;
use super::{PodDetails, PodEvent, PodInfo, Runtime, RuntimeError, StartOptions};
use crate::pod::{secret_name, AgentPod, Ownership, DIND_CONTAINER};
use crate::settings::KubernetesConnection;

/// The field manager recorded on everything the service writes.
const FIELD_MANAGER: &str = "gocd-dind";
/// dind's lines a failed start carries into the job console.
const LOG_TAIL_LINES: i64 = 30;
/// How long a command in a pod (a pre-pull) may run; the service bounds each pull too.
const LONG_EXEC: Duration = Duration::from_secs(600);
/// dind's lines the agent status report reads (its problems first, the rest folded).
const REPORT_LOG_LINES: i64 = 200;
/// How the reason of a pod no node took within its budget begins.
pub(crate) const NOT_SCHEDULED: &str = "not scheduled within";

pub struct KubernetesRuntime {
    api: Arc<ApiClient>,
    /// Started by the first call that needs it (a tokio runtime must be running).
    watch: OnceCell<PodWatch>,
}

impl KubernetesRuntime {
    /// Builds the clients from the cluster profile; a profile that names no API server
    /// outside a cluster is refused here, with what to set.
    pub fn connect(connection: &KubernetesConnection) -> Result<Self, RuntimeError> {
        Ok(Self { api: Arc::new(ApiClient::connect(connection)?), watch: OnceCell::new() })
    }

    /// A runtime over a given client (tests pass a fake API server).
    pub fn with_client(client: Client, namespace: &str, request_timeout: Duration) -> Self {
        Self::with_clients(move || client.clone(), namespace, request_timeout)
    }

    /// A runtime whose clients come from `make`, called again whenever the API server
    /// answers 401 (tests hand in a fake that "renews" credentials).
    pub fn with_clients(
        make: impl Fn() -> Client + Send + Sync + 'static,
        namespace: &str,
        request_timeout: Duration,
    ) -> Self {
        Self { api: Arc::new(ApiClient::with_clients(make, namespace, request_timeout)), watch: OnceCell::new() }
    }

    fn namespace(&self) -> &str {
        &self.api.namespace
    }

    /// Which cluster and namespace this runtime reaches, however the profile spells the
    /// address: the agents' namespace's uid, unique per cluster and namespace (a namespace
    /// deleted and made again is another place, and its pods went with it). Reading it
    /// needs only `get` on that one namespace, which the Role in deploy/kubernetes grants
    /// (a Role may: the namespace is the object's own).
    pub async fn namespace_uid(&self) -> Result<String, RuntimeError> {
        let namespace =
            self.api
                .call("reading the agents' namespace", |c| async move {
                    Api::<Namespace>::all(c).get(self.namespace()).await
                })
                .await?;
        namespace.metadata.uid.ok_or_else(|| RuntimeError::Other(format!("namespace {} has no uid", self.namespace())))
    }

    fn pods(&self, client: Client) -> Api<Pod> {
        Api::namespaced(client, self.namespace())
    }

    fn secrets(&self, client: Client) -> Api<Secret> {
        Api::namespaced(client, self.namespace())
    }

    /// The watch, synced: its view is complete and current.
    async fn watch(&self) -> Result<&PodWatch, RuntimeError> {
        let watch = self.watch.get_or_init(|| async { PodWatch::start(self.api.clone()) }).await;
        watch.synced(self.api.timeout).await?;
        Ok(watch)
    }

    /// The pod by name: from the watch, or asked directly when the watch has not seen it
    /// (yet).
    async fn find(&self, name: &str) -> Result<Option<Arc<Pod>>, RuntimeError> {
        if let Some(pod) = self.watch().await?.get(name) {
            return Ok(Some(pod));
        }
        let found = self.api.call_optional("reading the pod", |c| async move { self.pods(c).get(name).await }).await?;
        Ok(found.map(Arc::new))
    }

    /// Waits on the watch until the agent container runs (native-sidecar ordering means
    /// dind's startup probe, a TLS API call, passed first), the pod cannot start, or the
    /// budget runs out.
    async fn wait_running(&self, name: &str, uid: &str, start: &StartOptions) -> Result<(), String> {
        let watch = self.watch().await.map_err(|e| e.to_string())?;
        let mut changes = watch.changes();
        let deadline = tokio::time::Instant::now() + start.budget;
        let (mut seen, mut told, mut ready) = (false, false, false);
        let mut unschedulable = None;
        loop {
            changes.borrow_and_update();
            match watch.get(name) {
                Some(pod) if pod.metadata.uid.as_deref() != Some(uid) => {
                    return Err("a different pod of the same name replaced it".into());
                }
                Some(pod) if status::terminating(&pod) => return Err("the pod is being deleted".into()),
                Some(pod) => {
                    seen = true;
                    if !ready && status::dockerd_ready(&pod) {
                        ready = true;
                        (start.dockerd_ready)();
                    }
                    match status::startup(&pod) {
                        Startup::Running => return Ok(()),
                        Startup::Failed(why) => return Err(why),
                        Startup::Waiting { unschedulable: why } => {
                            if let (Some(why), false) = (&why, told) {
                                let budget = start.budget.as_secs();
                                (start.progress)(format!(
                                    "Agent pod {name} cannot be scheduled yet: {why}. It waits up to {budget} s."
                                ));
                                told = true;
                            }
                            unschedulable = why;
                        }
                    }
                }
                None if seen => return Err("the pod was deleted".into()),
                None => {} // the watch has not seen it yet
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err("the pod watch stopped".into()),
                Err(_) => {
                    let seconds = start.budget.as_secs();
                    return Err(match unschedulable {
                        Some(why) => format!("{NOT_SCHEDULED} {seconds} s: {why}"),
                        None => format!("the agent did not start within {seconds} s"),
                    });
                }
            }
        }
    }

    async fn dind_log_tail(&self, pod: &Pod, lines: i64) -> String {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let params = LogParams {
            container: Some(DIND_CONTAINER.into()),
            tail_lines: Some(lines),
            previous: status::dind_restarted(pod),
            ..LogParams::default()
        };
        let logs = self.api.call("reading dind's log", |c| {
            let (name, params) = (name.clone(), params.clone());
            async move { self.pods(c).logs(&name, &params).await }
        });
        logs.await.unwrap_or_else(|e| format!("(dind's log could not be read: {e})"))
    }

    /// Deletes the object when it is still the one with this uid: a 404 means it is gone
    /// already, a 409 that the name now belongs to another object. Both leave it be.
    async fn delete_exact<K>(
        &self,
        api: impl Fn(Client) -> Api<K>,
        what: &str,
        name: &str,
        uid: &str,
    ) -> Result<(), RuntimeError>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: Some(uid.to_owned()), resource_version: None }),
            ..DeleteParams::default()
        };
        let delete = |c| {
            let (objects, params) = (api(c), params.clone());
            async move { objects.delete(name, &params).await }
        };
        self.api.call_unless(what, &[404, 409], delete).await.map(drop)
    }

    /// Deletes the pod's Secret now rather than when the garbage collector gets to it; only
    /// one that carries our ownership labels, and only that very object (uid precondition).
    async fn delete_secret(&self, owner: &Ownership, pod_name: &str) -> Result<(), RuntimeError> {
        let name = secret_name(pod_name);
        let secret =
            self.api.call_optional("reading the pod's Secret", |c| async { self.secrets(c).get(&name).await }).await?;
        let Some(secret) = secret else { return Ok(()) };
        let labels = secret.metadata.labels.unwrap_or_default();
        if !owner.selector().iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return Ok(());
        }
        let uid = secret.metadata.uid.unwrap_or_default();
        self.delete_exact(|c| self.secrets(c), "deleting the pod's Secret", &name, &uid).await
    }
}

#[async_trait]
impl Runtime for KubernetesRuntime {
    async fn describe(&self) -> Result<String, RuntimeError> {
        let version = self.api.call("asking the API server's version", |c| async move { c.apiserver_version().await });
        Ok(format!("Kubernetes {} (namespace {})", version.await?.git_version, self.namespace()))
    }

    async fn list_pods(&self, owner: &Ownership) -> Result<Vec<PodInfo>, RuntimeError> {
        let pods = self.watch().await?.pods();
        // A pod being deleted is on its way out: it serves no job and counts for nothing.
        Ok(pods
            .iter()
            .filter(|p| status::owned(p, owner) && !status::terminating(p))
            .map(|p| status::pod_info(p))
            .collect())
    }

    async fn create_pod(&self, pod: &AgentPod, start: &StartOptions) -> Result<(), RuntimeError> {
        let name = pod.pod.metadata.name.clone().unwrap_or_default();
        let post = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
        let started = Instant::now();
        // Watching before creating: no event of the new pod can be missed.
        self.watch().await?;
        let created =
            self.api.call("creating the agent pod", |c| async { self.pods(c).create(&post, &pod.pod).await }).await?;
        let uid = created.metadata.uid.clone().unwrap_or_default();
        // Until the Secret exists the kubelet keeps the pod waiting for its volumes.
        let mut secret = pod.secret.clone();
        secret.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: name.clone(),
            uid: uid.clone(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        let made =
            self.api.call("creating the pod's Secret", |c| async { self.secrets(c).create(&post, &secret).await });
        let (why, secret_uid) = match made.await {
            Ok(made) => match self.wait_running(&name, &uid, start).await {
                Ok(()) => return Ok(()),
                Err(why) => (why, made.metadata.uid),
            },
            Err(e) => (e.to_string(), None),
        };
        let log_tail = match self.watch.get().and_then(|w| w.get(&name)) {
            Some(current) if secret_uid.is_some() => self.dind_log_tail(&current, LOG_TAIL_LINES).await,
            _ => String::new(),
        };
        if let Err(e) = self.delete_exact(|c| self.pods(c), "deleting the pod", &name, &uid).await {
            warn!(pod = %name, error = %e, "a pod that failed to start could not be removed; server-ping retries");
        }
        if let Some(secret_uid) = secret_uid {
            // Owned by the pod, so collected with it should this fail.
            let secret = secret_name(&name);
            let deleted = self.delete_exact(|c| self.secrets(c), "deleting the pod's Secret", &secret, &secret_uid);
            if let Err(e) = deleted.await {
                warn!(pod = %name, error = %e, "the Secret of a pod that failed to start is left to the garbage collector");
            }
        }
        Err(RuntimeError::DaemonNotReady { pod: name, why, seconds: started.elapsed().as_secs_f64(), log_tail })
    }

    async fn delete_pod(&self, owner: &Ownership, name: &str) -> Result<(), RuntimeError> {
        match self.find(name).await? {
            Some(pod) if !status::owned(&pod, owner) => return Ok(()), // someone else's: leave it
            Some(pod) if status::terminating(&pod) => {}               // already on its way
            Some(pod) => {
                let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                self.delete_exact(|c| self.pods(c), "deleting the pod", name, uid).await?;
            }
            None => {}
        }
        self.delete_secret(owner, name).await
    }

    async fn pod_details(&self, owner: &Ownership, name: &str) -> Result<Option<PodDetails>, RuntimeError> {
        let Some(pod) = self.find(name).await?.filter(|p| status::owned(p, owner)) else { return Ok(None) };
        let (dind_log_tail, events) =
            futures_util::join!(self.dind_log_tail(&pod, REPORT_LOG_LINES), self.pod_events(name));
        Ok(Some(PodDetails {
            containers: status::containers(&pod),
            notes: status::notes(&pod),
            dind_log_tail,
            // The events are a help, not the report: without them (RBAC) it still answers.
            events: events.unwrap_or_else(|e| {
                warn!(pod = %name, error = %e, "cannot read the pod's events");
                Vec::new()
            }),
        }))
    }

    async fn identity(&self) -> Result<String, RuntimeError> {
        self.namespace_uid().await
    }

    fn supports_warm_pods(&self) -> bool {
        true
    }

    /// A warm pod is made like any pod (its agent container runs: it waits for its
    /// claim in a small shell); its Secret holds only its TLS material.
    async fn create_warm_pod(&self, pod: &AgentPod, start: &StartOptions) -> Result<(), RuntimeError> {
        self.create_pod(pod, start).await
    }

    async fn claim_pod(&self, owner: &Ownership, claim: &AgentPod) -> Result<(), RuntimeError> {
        self.claim(owner, claim).await
    }

    async fn exec_in_dind(
        &self,
        owner: &Ownership,
        pod: &str,
        command: &[String],
    ) -> Result<(i64, String), RuntimeError> {
        let Some(found) = self.find(pod).await?.filter(|p| status::owned(p, owner)) else {
            return Err(RuntimeError::Rejected(format!("no pod {pod} of this server's cluster")));
        };
        let name = found.metadata.name.clone().unwrap_or_default();
        let exec = warm::Exec {
            pod: &name,
            container: DIND_CONTAINER,
            command: command.to_vec(),
            stdin: None,
            long: Some(LONG_EXEC),
        };
        self.exec(&exec).await
    }

    /// Needs `list` on `events` in the agents' namespace (the Role in deploy/kubernetes).
    async fn pod_events(&self, name: &str) -> Result<Vec<PodEvent>, RuntimeError> {
        let params = ListParams::default().fields(&format!("involvedObject.kind=Pod,involvedObject.name={name}"));
        let list = self
            .api
            .call("reading the pod's events", |c| {
                let params = params.clone();
                async move { Api::<Event>::namespaced(c, self.namespace()).list(&params).await }
            })
            .await?;
        Ok(status::events(&list.items))
    }
}
