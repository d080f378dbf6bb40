//! The plugin jar carries a copy of every answer that never changes (icon, capabilities,
//! profile metadata and views, the generic plugin-settings pair), so GoCD can load the
//! plugin while the service is still starting (plugin-shim/README.md, "When the service is
//! not up"). The copies must be the exact bytes the router answers: this test asks the
//! router and compares, and rewrites the copies when told to.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gocd_dind::clock::Clock;
use gocd_dind::demo::Harness;
use gocd_dind::runtime::Runtimes;
use gocd_dind::service::ServiceOptions;
use serde_json::Value;

/// GoCD's load-time requests that carry no body and whose answer depends on nothing but
/// the service's version. The shim lists the same names (`StaticAnswers.NAMES`).
const STATIC_REQUESTS: [&str; 8] = [
    "cd.go.elastic-agent.get-icon",
    "cd.go.elastic-agent.get-capabilities",
    "cd.go.elastic-agent.get-elastic-agent-profile-metadata",
    "cd.go.elastic-agent.get-elastic-agent-profile-view",
    "cd.go.elastic-agent.get-cluster-profile-metadata",
    "cd.go.elastic-agent.get-cluster-profile-view",
    "go.plugin-settings.get-configuration",
    "go.plugin-settings.get-view",
];

/// Set to anything to rewrite the copies instead of checking them.
const REGENERATE: &str = "GOCD_DIND_REGENERATE_STATIC_ANSWERS";
const COMMAND: &str = "GOCD_DIND_REGENERATE_STATIC_ANSWERS=1 cargo test --locked --test tests static_answers";

fn copies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugin-shim/src/main/resources/static-answers")
}

fn copy_path(dir: &Path, request: &str) -> PathBuf {
    dir.join(format!("{request}.json"))
}

#[tokio::test]
async fn static_answers_in_the_plugin_jar_equal_the_services() {
    // The service as `gocd-dind serve` runs it: no test-only runtime.
    let harness =
        Harness::start(Arc::new(Runtimes::new()), Clock::default(), ServiceOptions { allow_memory_runtime: false })
            .await
            .expect("the service starts");
    let dir = copies_dir();
    let regenerate = std::env::var_os(REGENERATE).is_some();
    if regenerate {
        std::fs::create_dir_all(&dir).unwrap();
    }

    let mut stale = Vec::new();
    for request in STATIC_REQUESTS {
        let (status, answer) = harness.send(request, &Value::Null).await.unwrap();
        assert_eq!(status, 200, "{request}: {answer}");
        let path = copy_path(&dir, request);
        if regenerate {
            std::fs::write(&path, &answer).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(answer.as_bytes()) {
            stale.push(request.to_owned());
        }
    }
    // A missing directory already made every request stale above.
    for entry in std::fs::read_dir(&dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        let known = STATIC_REQUESTS.iter().any(|request| copy_path(&dir, request) == path);
        if known {
            continue;
        }
        if regenerate {
            std::fs::remove_file(&path).unwrap();
        } else {
            stale.push(format!("{} (no such static request)", path.display()));
        }
    }
    assert!(
        stale.is_empty(),
        "the plugin jar's copies of the service's static answers are stale: {stale:?}.\n\
         Regenerate them with `{COMMAND}`, then commit plugin-shim/src/main/resources/static-answers/ \
         (the jar picks them up when it is next built)."
    );
}
