"""The whole worker deploy end to end on three sandbox hosts: first as a sudoer on one host, then as root on all
three in parallel; the hosts' state checked over SSH; a second run that changes and restarts nothing; a host
rebooted that comes back with its pool imported and its dataset mounted before containerd starts.

Sandbox hosts have no ZFS kernel module, so ZFS is zfs-fuse and containerd's snapshotter ``native`` (zfs-fuse's
``fuse.zfs`` mounts are refused by containerd's zfs snapshotter: README, "What runs where").
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from pyinfra_iluvatar.deploys.zfs import SNAPSHOTTER_PATH
from pyinfra_iluvatar.tests.support.lab import OLD, SANDBOX_WORKER, Lab, changed

pytestmark = pytest.mark.sandbox

SUDOER = "deployer"
CONVERGED_COMMANDS = 1
"""Remote commands per host of a converged worker run (pyinfra -vv): pre-flight's read, the read-ahead with it."""


def run_worker(lab: Lab, *options: str, hosts: list[str] | None = None) -> dict[str, Any]:
    """One run of the worker deploy (``--json``, ``-vv``) on ``hosts`` (default all): report, exit code, log."""
    limit = ["--limit", ",".join(hosts)] if hosts else []
    arguments = lab.data_arguments(OLD, **SANDBOX_WORKER)
    result = lab.session.pyinfra("--json", "-vv", "--parallel", "3", *limit, *options, *arguments, "deploys/worker.py")
    report: dict[str, Any] = json.loads(result.stdout) if result.stdout.strip() else {"results": None}
    report["returncode"], report["stderr"] = result.returncode, result.stderr
    return report


def remote_commands(report: dict[str, Any], host: str) -> int:
    """
    How many commands pyinfra ran on ``host`` (``-vv`` prints each as ``[host] >>> …``, the name padded to the
    longest host name's width).
    """
    return len(re.findall(rf"^\[{re.escape(host)}\]\s+>>> ", report["stderr"], flags=re.MULTILINE))


def started_at(lab: Lab, host: str) -> str:
    return lab.ssh(host, "systemctl show -p ExecMainStartTimestampMonotonic containerd")


def make_sudoer(lab: Lab, host: str) -> None:
    """A non-root user on ``host`` who logs in with the sandbox's key and may sudo without a password."""
    lab.ssh(
        host,
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q sudo >/dev/null"
        f" && id {SUDOER} >/dev/null 2>&1 || useradd -m -s /bin/bash {SUDOER}"
        f" && install -d -m 700 -o {SUDOER} -g {SUDOER} /home/{SUDOER}/.ssh"
        f" && install -m 600 -o {SUDOER} -g {SUDOER} /root/.ssh/authorized_keys /home/{SUDOER}/.ssh/"
        f" && echo '{SUDOER} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/{SUDOER} && chmod 440 /etc/sudoers.d/{SUDOER}",
    )


def test_the_worker_deploy_as_a_sudoer(lab: Lab) -> None:
    """A lab that logs in as a sudoer, not root: ``--sudo`` (or ``_sudo: True`` in data) and ``ssh_user``."""
    host = lab.hosts[2]
    lab.ssh(host, "apt-get update -q >/dev/null")
    make_sudoer(lab, host)
    report = run_worker(lab, "--sudo", f"--data=ssh_user={SUDOER}", hosts=[host])
    assert report["returncode"] == 0, report["stderr"][-4000:]
    assert changed(report)["Worker config"] == [host]
    assert lab.ssh(host, "zfs get -H -o value mounted ilu-pool/containerd").strip() == "yes"
    assert "Version:  1.6.20" in lab.ssh(host, "/usr/bin/ctr version")
    again = run_worker(lab, "--sudo", f"--data=ssh_user={SUDOER}", hosts=[host])
    assert again["returncode"] == 0 and changed(again) == {}, again["stderr"][-4000:]


def test_the_whole_worker_on_three_hosts(lab: Lab) -> None:
    report = run_worker(lab)
    assert report["returncode"] == 0, report["stderr"][-4000:]
    ops = changed(report)
    fresh = sorted(lab.hosts[:2])  # the third host was deployed by the sudoer above: nothing left to change
    assert sorted(ops["Worker config"]) == fresh
    assert sorted(ops["containerd restarted: its zfs snapshotter's dataset is mounted"]) == fresh
    for host in lab.hosts:
        assert lab.ssh(host, "zpool list -H -o health ilu-pool").strip() == "ONLINE"
        mount = lab.ssh(host, "zfs get -H -o value mounted,mountpoint ilu-pool/containerd").split()
        assert mount == ["yes", SNAPSHOTTER_PATH]
        assert lab.ssh(host, f"findmnt -n -o SOURCE {SNAPSHOTTER_PATH}").strip() == "ilu-pool/containerd"
        assert "Version:  1.6.20" in lab.ssh(host, "/usr/bin/ctr version")
        assert {"bridge", "host-local", "loopback", "cnitool"} <= set(lab.ssh(host, "ls /opt/cni/bin").split())
        assert re.search(r"snapshotter\.v1\s+native\s+\S+\s+ok", lab.ssh(host, "ctr plugins ls"))
        config = json.loads(lab.ssh(host, "cat /etc/iluvatar/worker.json"))
        assert config["name"] == host
        assert config["networking"]["hardware_interface"] == "host0"
        assert config["networking"]["cnitool"] == "/opt/cni/bin/cnitool"
        assert config["address"] == lab.ssh(host, "ip -o -4 addr show dev host0").split()[3].split("/")[0]
        assert config["container_resources"]["snapshotter"] == "native"
        assert lab.ssh(host, "stat -c %a /etc/iluvatar/worker.json").strip() == "600"
        limits = lab.ssh(host, "cat /etc/security/limits.d/90-iluvatar.conf")
        assert "root        hard    nofile          20000" in limits


def test_a_second_run_changes_and_restarts_nothing(lab: Lab) -> None:
    before = {host: started_at(lab, host) for host in lab.hosts}
    report = run_worker(lab)
    assert report["returncode"] == 0, report["stderr"][-4000:]
    assert changed(report) == {}
    assert {host: started_at(lab, host) for host in lab.hosts} == before
    for host in lab.hosts:  # a PAM limit setrlimit refuses could refuse logins: each run above logged in afresh
        assert remote_commands(report, host) == CONVERGED_COMMANDS, report["stderr"][-4000:]


def test_a_rebooted_host_imports_its_pool_before_containerd_starts(lab: Lab) -> None:
    host = lab.hosts[0]
    lab.session.sandbox.stop_host(host)
    lab.session.sandbox.start_host(host)
    assert lab.ssh(host, "systemctl is-active iluvatar-zpool-ilu-pool containerd").split() == ["active", "active"]
    assert lab.ssh(host, "zfs get -H -o value mounted ilu-pool/containerd").strip() == "yes"
    imported = lab.ssh(host, "systemctl show -p ActiveEnterTimestampMonotonic --value iluvatar-zpool-ilu-pool")
    started = lab.ssh(host, "systemctl show -p ExecMainStartTimestampMonotonic --value containerd")
    assert 0 < int(imported) <= int(started)
    report = run_worker(lab, hosts=[host])
    assert report["returncode"] == 0 and changed(report) == {}, report["stderr"][-4000:]
