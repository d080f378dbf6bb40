#!/usr/bin/env bash
# deploy/monitoring: the alert rules are valid Prometheus rules (`promtool check rules`)
# and fire as their unit tests say, series in, alerts out (`promtool test rules`). The
# dashboard's and rules' metric names are checked against the service by
# tests/monitoring.rs. Installs Debian's prometheus package (for promtool) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
  # Only promtool is wanted: keep the package's Prometheus server from being started by
  # its postinst (container images usually ship this policy already).
  policy=/usr/sbin/policy-rc.d made_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  installed=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; } \
    >/tmp/gocd-dind-apt-prometheus.log 2>&1 || installed=$?
  [ -z "$made_policy" ] || rm -f "$policy"
  if [ "$installed" -ne 0 ]; then
    echo "monitoring-check: apt-get install prometheus failed:" >&2
    tail -n 30 /tmp/gocd-dind-apt-prometheus.log >&2
    exit 1
  fi
fi

promtool check rules deploy/monitoring/gocd-dind.rules.yaml
promtool test rules deploy/monitoring/gocd-dind.rules.test.yaml
