#!/bin/sh
# How containerd 1.6 (Debian 12's 1.6.20, unpacked, not installed: `apt-get download containerd` then
# `dpkg-deb -x containerd_*.deb x`) reads operations.nvidia's drop-in beside operations.containerd's config.toml:
# `containerd config dump` prints the effective configuration after merging the imports. Run inside `unshare -m`
# with a tmpfs over /etc (a copy of the real one), so /etc/containerd exists only there.
#   sh capture-containerd.sh /tmp/d20/x       (as root, from this folder; writes 07-containerd-1.6-*.txt)
set -u
x=$1
here=$(pwd)
repo=$(cd ../../.. && pwd)
files=$(mktemp -d)
(cd "$repo/.." && "$repo/.venv/bin/python" - "$files" <<'PY'
import sys
from pyinfra_iluvatar.operations import containerd, nvidia
out = sys.argv[1]
open(f"{out}/config.toml", "w").write(containerd.render_config(1, "zfs"))
open(f"{out}/99-nvidia.toml", "w").write(nvidia.render_containerd_drop_in(1, snapshotter="zfs"))
# The same runtime tables without the CRI settings restated: what a drop-in holding only the runtime looks like.
runtime_only = nvidia.render_containerd_drop_in(2, snapshotter="zfs").replace("cri.v1.runtime", "grpc.v1.cri")
open(f"{out}/runtime-only.toml", "w").write(runtime_only.replace("version = 3", "version = 2"))
PY
)
unshare -m sh -s "$x" "$files" "$here" <<'INNER'
x=$1; files=$2; here=$3
mkdir -p /run/etc-orig && mount --bind /etc /run/etc-orig && mount -t tmpfs none /etc && cp -a /run/etc-orig/. /etc
mkdir -p /etc/containerd/conf.d && cp "$files/config.toml" /etc/containerd/config.toml
dump() { # name, drop-in file or "none"
  f="$here/$1"
  {
    echo "# $($x/usr/bin/containerd --version)"
    echo "\$ cat /etc/containerd/config.toml"; cat /etc/containerd/config.toml
    rm -f /etc/containerd/conf.d/*.toml
    if [ "$2" != none ]; then cp "$files/$2" /etc/containerd/conf.d/99-nvidia.toml
      echo "\$ cat /etc/containerd/conf.d/99-nvidia.toml"; cat /etc/containerd/conf.d/99-nvidia.toml; fi
    echo "\$ containerd --config /etc/containerd/config.toml config dump"
    "$x/usr/bin/containerd" --config /etc/containerd/config.toml config dump 2>&1; echo "[exit=$?]"
  } > "$f"
}
dump 07-containerd-1.6-no-drop-in.txt none
dump 08-containerd-1.6-runtime-only-drop-in.txt runtime-only.toml
dump 09-containerd-1.6-our-drop-in.txt 99-nvidia.toml
INNER
rm -rf "$files"
