#!/usr/bin/env bash
# Stops what .ci/k8s-up.sh started, by the PIDs it recorded, and undoes what kubelet did to
# the host: pod sandboxes, mounts and network namespaces, the CNI bridge, the iptables
# chains and sysctls kubelet sets, its cgroups. Never touches another containerd or dockerd.
#   k8s-down.sh          stop; keep certificates, etcd data and images (fast restart)
#   k8s-down.sh --purge  also delete the cluster's state (binaries stay in the cache)
set -uo pipefail
STATE=${K8S_STATE:-/var/lib/gocd-dind-k8s}
SOCKETS=/run/gocd-dind-k8s
RUN=$STATE/run
CONTAINERD_SOCK=$SOCKETS/containerd/containerd.sock
BRIDGE=gocddind-k8s0
ctr_() { ctr -a "$CONTAINERD_SOCK" -n k8s.io "$@"; }
log() { echo "k8s-down: $*" >&2; }

pid_of() { local pid; pid=$(cat "$RUN/pids/$1.pid" 2>/dev/null) && [ -d "/proc/$pid" ] && echo "$pid"; }
stop() { # names...: TERM all, wait up to 30 s each, then KILL
  local name pid pids=()
  for name in "$@"; do
    if pid=$(pid_of "$name"); then log "stopping $name ($pid)"; kill -TERM "$pid" 2>/dev/null; pids+=("$pid"); fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 150); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
    [ -d "/proc/$pid" ] && { log "$pid ignored TERM: KILL"; kill -KILL "$pid" 2>/dev/null; }
  done
  for name in "$@"; do rm -f "$RUN/pids/$name.pid"; done
}

# 1. Let kubelet remove the pods itself (CNI DEL, unmounts) while everything still runs.
if pid_of kube-apiserver >/dev/null && pid_of kubelet >/dev/null; then
  export KUBECONFIG=$STATE/kubeconfig/admin.kubeconfig
  if [ -n "$(kubectl get pods -A -o name --request-timeout=5s 2>/dev/null)" ]; then
    log "deleting every pod"
    kubectl delete pods -A --all --grace-period=2 --timeout=60s --wait=true >/dev/null 2>&1
    for _ in $(seq 60); do [ -z "$(ctr_ tasks ls -q 2>/dev/null)" ] && break; sleep 0.5; done
  fi
fi

# 2. The node and the control plane.
stop kubelet
stop kube-scheduler kube-controller-manager kube-apiserver

# 3. Containers kubelet did not stop, through our containerd only; then the daemons.
if pid_of containerd >/dev/null; then
  for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$id" >/dev/null 2>&1; done
  for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$id" >/dev/null 2>&1; done
fi
stop containerd etcd
# Our containerd's shims outlive it; they name our socket in their arguments.
for proc in /proc/[0-9]*; do
  args=$(tr '\0' ' ' 2>/dev/null <"$proc/cmdline") || continue
  [[ "$args" == *containerd-shim*"-address $CONTAINERD_SOCK "* ]] && kill -KILL "${proc#/proc/}" 2>/dev/null
done

# 4. Mounts under our directories, and the sandboxes' network namespaces.
findmnt -rn -o TARGET | grep -E "^($STATE|$SOCKETS)/" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
for ns in /run/netns/cni-*; do
  [ -e "$ns" ] || continue
  grep -qx "$ns" "$RUN/netns.before" 2>/dev/null && continue
  umount "$ns" 2>/dev/null
  rm -f "$ns"
done
for link in /var/log/containers/*.log; do
  [ -L "$link" ] && [[ "$(readlink "$link")" == "$STATE/"* ]] && rm -f "$link"
done

# 5. What kubelet changed on the host.
ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"
if [ -s "$RUN/sysctl.before" ]; then
  while IFS='=' read -r key value; do sysctl -qw "$key=$value"; done <"$RUN/sysctl.before"
  rm -f "$RUN/sysctl.before"
fi
for table in filter nat mangle; do
  for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
    for ipt in iptables ip6tables; do
      $ipt -t "$table" -S "$chain" >/dev/null 2>&1 || continue
      $ipt -t "$table" -S | grep -- "-j $chain\$" | sed 's/^-A/-D/' |
        while read -r rule; do read -ra words <<<"$rule"; $ipt -t "$table" "${words[@]}" 2>/dev/null; done
      $ipt -t "$table" -F "$chain" 2>/dev/null
      $ipt -t "$table" -X "$chain" 2>/dev/null
    done
  done
done
for cgroup in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
  [ -d "$cgroup" ] && find "$cgroup" -depth -type d -exec rmdir {} \; 2>/dev/null
done

if [ "${1:-}" = --purge ]; then
  log "deleting $STATE"
  rm -rf "$STATE" "$SOCKETS"
fi
log "stopped"
