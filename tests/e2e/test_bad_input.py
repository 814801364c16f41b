"""Bad input, end to end: each case stops the run before any change, naming host, key, value and what is accepted.

Two sandbox hosts run the whole worker deploy with a mirror that serves real archives (the lab's fake upstream),
the bad value on the second host only. Every case must exit non-zero without a traceback, name the bad host and
not the good one; afterwards neither host has changed (packages, unit states, files under /etc /usr/local /opt
/var/lib). The same holds for ``pyinfra-iluvatar lock`` and ``sandbox`` given bad options.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyinfra_iluvatar.sandbox.settings import NET_ENV
from pyinfra_iluvatar.tests.support.lab import OLD, SANDBOX_NOFILE, SANDBOX_WORKER, Lab
from pyinfra_iluvatar.tests.support.sandbox import BIN, ROOT

pytestmark = pytest.mark.sandbox

SHA = "a" * 64
MARKER = "/run/pyinfra-iluvatar-bad-input-marker"
SNAPSHOT = (
    "dpkg-query -W -f '${Package} ${Version} ${db:Status-Status}\\n' | sort;"
    " systemctl list-units --all --no-legend --plain | awk '{print $1, $3, $4}' | sort;"
    f" find /etc /usr/local /opt /var/lib -xdev -newer {MARKER} 2>/dev/null | sort"
)

# (id, data on the bad host, what the message must say): the key and value as given, where it was set, the problem
# and what is accepted, for each value the bad host has and the good one has not.
DATA_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "packages-shell",
        {"iluvatar_extra_packages": "htop; curl x|sh"},
        ["iluvatar_extra_packages = ", "not Debian package names", "accepted: "],
    ),
    (
        "packages-version",
        {"iluvatar_extra_packages": ["jq=1.6-2.1"]},
        ["iluvatar_extra_packages = ", "'jq=1.6-2.1'", "accepted: "],
    ),
    ("energy-maybe", {"iluvatar_energy_tools": "maybe"}, ["iluvatar_energy_tools = ", "not a boolean", "accepted: "]),
    (
        "nofile-word",
        {"iluvatar_nofile_limit": "lots"},
        ["iluvatar_nofile_limit = ", "not a positive integer", "accepted: "],
    ),
    (
        "nofile-above-nr-open",
        {"iluvatar_nofile_limit": 2000000},
        ["iluvatar_nofile_limit = ", "above the kernel's limit", "accepted: "],
    ),
    (
        "nofile-5000-digits",
        {"iluvatar_nofile_limit": "9" * 5000},
        ["iluvatar_nofile_limit = ", "(5002 characters)", "accepted: "],
    ),
    ("nproc-bool", {"iluvatar_nproc_limit": True}, ["iluvatar_nproc_limit = ", "not a positive integer", "accepted: "]),
    (
        "lock-file-nul",
        {"iluvatar_lock_file": "iluvatar\x00.lock.json"},
        ["iluvatar_lock_file = ", "contains a NUL", "accepted: "],
    ),
    ("mirror-no-host", {"iluvatar_mirror": "http://"}, ["iluvatar_mirror = ", "has no valid host name", "accepted: "]),
    (
        "mirror-space",
        {"iluvatar_mirror": "https://mirror lab.example"},
        ["iluvatar_mirror = ", "whitespace", "accepted: "],
    ),
    (
        "mirror-query",
        {"iluvatar_mirror": "https://mirror.lab.example/x?token=1"},
        ["iluvatar_mirror = ", "query string", "accepted: "],
    ),
    (
        "mirror-newline",
        {"iluvatar_mirror": "https://mirror.lab.example/\n"},
        ["iluvatar_mirror = ", "control characters", "accepted: "],
    ),
    (
        "mirror-credentials",
        {"iluvatar_mirror": "https://user:secret@mirror.lab.example"},
        ["iluvatar_mirror = ", "https://***@mirror", "accepted: "],
    ),
    ("download-peer", {"iluvatar_download": "peer"}, ["iluvatar_download = ", '"host" or "controller"', "accepted: "]),
    (
        "cache-is-a-file",
        {"iluvatar_download": "controller", "iluvatar_download_cache": "/etc/passwd"},
        ["iluvatar_download_cache = ", "is a file, not a directory", "accepted: "],
    ),
    (
        "replace-perhaps",
        {"iluvatar_containerd_replace_package": "perhaps"},
        ["iluvatar_containerd_replace_package = ", "not a boolean", "accepted: "],
    ),
    (
        "snapshotter-banana",
        {"iluvatar_snapshotter": "banana"},
        ["iluvatar_snapshotter = ", '"zfs", "overlayfs" or "native"', "accepted: "],
    ),
    (
        "cni-dir-dotdot",
        {"iluvatar_cni_bin_dir": "/opt/cni/bin/.."},
        ["iluvatar_cni_bin_dir = ", "has a '..' component", "accepted: "],
    ),
    (
        "cni-dir-relative",
        {"iluvatar_cni_bin_dir": "opt/cni/bin"},
        ["iluvatar_cni_bin_dir = ", "not an absolute path", "accepted: "],
    ),
    (
        "cni-dir-too-long",
        {"iluvatar_cni_bin_dir": "/" + "a/" * 2100},
        ["iluvatar_cni_bin_dir = ", "longer than 4095 bytes", "accepted: "],
    ),
    (
        "prebuilt-sparc",
        {
            "iluvatar_cnitool_prebuilt": {
                "sparc": {
                    "url": "https://mirror.lab.example/cnitool",
                    "sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                }
            }
        },
        ["iluvatar_cnitool_prebuilt = ", "'sparc' is not a Debian architecture name", "accepted: "],
    ),
    (
        "prebuilt-x86_64",
        {
            "iluvatar_cnitool_prebuilt": {
                "x86_64": {
                    "url": "https://mirror.lab.example/cnitool",
                    "sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                }
            }
        },
        ["iluvatar_cnitool_prebuilt = ", "(write 'amd64')", "accepted: "],
    ),
    (
        "prebuilt-query",
        {
            "iluvatar_cnitool_prebuilt": {
                "amd64": {
                    "url": "https://mirror.lab.example/c?x=1",
                    "sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                }
            }
        },
        ["iluvatar_cnitool_prebuilt = ", "query string", "accepted: "],
    ),
    ("go-root-slash", {"iluvatar_go_root": "/"}, ["iluvatar_go_root = ", "is the root directory", "accepted: "]),
    (
        "remove-go-later",
        {"iluvatar_go_remove_after_build": "later"},
        ["iluvatar_go_remove_after_build = ", "not a boolean", "accepted: "],
    ),
    (
        "isolation-kubernetes",
        {"iluvatar_isolation": "kubernetes"},
        ["iluvatar_isolation = ", "not an isolation: 'kubernetes'", "accepted: "],
    ),
    ("zfs-sometimes", {"iluvatar_zfs": "sometimes"}, ["iluvatar_zfs = ", "not a boolean", "accepted: "]),
    (
        "zfs-btrfs",
        {"iluvatar_zfs_implementation": "btrfs"},
        ["iluvatar_zfs_implementation = ", '"auto", "openzfs" or "zfs-fuse"', "accepted: "],
    ),
    ("pool-reserved", {"iluvatar_zfs_pool": "mirror0"}, ["iluvatar_zfs_pool = ", "zpool reserves it", "accepted: "]),
    (
        "vdev-dotdot",
        {"iluvatar_zfs_vdev_file": "/var/lib/../zfs"},
        ["iluvatar_zfs_vdev_file = ", "has a '..' component", "accepted: "],
    ),
    (
        "vdev-too-small",
        {"iluvatar_zfs_vdev_size": "10M"},
        ["iluvatar_zfs_vdev_size = ", "smaller than ZFS's smallest vdev", "accepted: "],
    ),
    (
        "devices-not-dev",
        {"iluvatar_zfs_devices": ["/tmp/disk"]},
        ["iluvatar_zfs_devices = ", "not under /dev", "accepted: "],
    ),
    ("force-please", {"iluvatar_zfs_force": "yes please"}, ["iluvatar_zfs_force = ", "not a boolean", "accepted: "]),
    (
        "config-path-relative",
        {"iluvatar_worker_config_path": "worker.json"},
        ["iluvatar_worker_config_path = ", "not an absolute path", "accepted: "],
    ),
    ("worker-name-space", {"iluvatar_worker_name": "a b"}, ["iluvatar_worker_name = ", "not a name", "accepted: "]),
    (
        "worker-address",
        {"iluvatar_worker_address": "999.1.1.1"},
        ["iluvatar_worker_address = ", "not an IP address", "accepted: "],
    ),
    ("worker-port", {"iluvatar_worker_port": 70000}, ["iluvatar_worker_port = ", "above 65535", "accepted: "]),
    (
        "interface-slash",
        {"iluvatar_hardware_interface": "a/b"},
        ["iluvatar_hardware_interface = ", "not a network interface name", "accepted: "],
    ),
    (
        "memory-reserve-negative",
        {"iluvatar_memory_reserve_mb": -1},
        ["iluvatar_memory_reserve_mb = ", "not a positive integer", "accepted: "],
    ),
    (
        "cpu-reserve-many",
        {"iluvatar_cpu_reserve": "many"},
        ["iluvatar_cpu_reserve = ", "not a positive integer", "accepted: "],
    ),
    (
        "load-balancer-no-scheme",
        {"iluvatar_load_balancer_url": "controller:8078"},
        ["iluvatar_load_balancer_url = ", "not an http:// or https://", "accepted: "],
    ),
    (
        "worker-config-type",
        {"iluvatar_worker_config": {"port": "8079", "influx": {"token": "secret"}}},
        ["iluvatar_worker_config = ", "(value not shown)", "port must be a number, got a string", "accepted: "],
    ),
    (
        "zfs-off-with-zfs-snapshotter",
        {"iluvatar_zfs": False, "iluvatar_snapshotter": "zfs"},
        ["iluvatar_snapshotter = ", "iluvatar_zfs is false", "accepted: "],
    ),
    (
        "zfs-fuse-with-zfs-snapshotter",
        {"iluvatar_snapshotter": "zfs"},
        ["iluvatar_snapshotter = ", "containerd's zfs snapshotter refuses fuse.zfs mounts", "accepted: "],
    ),
    ("memory-reserve-too-large", {"iluvatar_memory_reserve_mb": 1000000000}, ["worker.json:", "leave nothing"]),
]


def bad_locks(lab: Lab, folder: Path) -> list[tuple[str, Path, list[str]]]:
    """Lock files that must be refused, each made from the lab's good lock; (id, path, expected text)."""
    good = json.loads(lab.locks[OLD].read_text())
    amd64 = good["components"]["containerd"]["artifacts"]["amd64"]
    arm64 = good["components"]["containerd"]["artifacts"]["arm64"]

    def variant(name: str, **changes: Any) -> Path:
        """The good lock with containerd's artifacts changed (``None`` removes an architecture)."""
        lock = json.loads(json.dumps(good))
        artifacts = lock["components"]["containerd"]["artifacts"]
        for arch, artifact in changes.items():
            artifacts.pop(arch) if artifact is None else artifacts.update({arch: artifact})
        path = folder / f"{name}.lock.json"
        path.write_text(json.dumps(lock))
        return path

    format_true = folder / "format-true.lock.json"
    format_true.write_text(json.dumps({**good, "format": True}))

    def nested(depth: int) -> Path:
        path = folder / "nested.lock.json"
        path.write_text("[" * depth + "]" * depth)
        return path

    non_utf8 = folder / "latin1.lock.json"
    non_utf8.write_bytes(lab.locks[OLD].read_bytes().replace(b'"format"', b'"f\xe9rmat"'))
    other_tag = {**amd64, "url": amd64["url"].replace("v1.6.20", "v9.9.9")}
    with_credentials = {**amd64, "url": amd64["url"].replace("http://", "http://user:secret@")}
    return [
        ("format-true", format_true, ["format"]),
        ("arm64-archive-as-amd64", variant("swapped", amd64=arm64), ["artifacts.amd64.filename"]),
        ("url-not-mirror-path", variant("url", amd64=other_tag), ["artifacts.amd64.url"]),
        ("url-credentials", variant("credentials", amd64=with_credentials), ["***@"]),
        ("arm64-only", variant("arm64-only", amd64=None), ["this host is amd64"]),
        ("not-utf8", non_utf8, ["UTF-8"]),
        ("a-binary", Path("/bin/ls"), ["/bin/ls"]),
        ("deeply-nested", nested(100000), ["nested"]),
        ("a-directory", folder, ["directory"]),
        ("missing", folder / "absent.lock.json", ["no lock file"]),
    ]


