#!/usr/bin/env bash
# Start a Docker Engine for CI if none answers. Idempotent; quiet on success.
# Stop it with .ci/docker-down.sh (only stops a dockerd this script started).
set -euo pipefail
LOG=/tmp/gocd-dind-dockerd.log PID=/tmp/gocd-dind-dockerd.pid
docker info >/dev/null 2>&1 && exit 0

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ "${#need[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq "${need[@]}"; } >/tmp/gocd-dind-apt.log 2>&1 ||
    { echo "docker-up: apt-get failed:" >&2; tail -n 30 /tmp/gocd-dind-apt.log >&2; exit 1; }
fi

# overlay2 only if this kernel/filesystem really mounts an overlay under /var/lib/docker.
opts=()
mkdir -p /var/lib/docker
t=$(mktemp -d /var/lib/docker/.ovl-probe.XXXXXX)
mkdir "$t/l" "$t/u" "$t/w" "$t/m"
if mount -t overlay overlay -o "lowerdir=$t/l,upperdir=$t/u,workdir=$t/w" "$t/m" 2>/dev/null; then
  umount "$t/m"; opts+=(--storage-driver=overlay2)
fi
rm -rf "$t"

if [ -s "$PID" ] && grep -qx dockerd "/proc/$(cat "$PID")/comm" 2>/dev/null; then
  : # started earlier and still coming up
else
  nohup dockerd "${opts[@]}" >"$LOG" 2>&1 </dev/null &
  echo $! >"$PID"
fi
for _ in $(seq 120); do
  docker info >/dev/null 2>&1 && exit 0
  kill -0 "$(cat "$PID")" 2>/dev/null || break
  sleep 0.5
done
echo "docker-up: dockerd did not answer within 60 s (pid $(cat "$PID"), log $LOG):" >&2
tail -n 30 "$LOG" >&2
exit 1
