//! Every status page in headless Chromium at 1024 px: no sideways overflow, nothing in the
//! console, nothing smuggled in. Two runs of the same scenario: one with realistic names
//! (its screenshots are docs/screenshots/*.png when GOCD_DIND_UPDATE_SCREENSHOTS=1, else
//! under target/), one with hostile job names, dockerd log lines, events and profile
//! values, which must show as text. A control page proves the checks bite.

use std::sync::Arc;

use gocd_dind::runtime::memory::{MemoryProvider, MemoryRuntime};
use gocd_dind::runtime::PodEvent;
use gocd_dind::service::ServiceOptions;
use serde_json::{json, Value};

use crate::browser::{Browser, Rendered};
use crate::support::{memory_cluster, MemoryHarness};

const OTHER: &str = "tcp://build-2.example.com:2376";
/// GoCD's secure site URL as the fake GoCD reports it: every link starts here.
const LINKS_TO: &str = "https://127.0.0.1:8154/go/";

/// The words a scenario uses: realistic, or hostile.
struct Words {
    pipeline: &'static str,
    stage: &'static str,
    job: &'static str,
    dind_log: String,
    failed_log: String,
    events: Vec<PodEvent>,
    invalid_runtime: &'static str,
    /// Texts that must show, literally, on some page.
    shown: Vec<&'static str>,
}

fn event(reason: &str, message: &str, warning: bool, count: u32) -> PodEvent {
    PodEvent { at: Some(std::time::SystemTime::now()), warning, reason: reason.into(), message: message.into(), count }
}

fn realistic() -> Words {
    let log = [
        r#"time="2026-12-01T09:14:02.118Z" level=info msg="Starting up""#,
        r#"time="2026-12-01T09:14:02.201Z" level=info msg="[core] [Channel #1] Channel Connectivity change to READY" module=grpc"#,
        r#"time="2026-12-01T09:14:02.377Z" level=warning msg="Your kernel does not support cgroup blkio weight""#,
        r#"time="2026-12-01T09:14:02.377Z" level=warning msg="Your kernel does not support cgroup blkio weight_device""#,
        r#"time="2026-12-01T09:14:02.590Z" level=info msg="Loading containers: done.""#,
        r#"time="2026-12-01T09:14:02.611Z" level=info msg="Docker daemon" commit=e6534b4 graphdriver=overlay2 version=20.10.24"#,
        r#"time="2026-12-01T09:14:02.640Z" level=info msg="API listen on 127.0.0.1:2376""#,
    ];
    let failed = [
        r#"time="2026-12-01T09:20:11.002Z" level=info msg="Starting up""#,
        r#"time="2026-12-01T09:20:11.310Z" level=error msg="failed to mount overlay: operation not permitted" storage-driver=overlay2"#,
        r#"time="2026-12-01T09:20:11.311Z" level=error msg="[graphdriver] prior storage driver overlay2 failed: driver not supported""#,
        "failed to start daemon: error initializing graphdriver: driver not supported",
    ];
    Words {
        pipeline: "build-api",
        stage: "test",
        job: "integration",
        dind_log: log.join("\n") + "\n",
        failed_log: failed.join("\n") + "\n",
        events: vec![
            event("Scheduled", "Successfully assigned gocd-dind-agents/gocd-dind-7f3a to node-1", false, 1),
            event("Pulled", "Container image \"docker:dind\" already present on machine", false, 1),
            event("Started", "Started container dind", false, 1),
            event(
                "Unhealthy",
                "Startup probe failed: Cannot connect to the Docker daemon at tcp://127.0.0.1:2376",
                true,
                3,
            ),
            event("Started", "Started container agent", false, 1),
        ],
        invalid_runtime: "swarm",
        shown: vec!["Your kernel does not support cgroup blkio weight", "driver not supported"],
    }
}

fn hostile() -> Words {
    let long = "x".repeat(3000);
    Words {
        pipeline: "<script>window.pwned=1</script>",
        stage: "\"><img src=x onerror=window.pwned=2>",
        job: "</td></tr></table><b onclick=alert(3)>job",
        dind_log: format!(
            "level=error msg=\"<script>alert(4)</script>\"\n<img src=x onerror=alert(5)>failed\nlevel=warning msg=\"{long}\"\n{long}\n"
        ),
        failed_log: "level=error msg=\"</pre><iframe src=javascript:alert(6)></iframe>\"\n".into(),
        events: vec![event("<iframe src=javascript:alert(7)>", &format!("<a href=javascript:alert(8)>{long}</a>"), true, 2)],
        invalid_runtime: "<svg onload=alert(9)>",
        shown: vec![
            "<script>window.pwned=1</script>",
            "\"><img src=x onerror=window.pwned=2>",
            "<script>alert(4)</script>",
            "</pre><iframe src=javascript:alert(6)></iframe>",
            "<iframe src=javascript:alert(7)>",
            "<svg onload=alert(9)>",
        ],
    }
}

