//! The pages' building blocks. Every value is escaped on the way in: text with
//! `encode_text`, attributes (links) with `encode_double_quoted_attribute`. The pages
//! carry their own style, scoped to `.gocd-dind` so GoCD's page around them is untouched,
//! and no script.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use html_escape::{encode_double_quoted_attribute as attr, encode_text as esc};

use crate::clock::{span, utc};
use crate::dockerd_log;
use crate::runtime::{ContainerDetails, PodDetails, PodEvent};
use crate::service::journal::{Stage, Story};

pub const STYLE: &str = "<style>\
.gocd-dind{font-size:14px;line-height:1.45;overflow-wrap:anywhere}\
.gocd-dind h2{margin:4px 0 8px}.gocd-dind h3{margin:4px 0 6px}.gocd-dind h4{margin:10px 0 4px}\
.gocd-dind section{border:1px solid #d0d7de;border-radius:6px;padding:8px 12px;margin:12px 0}\
.gocd-dind table{border-collapse:collapse;margin:6px 0;width:100%}\
.gocd-dind th,.gocd-dind td{border:1px solid #d8dee4;padding:3px 8px;text-align:left;vertical-align:top;overflow-wrap:anywhere}\
.gocd-dind th{background:#f3f5f7;font-weight:600}\
.gocd-dind .error{color:#b3261e;font-weight:600}.gocd-dind .warn{color:#8a5300}.gocd-dind .ok{color:#1a7f37}\
.gocd-dind .muted{color:#57606a}\
.gocd-dind pre{background:#f6f8fa;border:1px solid #d8dee4;padding:8px;margin:6px 0;white-space:pre-wrap;overflow-wrap:anywhere;max-height:420px;overflow-y:auto}\
.gocd-dind .state{display:inline-block;padding:0 7px;border-radius:9px;background:#eaeef2;white-space:nowrap}\
.gocd-dind .state-running{background:#dafbe1}.gocd-dind .state-pending,.gocd-dind .state-creating{background:#fff8c5}\
.gocd-dind .state-terminating{background:#eaeef2}.gocd-dind .state-stopped{background:#ffebe9}\
.gocd-dind .counts{margin:6px 0}.gocd-dind .counts span{margin-right:14px;white-space:nowrap}\
.gocd-dind .limits span{white-space:nowrap}\
.gocd-dind table.fixed{table-layout:fixed}.gocd-dind .w10{width:10%}.gocd-dind .w15{width:15%}\
.gocd-dind .w20{width:20%}.gocd-dind .w25{width:25%}.gocd-dind .w30{width:30%}.gocd-dind .w40{width:40%}\
.gocd-dind .full{color:#b3261e;font-weight:600}\
.gocd-dind ul{margin:4px 0;padding-left:20px}.gocd-dind details{margin:6px 0}.gocd-dind summary{cursor:pointer}\
</style>";

/// `<p class="error">…</p>` when there is a message.
pub fn error(html: &mut String, message: Option<&String>) {
    if let Some(message) = message {
        let _ = write!(html, "<p class=\"error\">{}</p>", esc(message));
    }
}

pub fn link(href: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", attr(href), esc(text))
}

/// A state as a small badge: `running`, `pending`, `stopped: …`.
pub fn state(text: &str) -> String {
    let class = text.split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or_default();
    format!("<span class=\"state state-{}\">{}</span>", attr(class), esc(text))
}

/// A table of key/value rows.
pub fn settings_table(html: &mut String, rows: &[(&str, String)]) {
    html.push_str("<table>");
    for (key, value) in rows {
        let _ = write!(html, "<tr><th>{}</th><td>{}</td></tr>", esc(key), esc(value));
    }
    html.push_str("</table>");
}

/// A moment and how long ago it was.
pub fn moment(at: SystemTime, now: SystemTime) -> String {
    match now.duration_since(at) {
        Ok(ago) => format!("{} ({} ago)", utc(at), span(ago)),
        Err(_) => utc(at),
    }
}

