#!/usr/bin/env bash
# Stops the test registries .ci/registry-up.sh started (by their label; nothing else).
set -euo pipefail
ids=$(docker ps -aq --filter label=gocd-dind-test.started-by=registry-up)
[ -z "$ids" ] || docker rm -f $ids >/dev/null
