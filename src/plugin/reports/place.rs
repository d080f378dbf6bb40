//! The plugin page and the cluster page: one section per place where pods run (an
//! engine, or a namespace of a cluster), the cluster profiles that point there, its pods
//! against their limits, its recent failures; and the post-mortems of recent pods.

use std::fmt::Write;
use std::time::SystemTime;

use html_escape::encode_text as esc;

use super::html::{error, link, moment, settings_table, state};
use super::links::Links;
use crate::clock::span;
use crate::service::journal::{Stage, Story};
use crate::service::{ClusterView, PodRow, PoolView, ProfileView};

/// `pending 2 / 2` with the limit marked when reached.
fn against(name: &str, count: usize, max: usize) -> String {
    let class = if count >= max { " class=\"full\"" } else { "" };
    format!("<span{class}>{} {count} / {max}</span>", esc(name))
}

pub fn section(html: &mut String, view: &ClusterView, links: &Links, now: SystemTime) {
    html.push_str("<section>");
    let _ = write!(html, "<h3>{}</h3>", esc(&view.description));
    match &view.engine {
        Some(engine) if view.error.is_none() => {
            let _ = write!(html, "<p><span class=\"ok\">answering</span>: {}</p>", esc(engine));
        }
        Some(engine) => {
            let _ = write!(html, "<p>{}</p>", esc(engine));
        }
        None => {}
    }
    error(html, view.error.as_ref());
    profiles(html, &view.profiles, view);
    let c = &view.counts;
    let _ = write!(
        html,
        "<p class=\"counts\"><span>creating {}</span><span>pending {}</span><span>running {}</span><span>terminating {}</span>{}{}</p>",
        c.creating,
        c.pending,
        c.running,
        c.terminating,
        if c.warm > 0 { format!("<span>warm {}</span>", c.warm) } else { String::new() },
        if c.stopped > 0 { format!("<span class=\"error\">stopped {}</span>", c.stopped) } else { String::new() }
    );
    pods_table(html, &view.pods, links);
    pools_section(html, &view.pools);
    if !view.failures.is_empty() {
        html.push_str("<h4>Recent failures</h4>");
        failures_table(html, &view.failures, links, now);
    }
    html.push_str("</section>");
}

/// The profiles of a place with their limits; profiles sharing the place are named by
/// what differs between them.
fn profiles(html: &mut String, profiles: &[ProfileView], view: &ClusterView) {
    let c = &view.counts;
    let limits = |p: &ProfileView| {
        format!(
            "{} · {}",
            against("pending", c.unregistered(), p.max_pending),
            against("all pods", c.all(), p.max_total)
        )
    };
    match profiles {
        [] => {}
        [only] => {
            let _ = write!(html, "<p class=\"limits\">{}</p>", limits(only));
            html.push_str("<details><summary>Cluster profile settings</summary>");
            settings_table(html, &only.settings);
            html.push_str("</details>");
        }
        several => {
            let _ = write!(html, "<p>{} cluster profiles point here and share its pods:</p>", several.len());
            html.push_str("<table><tr><th>Profile</th><th>Limits</th></tr>");
            for (i, p) in several.iter().enumerate() {
                let name = if p.distinguishing.is_empty() {
                    "the same settings as another profile".to_owned()
                } else {
                    p.distinguishing.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ")
                };
                let _ = write!(html, "<tr><td>#{} {}</td><td>{}</td></tr>", i + 1, esc(&name), limits(p));
            }
            html.push_str("</table>");
        }
    }
    html.push_str(
        "<p class=\"muted\">pending: pods whose agent has not registered yet (max_pending_agents); all pods: every pod (max_running_agents).</p>",
    );
}

pub fn pods_table(html: &mut String, pods: &[PodRow], links: &Links) {
    if pods.is_empty() {
        html.push_str("<p>No agent pods.</p>");
        return;
    }
    html.push_str(
        "<table class=\"fixed\"><tr><th class=\"w30\">Pod (agent id)</th><th class=\"w40\">Job</th><th class=\"w15\">State</th><th class=\"w15\">Age</th></tr>",
    );
    for pod in pods {
        let job = match &pod.job {
            Some(job) => link(&links.job(job), &job.path()),
            None => format!("job id {}", pod.job_id),
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{job}</td><td>{}</td><td>{}</td></tr>",
            link(&links.agent_status(Some(&pod.name), pod.job_id), &pod.name),
            state(&pod.state.text()),
            esc(&span(pod.age))
        );
    }
    html.push_str("</table>");
}

