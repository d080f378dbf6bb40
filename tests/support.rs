//! Shared test helpers: fixtures, an in-memory service behind the real router.

use std::path::PathBuf;
use std::sync::Arc;

use gocd_dind::clock::Clock;
use gocd_dind::demo::Harness;
use gocd_dind::runtime::memory::{MemoryProvider, MemoryRuntime};
use gocd_dind::service::ServiceOptions;
use serde_json::Value;

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/requests")
}

/// Every fixture as (request name, file name, body); an empty file is a request without
/// a body.
pub fn fixtures() -> Vec<(String, String, String)> {
    let mut all: Vec<_> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures directory")
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| std::path::Path::new(name).extension().is_some_and(|e| e == "json"))
        .map(|file| {
            let request = file.trim_end_matches(".json").split('+').next().unwrap().to_owned();
            let body = std::fs::read_to_string(fixtures_dir().join(&file)).unwrap();
            (request, file, body)
        })
        .collect();
    all.sort();
    all
}

pub fn fixture(file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures_dir().join(file)).unwrap()).unwrap()
}

/// A cluster profile on the in-memory runtime, with `overrides` applied.
pub fn memory_cluster(overrides: &[(&str, &str)]) -> Value {
    let mut cluster = serde_json::json!({"runtime": "memory", "go_server_url": "https://gocd.example.com/go", "agent_image": "gocd/gocd-agent-wolfi:v25.4.0"});
    for (k, v) in overrides {
        cluster[*k] = Value::String((*v).to_owned());
    }
    cluster
}

pub struct MemoryHarness {
    pub harness: Harness,
    pub runtime: Arc<MemoryRuntime>,
    pub clock: Clock,
}

pub async fn memory_harness() -> MemoryHarness {
    let clock = Clock::default();
    let runtime = MemoryRuntime::new(clock.clone());
    let harness = Harness::start(
        Arc::new(MemoryProvider(runtime.clone())),
        clock.clone(),
        ServiceOptions { allow_memory_runtime: true },
    )
    .await
    .expect("harness starts");
    MemoryHarness { harness, runtime, clock }
}

pub const AGENT_IMAGE: &str = "gocd-dind-test/agent:latest";
pub const DIND_IMAGE: &str = "gocd-dind-test/dind:latest";
pub const JOB_IMAGE: &str = "gocd-dind-test/debian:bookworm";
pub const JOB_IMAGE_TAR: &str = "/var/cache/gocd-dind/debian-bookworm.tar";

/// The engine and the test images, or a panic that says how to get them: Docker tests
/// fail without Docker, they never skip.
pub async fn docker() -> bollard::Docker {
    let how = "run `bash .ci/docker-up.sh && bash .ci/build-test-images.sh` (as root) first";
    let docker = bollard::Docker::connect_with_defaults()
        .unwrap_or_else(|e| panic!("Docker end-to-end tests need a Docker Engine ({e}); {how}"));
    let docker = docker.negotiate_version().await.unwrap_or_else(|e| {
        panic!("Docker end-to-end tests need a Docker Engine, and none answers at the default socket ({e}); {how}")
    });
    for image in [AGENT_IMAGE, DIND_IMAGE, JOB_IMAGE] {
        if let Err(e) = docker.inspect_image(image).await {
            panic!("test image {image} is missing ({e}); {how}");
        }
    }
    assert!(std::path::Path::new(JOB_IMAGE_TAR).is_file(), "{JOB_IMAGE_TAR} is missing; {how}");
    docker
}
