//! Warm pods on Kubernetes. A pod's containers are fixed when it is made and it holds no
//! cluster credentials, so a warm pod's agent container waits in a small shell on a pipe
//! in its own `emptyDir` (`pod::warm_script`). A claim first binds the pod to the job
//! (one JSON patch that adds the job's label and annotations only if the pod's labels
//! are still the warm pod's: two claims, even from two services, bind it once; the loser
//! gets `AlreadyClaimed` and leaves the pod to the winner), then
//! writes the job's register key and environment into the pipe through `pods/exec`
//! stdin, never in the exec's command. The waiting shell reads them and runs the agent
//! image's entrypoint.
//!
//! RBAC: `pods` `patch` and `pods/exec` `create` and `get` (deploy/kubernetes/base/role.yaml,
//! docs/security.md#warm-pods).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{AttachParams, Patch, PatchParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::status;
use super::{KubernetesRuntime, FIELD_MANAGER};
use crate::pod::{
    annotation, claim_command, claim_payload, label_keys, pool_of, secret_key, AgentPod, Ownership, AGENT_CONTAINER,
};
use crate::runtime::{PodPhase, RuntimeError};

/// Which of a pod's containers a command runs in, and how long it may take.
pub(super) struct Exec<'a> {
    pub pod: &'a str,
    pub container: &'a str,
    pub command: Vec<String>,
    /// Written to the command's stdin, then closed.
    pub stdin: Option<String>,
    /// `None`: within `cluster_request_timeout`; else on the watch's client (reads may
    /// idle for minutes) within this long.
    pub long: Option<Duration>,
}

impl KubernetesRuntime {
    /// Runs a command in one of a pod's containers: its exit code and its output
    /// (stdout, then stderr).
    pub(super) async fn exec(&self, exec: &Exec<'_>) -> Result<(i64, String), RuntimeError> {
        let what = format!("running a command in {}/{}", exec.pod, exec.container);
        let run = |client| {
            let params = AttachParams::default().container(exec.container).stdin(exec.stdin.is_some());
            let (command, stdin) = (exec.command.clone(), exec.stdin.clone());
            async move {
                let mut attached = self.pods(client).exec(exec.pod, command, &params).await?;
                if let (Some(text), Some(mut writer)) = (stdin, attached.stdin()) {
                    writer.write_all(text.as_bytes()).await.map_err(service_error)?;
                    writer.shutdown().await.map_err(service_error)?;
                }
                let (mut out, mut err) = (String::new(), String::new());
                let (stdout, stderr) = (attached.stdout(), attached.stderr());
                let read_out = async {
                    if let Some(mut reader) = stdout {
                        reader.read_to_string(&mut out).await.map_err(service_error)?;
                    }
                    Ok::<_, kube::Error>(())
                };
                let read_err = async {
                    if let Some(mut reader) = stderr {
                        reader.read_to_string(&mut err).await.map_err(service_error)?;
                    }
                    Ok::<_, kube::Error>(())
                };
                let status = attached.take_status().expect("taken once");
                let (read_out, read_err, status) = tokio::join!(read_out, read_err, status);
                read_out?;
                read_err?;
                out.push_str(&err);
                Ok((exit_code(status.as_ref()), out))
            }
        };
        match exec.long {
            Some(timeout) => self.api.call_long(&what, timeout, run).await,
            None => self.api.call(&what, run).await,
        }
    }

    /// Binds warm pod `claim.name` to the claim's job, then hands its agent the job's
    /// register key and environment; returns once the agent got them.
    pub(super) async fn claim(&self, owner: &Ownership, claim: &AgentPod) -> Result<(), RuntimeError> {
        let name = claim.pod.metadata.name.clone().unwrap_or_default();
        let refused = |why: &str| RuntimeError::Rejected(format!("warm pod {name} cannot be claimed: {why}"));
        let pod = self.find(&name).await?.filter(|p| status::owned(p, owner)).ok_or_else(|| refused("it is gone"))?;
        let info = status::pod_info(&pod);
        if status::terminating(&pod) {
            return Err(refused("it is being removed"));
        }
        if info.warm.is_none() {
            // Bound to a job already: another claim won it (this service's or another's).
            return Err(RuntimeError::AlreadyClaimed(format!("warm pod {name} was claimed meanwhile")));
        }
        if info.phase != PodPhase::Running {
            return Err(refused("its agent is not waiting"));
        }
        self.bind(&pod, claim).await?;
        let key = claim
            .secret
            .data
            .as_ref()
            .and_then(|d| d.get(secret_key::AUTO_REGISTER_KEY))
            .map(|k| String::from_utf8_lossy(&k.0).into_owned())
            .unwrap_or_default();
        let environment = claim
            .pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .filter(|c| c.name == AGENT_CONTAINER)
            .flat_map(|c| c.env.iter().flatten())
            .find(|v| v.name == "GO_EA_AUTO_REGISTER_ENVIRONMENT")
            .and_then(|v| v.value.clone());
        let mut vars = vec![("GO_EA_AUTO_REGISTER_KEY", key.as_str())];
        vars.extend(environment.as_deref().map(|e| ("GO_EA_AUTO_REGISTER_ENVIRONMENT", e)));
        let delivered = self
            .exec(&Exec {
                pod: &name,
                container: AGENT_CONTAINER,
                command: claim_command(),
                stdin: Some(claim_payload(&vars)),
                long: None,
            })
            .await?;
        match delivered {
            (0, _) => Ok(()),
            (code, output) => Err(refused(&format!("handing its agent the job failed ({code}): {}", output.trim()))),
        }
    }