struct Scenario {
    h: MemoryHarness,
    other: Arc<MemoryRuntime>,
    words: Words,
    profiles: Vec<Value>,
}

impl Scenario {
    async fn start(words: Words) -> Self {
        let clock = gocd_dind::clock::Clock::default();
        let (runtime, other) = (MemoryRuntime::new(clock.clone()), MemoryRuntime::new(clock.clone()));
        let provider = MemoryProvider::new(runtime.clone()).with_engine(OTHER, other.clone());
        let options = ServiceOptions { allow_memory_runtime: true };
        let harness = gocd_dind::demo::Harness::start(Arc::new(provider), clock.clone(), options).await.unwrap();
        for engine in [&runtime, &other] {
            engine.set_dind_log(&words.dind_log);
            engine.set_events(words.events.clone());
        }
        let profiles = vec![
            memory_cluster(&[("max_pending_agents", "2")]),
            memory_cluster(&[("max_pending_agents", "2"), ("dind_image", "docker:27-dind")]),
            memory_cluster(&[("docker_host", OTHER), ("max_pending_agents", "1")]),
            json!({"runtime": words.invalid_runtime}),
        ];
        Self { h: MemoryHarness { harness, runtime, clock }, other, words, profiles }
    }

    fn job(&self, job_id: i64) -> Value {
        json!({"pipeline_name": self.words.pipeline, "pipeline_label": "42", "pipeline_counter": 42, "stage_name": self.words.stage, "stage_counter": "1", "job_name": self.words.job, "job_id": job_id})
    }

    async fn send(&self, request: &str, body: &Value) -> String {
        let (status, answer) = self.h.harness.send(request, body).await.unwrap();
        assert_eq!(status, 200, "{request}: {answer}");
        answer
    }

    async fn create(&self, profile: usize, job_id: i64) {
        let body = json!({"auto_register_key": "k", "elastic_agent_profile_properties": {}, "cluster_profile_properties": self.profiles[profile], "job_identifier": self.job(job_id)});
        self.send("cd.go.elastic-agent.create-agent", &body).await;
    }

    fn pod(&self, job_id: i64) -> String {
        let Some(record) = self.h.harness.service.pod_of_job(job_id) else {
            panic!("no pod for job {job_id}; console:\n{}", self.h.harness.gocd.console_text())
        };
        record.info.name
    }

    /// The agent registers with GoCD, asks for work, gets its job and builds.
    async fn ask_for_work(&self, profile: usize, job_id: i64) {
        let pod = self.pod(job_id);
        self.h.harness.gocd.set_agent(&pod, "Idle", "Enabled");
        let agent = json!({"agent_id": pod, "agent_state": "Idle", "build_state": "Idle", "config_state": "Enabled"});
        let body = json!({"agent": agent, "job_identifier": self.job(job_id), "cluster_profile_properties": self.profiles[profile]});
        assert_eq!(self.send("cd.go.elastic-agent.should-assign-work", &body).await, "true");
        self.h.harness.gocd.set_agent(&pod, "Building", "Enabled");
    }

    fn advance(&self, seconds: f64) {
        self.h.clock.advance(std::time::Duration::from_secs_f64(seconds));
    }

    /// A job through its whole life on profile 0, with time passing between the stages;
    /// several pods in every state; a failure; a job held by a limit; a completed job.
    async fn play(&self) {
        let (h, settle) = (&self.h, || self.h.harness.service.settle());
        h.runtime.hold_creates();
        self.create(0, 101).await; // running, assigned
        self.advance(1.3);
        h.runtime.release_creates();
        settle().await;
        self.advance(24.0);
        self.ask_for_work(0, 101).await;
        self.create(1, 102).await; // pending: started, not registered
        settle().await;
        self.other.fail_creates_with(Some(&self.words.failed_log));
        self.create(2, 103).await; // its start fails
        settle().await;
        self.other.fail_creates_with(None);
        self.create(2, 104).await; // pending on the other engine ...
        settle().await;
        self.create(2, 105).await; // ... so this one waits on max_pending_agents = 1
        settle().await;
        self.create(1, 106).await; // completed and removed
        settle().await;
        self.advance(18.0);
        self.ask_for_work(1, 106).await;
        self.advance(190.0);
        let completion = json!({"elastic_agent_id": self.pod(106), "job_identifier": self.job(106), "cluster_profile_properties": self.profiles[1], "elastic_agent_profile_properties": {}});
        self.send("cd.go.elastic-agent.job-completion", &completion).await;
        self.advance(30.0);
        h.runtime.hold_creates();
        self.create(0, 107).await; // still being created while the pages are read
    }

