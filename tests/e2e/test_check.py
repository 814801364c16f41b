"""``pyinfra-iluvatar check`` end to end on three sandbox hosts the worker deploy set up.

A deployed worker is ready (but for ``cgroups``: sandbox hosts get no cpu or memory controller, and ``check`` says
so) and passes ``--smoke``; each way of breaking a host is reported with its reason; ``check`` changes nothing on
any host, and ``--smoke`` leaves no namespace, link, container, snapshot, IPAM allocation or NAT rule behind. The
smoke network's subnet lies in 198.18.0.0/15, as every test address here must.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from pyinfra_iluvatar.tests.support.lab import OLD, SANDBOX_WORKER, Lab
from pyinfra_iluvatar.tests.support.sandbox import BIN

pytestmark = pytest.mark.sandbox

SMOKE_SUBNET = "198.19.9.0/24"
MARKER = "/run/pyinfra-iluvatar-check-marker"
UNCHANGED = (
    "dpkg-query -W -f '${Package} ${Version} ${db:Status-Status}\\n' | sort;"
    " systemctl list-units --all --no-legend --plain | awk '{print $1, $3, $4}' | sort;"
    f" find /etc /usr/local /opt /var/lib -xdev -newer {MARKER} 2>/dev/null | sort"
)
NETWORK_STATE = (
    "ip netns list; ip -o link | awk '{print $2}'; ls -R /var/lib/cni 2>/dev/null; iptables -t nat -S;"
    " ctr containers ls -q; ctr snapshots --snapshotter native ls | awk '{print $1}'"
)
# (what breaks the host, what repairs it, the requirement that must fail, text its reason must hold)
BREAKAGES = [
    ("systemctl stop containerd", "systemctl start containerd", "containerd", "containerd does not answer"),
    (
        "mv /opt/cni/bin/cnitool /root/cnitool",
        "mv /root/cnitool /opt/cni/bin/cnitool",
        "cni",
        "/opt/cni/bin: cnitool missing",
    ),
    ("zfs umount ilu-pool/containerd", "zfs mount ilu-pool/containerd", "zfs-dataset", "is not mounted"),
    (
        'cp /etc/iluvatar/worker.json /root/ && sed -i \'s/"host0"/"eth0"/\' /etc/iluvatar/worker.json',
        "mv /root/worker.json /etc/iluvatar/worker.json",
        "worker-config",
        "does not match this host: networking.hardware_interface",
    ),
    (
        "cp -p /usr/local/bin/ctr /root/ctr && echo x >> /usr/local/bin/ctr",
        "mv /root/ctr /usr/local/bin/ctr",
        "releases",
        "containerd files changed since install: /usr/local/bin/ctr",
    ),
]


@pytest.fixture(scope="module")
def deployed(lab: Lab) -> Iterator[Lab]:
    """The three hosts with the whole worker deployed."""
    report = lab.deploy("deploys/worker.py", **SANDBOX_WORKER)
    assert report["returncode"] == 0, report["stderr"][-4000:]
    yield lab


def check(lab: Lab, *options: str) -> tuple[int, dict[str, Any]]:
    """``pyinfra-iluvatar check --json`` on the sandbox with the lab's data: exit status and document."""
    data = lab.data_arguments(OLD, **SANDBOX_WORKER, iluvatar_smoke_subnet=SMOKE_SUBNET)
    argv = [str(BIN / "pyinfra-iluvatar"), "check", str(lab.session.inventory), "--json", *data, *options]
    result = subprocess.run(argv, capture_output=True, text=True, env=lab.session.env, timeout=300, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return result.returncode, document


def failures(document: dict[str, Any], host: str) -> dict[str, str]:
    requirements = document["hosts"][host]["requirements"]
    return {name: found["detail"] for name, found in requirements.items() if not found["ok"]}


def test_a_deployed_worker_is_ready_but_for_the_cgroups_the_sandbox_lacks(deployed: Lab) -> None:
    for host in deployed.hosts:
        deployed.ssh(host, f"touch {MARKER}")
    before = {host: deployed.ssh(host, UNCHANGED) for host in deployed.hosts}
    status, document = check(deployed)
    assert status == 1 and document["format"] == 1 and document["ready"] == 0
    for host in deployed.hosts:
        assert list(failures(document, host)) == ["cgroups"]
        assert "no cpu or memory controller" in failures(document, host)["cgroups"]
    status, document = check(deployed, "--ignore", "cgroups")
    assert status == 0 and document["ready"] == 3 and document["ignored"] == ["cgroups"]
    assert {host: deployed.ssh(host, UNCHANGED) for host in deployed.hosts} == before  # check changed nothing


def test_the_smoke_test_starts_a_function_container_and_leaves_nothing(deployed: Lab) -> None:
    before = {host: deployed.ssh(host, NETWORK_STATE) for host in deployed.hosts}
    status, document = check(deployed, "--smoke", "--ignore", "cgroups")
    assert status == 0, json.dumps(document, indent=2)
    for host in deployed.hosts:
        smoke = document["hosts"][host]["smoke"]
        assert smoke["ok"] and smoke["leftovers"] == []
        steps = {step["step"]: step for step in smoke["steps"]}
        assert steps["cnitool-add"]["message"].startswith("198.19.9.")
        assert "ping 198.19.9.1" in steps["ctr-run"]["message"]
        assert "cpu-shares 512 NOT enforced" in steps["ctr-run"]["message"]  # the cgroups row's reason, seen live
    assert {host: deployed.ssh(host, NETWORK_STATE) for host in deployed.hosts} == before


def test_each_breakage_is_reported_with_its_reason(deployed: Lab) -> None:
    hosts = deployed.hosts
    for start in range(0, len(BREAKAGES), len(hosts)):
        batch = list(zip(hosts, BREAKAGES[start : start + len(hosts)], strict=False))
        for host, (breaking, _, _, _) in batch:
            deployed.ssh(host, breaking)
        try:
            status, document = check(deployed, "--ignore", "cgroups")
        finally:
            for host, (_, repairing, _, _) in batch:
                deployed.ssh(host, repairing)
        assert status == 1
        for host, (_, _, requirement, reason) in batch:
            found = failures(document, host)
            assert requirement in found and reason in found[requirement], found
            assert not document["hosts"][host]["ready"]
    status, document = check(deployed, "--ignore", "cgroups")
    assert status == 0, json.dumps(document, indent=2)
