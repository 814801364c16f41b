"""Each readiness requirement's verdict from real output: a worker sandbox host read by ``check``, ready and broken.

The outputs were captured by ``tests/captured/readiness-sandbox/capture_readiness.py`` (its docstring says how):
the single combined fact ``check`` reads, on a host the worker deploy set up, first as it was, then after each
breakage. Those captures predate the GPU probes: ``gpu_probes.txt`` is their real output on the same sandbox host
(no ``nvidia-smi``, no NVIDIA device), captured afterwards and appended to each case. A GPU host is played by
replacing it with the ``tests/facts/nvidia.*`` fixtures (each says where its output came from).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api.inventory import Inventory

from pyinfra_iluvatar import preflight
from pyinfra_iluvatar.facts.combined import Combined
from pyinfra_iluvatar.operations.nvidia import CONTAINERD_DROP_IN, TOOLKIT_PACKAGES, TOOLKIT_VERSION
from pyinfra_iluvatar.readiness.requirements import (
    BUILD_REQUIREMENTS,
    GPU_REQUIREMENTS,
    REQUIREMENTS,
    Verdict,
    applies,
    probes,
    verdicts,
)

CAPTURED = Path(__file__).parent / "captured" / "readiness-sandbox"


GPU_FIXTURES = Path(__file__).parent / "facts"


def gpu_sections(gpus: str, devices: str) -> list[str]:
    """The GPU probes' section of the check's output on a host whose nvidia-smi and PCI bus answer as fixtures."""
    lines = []
    for name, fact, fixture in (("gpus", "NvidiaGpus", gpus), ("devices", "NvidiaDevices", devices)):
        output = json.loads((GPU_FIXTURES / f"nvidia.{fact}" / f"{fixture}.json").read_text())["output"]
        lines += [f"--- pyinfra-iluvatar combined: {name} pyinfra_iluvatar.facts.nvidia.{fact} e30= ---", *output]
        lines.append("--- pyinfra-iluvatar combined: status 0 ---")
    return lines


def judge(case: str, gpu: list[str] | None = None, **changes: object) -> dict[str, Verdict]:
    """
    The verdicts for the captured ``case``, with the capture's data (``changes`` applied); the GPU probes answer as
    on the sandbox host, or as ``gpu`` (:func:`gpu_sections`).
    """
    recorded = json.loads((CAPTURED / "data.json").read_text())
    settings = {**recorded["data"], "iluvatar_lock_file": str(CAPTURED / "lock.json"), **changes}
    host = Inventory(([(recorded["host"], settings)], {})).get_host(recorded["host"])
    values, problems = preflight.host_values(host)
    assert not problems
    output = (CAPTURED / f"{case}.txt").read_text().splitlines()
    if "pyinfra_iluvatar.facts.nvidia.NvidiaGpus" not in "\n".join(output):
        output += gpu if gpu is not None else (CAPTURED / "gpu_probes.txt").read_text().splitlines()
    facts = Combined().process(output)
    lock = preflight.load_lock(values["iluvatar_lock_file"])
    return {verdict.requirement: verdict for verdict in verdicts(host, values, facts, lock)}


def failing(found: dict[str, Verdict]) -> dict[str, str]:
    return {name: verdict.detail for name, verdict in found.items() if not verdict.ok}


def test_a_deployed_sandbox_worker_is_ready_but_for_its_cgroups() -> None:
    found = judge("ready")
    # containerd isolation only; iluvatar_gpu auto on a host without an NVIDIA GPU: no GPU requirement
    assert list(found) == [
        name
        for name in REQUIREMENTS
        if name != "docker" and not name.startswith("gpu-") and name not in BUILD_REQUIREMENTS
    ]
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
    assert set(applies({"iluvatar_isolation": (), "iluvatar_zfs": False, "iluvatar_gpu": "false"})) == {
        "packages",
        "limits",
        "worker-config",
        "cgroups",
    }


def test_a_gpu_required_on_a_host_without_one_fails_every_gpu_requirement() -> None:
    found = failing(judge("ready", iluvatar_gpu=True))
    for name in GPU_REQUIREMENTS:
        assert found[name].startswith("iluvatar_gpu = True (host data) needs an NVIDIA GPU: no NVIDIA GPU: "), found
    assert "gpu-driver" not in judge("ready", iluvatar_gpu=False)


def test_a_gpu_host_without_the_gpu_part_deployed() -> None:
    found = judge("ready", gpu=gpu_sections("h200_one_gpu", "h200_projected_from_nvidia_smi_q"))
    assert found["gpu-driver"].ok and found["gpu-driver"].detail.startswith("NVIDIA driver 580.159.04 serves 1 GPU(s)")
    assert found["gpu-persistence"].ok and found["gpu-persistence"].detail == "on for all 1 GPU(s)"
    toolkit = ", ".join(f"{name} (not installed)" for name in TOOLKIT_PACKAGES)
    assert failing(found) == {
        "gpu-toolkit": f"not at {TOOLKIT_VERSION}: {toolkit}",
        "gpu-runtimes": f"{CONTAINERD_DROP_IN} is missing",
        # worker.json was written for a host without GPUs
        "worker-config": "/etc/iluvatar/worker.json does not match this host: container_resources.gpu_resource.count,"
        " container_resources.gpu_resource.memory_mb",
        "cgroups": found["cgroups"].detail,
    }


def test_persistence_off_names_each_gpu() -> None:
    found = failing(judge("ready", gpu=gpu_sections("six_gtx1070", "h200_projected_from_nvidia_smi_q")))
    assert found["gpu-persistence"].startswith("persistence mode is off for 6 of 6 GPU(s): 0 (GPU-e511a7b2-")


# --- build hosts: the build user's tools (facts from real output, tests/facts/build.*) ---------------------------


def fact(name: str) -> Any:
    return json.loads((GPU_FIXTURES / name).read_text())["fact"]


def judge_build(
    tools: str, checkout: str | None = None, engine: str | None = "28.2.2", **data: object
) -> dict[str, Verdict]:
    settings = {"iluvatar_role": "build", "iluvatar_ansible_venv": "/tmp/ilu-venv", **data}
    host = Inventory(([("builder-1", settings)], {})).get_host("builder-1")
    values, problems = preflight.host_values(host)
    assert not problems
    names = ["build-essential", "pkg-config", "libssl-dev", "protobuf-compiler", "make", "git", "curl"]
    names += ["ca-certificates", "python3-venv", "podman", "uidmap", "slirp4netns", "fuse-overlayfs"]
    facts = {
        "packages": {name: ["1"] for name in names},
        "build_tools": fact(f"build.BuildTools/{tools}.json"),
        "engine": engine,
        "checkout": fact(f"build.GitCheckout/{checkout}.json") if checkout else None,
    }
    assert [name for name, _, _ in probes(values)][:3] == ["packages", "build_tools", "engine"]
    return {verdict.requirement: verdict for verdict in verdicts(host, values, facts, preflight.load_lock("none"))}


def test_a_build_host_is_checked_for_its_tools_only() -> None:
    found = judge_build("rustup_toolchain_ansible_venv", iluvatar_cross_version="", iluvatar_build_engine="podman")
    assert list(found) == ["build-packages", "rust", "engine", "ansible"]
    assert failing(found) == {}
    assert found["rust"].detail == "rustc 1.95.0, cargo 1.95.0 (rustup, default stable-x86_64-unknown-linux-gnu)"
    assert found["ansible"].detail == "ansible 10.7.0 (ansible-core 2.17.14) in /tmp/ilu-venv"


def test_a_build_host_missing_what_its_data_asks_for() -> None:
    found = failing(
        judge_build(
            "rustup_toolchain_no_venv",
            engine=None,
            iluvatar_rust_toolchain="1.85.0",
            iluvatar_build_checkout="/tmp/pyinfra-iluvatar-git/co",
            iluvatar_build_repository="https://github.com/COS-IN/iluvatar-faas.git",
            iluvatar_build_ref="v1",
        )
    )
    assert found == {
        "rust": "root's default toolchain is stable-x86_64-unknown-linux-gnu, not 1.85.0",
        "cross": "root has no cross",
        "engine": "docker does not answer for root (is it in the docker group, is dockerd running?)",
        "ansible": "ansible is not installed in /tmp/ilu-venv, not 10.7.0",
        "build-checkout": "/tmp/pyinfra-iluvatar-git/co is not a git checkout",
    }


def test_a_checkout_behind_its_ref_or_not_built() -> None:
    behind = failing(
        judge_build(
            "cross_installed_projected",
            "checkout_asked_for_a_tag",
            iluvatar_build_ref="v1",
            iluvatar_build_checkout="/tmp/pyinfra-iluvatar-git/co",
            iluvatar_build_repository="https://x.example/r.git",
        )
    )
    assert behind["build-checkout"].startswith("/tmp/pyinfra-iluvatar-git/co is at 70f97ea38cfd, v1 is 7d2396253438")
    built = judge_build(
        "cross_installed_projected",
        "checkout_at_master_built",
        iluvatar_build_target="release",
        iluvatar_build_checkout="/tmp/pyinfra-iluvatar-git/co",
        iluvatar_build_repository="https://x.example/r.git",
    )
    assert built["build-checkout"].ok and built["build-checkout"].detail.endswith("release built")
    assert built["cross"].detail == "cross 0.2.5 (/root/.cargo/bin/cross)"
