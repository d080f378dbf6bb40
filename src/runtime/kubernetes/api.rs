//! The connection to the API server: clients built from the cluster profile, every call
//! bounded by `cluster_request_timeout`, the clients rebuilt after a 401 (bound
//! service-account tokens expire; a rebuilt in-cluster client re-reads the token file and
//! the CA), and API errors turned into messages an operator can act on.

use std::future::Future;
use std::sync::RwLock;
use std::time::Duration;

use kube::{Client, Config};

use crate::runtime::RuntimeError;
use crate::settings::KubernetesConnection;

/// Watches are long polls: the API server ends each after at most this long (the
/// watcher asks for 290 s), so a read may wait that long for the next byte.
const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(300);

/// Makes the clients afresh: from the profile, or (tests) from a fake API server.
type ClientFactory = Box<dyn Fn() -> Result<Clients, RuntimeError> + Send + Sync>;

pub struct ApiClient {
    factory: ClientFactory,
    clients: RwLock<Clients>,
    pub namespace: String,
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct Clients {
    /// For single calls: every read bounded by the request timeout.
    calls: Client,
    /// For the pod watch: reads may idle as long as a watch lasts.
    watch: Client,
}

impl ApiClient {
    pub fn connect(connection: &KubernetesConnection) -> Result<Self, RuntimeError> {
        let config = profile_config(connection).map_err(RuntimeError::Rejected)?;
        let namespace = config.default_namespace.clone();
        let timeout = connection.request_timeout;
        let connection = connection.clone();
        let factory: ClientFactory =
            Box::new(move || profile_config(&connection).map_err(RuntimeError::Rejected).and_then(clients));
        Ok(Self { clients: RwLock::new(clients(config)?), factory, namespace, timeout })
    }

    /// Clients from `make` (tests hand in fake API servers); each rebuild calls it again.
    pub fn with_clients(make: impl Fn() -> Client + Send + Sync + 'static, namespace: &str, timeout: Duration) -> Self {
        let factory: ClientFactory = Box::new(move || {
            let client = make();
            Ok(Clients { calls: client.clone(), watch: client })
        });
        let clients = factory().expect("a test factory never fails");
        Self { clients: RwLock::new(clients), factory, namespace: namespace.to_owned(), timeout }
    }

    pub fn watch_client(&self) -> Client {
        self.clients.read().unwrap().watch.clone()
    }

    /// Runs one API call within the request timeout. A 401 rebuilds the clients and the
    /// call is tried once more: the first attempt was refused, so nothing happened twice.
    pub async fn call<T, F, Fut>(&self, what: &str, call: F) -> Result<T, RuntimeError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        self.call_on(Which::Calls, self.timeout, what, call).await
    }

