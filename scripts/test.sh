#!/usr/bin/env bash
# Every test: Rust unit and integration tests (HTTP contract, lifecycle rules, the binary,
# Docker end to end), the shim's JUnit tests and jar layout, and the cross-language round
# trip (the shim jar driving the real service). Starts a Docker Engine and builds the test
# images when missing; the Docker tests fail, never skip, without them.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "Docker Engine and test images"
bash .ci/docker-up.sh
bash .ci/build-test-images.sh

step "Rust: unit and integration tests"
cargo build --locked
cargo test --locked --lib --bins --tests

step "plugin-shim: unit tests, jar layout, round trip with the real service"
mvn -B --no-transfer-progress -f plugin-shim/pom.xml verify -Pround-trip -Dgocd.dind.binary="$PWD/target/debug/gocd-dind"
