#!/usr/bin/env bash
# Brings up a real single-node Kubernetes on this machine for the Kubernetes tests:
# etcd, containerd, runc and the CNI plugins from Debian; kube-apiserver,
# kube-controller-manager, kube-scheduler and kubelet built from source (.ci/k8s-build.sh);
# everything on loopback, with its own containerd (socket, root, state, runc root) so a
# Docker Engine on the same host is never touched.
#
# Idempotent: reuses the built binaries, the certificates and daemons already running,
# and re-imports a test image only when the Docker Engine's copy changed. The test images
# are taken from the Docker Engine (.ci/build-test-images.sh builds them there) and keep
# their names, so one cluster profile value works on both runtimes.
#
# The LAST line of its output is the admin kubeconfig path. Stop with .ci/k8s-down.sh.
# Env: K8S_VERSION, K8S_CACHE (binaries, pause image), K8S_STATE (certs, etcd, containerd,
# kubelet), K8S_TEST_IMAGES (images to import), SKIP_APT=1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
t0=$(date +%s)

export K8S_VERSION=${K8S_VERSION:-v1.32.9}
export K8S_CACHE=${K8S_CACHE:-/var/cache/gocd-dind-k8s}
STATE=${K8S_STATE:-/var/lib/gocd-dind-k8s}
SOCKETS=/run/gocd-dind-k8s
RUN=$STATE/run PKI=$STATE/pki KC=$STATE/kubeconfig
BIN=$K8S_CACHE/bin/$K8S_VERSION
CONTAINERD_SOCK=$SOCKETS/containerd/containerd.sock
# kubelet refuses a loopback --node-ip; an IP-shaped node name becomes the InternalIP.
NODE=127.0.0.1
API_PORT=6443 ETCD_PORT=12379 ETCD_PEER_PORT=12380
SERVICE_CIDR=10.96.0.0/16 POD_CIDR=10.244.0.0/24 BRIDGE=gocddind-k8s0
PAUSE_IMAGE=registry.k8s.io/pause:3.10
TEST_IMAGES=${K8S_TEST_IMAGES:-"gocd-dind-test/dind:latest gocd-dind-test/agent:latest gocd-dind-test/debian:bookworm"}
ctr_() { ctr -a "$CONTAINERD_SOCK" -n k8s.io "$@"; }

