//! The cluster profile doctor checks: a JSON file holding the properties as GoCD sends
//! them (`cluster_profile_properties`), and one flag per profile key on top. The flags are
//! made from the profile's own field list, so a new key is a new flag.

use std::path::{Path, PathBuf};

use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};

use crate::protocol::Properties;
use crate::settings::{ClusterSettings, Field};

/// Profile keys given as flags: `--docker-host VALUE` (or `--docker_host`). Keys holding
/// PEM or a secret take a FILE holding the value, so no key or token is in `ps` output or
/// shell history.
#[derive(Debug, Clone, Default)]
pub struct ProfileFlags(pub Vec<(&'static str, Given)>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Given {
    Value(String),
    File(PathBuf),
}

fn takes_file(field: &Field) -> bool {
    field.multiline() || field.secure()
}

impl Args for ProfileFlags {
    fn augment_args(command: Command) -> Command {
        ClusterSettings::fields().iter().fold(command, |command, field| {
            let flag = field.key.replace('_', "-");
            let (value_name, help) = if takes_file(field) {
                ("FILE", format!("{} (a file holding it)", field.help))
            } else {
                ("VALUE", field.help.to_owned())
            };
            let mut arg = Arg::new(field.key).long(flag.clone()).value_name(value_name).help(help);
            if flag != field.key {
                arg = arg.alias(field.key);
            }
            command.arg(arg)
        })
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

impl FromArgMatches for ProfileFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = Self::default();
        flags.update_from_arg_matches(matches)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for field in ClusterSettings::fields() {
            if let Some(value) = matches.get_one::<String>(field.key) {
                let given =
                    if takes_file(field) { Given::File(PathBuf::from(value)) } else { Given::Value(value.clone()) };
                self.0.retain(|(key, _)| *key != field.key);
                self.0.push((field.key, given));
            }
        }
        Ok(())
    }
}

/// The profile's properties: the file's, then each flag over them.
pub fn properties(file: Option<&Path>, flags: &ProfileFlags) -> Result<Properties, String> {
    let mut properties = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the profile {}: {e}", path.display()))?;
            serde_json::from_str::<Properties>(&text).map_err(|e| {
                format!("{}: not a cluster profile's properties (a JSON object of strings): {e}", path.display())
            })?
        }
        None => Properties::default(),
    };
    for (key, given) in &flags.0 {
        let value = match given {
            Given::Value(value) => value.clone(),
            Given::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("--{}: cannot read {}: {e}", key.replace('_', "-"), path.display()))?,
        };
        properties.0.insert((*key).to_owned(), value);
    }
    Ok(properties)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[arg(long)]
        profile: Option<PathBuf>,
        #[command(flatten)]
        keys: ProfileFlags,
    }

    #[test]
    fn every_profile_key_is_a_flag_and_files_carry_pem_and_secrets() {
        let dir = std::env::temp_dir().join(format!("gocd-dind-doctor-flags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let file = dir.join("profile.json");
        std::fs::write(&file, r#"{"runtime": "docker", "dind_security": "privileged", "namespace": null}"#).unwrap();
        let cli = Cli::try_parse_from([
            "doctor",
            "--profile",
            file.to_str().unwrap(),
            "--dind-security",
            "capabilities",
            "--agent_image",
            "gocd/agent:1",
            "--security-token",
            token.to_str().unwrap(),
        ])
        .unwrap();
        let props = properties(cli.profile.as_deref(), &cli.keys).unwrap();
        assert_eq!(props.get("runtime"), Some("docker"), "from the file");
        assert_eq!(props.get("dind_security"), Some("capabilities"), "the flag wins over the file");
        assert_eq!(props.get("agent_image"), Some("gocd/agent:1"), "the key's own spelling works too");
        assert_eq!(props.get("security_token"), Some("s3cret"), "read from the file named");
        assert_eq!(props.get("namespace"), None);
        for field in ClusterSettings::fields() {
            let flag = format!("--{}", field.key.replace('_', "-"));
            assert!(Cli::try_parse_from(["doctor", flag.as_str(), "x"]).is_ok(), "{flag}");
        }
        let missing = properties(Some(&dir.join("none.json")), &ProfileFlags::default()).unwrap_err();
        assert!(missing.contains("none.json"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
