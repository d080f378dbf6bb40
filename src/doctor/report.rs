//! What doctor found: one line per check, and for each problem what to set.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Pods run, but worse than they could (e.g. dind on `vfs`).
    Warn,
    /// Pods cannot run with this profile here.
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub outcome: Outcome,
    /// What was checked, e.g. "engine answers".
    pub what: String,
    /// What was found.
    pub found: String,
    /// What to set or do, for a warning or a failure.
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(what: &str, found: impl Into<String>) -> Self {
        Self { outcome: Outcome::Ok, what: what.into(), found: found.into(), fix: None }
    }

    pub fn warn(what: &str, found: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { outcome: Outcome::Warn, what: what.into(), found: found.into(), fix: Some(fix.into()) }
    }

    pub fn fail(what: &str, found: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { outcome: Outcome::Fail, what: what.into(), found: found.into(), fix: Some(fix.into()) }
    }

    /// A check that could not be made because an earlier one failed (whose fix says what
    /// to do).
    pub fn not_tried(what: &str, because: &str) -> Self {
        Self { outcome: Outcome::Fail, what: what.into(), found: format!("not tried: {because}"), fix: None }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Where the pods would run, e.g. "docker at unix:///var/run/docker.sock".
    pub place: String,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    /// No check failed: agent pods can run with this profile here.
    pub fn pods_can_run(&self) -> bool {
        !self.checks.iter().any(|c| c.outcome == Outcome::Fail)
    }

    /// The checks that say what to do.
    pub fn problems(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.outcome != Outcome::Ok && c.fix.is_some())
    }

    /// The check of this name, for tests and callers that act on one.
    pub fn check(&self, what: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.what == what)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "gocd-dind doctor: {}", self.place)?;
        for check in &self.checks {
            let mark = match check.outcome {
                Outcome::Ok => "ok  ",
                Outcome::Warn => "WARN",
                Outcome::Fail => "FAIL",
            };
            let mut lines = check.found.lines();
            writeln!(f, "  {mark}  {}: {}", check.what, lines.next().unwrap_or_default())?;
            for line in lines {
                writeln!(f, "        {line}")?;
            }
        }
        let problems: Vec<&Check> = self.problems().collect();
        if !problems.is_empty() {
            writeln!(f, "\nWhat to do:")?;
            for check in problems {
                writeln!(f, "  - {}: {}", check.what, check.fix.as_deref().unwrap_or_default())?;
            }
        }
        if self.pods_can_run() {
            writeln!(f, "\nAgent pods can run here with this profile.")
        } else {
            writeln!(f, "\nAgent pods cannot run here with this profile.")
        }
    }
}
