#!/usr/bin/env bash
# Baseline: one gocd-dind agent pod built with bare `docker` commands, laid out exactly as
# the service lays it out through the Docker API. Prints create->ready and teardown times.
#   benches/baseline-pod.sh [--verify] [--runs N]     (needs .ci/docker-up.sh + .ci/build-test-images.sh)
# Findings on this host (Docker 20.10.24 from Debian, kernel 6.18, 2 vCPU):
# - cgroup v1 (hybrid: v1 controllers + cgroup2 at /sys/fs/cgroup/unified on the host; a
#   container sees only the v1 hierarchies, bind-mounted read-only from its own /docker/<id>).
#   `mount -o remount,rw,bind <dir>` on each of them is enough and keeps the pod's own subtree
#   (inner containers nest under /docker/<dind-id>/docker/<inner-id>, as with --privileged);
#   a fresh `mount -t cgroup` would expose the host's whole hierarchy instead (src/pod/dind_script.rs).
# - `docker cp` (no -a) keeps tar-header uid/gid and mode as given (also a local file's own
#   owner when copying from a path). `docker cp -a` with user "1000:0" fails ("getent unable
#   to find entry \"1000:0\""). So the client key ships as 1000:0 0640, server key 0:0 0600.
# - /usr/local/bin/docker here is a CLI 28.2 that talks to the 20.10 daemon (API 1.41) fine.
# - Figures (5 runs): create_to_ready 1.5-1.8 s, of which ~0.2 s is minting TLS with openssl
#   and most of the rest dockerd start-up; teardown ~0.3 s, ~1.7 s after --verify (an image
#   loaded and a container running in the inner daemon).
# - GO_EA_* stay visible to `docker exec` (container config); only the entrypoint's children lose them.
set -euo pipefail
DIND_IMG=gocd-dind-test/dind:latest AGENT_IMG=gocd-dind-test/agent:latest
BASE_IMG=gocd-dind-test/debian:bookworm BASE_TAR=${GOCD_DIND_BASE_TAR:-/var/cache/gocd-dind/debian-bookworm.tar}
LABEL=app.kubernetes.io/managed-by=gocd-dind-baseline
CAPS="CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE
 NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT
 SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE
 AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ" # all of 20.10's but SYS_RESOURCE
read -r -d '' DIND_SCRIPT <<'SH' || true
set -eu
cp "$(command -v docker)" /gocd-dind/bin/docker
chown 1000:0 /godata && chmod 0775 /godata
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  mount -o remount,rw /sys/fs/cgroup
  mkdir -p /sys/fs/cgroup/init
  xargs -rn1 </sys/fs/cgroup/cgroup.procs >/sys/fs/cgroup/init/cgroup.procs || :
  sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers >/sys/fs/cgroup/cgroup.subtree_control
else
  for d in $(awk '$2 ~ "^/sys/fs/cgroup/" && ($3 == "cgroup" || $3 == "cgroup2") { print $2 }' /proc/mounts); do
    mount -o remount,rw,bind "$d"
  done
fi
exec dockerd --host=tcp://127.0.0.1:2376 --tlsverify --tlscacert=/gocd-dind/tls/ca.pem \
  --tlscert=/gocd-dind/tls/cert.pem --tlskey=/gocd-dind/tls/key.pem
SH

verify=0 runs=1
while [ $# -gt 0 ]; do case $1 in
  --verify) verify=1 ;; --runs) runs=$2; shift ;; *) echo "usage: $0 [--verify] [--runs N]" >&2; exit 2 ;;
esac; shift; done
ms() { echo $(( $(date +%s%N) / 1000000 )); }
die() { echo "baseline-pod: $*" >&2; exit 1; }
q() { "$@" >/dev/null; }

mint() { # dir: ECDSA P-256 CA, server cert (server+client auth), client cert; CA key discarded
  local d=$1 n
  mkdir -p "$d/server/gocd-dind/tls" "$d/client/gocd-dind/tls"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca-key.pem" 2>/dev/null
  openssl req -x509 -new -key "$d/ca-key.pem" -subj /CN=gocd-dind-ca -days 2 -out "$d/ca.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$d/server.ext"
  printf 'extendedKeyUsage=clientAuth\n' >"$d/client.ext"
  for n in server client; do
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/$n/gocd-dind/tls/key.pem" 2>/dev/null
    openssl req -new -key "$d/$n/gocd-dind/tls/key.pem" -subj "/CN=gocd-dind-$n" 2>/dev/null |
      openssl x509 -req -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" -set_serial "0x$(openssl rand -hex 16)" \
        -days 2 -extfile "$d/$n.ext" -out "$d/$n/gocd-dind/tls/cert.pem" 2>/dev/null
    cp "$d/ca.pem" "$d/$n/gocd-dind/tls/ca.pem"
  done
  rm -f "$d/ca-key.pem"
}
cp_tls() { # container, tree, key owner uid, key mode: stream a tar, never a bind mount
  { tar -c -C "$2" --numeric-owner --owner=0 --group=0 --mode=u=rwX,go=rX --exclude=key.pem gocd-dind
    } >"$2.tar"
  tar -r -f "$2.tar" -C "$2" --numeric-owner --owner="$3" --group=0 --mode="$4" gocd-dind/tls/key.pem
  docker cp - "$1:/" <"$2.tar"
}

