"""Pre-flight across hosts: real pyinfra runs (``--dry``) of this package's deploy files on ``@fake`` hosts.

pyinfra's ``@fake`` connector answers each command from the inventory's ``fake_responses`` and runs nothing, so a
fleet of amd64 and arm64 hosts fits in one test. The answer to pre-flight's host probe is the real output captured
on a sandbox host (``tests/facts/resources.HostResources/sandbox_host_without_default_route.json``), with its
``uname -m`` line set to ``aarch64`` for an arm64 host. The same checks on real sandbox hosts over SSH, with
nothing changed on any host, are in ``tests/e2e/test_bad_input.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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


def fake_host(name: str, machine: str = "x86_64", **data: Any) -> tuple[str, dict[str, Any]]:
    """A fake worker whose probe answers like a sandbox host of ``machine``; interface host0 (no default route)."""
    probe = [machine if line == "x86_64" else line for line in PROBE["output"]]
    host_data = {"fake_responses": {"--machine--": probe}, "fake_delay": 0, "iluvatar_hardware_interface": "host0"}
    return f"@fake/{name}", {**host_data, **data}


def run(tmp_path: Path, hosts: list[tuple[str, dict[str, Any]]], *deploys: str) -> subprocess.CompletedProcess[str]:
    """``pyinfra --dry INVENTORY DEPLOYS`` in ``tmp_path`` (where the default lock file name resolves)."""
    inventory = tmp_path / "inventory.py"
    hosts_json = json.dumps(json.dumps(hosts))
    inventory.write_text(f"import json\nworkers = [tuple(host) for host in json.loads({hosts_json})]\n")
    argv = [str(PYINFRA), "--dry", str(inventory), *(str(ROOT / "deploys" / deploy) for deploy in deploys)]
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
