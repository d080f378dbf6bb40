#!/usr/bin/env bash
# One GoCD job end to end on the local Docker Engine: starts the engine and builds the
# images when missing, then `gocd-dind demo` (create-agent -> pod up -> docker run -v from
# /godata inside the pod -> job-completion -> nothing left), with each phase's time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/docker-up.sh
bash .ci/build-test-images.sh
cargo build --locked --quiet
exec ./target/debug/gocd-dind demo "$@"
