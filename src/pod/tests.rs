mod patch;

use super::*;
use crate::protocol::Properties;
use crate::settings::ClusterId;
use crate::settings::PoolId;

fn settings(cluster: &[(&str, &str)], elastic: &[(&str, &str)]) -> (ClusterSettings, ElasticSettings) {
    let props = Properties::from_pairs;
    (ClusterSettings::parse(&props(cluster), false).unwrap(), ElasticSettings::parse(&props(elastic)).unwrap())
}

fn job() -> JobIdentifier {
    serde_json::from_str(r#"{"pipeline_name":"build","pipeline_label":"42","pipeline_counter":42,"stage_name":"test","stage_counter":"1","job_name":"unit","job_id":7}"#).unwrap()
}

fn build_with(
    cluster: &ClusterSettings,
    elastic: &ElasticSettings,
    environment: Option<&str>,
) -> Result<AgentPod, PodError> {
    let tls = crate::tls::mint("p").unwrap();
    let ownership = Ownership::new("server-1", ClusterId("c1".into()));
    build(&PodRequest {
        name: "gocd-dind-abc",
        ownership: &ownership,
        go_server_url: "https://gocd.example.com/go",
        cluster,
        elastic,
        binding: Binding::Job { job: &job(), environment, auto_register_key: "register-key-1" },
        tls: Some(&tls),
    })
}

fn env_of(container: &Container) -> BTreeMap<String, Option<String>> {
    container.env.iter().flatten().map(|e| (e.name.clone(), e.value.clone())).collect()
}

#[test]
fn dind_is_a_native_sidecar_gated_by_a_tls_probe() {
    let (c, e) = settings(&[("agent_image", "agent:1")], &[]);
    let pod = build_with(&c, &e, None).unwrap().pod;
    let spec = pod.spec.unwrap();
    let dind = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(dind.name, DIND_CONTAINER);
    assert_eq!(dind.restart_policy.as_deref(), Some("Always"));
    assert_eq!(dind.image.as_deref(), Some("docker:dind"));
    let probe = dind.startup_probe.as_ref().unwrap().exec.as_ref().unwrap().command.as_ref().unwrap();
    assert!(probe.contains(&"--tlsverify".to_owned()) && probe.last().unwrap() == "version");
    let script = &dind.command.as_ref().unwrap()[2];
    assert!(script.contains("--host=tcp://127.0.0.1:2376 --tlsverify"));
    assert!(!script.contains("2375"));
    assert_eq!(dind.security_context.as_ref().unwrap().privileged, Some(true));
    let lib = dind.volume_mounts.as_ref().unwrap().iter().find(|m| m.mount_path == "/var/lib/docker").unwrap();
    assert_eq!(lib.name, volume::DOCKER_LIB);
    assert_eq!(spec.automount_service_account_token, Some(false));
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
}

#[test]
fn agent_gets_registration_and_docker_environment_and_no_privilege() {
    let (c, e) = settings(&[("agent_image", "agent:1")], &[("Environment", "A=b=c")]);
    let built = build_with(&c, &e, Some("prod")).unwrap();
    let agent = &built.pod.spec.as_ref().unwrap().containers[0];
    let env = env_of(agent);
    assert_eq!(env["GO_EA_SERVER_URL"].as_deref(), Some("https://gocd.example.com/go"));
    assert_eq!(env["GO_EA_AUTO_REGISTER_ENVIRONMENT"].as_deref(), Some("prod"));
    assert_eq!(env["GO_EA_AUTO_REGISTER_ELASTIC_AGENT_ID"].as_deref(), Some("gocd-dind-abc"));
    assert_eq!(env["GO_EA_AUTO_REGISTER_ELASTIC_PLUGIN_ID"].as_deref(), Some(PLUGIN_ID));
    assert_eq!(env["DOCKER_HOST"].as_deref(), Some("tcp://127.0.0.1:2376"));
    assert_eq!(env["DOCKER_CERT_PATH"].as_deref(), Some(TLS_DIR));
    assert_eq!(env["A"].as_deref(), Some("b=c"));
    assert!(!env.contains_key("PATH"), "the image's PATH stays");
    let cli = agent.volume_mounts.iter().flatten().find(|m| m.name == volume::DOCKER_CLI).unwrap();
    assert_eq!(
        (cli.mount_path.as_str(), cli.sub_path.as_deref(), cli.read_only),
        (AGENT_CLI, Some("docker"), Some(true))
    );
    // The register key travels in the Secret, not in the pod spec.
    assert_eq!(env["GO_EA_AUTO_REGISTER_KEY"], None);
    assert!(!serde_json::to_string(&built.pod).unwrap().contains("register-key-1"));
    assert_eq!(built.secret.data.as_ref().unwrap()[secret_key::AUTO_REGISTER_KEY].0, b"register-key-1");
    let security = agent.security_context.as_ref().unwrap();
    assert_eq!((security.privileged, security.allow_privilege_escalation), (Some(false), Some(false)));
    let labels = built.pod.metadata.labels.unwrap();
    assert_eq!(labels[label_keys::JOB_ID], "7");
    assert_eq!(labels[label_keys::SERVER_ID], "server-1");
}

#[test]
fn no_environment_means_no_environment_variable() {
    let (c, e) = settings(&[("agent_image", "agent:1")], &[]);
    let pod = build_with(&c, &e, None).unwrap().pod;
    assert!(!env_of(&pod.spec.unwrap().containers[0]).contains_key("GO_EA_AUTO_REGISTER_ENVIRONMENT"));
}

#[test]
fn server_key_only_reaches_dind_and_client_key_only_the_agent() {
    let (c, e) = settings(&[("agent_image", "agent:1")], &[]);
    let spec = build_with(&c, &e, None).unwrap().pod.spec.unwrap();
    let items = |name: &str| -> Vec<String> {
        let volume = spec.volumes.as_ref().unwrap().iter().find(|v| v.name == name).unwrap();
        volume.secret.as_ref().unwrap().items.as_ref().unwrap().iter().map(|i| i.key.clone()).collect()
    };
    assert!(items(volume::DIND_TLS).contains(&secret_key::SERVER_KEY.to_owned()));
    assert!(!items(volume::DIND_TLS).contains(&secret_key::CLIENT_KEY.to_owned()));
    assert!(items(volume::AGENT_TLS).contains(&secret_key::CLIENT_KEY.to_owned()));
    assert!(!items(volume::AGENT_TLS).contains(&secret_key::SERVER_KEY.to_owned()));
    let mounts = |c: &Container| -> Vec<String> { c.volume_mounts.iter().flatten().map(|m| m.name.clone()).collect() };
    assert!(!mounts(&spec.containers[0]).contains(&volume::DIND_TLS.to_owned()));
    assert!(!mounts(&spec.init_containers.as_ref().unwrap()[0]).contains(&volume::AGENT_TLS.to_owned()));
}

#[test]
fn capabilities_mode_is_explicit_and_not_privileged() {
    let (c, e) = settings(
        &[("agent_image", "a:1"), ("dind_security", "capabilities"), ("registry_mirror", "https://m.example.com")],
        &[],
    );
    let spec = build_with(&c, &e, None).unwrap().pod.spec.unwrap();
    let dind = &spec.init_containers.as_ref().unwrap()[0];
    let security = dind.security_context.as_ref().unwrap();
    assert_eq!(security.privileged, Some(false));
    let caps = security.capabilities.as_ref().unwrap().add.as_ref().unwrap();
    assert!(caps.contains(&"SYS_ADMIN".to_owned()) && !caps.contains(&"SYS_RESOURCE".to_owned()));
    assert!(dind.command.as_ref().unwrap()[2].contains("remount,rw,bind"));
    assert_eq!(dind.args.as_ref().unwrap(), &["gocd-dind", "--registry-mirror=https://m.example.com"]);
}

#[test]
fn resources_set_requests_and_limits() {
    let (c, e) = settings(
        &[("agent_image", "a:1")],
        &[("AgentCpu", "500m"), ("DindMemory", "4Gi"), ("DockerStorageSize", "20Gi")],
    );
    let spec = build_with(&c, &e, None).unwrap().pod.spec.unwrap();
    let agent = spec.containers[0].resources.as_ref().unwrap();
    assert_eq!(agent.limits.as_ref().unwrap()["cpu"].0, "500m");
    assert_eq!(agent.requests, agent.limits);
    let dind = spec.init_containers.as_ref().unwrap()[0].resources.as_ref().unwrap();
    assert_eq!(dind.limits.as_ref().unwrap()["memory"].0, (4u64 << 30).to_string());
    let lib = spec.volumes.as_ref().unwrap().iter().find(|v| v.name == volume::DOCKER_LIB).unwrap();
    assert_eq!(lib.empty_dir.as_ref().unwrap().size_limit.as_ref().unwrap().0, (20u64 << 30).to_string());
}

#[test]
fn missing_agent_image_is_a_clear_error() {
    let (c, e) = settings(&[], &[]);
    assert_eq!(build_with(&c, &e, None).unwrap_err(), PodError::NoAgentImage);
}

#[test]
fn a_warm_pod_carries_nothing_of_a_job_and_its_claim_no_tls_material() {
    let (c, e) = settings(&[("agent_image", "agent:1")], &[("Environment", "TEAM=blue")]);
    let tls = crate::tls::mint("p").unwrap();
    let ownership = Ownership::new("server-1", ClusterId("c1".into()));
    let pool = PoolId("0123456789ab".into());
    let shape = PoolShape { size: 2, idle: std::time::Duration::from_secs(1800) };
    let request = |binding, tls| PodRequest {
        name: "gocd-dind-warm",
        ownership: &ownership,
        go_server_url: "https://gocd.example.com/go",
        cluster: &c,
        elastic: &e,
        binding,
        tls,
    };
    let warm = build(&request(Binding::Warm { pool: &pool, shape }, Some(&tls))).unwrap();
    let labels = warm.pod.metadata.labels.as_ref().unwrap();
    assert!(!labels.contains_key(label_keys::JOB_ID) && labels[label_keys::POOL] == pool.0);
    assert!(warm.pod.metadata.annotations.as_ref().unwrap().is_empty(), "no job identifier, no environment");
    let data = warm.secret.data.as_ref().unwrap();
    assert_eq!(
        data.keys().map(String::as_str).collect::<Vec<_>>(),
        ["ca.pem", "client-cert.pem", "client-key.pem", "server-cert.pem", "server-key.pem"],
        "TLS only: no register key"
    );
    let env = env_of(&warm.pod.spec.as_ref().unwrap().containers[0]);
    assert!(!env.contains_key("GO_EA_AUTO_REGISTER_KEY") && !env.contains_key("GO_EA_AUTO_REGISTER_ENVIRONMENT"));
    assert_eq!(env["GO_EA_AUTO_REGISTER_ELASTIC_AGENT_ID"].as_deref(), Some("gocd-dind-warm"));
    assert_eq!(env["TEAM"].as_deref(), Some("blue"), "the profile's own environment is the pool's");
    let agent = &warm.pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(agent.command.as_ref().unwrap()[..2], ["sh".to_owned(), "-c".to_owned()], "it waits for its claim");
    assert_eq!(agent.args.as_deref(), Some(&["gocd-dind".to_owned(), "/docker-entrypoint.sh".to_owned()][..]));
    assert!(agent.volume_mounts.iter().flatten().any(|m| m.name == volume::CLAIM && m.mount_path == CLAIM_DIR));

    let job = job();
    let binding = Binding::Job { job: &job, environment: Some("prod"), auto_register_key: "register-key-1" };
    let claim = build(&request(binding, None)).unwrap();
    assert_eq!(claim.pod.metadata.labels.as_ref().unwrap()[label_keys::JOB_ID], "7");
    let data = claim.secret.data.as_ref().unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), [secret_key::AUTO_REGISTER_KEY], "the key only: the pod has its TLS");
    let env = env_of(&claim.pod.spec.as_ref().unwrap().containers[0]);
    assert_eq!(env["GO_EA_AUTO_REGISTER_ENVIRONMENT"].as_deref(), Some("prod"));
}
