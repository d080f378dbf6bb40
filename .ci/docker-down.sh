#!/usr/bin/env bash
# Stop the dockerd that .ci/docker-up.sh started (and only that one).
set -euo pipefail
PID=/tmp/gocd-dind-dockerd.pid
[ -s "$PID" ] || exit 0
pid=$(cat "$PID")
if grep -qx dockerd "/proc/$pid/comm" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then echo "docker-down: dockerd $pid ignored TERM for 30 s" >&2; exit 1; fi
fi
rm -f "$PID"
