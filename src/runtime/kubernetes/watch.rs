//! The service's view of its pods in one namespace: a label-selected watch (kube-runtime's
//! watcher) feeding a reflector store, so listings and readiness waits cost the API server
//! nothing per request. Every change bumps a counter that waiters subscribe to.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::watch as signal;

use super::api::{status_code, ApiClient};
use crate::pod::{label_keys, MANAGED_BY};
use crate::runtime::RuntimeError;

pub struct PodWatch {
    store: Store<Pod>,
    namespace: String,
    /// Set once the first complete listing is in the store.
    listed: Arc<AtomicBool>,
    changes: signal::Receiver<u64>,
    /// Why the watch cannot list pods right now; `None` while it works.
    failing: Arc<Mutex<Option<RuntimeError>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PodWatch {
    /// Starts watching every pod gocd-dind manages in the client's namespace (all GoCD
    /// servers and cluster profiles: ownership is checked on each read).
    pub fn start(api: Arc<ApiClient>) -> Self {
        let (store, mut writer) = reflector::store();
        let (bump, changes) = signal::channel(0u64);
        let failing = Arc::new(Mutex::new(None));
        let listed = Arc::new(AtomicBool::new(false));
        let namespace = api.namespace.clone();
        let task = {
            let (failing, listed) = (failing.clone(), listed.clone());
            tokio::spawn(async move {
                let selector = format!("{}={MANAGED_BY}", label_keys::MANAGED_BY);
                loop {
                    let pods: Api<Pod> = Api::namespaced(api.watch_client(), &api.namespace);
                    let mut events =
                        watcher(pods, watcher::Config::default().labels(&selector)).default_backoff().boxed();
                    while let Some(event) = events.next().await {
                        let unauthorized = match event {
                            Ok(event) => {
                                writer.apply_watcher_event(&event);
                                if matches!(event, watcher::Event::InitDone) {
                                    listed.store(true, Ordering::Release);
                                }
                                *failing.lock().unwrap() = None;
                                false
                            }
                            Err(error) => {
                                let unauthorized = is_unauthorized(&error);
                                if let Some(why) = list_failure(&error) {
                                    tracing::warn!(error = %why, "the pod watch cannot list pods");
                                    *failing.lock().unwrap() = Some(why);
                                }
                                unauthorized
                            }
                        };
                        bump.send_modify(|n| *n += 1);
                        if unauthorized && api.rebuild() {
                            break; // watch again with the rebuilt client
                        }
                    }
                }
            })
        };
        Self { store, namespace, listed, changes, failing, task }
    }

    /// Waits (at most `within`) until the first listing arrived, then reports whether the
    /// watch currently works: a stale view must not pass for the truth. A listing the API
    /// server refuses (RBAC, credentials) is reported as soon as it is refused.
    pub async fn synced(&self, within: Duration) -> Result<(), RuntimeError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut changes = self.changes.clone();
        loop {
            changes.borrow_and_update();
            if let Some(why) = self.failing.lock().unwrap().clone() {
                return Err(why);
            }
            if self.listed.load(Ordering::Acquire) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(RuntimeError::Unreachable("the pod watch stopped".into())),
                Err(_) => {
                    return Err(RuntimeError::Unreachable(format!(
                        "the pod watch in namespace {} has not listed pods within {} ms",
                        self.namespace,
                        within.as_millis()
                    )))
                }
            }
        }
    }

    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.store.state()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Pod>> {
        self.store.get(&ObjectRef::new(name).within(&self.namespace))
    }

    /// A receiver that wakes at every change the watch sees.
    pub fn changes(&self) -> signal::Receiver<u64> {
        self.changes.clone()
    }
}

/// Errors that leave the store unable to tell which pods exist. A broken watch connection
/// is not one of them: the watcher lists again, and the store stays valid meanwhile.
fn list_failure(error: &watcher::Error) -> Option<RuntimeError> {
    match error {
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) => {
            Some(super::api::api_error("watching agent pods", clone_error(e)))
        }
        _ => None,
    }
}

fn is_unauthorized(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            status_code(e) == Some(401)
        }
        watcher::Error::WatchError(status) => status.code == 401,
        watcher::Error::NoResourceVersion => false,
    }
}

/// `kube::Error` is not `Clone`; what `api_error` needs of it is the API status or text.
fn clone_error(error: &kube::Error) -> kube::Error {
    match error {
        kube::Error::Api(status) => kube::Error::Api(status.clone()),
        other => kube::Error::Service(other.to_string().into()),
    }
}
