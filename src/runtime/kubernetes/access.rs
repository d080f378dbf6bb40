//! What `gocd-dind doctor` asks the API server beyond the [`Runtime`](super::Runtime)
//! calls, through the runtime's own client (same credentials, timeouts and 401
//! handling): the server's version, whether the token may do something, and dind's
//! whole log.

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::apimachinery::pkg::version::Info;
use kube::api::{Api, LogParams, PostParams};

use super::KubernetesRuntime;
use crate::pod::DIND_CONTAINER;
use crate::runtime::RuntimeError;

/// dind's log is read whole for doctor's test pod, which has just started; the bound is
/// for a daemon that logs in a loop.
const LOG_LIMIT_BYTES: i64 = 1 << 20;

impl KubernetesRuntime {
    /// The namespace the agent pods go to: the profile's, or the credentials' default.
    pub fn agents_namespace(&self) -> &str {
        self.namespace()
    }

    pub async fn server_version(&self) -> Result<Info, RuntimeError> {
        self.api.call("asking the API server's version", |c| async move { c.apiserver_version().await }).await
    }

    /// Whether the API server lets these credentials do this (a SelfSubjectAccessReview,
    /// which every authenticated account may create).
    pub async fn may(&self, attributes: &ResourceAttributes) -> Result<bool, RuntimeError> {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec { resource_attributes: Some(attributes.clone()), ..Default::default() },
            ..Default::default()
        };
        let answer = self
            .api
            .call("asking the API server what the token may do", |c| {
                let review = review.clone();
                async move { Api::<SelfSubjectAccessReview>::all(c).create(&PostParams::default(), &review).await }
            })
            .await?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }

    /// The whole log of a pod's dind container.
    pub async fn dind_log(&self, pod: &str) -> Result<String, RuntimeError> {
        let params = LogParams {
            container: Some(DIND_CONTAINER.into()),
            limit_bytes: Some(LOG_LIMIT_BYTES),
            ..LogParams::default()
        };
        self.api
            .call("reading dind's log", |c| {
                let params = params.clone();
                async move { self.pods(c).logs(pod, &params).await }
            })
            .await
    }
}
