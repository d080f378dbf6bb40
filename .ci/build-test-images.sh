#!/usr/bin/env bash
# Build the local test images (no registry here), each only when missing or when its
# deploy/test-images/<name>/ context changed. Prints one line per artefact.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ctx=$root/deploy/test-images
BASE=gocd-dind-test/debian:bookworm DIND=gocd-dind-test/dind:latest AGENT=gocd-dind-test/agent:latest
REGISTRY=gocd-dind-test/registry:latest
TAR=${GOCD_DIND_BASE_TAR:-/var/cache/gocd-dind/debian-bookworm.tar}
mirror=${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.{list,sources} 2>/dev/null |
  sed -n -E 's#^(URIs:|deb)( \[[^]]*\])? +(https?://[^ ]*/debian)/?( .*)?$#\3#p' | sed -n 1p || true)}
mirror=${mirror:-http://deb.debian.org/debian}
log=$(mktemp /tmp/gocd-dind-build.XXXXXX.log)
trap 'rm -f "$log"' EXIT

mkdir -p "$(dirname "$TAR")"
exec 9>"$(dirname "$TAR")/build.lock"
flock 9   # concurrent callers wait for one build

now() { date +%s%N; }
report() { printf '%-42s %-6s %ss\n' "$1" "$2" "$(awk -v a="$3" -v b="$(now)" 'BEGIN{printf "%.1f",(b-a)/1e9}')"; }
die() { echo "build-test-images: $1 failed; last output:" >&2; tail -n 40 "$log" >&2; exit 1; }

t=$(now)
if docker image inspect "$BASE" >/dev/null 2>&1; then report "$BASE" cached "$t"; else
  dir=$(mktemp -d /var/tmp/gocd-dind-rootfs.XXXXXX)
  debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$log" 2>&1 || { rm -rf "$dir"; die debootstrap; }
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" -c . | docker import - "$BASE" >"$log" 2>&1 || { rm -rf "$dir"; die "docker import"; }
  rm -rf "$dir" "$TAR"
  report "$BASE" built "$t"
fi

t=$(now)
if [ -s "$TAR" ]; then report "$TAR" cached "$t"; else
  docker save -o "$TAR.tmp" "$BASE" && chmod 0644 "$TAR.tmp" && mv "$TAR.tmp" "$TAR"
  report "$TAR" built "$t"
fi

build() { # image, context dir: rebuild when base id + context hash differ from the image label
  local img=$1 dir=$2 sum have
  sum=$({ docker image inspect -f '{{.Id}}' "$BASE"; cd "$dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum; } |
    sha256sum | cut -c1-64)
  have=$(docker image inspect -f '{{index .Config.Labels "gocd-dind-test.context"}}' "$img" 2>/dev/null || true)
  t=$(now)
  if [ "$have" = "$sum" ]; then report "$img" cached "$t"; return; fi
  DOCKER_BUILDKIT=0 docker build --network host -q --label "gocd-dind-test.context=$sum" -t "$img" "$dir" \
    >"$log" 2>&1 || die "docker build $img"
  report "$img" built "$t"
}
build "$DIND" "$ctx/dind"
build "$AGENT" "$ctx/agent"
build "$REGISTRY" "$ctx/registry"
docker image prune -f --filter label=gocd-dind-test.context >/dev/null  # superseded builds
