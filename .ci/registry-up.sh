#!/usr/bin/env bash
# The project's own image registry for the tests (docs/testing.md, "A real registry"):
# Debian's docker-registry (gocd-dind-test/registry, built by .ci/build-test-images.sh)
# run twice on the test engine's default bridge:
#   gocd-dind-test-registry  the origin; the host reaches it on loopback
#                            (127.0.0.1:$GOCD_DIND_REGISTRY_PORT, default 5555: the host's
#                            engine pushes there without --insecure-registry), pods on its
#                            bridge address (cluster profiles' insecure_registries);
#   gocd-dind-test-mirror    a pull-through mirror of the origin, on its bridge address
#                            (cluster profiles' registry_mirror).
# Pushes the images the tests pull (gocd-dind-test/job:1, the Debian base, ~117 MB).
# Idempotent; prints `origin=IP:5000 mirror=IP:5000 host=127.0.0.1:PORT` last. Stop with
# .ci/registry-down.sh (only what this script started: the containers carry a label).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=gocd-dind-test/registry:latest ORIGIN=gocd-dind-test-registry MIRROR=gocd-dind-test-mirror
PORT=${GOCD_DIND_REGISTRY_PORT:-5555}
LABEL=gocd-dind-test.started-by=registry-up

docker image inspect "$IMAGE" >/dev/null 2>&1 || bash .ci/build-test-images.sh >/dev/null

running() { [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }
address() { docker inspect -f '{{.NetworkSettings.IPAddress}}' "$1"; }
# Whether the registry in a container answers /v2/ on its own port (asked from inside it,
# with bash's /dev/tcp: the image has no curl).
answers() { # container, host:port as seen from that container
  docker exec "$1" bash -c "exec 3<>/dev/tcp/${2%:*}/${2#*:} && printf 'GET /v2/ HTTP/1.0\r\n\r\n' >&3 && head -n1 <&3" 2>/dev/null | grep -q ' 200 '
}
wait_answers() {
  for _ in $(seq 100); do answers "$1" "$2" && return 0; sleep 0.1; done
  echo "registry-up: $1 does not answer on $2:" >&2; docker logs --tail 20 "$1" >&2; exit 1
}

if ! running "$ORIGIN"; then
  docker rm -f "$ORIGIN" >/dev/null 2>&1 || true
  docker run -d --name "$ORIGIN" --label "$LABEL" -p "127.0.0.1:$PORT:5000" "$IMAGE" >/dev/null
fi
origin=$(address "$ORIGIN"):5000
wait_answers "$ORIGIN" "127.0.0.1:5000"

if ! running "$MIRROR" || [ "$(docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$MIRROR" | sed -n 's/^REGISTRY_PROXY_REMOTEURL=//p')" != "http://$origin" ]; then
  docker rm -f "$MIRROR" >/dev/null 2>&1 || true
  docker run -d --name "$MIRROR" --label "$LABEL" -e "REGISTRY_PROXY_REMOTEURL=http://$origin" "$IMAGE" >/dev/null
fi
mirror=$(address "$MIRROR"):5000
wait_answers "$MIRROR" "127.0.0.1:5000"

# The test images pods pull, on the origin (a push of layers it has is quick).
docker tag gocd-dind-test/debian:bookworm "127.0.0.1:$PORT/gocd-dind-test/job:1"
docker push -q "127.0.0.1:$PORT/gocd-dind-test/job:1" >/dev/null
docker rmi "127.0.0.1:$PORT/gocd-dind-test/job:1" >/dev/null

echo "origin=$origin mirror=$mirror host=127.0.0.1:$PORT"
