//! dockerd's log, read for what an operator needs first: its warnings and errors. dockerd
//! (and the containerd it runs) writes logrus lines, `time="…" level=warning msg="…"`, or
//! JSON lines with `--log-format=json`; most of it is `info` chatter (plugins loading,
//! gRPC connectivity). The dind script's own lines (`cp`, `mount`) carry no level and
//! count as errors when they say something failed.

/// At most this many problems are listed: repeats are counted, not listed again.
const MAX_PROBLEMS: usize = 20;
/// A problem line is cut to this many characters.
const MAX_LINE: usize = 400;

/// Words by which a line without a level says it failed.
const FAILURE_WORDS: &[&str] =
    &["error", "failed", "cannot", "can't", "permission denied", "not permitted", "no such file", "invalid", "fatal"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub level: Level,
    /// The message (and its `error` field), without time and level.
    pub text: String,
    /// How often it appeared.
    pub count: usize,
}

/// The warnings and errors in `log`: errors first, each kind in the order first seen.
pub fn problems(log: &str) -> Vec<Problem> {
    let mut found: Vec<Problem> = Vec::new();
    for (level, text) in log.lines().filter_map(read_line) {
        if let Some(seen) = found.iter_mut().find(|p| p.level == level && p.text == text) {
            seen.count += 1;
        } else {
            found.push(Problem { level, text, count: 1 });
        }
    }
    // A stable sort keeps the order of first appearance within each level.
    found.sort_by_key(|p| p.level);
    found.truncate(MAX_PROBLEMS);
    found
}

/// The last `lines` lines of `log`.
pub fn tail(log: &str, lines: usize) -> &str {
    let starts: Vec<usize> = log.trim_end_matches('\n').match_indices('\n').map(|(i, _)| i + 1).collect();
    match starts.len().checked_sub(lines.saturating_sub(1)) {
        Some(from) if from > 0 && lines > 0 => &log[starts[from - 1]..],
        _ if lines == 0 => "",
        _ => log,
    }
}

fn read_line(line: &str) -> Option<(Level, String)> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let (level, text) = if line.starts_with('{') {
        let json: serde_json::Value = serde_json::from_str(line).ok()?;
        let field = |key: &str| json.get(key).and_then(serde_json::Value::as_str).map(str::to_owned);
        (level(&field("level")?)?, with_error(field("msg").unwrap_or_default(), field("error")))
    } else if let Some(named) = field(line, "level") {
        let msg = field(line, "msg").unwrap_or_else(|| line.to_owned());
        (level(&named)?, with_error(msg, field(line, "error")))
    } else {
        let lower = line.to_lowercase();
        if !FAILURE_WORDS.iter().any(|word| lower.contains(word)) {
            return None;
        }
        (Level::Error, line.to_owned())
    };
    Some((level, text.chars().take(MAX_LINE).collect()))
}

fn level(name: &str) -> Option<Level> {
    match name {
        "error" | "fatal" | "panic" => Some(Level::Error),
        "warning" | "warn" => Some(Level::Warning),
        _ => None,
    }
}

fn with_error(msg: String, error: Option<String>) -> String {
    match error {
        Some(error) if !msg.contains(&error) => format!("{msg}: {error}"),
        _ => msg,
    }
}

/// The value of `key=value` or `key="quoted \"value\""` in a logrus text line.
fn field(line: &str, key: &str) -> Option<String> {
    let pattern = format!("{key}=");
    let start =
        line.match_indices(&pattern).find(|(i, _)| *i == 0 || line.as_bytes()[i - 1] == b' ')?.0 + pattern.len();
    let rest = &line[start..];
    let Some(quoted) = rest.strip_prefix('"') else {
        return Some(rest.split_whitespace().next().unwrap_or_default().to_owned());
    };
    let mut value = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => value.push(' '),
                Some(escaped) => value.push(escaped),
                None => break,
            },
            '"' => break,
            c => value.push(c),
        }
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"time="2026-12-01T00:12:03.1Z" level=info msg="Starting up"
time="2026-12-01T00:12:03.2Z" level=info msg="[core] [Channel #1] Channel Connectivity change to READY" module=grpc
time="2026-12-01T00:12:03.3Z" level=warning msg="Your kernel does not support cgroup blkio weight"
cp: cannot stat '/usr/local/bin/docker': No such file or directory
time="2026-12-01T00:12:03.4Z" level=error msg="failed to mount overlay: invalid argument" error="operation \"mount\" not permitted" storage-driver=overlay2
time="2026-12-01T00:12:03.5Z" level=warning msg="Your kernel does not support cgroup blkio weight"
{"level":"fatal","msg":"failed to start daemon","error":"pid file found"}
time="2026-12-01T00:12:03.6Z" level=info msg="API listen on 127.0.0.1:2376"
"#;

    #[test]
    fn errors_first_then_warnings_and_no_chatter() {
        let found = problems(LOG);
        let read: Vec<(Level, &str, usize)> = found.iter().map(|p| (p.level, p.text.as_str(), p.count)).collect();
        assert_eq!(
            read,
            [
                (Level::Error, "cp: cannot stat '/usr/local/bin/docker': No such file or directory", 1),
                (Level::Error, "failed to mount overlay: invalid argument: operation \"mount\" not permitted", 1),
                (Level::Error, "failed to start daemon: pid file found", 1),
                (Level::Warning, "Your kernel does not support cgroup blkio weight", 2),
            ]
        );
    }

    #[test]
    fn a_quiet_log_has_no_problems_and_problems_are_bounded() {
        assert!(problems("time=\"t\" level=info msg=\"API listen on 127.0.0.1:2376\"\n\n").is_empty());
        let noisy: Vec<String> = (0..100).map(|i| format!("level=error msg=\"failure {i}\"")).collect();
        let noisy = noisy.join("\n");
        assert_eq!(problems(&noisy).len(), MAX_PROBLEMS);
        let long = format!("level=error msg=\"{}\"", "x".repeat(5000));
        assert_eq!(problems(&long)[0].text.len(), MAX_LINE);
    }

    #[test]
    fn fields_are_read_only_as_whole_keys() {
        let line = r#"time="t" level=warning xmsg="not this" msg=plain-word error="a \"quoted\" one""#;
        assert_eq!(field(line, "msg").as_deref(), Some("plain-word"));
        assert_eq!(field(line, "error").as_deref(), Some("a \"quoted\" one"));
        assert_eq!(field(line, "nothing"), None);
    }

    #[test]
    fn the_tail_is_the_last_whole_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a\nb\n", 5), "a\nb\n");
        assert_eq!(tail("a\nb\n", 0), "");
        assert_eq!(tail("", 3), "");
    }
}
