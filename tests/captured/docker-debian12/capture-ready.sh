#!/bin/sh
# operations.docker.ready's command, run for real against Debian 12's docker.io 20.10 (client and daemon) and the
# docker CLI 28 of this machine, without installing anything: the .debs are only unpacked into a directory.
#   mkdir -p /tmp/d20 && cd /tmp/d20 && apt-get download docker.io containerd runc \
#     && for f in *.deb; do dpkg-deb -x "$f" x; done
#   sh capture-ready.sh /tmp/d20/x > 11-ready.txt 2>&1      (as root, from this folder)
# Everything runs inside `unshare -m` with a tmpfs over /run, so the daemon's sockets, pid file and the containerd
# it starts are private to the run; its data root is a temporary directory, removed afterwards.
set -u
x=$1
data=$(mktemp -d)
repo=$(cd ../../.. && pwd)
commands=$(cd "$repo/.." && "$repo/.venv/bin/python" -c '
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host
from pyinfra_iluvatar.operations import docker
state = FakeState()
with ctx_state.use(state), ctx_host.use(create_host(state, facts={})):
    print(next(docker.ready._inner(timeout=30)))
    print(next(docker.ready._inner(timeout=3)))')
ready30=$(printf '%s\n' "$commands" | sed -n 1p)
ready3=$(printf '%s\n' "$commands" | sed -n 2p)
unshare -m sh -s "$x" "$data" "$ready30" "$ready3" <<'INNER'
x=$1; data=$2; ready30=$3; ready3=$4
mount -t tmpfs tmpfs /run
show() { echo "\$ $*"; "$@"; echo "[exit=$?]"; }
echo "# What each CLI prints for ready's query while no daemon runs:"
show "$x/usr/bin/docker" --version
show "$x/usr/bin/docker" info --format '{{.ServerVersion}}'
show /usr/local/bin/docker --version
show /usr/local/bin/docker info --format '{{.ServerVersion}}'
echo "# ... and for the DockerDaemon fact's query (20.10 exits 0 without a daemon: why ready does not use it):"
echo "\$ $x/usr/bin/docker info --format '{{json .}}' >/dev/null 2>&1"
"$x/usr/bin/docker" info --format '{{json .}}' >/dev/null 2>&1; echo "[exit=$?]"
export PATH="$x/usr/bin:$x/usr/sbin:$PATH"
echo "# ready's command (timeout 3) with no daemon, PATH's docker being 20.10:"
echo "\$ $ready3"; sh -c "$ready3"; echo "[exit=$?]"
"$x/usr/sbin/dockerd" --storage-driver=vfs --iptables=false --bridge=none --data-root "$data" > "$data.log" 2>&1 &
pid=$!
echo "# ready's command (timeout 30) right after starting dockerd (20.10, vfs, no iptables, no bridge):"
echo "\$ $ready30"; sh -c "$ready30"; echo "[exit=$?]"
show docker info --format '{{.ServerVersion}}'
kill "$pid"; wait "$pid"
echo "# ready's command (timeout 3) after dockerd stopped:"
echo "\$ $ready3"; sh -c "$ready3"; echo "[exit=$?]"
INNER
rm -rf "$data" "$data.log"
