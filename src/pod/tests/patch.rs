//! `PodSpecPatch`: the merge, the allow-list, and one test per escape found in review.

use super::{build_with, settings};
use crate::pod::{label_keys, secret_references, volume, AgentPod, PodError, AGENT_CONTAINER, DIND_CONTAINER};

fn build_patched(patch: &str) -> Result<AgentPod, PodError> {
    let (c, e) = settings(&[("agent_image", "a:1")], &[("PodSpecPatch", patch)]);
    build_with(&c, &e, None)
}

/// The patch is refused, and the refusal names `field`.
fn refused(patch: &str, field: &str) {
    match build_patched(patch) {
        Ok(_) => panic!("accepted: {patch}"),
        Err(PodError::Patch(message)) => {
            assert!(message.contains(field), "{patch}\nrefused without naming {field}: {message}");
        }
        Err(other) => panic!("{patch}: {other}"),
    }
}

#[test]
fn a_projected_service_account_token_is_refused() {
    refused(
        r#"{"volumes": [{"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}],
            "containers": [{"name": "agent", "volumeMounts": [{"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}]}"#,
        "spec.volumes[token].projected",
    );
}

#[test]
fn a_service_account_is_refused() {
    refused(r#"{"serviceAccountName": "gocd-dind"}"#, "spec.serviceAccountName");
    refused(r#"{"serviceAccount": "gocd-dind"}"#, "spec.serviceAccount");
    refused(r#"{"automountServiceAccountToken": true}"#, "spec.automountServiceAccountToken");
    refused(r#"{"automountServiceAccountToken": null}"#, "spec.automountServiceAccountToken");
}

#[test]
fn dinds_command_cannot_be_replaced() {
    refused(
        r#"{"initContainers": [{"name": "dind", "command": ["dockerd", "-H", "tcp://0.0.0.0:2375"]}]}"#,
        "spec.initContainers[dind].command",
    );
}

#[test]
fn dinds_arguments_cannot_open_a_port_on_the_pod_ip() {
    refused(
        r#"{"initContainers": [{"name": "dind", "args": ["gocd-dind", "-H", "tcp://0.0.0.0:2375"]}]}"#,
        "spec.initContainers[dind].args",
    );
}

#[test]
fn host_ports_are_refused_on_either_container() {
    refused(
        r#"{"containers": [{"name": "agent", "ports": [{"containerPort": 2376, "hostPort": 2376}]}]}"#,
        "spec.containers[agent].ports",
    );
    refused(
        r#"{"initContainers": [{"name": "dind", "ports": [{"containerPort": 2376, "hostPort": 2376}]}]}"#,
        "spec.initContainers[dind].ports",
    );
}

#[test]
fn a_pod_security_context_is_refused() {
    refused(r#"{"securityContext": {"runAsUser": 0}}"#, "spec.securityContext");
    refused(
        r#"{"securityContext": {"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "0"}]}}"#,
        "spec.securityContext",
    );
}

#[test]
fn the_agents_privileges_cannot_change_by_any_path() {
    let agent = |security: &str| format!(r#"{{"containers": [{{"name": "agent", "securityContext": {security}}}]}}"#);
    let path = "spec.containers[agent].securityContext";
    refused(&agent(r#"{"capabilities": {"add": ["SYS_ADMIN"]}}"#), path);
    refused(&agent(r#"{"privileged": true}"#), path);
    refused(&agent(r#"{"allowPrivilegeEscalation": true}"#), path);
    refused(&agent(r#"{"allowPrivilegeEscalation": null}"#), path);
    refused(&agent(r#"{"runAsUser": 0}"#), path);
    refused(&agent("null"), path);
    // Another container to hold the privileges, or the host's namespaces around the agent.
    refused(
        r#"{"containers": [{"name": "helper", "image": "busybox", "securityContext": {"privileged": true}}]}"#,
        "spec.containers[helper]",
    );
    refused(r#"{"ephemeralContainers": [{"name": "debug", "image": "busybox"}]}"#, "spec.ephemeralContainers");
    refused(r#"{"shareProcessNamespace": true}"#, "spec.shareProcessNamespace");
    refused(r#"{"hostPID": true}"#, "spec.hostPID");
    refused(r#"{"hostNetwork": true}"#, "spec.hostNetwork");
    refused(r#"{"hostUsers": true}"#, "spec.hostUsers");
    refused(r#"{"containers": [{"name": "agent", "command": ["sh"]}]}"#, "spec.containers[agent].command");
}

#[test]
fn the_host_and_the_pods_own_material_stay_out_of_reach() {
    refused(
        r#"{"volumes": [{"name": "sock", "hostPath": {"path": "/var/run/docker.sock"}}]}"#,
        "spec.volumes[sock].hostPath",
    );
    refused(
        r#"{"volumes": [{"name": "agent-tls", "secret": {"items": [{"key": "server-key.pem", "path": "key.pem"}]}}]}"#,
        "spec.volumes[agent-tls]",
    );
    refused(
        r#"{"containers": [{"name": "agent", "volumeMounts": [{"name": "dind-tls", "mountPath": "/server"}]}]}"#,
        "spec.containers[agent].volumeMounts[/server]",
    );
    refused(
        r#"{"containers": [{"name": "agent", "volumeMounts": [{"name": "dind-tls", "mountPath": "/gocd-dind/tls"}]}]}"#,
        "spec.containers[agent].volumeMounts[/gocd-dind/tls]",
    );
    refused(
        r#"{"volumes": [{"name": "x", "emptyDir": {}}], "containers": [{"name": "agent", "volumeMounts": [{"name": "x", "mountPath": "/x", "mountPropagation": "Bidirectional"}]}]}"#,
        "spec.containers[agent].volumeMounts[/x].mountPropagation",
    );
    refused(r#"{"volumes": [{"name": "docker-lib", "$patch": "delete"}]}"#, "spec.volumes[docker-lib]");
    refused(r#"{"containers": [{"name": "agent", "$patch": "delete"}]}"#, "spec.containers[agent]");
    refused(r#"{"initContainers": [{"name": "dind", "$patch": "delete"}]}"#, "spec.initContainers[dind]");
    refused(r#"{"nodeName": "node-1"}"#, "spec.nodeName");
}

#[test]
fn the_variables_gocd_dind_sets_cannot_be_set_by_a_patch() {
    let env = |var: &str| format!(r#"{{"containers": [{{"name": "agent", "env": [{var}]}}]}}"#);
    let path = |name: &str| format!("spec.containers[agent].env[{name}]");
    refused(&env(r#"{"name": "DOCKER_HOST", "value": "tcp://10.0.0.1:2375"}"#), &path("DOCKER_HOST"));
    refused(
        &env(r#"{"name": "GO_EA_AUTO_REGISTER_ENVIRONMENT", "value": "prod"}"#),
        &path("GO_EA_AUTO_REGISTER_ENVIRONMENT"),
    );
    refused(&env(r#"{"name": "GO_EA_SERVER_URL", "$patch": "delete"}"#), &path("GO_EA_SERVER_URL"));
    refused(r#"{"containers": [{"name": "agent", "env": null}]}"#, &path("DOCKER_TLS_VERIFY"));
}

#[test]
fn labels_and_annotations_cannot_touch_the_ownership_keys() {
    refused(
        r#"{"metadata": {"labels": {"gocd-dind.gocd.org/cluster": "other"}}}"#,
        "metadata.labels[gocd-dind.gocd.org/cluster]",
    );
    refused(
        r#"{"metadata": {"labels": {"app.kubernetes.io/managed-by": "me"}}}"#,
        "metadata.labels[app.kubernetes.io/managed-by]",
    );
    refused(
        r#"{"metadata": {"annotations": {"gocd-dind.gocd.org/job-identifier": "{}"}}}"#,
        "metadata.annotations[gocd-dind.gocd.org/job-identifier]",
    );
    refused(r#"{"metadata": {"name": "mine"}}"#, "metadata.name");
    refused(r#"{"metadata": {"labels": {"team": "not a label value"}}}"#, "metadata.labels[team]");
    refused(r#"{"metadata": {"labels": {"team": 7}}}"#, "metadata.labels[team]");
}

#[test]
fn a_refusal_lists_every_problem_and_what_a_patch_may_set() {
    let Err(PodError::Patch(message)) = build_patched(r#"{"hostIPC": true, "serviceAccountName": "x"}"#) else {
        panic!("accepted")
    };
    assert!(message.contains("spec.hostIPC") && message.contains("spec.serviceAccountName"), "{message}");
    assert!(message.contains("spec.nodeSelector") && message.contains("emptyDir"), "{message}");
}

#[test]
fn the_allowed_fields_reach_the_pod() {
    let patch = r#"{
        "metadata": {"labels": {"team": "payments"}, "annotations": {"example.com/owner": "payments team"}},
        "nodeSelector": {"pool": "ci"},
        "tolerations": [{"key": "ci", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}],
        "priorityClassName": "ci",
        "runtimeClassName": "runc",
        "imagePullSecrets": [{"name": "registry"}],
        "dnsPolicy": "None",
        "dnsConfig": {"nameservers": ["10.0.0.10"], "searches": ["ci.example.com"]},
        "hostAliases": [{"ip": "10.0.0.5", "hostnames": ["registry.ci"]}],
        "volumes": [{"name": "cache", "emptyDir": {}}, {"name": "settings", "configMap": {"name": "maven"}},
                    {"name": "push", "secret": {"secretName": "registry"}}],
        "containers": [{"name": "agent", "workingDir": "/godata",
            "env": [{"name": "TEAM", "value": "payments"}, {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "registry", "key": "token"}}}],
            "envFrom": [{"configMapRef": {"name": "ci-env"}}],
            "resources": {"limits": {"ephemeral-storage": "10Gi"}},
            "volumeMounts": [{"name": "cache", "mountPath": "/cache"}, {"name": "settings", "mountPath": "/home/go/.m2/settings.xml", "subPath": "settings.xml", "readOnly": true},
                             {"name": "push", "mountPath": "/home/go/.docker", "readOnly": true}]}]
    }"#;
    let built = build_patched(patch).unwrap();
    let spec = built.pod.spec.as_ref().unwrap();
    assert_eq!(spec.node_selector.as_ref().unwrap()["pool"], "ci");
    assert_eq!(spec.tolerations.as_ref().unwrap().len(), 1);
    assert!(spec.affinity.is_some() && spec.topology_spread_constraints.is_some());
    assert_eq!((spec.priority_class_name.as_deref(), spec.runtime_class_name.as_deref()), (Some("ci"), Some("runc")));
    assert_eq!(spec.image_pull_secrets.as_ref().unwrap()[0].name, "registry");
    assert_eq!(spec.dns_config.as_ref().unwrap().nameservers.as_ref().unwrap(), &["10.0.0.10"]);
    assert_eq!(spec.host_aliases.as_ref().unwrap()[0].ip, "10.0.0.5");
    let labels = built.pod.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["team"], "payments");
    assert_eq!(labels[label_keys::AGENT_ID], "gocd-dind-abc", "the ownership labels stay");
    assert_eq!(built.pod.metadata.annotations.as_ref().unwrap()["example.com/owner"], "payments team");
    assert_eq!(
        built.secret.metadata.labels.as_ref().unwrap().get("team"),
        None,
        "the pod's Secret keeps only gocd-dind's labels"
    );
    let agent = spec.containers.iter().find(|c| c.name == AGENT_CONTAINER).unwrap();
    assert_eq!(agent.working_dir.as_deref(), Some("/godata"));
    let env: Vec<&str> = agent.env.iter().flatten().map(|v| v.name.as_str()).collect();
    assert!(env.contains(&"TEAM") && env.contains(&"TOKEN") && env.contains(&"DOCKER_HOST"), "{env:?}");
    assert_eq!(agent.env_from.as_ref().unwrap().len(), 1);
    assert!(agent.resources.as_ref().unwrap().limits.as_ref().unwrap().contains_key("ephemeral-storage"));
    let mounts: Vec<&str> = agent.volume_mounts.iter().flatten().map(|m| m.mount_path.as_str()).collect();
    assert!(
        mounts.contains(&"/cache") && mounts.contains(&"/godata") && mounts.contains(&"/gocd-dind/tls"),
        "{mounts:?}"
    );
    let volumes: Vec<&str> = spec.volumes.iter().flatten().map(|v| v.name.as_str()).collect();
    assert!(volumes.contains(&"settings") && volumes.contains(&volume::AGENT_TLS), "{volumes:?}");
    // dind and the agent's privileges as built.
    let (plain, _) = settings(&[("agent_image", "a:1")], &[]);
    let unpatched = build_with(&plain, &crate::settings::ElasticSettings::default(), None).unwrap();
    let dind = |pod: &AgentPod| pod.pod.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0].clone();
    assert_eq!(dind(&built).name, DIND_CONTAINER);
    assert_eq!(dind(&built), dind(&unpatched));
    assert_eq!(agent.security_context, unpatched.pod.spec.as_ref().unwrap().containers[0].security_context);
}

#[test]
fn a_secret_reference_must_be_a_secret_name() {
    refused(r#"{"imagePullSecrets": [{"name": "Not_A_Name"}]}"#, "spec.imagePullSecrets[Not_A_Name]");
}

#[test]
fn secret_references_name_every_secret_but_the_pods_own() {
    let patch = r#"{"imagePullSecrets": [{"name": "pull"}],
        "volumes": [{"name": "push", "secret": {"secretName": "push"}}],
        "containers": [{"name": "agent",
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "token", "key": "t"}}}],
            "envFrom": [{"secretRef": {"name": "bundle"}}]}]}"#;
    let built = build_patched(patch).unwrap();
    let references = secret_references(built.pod.spec.as_ref().unwrap(), "gocd-dind-abc-tls");
    let found: Vec<(&str, &str)> = references.iter().map(|r| (r.path.as_str(), r.name.as_str())).collect();
    assert_eq!(
        found,
        [
            ("spec.imagePullSecrets[pull]", "pull"),
            ("spec.volumes[push].secret", "push"),
            ("spec.containers[agent].env[TOKEN]", "token"),
            ("spec.containers[agent].envFrom[0]", "bundle"),
        ]
    );
    let allowed = ["pull".to_owned(), "bundle".to_owned()].into();
    let refused = crate::pod::unallowed_secrets(built.pod.spec.as_ref().unwrap(), "gocd-dind-abc-tls", &allowed);
    assert_eq!(
        refused,
        [
            "spec.volumes[push].secret: Secret 'push' is not in the cluster profile's allowed_secrets",
            "spec.containers[agent].env[TOKEN]: Secret 'token' is not in the cluster profile's allowed_secrets",
        ]
    );
}

#[test]
fn merge_keeps_the_built_containers_and_adds_what_the_patch_may_set() {
    let built = build_patched(
        r#"{"nodeSelector":{"pool":"ci"},"containers":[{"name":"agent","workingDir":"/godata"}],"tolerations":[{"key":"ci","operator":"Exists"}]}"#,
    )
    .unwrap();
    let spec = built.pod.spec.unwrap();
    assert_eq!(spec.node_selector.unwrap()["pool"], "ci");
    assert_eq!(spec.containers.len(), 1);
    assert_eq!(spec.containers[0].working_dir.as_deref(), Some("/godata"));
    assert_eq!(spec.containers[0].image.as_deref(), Some("a:1"));
    assert_eq!(spec.tolerations.unwrap().len(), 1);
}

#[test]
fn setting_a_field_to_its_built_value_changes_nothing_and_is_accepted() {
    build_patched(r#"{"automountServiceAccountToken": false, "restartPolicy": "Never"}"#).unwrap();
}

#[test]
fn a_misspelt_field_is_refused_not_dropped() {
    refused(r#"{"nodeselector":{"pool":"ci"}}"#, "spec.nodeselector");
}
