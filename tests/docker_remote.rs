//! The Docker runtime against a remote engine over TLS with the profile's certificates,
//! and a host that refuses privileged containers. Needs the engine `.ci/run` starts.

use std::sync::Arc;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, LogsOptions, RemoveContainerOptions, UploadToContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use gocd_dind::clock::Clock;
use gocd_dind::demo::{create_agent_body, Harness};
use gocd_dind::pod::{Ownership, DIND_CAPABILITIES};
use gocd_dind::runtime::docker::DockerRuntime;
use gocd_dind::runtime::{Runtime, Runtimes};
use gocd_dind::service::ServiceOptions;
use gocd_dind::settings::{ClusterId, DockerConnection};
use serde_json::json;

use crate::support::{docker, AGENT_IMAGE, DIND_IMAGE};

/// A Docker Engine in a container, answering mutual TLS on a loopback port of the host:
/// a "remote" engine as an operator would point `docker_host` at.
struct RemoteEngine {
    docker: Docker,
    name: String,
    port: u16,
    tls: gocd_dind::tls::PodTls,
}

impl RemoteEngine {
    async fn start() -> Self {
        let docker = docker().await;
        let tls = gocd_dind::tls::mint("remote-engine").unwrap();
        let name = format!("gocd-dind-remote-engine-{}", std::process::id());
        let script = r#"set -eu
for d in $(awk '$2 ~ "^/sys/fs/cgroup/" && ($3 == "cgroup" || $3 == "cgroup2") { print $2 }' /proc/mounts); do
  mount -o remount,rw,bind "$d"
done
[ -f /sys/fs/cgroup/cgroup.controllers ] && mount -o remount,rw /sys/fs/cgroup
exec dockerd --host=tcp://0.0.0.0:2376 --tlsverify --tlscacert=/tls/ca.pem --tlscert=/tls/cert.pem --tlskey=/tls/key.pem"#;
        let body = ContainerCreateBody {
            image: Some(DIND_IMAGE.into()),
            entrypoint: Some(vec!["sh".into(), "-c".into(), script.into()]),
            cmd: Some(vec![]),
            exposed_ports: Some(vec!["2376/tcp".into()]),
            host_config: Some(HostConfig {
                cap_add: Some(DIND_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()),
                security_opt: Some(vec!["seccomp=unconfined".into(), "apparmor=unconfined".into()]),
                masked_paths: Some(vec![]),
                readonly_paths: Some(vec![]),
                mounts: Some(vec![Mount {
                    target: Some("/var/lib/docker".into()),
                    typ: Some(MountType::VOLUME),
                    ..Mount::default()
                }]),
                port_bindings: Some(
                    [(
                        "2376/tcp".to_owned(),
                        Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(String::new()) }]),
                    )]
                    .into(),
                ),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        docker
            .create_container(Some(CreateContainerOptions { name: Some(name.clone()), ..Default::default() }), body)
            .await
            .unwrap();
        let mut archive = tar::Builder::new(Vec::new());
        for (file, pem) in
            [("tls/ca.pem", &tls.ca_cert), ("tls/cert.pem", &tls.server_cert), ("tls/key.pem", &tls.server_key)]
        {
            let mut header = tar::Header::new_gnu();
            header.set_size(pem.len() as u64);
            header.set_mode(0o600);
            archive.append_data(&mut header, file, pem.as_bytes()).unwrap();
        }
        let tar = archive.into_inner().unwrap();
        let options = UploadToContainerOptions { path: "/".into(), ..Default::default() };
        docker.upload_to_container(&name, Some(options), bollard::body_full(tar.into())).await.unwrap();
        docker.start_container(&name, None).await.unwrap();
        let inspect = docker.inspect_container(&name, None).await.unwrap();
        let port =
            inspect.network_settings.and_then(|n| n.ports).and_then(|p| p.get("2376/tcp").cloned().flatten()).unwrap()
                [0]
            .host_port
            .clone()
            .unwrap()
            .parse()
            .unwrap();
        Self { docker, name, port, tls }
    }

    /// Follows the engine's log until dockerd says it serves its API; fails with the log
    /// when the container stops first.
    async fn wait_listening(&self) {
        let options = LogsOptions { follow: true, stdout: true, stderr: true, ..Default::default() };
        let mut stream = self.docker.logs(&self.name, Some(options));
        let mut log = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap_or_else(|e| panic!("reading the remote engine's log: {e}\n{log}"));
            log.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            if log.contains("API listen on") {
                return;
            }
        }
        panic!("the remote engine stopped before serving its API; its log:\n{log}");
    }

    fn connection(&self, client_cert: &str, client_key: &str) -> DockerConnection {
        DockerConnection {
            host: Some(format!("tcp://127.0.0.1:{}", self.port)),
            ca_cert: Some(self.tls.ca_cert.clone()),
            client_cert: Some(client_cert.to_owned()),
            client_key: Some(client_key.to_owned()),
        }
    }
}

