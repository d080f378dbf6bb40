//! The dind container's command. It is a script rather than an image entrypoint so a
//! stock `docker:dind` (or any image with dockerd and a docker CLI) works unchanged.

use super::{AGENT_GID, AGENT_UID, CLI_DIR, DOCKER_PORT, TLS_DIR, WORKSPACE};
use crate::settings::DindSecurity;

/// Without `--privileged`, Docker mounts the cgroup hierarchies read-only, and dockerd
/// cannot create its containers' cgroups. With the capabilities granted in
/// `capabilities` mode the container may remount them read-write. `remount,bind` keeps
/// the pod's own subtree: mounting a hierarchy afresh would expose the host's whole tree
/// and put inner containers outside the pod's limits. On cgroup v2, move this shell out
/// of the root group and enable the controllers for children, as docker:dind does.
const REMOUNT_CGROUPS: &str = r#"
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  mount -o remount,rw /sys/fs/cgroup
  mkdir -p /sys/fs/cgroup/init
  xargs -rn1 </sys/fs/cgroup/cgroup.procs >/sys/fs/cgroup/init/cgroup.procs || :
  sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers >/sys/fs/cgroup/cgroup.subtree_control || :
else
  for d in $(awk '$2 ~ "^/sys/fs/cgroup/" && ($3 == "cgroup" || $3 == "cgroup2") { print $2 }' /proc/mounts); do
    mount -o remount,rw,bind "$d"
  done
fi
"#;

/// `sh -c SCRIPT gocd-dind [dockerd args...]`: extra dockerd arguments (a registry
/// mirror) arrive as positional parameters, never spliced into the script text.
pub fn script(security: DindSecurity) -> String {
    let remount = match security {
        DindSecurity::Privileged => "",
        DindSecurity::Capabilities => REMOUNT_CGROUPS,
    };
    format!(
        r#"set -eu
# The agent image has no docker CLI of its own: lend it ours.
cp "$(command -v docker)" {CLI_DIR}/docker
# A fresh volume is root-owned; the agent runs as {AGENT_UID}:{AGENT_GID}.
chown {AGENT_UID}:{AGENT_GID} {WORKSPACE}
chmod 0775 {WORKSPACE}
{remount}
# docker:dind ships a `dind` wrapper that prepares cgroups and mounts; use it when there.
if command -v dind >/dev/null 2>&1; then set -- dind dockerd "$@"; else set -- dockerd "$@"; fi
exec "$@" --host=tcp://127.0.0.1:{DOCKER_PORT} --tlsverify \
  --tlscacert={TLS_DIR}/ca.pem --tlscert={TLS_DIR}/cert.pem --tlskey={TLS_DIR}/key.pem
"#
    )
}

/// A real API call over the same TLS link the agent will use. The server certificate
/// also carries clientAuth, so the client key never has to enter this container.
pub fn probe_command() -> Vec<String> {
    [
        "docker".to_owned(),
        format!("--host=tcp://127.0.0.1:{DOCKER_PORT}"),
        "--tlsverify".to_owned(),
        format!("--tlscacert={TLS_DIR}/ca.pem"),
        format!("--tlscert={TLS_DIR}/cert.pem"),
        format!("--tlskey={TLS_DIR}/key.pem"),
        "version".to_owned(),
    ]
    .into()
}
