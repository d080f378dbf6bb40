//! The dind container's command. It is a script rather than an image entrypoint so a
//! stock `docker:dind` (or any image with dockerd and a docker CLI) works unchanged.

use super::{AGENT_GID, AGENT_UID, CLI_DIR, DOCKER_PORT, TLS_DIR, WORKSPACE};
use crate::settings::DindSecurity;

/// Without `--privileged`, Docker mounts the cgroup hierarchies read-only, and dockerd
/// cannot create its containers' cgroups. With the capabilities granted in
/// `capabilities` mode the container may mount them again read-write.
const REMOUNT_CGROUPS: &str = r#"
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
  mount -o remount,rw /sys/fs/cgroup
else
  mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
  for dir in /sys/fs/cgroup/*; do
    [ -L "$dir" ] && continue
    mountpoint -q "$dir" || continue
    name=${dir##*/}
    case "$name" in
      unified) umount "$dir" && mount -t cgroup2 cgroup2 "$dir" ;;
      systemd) umount "$dir" && mount -t cgroup -o none,name=systemd cgroup "$dir" ;;
      *) umount "$dir" && mount -t cgroup -o "$name" cgroup "$dir" ;;
    esac
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
