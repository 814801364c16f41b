#!/bin/sh
# Real output of the facts operations/nvidia.py reads (facts.nvidia.NvidiaDevices, NvidiaPersistenced, DockerImage),
# on the development machine (Debian 12, no NVIDIA device), without changing it: every variation runs inside
# `unshare -m` (a private mount namespace) over tmpfs or overlay mounts, and nothing is installed — the .debs are only
# unpacked:
#   mkdir -p /tmp/nvp && cd /tmp/nvp && apt-get download nvidia-persistenced      (bookworm contrib, via a private
#     sources list) && dpkg-deb -x nvidia-persistenced_*.deb x && dpkg-deb -e nvidia-persistenced_*.deb ctl
#   mkdir -p /tmp/d20 && cd /tmp/d20 && apt-get download docker.io containerd runc && for f in *.deb; do dpkg-deb -x "$f" x; done
#   sh capture.sh /tmp/nvp /tmp/d20/x        (as root, from this folder; writes NN-*.txt here)
# Each file starts with what ran (`$ …`) and ends with its exit status (`[exit=N]`).
set -u
nvp=$1; d20=$2
here=$(pwd)
repo=$(cd ../../.. && pwd)
fact() { (cd "$repo/.." && "$repo/.venv/bin/python" -c "
from pyinfra_iluvatar.facts.nvidia import $1
print($1().command($2))"); }
DEVICES=$(fact NvidiaDevices "")
PERSISTENCED=$(fact NvidiaPersistenced "")
IMAGE=$(fact DockerImage "image='nvidia/cuda:11.8.0-base-ubuntu20.04'")
n=0
cap() { # name, command run by sh -c (inside whatever namespace the caller set up)
  n=$((n+1)); f="$here/$(printf %02d $n)-$1.txt"; shift
  { printf '$ %s\n' "$1"; sh -c "$1" 2>&1; echo "[exit=$?]"; } > "$f"
}
export here DEVICES PERSISTENCED IMAGE nvp d20

# 01: NvidiaDevices on this machine as it is: six virtio/Intel PCI functions, no NVIDIA device.
cap devices-debian12-vm "$DEVICES"
# 02: NvidiaDevices where sysfs has no PCI bus (an empty tmpfs over /sys/bus, private mount namespace).
n=$((n+1)); unshare -m sh -c 'mount -t tmpfs none /sys/bus && { printf "\$ %s\\n" "$DEVICES"; sh -c "$DEVICES" 2>&1; echo "[exit=$?]"; }' \
  > "$here/$(printf %02d $n)-devices-no-pci-bus.txt"
# 03: NvidiaPersistenced on this machine: no binary, neither user.
cap persistenced-none "$PERSISTENCED"
# 04: Debian 12's nvidia-persistenced package as its postinst leaves the host: its binary in /usr/bin (an overlay of
#     the unpacked package over /usr/bin) and the system user its postinst creates, by the postinst's own adduser
#     command, in a private copy of /etc (tmpfs).
n=$((n+1)); unshare -m sh -s > "$here/$(printf %02d $n)-persistenced-debian-package.txt" 2>&1 <<'INNER'
mkdir -p /run/etc-orig && mount --bind /etc /run/etc-orig && mount -t tmpfs none /etc && cp -a /run/etc-orig/. /etc
mount -t overlay overlay -o "lowerdir=$nvp/x/usr/bin:/usr/bin" /usr/bin
echo "# adduser as $nvp/ctl/postinst runs it:"
adduser --system --group --home /var/run/nvpd/ --gecos 'NVIDIA Persistence Daemon' --no-create-home nvpd
printf '$ %s\n' "$PERSISTENCED"; sh -c "$PERSISTENCED" 2>&1; echo "[exit=$?]"
INNER
# 05: the binary where the lent H200 had it (tests/captured/h200-ubuntu-24.04/11-which.txt): /usr/local/nvidia/bin
#     on PATH, none in /usr/bin, no user (tmpfs over /usr/local, the package's binary copied there).
n=$((n+1)); unshare -m sh -s > "$here/$(printf %02d $n)-persistenced-usr-local-nvidia.txt" 2>&1 <<'INNER'
mount -t tmpfs none /usr/local && mkdir -p /usr/local/nvidia/bin && cp -p "$nvp/x/usr/bin/nvidia-persistenced" /usr/local/nvidia/bin/
export PATH=/usr/local/nvidia/bin:$PATH
printf '$ %s\n' "$PERSISTENCED"; sh -c "$PERSISTENCED" 2>&1; echo "[exit=$?]"
INNER
# 06-: DockerImage against Debian 12's dockerd 20.10 (unpacked, vfs, private /run and data root), with its own CLI
#      (20.10) and this machine's CLI 28.2.2: no daemon, image absent, image present (a one-file root filesystem
#      imported under the MPS image's name: a stand-in, not NVIDIA's image).
n=$((n+1)); data=$(mktemp -d); unshare -m sh -s "$data" > "$here/$(printf %02d $n)-docker-image.txt" 2>&1 <<'INNER'
data=$1
mount -t tmpfs tmpfs /run
export PATH="$d20/usr/bin:$d20/usr/sbin:$PATH"
both() { for cli in "$d20/usr/bin/docker" /usr/local/bin/docker; do
  c=$(printf '%s' "$IMAGE" | sed "s#^docker #$cli #"); printf '$ %s\n' "$c"; sh -c "$c" 2>&1; echo "[exit=$?]"; done; }
echo "# no daemon running:"; both
"$d20/usr/sbin/dockerd" --storage-driver=vfs --iptables=false --bridge=none --data-root "$data/root" > "$data/log" 2>&1 &
pid=$!
i=0; until "$d20/usr/bin/docker" info --format '{{.ServerVersion}}' >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 60 ] && break; sleep 1; done
"$d20/usr/bin/docker" version --format 'client {{.Client.Version}}, server {{.Server.Version}}'
echo "# daemon running, image absent:"; both
mkdir -p "$data/rootfs" && echo stand-in > "$data/rootfs/README"
echo "\$ tar -C rootfs -c . | docker import - nvidia/cuda:11.8.0-base-ubuntu20.04"
tar -C "$data/rootfs" -c . | "$d20/usr/bin/docker" import - nvidia/cuda:11.8.0-base-ubuntu20.04; echo "[exit=$?]"
echo "# daemon running, image present:"; both
kill "$pid"; wait "$pid"
INNER
rm -rf "$data"
