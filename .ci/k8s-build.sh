#!/usr/bin/env bash
# Builds the Kubernetes server binaries the local test cluster needs, from source, through
# the Go module proxy (the only place Kubernetes can come from on these machines).
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod points its staging modules at
# ./staging/... paths. So a scratch module requires k8s.io/kubernetes and replaces every
# staging module with the published k8s.io/<name> v0.<minor>.<patch>.
#
# Pinned to v1.32.9: the proxy here refuses some zips of later 1.32 patches (e.g.
# k8s.io/endpointslice v0.32.13), and 1.35+ refuses cgroup v1 nodes by default.
#
# Env: K8S_VERSION, K8S_CACHE (default /var/cache/gocd-dind-k8s), K8S_BINS.
# Output: $K8S_CACHE/bin/$K8S_VERSION/<binary>. Skips what is already built.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.32.9}
K8S_CACHE=${K8S_CACHE:-/var/cache/gocd-dind-k8s}
K8S_BINS=${K8S_BINS:-"kube-apiserver kube-controller-manager kube-scheduler kubelet"}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

bin_dir="$K8S_CACHE/bin/$K8S_VERSION"
src_dir="$K8S_CACHE/src/$K8S_VERSION"
export GOMODCACHE="$K8S_CACHE/gomodcache" GOCACHE="$K8S_CACHE/gocache"
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0
mkdir -p "$bin_dir" "$src_dir" "$GOMODCACHE" "$GOCACHE"

# Concurrent callers wait for one build.
exec 9>"$K8S_CACHE/build.lock"
flock 9
missing=()
for b in $K8S_BINS; do [ -x "$bin_dir/$b" ] || missing+=("$b"); done
[ ${#missing[@]} -eq 0 ] && exit 0

cd "$src_dir"
started=$(date +%s)
if [ ! -f go.mod ]; then
  info=$("$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION")
  upstream_mod=$(sed -n 's/.*"GoMod": "\(.*\)",/\1/p' <<<"$info")
  staging_version="v0.${K8S_VERSION#v1.}"
  {
    printf 'module local/gocd-dind-k8s\n\ngo 1.23.0\n\ngodebug default=go1.23\n\n'
    printf 'require k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
    sed -n 's#^\s*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*#\1#p' "$upstream_mod" |
      while read -r m; do printf '\t%s => %s %s\n' "$m" "$m" "$staging_version"; done
    printf ')\n'
  } >go.mod.tmp
  mv go.mod.tmp go.mod
fi
targets=()
for b in "${missing[@]}"; do targets+=("k8s.io/kubernetes/cmd/$b@$K8S_VERSION"); done
"$GO" get "${targets[@]}"

# The version stamp hack/lib/version.sh would set: kubelet and kubectl compare versions.
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
for b in "${missing[@]}"; do
  "$GO" build -trimpath -ldflags "$ldflags" -o "$bin_dir/$b.tmp" "k8s.io/kubernetes/cmd/$b"
  mv "$bin_dir/$b.tmp" "$bin_dir/$b"
done
echo "k8s-build: ${missing[*]} built in $(($(date +%s) - started)) s" >&2
