//! `gocd-dind doctor`: checks a place where agent pods would run, with the same settings
//! as a cluster profile, and says what to set for each problem.
//!
//! Everything goes through the service's own parts: the profile is parsed and validated
//! by `ClusterSettings::parse`, the test pod is built by `pod::build` and started and
//! removed by the runtime's `create_pod` and `delete_pod`, and the engine or API server is
//! reached through the runtime's connection. So doctor passing means create-agent's pods
//! start here.
//!
//! - [`docker`]: the engine, its cgroups and storage, the images.
//! - [`kubernetes`]: the API server and its version, the namespace, RBAC ([`rbac`]).
//! - [`trial`]: the test pod, and what its dind's log says (cgroup version, storage driver).

mod docker;
mod kubernetes;
mod profile;
mod rbac;
mod report;
mod trial;

use std::time::Duration;

pub use profile::{properties, Given, ProfileFlags};
pub use report::{Check, Outcome, Report};
pub use trial::SERVER_ID;

use crate::config::DoctorArgs;
use crate::protocol::{Properties, ValidationError};
use crate::settings::{cluster, ClusterSettings, DindSecurity, RuntimeKind};

pub struct Options {
    /// How long the test pod may take to start, image pulls and scheduling included.
    pub pod_budget: Duration,
}

/// Exit codes: 0 agent pods can run, 1 they cannot, 2 the profile is not valid.
pub async fn cli(args: &DoctorArgs) -> i32 {
    let properties = match properties(args.profile.as_deref(), &args.keys) {
        Ok(properties) => properties,
        Err(e) => {
            eprintln!("gocd-dind doctor: {e}");
            return 2;
        }
    };
    match examine(&properties, &Options { pod_budget: Duration::from_secs(args.pod_timeout) }).await {
        Ok(report) => {
            print!("{report}");
            i32::from(!report.pods_can_run())
        }
        Err(errors) => {
            eprintln!("gocd-dind doctor: the cluster profile is not valid (GoCD would refuse it too):");
            for error in errors {
                eprintln!("  {}: {}", error.key, error.message);
            }
            2
        }
    }
}

/// Checks the place the profile points at; the profile's own problems first.
pub async fn examine(properties: &Properties, options: &Options) -> Result<Report, Vec<ValidationError>> {
    let settings = ClusterSettings::parse(properties, false)?;
    Ok(match settings.runtime {
        RuntimeKind::Docker => docker::examine(&settings, options).await,
        RuntimeKind::Kubernetes => kubernetes::examine(&settings, options).await,
        #[cfg(feature = "test-doubles")]
        RuntimeKind::Memory => unreachable!("parse refuses runtime = memory unless told to allow it"),
    })
}

/// The test pod with the profile's `dind_security`; when privileged fails, the same pod
/// with capabilities, to say whether setting that is the fix.
async fn pod_checks(place: trial::Place<'_>, settings: &ClusterSettings, options: &Options, report: &mut Report) {
    let mode = settings.dind_security;
    let why = match trial::start(place, settings, options.pod_budget).await {
        Ok(started) => return started_checks(&started, mode, report),
        Err(why) => why,
    };
    if mode == DindSecurity::Capabilities {
        report.push(Check::fail("test pod", why.clone(), fix_for(&why)));
        return;
    }
    let with_capabilities = ClusterSettings { dind_security: DindSecurity::Capabilities, ..settings.clone() };
    match trial::start(place, &with_capabilities, options.pod_budget).await {
        Ok(started) => {
            report.push(Check::fail(
                "privileged dind",
                why,
                format!(
                    "set {} = capabilities: with it the test pod started in {:.1} s",
                    cluster::DIND_SECURITY.key,
                    started.seconds
                ),
            ));
            started_checks(&started, DindSecurity::Capabilities, report);
        }
        Err(again) => {
            let found = format!("privileged: {why}\nwith capabilities too: {again}");
            report.push(Check::fail("test pod", found, fix_for(&again)));
        }
    }
}

fn started_checks(started: &trial::Started, mode: DindSecurity, report: &mut Report) {
    use crate::settings::Choice as _;
    let facts = &started.facts;
    report.push(Check::ok(
        "test pod",
        format!(
            "dockerd {} answered over mutual TLS and the agent started in {:.1} s ({} = {}); removed",
            facts.dockerd_version.as_deref().unwrap_or("(version not logged)"),
            started.seconds,
            cluster::DIND_SECURITY.key,
            mode.name()
        ),
    ));
    match &facts.cgroup {
        Some(version) => report.push(Check::ok("cgroup in dind", version.clone())),
        None => report.push(Check::warn(
            "cgroup in dind",
            "the dind script's cgroup line is not in its log",
            "use a dind image whose shell runs the script unchanged (sh, cp, chown)",
        )),
    }
    match facts.storage_driver.as_deref() {
        Some("overlay2") => report.push(Check::ok("storage driver in dind", "overlay2")),
        Some(other) => report.push(Check::warn(
            "storage driver in dind",
            other.to_owned(),
            "dind's /var/lib/docker (a Docker volume, or an emptyDir on the node) lies on a filesystem overlayfs \
             cannot stack on, so every image layer is copied: put the engine's data-root (Docker) or the kubelet's \
             root dir (Kubernetes) on ext4 or xfs",
        )),
        None => report.push(Check::warn(
            "storage driver in dind",
            "dockerd did not log its storage driver",
            "read dind's log: `docker logs` or `kubectl logs -c dind` of an agent pod",
        )),
    }
}

/// What to do about a test pod that did not start, from its reason.
fn fix_for(why: &str) -> String {
    let has = |needle: &str| why.contains(needle);
    if has("ImagePull") || has("ErrImage") || has("pull image") || has("pulling image") {
        format!(
            "set {} and {} to images the engine or the nodes can pull (name, tag, registry login; on Kubernetes \
             imagePullSecrets through an elastic profile's PodSpecPatch and {})",
            cluster::AGENT_IMAGE.key,
            cluster::DIND_IMAGE.key,
            cluster::ALLOWED_SECRETS.key
        )
    } else if has("violates PodSecurity") {
        "label the agents' namespace pod-security.kubernetes.io/enforce=privileged: dind needs it in both \
         dind_security modes (deploy/kubernetes/base/agents-namespace.yaml)"
            .into()
    } else if has("not scheduled") {
        "make room on a node that takes the pod (see the scheduler's reason above)".into()
    } else if has("(403)") || has("forbidden") {
        "grant the service's account the Role in deploy/kubernetes/base/role.yaml".into()
    } else {
        "read dind's log above; docs/operations.md#troubleshooting-by-symptom lists the usual causes".into()
    }
}
