"""The readiness smoke test: the script :func:`smoke_script` builds, and :func:`parse` against real output captured on a
sandbox worker host (``tests/captured/smoke-sandbox/``, healthy and broken in 15 ways; see its README)."""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from pyinfra_iluvatar.readiness.smoke import (
    MARKER,
    STEPS,
    SmokeResult,
    format_steps,
    network_config,
    parse,
    smoke_script,
)

CAPTURED = Path(__file__).parent / "captured" / "smoke-sandbox"
TEST_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
"""Every subnet these tests use lies here: no test may name a private range on these machines."""


def captured(name: str) -> SmokeResult:
    return parse((CAPTURED / f"{name}.out").read_text().splitlines())


def preamble_values(script: str, *names: str) -> list[str]:
    """Run the script's settings (its assignments only, nothing else) in sh and read the variables back."""
    preamble = script[: script.index("\ncnitool=$cni_bin_dir/cnitool\n")]
    printed = " ".join(f'"${name}"' for name in names)
    result = subprocess.run(
        ["sh", "-c", f"{preamble}\nprintf '%s\\n' {printed}"], capture_output=True, text=True, check=True
    )
    return result.stdout.splitlines()


# smoke_script


def test_the_default_subnet_is_a_test_network() -> None:
    script = smoke_script()
    (subnet,) = re.findall(r'"subnet":"([^"]+)"', script)
    assert ipaddress.IPv4Network(subnet).subnet_of(TEST_RANGE)


def test_the_script_writes_the_workers_network_file() -> None:
    expected = (
        '{"cniVersion":"0.4.0","name":"il_worker_br","type":"bridge","bridge":"IlWorkBr0","isDefaultGateway":true,'
        '"forceAddress":false,"ipMasq":true,"hairpinMode":true,"ipam":{"type":"host-local","subnet":"198.18.7.0/24"}}'
    )
    assert network_config(cni_name="il_worker_br", bridge="IlWorkBr0", subnet="198.18.7.0/24") == expected
    script = smoke_script(subnet="198.18.7.0/24")
    assert f"netconf={shlex.quote(expected)}\n" in script
    assert preamble_values(script, "netconf") == [expected]
    assert 'printf \'%s\\n\' "$netconf" >"$work/net/$cni_name.json"' in script


def test_every_setting_reaches_the_script() -> None:
    script = smoke_script(
        cni_bin_dir="/usr/lib/cni",
        subnet="198.19.4.0/22",
        bridge="SmokeBr1",
        cni_name="smoke_net",
        snapshotter="overlayfs",
        cpu_shares=256,
        memory_mb=128,
    )
    names = ("cni_bin_dir", "bridge", "cni_name", "snapshotter", "cpu_shares", "memory_mb")
    assert preamble_values(script, *names) == ["/usr/lib/cni", "SmokeBr1", "smoke_net", "overlayfs", "256", "128"]
    config = json.loads(preamble_values(script, "netconf")[0])
    assert (config["name"], config["bridge"], config["ipam"]["subnet"]) == ("smoke_net", "SmokeBr1", "198.19.4.0/22")


def test_no_limits_leave_the_limit_settings_empty() -> None:
    script = smoke_script(cpu_shares=None, memory_mb=None)
    assert preamble_values(script, "cpu_shares", "memory_mb") == ["", ""]
    # ctr's own default (--cpu-shares 1024) is a limit too: the run passes 0 when there is none to enforce
    assert "set -- --cpu-shares 0" in script


def test_values_are_quoted_for_the_shell() -> None:
    script = smoke_script(cni_bin_dir="/opt/my cni/it's here/bin", subnet="198.19.0.0/24'; touch /tmp/x; '")
    assert preamble_values(script, "cni_bin_dir") == ["/opt/my cni/it's here/bin"]
    assert json.loads(preamble_values(script, "netconf")[0])["ipam"]["subnet"] == "198.19.0.0/24'; touch /tmp/x; '"


