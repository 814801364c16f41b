"""Pre-flight across hosts: real pyinfra runs (``--dry``) of this package's deploy files on ``@fake`` hosts.

pyinfra's ``@fake`` connector answers each command from the inventory's ``fake_responses`` and runs nothing, so a
fleet of amd64 and arm64 hosts fits in one test. Pre-flight reads each host in one ``Combined`` fact; its answer here
is framed the way ``Combined`` frames it, from fact fixtures: the host probe's real output captured on a sandbox host
(``tests/facts/resources.HostResources/sandbox_host_without_default_route.json``, its ``uname -m`` line set to
``aarch64`` for an arm64 host), and for the GPU probes the ``tests/facts/nvidia.*`` fixtures (each says where its
output came from). The same checks on real sandbox hosts over SSH, with nothing changed on any host, are in
``tests/e2e/test_bad_input.py``.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api.inventory import Inventory

from pyinfra_iluvatar import preflight
from pyinfra_iluvatar.releases import lockfile
from pyinfra_iluvatar.releases.components import CNI_PLUGINS, CONTAINERD, GO, GithubSource

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = Path(sys.executable).parent / "pyinfra"
SHA = "a" * 64
PROBE = json.loads((ROOT / "tests/facts/resources.HostResources/sandbox_host_without_default_route.json").read_text())


def github_artifact(source: GithubSource, tag: str, filename: str) -> lockfile.Artifact:
    path = source.mirror_path(tag, filename)
    return lockfile.Artifact(filename, f"https://{path}", SHA, path)


def write_lock(path: Path, arches: tuple[str, ...] = ("amd64",), go: bool = True) -> Path:
    """A lock file of the shape ``pyinfra-iluvatar lock`` writes, for ``arches`` (sha256 are placeholders)."""
    components = {
        "containerd": lockfile.LockedComponent(
            "containerd",
            "1.7.24",
            "v1.7.24",
            "latest",
            {
                arch: github_artifact(CONTAINERD.source, "v1.7.24", CONTAINERD.filename("1.7.24", arch))
                for arch in arches
            },
        ),
        "cni-plugins": lockfile.LockedComponent(
            "cni-plugins",
            "1.6.0",
            "v1.6.0",
            "latest",
            {
                arch: github_artifact(CNI_PLUGINS.source, "v1.6.0", CNI_PLUGINS.filename("1.6.0", arch))
                for arch in arches
            },
        ),
        "cnitool": lockfile.LockedComponent("cnitool", "1.2.3", "v1.2.3", "latest", {}),
    }
    if go:
        components["go"] = lockfile.LockedComponent(
            "go",
            "1.23.4",
            "go1.23.4",
            "latest",
            {
                arch: lockfile.Artifact(
                    GO.filename("1.23.4", arch),
                    f"https://go.dev/dl/{GO.filename('1.23.4', arch)}",
                    SHA,
                    GO.mirror_path(GO.filename("1.23.4", arch)),
                )
                for arch in arches
            },
        )
    path.write_text(lockfile.to_json(lockfile.Lock(components)))
    return path


NVIDIA_FACTS = ROOT / "tests/facts"
NO_NVIDIA_PCI = "debian12_vm_no_nvidia"


def fixture_output(fact: str, fixture: str) -> list[str]:
    output: list[str] = json.loads((NVIDIA_FACTS / fact / f"{fixture}.json").read_text())["output"]
    return output


def combined(*sections: tuple[str, str, list[str], str]) -> list[str]:
    """The output of a ``Combined`` fact: per probe (name, fact path, its command's output, exit status)."""
    lines = []
    arguments = base64.urlsafe_b64encode(b"{}").decode()
    for name, fact, output, status in sections:
        lines += [f"--- pyinfra-iluvatar combined: {name} {fact} {arguments} ---", *output]
        lines.append(f"--- pyinfra-iluvatar combined: status {status} ---")
    return lines


def fake_host(
    name: str, machine: str = "x86_64", gpus: str | None = None, pci: str = NO_NVIDIA_PCI, **data: Any
) -> tuple[str, dict[str, Any]]:
    """
    A fake worker whose probe answers like a sandbox host of ``machine``; interface host0 (no default route). Its
    ``nvidia-smi`` answers as the ``nvidia.NvidiaGpus`` fixture ``gpus`` (``None``: not installed), its PCI bus as
    the ``nvidia.NvidiaDevices`` fixture ``pci``.
    """
    probe = [machine if line == "x86_64" else line for line in PROBE["output"]]
    smi: tuple[str, str, list[str], str] = ("gpus", "pyinfra_iluvatar.facts.nvidia.NvidiaGpus", [], "missing")
    if gpus is not None:
        smi = ("gpus", "pyinfra_iluvatar.facts.nvidia.NvidiaGpus", fixture_output("nvidia.NvidiaGpus", gpus), "0")
    answer = combined(
        ("resources", "pyinfra_iluvatar.facts.resources.HostResources", probe, "0"),
        smi,
        ("devices", "pyinfra_iluvatar.facts.nvidia.NvidiaDevices", fixture_output("nvidia.NvidiaDevices", pci), "0"),
    )
    host_data = {
        "fake_responses": {"pyinfra-iluvatar combined: resources": answer},
        "fake_delay": 0,
        "iluvatar_hardware_interface": "host0",
    }
    return f"@fake/{name}", {**host_data, **data}


def run(
    tmp_path: Path, hosts: list[tuple[str, dict[str, Any]]], *deploys: str, options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``pyinfra --dry [OPTIONS] INVENTORY DEPLOYS`` in ``tmp_path`` (where the default lock file name resolves)."""
    inventory = tmp_path / "inventory.py"
    hosts_json = json.dumps(json.dumps(hosts))
    inventory.write_text(f"import json\nworkers = [tuple(host) for host in json.loads({hosts_json})]\n")
    argv = [str(PYINFRA), "--dry", *options, str(inventory), *(str(ROOT / "deploys" / deploy) for deploy in deploys)]
    return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)


def assert_refused(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "pre-flight found bad input" in output, output
    assert "Traceback" not in output and "preflight.py line" not in output and "data.py line" not in output
    for text in expected:
        assert text in output, output
    return output


def test_an_arm64_host_missing_from_the_lock_stops_every_host(tmp_path: Path) -> None:
    write_lock(tmp_path / "iluvatar.lock.json", arches=("amd64",))
    hosts = [fake_host("worker-1"), fake_host("jetson-1", "aarch64")]
    output = assert_refused(
        run(tmp_path, hosts, "containerd.py"),
        "bad input on 1 of 2 host(s); nothing was changed on any host",
        "@fake/jetson-1: iluvatar_lock_file: this host is arm64: containerd 1.7.24 is locked for amd64, not arm64",
    )
    assert "@fake/worker-1:" not in output


def test_every_bad_host_and_key_is_listed_in_one_message(tmp_path: Path) -> None:
    write_lock(tmp_path / "iluvatar.lock.json")
    hosts = [
        fake_host("worker-1", iluvatar_cni_bin_dir="/opt/cni/bin/..", iluvatar_snapshotter="banana"),
        fake_host("worker-2", iluvatar_mirror="http://"),
        fake_host("worker-3"),
    ]
    assert_refused(
        run(tmp_path, hosts, "worker.py"),
        "bad input on 2 of 3 host(s)",
        "@fake/worker-1: iluvatar_snapshotter = 'banana' (host data) is not valid",
        "@fake/worker-1: iluvatar_cni_bin_dir = '/opt/cni/bin/..' (host data) is not valid: has a '..' component",
        "@fake/worker-2: iluvatar_mirror = 'http://' (host data) is not valid: has no valid host name",
    )


@pytest.mark.parametrize("key", ["sparc", "x86_64"])
def test_a_prebuilt_cnitool_map_without_the_host_architecture(tmp_path: Path, key: str) -> None:
    write_lock(tmp_path / "iluvatar.lock.json", arches=("amd64", "arm64"), go=False)
    prebuilt = {key: {"url": "https://mirror.lab.example/cnitool", "sha256": SHA}}
    assert_refused(
        run(tmp_path, [fake_host("worker-1", iluvatar_cnitool_prebuilt=prebuilt)], "cni.py"),
        f"iluvatar_cnitool_prebuilt = {{'{key}': ",
        f"{key!r} is not a Debian architecture name",
    )


def test_a_prebuilt_cnitool_for_amd64_only_refuses_the_arm64_host(tmp_path: Path) -> None:
    write_lock(tmp_path / "iluvatar.lock.json", arches=("amd64", "arm64"), go=False)
    prebuilt = {"amd64": {"url": "https://mirror.lab.example/cnitool", "sha256": SHA}}
    hosts = [fake_host("worker-1"), fake_host("jetson-1", "aarch64")]
    hosts = [(name, {**host_data, "iluvatar_cnitool_prebuilt": prebuilt}) for name, host_data in hosts]
    output = assert_refused(
        run(tmp_path, hosts, "cni.py"),
        "@fake/jetson-1: iluvatar_cnitool_prebuilt = ",
        "has no entry for this host's architecture arm64 (it has amd64)",
    )
    assert "@fake/worker-1:" not in output


def test_a_lock_needs_only_the_components_the_run_uses(tmp_path: Path) -> None:
    write_lock(tmp_path / "iluvatar.lock.json", go=False)
    prebuilt = {"amd64": {"url": "https://mirror.lab.example/cnitool", "sha256": SHA}}
    with_prebuilt = run(tmp_path, [fake_host("worker-1", iluvatar_cnitool_prebuilt=prebuilt)], "cni.py")
    assert with_prebuilt.returncode == 0, with_prebuilt.stderr
    assert_refused(
        run(tmp_path, [fake_host("worker-1")], "containerd.py", "cni.py"),
        "@fake/worker-1: iluvatar_lock_file: ",
        "'go'",
    )


def test_a_download_cache_that_is_a_file(tmp_path: Path) -> None:
    write_lock(tmp_path / "iluvatar.lock.json")
    host = fake_host("worker-1", iluvatar_download="controller", iluvatar_download_cache="/etc/passwd")
    assert_refused(
        run(tmp_path, [host], "containerd.py"),
        "iluvatar_download_cache = '/etc/passwd' (host data) is a file, not a directory",
    )


def test_an_unknown_key_is_a_warning_naming_the_closest_key(tmp_path: Path) -> None:
    write_lock(tmp_path / "iluvatar.lock.json")
    result = run(tmp_path, [fake_host("worker-1", iluvatar_nofile_limt=5)], "containerd.py")
    assert result.returncode == 0, result.stderr
    assert "unknown data key iluvatar_nofile_limt (host data) is ignored; did you mean iluvatar_nofile_limit?" in (
        result.stdout + result.stderr
    )


def test_pre_flight_reads_ahead_in_its_own_round_trip_where_the_settings_tell_what_to_read(tmp_path: Path) -> None:
    """
    The worker's reads join pre-flight's read of what the host is; a host whose reads need its architecture
    (Docker's repository, by arch) has them read after it.
    """
    write_lock(tmp_path / "iluvatar.lock.json")
    settings = {"iluvatar_zfs_implementation": "zfs-fuse", "iluvatar_snapshotter": "native"}
    hosts = [fake_host("plain", **settings), fake_host("docker", **settings, iluvatar_isolation="docker")]
    result = run(tmp_path, hosts, "worker.py", options=("-vv",))
    output = result.stdout + result.stderr
    assert "pre-flight found bad input" not in output and "Traceback" not in output, output
    for name, ahead in (("plain", True), ("docker", False)):  # (the fake docker host fails later: no distribution)
        # -vv prints each command after `[host] >>> `, over as many lines as it has, up to the next host's line.
        chunks = re.split(r"^(?=\s*\[@fake/)", output, flags=re.MULTILINE)
        commands = [chunk.split(">>> ", 1)[1] for chunk in chunks if re.match(rf"\s*\[@fake/{name}\]\s+>>> ", chunk)]
        assert "combined: resources" in commands[0], output
        assert ("combined: p0" in commands[0]) is ahead, commands[0]
        assert any("combined: p0" in command for command in commands), output


# --- GPU hosts: iluvatar_gpu against what nvidia-smi and the PCI bus show -------------------------------------------


def test_gpu_auto_on_a_host_without_an_nvidia_gpu_does_no_gpu_work(tmp_path: Path) -> None:
    write_lock(tmp_path / "iluvatar.lock.json")
    result = run(tmp_path, [fake_host("worker-1")], "gpu.py")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "NVIDIA" not in output and "nvidia-persistenced" not in output, output


def test_gpu_true_without_an_nvidia_gpu_stops_every_host(tmp_path: Path) -> None:
    write_lock(tmp_path / "iluvatar.lock.json")
    output = assert_refused(
        run(tmp_path, [fake_host("worker-1"), fake_host("gpu-1", iluvatar_gpu=True)], "worker.py"),
        "bad input on 1 of 2 host(s); nothing was changed on any host",
        "@fake/gpu-1: iluvatar_gpu = True (host data) needs an NVIDIA GPU: no NVIDIA GPU: no NVIDIA display "
        "controller on the PCI bus; accepted: ",
    )
    assert "@fake/worker-1:" not in output


@pytest.mark.parametrize("mode", [True, "auto"])
def test_an_nvidia_gpu_without_its_driver_stops_every_host(tmp_path: Path, mode: object) -> None:
    write_lock(tmp_path / "iluvatar.lock.json")
    gpu_host = fake_host("gpu-1", gpus="no_driver", pci="gtx1050ti_with_audio_function_projected", iluvatar_gpu=mode)
    output = assert_refused(
        run(tmp_path, [fake_host("worker-1"), gpu_host], "worker.py"),
        "@fake/gpu-1: iluvatar_gpu = ",
        "finds no working NVIDIA driver: NVIDIA GPU(s) on the PCI bus, but the NVIDIA kernel driver is not loaded "
        "(nvidia-smi exit 9",
        "0000:01:00.0 (10de:1c8c, driver nvidia)",
        "install it, or name its package in iluvatar_nvidia_driver_package",
    )
    assert ("iluvatar_gpu: false" in output) == (mode == "auto")


def test_nvml_missing_stops_the_host(tmp_path: Path) -> None:
    write_lock(tmp_path / "iluvatar.lock.json")
    host = fake_host("gpu-1", gpus="nvml_missing", pci="h200_projected_from_nvidia_smi_q")
    assert_refused(run(tmp_path, [host], "gpu.py"), "nvidia-smi cannot load NVML")


def test_gpu_false_reads_no_gpu_and_does_no_gpu_work(tmp_path: Path) -> None:
    write_lock(tmp_path / "iluvatar.lock.json")
    host = fake_host("gpu-1", gpus="no_driver", pci="gtx1050ti_with_audio_function_projected", iluvatar_gpu=False)
    result = run(tmp_path, [host], "gpu.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "NVIDIA" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"iluvatar_gpu_mps": True}, "iluvatar_gpu_mps = True (host data) needs Docker"),
        ({"iluvatar_gpu_mps": True, "iluvatar_gpu": False, "iluvatar_isolation": "docker"}, "needs GPU support"),
        ({"iluvatar_gpu": "sometimes"}, "iluvatar_gpu = 'sometimes' (host data) is not valid: not auto, true or false"),
        ({"iluvatar_gpu_mps_image": "NVIDIA/Cuda"}, "iluvatar_gpu_mps_image = 'NVIDIA/Cuda' (host data) is not valid"),
        ({"iluvatar_nvidia_toolkit_version": ""}, "iluvatar_nvidia_toolkit_version = '' (host data) is not valid"),
        ({"iluvatar_nvidia_repository": "ftp://mirror"}, "iluvatar_nvidia_repository = 'ftp://mirror' (host data)"),
        ({"iluvatar_nvidia_driver_package": "nvidia driver"}, "iluvatar_nvidia_driver_package = 'nvidia driver'"),
        ({"iluvatar_nvidia_key_fingerprint": "C95B"}, "iluvatar_nvidia_key_fingerprint = 'C95B' (host data)"),
    ],
)
def test_bad_gpu_keys_stop_the_run(tmp_path: Path, data: dict[str, Any], problem: str) -> None:
    write_lock(tmp_path / "iluvatar.lock.json")
    assert_refused(run(tmp_path, [fake_host("worker-1"), fake_host("gpu-1", **data)], "worker.py"), problem)


def gpu_facts(gpus: str | None, pci: str) -> tuple[Any, Any]:
    """The values of ``NvidiaGpus`` (``None``: nvidia-smi not installed) and ``NvidiaDevices`` from fixtures."""
    smi: dict[str, Any] = {"status": "not_installed", "exit_code": None, "message": None, "gpus": []}
    if gpus is not None:
        smi = json.loads((NVIDIA_FACTS / "nvidia.NvidiaGpus" / f"{gpus}.json").read_text())["fact"]
    devices = json.loads((NVIDIA_FACTS / "nvidia.NvidiaDevices" / f"{pci}.json").read_text())["fact"]
    return smi, devices


def plan_for(gpus: str | None, pci: str, **host_data: Any) -> tuple[preflight.GpuPlan | None, str | None]:
    target = Inventory(([("gpu-1", host_data)], {})).get_host("gpu-1")
    values, problems = preflight.host_values(target)
    assert not problems
    return preflight.gpu_plan(target, values, *gpu_facts(gpus, pci))


def test_a_ready_gpu_host_gets_its_gpus_counted_with_the_smallest_memory() -> None:
    found, problem = plan_for("six_gtx1070", "h200_projected_from_nvidia_smi_q")
    assert problem is None and found is not None
    assert (found.count, found.memory_mb, found.driver_package) == (6, 8112, None)
    target = Inventory(([("gpu-1", {})], {})).get_host("gpu-1")
    settings = preflight.worker_settings(target, preflight.host_values(target)[0], found)
    assert (settings.gpu_count, settings.gpu_memory_mb) == (6, 8112)


def test_memory_not_reported_leaves_it_out() -> None:
    found, _ = plan_for("gb10_memory_not_available", NO_NVIDIA_PCI)
    assert found is not None and found.count == 1 and found.memory_mb is None


def test_a_driver_package_makes_a_driverless_gpu_host_a_plan_counted_from_the_pci_bus() -> None:
    found, problem = plan_for(
        "no_driver", "gtx1050ti_with_audio_function_projected", iluvatar_nvidia_driver_package="nvidia-driver"
    )
    assert problem is None and found is not None
    assert (found.count, found.memory_mb, found.driver_package) == (1, None, "nvidia-driver")


@pytest.mark.parametrize(
    ("mode", "gpus", "pci", "planned", "problem"),
    [
        ("auto", None, NO_NVIDIA_PCI, False, None),
        ("false", "six_gtx1070", NO_NVIDIA_PCI, False, None),
        ("true", None, NO_NVIDIA_PCI, False, "needs an NVIDIA GPU"),
        ("true", "no_devices_found", NO_NVIDIA_PCI, False, "needs an NVIDIA GPU"),
        ("auto", "gpu_access_blocked", NO_NVIDIA_PCI, False, "fix the driver"),
        ("true", "h200_one_gpu", NO_NVIDIA_PCI, True, None),
    ],
)
def test_gpu_plan_per_mode(mode: str, gpus: str | None, pci: str, planned: bool, problem: str | None) -> None:
    found, error = plan_for(gpus, pci, iluvatar_gpu=mode)
    assert (found is not None) == planned
    assert (error is None) == (problem is None)
    if problem:
        assert error is not None and problem in error and error.startswith(f"iluvatar_gpu = {mode!r} (host data)")