impl Drop for RemoteEngine {
    fn drop(&mut self) {
        let (docker, name) = (self.docker.clone(), self.name.clone());
        let handle = tokio::runtime::Handle::current();
        std::thread::spawn(move || {
            handle.block_on(async {
                let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
                let _ = docker.remove_container(&name, Some(options)).await;
            });
        })
        .join()
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remote_engine_is_reached_over_mutual_tls_with_the_profiles_certificates() {
    let engine = RemoteEngine::start().await;
    let runtime = DockerRuntime::new(engine.connection(&engine.tls.client_cert, &engine.tls.client_key));
    let owner = Ownership::new("remote-test", ClusterId("remote".into()));
    engine.wait_listening().await;
    let description = runtime.describe().await.unwrap();
    assert!(
        description.contains("Docker Engine") && description.contains(&format!("127.0.0.1:{}", engine.port)),
        "{description}"
    );
    assert!(runtime.list_pods(&owner).await.unwrap().is_empty());

    // Another spelling of the same address reaches the same engine: one identity, so
    // the profile's pods stay its own whichever spelling it uses.
    let identity = runtime.identity().await.unwrap();
    let mut respelled = engine.connection(&engine.tls.client_cert, &engine.tls.client_key);
    respelled.host = Some(format!("tcp://127.0.0.1:{}/", engine.port));
    assert_eq!(DockerRuntime::new(respelled).identity().await.unwrap(), identity);
    let local = DockerRuntime::new(DockerConnection::default()).identity().await.unwrap();
    assert_ne!(local, identity, "the host's engine and the remote one are told apart");

    // A client certificate from another CA is refused.
    let stranger = gocd_dind::tls::mint("stranger").unwrap();
    let refused = DockerRuntime::new(engine.connection(&stranger.client_cert, &stranger.client_key));
    assert!(refused.describe().await.is_err(), "a certificate of another CA was accepted");
}

async fn identity(host: Option<&str>) -> String {
    let connection = DockerConnection { host: host.map(str::to_owned), ..DockerConnection::default() };
    DockerRuntime::new(connection).identity().await.unwrap_or_else(|e| panic!("{host:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_engine_has_one_identity_however_its_socket_is_spelled() {
    docker().await;
    let default = identity(None).await;
    assert!(!default.is_empty());
    for spelled in ["unix:///var/run/docker.sock", "unix:///run/docker.sock"] {
        assert_eq!(identity(Some(spelled)).await, default, "{spelled}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_refusing_privileged_containers_is_told_to_use_capabilities() {
    let docker = docker().await;
    let runtimes = Runtimes::new();
    let h = Harness::start(Arc::new(runtimes), Clock::default(), ServiceOptions::default()).await.unwrap();
    let cluster = json!({"runtime": "docker", "go_server_url": "https://127.0.0.1:8154/go", "agent_image": AGENT_IMAGE,
                         "dind_image": DIND_IMAGE, "dind_security": "privileged"});
    let job_id = 880_000 + i64::from(std::process::id() % 1000);
    assert_eq!(h.send("cd.go.elastic-agent.create-agent", &create_agent_body(&cluster, job_id)).await.unwrap().0, 200);
    h.service.settle().await;
    if let Some(failure) = h.service.last_failure(job_id) {
        // This kind of host (CI's): the refusal names the setting that fixes it.
        assert!(failure.reason.contains("dind_security = capabilities"), "{}", failure.reason);
        assert!(h.gocd.console_text().contains("dind_security = capabilities"));
    } else {
        // A host that allows privileged containers: the pod simply works; remove it.
        let name = h.service.pod_of_job(job_id).unwrap().info.name;
        let completion = json!({"elastic_agent_id": name, "job_identifier": gocd_dind::demo::job_identifier(job_id), "cluster_profile_properties": cluster});
        h.send("cd.go.elastic-agent.job-completion", &completion).await.unwrap();
    }
    let name = format!("job {job_id}");
    let leftovers = docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some([("label".to_owned(), vec![format!("gocd-dind.gocd.org/job-id={job_id}")])].into()),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(leftovers.is_empty(), "{name} left containers behind");
}
