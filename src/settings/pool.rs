//! Which warm pool a job's pod may come from. A warm pod is made before any job asks, from
//! one elastic profile and one cluster profile; a job may claim it only if its own
//! profiles would build the same pod. GoCD never sends profile ids, so a pool is named by
//! what shapes its pods: a changed profile names another pool and never gets a stale pod,
//! and the old pool drains by the idle rule.

use std::collections::BTreeMap;
use std::fmt;

use super::cluster::{self, short_hash, POD_SHAPING};
use super::elastic::{self, WARM_POOL_IDLE_MINUTES, WARM_POOL_SIZE};
use super::field::Field;
use crate::protocol::Properties;

/// The version of the plugin, part of every pool's identity: a warm pod's layout (its
/// waiting entrypoint, claim pipe, TLS volume) and what a blank key defaults to belong to
/// the version that made it, so after an upgrade the old pods are claimed by no job and
/// drain by the idle rule.
const MADE_BY: &str = env!("CARGO_PKG_VERSION");

/// A pool within one cluster (the cluster is the other half of its key): 12 hex digits
/// of SHA-256 over the pod-shaping values, short enough for a label value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolId(pub String);

impl PoolId {
    /// The pool of pods this plugin version builds from these profiles for GoCD at
    /// `go_server_url` (the one the agents are given). Every elastic-profile key counts
    /// but the pool's own size and idle time, which shape no pod: resizing a pool keeps
    /// its pods. Of the cluster profile, only the keys that shape the pod
    /// ([`POD_SHAPING`]). Values are the ones the pod is built from: a blank key counts
    /// as its default (`dind_image` blank is `docker:dind`), and the images as the pod
    /// resolves them (the elastic profile's `Image` and `DindImage` over the cluster
    /// profile's), so profiles that build the same pod name the same pool.
    pub fn of(cluster: &Properties, elastic: &Properties, go_server_url: &str) -> Self {
        Self::made_by(MADE_BY, cluster, elastic, go_server_url)
    }

    fn made_by(version: &str, cluster: &Properties, elastic: &Properties, go_server_url: &str) -> Self {
        let resolved =
            |field: &Field, props: &Properties| field.get(props).map(str::to_owned).or_else(|| field.default_value());
        let agent_image = resolved(&elastic::IMAGE, elastic).or_else(|| resolved(&cluster::AGENT_IMAGE, cluster));
        let dind_image = resolved(&elastic::DIND_IMAGE, elastic).or_else(|| resolved(&cluster::DIND_IMAGE, cluster));
        let resolved_elsewhere =
            [WARM_POOL_SIZE.key, WARM_POOL_IDLE_MINUTES.key, elastic::IMAGE.key, elastic::DIND_IMAGE.key];
        let elastic: BTreeMap<&str, String> = elastic::FIELDS
            .iter()
            .filter(|field| !resolved_elsewhere.contains(&field.key))
            .filter_map(|field| Some((field.key, resolved(field, elastic)?)))
            .collect();
        let cluster: BTreeMap<&str, String> = POD_SHAPING
            .iter()
            .filter(|field| ![cluster::AGENT_IMAGE.key, cluster::DIND_IMAGE.key].contains(&field.key))
            .filter_map(|field| Some((field.key, resolved(field, cluster)?)))
            .collect();
        let shape = serde_json::json!({
            "made_by": version,
            "go_server_url": go_server_url,
            "agent_image": agent_image,
            "dind_image": dind_image,
            "cluster": cluster,
            "elastic": elastic,
        });
        Self(short_hash(&shape.to_string()))
    }
}

