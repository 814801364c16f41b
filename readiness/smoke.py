"""
A readiness smoke test: on a worker host, do what the Ilúvatar worker does to start a function, then undo it.

:func:`smoke_script` builds one POSIX shell script; run it on the host as root — over pyinfra's connection,
``host.run_shell_command(script, _sudo=True)`` for a sudoer (without ``_sudo`` it runs as the login user, and every
step is skipped: "needs root") — and give its stdout lines to :func:`parse`. The script, in order, each step timed
on the host (``date +%s%N``):

1. ``busybox``: finds busybox (``busybox`` on PATH, or ``/bin/busybox`` from ``busybox-static``); the container's
   root filesystem is made of it. Nothing is installed: when it is absent the step says "install busybox-static".
   A dynamically linked busybox (Debian's ``busybox``) works too: its libraries are copied along.
2. ``cni-config``: writes the worker's CNI network file ``<cni_name>.json`` (bridge plugin, ``ipMasq``, host-local
   IPAM over ``subnet``) into a fresh temporary directory, the worker's ``NETCONFPATH``.
3. ``netns``: ``ip netns add`` of a namespace named for this run.
4. ``cnitool-add``: ``cnitool add <cni_name> /var/run/netns/<ns>`` with ``CNI_PATH=<cni_bin_dir>``, as the worker
   fills its namespace pool; reads the address and gateway from cnitool's result (with jq, else sed).
5. ``rootfs``: a root filesystem in the temporary directory: busybox and its ``sh``, ``ping``, ``ip``, ``grep``.
6. ``ctr-run``: ``/usr/bin/ctr run --rm --rootfs --with-ns network:/var/run/netns/<ns>`` with the CPU and memory
   limits, a container that checks ``eth0`` holds the address and pings the bridge's gateway. A limit the host
   cannot enforce (no ``cpu``/``memory`` controller in the cgroup v2 root's ``cgroup.controllers``, or no v1
   hierarchy with it mounted) is left out, and the step, still ok, says which and why (the ``cgroups`` requirement
   of ``pyinfra-iluvatar check`` reports that separately). ``--cpu-shares 0`` is passed then, since ctr's own
   default (1024) is a limit too.
7. ``snapshot``: ``ctr snapshots --snapshotter <snapshotter> prepare <key>``, then ``rm <key>``.
8. ``cleanup``: always, also after a failed step or when the script is interrupted (``trap`` on EXIT, INT, TERM,
   HUP and PIPE — a closed SSH channel): the container and its task if ``--rm`` did not get to them, ``cnitool del``
   (which releases the host-local address and removes the ``ipMasq`` NAT rules: the bridge plugin's ``ipMasq`` adds
   a ``CNI-…`` chain in iptables' nat table with a POSTROUTING jump for the address, commented with cnitool's
   container id), ``ip netns del`` (and the host side of the veth pair, should the kernel, which removes it
   asynchronously, not have yet), the snapshot, the temporary directory; the bridge, the host-local data
   directory and ``/run/netns`` only when this run created them (a bridge that was there keeps only its own
   addresses and its up/down state), and ``net.ipv4.ip_forward`` back to 0 when it was 0 and the bridge plugin
   (which turns forwarding on for its gateway) set it. Then it checks that nothing is
   left — no namespace, veth, host-local allocation or cached result, NAT rule, container or snapshot of this run,
   no bridge it created — and reports anything that is as a leftover.

Every name the script makes carries ``pyinfra-iluvatar-smoke-<8 random hex digits>`` (namespace, container,
snapshot key, temporary directory; cnitool derives its container id, ``cnitool-<hash>``, from the namespace's
path), so its cleanup never touches the worker's own namespaces, containers or allocations. The script changes
nothing else: no sysctl of its own, no iptables rule beyond what ``ipMasq`` adds and ``cnitool del`` removes.

On a host whose worker already runs, the bridge exists with the worker's subnet and the host-local directory of
``cni_name`` holds the worker's allocations: pass the worker's own subnet (the bridge plugin refuses a second
IPv4 address on the bridge) — the smoke test then takes one address from that pool and gives it back, as the
worker's own pool does.

**Subnet.** The default, ``198.19.0.0/24``, lies in 198.18.0.0/15, the range reserved for test networks. Ilúvatar's
own network is ``10.10.0.0/16``, but on the machines this package is developed and tested on no test may send
traffic to a private range (10.x, 172.16-31.x, 192.168.x), not even inside a namespace; the caller passes the
subnet from the host's data (``iluvatar_smoke_subnet``), and any subnet given is used as it is.

Output: one line per event, ``pyinfra-iluvatar-smoke <kind> …`` (``begin ID``, ``info KEY VALUE``,
``step KEY ok|failed|skipped NANOSECONDS MESSAGE``, ``leftover TEXT``, ``end NANOSECONDS ok|failed``); other lines
are ignored by :func:`parse`. The script exits 0 only when every step passed and nothing was left behind.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Literal

MARKER = "pyinfra-iluvatar-smoke"
"""The first word of every line the script prints, and the prefix of every name it makes on the host."""

STEPS: dict[str, str] = {
    "busybox": "busybox",
    "cni-config": "CNI config",
    "netns": "netns add",
    "cnitool-add": "cnitool add",
    "rootfs": "rootfs",
    "ctr-run": "ctr run",
    "snapshot": "snapshot",
    "cleanup": "cleanup",
}
"""The steps, in order: key (as the script prints it) → name (as :func:`format_steps` shows it)."""

Status = Literal["ok", "failed", "skipped"]
_STATUSES: tuple[Status, ...] = ("ok", "failed", "skipped")

_BRIDGE = re.compile(r"[A-Za-z0-9_.:-]{1,15}")
_CNI_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # the CNI spec's network name
_SNAPSHOTTER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Step:
    """One step of a smoke run, as the host measured it."""

    key: str
    """The step's key in :data:`STEPS` (``cnitool-add``)."""
    name: str
    """Its name for people (``cnitool add``)."""
    status: Status
    seconds: float
    """Wall-clock seconds on the host (0 for a skipped step)."""
    message: str
    """What it found (``198.19.0.2/24 via 198.19.0.1``) or, failed, the failing command's stderr, trimmed."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class SmokeResult:
    """What :func:`parse` read from a smoke run's output."""

    run_id: str | None = None
    """The run's unique prefix on the host (``pyinfra-iluvatar-smoke-1a2b3c4d``); None when the script never began."""
    steps: list[Step] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    """What cleanup found still there afterwards (empty when it left the host as it was)."""
    info: dict[str, str] = field(default_factory=dict)
    """What the script learned on the way: ``address``, ``gateway``, ``veth``, ``not-enforced-cpu``, …"""
    seconds: float | None = None
    """The whole script, on the host; None when it never reached its end (interrupted, connection lost)."""
    problems: list[str] = field(default_factory=list)
    """Lines of the script's own that could not be read, and steps that are missing."""

    @property
    def complete(self) -> bool:
        """Whether the script ran to its end and reported every step."""
        return self.seconds is not None and [step.key for step in self.steps] == list(STEPS)

    @property
    def ok(self) -> bool:
        """Every step passed, nothing was left behind, and the output was whole."""
        return self.complete and not self.problems and not self.leftovers and all(step.ok for step in self.steps)

    @property
    def address(self) -> str | None:
        """The address ``cnitool add`` gave the namespace (``198.19.0.2/24``)."""
        return self.info.get("address")

    @property
    def gateway(self) -> str | None:
        return self.info.get("gateway")

    @property
    def not_enforced(self) -> dict[str, str]:
        """Limit (``cpu``, ``memory``) → why the host could not enforce it (the container ran without it)."""
        prefix = "not-enforced-"
        return {key.removeprefix(prefix): value for key, value in self.info.items() if key.startswith(prefix)}

    def step(self, key: str) -> Step | None:
        """The step with this key, if the output reported it."""
        return next((step for step in self.steps if step.key == key), None)


