//! What the job's console says about its agent pod: the start story in a few lines with
//! durations, and for a failure the reason and the next step. One place, so every runtime
//! tells it the same way.

use crate::runtime::{FailureReason, RuntimeError};

pub fn creating(pod: &str, place: &str, job: &str) -> String {
    format!("Creating agent pod {pod} on {place} for job {job}.")
}

pub fn dockerd_ready(pod: &str, seconds: f64) -> String {
    format!("Agent pod {pod}: dockerd ready in {seconds:.1} s (it answered over mutual TLS).")
}

pub fn started(pod: &str, seconds: f64) -> String {
    format!(
        "Agent pod {pod} is up after {seconds:.1} s: agent started. Waiting for it to register with the GoCD server."
    )
}

pub fn claimed(pod: &str, place: &str, seconds: f64) -> String {
    format!(
        "Claimed warm pod {pod} on {place} in {seconds:.2} s: its dockerd was already up; agent started. Waiting for it to register with the GoCD server."
    )
}

pub fn pre_pull_failed(pod: &str, failure: &str) -> String {
    format!("Warm pod {pod} could not pre-pull an image when it was made, so the job pulls it itself: {failure}")
}

pub fn claim_failed(pod: &str, error: &RuntimeError) -> String {
    format!(
        "Claiming warm pod {pod} failed ({error}); it is being removed, and the job gets a new pod within the limits."
    )
}

pub fn claim_lost(pod: &str) -> String {
    format!("Warm pod {pod} was claimed by another job first; it is left to that job, and this job is placed again.")
}

pub fn failed(pod: &str, error: &RuntimeError) -> String {
    format!("Agent pod {pod} failed to start and was removed: {error}\nNext: {}", next_step(error.reason()))
}

/// What an operator does about each kind of failure.
fn next_step(reason: FailureReason) -> &'static str {
    match reason {
        FailureReason::ImagePull => {
            "check the image names (Image or agent_image, DindImage or dind_image) and that the engine or the \
             cluster's nodes can pull them; a private registry needs credentials (on Kubernetes an imagePullSecret \
             in PodSpecPatch, listed in the cluster profile's allowed_secrets)."
        }
        FailureReason::Unschedulable => {
            "no node took the pod: check the elastic profile's nodeSelector, tolerations and affinity, and the \
             cluster's free capacity (the pod may wait up to auto_register_timeout)."
        }
        FailureReason::DindNotReady => {
            "dind's log above says why dockerd did not come up; on hosts that refuse privileged containers set \
             dind_security = capabilities. `gocd-dind doctor` with this cluster profile's settings checks the host."
        }
        FailureReason::Rejected => {
            "the engine or API server refused, as said above; `gocd-dind doctor` with this cluster profile's \
             settings checks every right and setting the pods need."
        }
        FailureReason::Unreachable => {
            "GoCD asks again while the job waits; check that the engine or API server answers (`gocd-dind doctor`)."
        }
        FailureReason::Other => "run `gocd-dind doctor` with this cluster profile's settings.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_says_what_to_do_next() {
        let cases = [
            (RuntimeError::Unreachable("no route".into()), "answers"),
            (RuntimeError::Rejected("RBAC refused (403)".into()), "doctor"),
            (
                RuntimeError::DaemonNotReady {
                    pod: "p".into(),
                    why: "dind exited with code 1".into(),
                    seconds: 1.0,
                    log_tail: String::new(),
                },
                "dind_security = capabilities",
            ),
            (
                RuntimeError::DaemonNotReady {
                    pod: "p".into(),
                    why: "agent: ErrImagePull: not found".into(),
                    seconds: 1.0,
                    log_tail: String::new(),
                },
                "imagePullSecret",
            ),
        ];
        for (error, step) in cases {
            let line = failed("p", &error);
            assert!(line.contains("failed to start and was removed") && line.contains(step), "{line}");
        }
    }

    #[test]
    fn the_start_story_carries_durations() {
        assert_eq!(dockerd_ready("p", 0.84), "Agent pod p: dockerd ready in 0.8 s (it answered over mutual TLS).");
        assert!(started("p", 1.26).starts_with("Agent pod p is up after 1.3 s: agent started."));
    }
}