@pytest.fixture(scope="module")
def two_hosts(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The good host, the bad host, and the data a good run uses; marks both hosts to find changed files later."""
    good, bad = lab.hosts[:2]
    for host in (good, bad):
        lab.ssh(host, f"touch {MARKER}")
    yield (
        good,
        bad,
        {
            "iluvatar_lock_file": str(lab.locks[OLD]),
            "iluvatar_mirror": lab.upstream.mirror_url,
            "iluvatar_nofile_limit": SANDBOX_NOFILE,
            "iluvatar_cnitool_prebuilt": lab.cnitool,
            **SANDBOX_WORKER,
        },
    )


def run_worker(
    lab: Lab, folder: Path, hosts: tuple[str, str, dict[str, Any]], bad_data: dict[str, Any], *options: str
) -> subprocess.CompletedProcess[str]:
    """The worker deploy on the two hosts, ``bad_data`` on the second only (an inventory file made for the run)."""
    good, bad, common = hosts
    inventory = folder / "inventory.py"
    inventory.write_text(
        "import json\nfrom pyinfra_iluvatar.sandbox.inventory import groups\n"
        f"common, bad = json.loads({json.dumps(json.dumps(common))}), json.loads({json.dumps(json.dumps(bad_data))})\n"
        f"workers = [(name, {{**data, **common, **(bad if name == {bad!r} else {{}})}})"
        f" for name, data in groups()['workers'] if name in {[good, bad]!r}]\n"
    )
    argv = [str(BIN / "pyinfra"), "-y", *options, str(inventory), str(ROOT / "deploys" / "worker.py")]
    return subprocess.run(argv, capture_output=True, text=True, env=lab.session.env, timeout=300, check=False)


def assert_refused_on(result: subprocess.CompletedProcess[str], bad: str, good: str, *expected: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "pre-flight found bad input on 1 of 2 host(s); nothing was changed on any host" in output, output[-3000:]
    assert f"  {bad}: " in output and f"  {good}: " not in output, output[-3000:]
    for text in expected:
        assert text in output, output[-3000:]
    assert "secret" not in output


def snapshot(lab: Lab, host: str) -> str:
    return lab.ssh(host, SNAPSHOT)


@pytest.fixture(scope="module")
def before(lab: Lab, two_hosts: tuple[str, str, dict[str, Any]]) -> dict[str, str]:
    return {host: snapshot(lab, host) for host in two_hosts[:2]}


def test_the_good_data_would_deploy(
    lab: Lab, two_hosts: tuple[str, str, dict[str, Any]], before: dict[str, str], tmp_path: Path
) -> None:
    """The control: with nothing bad, pre-flight passes and pyinfra would change both hosts (--dry: it does not)."""
    result = run_worker(lab, tmp_path, two_hosts, {}, "--dry")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "pre-flight" not in result.stderr


@pytest.mark.parametrize(("case", "bad_data", "expected"), DATA_CASES, ids=[case[0] for case in DATA_CASES])
def test_bad_data_stops_the_run_before_any_change(
    lab: Lab,
    two_hosts: tuple[str, str, dict[str, Any]],
    before: dict[str, str],
    tmp_path: Path,
    case: str,
    bad_data: dict[str, Any],
    expected: list[str],
) -> None:
    good, bad, _ = two_hosts
    assert_refused_on(run_worker(lab, tmp_path, two_hosts, bad_data), bad, good, *expected)


def test_bad_lock_files_stop_the_run_before_any_change(
    lab: Lab, two_hosts: tuple[str, str, dict[str, Any]], before: dict[str, str], tmp_path: Path
) -> None:
    good, bad, _ = two_hosts
    for case, path, expected in bad_locks(lab, tmp_path):
        print(case)
        result = run_worker(lab, tmp_path, two_hosts, {"iluvatar_lock_file": str(path)})
        assert_refused_on(result, bad, good, f"{bad}: iluvatar_lock_file: ", *expected)


LOCK_CASES = [
    (["--github-api", "https://user:secret@127.0.0.1:1"], ["***@127.0.0.1:1", "holds credentials"]),
    (["--go-dl", "not a url"], ["--go-dl"]),
    (["--containerd", "banana"], ["'banana' is not a version spec"]),
    (["--arch", "sparc"], ["'sparc' is not one of"]),
    (["--github-api", "http://127.0.0.1:1"], ["connection refused"]),
]


@pytest.mark.parametrize(("options", "expected"), LOCK_CASES, ids=[" ".join(case[0]) for case in LOCK_CASES])
def test_bad_lock_options(tmp_path: Path, options: list[str], expected: list[str]) -> None:
    argv = [str(BIN / "pyinfra-iluvatar"), "lock", "--lock-file", str(tmp_path / "lock.json"), *options]
    env = {**os.environ, "GITHUB_TOKEN": "secret-token", "NO_PROXY": "127.0.0.1,localhost"}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output and "secret" not in output, output
    for text in expected:
        assert text in output, output
    assert not (tmp_path / "lock.json").exists()


SANDBOX_CASES = [
    (["status"], {NET_ENV: "abc"}, ["PYINFRA_ILUVATAR_SANDBOX_NET = 'abc' is not valid"]),
    (["up", "--proxy-allow", "*"], {}, ["'*' is not valid"]),
    (["up", "--mirror", "not a url"], {}, ["'not a url' is not valid"]),
    (["up", "--net", "300"], {}, ["--net"]),
]


@pytest.mark.parametrize(("options", "env", "expected"), SANDBOX_CASES, ids=[" ".join(c[0]) for c in SANDBOX_CASES])
def test_bad_sandbox_options(tmp_path: Path, options: list[str], env: dict[str, str], expected: list[str]) -> None:
    """Refused before anything is made: the state directory given stays empty."""
    state = tmp_path / "state"
    argv = [str(BIN / "pyinfra-iluvatar"), "sandbox", options[0], "--state-dir", str(state), *options[1:]]
    result = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=60, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output, output
    for text in expected:
        assert text in output, output
    assert not state.exists() or not any(state.iterdir())


def test_the_sandbox_inventory_with_a_bad_network_number(tmp_path: Path) -> None:
    inventory = ROOT / "inventories" / "sandbox.py"
    argv = [str(BIN / "pyinfra"), "-y", str(inventory), "exec", "--", "true"]
    env = {**os.environ, NET_ENV: "abc"}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output, output
    assert "PYINFRA_ILUVATAR_SANDBOX_NET = 'abc' is not valid" in output


def test_nothing_changed_on_either_host(
    lab: Lab, two_hosts: tuple[str, str, dict[str, Any]], before: dict[str, str]
) -> None:
    """Runs last in this module: every refused run above left both hosts exactly as they were."""
    assert {host: snapshot(lab, host) for host in two_hosts[:2]} == before
