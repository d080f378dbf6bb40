//! Doctor on a Docker Engine: the engine, its cgroups, the images, then the test pod.

use super::report::{Check, Report};
use super::{pod_checks, Options};
use crate::runtime::docker::DockerRuntime;
use crate::runtime::Runtime;
use crate::settings::{cluster, ClusterSettings};

pub async fn examine(settings: &ClusterSettings, options: &Options) -> Report {
    let runtime = DockerRuntime::new(settings.docker.clone());
    let mut report = Report { place: format!("runtime docker, engine at {}", runtime.address()), checks: Vec::new() };
    match runtime.describe().await {
        Ok(description) => report.push(Check::ok("engine answers", description)),
        Err(e) => {
            report.push(Check::fail(
                "engine answers",
                e.to_string(),
                format!(
                    "start the engine, or set {} to its address (unix:///var/run/docker.sock, or tcp://HOST:2376 \
                     with {}, {} and {} for TLS)",
                    cluster::DOCKER_HOST.key,
                    cluster::DOCKER_CA_CERT.key,
                    cluster::DOCKER_CLIENT_CERT.key,
                    cluster::DOCKER_CLIENT_KEY.key
                ),
            ));
            return report;
        }
    }
    report.push(engine_facts(&runtime).await);
    let images_ok = images(&runtime, settings, &mut report).await;
    if images_ok {
        pod_checks(super::trial::Place::Docker(&runtime), settings, options, &mut report).await;
    } else {
        report.push(Check::not_tried("test pod", "an image is missing"));
    }
    report
}

/// The engine's cgroup version and storage driver: what dind inherits.
async fn engine_facts(runtime: &DockerRuntime) -> Check {
    let info = match runtime.docker().await {
        Ok(docker) => docker.info().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match info {
        Ok(info) => Check::ok(
            "engine",
            format!(
                "cgroup v{} ({} driver), storage driver {}, {} CPUs, {} MiB memory",
                info.cgroup_version.map_or_else(|| "?".into(), |v| v.to_string()),
                info.cgroup_driver.map_or_else(|| "?".into(), |d| d.to_string()),
                info.driver.unwrap_or_default(),
                info.ncpu.unwrap_or_default(),
                info.mem_total.unwrap_or_default() / (1024 * 1024),
            ),
        ),
        Err(e) => Check::warn("engine", format!("docker info failed: {e}"), "check the engine's log"),
    }
}

/// Each image is on the engine or is pulled now, as create-agent would pull it.
async fn images(runtime: &DockerRuntime, settings: &ClusterSettings, report: &mut Report) -> bool {
    let mut ok = true;
    let Ok(docker) = runtime.docker().await else { return false };
    let images = [
        (cluster::AGENT_IMAGE.key, settings.agent_image.as_deref()),
        (cluster::DIND_IMAGE.key, Some(settings.dind_image.as_str())),
    ];
    for (key, image) in images {
        let what = format!("image {key}");
        let Some(image) = image else {
            report.push(Check::fail(
                &what,
                "none: the profile sets no agent_image",
                "set agent_image (--agent-image) to the Image of an elastic profile: the test pod needs one",
            ));
            ok = false;
            continue;
        };
        if docker.inspect_image(image).await.is_ok() {
            report.push(Check::ok(&what, format!("{image}: on the engine")));
            continue;
        }
        match runtime.ensure_image(image).await {
            Ok(()) => report.push(Check::ok(&what, format!("{image}: pulled"))),
            Err(e) => {
                report.push(Check::fail(
                    &what,
                    e.to_string(),
                    format!("set {key} to an image the engine can pull (name, tag, the engine's registry login)"),
                ));
                ok = false;
            }
        }
    }
    ok
}
