#!/bin/sh
# Captures the smoke test's real output on a sandbox worker host, healthy and broken (README.md here says how).
# Run from the repository root, as root, with a sandbox up whose worker-1 got the worker deploy and busybox-static:
#   STATE=/var/lib/pyinfra-iluvatar/sandbox-smoke-probe sh tests/captured/smoke-sandbox/capture.sh
# Each scenario: the host's state, the breakage, the smoke script (its stdout kept as NN-name.out), the repair,
# the host's state again; runs.txt records exit status, wall time, stderr and whether both states are equal.
set -eu
STATE=${STATE:-/var/lib/pyinfra-iluvatar/sandbox-smoke-probe}
HERE=tests/captured/smoke-sandbox
BIN=.venv/bin
sh_() { "$BIN/pyinfra-iluvatar" sandbox shell --state-dir "$STATE" worker-1 "$@"; }
script() { "$BIN/python" -c "import sys; from pyinfra_iluvatar.readiness.smoke import smoke_script; sys.stdout.write(smoke_script($1))"; }
STATE_CMD='echo "## ip netns"; ip netns
echo "## ip link"; ip -o link | awk "{ print \$2, \$3 }"
echo "## ip -4 addr"; ip -o -4 addr | awk "{ print \$2, \$4 }"
echo "## /var/lib/cni"; find /var/lib/cni 2>/dev/null | sort
echo "## /run/netns"; ls -d /run/netns 2>&1 || true
echo "## ctr containers"; ctr containers ls
echo "## ctr tasks"; ctr tasks ls
echo "## ctr snapshots --snapshotter native"; ctr snapshots --snapshotter native ls
echo "## iptables -t nat -S"; iptables -t nat -S
echo "## iptables -S"; iptables -S
echo "## net.ipv4.ip_forward"; cat /proc/sys/net/ipv4/ip_forward
echo "## /tmp"; ls -a /tmp | grep smoke || true'
: >"$HERE/runs.txt"
# the script as pyinfra's run_shell_command runs it: the argument of `sh -c`
AS_PYINFRA='s=$(cat); exec sh -c "$s"'
sh_ 'cat >/root/ctr-slow.sh' <"$HERE/ctr-slow.sh"
sh_ 'cat >/root/cnitool-del-fails.sh' <"$HERE/cnitool-del-fails.sh"
# a user who logs in with the sandbox's key and may sudo without a password (scenarios 13 and 14)
sh_ 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q sudo >/dev/null; id smokeuser >/dev/null 2>&1 || useradd -m smokeuser
install -d -m 700 -o smokeuser -g smokeuser /home/smokeuser/.ssh
install -m 600 -o smokeuser -g smokeuser /root/.ssh/authorized_keys /home/smokeuser/.ssh/
echo "smokeuser ALL=(ALL) NOPASSWD: ALL" >/etc/sudoers.d/smokeuser && chmod 440 /etc/sudoers.d/smokeuser'
ADDRESS=$("$BIN/pyinfra-iluvatar" sandbox status --state-dir "$STATE" | awk '$1 == "worker-1" { print $3 }')
as_user() {
    ssh -i "$STATE/id_ed25519" -o UserKnownHostsFile="$STATE/known_hosts" -o StrictHostKeyChecking=yes \
        -o BatchMode=yes "$AS_USER@$ADDRESS" "$@"
}

scenario() { # NAME ARGS BREAK REPAIR [RUNNER]
    name=$1 args=$2 break=$3 repair=$4 runner=${5:-$AS_PYINFRA}
    echo "== $name" >&2
    sh_ "$STATE_CMD" >/tmp/smoke-capture.before 2>&1
    sh_ "$break" >/dev/null 2>&1 || true
    script "$args" >/tmp/smoke-capture.script
    t0=$(date +%s%N)
    rc=0
    if [ -n "${AS_USER:-}" ]; then
        as_user "$runner" </tmp/smoke-capture.script >"$HERE/$name.out" 2>/tmp/smoke-capture.err || rc=$?
    else
        sh_ "$runner" </tmp/smoke-capture.script >"$HERE/$name.out" 2>/tmp/smoke-capture.err || rc=$?
    fi
    t1=$(date +%s%N)
    sh_ "$repair" >/dev/null 2>&1 || true
    sh_ "$STATE_CMD" >/tmp/smoke-capture.after 2>&1
    {
        echo "## $name: smoke_script($args)"
        echo "breakage: ${break:-none}"
        echo "repair:   ${repair:-none}"
        echo "runner:   $runner${AS_USER:+ (as $AS_USER over ssh)}"
        echo "exit status $rc, $(((t1 - t0) / 1000000)) ms wall (controller, ssh included)"
        echo "stderr: $(cat /tmp/smoke-capture.err)"
        if cmp -s /tmp/smoke-capture.before /tmp/smoke-capture.after; then
            echo "host state before == after ($(wc -l </tmp/smoke-capture.before) lines)"
        else
            echo "host state DIFFERS:"; diff /tmp/smoke-capture.before /tmp/smoke-capture.after || true
        fi
        echo
    } >>"$HERE/runs.txt"
    if [ "$name" = 01-all-ok ]; then
        cp /tmp/smoke-capture.before "$HERE/01-all-ok.state-before.txt"
        cp /tmp/smoke-capture.after "$HERE/01-all-ok.state-after.txt"
    fi
}

