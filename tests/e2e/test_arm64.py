"""arm64 (Jetson) workers on an emulated arm64 sandbox host: one amd64 and one arm64 host, the whole worker deploy in
one run, each host given its own architecture's release archives from one lock (repacked from Debian's amd64 and
arm64 packages); containerd, the CNI plugins and cnitool then run on the arm64 host under QEMU, and a second run
changes nothing. The arm64 host gets ``iluvatar_zfs: false`` from the sandbox inventory (Debian has no arm64
zfs-fuse, and no ZFS module loads in a sandbox host). Marked ``arm64``: ``pytest -m "not arm64"`` leaves it out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyinfra_iluvatar.sandbox import Sandbox
from pyinfra_iluvatar.sandbox.settings import STATE_DIR_ENV
from pyinfra_iluvatar.tests.e2e.test_worker import CONVERGED_COMMANDS, remote_commands, run_worker
from pyinfra_iluvatar.tests.support.lab import OLD, SANDBOX_WORKER, Lab, changed, failed_hosts, lock, running_lab
from pyinfra_iluvatar.tests.support.sandbox import SandboxSession, free_test_network

pytestmark = [pytest.mark.sandbox, pytest.mark.arm64]

AMD64, ARM64 = "worker-1", "worker-arm64-1"
ELF_MACHINE = {AMD64: "3e00", ARM64: "b700"}
"""``e_machine`` of an ELF binary (bytes 18-19, little-endian) for each host's architecture: x86-64, AArch64."""
RELEASE_BINARIES = ("/usr/local/bin/containerd", "/usr/local/bin/ctr", "/opt/cni/bin/bridge", "/opt/cni/bin/cnitool")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A sandbox of its own: one amd64 worker and one emulated arm64 worker, and the lab serving both."""
    with free_test_network() as (index, state_dir):
        box = Sandbox(state_dir, net=index, say=print)
        try:
            hosts = box.up(hosts=1, arm64_hosts=1)
            session = SandboxSession(box, hosts, env={**os.environ, STATE_DIR_ENV: str(state_dir)})
            with running_lab(session, tmp_path_factory.mktemp("lab"), clean_up=False) as lab:
                yield lab
        finally:
            box.down()


def test_the_sandbox_runs_an_arm64_host_beside_an_amd64_one(mixed: Lab) -> None:
    assert sorted(mixed.hosts) == [AMD64, ARM64]
    assert {host.name: host.arch for host in mixed.session.hosts} == {AMD64: "amd64", ARM64: "arm64"}
    assert mixed.ssh(ARM64, "uname -m").strip() == "aarch64"
    assert mixed.ssh(AMD64, "uname -m").strip() == "x86_64"
    assert mixed.ssh(ARM64, "systemctl is-system-running").strip() == "running"


def test_a_lock_without_arm64_stops_both_hosts_before_any_change(mixed: Lab, tmp_path: Path) -> None:
    amd64_only = lock(mixed.upstream, tmp_path / "amd64.lock.json", OLD, arches=("amd64",))
    arguments = mixed.data_arguments(OLD, **{**SANDBOX_WORKER, "iluvatar_lock_file": str(amd64_only)})
    result = mixed.session.pyinfra(*arguments, "deploys/worker.py")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{ARM64}: iluvatar_lock_file: this host is arm64: containerd {OLD} is locked for amd64, not arm64" in (
        output
    ), output[-3000:]
    for host in mixed.hosts:  # nothing was installed anywhere
        assert mixed.ssh(host, "ls /usr/local/bin/containerd /opt/cni/bin 2>&1 || true").count("No such file") == 2


def test_a_mixed_fleet_gets_each_architectures_release_in_one_run_and_converges(mixed: Lab) -> None:
    first = run_worker(mixed)
    assert first["returncode"] == 0 and not failed_hosts(first), first["stderr"][-3000:]
    for host in mixed.hosts:
        machines = mixed.ssh(host, "; ".join(f"od -An -tx1 -j18 -N2 {path} | tr -d ' '" for path in RELEASE_BINARIES))
        assert machines.split() == [ELF_MACHINE[host]] * len(RELEASE_BINARIES), host
        assert f"Version:  {OLD}" in mixed.ssh(host, "/usr/bin/ctr version")
        assert mixed.ssh(host, "systemctl is-active containerd").strip() == "active"
        # cnitool runs: with no arguments it prints its usage and exits 1.
        assert "cnitool" in mixed.ssh(host, "/opt/cni/bin/cnitool 2>&1 || true")
    assert changed(first).get("ZFS packages") == [AMD64]  # the arm64 host has no ZFS (module docstring)

    second = run_worker(mixed)
    assert second["returncode"] == 0, second["stderr"][-3000:]
    assert changed(second) == {}
    assert [remote_commands(second, host) for host in (AMD64, ARM64)] == [CONVERGED_COMMANDS] * 2


def test_the_facts_report_the_installed_releases_on_the_arm64_host(mixed: Lab) -> None:
    result = mixed.session.pyinfra(
        "--json",
        "--limit",
        ARM64,
        "fact",
        "pyinfra_iluvatar.facts.containerd.ContainerdVersion",
        "pyinfra_iluvatar.facts.cni.CniPlugins",
    )
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["pyinfra_iluvatar.facts.containerd.ContainerdVersion"][ARM64]["version"] == OLD
    plugins = facts["pyinfra_iluvatar.facts.cni.CniPlugins"][ARM64]
    assert plugins["cnitool"] is True
    assert {"bridge", "host-local", "loopback"} <= set(plugins["plugins"])
    assert all(plugin["exit_status"] == 0 for plugin in plugins["plugins"].values())