log() { echo "k8s-up [$(($(date +%s) - t0)) s] $*" >&2; }
die() { echo "k8s-up: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (it starts kubelet and containerd)"
mkdir -p "$K8S_CACHE" "$RUN/logs" "$RUN/pids" "$SOCKETS" "$PKI" "$KC"

# ------------------------------------------------------------------ packages
packages="etcd-server containerd runc containernetworking-plugins iptables conntrack openssl gcc libc6-dev curl"
if [ "${SKIP_APT:-0}" != 1 ]; then
  missing=()
  for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
      >"$RUN/logs/apt.log" 2>&1 || { tail -n 30 "$RUN/logs/apt.log" >&2; die "apt-get failed"; }
  fi
fi

# ------------------------------------------------------------------ binaries
bins="kube-apiserver kube-controller-manager kube-scheduler kubelet"
command -v kubectl >/dev/null 2>&1 || bins="$bins kubectl"
log "Kubernetes $K8S_VERSION binaries ($bins)"
K8S_BINS=$bins "$here/k8s-build.sh"
export PATH="$PATH:$BIN"

# The sandbox ("pause") image, compiled from Kubernetes' own pause.c: no registry here.
pause_tar=$K8S_CACHE/pause.tar
if [ ! -s "$pause_tar" ]; then
  log "building $PAUSE_IMAGE from build/pause/linux/pause.c"
  src=$(ls "$K8S_CACHE"/gomodcache/k8s.io/kubernetes@"$K8S_VERSION"/build/pause/linux/pause.c)
  work=$(mktemp -d)
  mkdir "$work/root" "$work/layer"
  gcc -Os -static -DVERSION=gocd-dind -o "$work/root/pause" "$src" && strip "$work/root/pause"
  tar -C "$work/root" -cf "$work/layer/layer.tar" .
  diff_id=$(sha256sum "$work/layer/layer.tar" | cut -d' ' -f1)
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$diff_id" >"$work/config.json"
  printf '[{"Config":"config.json","RepoTags":["%s"],"Layers":["layer/layer.tar"]}]' "$PAUSE_IMAGE" >"$work/manifest.json"
  tar -C "$work" -cf "$pause_tar.tmp" manifest.json config.json layer
  mv "$pause_tar.tmp" "$pause_tar"
  rm -rf "$work"
fi

# ------------------------------------------------------------------ certificates
cd "$PKI"
if [ ! -s ca.crt ]; then
  log "certificates in $PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=gocd-dind-k8s-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" 2>/dev/null
fi
cert() { # file-name CN O usage(client|server) [SANs]
  [ -s "$1.crt" ] && return 0
  local subject="/CN=$2"
  [ -n "$3" ] && subject="/O=$3$subject"
  openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$subject" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$([ "$4" = server ] && echo serverAuth || echo clientAuth)"
    [ -z "${5:-}" ] || echo "subjectAltName=$5"
  } >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
cert apiserver kube-apiserver "" server "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters client
cert admin gocd-dind-admin system:masters client
cert controller-manager system:kube-controller-manager "" client
cert scheduler system:kube-scheduler "" client
cert kubelet "system:node:$NODE" system:nodes client
cert kubelet-serving "$NODE" "" server "IP:127.0.0.1,DNS:localhost"
[ -s sa.key ] || { openssl genrsa -out sa.key 2048 2>/dev/null && openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null; }
chmod 600 ./*.key
kubeconfig() { # name user cert
  local file=$KC/$1.kubeconfig
  [ -s "$file" ] && return 0
  cat >"$file" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: gocd-dind-k8s
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority-data: $(base64 -w0 <ca.crt)}
users:
- name: $2
  user: {client-certificate-data: $(base64 -w0 <"$3.crt"), client-key-data: $(base64 -w0 <"$3.key")}
contexts:
- name: gocd-dind-k8s
  context: {cluster: gocd-dind-k8s, user: $2}
current-context: gocd-dind-k8s
KUBECONFIG
  chmod 600 "$file"
}
kubeconfig admin gocd-dind-admin admin
kubeconfig controller-manager system:kube-controller-manager controller-manager
kubeconfig scheduler system:kube-scheduler scheduler
kubeconfig kubelet "system:node:$NODE" kubelet
export KUBECONFIG=$KC/admin.kubeconfig

# ------------------------------------------------------------------ configuration
changed=" "
put() { # put FILE <content: written atomically and only when different (containerd
        # watches the CNI directory and reads half-written files otherwise)
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; changed="$changed$1 "; fi
}
mkdir -p "$STATE/containerd" "$STATE/cni/net.d" "$STATE/kubelet"
put "$STATE/containerd/config.toml" <<TOML
version = 2
root = "$STATE/containerd/root"
state = "$SOCKETS/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Hosts whose bounding set lacks CAP_SYS_RESOURCE cannot lower oom_score_adj, which CRI
  # asks for every sandbox (-998): clamp it, or no pod starts.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$SOCKETS/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
TOML
put "$STATE/cni/net.d/10-gocd-dind.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "gocd-dind-k8s", "plugins": [{"type": "bridge", "bridge": "$BRIDGE",
  "isGateway": true, "ipMasq": false, "hairpinMode": true,
  "ipam": {"type": "host-local", "dataDir": "$STATE/cni/ipam", "ranges": [[{"subnet": "$POD_CIDR"}]],
           "routes": [{"dst": "0.0.0.0/0"}]}}]}
JSON
put "$STATE/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: $PKI/ca.crt}}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failCgroupV1: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
clusterDomain: cluster.local
failSwapOn: false
resolvConf: /etc/resolv.conf
podLogsDir: $STATE/pod-logs
# No registry can give an image back: never garbage-collect one.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
YAML

# ------------------------------------------------------------------ processes
started_kubelet_at=""
running() { # name binary
  local pid
  pid=$(cat "$RUN/pids/$1.pid" 2>/dev/null) || return 1
  [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$2")" ]
}
stop_one() {
  local pid
  pid=$(cat "$RUN/pids/$1.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 150); do [ -d "/proc/$pid" ] || return 0; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
}
start() { # name binary config-file-or-"" args...: a running daemon whose config changed restarts
  local name=$1 binary=$2 config=$3
  shift 3
  if running "$name" "$binary"; then
    [ -n "$config" ] && [[ "$changed" == *" $config "* ]] || return 0
    log "$config changed: restarting $name"
    stop_one "$name"
  fi
  log "starting $name"
  [ "$name" = kubelet ] && started_kubelet_at=$(date -u +%FT%TZ)
  setsid "$binary" "$@" >>"$RUN/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/pids/$name.pid"
}
wait_for() { # what seconds command...
  local what=$1 seconds=$2 i=0
  shift 2
  until "$@" >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt $((seconds * 2)) ] || die "no $what after $seconds s; logs in $RUN/logs"
    sleep 0.5
  done
}

start etcd /usr/bin/etcd "" --name gocd-dind-k8s --data-dir "$STATE/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "gocd-dind-k8s=http://127.0.0.1:$ETCD_PEER_PORT" --quota-backend-bytes 2147483648
mkdir -p "$SOCKETS/containerd"
# Network namespaces that exist before our first start are not ours to remove later.
[ -e "$RUN/netns.before" ] || { ls -d /run/netns/cni-* 2>/dev/null || true; } >"$RUN/netns.before"
start containerd /usr/bin/containerd "$STATE/containerd/config.toml" --config "$STATE/containerd/config.toml"
wait_for etcd 60 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
wait_for containerd 60 ctr_ version

# ------------------------------------------------------------------ images
images_now=$(ctr_ images ls -q 2>/dev/null || true)
grep -qx "$PAUSE_IMAGE" <<<"$images_now" || { log "importing $PAUSE_IMAGE"; ctr_ images import "$pause_tar" >/dev/null; }
for image in $TEST_IMAGES; do
  id=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null) ||
    die "test image $image is not on the Docker Engine: run .ci/docker-up.sh and .ci/build-test-images.sh first"
  stamp=$STATE/images/$(tr '/:' '__' <<<"$image")
  mkdir -p "$STATE/images"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$id" ] || ! grep -qx "docker.io/$image" <<<"$images_now"; then
    log "importing $image"
    docker save "$image" | ctr_ images import - >/dev/null
    echo "$id" >"$stamp"
  fi
done

# ------------------------------------------------------------------ control plane and node
start kube-apiserver "$BIN/kube-apiserver" "" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --secure-port="$API_PORT" --advertise-address=127.0.0.1 \
  --endpoint-reconciler-type=none --service-cluster-ip-range="$SERVICE_CIDR" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" --client-ca-file="$PKI/ca.crt" \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP,Hostname \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --allow-privileged=true --profiling=false
api_ready() { curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://127.0.0.1:$API_PORT/readyz"; }
wait_for kube-apiserver 180 api_ready
start kube-controller-manager "$BIN/kube-controller-manager" "" \
  --kubeconfig="$KC/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$KC/controller-manager.kubeconfig" --authorization-kubeconfig="$KC/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=10257 --leader-elect=false \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
  --use-service-account-credentials=true --service-cluster-ip-range="$SERVICE_CIDR" \
  --allocate-node-cidrs=false --profiling=false
start kube-scheduler "$BIN/kube-scheduler" "" \
  --kubeconfig="$KC/scheduler.kubeconfig" \
  --authentication-kubeconfig="$KC/scheduler.kubeconfig" --authorization-kubeconfig="$KC/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false --profiling=false

# kubelet changes these sysctls when it starts; .ci/k8s-down.sh puts the old values back.
[ -s "$RUN/sysctl.before" ] || for key in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do echo "$key=$(sysctl -n "$key")"; done >"$RUN/sysctl.before"
start kubelet "$BIN/kubelet" "$STATE/kubelet/config.yaml" \
  --config="$STATE/kubelet/config.yaml" --kubeconfig="$KC/kubelet.kubeconfig" \
  --hostname-override="$NODE" --root-dir="$STATE/kubelet" --cert-dir="$STATE/kubelet/pki" --v=1

node_ready() { # Ready, with a heartbeat from the kubelet started now (not a stale status)
  local status heartbeat
  read -r status heartbeat < <(kubectl get node "$NODE" -o \
    jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}')
  [ "$status" = True ] && { [ -z "$started_kubelet_at" ] || [[ ! "$heartbeat" < "$started_kubelet_at" ]]; }
}
wait_for "Ready node $NODE" 240 node_ready
wait_for "default ServiceAccount" 120 kubectl -n default get serviceaccount default
log "cluster up ($(kubectl version -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -1))"
echo "$KC/admin.kubeconfig"
