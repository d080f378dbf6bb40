//! A warm pod's agent on Kubernetes, where a pod's containers are fixed when it is made
//! and the pod holds no cluster credentials: the agent container starts a shell that
//! makes a pipe in its own `emptyDir` and waits on it; a job's claim writes the job's
//! register key and GoCD environment into the pipe through `pods/exec` stdin (never in
//! the command, so never in a process listing or the API server's audit of the exec),
//! and the shell reads them into its environment and runs the agent image's entrypoint.
//! Nothing of the job rests on disk: a pipe holds no data.

use std::fmt::Write;

use super::TLS_DIR;

/// The agent's `emptyDir` for its claim.
pub const CLAIM_DIR: &str = "/gocd-dind/claim";
/// The pipe a claim writes into.
pub const CLAIM_PIPE: &str = "/gocd-dind/claim/job";

/// `sh -c WAIT gocd-dind ENTRYPOINT`: the entrypoint arrives as a positional parameter,
/// never spliced into the script text.
pub fn wait_script() -> String {
    format!(
        r#"set -eu
rm -f {CLAIM_PIPE}
mkfifo -m 0600 {CLAIM_PIPE}
echo "gocd-dind: warm pod, dockerd answers over TLS ({TLS_DIR}); waiting for a job to claim it"
# Blocks until a claim writes the job's variables, and reads them to the end.
. {CLAIM_PIPE}
rm -f {CLAIM_PIPE}
echo "gocd-dind: claimed; starting the agent"
exec "$@"
"#
    )
}

/// What a claim runs in the agent container; the payload comes on stdin. Refused (exit
/// 3) when no agent waits on the pipe, so nothing is written anywhere else.
pub fn claim_command() -> Vec<String> {
    let script = format!(
        "test -p {CLAIM_PIPE} || {{ echo 'no agent waits for a claim here' >&2; exit 3; }}; cat > {CLAIM_PIPE}"
    );
    vec!["sh".into(), "-c".into(), script]
}

/// `export NAME='value'` lines the waiting shell reads: every value single-quoted, a
/// quote in it closed, escaped and reopened, so nothing in a value is run.
pub fn claim_payload(vars: &[(&str, &str)]) -> String {
    vars.iter().fold(String::new(), |mut payload, (name, value)| {
        let _ = writeln!(payload, "export {name}='{}'", value.replace('\'', r"'\''"));
        payload
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_reaches_the_shell_as_written_whatever_the_values_hold() {
        let hostile = "it's $(touch /tmp/x) `id` \"quoted\" \\ ; rm -rf /";
        let payload = claim_payload(&[("GO_EA_AUTO_REGISTER_KEY", hostile), ("GO_EA_AUTO_REGISTER_ENVIRONMENT", "")]);
        let dir = std::env::temp_dir().join(format!("gocd-dind-claim-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("job");
        std::fs::write(&file, payload).unwrap();
        let output = std::process::Command::new("sh")
            .args([
                "-c",
                ". \"$1\"; printf '%s|%s' \"$GO_EA_AUTO_REGISTER_KEY\" \"$GO_EA_AUTO_REGISTER_ENVIRONMENT\"",
                "sh",
            ])
            .arg(&file)
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(String::from_utf8(output.stdout).unwrap(), format!("{hostile}|"));
    }

    #[test]
    fn the_claim_writes_only_into_a_waiting_pipe_and_nothing_of_the_job_is_in_its_command() {
        let command = claim_command().join(" ");
        assert!(
            command.contains(&format!("test -p {CLAIM_PIPE}")) && command.ends_with(&format!("cat > {CLAIM_PIPE}"))
        );
        assert!(!command.contains("GO_EA_"), "{command}");
        let script = wait_script();
        assert!(script.contains(&format!("mkfifo -m 0600 {CLAIM_PIPE}")) && script.trim_end().ends_with("exec \"$@\""));
    }
}
