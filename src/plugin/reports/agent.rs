//! The agent page of one job: its pod (state, timeline, containers, events, dockerd's
//! problems), or why it has none (a limit since when, a refusal, the pod's removal), and
//! the post-mortem of its last pod once that is gone.

use std::fmt::Write;
use std::time::SystemTime;

use html_escape::encode_text as esc;

use super::html::{error, link, look, moment, state, timeline};
use super::links::Links;
use crate::clock::span;
use crate::service::journal::{HoldReason, Stage, Story};
use crate::service::AgentView;

pub fn body(html: &mut String, view: &AgentView, links: &Links, now: SystemTime) {
    let job = &view.job;
    let _ = write!(html, "<p>Job: {} (job id {})</p>", link(&links.job(job), &job.path()), job.job_id);
    if !view.place.is_empty() {
        let _ = write!(html, "<p>Runs on: {}</p>", esc(&view.place));
    }
    error(html, view.error.as_ref());
    match &view.row {
        Some(row) => {
            html.push_str("<section>");
            let _ = write!(
                html,
                "<h3>Pod {}</h3><p>{} · age {}</p>",
                esc(&row.name),
                state(&row.state.text()),
                esc(&span(row.age))
            );
            if let Some(story) = &view.story {
                timeline(html, story);
                not_pre_pulled(html, story);
            }
            if let Some(details) = &view.details {
                look(html, details);
            }
            html.push_str("</section>");
        }
        None => why_no_pod(html, view, now),
    }
    if let Some(dead) = view.postmortem.as_ref().filter(|s| view.row.as_ref().is_none_or(|r| r.name != s.pod)) {
        // Without a pod or a hold, the section above already said when and why it went.
        let say_removed = view.row.is_some() || view.hold.is_some();
        postmortem(html, dead, now, say_removed);
    }
}

/// Why the job has no pod, most telling reason first.
fn why_no_pod(html: &mut String, view: &AgentView, now: SystemTime) {
    html.push_str("<section><h3>No agent pod</h3>");
    if let Some(hold) = &view.hold {
        let since = moment(hold.since, now);
        let asked = moment(hold.last, now);
        let text = match &hold.reason {
            HoldReason::Limit(limit, why) => format!(
                "Waiting for a free slot since {since}: {why}. The limit is {} in the cluster profile; GoCD asks again until a pod can be created (last asked {asked}).",
                limit.setting()
            ),
            HoldReason::Postponed(why) => {
                format!("Waiting since {since}: {why}. GoCD asks again (last asked {asked}).")
            }
            HoldReason::Refused(why) => format!("create-agent has been refused since {since}: {why}."),
        };
        let class = if matches!(hold.reason, HoldReason::Refused(_)) { "error" } else { "warn" };
        let _ = write!(html, "<p class=\"{class}\">{}</p>", esc(&text));
    } else if let Some(dead) = &view.postmortem {
        let at = dead.at(Stage::Removed).map(|at| moment(at, now)).unwrap_or_default();
        let why = dead.removal.as_deref().unwrap_or_default();
        let _ = write!(
            html,
            "<p>Pod {} was removed {}: {}. Its post-mortem follows.</p>",
            esc(&dead.pod),
            esc(&at),
            esc(why)
        );
    } else if let Some(asked) = &view.asked_for {
        let _ = write!(
            html,
            "<p>Pod {} no longer exists, and this service kept no record of it (it went before the service last started).</p>",
            esc(asked)
        );
    } else {
        html.push_str("<p>No agent pod exists for this job, and create-agent has not asked for one since the service started.</p>");
    }
    html.push_str("</section>");
}

/// What the last pod of the job went through, kept after it is gone.
fn postmortem(html: &mut String, dead: &Story, now: SystemTime, say_removed: bool) {
    html.push_str("<section>");
    let _ = write!(html, "<h3>Post-mortem of pod {}</h3>", esc(&dead.pod));
    if let Some(failure) = &dead.failure {
        let _ = write!(
            html,
            "<p class=\"error\">Pod {} could not start ({}):</p><pre>{}</pre>",
            esc(&dead.pod),
            esc(failure.reason.as_str()),
            esc(&failure.message)
        );
    }
    if let (Some(at), Some(why), true) = (dead.at(Stage::Removed), &dead.removal, say_removed) {
        let _ = write!(html, "<p>Removed {}: {}.</p>", esc(&moment(at, now)), esc(why));
    }
    timeline(html, dead);
    not_pre_pulled(html, dead);
    if let Some(details) = &dead.last_look {
        look(html, details);
    }
    html.push_str("</section>");
}

/// The images the job's warm pod could not pre-pull when it was made, each with why: the
/// job pulls them itself (its console said so at the claim).
fn not_pre_pulled(html: &mut String, story: &Story) {
    let Some(warm) = story.warm.as_ref().filter(|w| !w.pull_failures.is_empty()) else { return };
    let _ = write!(
        html,
        "<p class=\"warn\">Warm pod {} could not pre-pull these images when it was made, so the job pulls them itself:</p><ul>",
        esc(&story.pod)
    );
    for failure in &warm.pull_failures {
        let _ = write!(html, "<li>{}</li>", esc(failure));
    }
    html.push_str("</ul>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::JobIdentifier;
    use crate::service::journal::WarmStory;
    use crate::settings::ClusterId;

    fn story(warm: Option<WarmStory>) -> Story {
        Story {
            pod: "gocd-dind-w1".into(),
            cluster: ClusterId("c1".into()),
            place: "docker at the local engine".into(),
            runtime: "docker",
            job: JobIdentifier::default(),
            timeline: vec![(Stage::Created, SystemTime::UNIX_EPOCH)],
            adopted: false,
            failure: None,
            removal: None,
            last_look: None,
            warm,
        }
    }

    #[test]
    fn a_claimed_warm_pods_pull_failures_are_listed_escaped() {
        let failure = "evil:1: docker pull exited with 1: <script>alert(1)</script>";
        let warm = WarmStory {
            made: SystemTime::UNIX_EPOCH,
            claimed: Some(SystemTime::UNIX_EPOCH),
            pull_failures: vec![failure.into()],
        };
        let mut html = String::new();
        not_pre_pulled(&mut html, &story(Some(warm)));
        assert!(html.contains("Warm pod gocd-dind-w1 could not pre-pull these images"), "{html}");
        assert!(
            html.contains("<li>evil:1: docker pull exited with 1: &lt;script&gt;alert(1)&lt;/script&gt;</li>"),
            "{html}"
        );
        assert!(!html.contains("<script>"), "{html}");

        for quiet in [None, Some(WarmStory { made: SystemTime::UNIX_EPOCH, claimed: None, pull_failures: Vec::new() })]
        {
            let mut html = String::new();
            not_pre_pulled(&mut html, &story(quiet));
            assert!(html.is_empty(), "nothing to tell: {html}");
        }
    }
}