@pytest.mark.parametrize(
    "subnet",
    ["198.19.0.0/24", "198.18.0.0/15", "198.19.0.0/33", "198.19.255.0/31"],
)
def test_any_subnet_is_used_as_given(subnet: str) -> None:
    """The host's CNI plugins judge the subnet (06-bad-subnet.out shows what a bad one gives), not the script."""
    assert ipaddress.ip_address(subnet.split("/")[0]) in TEST_RANGE
    assert json.loads(preamble_values(smoke_script(subnet=subnet), "netconf")[0])["ipam"]["subnet"] == subnet


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"cni_bin_dir": "opt/cni/bin"}, "cni_bin_dir must be an absolute path"),
        ({"bridge": "IlWorkBridgeTooLong"}, "bridge must be an interface name"),
        ({"bridge": "Il/Work"}, "bridge must be an interface name"),
        ({"bridge": ".."}, "bridge must be an interface name"),
        ({"cni_name": "../il_worker_br"}, "cni_name must be a CNI network name"),
        ({"cni_name": ""}, "cni_name must be a non-empty string"),
        ({"snapshotter": "zfs native"}, "snapshotter must be a snapshotter name"),
        ({"subnet": "198.19.0.0/24\nrm -rf /"}, "subnet must be a non-empty string without control characters"),
        ({"cpu_shares": 0}, "cpu_shares must be a positive integer or None"),
        ({"cpu_shares": True}, "cpu_shares must be a positive integer or None"),
        ({"memory_mb": -64}, "memory_mb must be a positive integer or None"),
        ({"memory_mb": "64"}, "memory_mb must be a positive integer or None"),
    ],
)
def test_bad_settings_are_refused(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        smoke_script(**arguments)  # type: ignore[arg-type]


def test_the_script_is_posix_sh() -> None:
    for script in (smoke_script(), smoke_script(cpu_shares=None, memory_mb=None, subnet="198.18.200.0/24")):
        subprocess.run(["sh", "-n", "-c", script], check=True)


def test_everything_the_script_makes_is_named_for_the_run() -> None:
    script = smoke_script()
    assert f"\nM={MARKER}\n" in script
    assert "id=$M-$(od -An -N4 -tx1 /dev/urandom" in script
    for made in ('ip netns add "$id"', '"$rootfs" "$id" /bin/sh', 'prepare "$id"', 'mktemp -d "/tmp/$id.XXXXXX"'):
        assert made in script
    assert "trap finish EXIT" in script
    for signal in ("INT", "TERM", "HUP", "PIPE"):
        assert f"trap 'on_signal {signal} " in script


# parse, against real output


def test_a_healthy_worker() -> None:
    result = captured("01-all-ok")
    assert result.ok and result.complete
    assert [step.key for step in result.steps] == list(STEPS)
    assert all(step.status == "ok" for step in result.steps)
    assert result.leftovers == [] and result.problems == []
    assert result.run_id is not None and result.run_id.startswith(f"{MARKER}-")
    assert (result.address, result.gateway) == ("198.19.0.2/24", "198.19.0.1")
    assert ipaddress.IPv4Interface(result.address).network.subnet_of(TEST_RANGE)
    cnitool = result.step("cnitool-add")
    assert cnitool is not None and cnitool.message == "198.19.0.2/24 via 198.19.0.1"
    assert 0 < cnitool.seconds < 1
    assert result.seconds is not None and 0.3 < result.seconds < 2
    assert sum(step.seconds for step in result.steps) <= result.seconds


def test_limits_the_sandbox_cannot_enforce_are_reported_not_failed() -> None:
    result = captured("01-all-ok")
    assert result.not_enforced == {
        "cpu": "the cgroup v2 root has no cpu controller (cgroup.controllers: '')",
        "memory": "the cgroup v2 root has no memory controller (cgroup.controllers: '')",
    }
    run = result.step("ctr-run")
    assert run is not None and run.ok
    assert run.message.startswith("198.19.0.2/24 on eth0, ping 198.19.0.1 time=")
    assert "cpu-shares 512 NOT enforced: the cgroup v2 root has no cpu controller" in run.message
    assert "memory 64 MiB NOT enforced" in run.message
    without = captured("11-memory-limit-none")
    assert without.ok and without.not_enforced == {}
    run = without.step("ctr-run")
    assert run is not None and "NOT enforced" not in run.message


def test_cleanup_says_what_it_undid() -> None:
    cleanup = captured("01-all-ok").step("cleanup")
    assert cleanup is not None and cleanup.ok
    for done in (
        "cnitool del",
        "netns deleted",
        "bridge IlWorkBr0 deleted (this run created it)",
        "net.ipv4.ip_forward back to 0",
        "/var/lib/cni/networks/il_worker_br removed",
        "ipMasq's 3 NAT rules gone",
        "nothing left",
    ):
        assert done in cleanup.message
    kept = captured("02-all-ok-bridge-existed")
    assert kept.ok and kept.info["bridge-existed"] == "yes"
    cleanup = kept.step("cleanup")
    assert cleanup is not None and "bridge IlWorkBr0 deleted" not in cleanup.message


@pytest.mark.parametrize("name", ["08-no-jq-sed-fallback", "09-dynamic-busybox", "14-through-sudo"])
def test_other_healthy_hosts(name: str) -> None:
    result = captured(name)
    assert result.ok, format_steps(result)
    assert (result.address, result.gateway) == ("198.19.0.2/24", "198.19.0.1")


def test_busybox_missing() -> None:
    result = captured("03-busybox-missing")
    assert not result.ok and result.complete
    statuses = {step.key: step.status for step in result.steps}
    assert statuses == {
        "busybox": "failed",
        "cni-config": "ok",
        "netns": "ok",
        "cnitool-add": "ok",
        "rootfs": "skipped",
        "ctr-run": "skipped",
        "snapshot": "ok",
        "cleanup": "ok",
    }
    busybox = result.step("busybox")
    assert busybox is not None and busybox.message.endswith("install busybox-static")
    assert result.leftovers == []


def test_cnitool_missing() -> None:
    result = captured("04-cnitool-missing")
    assert not result.ok and result.complete and result.leftovers == []
    cnitool = result.step("cnitool-add")
    assert cnitool is not None and cnitool.status == "failed"
    assert cnitool.message == "cnitool not found at /opt/cni/bin/cnitool (the worker's networking.cnitool)"
    run = result.step("ctr-run")
    assert run is not None and run.status == "skipped" and "cnitool add" in run.message
    assert result.address is None


def test_containerd_down() -> None:
    result = captured("05-containerd-down")
    assert not result.ok and result.complete and result.leftovers == []
    for key in ("ctr-run", "snapshot"):
        step = result.step(key)
        assert step is not None and step.status == "failed"
        assert step.message.startswith(
            'containerd does not answer: ctr: failed to dial "/run/containerd/containerd.sock"'
        )
    run = result.step("ctr-run")
    assert run is not None and 2.5 < run.seconds < 5  # ctr's connect timeout is 3 s
    cleanup = result.step("cleanup")
    assert cleanup is not None and cleanup.ok


def test_bad_subnet() -> None:
    result = captured("06-bad-subnet")
    assert not result.ok and result.complete and result.leftovers == []
    cnitool = result.step("cnitool-add")
    assert cnitool is not None and cnitool.status == "failed"
    assert cnitool.message.endswith("failed (add): invalid CIDR address: 198.19.0.0/33")
    cleanup = result.step("cleanup")
    assert cleanup is not None and cleanup.ok and "bridge IlWorkBr0 deleted" in cleanup.message


def test_a_bridge_with_another_subnet() -> None:
    cnitool = captured("07-bridge-has-other-subnet").step("cnitool-add")
    assert cnitool is not None and cnitool.status == "failed"
    assert '"IlWorkBr0" already has an IP address different from 198.19.1.1/24' in cnitool.message
    assert cnitool.message.endswith("(bridge IlWorkBr0 exists with another subnet: give the worker's own subnet)")


def test_interrupted_while_a_container_runs() -> None:
    result = captured("10-sigterm-during-ctr-run")
    assert not result.ok and result.complete and result.leftovers == []
    run, snapshot, cleanup = result.step("ctr-run"), result.step("snapshot"), result.step("cleanup")
    assert run is not None and (run.status, run.message) == ("failed", "interrupted by SIGTERM")
    assert snapshot is not None and (snapshot.status, snapshot.message) == (
        "skipped",
        "not run: interrupted by SIGTERM",
    )
    assert cleanup is not None and cleanup.ok
    assert cleanup.message.startswith(f"container {result.run_id} removed (ctr run --rm had not)")


def test_connection_lost() -> None:
    result = captured("12-connection-lost-during-ctr-run")
    assert not result.ok and not result.complete and result.seconds is None
    assert [step.key for step in result.steps] == ["busybox", "cni-config", "netns", "cnitool-add", "rootfs"]
    assert result.problems == [
        "steps not reported: ctr run, snapshot, cleanup",
        "the script did not reach its end (interrupted, or the connection was lost)",
    ]


def test_not_root() -> None:
    result = captured("13-not-root")
    assert not result.ok and result.complete and result.leftovers == []
    for step in result.steps[:-1]:
        assert step.status == "skipped"
        assert step.message == (
            "not run: the smoke test needs root (it runs as uid 1000): run it as root or through sudo"
        )
    assert result.steps[-1].message == "nothing to undo; nothing left"


def test_leftovers_are_reported() -> None:
    result = captured("15-cnitool-del-fails")
    assert not result.ok and result.complete
    cid = result.info["cni-container-id"]
    assert result.leftovers[:3] == [
        "host-local allocation /var/lib/cni/networks/il_worker_br/198.19.0.2",
        "/var/lib/cni/networks/il_worker_br (created by this run)",
        f"cached CNI result /var/lib/cni/results/il_worker_br-{cid}-eth0",
    ]
    nat = result.leftovers[3:]
    assert len(nat) == 3 and all(rule.startswith("iptables -t nat rule: -A ") and cid in rule for rule in nat)
    cleanup = result.step("cleanup")
    assert cleanup is not None and cleanup.status == "failed"
    assert cleanup.message.startswith(
        "left behind: host-local allocation /var/lib/cni/networks/il_worker_br/198.19.0.2;"
    )
    assert all(step.ok for step in result.steps[:-1])


# parse, against output that went wrong


def test_no_output() -> None:
    for output in ([], ["sudo: a password is required"]):
        result = parse(output)
        assert not result.ok and not result.complete and result.steps == []
        assert result.problems == ["no smoke output: the script did not start (no shell, sudo refused, not root?)"]


def test_lines_not_of_the_script_are_ignored() -> None:
    lines = (CAPTURED / "01-all-ok.out").read_text().splitlines()
    noisy = ["Welcome to worker-1", *[line + "\r" for line in lines[:5]], "some noise", *lines[5:]]
    assert parse(noisy) == captured("01-all-ok")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (f"{MARKER} step cnitool-add maybe 12 x", "unknown status 'maybe'"),
        (f"{MARKER} step teleport ok 12 x", "unknown step 'teleport'"),
        (f"{MARKER} step busybox ok 1.5 x", "not a duration: '1.5'"),
        (f"{MARKER} step busybox", "too few fields"),
        (f"{MARKER} end soon ok", "not a duration: 'soon'"),
        (f"{MARKER} info", "no key"),
        (f"{MARKER} shrug", "unknown kind 'shrug'"),
    ],
)
def test_unreadable_lines_are_problems(line: str, problem: str) -> None:
    lines = (CAPTURED / "01-all-ok.out").read_text().splitlines()
    result = parse([*lines[:-1], line, lines[-1]])
    assert not result.ok
    assert result.problems == [f"unreadable line ({problem}): {line}"]


