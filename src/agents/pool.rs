//! Warm pools as pure rules: which warm pod a job claims, how many to make, which to
//! remove. A warm pod is a pod started before any job asked, with nothing of a job in
//! it; a job claims it once, and it is removed after that job like any other pod. Pools
//! are keyed by cluster and [`PoolId`] (what shapes their pods); the pods of one cluster
//! profile are the snapshot, so warm pods count against its limits like any pod.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use super::{pending, ClusterSnapshot, Limits, RemovalReason};
use crate::listing::{PodInfo, PodPhase, WarmPod, WarmState};
use crate::settings::PoolId;

fn warm(pod: &PodInfo) -> Option<&WarmPod> {
    pod.warm.as_ref()
}

/// Oldest first (the first to reach its idle time), then by name: every rule that picks
/// among warm pods picks the same way.
fn by_age<'a>(pods: impl Iterator<Item = &'a PodInfo>) -> Vec<&'a PodInfo> {
    let mut pods: Vec<&PodInfo> = pods.collect();
    pods.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
    pods
}

/// The warm pod of `pool` a job claims: up, not being removed, the oldest.
pub fn claimable(pods: &[PodInfo], pool: &PoolId) -> Option<String> {
    let ready = pods.iter().filter(|p| {
        warm(p).is_some_and(|w| &w.pool == pool && w.state == WarmState::Ready) && p.phase == PodPhase::Running
    });
    by_age(ready).first().map(|p| p.name.clone())
}

/// A warm pod that may make room for a job of `pool`: one of another pool (a pod of the
/// job's own pool still warming will be claimable soon), the oldest; never one this
/// service is still making (its maker would go on making it).
pub fn evictable(pods: &[PodInfo], pool: Option<&PoolId>) -> Option<String> {
    let others = pods.iter().filter(|p| {
        warm(p).is_some_and(|w| Some(&w.pool) != pool && !matches!(w.state, WarmState::Leaving | WarmState::Making))
    });
    by_age(others).first().map(|p| p.name.clone())
}

/// How many warm pods to start now for `pool` so that it holds `size`: those it lacks,
/// within what the limits leave after every pod that exists or is being made.
pub fn plan_fill(pods: &[PodInfo], registered: &BTreeSet<String>, limits: Limits, pool: &PoolId, size: usize) -> usize {
    let in_pool = pods
        .iter()
        .filter(|p| {
            warm(p).is_some_and(|w| &w.pool == pool && w.state != WarmState::Leaving)
                && !matches!(p.phase, PodPhase::Stopped(_))
        })
        .count();
    let room_total = limits.max_total.saturating_sub(pods.len());
    let room_pending = limits.max_pending.saturating_sub(pending(pods, registered));
    size.saturating_sub(in_pool).min(room_total).min(room_pending)
}

/// server-ping's rules for one cluster's warm pods, oldest first within each rule:
///
/// - a warm pod whose dockerd stopped is removed;
/// - one that waited its pool's idle time is removed and not replaced (only a job of
///   its profile makes new ones), so the pool of a profile no longer used drains;
/// - one nobody here is making that has not come up within `auto_register_timeout`
///   (left starting by a service that stopped, or a pod no node takes) is removed;
/// - a pool holding more than its size loses the surplus;
/// - while the cluster holds more pods than its limits allow (a limit was lowered),
///   warm pods go first; pods serving jobs are never touched here;
/// - one left `Leaving` (a removal that did not finish) is removed again;
/// - one this service is still making is never removed: it counts, and the next ping
///   decides once it is up (its start is bounded by `auto_register_timeout`).
///
/// A pool's size and idle time are those its profile last asked for (`cluster.pools`),
/// else the ones on its pods' labels.
pub fn plan_drain(
    cluster: &ClusterSnapshot,
    registered: &BTreeSet<String>,
    now: SystemTime,
) -> Vec<(String, RemovalReason)> {
    let warm_pods = by_age(cluster.pods.iter().filter(|p| p.warm.is_some()));
    let mut removals: Vec<(String, RemovalReason)> = Vec::new();
    let mut active: BTreeMap<&PoolId, Vec<&PodInfo>> = BTreeMap::new();
    for pod in warm_pods {
        let w = warm(pod).expect("filtered on warm");
        let shape = cluster.pools.get(&w.pool).copied().unwrap_or(w.shape);
        let age = now.duration_since(pod.created).unwrap_or_default();
        if matches!(pod.phase, PodPhase::Stopped(_)) {
            removals.push((pod.name.clone(), RemovalReason::Stopped));
        } else if w.state == WarmState::Leaving {
            removals.push((pod.name.clone(), RemovalReason::WarmRetried));
        } else if w.state == WarmState::Ready && age >= shape.idle {
            removals.push((pod.name.clone(), RemovalReason::WarmIdle));
        } else if w.state == WarmState::Warming && age >= cluster.auto_register_timeout {
            removals.push((pod.name.clone(), RemovalReason::WarmNotUp));
        } else {
            active.entry(&w.pool).or_default().push(pod);
        }
    }
    let mut kept: Vec<&PodInfo> = Vec::new();
    for (pool, pods) in active {
        let size = cluster
            .pools
            .get(pool)
            .map_or_else(|| pods.iter().map(|p| shape_of(p).size).max().unwrap_or(0), |s| s.size);
        let (making, removable): (Vec<&PodInfo>, Vec<&PodInfo>) =
            pods.into_iter().partition(|p| state_of(p) == WarmState::Making);
        let surplus = (making.len() + removable.len()).saturating_sub(size).min(removable.len());
        removals.extend(removable[..surplus].iter().map(|p| (p.name.clone(), RemovalReason::WarmSurplus)));
        kept.extend(&removable[surplus..]);
    }
    let gone = removals.len();
    let mut total = cluster.pods.len().saturating_sub(gone);
    let mut waiting = pending(&cluster.pods, registered).saturating_sub(gone);
    for pod in by_age(kept.into_iter()) {
        if total <= cluster.limits.max_total && waiting <= cluster.limits.max_pending {
            break;
        }
        removals.push((pod.name.clone(), RemovalReason::WarmSurplus));
        total -= 1;
        waiting = waiting.saturating_sub(1);
    }
    removals
}

fn shape_of(pod: &PodInfo) -> crate::listing::PoolShape {
    warm(pod).expect("a warm pod").shape
}

fn state_of(pod: &PodInfo) -> WarmState {
    warm(pod).expect("a warm pod").state
}

#[cfg(test)]
mod tests;