BRIDGE_UP='ip link add IlWorkBr0 type bridge && ip addr add 198.19.0.1/24 dev IlWorkBr0 && ip link set IlWorkBr0 up'
BRIDGE_DOWN='ip link del IlWorkBr0'
# /usr/bin/ctr made a wrapper whose `ctr run` container sleeps 30 s after its check: the smoke script is then
# interrupted while ctr run holds a live container (the wrapper is ctr-slow.sh, here)
SLOW_CTR='cp /root/ctr-slow.sh /usr/bin/ctr.new && chmod 755 /usr/bin/ctr.new && mv -f /usr/bin/ctr.new /usr/bin/ctr'
FAST_CTR='ln -sfn /usr/local/bin/ctr /usr/bin/ctr'

scenario 01-all-ok "" "" ""
scenario 02-all-ok-bridge-existed "" "$BRIDGE_UP" "$BRIDGE_DOWN"
scenario 03-busybox-missing "" "dpkg -r busybox-static" "DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static"
scenario 04-cnitool-missing "" "mv /opt/cni/bin/cnitool /root/cnitool.moved" "mv /root/cnitool.moved /opt/cni/bin/cnitool"
scenario 05-containerd-down "" "systemctl stop containerd" "systemctl start containerd && ctr version"
scenario 06-bad-subnet "subnet='198.19.0.0/33'" "" ""
scenario 07-bridge-has-other-subnet "subnet='198.19.1.0/24'" "$BRIDGE_UP" "$BRIDGE_DOWN"
scenario 08-no-jq-sed-fallback "" "mv /usr/bin/jq /root/jq.moved" "mv /root/jq.moved /usr/bin/jq"
scenario 09-dynamic-busybox "" \
    "DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox" \
    "DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static"
scenario 10-sigterm-during-ctr-run "" "$SLOW_CTR" "$FAST_CTR" \
    's=$(cat); sh -c "$s" & pid=$!; sleep 1.5; kill -TERM $pid; wait $pid'
scenario 11-memory-limit-none "cpu_shares=None, memory_mb=None" "" ""
# cnitool del fails: what it should have removed is reported as left over; then removed by hand
DEL_FAILS='mv /opt/cni/bin/cnitool /opt/cni/bin/cnitool.real && install -m 755 /root/cnitool-del-fails.sh /opt/cni/bin/cnitool'
BY_HAND='mv -f /opt/cni/bin/cnitool.real /opt/cni/bin/cnitool
iptables -t nat -S POSTROUTING | grep -e "-j CNI-" | sed "s/^-A/-D/" | while read -r rule; do eval "iptables -t nat $rule"; done
for chain in $(iptables -t nat -S | awk "\$1 == \"-N\" && \$2 ~ /^CNI-/ { print \$2 }"); do iptables -t nat -F "$chain"; iptables -t nat -X "$chain"; done
rm -rf /var/lib/cni'
scenario 15-cnitool-del-fails "" "$DEL_FAILS" "$BY_HAND"
AS_USER=smokeuser
scenario 13-not-root "" "" ""
scenario 14-through-sudo "" "" "" 's=$(cat); exec sudo -n sh -c "$s"'
AS_USER=''


# The connection lost while ctr run holds a live container: the local ssh is killed 1.5 s in; the script notices
# when it next writes (SIGPIPE, once ctr run returns); the host is checked 45 s later.
name=12-connection-lost-during-ctr-run
echo "== $name" >&2
sh_ "$STATE_CMD" >/tmp/smoke-capture.before 2>&1
sh_ "$SLOW_CTR"
script "" >/tmp/smoke-capture.script
# not through sh_: $! must be the ssh process itself (sandbox shell execs ssh), not a subshell
"$BIN/pyinfra-iluvatar" sandbox shell --state-dir "$STATE" worker-1 "$AS_PYINFRA" \
    </tmp/smoke-capture.script >"$HERE/$name.out" 2>/tmp/smoke-capture.err &
ssh_pid=$!
sleep 1.5
kill "$ssh_pid"
wait "$ssh_pid" || true
sleep 45
sh_ "ps -eo pid,args | grep -c '[p]yinfra-iluvatar-smoke' || true" >/tmp/smoke-capture.ps 2>&1
sh_ "$FAST_CTR"
sh_ "$STATE_CMD" >/tmp/smoke-capture.after 2>&1
{
    echo "## $name: smoke_script()"
    echo "breakage: $SLOW_CTR; the local ssh killed 1.5 s in"
    echo "repair:   $FAST_CTR"
    echo "processes of the smoke run on the host 45 s later: $(cat /tmp/smoke-capture.ps)"
    if cmp -s /tmp/smoke-capture.before /tmp/smoke-capture.after; then
        echo "host state before == after ($(wc -l </tmp/smoke-capture.before) lines)"
    else
        echo "host state DIFFERS:"; diff /tmp/smoke-capture.before /tmp/smoke-capture.after || true
    fi
    echo
} >>"$HERE/runs.txt"
sh_ 'rm -f /root/ctr-slow.sh /root/cnitool-del-fails.sh /etc/sudoers.d/smokeuser; userdel -r smokeuser 2>/dev/null || true'
rm -f /tmp/smoke-capture.*
