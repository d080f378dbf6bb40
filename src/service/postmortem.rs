//! Post-mortems as JSON lines in a file an operator ships (`serve --postmortem-log`):
//! one line per pod once it is gone, with its timeline, container states, the reason its
//! start failed and dockerd's problems. Like the pages, it holds nothing secret.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::journal::{Stage, Story};
use crate::clock::{rfc3339, span};
use crate::dockerd_log;

/// dockerd's last lines a post-mortem line carries (its problems are listed in full).
const LOG_LINES: usize = 30;

/// The file post-mortems are appended to. It is opened for each line, so an operator's
/// log rotation (move, then a new file) needs no signal.
#[derive(Debug, Clone)]
pub struct PostmortemLog {
    path: PathBuf,
}

impl PostmortemLog {
    /// Checks now that the file can be appended to, so a wrong path stops the service at
    /// start rather than losing post-mortems later.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::append(path)?;
        Ok(Self { path: path.to_owned() })
    }

    fn append(path: &Path) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new().create(true).append(true).open(path)
    }

    /// Appends one line; a failure is logged, never fatal: the page still has it.
    pub fn write(&self, story: &Story) {
        let mut line = line(story).to_string();
        line.push('\n');
        if let Err(e) = Self::append(&self.path).and_then(|mut file| file.write_all(line.as_bytes())) {
            tracing::warn!(path = %self.path.display(), error = %e, pod = %story.pod, "cannot write the post-mortem");
        }
    }
}

/// One pod's post-mortem as a JSON object.
pub fn line(story: &Story) -> Value {
    let created = story.at(Stage::Created);
    let timeline: Vec<Value> = story
        .timeline
        .iter()
        .map(|(stage, at)| {
            let after = created.and_then(|c| at.duration_since(c).ok());
            json!({"stage": stage.label(), "at": rfc3339(*at), "seconds": after.map(|d| d.as_secs_f64())})
        })
        .collect();
    let look = story.last_look.clone().unwrap_or_default();
    let containers: Vec<Value> = look
        .containers
        .iter()
        .map(|c| {
            json!({"name": c.name, "image": c.image, "state": c.state, "exit_code": c.exit_code, "oom_killed": c.oom_killed, "restarts": c.restarts})
        })
        .collect();
    let problems: Vec<String> = dockerd_log::problems(&look.dind_log_tail)
        .into_iter()
        .map(|p| format!("{}: {}{}", p.level.as_str(), p.text, repeated(p.count)))
        .collect();
    let events: Vec<Value> = look
        .events
        .iter()
        .map(|e| {
            json!({"at": e.at.map(rfc3339), "type": if e.warning { "Warning" } else { "Normal" }, "reason": e.reason, "message": e.message, "count": e.count})
        })
        .collect();
    let lived = created.zip(story.at(Stage::Removed)).and_then(|(c, r)| r.duration_since(c).ok());
    json!({
        "pod": story.pod,
        "cluster": story.cluster.0,
        "place": story.place,
        "runtime": story.runtime,
        "job": story.job,
        "removed": story.removal,
        "lived": lived.map(span),
        "timeline": timeline,
        "failure": story.failure.as_ref().map(|f| json!({"reason": f.reason.as_str(), "message": f.message})),
        "containers": containers,
        "dockerd_problems": problems,
        "dockerd_log_tail": dockerd_log::tail(&look.dind_log_tail, LOG_LINES),
        "events": events,
    })
}

fn repeated(count: usize) -> String {
    if count > 1 {
        format!(" (×{count})")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::protocol::JobIdentifier;
    use crate::runtime::{ContainerDetails, FailureReason, PodDetails};
    use crate::service::journal::{Journal, StartFailure};
    use crate::settings::ClusterId;

    fn t(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_083_900 + seconds)
    }

    fn failed_story() -> Story {
        let mut journal = Journal::default();
        journal.created(Story {
            pod: "gocd-dind-p1".into(),
            cluster: ClusterId("c1".into()),
            place: "docker at the local engine".into(),
            runtime: "docker",
            job: JobIdentifier { job_id: 7, pipeline_name: "build".into(), ..JobIdentifier::default() },
            timeline: vec![(Stage::Created, t(0))],
            adopted: false,
            failure: None,
            removal: None,
            last_look: None,
            warm: None,
        });
        journal.reached("gocd-dind-p1", Stage::DockerdReady, t(2));
        let look = PodDetails {
            containers: vec![ContainerDetails {
                name: "dind".into(),
                exit_code: Some(137),
                oom_killed: true,
                ..ContainerDetails::default()
            }],
            dind_log_tail: "level=info msg=chatter\nlevel=error msg=\"out of memory\"\n".into(),
            ..PodDetails::default()
        };
        let failure = StartFailure { reason: FailureReason::DindNotReady, message: "dind exited".into() };
        journal.failed("gocd-dind-p1", failure, look, t(5));
        let story = journal.postmortems().next().unwrap().clone();
        story
    }

    #[test]
    fn a_line_tells_the_whole_story() {
        let line = line(&failed_story());
        assert_eq!(line["pod"], "gocd-dind-p1");
        assert_eq!(line["job"]["job_id"], 7);
        assert_eq!(line["removed"], "its start failed");
        assert_eq!(line["lived"], "5.0 s");
        let stages: Vec<&str> =
            line["timeline"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
        assert_eq!(stages, ["created", "dockerd ready", "removed"]);
        assert_eq!(line["timeline"][1]["seconds"], 2.0);
        assert_eq!(line["failure"]["reason"], "dind_not_ready");
        assert_eq!(line["containers"][0]["exit_code"], 137);
        assert_eq!(line["containers"][0]["oom_killed"], true);
        assert_eq!(line["dockerd_problems"], json!(["error: out of memory"]));
    }

    #[test]
    fn lines_are_appended_to_the_file_one_per_pod() {
        let dir = std::env::temp_dir().join(format!("gocd-dind-postmortem-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("postmortems.jsonl");
        let log = PostmortemLog::open(&path).unwrap();
        log.write(&failed_story());
        log.write(&failed_story());
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert!(PostmortemLog::open(&dir.join("no-such-dir/x.jsonl")).is_err(), "a path that cannot be written");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
