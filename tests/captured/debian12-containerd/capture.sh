#!/bin/sh
# Captures the outputs behind the containerd.* and cni.* fact fixtures on a Debian 12 machine with
# `apt-get install containerd containernetworking-plugins` (containerd 1.6.20~ds1, plugins 1.1.1) and no
# containerd running yet. Run as root from the repository root; writes NN-*.txt beside this script.
# It starts containerd by hand (no systemd as PID 1 on the capture machine) and stops it again.
set -u
here=$(dirname "$0")
py=.venv/bin/python
cmd() { $py -c "import sys; from pyinfra_iluvatar.facts.$1 import $2; print($2().command(*sys.argv[1:]))" ${3:+"$3"}; }
run() {  # run FILE COMMAND: record the command, its stdout+stderr, and its exit status
    { printf '%s\n' "\$ $2"; sh -c "$2" 2>&1; echo "[exit=$?]"; } > "$here/$1"
}

run 01-containerd-version.txt "$(cmd containerd ContainerdVersion containerd)"
run 02-ctr-version-daemon-down.txt "ctr --version; ctr --connect-timeout 3s version"
run 03-plugins-no-socket.txt "$(cmd containerd ContainerdPlugins '')"

containerd > /tmp/containerd-capture.log 2>&1 &
pid=$!
sleep 4
run 04-ctr-version.txt "ctr version"
run 05-plugins-running.txt "$(cmd containerd ContainerdPlugins '')"
run 06-plugins-detailed-zfs.txt "ctr plugins ls -d id==zfs"
grep -F 'io.containerd.snapshotter.v1.zfs' /tmp/containerd-capture.log > "$here/07-containerd-log-zfs.txt"

kill -9 "$pid"; wait "$pid" 2>/dev/null
run 08-plugins-stale-socket.txt "$(cmd containerd ContainerdPlugins '')"
rm -f /run/containerd/containerd.sock /run/containerd/containerd.sock.ttrpc

# A plugin directory made for the capture: three of Debian's plugins, the README a release tarball
# leaves beside them, an executable stand-in named cnitool (the fact lists it and never runs it), a program
# that prints nothing (/bin/true), and one that never ends.
dir=/tmp/cni-capture
rm -rf "$dir" && mkdir -p "$dir"
cp /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback "$dir/"
echo "CNI plugins" > "$dir/README.md"
printf '#!/bin/sh\nexit 0\n' > "$dir/cnitool"
cp /bin/true "$dir/silent"
printf '#!/bin/sh\nsleep 60\n' > "$dir/hangs"
chmod 755 "$dir/cnitool" "$dir/hangs"
run 09-cni-plugins-dir.txt "$(cmd cni CniPlugins "$dir")"
run 10-cni-plugins-debian.txt "$(cmd cni CniPlugins /usr/lib/cni)"
run 11-cni-plugins-missing-dir.txt "$(cmd cni CniPlugins /opt/cni/bin)"
rm -rf "$dir"
