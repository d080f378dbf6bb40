//! Doctor on Kubernetes: the API server and its version, the namespace, RBAC for every
//! verb the runtime uses, then the test pod.

use super::report::{Check, Outcome, Report};
use super::{pod_checks, rbac, Options};
use crate::runtime::kubernetes::KubernetesRuntime;
use crate::settings::{cluster, ClusterSettings};

/// Native sidecars (dind as an init container with `restartPolicy: Always`).
const MIN_MINOR: u32 = 29;
const ROLE_FILE: &str = "deploy/kubernetes/base/role.yaml";

pub async fn examine(settings: &ClusterSettings, options: &Options) -> Report {
    let url = settings.kubernetes.cluster_url.as_deref().unwrap_or("the in-cluster API server");
    let mut report = Report { place: format!("runtime kubernetes, {url}"), checks: Vec::new() };
    let runtime = match KubernetesRuntime::connect(&settings.kubernetes) {
        Ok(runtime) => runtime,
        Err(e) => {
            report.push(Check::fail("API server", e.to_string(), connection_fix()));
            return report;
        }
    };
    let namespace = runtime.agents_namespace().to_owned();
    report.place = format!("{}, namespace {namespace}", report.place);
    match runtime.server_version().await {
        Ok(info) => {
            let minor: u32 =
                info.minor.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0);
            let found = format!("Kubernetes {} ({})", info.git_version, info.platform);
            if info.major == "1" && minor < MIN_MINOR {
                report.push(Check::fail(
                    "API server answers",
                    found,
                    format!("use Kubernetes 1.{MIN_MINOR} or later: dind runs as a native sidecar"),
                ));
            } else {
                report.push(Check::ok("API server answers", found));
            }
        }
        Err(e) => {
            report.push(Check::fail("API server answers", e.to_string(), connection_fix()));
            return report;
        }
    }
    // RBAC first: a namespace that cannot be read because of RBAC is told once, there.
    let rbac = rbac_check(&runtime, &namespace).await;
    let namespace_ok = match runtime.namespace_uid().await {
        Ok(_) => {
            report.push(Check::ok("namespace", format!("{namespace} exists")));
            true
        }
        Err(e) if e.to_string().contains("(404)") => {
            report.push(Check::fail(
                "namespace",
                format!("{namespace} does not exist"),
                format!(
                    "create it (deploy/kubernetes/base/agents-namespace.yaml) or set {} to the agents' namespace",
                    cluster::NAMESPACE.key
                ),
            ));
            false
        }
        Err(_) if rbac.outcome == Outcome::Fail => false,
        Err(e) => {
            report.push(Check::fail("namespace", e.to_string(), connection_fix()));
            false
        }
    };
    let rbac_ok = rbac.outcome == Outcome::Ok;
    report.push(rbac);
    if namespace_ok && rbac_ok {
        pod_checks(super::trial::Place::Kubernetes(&runtime), settings, options, &mut report).await;
    } else {
        report.push(Check::not_tried("test pod", "the namespace or RBAC is not ready"));
    }
    report
}

fn connection_fix() -> String {
    format!(
        "set {} to the API server's URL, {} to its CA and {} to a token of the service's account; \
         or raise {} when the server is slow",
        cluster::KUBERNETES_CLUSTER_URL.key,
        cluster::KUBERNETES_CLUSTER_CA_CERT.key,
        cluster::SECURITY_TOKEN.key,
        cluster::CLUSTER_REQUEST_TIMEOUT.key
    )
}

/// One access review per verb and resource of the Role; every refusal is named.
async fn rbac_check(runtime: &KubernetesRuntime, namespace: &str) -> Check {
    let needs = rbac::needs(namespace);
    let mut denied = Vec::new();
    for need in &needs {
        match runtime.may(&need.attributes).await {
            Ok(true) => {}
            Ok(false) => denied.push(need.to_string()),
            Err(e) => return Check::fail("RBAC", format!("cannot ask the API server: {e}"), connection_fix()),
        }
    }
    if denied.is_empty() {
        let all: Vec<String> = needs.iter().map(ToString::to_string).collect();
        return Check::ok("RBAC", format!("the token may {} in namespace {namespace}", all.join(", ")));
    }
    Check::fail(
        "RBAC",
        format!("the token may not {} in namespace {namespace}", denied.join(", ")),
        format!(
            "grant the service's account the Role in {ROLE_FILE} in namespace {namespace} \
             (`kubectl apply -k deploy/kubernetes/base`, or a RoleBinding naming the account whose token is {})",
            cluster::SECURITY_TOKEN.key
        ),
    )
}