/// A pod's timeline: each stage, when, how long after its creation and after the stage
/// before it.
pub fn timeline(html: &mut String, story: &Story) {
    if story.adopted {
        html.push_str(
            "<p class=\"muted\">Found running after the service restarted: its earlier stages are not known.</p>",
        );
    }
    html.push_str("<table><tr><th>Stage</th><th>At</th><th>After creation</th><th>Step</th></tr>");
    let created = story.at(Stage::Created);
    let mut previous: Option<SystemTime> = None;
    for (stage, at) in &story.timeline {
        let after = |from: Option<SystemTime>| {
            from.and_then(|f| at.duration_since(f).ok()).map_or_else(String::new, |d: Duration| span(d))
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(stage.label()),
            esc(&utc(*at)),
            esc(&after(created)),
            esc(&after(previous))
        );
        previous = Some(*at);
    }
    html.push_str("</table>");
}

/// Containers with their state, exit code, OOM kills and restarts.
pub fn containers(html: &mut String, containers: &[ContainerDetails]) {
    if containers.is_empty() {
        return;
    }
    html.push_str(
        "<h4>Containers</h4><table><tr><th>Name</th><th>Image</th><th>State</th><th>Exit code</th><th>Restarts</th></tr>",
    );
    for c in containers {
        let exit = match (c.exit_code, c.oom_killed) {
            (Some(code), true) => format!("{code} <span class=\"error\">OOM killed</span>"),
            (None, true) => "<span class=\"error\">OOM killed</span>".to_owned(),
            (Some(code), false) => code.to_string(),
            (None, false) => String::new(),
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{exit}</td><td>{}</td></tr>",
            esc(&c.name),
            esc(&c.image),
            esc(&c.state),
            c.restarts
        );
    }
    html.push_str("</table>");
}

/// Kubernetes's events about the pod, oldest first.
pub fn events(html: &mut String, events: &[PodEvent]) {
    if events.is_empty() {
        return;
    }
    html.push_str("<h4>Kubernetes events</h4><table><tr><th>At</th><th>Type</th><th>Reason</th><th>Message</th></tr>");
    for e in events {
        let at = e.at.map(utc).unwrap_or_default();
        let kind = if e.warning { "<span class=\"warn\">Warning</span>" } else { "Normal" };
        let count = if e.count > 1 { format!(" (×{})", e.count) } else { String::new() };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{kind}</td><td>{}{}</td><td>{}</td></tr>",
            esc(&at),
            esc(&e.reason),
            esc(&count),
            esc(&e.message)
        );
    }
    html.push_str("</table>");
}

/// dockerd's warnings and errors first; its raw last lines folded behind `<details>`.
pub fn dockerd_log(html: &mut String, log: &str) {
    if log.trim().is_empty() {
        return;
    }
    let problems = dockerd_log::problems(log);
    html.push_str("<h4>dockerd: warnings and errors</h4>");
    if problems.is_empty() {
        html.push_str("<p class=\"ok\">None in its last lines.</p>");
    } else {
        html.push_str("<ul>");
        for p in &problems {
            let class = match p.level {
                dockerd_log::Level::Error => "error",
                dockerd_log::Level::Warning => "warn",
            };
            let times = if p.count > 1 { format!(" (×{})", p.count) } else { String::new() };
            let _ = write!(
                html,
                "<li><span class=\"{class}\">{}</span> {}{}</li>",
                esc(p.level.as_str()),
                esc(&p.text),
                esc(&times)
            );
        }
        html.push_str("</ul>");
    }
    let lines = log.lines().count();
    let _ =
        write!(html, "<details><summary>dockerd log (last {lines} lines)</summary><pre>{}</pre></details>", esc(log));
}

/// The look at a pod: containers, events, dockerd's log.
pub fn look(html: &mut String, details: &PodDetails) {
    for note in &details.notes {
        let _ = write!(html, "<p class=\"warn\">{}</p>", esc(note));
    }
    containers(html, &details.containers);
    events(html, &details.events);
    dockerd_log(html, &details.dind_log_tail);
}