def test_a_step_reported_twice_is_a_problem() -> None:
    lines = (CAPTURED / "01-all-ok.out").read_text().splitlines()
    busybox = next(line for line in lines if " step busybox " in line)
    result = parse([*lines, busybox])
    assert not result.ok and result.problems == [f"unreadable line (step busybox reported twice): {busybox}"]


def test_steps_serialize_as_the_check_command_reports_them() -> None:
    """``pyinfra-iluvatar check --smoke --json`` writes each step's fields and ``ok``."""
    step = captured("04-cnitool-missing").step("cnitool-add")
    assert step is not None
    document = json.loads(json.dumps(step.__dict__ | {"ok": step.ok}))
    assert document == {
        "key": "cnitool-add",
        "name": "cnitool add",
        "status": "failed",
        "seconds": step.seconds,
        "message": "cnitool not found at /opt/cni/bin/cnitool (the worker's networking.cnitool)",
        "ok": False,
    }


# format_steps


def test_format_steps() -> None:
    lines = format_steps(captured("01-all-ok"))
    assert len(lines) == len(STEPS) + 1
    assert re.fullmatch(r"cnitool add   ok        0\.\d\d s  198\.19\.0\.2/24 via 198\.19\.0\.1", lines[3])
    assert re.fullmatch(r"total         ok        0\.\d\d s", lines[-1])
    assert [line[:11].strip() for line in lines[:-1]] == list(STEPS.values())


def test_format_steps_of_failures() -> None:
    lines = format_steps(captured("03-busybox-missing"))
    assert lines[0].startswith("busybox       failed    0.00 s  busybox not found")
    assert lines[4] == "rootfs        skipped      -    needs busybox"
    assert lines[-1].startswith("total         failed ")
    leftovers = format_steps(captured("15-cnitool-del-fails"))
    assert "leftover: host-local allocation /var/lib/cni/networks/il_worker_br/198.19.0.2" in leftovers
    cut = format_steps(captured("12-connection-lost-during-ctr-run"))
    assert cut[-1] == "problem: the script did not reach its end (interrupted, or the connection was lost)"
