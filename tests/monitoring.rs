//! deploy/monitoring against the service itself: every expression of the Grafana
//! dashboard and of the alert rules is PromQL (parsed by promql-parser) and names only
//! metrics the service exports, read from a running service's `/metrics`, so renaming
//! a metric breaks this test. promtool checks and unit-tests the rules
//! (`.ci/monitoring-check.sh`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use promql_parser::parser::{self, Expr, VectorSelector};
use promql_parser::util::{walk_expr, ExprVisitor};
use serde_json::Value;

use crate::support::{memory_cluster, memory_harness};

/// Series Prometheus adds to every scrape target itself.
const PROMETHEUS_OWN: &[&str] = &["up"];

fn monitoring_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every series name the service's `/metrics` can carry, as Prometheus stores them:
/// from each `# TYPE` line, with the suffixes its type adds, and from the samples. A
/// family shows only once it has a member, so the service is first made to do what each
/// counts: a pod started, one held back by a limit, one that failed, one removed, a warm
/// pod.
async fn exported_series() -> BTreeSet<String> {
    let memory = memory_harness().await;
    let h = &memory.harness;
    let cluster = memory_cluster(&[("max_pending_agents", "1")]);
    let send = |body: Value, request: &'static str| async move {
        let (status, text) = h.send(request, &body).await.unwrap();
        assert_eq!(status, 200, "{request}: {text}");
    };
    let create = |job: i64| send(gocd_dind::demo::create_agent_body(&cluster, job), "cd.go.elastic-agent.create-agent");
    memory.runtime.fail_creates_with(Some("the engine said no"));
    create(1).await;
    h.service.settle().await;
    memory.runtime.fail_creates_with(None);
    create(2).await;
    h.service.settle().await;
    create(3).await; // held back: job 2's agent has not registered (max_pending_agents = 1)
    h.service.settle().await;
    let pod = h.service.pod_of_job(2).expect("job 2's pod started").info.name;
    h.gocd.set_agent(&pod, "Idle", "Enabled");
    let completion = serde_json::json!({"elastic_agent_id": pod, "job_identifier": gocd_dind::demo::job_identifier(2), "cluster_profile_properties": cluster, "elastic_agent_profile_properties": {}});
    send(completion, "cd.go.elastic-agent.job-completion").await;
    h.service.settle().await;
    // A warm pool (gocd_dind_warm_pods): a job whose profile keeps one warm pod.
    let roomy = memory_cluster(&[("max_pending_agents", "3")]);
    let warm = serde_json::json!({"auto_register_key": "key-4", "elastic_agent_profile_properties": {"WarmPoolSize": "1"}, "cluster_profile_properties": roomy, "job_identifier": gocd_dind::demo::job_identifier(4)});
    send(warm, "cd.go.elastic-agent.create-agent").await;
    h.service.settle().await;
    let text = reqwest::get(format!("{}/metrics", h.url)).await.unwrap().text().await.unwrap();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("a TYPE line without a type: {line}"));
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    assert!(names.contains("gocd_dind_requests_total"), "the service's metrics were read:\n{text}");
    names
}

/// The metric names an expression selects.
#[derive(Default)]
struct Selected(BTreeSet<String>);

impl Selected {
    fn add(&mut self, selector: &VectorSelector) {
        let by_matcher = selector.matchers.matchers.iter().find(|m| m.name == "__name__").map(|m| m.value.clone());
        let name = selector.name.clone().or(by_matcher);
        self.0.insert(name.unwrap_or_else(|| panic!("a selector without a metric name: {selector}")));
    }
}

impl ExprVisitor for Selected {
    type Error = std::convert::Infallible;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
        match expr {
            Expr::VectorSelector(selector) => self.add(selector),
            Expr::MatrixSelector(matrix) => self.add(&matrix.vs),
            _ => {}
        }
        Ok(true)
    }
}

fn metric_names(expr: &str, whence: &str) -> BTreeSet<String> {
    let parsed = parser::parse(expr).unwrap_or_else(|e| panic!("{whence}: not PromQL ({e}):\n{expr}"));
    let mut selected = Selected::default();
    walk_expr(&mut selected, &parsed).unwrap();
    selected.0
}

/// The dashboard's expressions with Grafana's variables put in as Grafana would: its
/// interval variables as a range, the dashboard's own variables as the regex "All" is.
fn grafana_expressions(dashboard: &Value) -> Vec<(String, String)> {
    let variables: Vec<String> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect();
    let substitute = |expr: &str| {
        let mut text = expr.to_owned();
        for builtin in ["$__rate_interval", "$__interval", "$__range"] {
            text = text.replace(builtin, "5m");
        }
        for name in &variables {
            text = text.replace(&format!("${{{name}}}"), ".*").replace(&format!("${name}"), ".*");
        }
        assert!(!text.contains('$'), "an expression uses a variable the dashboard does not define:\n{expr}");
        text
    };
    let mut found = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"].as_array().expect("panels").iter().collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        let title = panel["title"].as_str().unwrap_or_default();
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("panel {title:?} has no targets"));
        assert!(!targets.is_empty(), "panel {title:?} has no targets");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
            found.push((format!("panel {title:?}"), substitute(expr)));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let query = variable["query"]["query"].as_str().or_else(|| variable["query"].as_str()).unwrap_or_default();
        if let Some(args) = query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')) {
            let (selector, _label) = args.rsplit_once(',').expect("label_values(metric, label)");
            found.push((format!("variable {}", variable["name"]), substitute(selector.trim())));
        }
    }
    found
}

fn rule_expressions(rules: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().or_else(|| rule["record"].as_str()).expect("alert or record");
            found.push((format!("rule {name}"), rule["expr"].as_str().expect("expr").to_owned()));
        }
    }
    found
}

#[tokio::test]
async fn the_dashboard_and_the_alert_rules_name_only_metrics_the_service_exports() {
    let exported = exported_series().await;
    let dashboard: Value =
        serde_json::from_str(&monitoring_file("gocd-dind.dashboard.json")).expect("the dashboard is JSON");
    let rules: Value =
        serde_saphyr::from_str(&monitoring_file("gocd-dind.rules.yaml")).expect("the alert rules are YAML");
    let mut expressions = grafana_expressions(&dashboard);
    assert!(expressions.len() >= 15, "the dashboard's panels were found: {expressions:?}");
    expressions.extend(rule_expressions(&rules));

    let mut unknown = Vec::new();
    let mut used = BTreeSet::new();
    for (whence, expr) in &expressions {
        for name in metric_names(expr, whence) {
            if !exported.contains(&name) && !PROMETHEUS_OWN.contains(&name.as_str()) {
                unknown.push(format!("{whence}: {name}"));
            }
            used.insert(name);
        }
    }
    assert!(unknown.is_empty(), "not exported by the service: {unknown:#?}\nexported: {exported:#?}");
    // Every family the service exports is on the dashboard.
    let families: BTreeSet<&str> = exported
        .iter()
        .map(|n| n.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count"))
        .collect();
    let shown: BTreeSet<&str> = used
        .iter()
        .map(|n| n.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count"))
        .collect();
    let missing: Vec<&&str> = families.difference(&shown).collect();
    assert!(missing.is_empty(), "exported but on no panel: {missing:?}");
}

#[test]
fn a_renamed_metric_is_caught() {
    let names = metric_names(
        r#"histogram_quantile(0.95, sum by (le) (rate(gocd_dind_agent_start_seconds_bucket{stage="x"}[5m]))) > on() group_left count({__name__="gocd_dind_pods"})"#,
        "test",
    );
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["gocd_dind_agent_start_seconds_bucket", "gocd_dind_pods"]);
}