impl fmt::Display for PoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://gocd.example.com/go";

    fn pool(cluster: &[(&str, &str)], elastic: &[(&str, &str)]) -> PoolId {
        PoolId::of(&Properties::from_pairs(cluster), &Properties::from_pairs(elastic), URL)
    }

    #[test]
    fn a_pool_is_what_shapes_its_pods() {
        let base = pool(&[("dind_image", "docker:dind")], &[("Image", "agent:1"), ("WarmPoolSize", "2")]);
        let same = [
            (
                "the pool's size and idle time",
                pool(
                    &[("dind_image", "docker:dind")],
                    &[("Image", "agent:1"), ("WarmPoolSize", "5"), ("WarmPoolIdleMinutes", "3")],
                ),
            ),
            (
                "limits and connection keys",
                pool(
                    &[("dind_image", "docker:dind"), ("max_running_agents", "3"), ("docker_host", "tcp://x:2376")],
                    &[("Image", "agent:1")],
                ),
            ),
            (
                "a blank key",
                pool(
                    &[("dind_image", "docker:dind"), ("agent_image", " ")],
                    &[("Image", "agent:1"), ("Environment", "")],
                ),
            ),
        ];
        for (what, other) in same {
            assert_eq!(base, other, "{what} name the same pool");
        }
        let different = [
            ("another agent image", pool(&[("dind_image", "docker:dind")], &[("Image", "agent:2")])),
            ("another dind image", pool(&[("dind_image", "docker:27-dind")], &[("Image", "agent:1")])),
            (
                "a registry mirror",
                pool(&[("dind_image", "docker:dind"), ("registry_mirror", "http://m:5000")], &[("Image", "agent:1")]),
            ),
            (
                "images to pre-pull",
                pool(&[("dind_image", "docker:dind")], &[("Image", "agent:1"), ("PrePullImages", "busybox")]),
            ),
            (
                "an environment variable",
                pool(&[("dind_image", "docker:dind")], &[("Image", "agent:1"), ("Environment", "A=1")]),
            ),
        ];
        for (what, other) in different {
            assert_ne!(base, other, "{what} names another pool");
        }
        let elsewhere = PoolId::of(
            &Properties::from_pairs(&[("dind_image", "docker:dind")]),
            &Properties::from_pairs(&[("Image", "agent:1")]),
            "https://other.example.com/go",
        );
        assert_ne!(base, elsewhere, "another GoCD server URL names another pool");
        assert_eq!(base.0.len(), 12);
    }

    /// A blank key means its default, and the pod takes its images from the elastic
    /// profile over the cluster profile: what counts is the pod built, not the spelling.
    #[test]
    fn a_pool_is_named_by_the_values_the_pod_is_built_from() {
        let base = pool(&[("agent_image", "agent:1")], &[]);
        let same = [
            (
                "dind_image spelled as its default",
                pool(&[("agent_image", "agent:1"), ("dind_image", "docker:dind")], &[]),
            ),
            (
                "dind_security spelled as its default",
                pool(&[("agent_image", "agent:1"), ("dind_security", "privileged")], &[]),
            ),
            (
                "AgentEntrypoint spelled as its default",
                pool(&[("agent_image", "agent:1")], &[("AgentEntrypoint", "/docker-entrypoint.sh")]),
            ),
            ("the agent image set in the elastic profile", pool(&[], &[("Image", "agent:1")])),
            ("the agent image of both profiles", pool(&[("agent_image", "agent:0")], &[("Image", "agent:1")])),
            (
                "the dind image set in the elastic profile",
                pool(&[("agent_image", "agent:1")], &[("DindImage", "docker:dind")]),
            ),
        ];
        for (what, other) in same {
            assert_eq!(base, other, "{what} names the same pool");
        }
        let different = [
            (
                "another dind image in the elastic profile",
                pool(&[("agent_image", "agent:1")], &[("DindImage", "docker:27-dind")]),
            ),
            (
                "capabilities instead of privileged",
                pool(&[("agent_image", "agent:1"), ("dind_security", "capabilities")], &[]),
            ),
            ("another entrypoint", pool(&[("agent_image", "agent:1")], &[("AgentEntrypoint", "/entrypoint.sh")])),
        ];
        for (what, other) in different {
            assert_ne!(base, other, "{what} names another pool");
        }
    }

    /// A warm pod's layout belongs to the version that made it: after an upgrade no job
    /// claims the old pods, which drain by the idle rule.
    #[test]
    fn another_plugin_version_names_another_pool() {
        let (cluster, elastic) = (Properties::from_pairs(&[("agent_image", "agent:1")]), Properties::default());
        let now = PoolId::of(&cluster, &elastic, URL);
        assert_eq!(now, PoolId::made_by(env!("CARGO_PKG_VERSION"), &cluster, &elastic, URL));
        assert_ne!(now, PoolId::made_by("0.0.0-before", &cluster, &elastic, URL));
    }
}
