//! The local Kubernetes cluster `.ci/k8s-up.sh` brings up, as the Kubernetes end-to-end
//! tests and the Kubernetes benchmark use it: `kubectl` as its admin, `deploy/kubernetes`
//! applied, and a cluster profile that reaches the API server as the ServiceAccount bound
//! to the Role there. Shared by `tests/kubernetes_e2e.rs` and `benches/kubernetes.rs`.

use std::io::Write as _;
use std::process::Stdio;

use base64::Engine as _;
use serde_json::{json, Value};

pub const NAMESPACE: &str = "gocd-dind-agents";
pub const AGENT_IMAGE: &str = "gocd-dind-test/agent:latest";
pub const DIND_IMAGE: &str = "gocd-dind-test/dind:latest";
pub const JOB_IMAGE: &str = "gocd-dind-test/debian:bookworm";
const CONTAINERD: &str = "/run/gocd-dind-k8s/containerd/containerd.sock";

pub fn kubeconfig() -> String {
    std::env::var("GOCD_DIND_KUBECONFIG")
        .unwrap_or_else(|_| "/var/lib/gocd-dind-k8s/kubeconfig/admin.kubeconfig".into())
}

/// Whether `kubectl ARGS` succeeds (e.g. `auth can-i`, which exits 1 for "no").
pub fn kubectl_status(args: &[&str]) -> bool {
    let run = std::process::Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig()).args(args).output();
    run.expect("kubectl runs").status.success()
}

/// `kubectl ARGS` as the cluster admin; panics with its output when it fails.
pub fn kubectl(args: &[&str]) -> String {
    kubectl_with_input(args, None)
}

pub fn kubectl_with_input(args: &[&str], input: Option<&str>) -> String {
    let mut child = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("kubectl cannot be run ({e}); run `bash .ci/k8s-up.sh` first"));
    if let Some(input) = input {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Checks the cluster and its images are there, applies `deploy/kubernetes/base` (with a
/// token of its own, into the `gocd` namespace GoCD's chart would have made), and returns
/// a cluster profile for the ServiceAccount the Role is bound to.
pub fn prepare() -> Value {
    let path = kubeconfig();
    assert!(
        std::path::Path::new(&path).is_file(),
        "the local Kubernetes cluster is missing: no kubeconfig at {path}; run `bash .ci/k8s-up.sh` (as root) \
         and set GOCD_DIND_KUBECONFIG to the path it prints last"
    );
    kubectl(&["get", "--raw", "/readyz"]);
    let listed = std::process::Command::new("ctr")
        .args(["-a", CONTAINERD, "-n", "k8s.io", "images", "ls", "-q"])
        .output()
        .expect("ctr lists the cluster's images");
    let images = String::from_utf8_lossy(&listed.stdout);
    for image in [AGENT_IMAGE, DIND_IMAGE, JOB_IMAGE] {
        // kubelet would try to pull a missing image, and there is no registry here.
        assert!(
            images.lines().any(|l| l == format!("docker.io/{image}")),
            "test image {image} is not in the cluster's containerd (kubelet removes unused images when the disk \
             is nearly full: free some); run `bash .ci/k8s-up.sh`"
        );
    }
    let base = copy_deploy(&["base"]);
    let namespace = kubectl(&["create", "namespace", "gocd", "--dry-run=client", "-o", "yaml"]);
    kubectl_with_input(&["apply", "-f", "-"], Some(&namespace));
    kubectl(&["apply", "-k", base.join("base").to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&base);
    let token = kubectl(&["-n", "gocd", "create", "token", "gocd-dind", "--duration=4h"]);
    let api_url = kubectl(&["config", "view", "--raw", "-o", "jsonpath={.clusters[0].cluster.server}"]);
    let ca = kubectl(&["config", "view", "--raw", "-o", "jsonpath={.clusters[0].cluster.certificate-authority-data}"]);
    let ca_pem = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(ca.trim()).unwrap()).unwrap();
    json!({
        "runtime": "kubernetes",
        "kubernetes_cluster_url": api_url,
        "kubernetes_cluster_ca_cert": ca_pem,
        "security_token": token.trim(),
        "namespace": NAMESPACE,
        "go_server_url": "https://127.0.0.1:8154/go",
        "agent_image": AGENT_IMAGE,
        "dind_image": DIND_IMAGE,
        "dind_security": "capabilities",
    })
}

/// A private copy of these `deploy/kubernetes` directories, with the token file the base
/// needs (an operator creates it; it is never in the repository).
pub fn copy_deploy(dirs: &[&str]) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let copy = std::env::temp_dir().join(format!("gocd-dind-deploy-{}", uuid::Uuid::new_v4().simple()));
    for dir in dirs.iter().chain(&["base"]) {
        std::fs::create_dir_all(copy.join(dir)).unwrap();
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), copy.join(dir).join(entry.file_name())).unwrap();
        }
    }
    std::fs::write(copy.join("base/token"), uuid::Uuid::new_v4().simple().to_string()).unwrap();
    copy
}

pub async fn admin() -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig()).expect("reading the admin kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .expect("the admin kubeconfig is usable");
    kube::Client::try_from(config).expect("an admin client")
}

/// A token of an account in the `gocd` namespace that no Role is bound to.
pub fn token_without_role() -> String {
    let account = kubectl(&[
        "-n",
        "gocd",
        "create",
        "serviceaccount",
        "gocd-dind-without-role",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    kubectl_with_input(&["apply", "-f", "-"], Some(&account));
    kubectl(&["-n", "gocd", "create", "token", "gocd-dind-without-role", "--duration=1h"]).trim().to_owned()
}
