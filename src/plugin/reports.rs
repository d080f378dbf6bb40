//! Status reports: always 200 with a non-blank `view`, errors included, because GoCD
//! throws on anything else. Every value is HTML-escaped; no secret is ever shown.

use std::fmt::Write;
use std::sync::Arc;

use html_escape::encode_text as esc;
use serde_json::{json, Value};

use crate::protocol::{AgentStatusReportRequest, ClusterStatusReportRequest, PluginStatusReportRequest};
use crate::service::{ClusterView, OrphanView, PodRow, Service};

const STYLE: &str = "<style>.gocd-dind table{border-collapse:collapse;margin:8px 0}.gocd-dind td,.gocd-dind th{border:1px solid #ccc;padding:4px 8px;text-align:left}.gocd-dind .error{color:#b00;font-weight:bold}.gocd-dind pre{background:#f5f5f5;padding:8px;white-space:pre-wrap}</style>";

fn page(title: &str, body: &str) -> Value {
    json!({"view": format!("{STYLE}<div class=\"gocd-dind\"><h2>{}</h2>{body}</div>", esc(title))})
}

fn error(html: &mut String, message: Option<&String>) {
    if let Some(message) = message {
        let _ = write!(html, "<p class=\"error\">{}</p>", esc(message));
    }
}

fn pods_table(html: &mut String, pods: &[PodRow]) {
    if pods.is_empty() {
        html.push_str("<p>No agent pods.</p>");
        return;
    }
    html.push_str("<table><tr><th>Pod (agent id)</th><th>Job</th><th>State</th><th>Age</th></tr>");
    for pod in pods {
        let job =
            pod.job.as_ref().map_or_else(|| format!("job id {}", pod.job_id), crate::protocol::JobIdentifier::path);
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} s</td></tr>",
            esc(&pod.name),
            esc(&job),
            esc(&pod.state),
            pod.age.as_secs()
        );
    }
    html.push_str("</table>");
}

fn cluster_section(html: &mut String, view: &ClusterView) {
    let _ = write!(html, "<h3>{}</h3>", esc(&view.description));
    error(html, view.error.as_ref());
    if !view.engine.is_empty() {
        let _ = write!(html, "<p>Engine: {}</p>", esc(&view.engine));
    }
    if !view.settings.is_empty() {
        html.push_str("<table>");
        for (key, value) in &view.settings {
            let _ = write!(html, "<tr><th>{}</th><td>{}</td></tr>", esc(key), esc(value));
        }
        html.push_str("</table>");
    }
    pods_table(html, &view.pods);
}

pub async fn cluster(service: &Arc<Service>, req: &ClusterStatusReportRequest) -> Value {
    let view = service.cluster_view(&req.cluster_profile_properties).await;
    let mut html = String::new();
    cluster_section(&mut html, &view);
    page("gocd-dind cluster status", &html)
}

pub async fn plugin(service: &Arc<Service>, req: &PluginStatusReportRequest) -> Value {
    let views = service.plugin_view(&req.all_cluster_profiles_properties).await;
    let mut html = String::new();
    if views.is_empty() {
        html.push_str("<p>No cluster profiles use this plugin yet.</p>");
    }
    for view in &views {
        cluster_section(&mut html, view);
    }
    orphans_section(&mut html, &service.orphan_views().await);
    page("gocd-dind status", &html)
}

/// Pods of this server that no cluster profile reaches any more: the profile that made
/// them was deleted or pointed at another engine. They are not removed by the service.
fn orphans_section(html: &mut String, orphans: &[OrphanView]) {
    if orphans.is_empty() {
        return;
    }
    html.push_str("<h3>Pods no cluster profile reaches</h3><p>Their cluster profile was deleted or now points elsewhere, so the plugin no longer manages them. Remove them with the commands shown (add the TLS flags or the kube context of that place).</p>");
    for orphan in orphans {
        let _ = write!(html, "<h4>{}</h4>", esc(&orphan.description));
        error(html, orphan.error.as_ref());
        let _ = write!(html, "<p>Pods: {}</p><pre>{}</pre>", esc(&orphan.pods.join(", ")), esc(&orphan.command));
    }
}

pub async fn agent(service: &Arc<Service>, req: &AgentStatusReportRequest) -> Value {
    let view = service.agent_view(req).await;
    let mut html = String::new();
    let _ = write!(html, "<p>Job: {} (job id {})</p>", esc(&req.job_identifier.path()), req.job_identifier.job_id);
    if !view.cluster.is_empty() {
        let _ = write!(html, "<p>Cluster profile: {}</p>", esc(&view.cluster));
    }
    error(&mut html, view.error.as_ref());
    match (&view.pod, &view.row) {
        (Some(_), Some(row)) => pods_table(&mut html, std::slice::from_ref(row)),
        (Some(name), None) => {
            let _ = write!(html, "<p>Pod {} no longer exists.</p>", esc(name));
        }
        (None, _) => html.push_str("<p>No agent pod exists for this job.</p>"),
    }
    if let Some(failure) = &view.failure {
        let _ = write!(
            html,
            "<h3>Last failure</h3><p class=\"error\">Pod {} could not start:</p><pre>{}</pre>",
            esc(&failure.pod),
            esc(&failure.reason)
        );
    }
    if let Some(details) = &view.details {
        for note in &details.notes {
            let _ = write!(html, "<p class=\"error\">{}</p>", esc(note));
        }
        html.push_str("<h3>Containers</h3><table><tr><th>Name</th><th>Image</th><th>State</th></tr>");
        for c in &details.containers {
            let _ =
                write!(html, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&c.name), esc(&c.image), esc(&c.state));
        }
        html.push_str("</table>");
        if !details.dind_log_tail.is_empty() {
            let _ = write!(html, "<h3>dockerd log (last lines)</h3><pre>{}</pre>", esc(&details.dind_log_tail));
        }
    }
    page("gocd-dind agent status", &html)
}