    /// Every page: (file name, view).
    async fn pages(&self) -> Vec<(&'static str, String)> {
        let view =
            |answer: String| serde_json::from_str::<Value>(&answer).unwrap()["view"].as_str().unwrap().to_owned();
        let agent = |profile: usize, job_id: i64| json!({"cluster_profile_properties": self.profiles[profile], "job_identifier": self.job(job_id)});
        let mut pages = vec![
            (
                "plugin-status",
                view(
                    self.send(
                        "cd.go.elastic-agent.plugin-status-report",
                        &json!({"all_cluster_profiles_properties": self.profiles}),
                    )
                    .await,
                ),
            ),
            (
                "cluster-status",
                view(
                    self.send(
                        "cd.go.elastic-agent.cluster-status-report",
                        &json!({"cluster_profile_properties": self.profiles[0]}),
                    )
                    .await,
                ),
            ),
        ];
        for (name, profile, job_id) in [
            ("agent-running", 0, 101),
            ("agent-waiting-on-a-limit", 2, 105),
            ("agent-start-failed", 2, 103),
            ("agent-completed", 1, 106),
            ("agent-never-asked", 0, 199),
        ] {
            pages.push((
                name,
                view(self.send("cd.go.elastic-agent.agent-status-report", &agent(profile, job_id)).await),
            ));
        }
        pages
    }

    async fn finish(self) {
        self.h.runtime.release_creates();
        self.h.harness.service.settle().await;
    }
}

fn check(name: &str, page: &Rendered) {
    assert!(page.console.is_empty(), "{name}: the console has entries: {:?}", page.console);
    assert!(
        page.smuggled.is_empty(),
        "{name}: elements or attributes that escaping should have stopped: {:?}",
        page.smuggled
    );
    assert!(page.overflow.is_empty(), "{name}: wider than {} px: {:?}", crate::browser::WIDTH, page.overflow);
    for link in &page.links {
        assert!(link.starts_with(LINKS_TO), "{name}: a link outside GoCD: {link}");
    }
}

async fn render_all(browser: &Browser, words: Words, screenshots: Option<&std::path::Path>) -> String {
    let scenario = Scenario::start(words).await;
    scenario.play().await;
    let mut all_text = String::new();
    for (name, html) in scenario.pages().await {
        let page = browser.render(name, &html).await;
        check(name, &page);
        assert!(!page.links.is_empty() || name == "agent-never-asked" || name == "cluster-status", "{name}: no links");
        if let Some(dir) = screenshots {
            std::fs::write(dir.join(format!("{name}.png")), browser.screenshot(page.height).await).unwrap();
        }
        all_text.push_str(&page.text);
    }
    for text in &scenario.words.shown {
        assert!(all_text.contains(text), "{text:?} is not shown as text on any page");
    }
    scenario.finish().await;
    all_text
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_renders_in_chromium_at_1024_px_without_overflow_errors_or_anything_unescaped() {
    let browser = Browser::start().await;

    // The checks bite: a page with an unescaped image and a too-wide block fails each.
    let control = browser
        .render("control", "<div class=\"gocd-dind\"><img src=\"x\" onerror=\"window.x=1\"><div style=\"width:1400px\">wide</div></div>")
        .await;
    assert!(!control.smuggled.is_empty(), "the smuggled image went unseen: {control:?}");
    assert!(!control.console.is_empty(), "the refused image left nothing in the console: {control:?}");
    assert!(!control.overflow.is_empty(), "the wide block went unseen: {control:?}");

    let screenshots = if std::env::var_os("GOCD_DIND_UPDATE_SCREENSHOTS").is_some() {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots")
    } else {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")
    };
    std::fs::create_dir_all(&screenshots).unwrap();
    let text = render_all(&browser, realistic(), Some(&screenshots)).await;
    for expected in [
        "pending 2 / 2",
        "pending 1 / 1",
        "Waiting for a free slot since",
        "dind_not_ready",
        "Post-mortem of pod",
        "Kubernetes events",
    ] {
        assert!(text.contains(expected), "the pages say {expected:?}");
    }
    render_all(&browser, hostile(), None).await;
    browser.stop().await;
}
