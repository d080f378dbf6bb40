//! Command line and environment. The environment is read here and nowhere else.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::settings::{Choice, DindSecurity};

#[derive(Debug, Parser)]
#[command(name = "gocd-dind", version, about = "GoCD elastic agents that each own a private Docker daemon")]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "GOCD_DIND_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve GoCD's elastic-agent requests forwarded by the plugin shim.
    Serve(ServeArgs),
    /// Play one GoCD job end to end on the local Docker Engine and time each phase.
    Demo(DemoArgs),
    /// Exit 0 when the service answers at this address: a container probe for images
    /// that have no HTTP client of their own.
    Healthcheck(HealthcheckArgs),
    /// Check a place where agent pods would run, with a cluster profile's settings: the
    /// engine or API server, privileged or capabilities, cgroups, storage, images, RBAC,
    /// and a full test pod. Says what to set for each problem; exits 1 when pods cannot run
    /// there, 2 when the profile is not valid.
    Doctor(DoctorArgs),
}

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// A JSON file holding the cluster profile's properties as GoCD sends them
    /// (`cluster_profile_properties`: keys to strings). The flags below override its keys.
    #[arg(long, value_name = "FILE.json")]
    pub profile: Option<PathBuf>,
    /// Seconds the test pod may take to start, image pulls and scheduling included.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub pod_timeout: u64,
    #[command(flatten, next_help_heading = "Cluster profile keys")]
    pub keys: crate::doctor::ProfileFlags,
}

#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// The URL to GET; any 2xx answer within the timeout is healthy.
    #[arg(long, env = "GOCD_DIND_HEALTHCHECK_URL", default_value = "http://127.0.0.1:8790/healthz")]
    pub url: String,
    /// Milliseconds to wait for the answer.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address for the shim's requests, health, readiness and metrics.
    #[arg(long, env = "GOCD_DIND_LISTEN", default_value = "127.0.0.1:8790")]
    pub listen: SocketAddr,
    /// File holding the token shared with the shim. Alternatively set GOCD_DIND_TOKEN.
    #[arg(long, env = "GOCD_DIND_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The shim's processor bridge, through which the service calls GoCD back.
    #[arg(long, env = "GOCD_DIND_PROCESSOR_URL", default_value = "http://127.0.0.1:8791")]
    pub processor_url: String,
    /// Seconds to let in-flight pod operations finish on shutdown.
    #[arg(long, env = "GOCD_DIND_SHUTDOWN_GRACE", default_value_t = 30)]
    pub shutdown_grace: u64,
    /// Append each pod's post-mortem (timeline, exit codes, failure reason, dockerd's
    /// problems; nothing secret) as one JSON line to this file once the pod is gone.
    #[arg(long, env = "GOCD_DIND_POSTMORTEM_LOG")]
    pub postmortem_log: Option<PathBuf>,
    /// Accept `runtime = memory` cluster profiles (test builds only: feature
    /// `test-doubles`).
    #[cfg(feature = "test-doubles")]
    #[arg(long, env = "GOCD_DIND_ALLOW_MEMORY_RUNTIME", hide = true)]
    pub allow_memory_runtime: bool,
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// GoCD agent image (or a stand-in) for the demo pod.
    #[arg(long, env = "GOCD_DIND_DEMO_AGENT_IMAGE", default_value = "gocd-dind-test/agent:latest")]
    pub agent_image: String,
    /// Docker-in-docker image.
    #[arg(long, env = "GOCD_DIND_DEMO_DIND_IMAGE", default_value = "gocd-dind-test/dind:latest")]
    pub dind_image: String,
    /// Image the job runs with `docker run -v` inside the pod, loaded from this tarball.
    #[arg(long, env = "GOCD_DIND_DEMO_JOB_IMAGE_TAR", default_value = "/var/cache/gocd-dind/debian-bookworm.tar")]
    pub job_image_tar: PathBuf,
    /// Name of that image inside the tarball.
    #[arg(long, env = "GOCD_DIND_DEMO_JOB_IMAGE", default_value = "gocd-dind-test/debian:bookworm")]
    pub job_image: String,
    /// privileged or capabilities (the cluster profile's dind_security).
    #[arg(long, env = "GOCD_DIND_DEMO_DIND_SECURITY", default_value = "capabilities", value_parser = DindSecurity::parse)]
    pub dind_security: DindSecurity,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no token: set GOCD_DIND_TOKEN_FILE (or --token-file) to a file holding the token the shim also uses, or set GOCD_DIND_TOKEN; create one with `openssl rand -hex 32`")]
    NoToken,
    #[error("cannot read the token file {path}: {reason}")]
    TokenFile { path: PathBuf, reason: String },
    #[error("the token in {0} is empty")]
    EmptyToken(String),
}

impl ServeArgs {
    /// The shared token: from the file when one is named, else from GOCD_DIND_TOKEN.
    /// Never a flag value, so it stays out of `ps` and shell history.
    pub fn token(&self) -> Result<String, ConfigError> {
        let (token, source) = match &self.token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::TokenFile { path: path.clone(), reason: e.to_string() })?;
                (text, path.display().to_string())
            }
            None => (std::env::var("GOCD_DIND_TOKEN").map_err(|_| ConfigError::NoToken)?, "GOCD_DIND_TOKEN".to_owned()),
        };
        let token = token.trim().to_owned();
        if token.is_empty() {
            return Err(ConfigError::EmptyToken(source));
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_defaults_match_the_contract() {
        let cli = Cli::try_parse_from(["gocd-dind", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        assert_eq!(args.listen.to_string(), "127.0.0.1:8790");
        assert_eq!(args.processor_url, "http://127.0.0.1:8791");
    }
}