    /// Like [`Self::call`], within `timeout` instead of `cluster_request_timeout`, on the
    /// watch's client, whose reads may idle as long as a watch: for a command that runs
    /// long and says little (a pre-pull in a warm pod's dind).
    pub async fn call_long<T, F, Fut>(&self, what: &str, timeout: Duration, call: F) -> Result<T, RuntimeError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        self.call_on(Which::Watch, timeout, what, call).await
    }

    async fn call_on<T, F, Fut>(&self, which: Which, timeout: Duration, what: &str, call: F) -> Result<T, RuntimeError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        match self.call_once(which, timeout, what, &call).await {
            Err(CallError::Api(error)) if is_unauthorized(&error) && self.rebuild() => {
                self.call_once(which, timeout, what, &call).await.map_err(|e| e.into_runtime_error(what))
            }
            other => other.map_err(|e| e.into_runtime_error(what)),
        }
    }

    /// Like `call`, for calls where "not found" is an answer rather than an error.
    pub async fn call_optional<T, F, Fut>(&self, what: &str, call: F) -> Result<Option<T>, RuntimeError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        self.call_unless(what, &[404], call).await
    }

    /// Like `call`; an answer with one of the `expected` status codes is `None`.
    pub async fn call_unless<T, F, Fut>(&self, what: &str, expected: &[u16], call: F) -> Result<Option<T>, RuntimeError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let call = |client| {
            let future = call(client);
            async move {
                match future.await {
                    Ok(value) => Ok(Some(value)),
                    Err(e) if status_code(&e).is_some_and(|code| expected.contains(&code)) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        };
        self.call(what, call).await
    }

    async fn call_once<T, F, Fut>(&self, which: Which, timeout: Duration, what: &str, call: &F) -> Result<T, CallError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let client = {
            let clients = self.clients.read().unwrap();
            match which {
                Which::Calls => clients.calls.clone(),
                Which::Watch => clients.watch.clone(),
            }
        };
        if let Ok(result) = tokio::time::timeout(timeout, call(client)).await {
            result.map_err(CallError::Api)
        } else {
            tracing::warn!(what, timeout_ms = timeout.as_millis(), "API call timed out");
            Err(CallError::TimedOut(timeout, matches!(which, Which::Calls)))
        }
    }

    /// Rebuilds both clients; false when that failed.
    pub fn rebuild(&self) -> bool {
        match (self.factory)() {
            Ok(fresh) => {
                tracing::info!("the API server answered 401: Kubernetes clients rebuilt");
                *self.clients.write().unwrap() = fresh;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "the API server answered 401 and the clients could not be rebuilt");
                false
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Which {
    Calls,
    Watch,
}

enum CallError {
    Api(kube::Error),
    /// Within this long; `true`: the bound was `cluster_request_timeout`.
    TimedOut(Duration, bool),
}

impl CallError {
    fn into_runtime_error(self, what: &str) -> RuntimeError {
        match self {
            Self::Api(error) => api_error(what, error),
            Self::TimedOut(timeout, request) => RuntimeError::Unreachable(format!(
                "{what}: the Kubernetes API server did not answer within {} ms{}",
                timeout.as_millis(),
                if request { " (cluster_request_timeout)" } else { "" }
            )),
        }
    }
}

fn clients(mut config: Config) -> Result<Clients, RuntimeError> {
    let build = |config: Config| {
        Client::try_from(config).map_err(|e| RuntimeError::Rejected(format!("kubernetes client: {e}")))
    };
    let calls = build(config.clone())?;
    config.read_timeout = Some(WATCH_READ_TIMEOUT);
    Ok(Clients { calls, watch: build(config)? })
}

fn profile_config(connection: &KubernetesConnection) -> Result<Config, String> {
    let mut config = match &connection.cluster_url {
        Some(url) => {
            let mut config = Config::new(url.parse().map_err(|e| format!("kubernetes_cluster_url {url}: {e}"))?);
            if let Some(ca) = &connection.ca_cert {
                let certs = pem::parse_many(ca).map_err(|e| format!("kubernetes_cluster_ca_cert: {e}"))?;
                config.root_cert = Some(certs.into_iter().map(pem::Pem::into_contents).collect());
            }
            config.auth_info.token = connection.security_token.clone().map(Into::into);
            config
        }
        None => Config::incluster().map_err(|e| {
            format!("no kubernetes_cluster_url and not running in a cluster ({e}): set the cluster URL, token and CA")
        })?,
    };
    if let Some(namespace) = &connection.namespace {
        namespace.clone_into(&mut config.default_namespace);
    }
    config.connect_timeout = Some(connection.request_timeout);
    config.read_timeout = Some(connection.request_timeout);
    config.write_timeout = Some(connection.request_timeout);
    Ok(config)
}

pub fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

fn is_unauthorized(error: &kube::Error) -> bool {
    status_code(error) == Some(401)
}

/// An API error as an operator reads it: what was being done, and what to change.
pub fn api_error(what: &str, error: kube::Error) -> RuntimeError {
    match error {
        kube::Error::Api(status) if status.code == 403 && status.message.contains("PodSecurity") => {
            RuntimeError::Rejected(format!(
                "{what}: the namespace's Pod Security admission refuses the dind container ({}): allow privileged \
                 pods there, e.g. label the namespace pod-security.kubernetes.io/enforce=privileged",
                status.message
            ))
        }
        kube::Error::Api(status) if status.code == 403 => RuntimeError::Rejected(format!(
            "{what}: RBAC refused (403): {}. Grant the service's account the Role in deploy/kubernetes (docs/install.md)",
            status.message
        )),
        kube::Error::Api(status) if status.code == 401 => RuntimeError::Rejected(format!(
            "{what}: the API server refused the credentials (401): {}. Check security_token, or the service \
             account token the service runs with",
            status.message
        )),
        kube::Error::Api(status) => RuntimeError::Rejected(format!("{what}: {} ({})", status.message, status.code)),
        other => RuntimeError::Unreachable(format!("{what}: {other}")),
    }
}
