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
///
/// cgroup v1 also keeps a device allow-list per cgroup, and a child can only be granted
/// what its parent allows. containerd's list for unprivileged containers (Kubernetes)
/// lacks `/dev/console` (c 5:1), which runc grants every container dockerd starts, so
/// every `docker run` would fail with `devices.allow: operation not permitted` although
/// dockerd itself answers. Adding that one device to the pod's own cgroup works only while
/// it has no children, i.e. here, before dockerd starts; nothing else is widened. Docker
/// Engine's list has `/dev/console` already, so the line changes nothing there.
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
  if [ -w /sys/fs/cgroup/devices/devices.allow ]; then echo 'c 5:1 rwm' >/sys/fs/cgroup/devices/devices.allow; fi
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
# One line for whoever reads this log (the agent status report, `gocd-dind doctor`).
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo "gocd-dind: cgroup v2"; else echo "gocd-dind: cgroup v1"; fi
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

/// `docker pull IMAGE` against the pod's own dockerd, over TLS with the server pair (as
/// the probe does), run in dind to pre-pull a warm pod's images. `--quiet`: a failure's
/// message is the last line of the output, and nothing else is kept.
pub fn pull_command(image: &str) -> Vec<String> {
    let mut command = probe_command();
    command.pop();
    command.extend(["pull".to_owned(), "--quiet".to_owned(), image.to_owned()]);
    command
}
