//! `gocd-dind doctor`, the binary as operators run it, against the local Docker Engine
//! (which refuses privileged containers) and the local Kubernetes cluster (as the
//! ServiceAccount bound to the Role, and as one without it): what it says, its exit code,
//! and that no test pod is left behind.

use std::collections::HashMap;

use bollard::query_parameters::{ListContainersOptions, ListVolumesOptions};
use gocd_dind::doctor::SERVER_ID;
use gocd_dind::pod::label_keys;
use kube::api::ListParams;
use serde_json::{json, Value};

use crate::kubernetes_e2e::{assert_gone, pods, profile};
use crate::local_cluster::{admin, token_without_role};
use crate::support::{docker, AGENT_IMAGE, DIND_IMAGE};

/// Runs `gocd-dind doctor ARGS`; returns the exit code and everything it printed.
async fn doctor(args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gocd-dind"))
        .arg("doctor")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("the binary runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("gocd-dind doctor {}:\n{text}", args.join(" "));
    (out.status.code().expect("doctor exits, it is not killed"), text)
}

fn assert_ok(out: &str, checks: &[&str]) {
    for check in checks {
        assert!(out.contains(&format!("  ok    {check}: ")), "doctor reports {check:?} as ok:\n{out}");
    }
}

/// Containers and volumes on the engine that carry doctor's server id.
async fn doctor_objects_on_the_engine(docker: &bollard::Docker) -> Vec<String> {
    let label = format!("{}={SERVER_ID}", label_keys::SERVER_ID);
    let filters = HashMap::from([("label".to_owned(), vec![label])]);
    let options = ListContainersOptions { all: true, filters: Some(filters.clone()), ..Default::default() };
    let containers = docker.list_containers(Some(options)).await.unwrap();
    let volumes = docker.list_volumes(Some(ListVolumesOptions { filters: Some(filters) })).await.unwrap();
    containers
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .chain(volumes.volumes.unwrap_or_default().into_iter().map(|v| v.name))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn on_this_engine_privileged_is_refused_and_doctor_says_to_set_capabilities_with_which_it_passes() {
    let docker = docker().await;
    let _slots = crate::docker_e2e::pod_slots(1).await;
    let images = ["--agent-image", AGENT_IMAGE, "--dind-image", DIND_IMAGE];

    // dind_security defaults to privileged, which this host refuses.
    let (code, out) = doctor(&images).await;
    assert_eq!(code, 1, "pods cannot run as configured:\n{out}");
    assert!(out.contains("  FAIL  privileged dind: ") && out.contains("refuses privileged containers"), "{out}");
    assert!(
        out.contains("  - privileged dind: set dind_security = capabilities: with it the test pod started in"),
        "the fix, tested:\n{out}"
    );
    assert!(out.contains("(dind_security = capabilities); removed"), "{out}");
    assert!(out.contains("Agent pods cannot run here with this profile."), "{out}");
    assert_eq!(doctor_objects_on_the_engine(&docker).await, Vec::<String>::new(), "both test pods are removed");

    let mut capabilities = images.to_vec();
    capabilities.extend(["--dind-security", "capabilities"]);
    let (code, out) = doctor(&capabilities).await;
    assert_eq!(code, 0, "{out}");
    assert_ok(
        &out,
        &[
            "engine answers",
            "engine",
            "image agent_image",
            "image dind_image",
            "test pod",
            "cgroup in dind",
            "storage driver in dind",
        ],
    );
    assert!(out.contains("answered over mutual TLS and the agent started in"), "{out}");
    assert!(!out.contains("FAIL") && out.contains("Agent pods can run here with this profile."), "{out}");
    assert_eq!(doctor_objects_on_the_engine(&docker).await, Vec::<String>::new(), "the test pod is removed");
}

#[tokio::test]
async fn an_engine_that_does_not_exist_is_named_with_what_to_set_and_a_bad_profile_is_refused_by_key() {
    let (code, out) = doctor(&["--docker-host", "tcp://127.0.0.1:1", "--agent-image", AGENT_IMAGE]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("  FAIL  engine answers: cannot reach the container runtime: tcp://127.0.0.1:1"), "{out}");
    assert!(out.contains("set docker_host to its address"), "{out}");
    assert!(!out.contains("test pod"), "nothing else is tried without an engine:\n{out}");

    let (code, out) = doctor(&["--runtime", "swarm", "--max-pending-agents", "ten"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("runtime: 'swarm' is not a runtime"), "{out}");
    assert!(out.contains("max_pending_agents: 'ten' must be a whole number"), "{out}");
}

/// The profile in a file only this process reads (it holds a token), as `--profile` takes it.
fn profile_file(profile: &Value) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("gocd-dind-doctor-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let file = dir.join("profile.json");
    std::fs::write(&file, profile.to_string()).unwrap();
    (dir, file)
}

#[tokio::test(flavor = "multi_thread")]
async fn on_kubernetes_as_the_roles_account_every_check_passes_and_the_test_pod_is_removed() {
    let profile = profile();
    let _slots = crate::kubernetes_e2e::pod_slots(1).await;
    let (dir, file) = profile_file(profile);
    let (code, out) = doctor(&["--profile", file.to_str().unwrap()]).await;
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 0, "{out}");
    assert_ok(
        &out,
        &["API server answers", "namespace", "RBAC", "test pod", "cgroup in dind", "storage driver in dind"],
    );
    assert!(out.contains("get pods/log") && out.contains("get namespaces gocd-dind-agents"), "{out}");
    assert!(!out.contains(profile["security_token"].as_str().unwrap()), "the token is never printed");

    let client = admin().await;
    let selector = ListParams::default().labels(&format!("{}={SERVER_ID}", label_keys::SERVER_ID));
    let left = pods(&client).list(&selector).await.unwrap().items;
    for pod in left {
        assert_gone(&client, &pod.metadata.name.unwrap()).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn on_kubernetes_an_account_without_the_role_gets_each_missing_right_named_and_exit_1() {
    let token = token_without_role();
    let mut profile = profile().clone();
    profile["security_token"] = json!(token);
    let (dir, file) = profile_file(&profile);
    let (code, out) = doctor(&["--profile", file.to_str().unwrap()]).await;
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "  FAIL  RBAC: the token may not create pods, get pods, list pods, watch pods, delete pods, patch pods, \
             create pods/exec, get pods/exec, get pods/log, list events, create secrets, get secrets, delete secrets, \
             get namespaces gocd-dind-agents"
        ),
        "every right the Role grants is named:\n{out}"
    );
    assert!(out.contains("grant the service's account the Role in deploy/kubernetes/base/role.yaml"), "{out}");
    assert!(out.contains("  FAIL  test pod: not tried"), "{out}");
    assert!(!out.contains(&token), "the token is never printed");
}