    /// The job's label and annotations on the pod, and when it was claimed, in one JSON
    /// patch whose first operation tests that the labels are still the warm pod's: a
    /// pod claimed meanwhile (by this service or another) refuses it.
    async fn bind(&self, pod: &Pod, claim: &AgentPod) -> Result<(), RuntimeError> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let warm_labels = pod.metadata.labels.clone().unwrap_or_default();
        if pool_of(|k| warm_labels.get(k).cloned()).is_none() {
            return Err(RuntimeError::Rejected(format!("{name} carries no pool")));
        }
        let mut labels = warm_labels.clone();
        let job = claim.pod.metadata.labels.iter().flatten().filter(|(k, _)| k.as_str() == label_keys::JOB_ID);
        labels.extend(job.map(|(k, v)| (k.clone(), v.clone())));
        let mut annotations = pod.metadata.annotations.clone().unwrap_or_default();
        annotations.extend(claim.pod.metadata.annotations.clone().unwrap_or_default());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        annotations.insert(annotation::CLAIMED_AT.to_owned(), now.to_string());
        let patch: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/labels", "value": warm_labels},
            {"op": "replace", "path": "/metadata/labels", "value": labels},
            {"op": "add", "path": "/metadata/annotations", "value": annotations},
        ]))
        .expect("a JSON patch");
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
        let patched = self
            .api
            .call_unless("binding the warm pod to the job", &[409, 422], |c| {
                let (params, patch) = (params.clone(), Patch::<()>::Json(patch.clone()));
                let name = name.clone();
                async move { self.pods(c).patch(&name, &params, &patch).await }
            })
            .await?;
        if patched.is_some() {
            return Ok(());
        }
        // Refused: a lost race only if the pod is bound now (read from the API server,
        // not the watch, which may lag); else something else refused the patch (an
        // admission policy, a label changed by hand) and nobody holds the pod.
        let now = self.api.call_optional("reading the pod", |c| async { self.pods(c).get(&name).await }).await?;
        match now.map(|p| status::pod_info(&p)) {
            Some(info) if info.warm.is_none() => {
                Err(RuntimeError::AlreadyClaimed(format!("warm pod {name} was claimed meanwhile")))
            }
            Some(_) => Err(RuntimeError::Rejected(format!(
                "warm pod {name} cannot be claimed: the API server refused binding it, and no job holds it"
            ))),
            None => Err(RuntimeError::Rejected(format!("warm pod {name} cannot be claimed: it is gone"))),
        }
    }
}

fn service_error(error: std::io::Error) -> kube::Error {
    kube::Error::Service(Box::new(error))
}

/// A finished exec's exit code: 0 on success, the `ExitCode` cause of a failure, -1 when
/// the API server says nothing.
fn exit_code(status: Option<&Status>) -> i64 {
    let Some(status) = status else { return -1 };
    if status.status.as_deref() == Some("Success") {
        return 0;
    }
    let causes = status.details.as_ref().and_then(|d| d.causes.as_ref());
    causes
        .into_iter()
        .flatten()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))
        .and_then(|c| c.message.as_deref()?.parse().ok())
        .unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{StatusCause, StatusDetails};

    #[test]
    fn an_execs_exit_code_is_read_from_its_status() {
        let success = Status { status: Some("Success".into()), ..Status::default() };
        let cause = StatusCause { reason: Some("ExitCode".into()), message: Some("3".into()), field: None };
        let failure = Status {
            status: Some("Failure".into()),
            reason: Some("NonZeroExitCode".into()),
            details: Some(StatusDetails { causes: Some(vec![cause]), ..StatusDetails::default() }),
            ..Status::default()
        };
        assert_eq!(exit_code(Some(&success)), 0);
        assert_eq!(exit_code(Some(&failure)), 3);
        assert_eq!(exit_code(Some(&Status { status: Some("Failure".into()), ..Status::default() })), -1);
        assert_eq!(exit_code(None), -1);
    }
}