create() { # pod
  local p=$1 tmp v i
  tmp=$(mktemp -d); mint "$tmp"
  for v in godata docker-lib docker-cli; do q docker volume create --label "$LABEL" "$p-$v"; done
  local caps=(); for i in $CAPS; do caps+=(--cap-add "$i"); done
  q docker create --name "$p-dind" --label "$LABEL" "${caps[@]}" --security-opt seccomp=unconfined \
    --security-opt apparmor=unconfined --security-opt systempaths=unconfined \
    -v "$p-docker-lib:/var/lib/docker" -v "$p-godata:/godata" -v "$p-docker-cli:/gocd-dind/bin" \
    "$DIND_IMG" sh -c "$DIND_SCRIPT"
  cp_tls "$p-dind" "$tmp/server" 0 0600
  q docker start "$p-dind"
  q docker create --name "$p-agent" --label "$LABEL" --network "container:$p-dind" --user 1000:0 \
    -v "$p-godata:/godata" -v "$p-docker-cli:/gocd-dind/bin" \
    -e DOCKER_HOST=tcp://127.0.0.1:2376 -e DOCKER_TLS_VERIFY=1 -e DOCKER_CERT_PATH=/gocd-dind/tls \
    -e PATH=/gocd-dind/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    -e GO_EA_SERVER_URL=https://gocd.invalid:8154/go -e GO_EA_AUTO_REGISTER_KEY=baseline-key \
    -e GO_EA_AUTO_REGISTER_ELASTIC_AGENT_ID="$p" -e GO_EA_AUTO_REGISTER_ELASTIC_PLUGIN_ID=gocd-dind \
    "$AGENT_IMG"
  cp_tls "$p-agent" "$tmp/client" 1000 0640
  rm -rf "$tmp"
  local deadline=$(( $(ms) + 60000 ))
  until docker exec "$p-dind" docker --tlsverify --tlscacert=/gocd-dind/tls/ca.pem --tlscert=/gocd-dind/tls/cert.pem \
      --tlskey=/gocd-dind/tls/key.pem -H tcp://127.0.0.1:2376 version >/dev/null 2>&1; do
    [ "$(docker inspect -f '{{.State.Running}}' "$p-dind")" = true ] || { docker logs --tail 20 "$p-dind" >&2; die "$p-dind exited"; }
    [ "$(ms)" -lt "$deadline" ] || { docker logs --tail 20 "$p-dind" >&2; die "dockerd in $p-dind not ready in 60 s"; }
    sleep 0.1
  done
  q docker start "$p-agent"
}

verify_pod() { # pod
  local p=$1; local a=(docker exec -u 1000:0 "$p-agent")
  q "${a[@]}" docker info || die "agent cannot reach its dockerd"
  [ "$("${a[@]}" docker info -f '{{.Driver}}')" = overlay2 ] || die "inner daemon is not on overlay2"
  [ "$("${a[@]}" stat -c '%u:%g %a' /godata /gocd-dind/tls/key.pem)" = "$(printf '1000:0 775\n1000:0 640')" ] ||
    die "unexpected /godata or client key ownership"
  [ "$("${a[@]}" stat -c %a /go-working-dir/config/autoregister.properties)" = 600 ] || die "no autoregister.properties"
  docker exec -i "$p-dind" docker --tlsverify --tlscacert=/gocd-dind/tls/ca.pem --tlscert=/gocd-dind/tls/cert.pem \
    --tlskey=/gocd-dind/tls/key.pem -H tcp://127.0.0.1:2376 load -q <"$BASE_TAR" >/dev/null || die "load into inner daemon failed"
  "${a[@]}" play-job >/dev/null || die "play-job failed"
  q "${a[@]}" docker run -d --name "inner-$p" "$BASE_IMG" sleep 300 || die "inner docker run -d failed"
  [ -z "$(docker ps -aq --filter "name=inner-$p")" ] || die "host engine sees the inner container"
  echo "verify=ok pod=$p"
}

teardown() { # pod
  docker rm -f "$1-agent" "$1-dind" >/dev/null 2>&1 || true
  docker volume rm "$1-godata" "$1-docker-lib" "$1-docker-cli" >/dev/null 2>&1 || true
}
left() { docker ps -aq --filter "label=$LABEL"; docker volume ls -q --filter "label=$LABEL"; }

[ -z "$(left)" ] || die "objects labelled $LABEL already exist; remove them first"
pod=""
trap '[ -z "$pod" ] || teardown "$pod"' EXIT
for i in $(seq "$runs"); do
  pod=gocd-dind-baseline-$(openssl rand -hex 3)-$i
  t0=$(ms); create "$pod"; t1=$(ms)
  [ "$verify" = 0 ] || verify_pod "$pod"
  t2=$(ms); teardown "$pod"; t3=$(ms); pod=""
  [ -z "$(left)" ] || die "objects labelled $LABEL left after teardown: $(left | tr '\n' ' ')"
  echo "run=$i create_to_ready_ms=$((t1 - t0)) teardown_ms=$((t3 - t2))"
done