def _checked(name: str, value: str, pattern: re.Pattern[str] | None, accepted: str) -> str:
    if not isinstance(value, str) or not value or _CONTROL.search(value):
        raise ValueError(f"{name} must be a non-empty string without control characters, got {value!r}")
    if pattern is not None and not pattern.fullmatch(value):
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return value


def _limit(name: str, value: int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return str(value)


def network_config(*, cni_name: str, bridge: str, subnet: str) -> str:
    """The worker's CNI network file (``<cni_name>.json``), as it writes it at start."""
    return json.dumps(
        {
            "cniVersion": "0.4.0",
            "name": cni_name,
            "type": "bridge",
            "bridge": bridge,
            "isDefaultGateway": True,
            "forceAddress": False,
            "ipMasq": True,
            "hairpinMode": True,
            "ipam": {"type": "host-local", "subnet": subnet},
        },
        separators=(",", ":"),
    )


def smoke_script(
    *,
    cni_bin_dir: str = "/opt/cni/bin",
    subnet: str = "198.19.0.0/24",
    bridge: str = "IlWorkBr0",
    cni_name: str = "il_worker_br",
    snapshotter: str = "native",
    cpu_shares: int | None = 512,
    memory_mb: int | None = 64,
) -> str:
    """
    The smoke test as one POSIX shell script (see the module's docstring); run it on the host as root.

    + cni_bin_dir: the CNI plugins' directory, cnitool's too (the worker's ``cni_plugin_bin``)
    + subnet: the network's subnet, used as given (the default is in 198.18.0.0/15: see the module's docstring)
    + bridge: the bridge the plugin makes or joins (the worker's ``networking.bridge``)
    + cni_name: the network's name (the worker's ``networking.cni_name``): its file and its host-local directory
    + snapshotter: the snapshotter the snapshot step uses (the worker's ``container_resources.snapshotter``)
    + cpu_shares: the container's ``--cpu-shares``, or None for no CPU limit
    + memory_mb: the container's memory limit in MiB, or None for none

    Raises ``ValueError`` for a bad bridge, network or snapshotter name, a relative ``cni_bin_dir``, a limit that
    is not a positive integer, or any value with control characters.
    """
    if not isinstance(cni_bin_dir, str) or not cni_bin_dir.startswith("/"):
        raise ValueError(f"cni_bin_dir must be an absolute path, got {cni_bin_dir!r}")
    _checked("cni_bin_dir", cni_bin_dir, None, "")
    _checked("subnet", subnet, None, "")
    _checked("bridge", bridge, _BRIDGE, "an interface name: 1 to 15 of letters, digits and _.:-")
    if bridge in (".", ".."):
        raise ValueError(f"bridge must be an interface name, got {bridge!r}")
    _checked("cni_name", cni_name, _CNI_NAME, "a CNI network name: letters, digits and _.- (not first)")
    _checked("snapshotter", snapshotter, _SNAPSHOTTER, "a snapshotter name: letters, digits and _.-")
    shares = _limit("cpu_shares", cpu_shares)
    memory = _limit("memory_mb", memory_mb)
    q = shlex.quote
    settings = "\n".join(
        f"{name}={q(value)}"
        for name, value in (
            ("cni_bin_dir", cni_bin_dir.rstrip("/") or "/"),
            ("bridge", bridge),
            ("cni_name", cni_name),
            ("snapshotter", snapshotter),
            ("cpu_shares", shares),
            ("memory_mb", memory),
            ("netconf", network_config(cni_name=cni_name, bridge=bridge, subnet=subnet)),
        )
    )
    return f"set -eu\numask 022\nLC_ALL=C\nexport LC_ALL\nM={MARKER}\n{settings}\n{_BODY}"


_BODY = r"""
cnitool=$cni_bin_dir/cnitool
ctr=/usr/bin/ctr
cni_data=/var/lib/cni
ipam_dir=$cni_data/networks/$cni_name
netns_dir=/var/run/netns

nl='
'
# one output line: the marker, then the words, spaces between (a newline in a word becomes a space)
emit() {
    printf '%s' "$M"
    for _word; do
        case "$_word" in *"$nl"*) _word=$(printf '%s' "$_word" | tr '\n' ' ') ;; esac
        printf ' %s' "$_word"
    done
    printf '\n'
}
if [ "$(date +%N)" != N ] && [ -n "$(date +%N)" ]; then
    now() { date +%s%N; }
else
    now() { echo "$(date +%s)000000000"; }
fi
# a file's last four non-empty lines on one line, tabs and CRs as spaces
oneline() {
    awk 'NF { gsub(/[\t\r]/, " "); sub(/^ +/, ""); sub(/ +$/, ""); l[n++] = $0 }
        END { s = ""; for (i = (n > 4 ? n - 4 : 0); i < n; i++) s = s (s == "" ? "" : " | ") l[i]; print s }' \
        "$@" 2>/dev/null
}
# run a command in the background (so a signal is handled at once), stdin from /dev/null, with a timeout; a
# signal to it (cleanup after an interrupt) is forwarded by timeout, then made a KILL 3 s later
child=''
runbg() {
    _secs=$1 _out=$2 _err=$3
    shift 3
    timeout -k 3 "$_secs" "$@" >"$_out" 2>"$_err" </dev/null &
    child=$!
    _rc=0
    wait "$child" || _rc=$?
    child=''
    if [ "$_rc" = 124 ]; then echo "timed out after $_secs s" >>"$_err"; fi
    return "$_rc"
}

current='' t0=0 reported=' ' all_ok=yes signal='' work='' stop_reason=''
br_before='' br_addrs='' br_down='' fwd_before='' netns_dir_before='' dirs_before='' ctrd='' ctrd_msg=''
bb_ok='' conf_ok='' ns_tried='' ns_ok='' net_tried='' net_ok='' rootfs_ok='' ctr_tried='' snap_made=''
addr='' gw='' veth='' nat_rules=0
begin() { current=$1; t0=$(now); }
done_step() {
    _status=$1
    shift
    emit step "$current" "$_status" "$(($(now) - t0))" "$*"
    if [ "$_status" != ok ]; then all_ok=no; fi
    reported="$reported$current "
    current=''
}
ok() { done_step ok "$@"; }
failed() { done_step failed "$@"; }
skip() { emit step "$1" skipped 0 "$2"; all_ok=no; reported="$reported$1 "; }
info() { emit info "$@"; }

ctrx() { "$ctr" --connect-timeout 3s -n default "$@" </dev/null; }
containerd_answers() {
    if [ -z "$ctrd" ]; then
        if ! [ -x "$ctr" ]; then
            ctrd=no ctrd_msg="$ctr not found (the worker calls that path)"
        elif "$ctr" --connect-timeout 3s -n default version >"$work/ctrv.out" 2>"$work/ctrv.err" </dev/null; then
            ctrd=yes
        else
            ctrd=no ctrd_msg="containerd does not answer: $(oneline "$work/ctrv.err")"
        fi
    fi
    [ "$ctrd" = yes ]
}
has_controller() {
    if [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
        grep -qw "$1" /sys/fs/cgroup/cgroup.controllers 2>/dev/null
    else
        awk -v c="$1" '$3 == "cgroup" { n = split($4, o, ","); for (i = 1; i <= n; i++) if (o[i] == c) f = 1 }
            END { exit !f }' /proc/mounts
    fi
}
why_no_controller() {
    if [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
        _have=$(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)
        echo "the cgroup v2 root has no $1 controller (cgroup.controllers: '$_have')"
    else
        echo "no cgroup v1 hierarchy with the $1 controller is mounted"
    fi
}

# the cleanup and the verdict: runs on every exit (end of script, failure, signal)
finish() {
    rc=$?
    set +eu
    trap '' INT TERM HUP PIPE
    if [ -n "$stop_reason" ]; then
        why=$stop_reason
    elif [ -n "$signal" ]; then
        why="interrupted by SIG$signal"
    elif [ "$rc" != 0 ]; then
        why="the script stopped (exit $rc)"
    else
        why=''
    fi
    if [ -n "$current" ]; then failed "$why"; fi
    if [ -n "$child" ]; then kill "$child" 2>/dev/null; wait "$child" 2>/dev/null; child=''; fi
    for s in busybox cni-config netns cnitool-add rootfs ctr-run snapshot; do
        case "$reported" in *" $s "*) ;; *) skip "$s" "${stop_reason:-not run: ${why:-the script ended early}}" ;; esac
    done
    begin cleanup
    actions='' left=''
    did() { actions="$actions${actions:+; }$*"; }
    leftover() { emit leftover "$*"; left="$left${left:+; }$*"; }
    if [ -z "$ctrd" ] && [ "$ctr_tried" = yes ]; then containerd_answers; fi
    # the container (ctr run --rm removes it, unless ctr was killed) and the snapshot
    if [ "$ctrd" = yes ]; then
        if ctrx containers ls -q 2>/dev/null | grep -qxF "$id"; then
            ctrx tasks kill -s SIGKILL "$id" >/dev/null 2>&1
            ctrx tasks rm -f "$id" >/dev/null 2>&1
            ctrx containers rm "$id" >/dev/null 2>&1
            did "container $id removed (ctr run --rm had not)"
        fi
        if [ "$snap_made" = yes ] || ctrx snapshots --snapshotter "$snapshotter" ls 2>/dev/null \
            | awk '{ print $1 }' | grep -qxF "$id"; then
            ctrx snapshots --snapshotter "$snapshotter" rm "$id" >/dev/null 2>&1
            did "snapshot $id removed"
        fi
    fi
    # the network: cnitool del releases the address and removes ipMasq's NAT rules
    if [ "$net_tried" = yes ]; then
        if runbg 60 "$work/del.out" "$work/del.err" env CNI_PATH="$cni_bin_dir" NETCONFPATH="$work/net" \
            "$cnitool" del "$cni_name" "$nspath"; then
            did "cnitool del"
        else
            did "cnitool del failed: $(oneline "$work/del.err")"
        fi
    fi
    if [ -e "$nspath" ]; then
        if ip netns del "$id" 2>"$work/err"; then
            did "netns deleted"
        else
            did "ip netns del failed: $(oneline "$work/err")"
        fi
    fi
    # the kernel removes a namespace's veth pair asynchronously: after a failed cnitool del, ours may still be here
    if [ -n "$veth" ] && ip link show dev "$veth" >/dev/null 2>&1; then
        if ip link del dev "$veth" 2>/dev/null; then did "veth $veth deleted"; fi
    fi
    if [ "$br_before" = no ] && ip link show dev "$bridge" >/dev/null 2>&1; then
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            ports=''
            for p in "/sys/class/net/$bridge/brif/"*; do if [ -e "$p" ]; then ports="$ports ${p##*/}"; fi; done
            if [ -z "$ports" ]; then break; fi
            sleep 0.2
        done
        if [ -n "$ports" ]; then
            leftover "bridge $bridge (created by this run) now has other ports:$ports"
        elif ip link del dev "$bridge" 2>/dev/null; then
            did "bridge $bridge deleted (this run created it)"
        fi
    fi
    if [ "$br_before" = yes ] && ip link show dev "$bridge" >/dev/null 2>&1; then
        for a in $(ip -o -4 addr show dev "$bridge" | awk '{ print $4 }'); do
            case " $br_addrs " in *" $a "*) ;; *)
                ip addr del "$a" dev "$bridge" 2>/dev/null && did "address $a the bridge plugin gave $bridge removed" ;;
            esac
        done
        if [ "$br_down" = yes ] && ip link set dev "$bridge" down 2>/dev/null; then did "bridge $bridge down again"; fi
    fi
    if [ "$fwd_before" = 0 ] && [ "$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null)" = 1 ]; then
        if echo 0 2>/dev/null >/proc/sys/net/ipv4/ip_forward; then
            did "net.ipv4.ip_forward back to 0 (the bridge plugin had set it)"
        fi
    fi
    case "$dirs_before" in *" $ipam_dir "*) ;; *)
        rm -f "$ipam_dir/lock" "$ipam_dir"/last_reserved_ip.* 2>/dev/null
        rmdir "$ipam_dir" 2>/dev/null && did "$ipam_dir removed (this run created it)" ;;
    esac
    for d in "$cni_data/results" "$cni_data/networks" "$cni_data"; do
        case "$dirs_before" in *" $d "*) ;; *) rmdir "$d" 2>/dev/null ;; esac
    done
    if [ "$ns_tried" = yes ] && [ "$netns_dir_before" = no ] && [ -d "$netns_dir" ] \
        && [ -z "$(ls -A "$netns_dir")" ]; then
        umount "$netns_dir" 2>/dev/null
        rmdir "$netns_dir" 2>/dev/null
    fi
    if [ -n "$work" ] && [ -d "$work" ]; then rm -rf "$work" && did "temporary directory removed"; fi

    # what is left of this run?
    if [ -e "$nspath" ] || ip netns list 2>/dev/null | awk '{ print $1 }' | grep -qxF "$id"; then
        leftover "network namespace $id"
    fi
    if [ -n "$veth" ] && ip link show dev "$veth" >/dev/null 2>&1; then leftover "veth $veth (its peer was in $id)"; fi
    if [ "$br_before" = no ] && ip link show dev "$bridge" >/dev/null 2>&1; then
        leftover "bridge $bridge (created by this run)"
    fi
    if [ "$br_before" = yes ]; then
        for a in $(ip -o -4 addr show dev "$bridge" 2>/dev/null | awk '{ print $4 }'); do
            case " $br_addrs " in *" $a "*) ;; *) leftover "address $a on $bridge (it had: ${br_addrs:-none})" ;; esac
        done
    fi
    if [ -d "$ipam_dir" ]; then
        for f in "$ipam_dir"/*; do
            if [ -f "$f" ] && grep -qF "$cni_cid" "$f"; then leftover "host-local allocation $f"; fi
        done
        case "$dirs_before" in *" $ipam_dir "*) ;; *) leftover "$ipam_dir (created by this run)" ;; esac
    fi
    for f in "$cni_data/results/"*"$cni_cid"*; do
        if [ -e "$f" ]; then leftover "cached CNI result $f"; fi
    done
    if command -v iptables >/dev/null 2>&1; then
        for table in nat filter; do
            rules=$(iptables -t "$table" -S 2>/dev/null | grep -F "$cni_cid")
            set -f
            old_ifs=$IFS IFS='
'
            for rule in $rules; do
                IFS=$old_ifs
                leftover "iptables -t $table rule: $rule"
            done
            IFS=$old_ifs
            set +f
        done
        if [ "$nat_rules" -gt 0 ] && ! iptables -t nat -S 2>/dev/null | grep -qF "$cni_cid"; then
            did "ipMasq's $nat_rules NAT rules gone"
        fi
    fi
    if [ "$ctrd" = yes ]; then
        if ! list=$(ctrx containers ls -q 2>/dev/null); then
            leftover "cannot list containers to check for $id"
        elif printf '%s\n' "$list" | grep -qF "$id"; then
            leftover "container $id"
        fi
        if ! list=$(ctrx snapshots --snapshotter "$snapshotter" ls 2>/dev/null); then
            leftover "cannot list $snapshotter snapshots to check for $id"
        elif printf '%s\n' "$list" | awk '{ print $1 }' | grep -qF "$id"; then
            leftover "snapshot $id ($snapshotter)"
        fi
    fi
    if [ "$fwd_before" = 0 ] && [ "$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null)" = 1 ]; then
        leftover "net.ipv4.ip_forward is 1 (it was 0)"
    fi
    if [ "$ns_tried" = yes ] && [ "$netns_dir_before" = no ] && [ -d "$netns_dir" ]; then
        leftover "$netns_dir (made by ip netns add)"
    fi
    if [ -n "$work" ] && [ -e "$work" ]; then leftover "temporary directory $work"; fi
    if [ -z "$left" ]; then
        ok "${actions:-nothing to undo}; nothing left"
    else
        failed "left behind: $left${actions:+ (cleanup did: $actions)}"
    fi
    if [ "$all_ok" = yes ]; then verdict=ok; else verdict=failed; fi
    emit end "$(($(now) - start))" "$verdict"
    if [ -n "$signal" ]; then exit "$rc"; fi
    if [ "$verdict" = ok ]; then exit 0; fi
    exit 1
}

# this run's names: the namespace, container, snapshot key and temporary directory; cnitool's container id for
# the namespace (it hashes the namespace's path), which names the host-local allocation and ipMasq's NAT rules
start=$(now)
id=$M-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
nspath=$netns_dir/$id
cni_cid=cnitool-$(printf '%s' "$nspath" | sha512sum | cut -c1-20)
case "$id$cni_cid" in
"$M"-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]cnitool-[0-9a-f]*) ;;
*)
    emit begin "$M-none"
    for s in busybox cni-config netns cnitool-add rootfs ctr-run snapshot; do
        emit step "$s" skipped 0 "not run: cannot make a unique name (od, tr, sha512sum, cut missing?)"
    done
    emit step cleanup ok 0 "nothing made"
    emit end "$(($(now) - start))" failed
    exit 1
    ;;
esac

on_signal() { signal=$1; exit "$2"; }
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP
trap 'on_signal PIPE 141' PIPE
trap finish EXIT

emit begin "$id"
if [ "$(id -u)" != 0 ]; then
    stop_reason="not run: the smoke test needs root (it runs as uid $(id -u)): run it as root or through sudo"
    exit 1
fi
# what was there before (cleanup removes only what this run made)
br_before=no br_addrs='' br_down=''
if ip link show dev "$bridge" >/dev/null 2>&1; then
    br_before=yes
    br_addrs=$(ip -o -4 addr show dev "$bridge" | awk '{ print $4 }' | tr '\n' ' ')
    if ! ip -o link show dev "$bridge" | grep -q '[<,]UP[,>]'; then br_down=yes; fi
fi
fwd_before=$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo unknown)
netns_dir_before=no; if [ -d "$netns_dir" ]; then netns_dir_before=yes; fi
dirs_before=
for d in "$cni_data" "$cni_data/networks" "$ipam_dir" "$cni_data/results"; do
    if [ -d "$d" ]; then dirs_before="$dirs_before $d "; fi
done
info bridge-existed "$br_before"
info ip-forward-before "$fwd_before"
work=$(mktemp -d "/tmp/$id.XXXXXX")
rootfs=$work/rootfs

# 1. busybox
begin busybox
bb='' bb_libs=''
for c in "$(command -v busybox 2>/dev/null || true)" /bin/busybox /usr/bin/busybox; do
    if [ -n "$c" ] && [ -f "$c" ] && [ -x "$c" ]; then bb=$c; break; fi
done
if [ -z "$bb" ]; then
    failed "busybox not found (not on PATH, not /bin/busybox): install busybox-static"
else
    missing=
    for a in sh ping ip grep; do
        if ! "$bb" --list 2>/dev/null | grep -qx "$a"; then missing="$missing $a"; fi
    done
    if [ -n "$missing" ]; then
        failed "$bb lacks the applets:$missing; install busybox-static"
    elif ldd "$bb" >/dev/null 2>&1; then
        bb_libs=$(ldd "$bb" 2>/dev/null | grep -o '/[^ ]*' | sort -u)
        bb_ok=yes
        ok "$bb (dynamically linked: its libraries go into the root filesystem)"
    else
        bb_ok=yes
        ok "$bb (static)"
    fi
fi

# 2. the worker's CNI network file, in a fresh NETCONFPATH
begin cni-config
if mkdir "$work/net" 2>"$work/err" && printf '%s\n' "$netconf" >"$work/net/$cni_name.json"; then
    conf_ok=yes
    ok "$work/net/$cni_name.json"
else
    failed "cannot write $work/net/$cni_name.json: $(oneline "$work/err")"
fi

# 3. a network namespace of this run's own
begin netns
ns_tried=yes
if ip netns add "$id" 2>"$work/err"; then
    ns_ok=yes
    ok "$nspath"
else
    failed "ip netns add: $(oneline "$work/err")"
fi

# 4. cnitool add, as the worker fills its namespace pool
if [ "$ns_ok" != yes ] || [ "$conf_ok" != yes ]; then
    skip cnitool-add "needs the CNI config and the namespace"
else
    begin cnitool-add
    if ! [ -x "$cnitool" ]; then
        failed "cnitool not found at $cnitool (the worker's networking.cnitool)"
    else
        net_tried=yes
        if runbg 60 "$work/add.out" "$work/err" env CNI_PATH="$cni_bin_dir" NETCONFPATH="$work/net" \
            "$cnitool" add "$cni_name" "$nspath"; then
            if command -v jq >/dev/null 2>&1; then
                addr=$(jq -r '.ips[0].address // empty' "$work/add.out" 2>/dev/null || true)
                gw=$(jq -r '.ips[0].gateway // empty' "$work/add.out" 2>/dev/null || true)
                veth=$(jq -r --arg br "$bridge" \
                    '[.interfaces[]? | select(.sandbox == null and .name != $br)][0].name // empty' \
                    "$work/add.out" 2>/dev/null || true)
            else
                addr=$(sed -n 's/.*"address": *"\([^"]*\)".*/\1/p' "$work/add.out" | head -n 1)
                gw=$(sed -n 's/.*"gateway": *"\([^"]*\)".*/\1/p' "$work/add.out" | head -n 1)
                veth=$(sed -n 's/.*"name": *"\(veth[^"]*\)".*/\1/p' "$work/add.out" | head -n 1)
            fi
            case "$addr" in *[!0-9./]* | '') addr= ;; esac
            case "$gw" in *[!0-9.]* | '') gw= ;; esac
            case "$veth" in *[!A-Za-z0-9_.@-]*) veth= ;; esac
            if [ -f "$ipam_dir/${addr%/*}" ]; then
                seen=$(head -n 1 "$ipam_dir/${addr%/*}" | tr -d '\r')
                if [ -n "$seen" ]; then cni_cid=$seen; fi
            fi
            if command -v iptables >/dev/null 2>&1; then
                nat_rules=$(iptables -t nat -S 2>/dev/null | grep -cF "$cni_cid" || true)
            fi
            info cni-container-id "$cni_cid"
            info ipmasq-nat-rules "$nat_rules"
            if [ -n "$addr" ] && [ -n "$gw" ]; then
                net_ok=yes
                info address "$addr"
                info gateway "$gw"
                if [ -n "$veth" ]; then info veth "$veth"; fi
                ok "$addr via $gw"
            else
                failed "cnitool add gave no IPv4 address and gateway: $(tr -d '\n' <"$work/add.out" | cut -c1-300)"
            fi
        else
            msg=$(oneline "$work/err")
            case "$msg" in
            *"already has an IP address different from"*)
                msg="$msg (bridge $bridge exists with another subnet: give the worker's own subnet)" ;;
            esac
            failed "cnitool add: $msg"
        fi
    fi
fi

# 5. a root filesystem of busybox
make_rootfs() {
    mkdir -p "$rootfs/bin" || return 1
    cp "$bb" "$rootfs/bin/busybox" || return 1
    for a in sh ping ip grep; do ln -s busybox "$rootfs/bin/$a" || return 1; done
    for lib in $bb_libs; do
        mkdir -p "$rootfs$(dirname "$lib")" && cp -L "$lib" "$rootfs$lib" || return 1
    done
}
if [ "$bb_ok" != yes ]; then
    skip rootfs "needs busybox"
else
    begin rootfs
    if make_rootfs 2>"$work/err"; then
        rootfs_ok=yes
        ok "busybox with sh, ping, ip, grep in $rootfs"
    else
        failed "$(oneline "$work/err")"
    fi
fi

# 6. ctr run in the namespace, with the limits the host can enforce
if [ "$rootfs_ok" != yes ] || [ "$net_ok" != yes ]; then
    needs=
    if [ "$rootfs_ok" != yes ]; then needs="the root filesystem"; fi
    if [ "$net_ok" != yes ]; then needs="${needs:+$needs and }the namespace's address (cnitool add)"; fi
    skip ctr-run "needs $needs"
else
    begin ctr-run
    if ! containerd_answers; then
        failed "$ctrd_msg"
    else
        set -- --cpu-shares 0
        notes=
        if [ -n "$cpu_shares" ]; then
            if has_controller cpu; then
                set -- --cpu-shares "$cpu_shares"
                notes="cpu-shares $cpu_shares"
            else
                why=$(why_no_controller cpu)
                info not-enforced-cpu "$why"
                notes="cpu-shares $cpu_shares NOT enforced: $why"
            fi
        fi
        if [ -n "$memory_mb" ]; then
            if has_controller memory; then
                set -- "$@" --memory-limit "$((memory_mb * 1048576))"
                notes="${notes:+$notes; }memory $memory_mb MiB"
            else
                why=$(why_no_controller memory)
                info not-enforced-memory "$why"
                notes="${notes:+$notes; }memory $memory_mb MiB NOT enforced: $why"
            fi
        fi
        # shellcheck disable=SC2016 # expanded in the container
        inside='addr=$1 gw=$2
if ! ip -4 addr show dev eth0 | grep -qF "inet $addr "; then
    echo "eth0 does not hold $addr:" $(ip -4 addr show dev eth0) >&2
    exit 3
fi
ping -c 1 -W 2 "$gw" || { echo "ping $gw from the container failed" >&2; exit 4; }'
        ctr_tried=yes
        if runbg 120 "$work/run.out" "$work/err" "$ctr" --connect-timeout 3s -n default run --rm --rootfs \
            --with-ns "network:$nspath" "$@" "$rootfs" "$id" /bin/sh -c "$inside" smoke "$addr" "$gw"; then
            rtt=$(grep -o 'time=[0-9.]* *ms' "$work/run.out" | head -n 1)
            ok "$addr on eth0, ping $gw ${rtt:-ok}${notes:+; $notes}"
        else
            failed "$(cat "$work/run.out" "$work/err" | oneline)"
        fi
    fi
fi

# 7. a snapshot with the worker's snapshotter
begin snapshot
if ! containerd_answers; then
    failed "$ctrd_msg"
else
    ctr_tried=yes
    if ! runbg 60 "$work/snap.out" "$work/err" "$ctr" --connect-timeout 3s -n default \
        snapshots --snapshotter "$snapshotter" prepare "$id"; then
        failed "ctr snapshots --snapshotter $snapshotter prepare: $(oneline "$work/err")"
    else
        snap_made=yes
        if runbg 60 "$work/snap.out" "$work/err" "$ctr" --connect-timeout 3s -n default \
            snapshots --snapshotter "$snapshotter" rm "$id"; then
            snap_made=
            ok "prepare and rm with the $snapshotter snapshotter"
        else
            failed "ctr snapshots --snapshotter $snapshotter rm: $(oneline "$work/err")"
        fi
    fi
fi
"""


def _parse_step(rest: str) -> Step:
    parts = rest.split(" ", 3)
    if len(parts) < 3:
        raise ValueError("too few fields")
    key, status, nanoseconds = parts[:3]
    message = parts[3] if len(parts) > 3 else ""
    if key not in STEPS:
        raise ValueError(f"unknown step {key!r}")
    if status not in _STATUSES:
        raise ValueError(f"unknown status {status!r}")
    if not nanoseconds.isdigit():
        raise ValueError(f"not a duration: {nanoseconds!r}")
    checked: Status = "ok" if status == "ok" else "failed" if status == "failed" else "skipped"
    return Step(key, STEPS[key], checked, int(nanoseconds) / 1e9, message.strip())


def parse(output: list[str]) -> SmokeResult:
    """
    Read the smoke script's stdout lines (``CommandOutput.stdout_lines``). Lines that are not the script's own are
    ignored; a line of its own that cannot be read, a step reported twice, a missing step or a missing end is a
    problem (``result.problems``), never an exception: a run cut off by a lost connection gives a result that is
    not ok and says so.
    """
    result = SmokeResult()
    prefix = MARKER + " "
    for raw in output:
        line = raw.rstrip("\r\n")
        if not line.startswith(prefix):
            continue
        kind, _, rest = line[len(prefix) :].partition(" ")
        try:
            if kind == "begin":
                result.run_id = rest.strip() or None
            elif kind == "info":
                key, _, value = rest.partition(" ")
                if not key:
                    raise ValueError("no key")
                result.info[key] = value.strip()
            elif kind == "step":
                step = _parse_step(rest)
                if result.step(step.key) is not None:
                    raise ValueError(f"step {step.key} reported twice")
                result.steps.append(step)
            elif kind == "leftover":
                result.leftovers.append(rest.strip())
            elif kind == "end":
                nanoseconds, _, _verdict = rest.partition(" ")
                if not nanoseconds.isdigit():
                    raise ValueError(f"not a duration: {nanoseconds!r}")
                result.seconds = int(nanoseconds) / 1e9
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except ValueError as error:
            result.problems.append(f"unreadable line ({error}): {line[:200]}")
    if result.run_id is None:
        result.problems.append("no smoke output: the script did not start (no shell, sudo refused, not root?)")
    else:
        missing = [name for key, name in STEPS.items() if result.step(key) is None]
        if missing:
            result.problems.append(f"steps not reported: {', '.join(missing)}")
        if result.seconds is None:
            result.problems.append("the script did not reach its end (interrupted, or the connection was lost)")
    order = list(STEPS)
    result.steps.sort(key=lambda step: order.index(step.key))
    return result


def format_steps(result: SmokeResult) -> list[str]:
    """
    Lines for people: one per step (``cnitool add   ok        0.12 s  198.19.0.2/24 via 198.19.0.1``), then each
    leftover and problem, then the total (when the script reached its end).
    """
    width = max(len(name) for name in STEPS.values())
    lines = []
    for step in result.steps:
        seconds = "    -    " if step.status == "skipped" else f"{step.seconds:5.2f} s  "
        lines.append(f"{step.name:<{width}}   {step.status:<7}  {seconds}{step.message}".rstrip())
    lines += [f"leftover: {leftover}" for leftover in result.leftovers]
    lines += [f"problem: {problem}" for problem in result.problems]
    if result.seconds is not None:
        lines.append(f"{'total':<{width}}   {'ok' if result.ok else 'failed':<7}  {result.seconds:5.2f} s")
    return lines
