#!/usr/bin/env bash
# Every test: Rust unit and integration tests (HTTP contract, lifecycle rules, the binary,
# the status pages in headless Chromium, Docker and Kubernetes end to end), the shim's
# JUnit tests and jar layout, and the cross-language round trip (the shim jar driving the
# real service). Starts a Docker Engine, builds the test images, starts the test
# registries (.ci/registry-up.sh), installs Chromium and brings up the local Kubernetes
# cluster when missing; the tests that need them fail,
# never skip, without them. Stop the cluster with
# .ci/k8s-down.sh (.ci/run does when it started it).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "Docker Engine and test images"
bash .ci/docker-up.sh
bash .ci/build-test-images.sh

step "The test registry: origin and pull-through mirror (Debian's docker-registry)"
bash .ci/registry-up.sh

step "Chromium for the page tests"
bash .ci/chromium-up.sh

step "Local Kubernetes (builds Kubernetes from source the first time: 6-17 min)"
GOCD_DIND_KUBECONFIG=$(bash .ci/k8s-up.sh | tail -n 1)
export GOCD_DIND_KUBECONFIG

step "The binary as released: no test doubles in it"
cargo build --locked
bin=target/debug/gocd-dind
# An invalid --listen makes a binary that did accept the flag fail too, instead of serving.
refusal=$(GOCD_DIND_TOKEN=x "$bin" serve --allow-memory-runtime --listen not-an-address 2>&1 || true)
grep -q "unexpected argument '--allow-memory-runtime'" <<<"$refusal" ||
  { echo "a build without the test-doubles feature accepts --allow-memory-runtime: $refusal" >&2; exit 1; }
! grep -aq "in-memory test runtime" "$bin" ||
  { echo "$bin carries the in-memory runtime" >&2; exit 1; }

step "Monitoring: alert rules checked and unit-tested by promtool (deploy/monitoring)"
bash .ci/monitoring-check.sh

step "Rust: unit and integration tests (feature test-doubles, through the dev-dependency)"
cargo test --locked --lib --bins --tests

step "plugin-shim: unit tests, jar layout, round trip with the real service"
# The round trip runs the service on its in-memory runtime: a test build of the binary.
cargo build --locked --features test-doubles
mvn -B --no-transfer-progress -f plugin-shim/pom.xml verify -Pround-trip -Dgocd.dind.binary="$PWD/target/debug/gocd-dind"
