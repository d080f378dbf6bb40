//! Status reports: always 200 with a non-blank `view`, errors included, because GoCD
//! throws on anything else. GoCD shows the view inside its own admin page, so it is an
//! HTML fragment: self-contained (its style scoped to `.gocd-dind`), no script, every
//! value HTML-escaped, no secret ever shown. Links lead into GoCD's own pages.

mod agent;
mod html;
pub mod links;
mod place;

use std::fmt::Write;
use std::sync::Arc;

use html_escape::encode_text as esc;
use serde_json::{json, Value};

use self::links::Links;
use crate::protocol::{AgentStatusReportRequest, ClusterStatusReportRequest, PluginStatusReportRequest};
use crate::service::{OrphanView, Service};

fn page(title: &str, body: &str) -> Value {
    json!({"view": format!("{}<div class=\"gocd-dind\"><h2>{}</h2>{body}</div>", html::STYLE, esc(title))})
}

pub async fn cluster(service: &Arc<Service>, req: &ClusterStatusReportRequest) -> Value {
    let view = service.cluster_view(&req.cluster_profile_properties).await;
    let server = service.server_info().await.ok();
    let mut html = String::new();
    place::section(&mut html, &view, &Links::new(server.as_ref()), service.clock.now());
    page("gocd-dind cluster status", &html)
}

pub async fn plugin(service: &Arc<Service>, req: &PluginStatusReportRequest) -> Value {
    let view = service.plugin_view(&req.all_cluster_profiles_properties).await;
    let links = Links::new(view.server.as_ref());
    let now = service.clock.now();
    let mut html = String::new();
    if view.places.is_empty() && view.unusable.is_empty() {
        html.push_str("<p>No cluster profiles use this plugin yet.</p>");
    }
    for place in &view.places {
        place::section(&mut html, place, &links, now);
    }
    for problem in &view.unusable {
        let _ = write!(
            html,
            "<section><h3>A cluster profile that cannot be used</h3><p class=\"error\">{}</p></section>",
            esc(problem)
        );
    }
    orphans_section(&mut html, &service.orphan_views().await);
    place::postmortems(&mut html, &view.postmortems, &links, now);
    page("gocd-dind status", &html)
}

/// Pods of this server that no cluster profile reaches any more: the profile that made
/// them was deleted or pointed at another engine. They are not removed by the service.
fn orphans_section(html: &mut String, orphans: &[OrphanView]) {
    if orphans.is_empty() {
        return;
    }
    html.push_str("<section><h3>Pods no cluster profile reaches</h3><p>Their cluster profile was deleted or now points elsewhere, so the plugin no longer manages them. Remove them with the commands shown (add the TLS flags or the kube context of that place).</p>");
    for orphan in orphans {
        let _ = write!(html, "<h4>{}</h4>", esc(&orphan.description));
        html::error(html, orphan.error.as_ref());
        let _ = write!(html, "<p>Pods: {}</p><pre>{}</pre>", esc(&orphan.pods.join(", ")), esc(&orphan.command));
    }
    html.push_str("</section>");
}

pub async fn agent(service: &Arc<Service>, req: &AgentStatusReportRequest) -> Value {
    let view = service.agent_view(req).await;
    let mut html = String::new();
    agent::body(&mut html, &view, &Links::new(view.server.as_ref()), service.clock.now());
    page("gocd-dind agent status", &html)
}