/// Warm pools: after the pods they will become, before what failed. Each pool with what
/// its profile asked for (size, idle time, agent image, images to pre-pull) and its
/// unclaimed warm pods; a pre-pull that failed is shown on its pod.
fn pools_section(html: &mut String, pools: &[PoolView]) {
    if pools.is_empty() {
        return;
    }
    html.push_str("<h4>Warm pools</h4>");
    html.push_str(
        "<table class=\"fixed\"><tr><th class=\"w15\">Pool</th><th class=\"w30\">Agent image, pre-pulls</th><th class=\"w15\">Size, idle</th><th>Warm pods</th></tr>",
    );
    for pool in pools {
        let image = pool.image.as_deref().unwrap_or("(no job of it asked since the service started)");
        let pre_pull =
            if pool.pre_pull.is_empty() { String::new() } else { format!("<br>{}", esc(&pool.pre_pull.join(", "))) };
        let shape =
            pool.shape.map_or_else(String::new, |s| format!("size {}, idle {} min", s.size, s.idle.as_secs() / 60));
        let pods = if pool.pods.is_empty() {
            "none".to_owned()
        } else {
            pool.pods
                .iter()
                .map(|p| format!("{} {} ({})", esc(&p.name), state(p.state), esc(&span(p.age))))
                .collect::<Vec<_>>()
                .join("<br>")
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}{pre_pull}</td><td>{}</td><td>{pods}</td></tr>",
            esc(&pool.pool),
            esc(image),
            esc(&shape)
        );
    }
    html.push_str("</table>");
    for pool in pools {
        for pod in &pool.pods {
            for failure in &pod.pull_failures {
                let _ = write!(
                    html,
                    "<p class=\"warn\">Warm pod {} could not pre-pull: {} (its job pulls the image itself).</p>",
                    esc(&pod.name),
                    esc(failure)
                );
            }
        }
    }
}

/// A gone pod's job, linked into GoCD; a warm pod no job claimed had none.
fn job_cell(story: &Story, links: &Links) -> String {
    if story.unclaimed() {
        return "(a warm pod: no job claimed it)".to_owned();
    }
    link(&links.job(&story.job), &story.job.path())
}

/// A gone pod, linked to its agent page (which is a job's); an unclaimed warm pod's name.
fn pod_cell(story: &Story, links: &Links) -> String {
    if story.unclaimed() {
        return esc(&story.pod).into_owned();
    }
    link(&links.agent_status(Some(&story.pod), story.job.job_id), &story.pod)
}

fn failures_table(html: &mut String, stories: &[Story], links: &Links, now: SystemTime) {
    html.push_str(
        "<table class=\"fixed\"><tr><th class=\"w20\">When</th><th class=\"w25\">Job</th><th class=\"w25\">Pod</th><th>Reason</th></tr>",
    );
    for story in stories {
        let Some(failure) = &story.failure else { continue };
        let when = story.at(Stage::Removed).map(|at| moment(at, now)).unwrap_or_default();
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><span class=\"error\">{}</span>: {}</td></tr>",
            esc(&when),
            job_cell(story, links),
            pod_cell(story, links),
            esc(failure.reason.as_str()),
            esc(&failure.message)
        );
    }
    html.push_str("</table>");
}

/// Pods that are gone, newest first; each agent page has the full post-mortem.
pub fn postmortems(html: &mut String, stories: &[Story], links: &Links, now: SystemTime) {
    if stories.is_empty() {
        return;
    }
    html.push_str("<section><h3>Recently gone pods</h3>");
    html.push_str(
        "<table class=\"fixed\"><tr><th class=\"w15\">Removed</th><th class=\"w25\">Pod</th><th class=\"w25\">Job</th><th class=\"w10\">Lived</th><th>Why</th></tr>",
    );
    for story in stories {
        let removed = story.at(Stage::Removed);
        let lived = story.at(Stage::Created).zip(removed).and_then(|(c, r)| r.duration_since(c).ok());
        let why = match &story.failure {
            Some(f) => format!("<span class=\"error\">{}</span>: {}", esc(f.reason.as_str()), esc(&f.message)),
            None => esc(story.removal.as_deref().unwrap_or_default()).into_owned(),
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{why}</td></tr>",
            esc(&removed.map(|at| moment(at, now)).unwrap_or_default()),
            pod_cell(story, links),
            job_cell(story, links),
            esc(&lived.map(span).unwrap_or_default())
        );
    }
    html.push_str("</table></section>");
}
