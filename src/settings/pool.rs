//! Which warm pool a job's pod may come from. A warm pod is made before any job asks, from
//! one elastic profile and one cluster profile; a job may claim it only if its own
//! profiles would build the same pod. GoCD never sends profile ids, so a pool is named by
//! what shapes its pods: a changed profile names another pool and never gets a stale pod,
//! and the old pool drains by the idle rule.

use std::collections::BTreeMap;
use std::fmt;

use super::cluster::{short_hash, POD_SHAPING};
use super::elastic::{WARM_POOL_IDLE_MINUTES, WARM_POOL_SIZE};
use crate::protocol::Properties;

/// A pool within one cluster (the cluster is the other half of its key): 12 hex digits
/// of SHA-256 over the pod-shaping values, short enough for a label value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolId(pub String);

impl PoolId {
    /// The pool of pods built from these profiles for GoCD at `go_server_url` (the one
    /// the agents are given). Every elastic-profile key counts but the pool's own size
    /// and idle time, which shape no pod: resizing a pool keeps its pods. Of the cluster
    /// profile, only the keys that shape the pod ([`POD_SHAPING`]); blank and absent are
    /// the same, as everywhere in the profiles.
    pub fn of(cluster: &Properties, elastic: &Properties, go_server_url: &str) -> Self {
        let not_shaping = [WARM_POOL_SIZE.key, WARM_POOL_IDLE_MINUTES.key];
        let elastic: BTreeMap<&str, &str> = elastic
            .0
            .keys()
            .filter(|key| !not_shaping.contains(&key.as_str()))
            .filter_map(|key| Some((key.as_str(), elastic.get(key)?)))
            .collect();
        let cluster: BTreeMap<&str, &str> =
            POD_SHAPING.iter().filter_map(|field| Some((field.key, field.get(cluster)?))).collect();
        let shape = serde_json::json!({"go_server_url": go_server_url, "cluster": cluster, "elastic": elastic});
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
}
