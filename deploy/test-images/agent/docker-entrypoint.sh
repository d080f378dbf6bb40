#!/bin/sh
# Mimics GoCD's agent entrypoint where it matters: write autoregister.properties from
# GO_EA_*, unset GO_EA_*, then run the given command, or by default stay up until SIGTERM.
set -eu
if [ -n "${GO_EA_SERVER_URL:-}" ]; then
  export GO_SERVER_URL="$GO_EA_SERVER_URL"
  mkdir -p /go-working-dir/config
  f=/go-working-dir/config/autoregister.properties
  (umask 077; cat >"$f" <<PROPS
agent.auto.register.key=${GO_EA_AUTO_REGISTER_KEY:-}
agent.auto.register.environments=${GO_EA_AUTO_REGISTER_ENVIRONMENT:-}
agent.auto.register.elasticAgent.agentId=${GO_EA_AUTO_REGISTER_ELASTIC_AGENT_ID:-}
agent.auto.register.elasticAgent.pluginId=${GO_EA_AUTO_REGISTER_ELASTIC_PLUGIN_ID:-}
PROPS
  )
  chmod 0600 "$f"
fi
for v in $(env | sed -n 's/^\(GO_EA_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
[ "$#" -eq 0 ] || exec "$@"
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $! || true; done
