//! One integration-test binary (links once). Docker end-to-end tests need the engine
//! that `.ci/run` starts and fail loudly without it.

mod local_cluster;
mod support;

mod binary;
mod browser;
mod cluster_identity;
mod docker_e2e;
mod docker_remote;
mod docker_warm;
mod doctor;
mod hostile_profiles;
mod http_contract;
mod kubernetes;
mod kubernetes_e2e;
mod kubernetes_warm;
pub mod lifecycle;
mod monitoring;
mod operator_view;
mod pages_browser;
pub mod profile_changes;
mod registry;
mod static_answers;
mod warm_pools;
