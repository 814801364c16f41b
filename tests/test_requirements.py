"""Each readiness requirement's verdict from real output: a worker sandbox host read by ``check``, ready and broken.

The outputs were captured by ``tests/captured/readiness-sandbox/capture_readiness.py`` (its docstring says how):
the single combined fact ``check`` reads, on a host the worker deploy set up, first as it was, then after each
breakage.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyinfra.api.inventory import Inventory

from pyinfra_iluvatar import preflight
from pyinfra_iluvatar.facts.combined import Combined
from pyinfra_iluvatar.readiness.requirements import REQUIREMENTS, Verdict, applies, verdicts

CAPTURED = Path(__file__).parent / "captured" / "readiness-sandbox"


def judge(case: str, **changes: object) -> dict[str, Verdict]:
    """The verdicts for the captured ``case``, with the capture's data (``changes`` applied)."""
    recorded = json.loads((CAPTURED / "data.json").read_text())
    settings = {**recorded["data"], "iluvatar_lock_file": str(CAPTURED / "lock.json"), **changes}
    host = Inventory(([(recorded["host"], settings)], {})).get_host(recorded["host"])
    values, problems = preflight.host_values(host)
    assert not problems
    facts = Combined().process((CAPTURED / f"{case}.txt").read_text().splitlines())
    lock = preflight.load_lock(values["iluvatar_lock_file"])
    return {verdict.requirement: verdict for verdict in verdicts(host, values, facts, lock)}


def failing(found: dict[str, Verdict]) -> dict[str, str]:
    return {name: verdict.detail for name, verdict in found.items() if not verdict.ok}


def test_a_deployed_sandbox_worker_is_ready_but_for_its_cgroups() -> None:
    found = judge("ready")
    assert list(found) == [name for name in REQUIREMENTS if name != "docker"]  # containerd isolation only
    assert failing(found) == {
        "cgroups": "no cpu or memory controller in the cgroup v2 hierarchy (it has: none):"
        " containers run without the worker's CPU and memory limits"
    }
    assert found["zfs-pool"].detail.startswith("ilu-pool ONLINE, ")
    assert found["releases"].detail == "containerd 1.6.20, cni-plugins 1.1.1, cnitool 1.1.2, byte-identical"
    assert found["worker-config"].detail == "/etc/iluvatar/worker.json matches (interface host0)"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "containerd_stopped",
            {
                "containerd": "containerd does not answer: ctr: failed to dial",
                "containerd-plugins": "containerd does not answer",
            },
        ),
        (
            "cnitool_removed",
            {"cni": "/opt/cni/bin: cnitool missing", "releases": "cnitool files changed since install"},
        ),
        ("dataset_unmounted", {"zfs-dataset": "ilu-pool/containerd is not mounted"}),
        ("wrong_interface", {"worker-config": "does not match this host: networking.hardware_interface"}),
        ("binary_modified", {"releases": "containerd files changed since install: /usr/local/bin/ctr"}),
    ],
)
def test_each_breakage_is_named(case: str, expected: dict[str, str]) -> None:
    found = failing(judge(case))
    found.pop("cgroups")
    assert set(found) == set(expected), found
    for name, text in expected.items():
        assert text in found[name], found[name]


def test_settings_decide_what_is_checked_and_expected() -> None:
    assert "zfs-pool" not in judge("ready", iluvatar_zfs=False, iluvatar_snapshotter="native")
    assert (
        "snapshotter.v1.zfs is skip: path /var/lib/containerd/io.containerd.snapshotter.v1.zfs must be a zfs"
        in (
            failing(judge("ready", iluvatar_zfs_implementation="auto", iluvatar_snapshotter="zfs"))[
                "containerd-plugins"
            ]
        )
    )
    limits = failing(judge("ready", iluvatar_nofile_limit=4096))["limits"]
    assert "root soft nofile is 20000 (/etc/security/limits.d/90-iluvatar.conf), not 4096" in limits
    assert "containerd.service LimitNOFILE is 20000, not 4096" in limits
    assert failing(judge("ready", iluvatar_extra_packages=["htop"]))["packages"] == "not installed: htop"
    assert set(applies({"iluvatar_isolation": (), "iluvatar_zfs": False})) == {
        "packages",
        "limits",
        "worker-config",
        "cgroups",
    }
