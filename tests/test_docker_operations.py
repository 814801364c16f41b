"""``operations/docker.py`` where pyinfra-testing fixtures cannot reach.

- Docker's key and source: the release key is :data:`DOCKER_KEY_FINGERPRINT`, ``docker.sources`` is
  ``apt_repos.signed_repository``'s with Docker's paths (the key checks, the key download and the apt source parsing
  are ``tests/test_apt_repos.py``'s).
- :func:`ready`'s script run in ``sh`` against stand-in ``docker`` commands that answer as the real 20.10 and 28
  CLIs do (``tests/captured/docker-debian12/11-ready.txt``).
- ``apt_repository``, ``daemon_json`` and ``unit_limits`` run for real by ``pyinfra @local``, twice, inside a
  throwaway mount namespace whose ``/etc`` is an overlay (this machine's own ``/etc`` is never written): needs root.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host

from pyinfra_iluvatar.facts.apt_repos import AptRepository
from pyinfra_iluvatar.operations import docker
from pyinfra_iluvatar.tests.support.docker_repo import serve

CAPTURED = Path(__file__).parent / "captured" / "docker-debian12"
KEYS = CAPTURED / "keys"
DOCKER_KEY = (KEYS / "docker-release.asc").read_text()
BIN = Path(sys.executable).parent


# --- Docker's key ----------------------------------------------------------------------------------------------------


def test_docker_release_key_is_the_constant() -> None:
    assert docker.key_fingerprint(DOCKER_KEY) == docker.DOCKER_KEY_FINGERPRINT


def test_docker_sources_is_signed_repositorys_with_dockers_paths() -> None:
    assert docker.render_sources("https://download.docker.com/linux/debian", "bookworm", "arm64") == (
        "# Managed by pyinfra-iluvatar: Docker's apt repository; edits here are overwritten on the next deploy.\n"
        "Types: deb\nURIs: https://download.docker.com/linux/debian\nSuites: bookworm\nComponents: stable\n"
        "Architectures: arm64\nSigned-By: /etc/apt/keyrings/docker.asc\n"
    )
    assert (docker.DOCKER_KEYRING, docker.DOCKER_SOURCES) == (
        "/etc/apt/keyrings/docker.asc",
        "/etc/apt/sources.list.d/docker.sources",
    )


# --- ready's script --------------------------------------------------------------------------------------------------

DOWN_20 = (
    'echo; echo \'template: :1:2: executing "" at <.ServerVersion>: reflect: indirection through nil pointer to '
    "embedded struct field Info' >&2; exit 1"
)
DOWN_28 = (
    "echo; echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' "
    ">&2; exit 1"
)


def _ready_command(timeout: int) -> str:
    state = FakeState()
    with ctx_state.use(state), ctx_host.use(create_host(state, facts={})):
        (command,) = list(docker.ready._inner(timeout=timeout))
    assert isinstance(command, str)
    return command


def _run_ready(tmp_path: Path, docker_script: str, timeout: int) -> subprocess.CompletedProcess[str]:
    stand_in = tmp_path / "docker"
    stand_in.write_text(f"#!/bin/sh\n{docker_script}\n")
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    return subprocess.run(["sh", "-c", _ready_command(timeout)], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("down", [DOWN_20, DOWN_28], ids=["docker-20.10-cli", "docker-28-cli"])
def test_ready_fails_after_its_timeout_when_the_daemon_never_answers(tmp_path: Path, down: str) -> None:
    result = _run_ready(tmp_path, down, timeout=2)
    assert result.returncode == 1
    assert result.stderr == "pyinfra-iluvatar: the Docker daemon did not answer docker info within 2s\n"


@pytest.mark.parametrize("down", [DOWN_20, DOWN_28], ids=["docker-20.10-cli", "docker-28-cli"])
def test_ready_returns_once_the_daemon_answers(tmp_path: Path, down: str) -> None:
    calls = tmp_path / "calls"
    script = f'echo x >> {calls}; if [ "$(wc -l < {calls})" -lt 3 ]; then {down}; fi; echo 20.10.24+dfsg1'
    result = _run_ready(tmp_path, script, timeout=10)
    assert (result.returncode, result.stderr) == (0, "")
    assert len(calls.read_text().splitlines()) == 3


# --- merge_settings --------------------------------------------------------------------------------------------------


def test_merge_settings_keeps_order_and_inputs() -> None:
    existing = {"debug": True, "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}, "bip": "x"}
    settings = {
        "runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}, "crun": {"path": "crun"}},
        "bip": {"a": 1},
        "new": 1,
    }
    before = json.dumps([existing, settings])
    merged = docker.merge_settings(existing, settings)
    assert json.dumps([existing, settings]) == before
    assert list(merged) == ["debug", "runtimes", "bip", "new"]
    assert merged["runtimes"] == {
        "nvidia": {"args": [], "path": "/usr/bin/nvidia-container-runtime"},
        "crun": {"path": "crun"},
    }
    assert merged["bip"] == {"a": 1}
    merged["runtimes"]["crun"]["path"] = "changed"
    assert settings["runtimes"]["crun"]["path"] == "crun"  # type: ignore[index]


# --- for real: pyinfra @local in a private mount namespace ----------------------------------------------------------


def _can_overlay_etc() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as scratch:
        probe = subprocess.run(
            [
                "unshare",
                "-m",
                "sh",
                "-c",
                f"mount -t tmpfs tmpfs {scratch} && mkdir {scratch}/u {scratch}/w && mount -t overlay overlay -o "
                f"lowerdir=/etc,upperdir={scratch}/u,workdir={scratch}/w /etc",
            ],
            capture_output=True,
            check=False,
        )
    return probe.returncode == 0


DEPLOY = """
from pyinfra_iluvatar.operations import docker, limits

docker.apt_repository(
    name="Docker's apt repository",
    repository="{url}/linux",
    distribution="debian",
    codename="bookworm",
    arch="amd64",
    cache_dir="{cache}",
)
docker.daemon_json(
    name="daemon.json",
    settings={{"exec-opts": ["native.cgroupdriver=systemd"], "log-opts": {{"max-size": "20m"}}}},
)
limits.unit_limits(name="docker.service file limit", unit="docker.service", limit_nofile=1048576)
"""

NAMESPACE = """
set -eu
scratch=$(mktemp -d)
mount -t tmpfs tmpfs "$scratch"; mkdir "$scratch/u" "$scratch/w"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$scratch/u,workdir=$scratch/w" /etc
mount -t tmpfs tmpfs /var/cache/apt; mkdir -p /var/cache/apt/archives/partial
rm -f /etc/apt/keyrings/docker.asc /etc/apt/sources.list.d/docker.sources /etc/docker/daemon.json
printf 'deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.gpg] {url}/linux/debian bookworm stable\\n' \\
    > /etc/apt/sources.list.d/docker.list
mkdir -p /etc/docker
printf '{{"debug": true, "log-opts": {{"max-file": "3"}}}}\\n' > /etc/docker/daemon.json
cd {out}
for run in 1 2; do {pyinfra} -y @local deploy.py > run$run.log 2>&1 || echo "run $run failed" >> failures; done
{pyinfra} --json @local fact pyinfra_iluvatar.facts.apt_repos.AptRepository uri={url}/linux/debian arch=amd64 \\
    keyring=/etc/apt/keyrings/docker.asc sources=/etc/apt/sources.list.d/docker.sources > fact.json
cp /etc/apt/keyrings/docker.asc /etc/apt/sources.list.d/docker.sources /etc/docker/daemon.json \\
    /etc/systemd/system/docker.service.d/pyinfra-iluvatar.conf .
stat -c '%a %U %G %n' /etc/apt/keyrings/docker.asc /etc/apt/sources.list.d/docker.sources > modes
ls /etc/apt/sources.list.d > sources.d
apt-cache policy > policy 2>&1 || echo "apt-cache policy failed" >> failures
"""


def _grand_total(log: Path) -> list[str]:
    """The counts of pyinfra's ``Grand total`` result line: hosts, success, error, no change."""
    (line,) = [line for line in log.read_text().splitlines() if line.strip().startswith("Grand total")]
    return line.split()[2:]


def test_operations_for_real_twice(tmp_path: Path) -> None:
    if not _can_overlay_etc():
        pytest.skip("needs root, unshare and an overlay over /etc in a private mount namespace")
    key = tmp_path / "served" / "linux" / "debian" / "gpg"
    key.parent.mkdir(parents=True)
    key.write_text(DOCKER_KEY)
    with serve(tmp_path / "served") as served:
        (tmp_path / "deploy.py").write_text(DEPLOY.format(url=served.url, cache=tmp_path / "cache"))
        script = NAMESPACE.format(url=served.url, out=tmp_path, pyinfra=BIN / "pyinfra")
        result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    logs = "\n".join(f"{p.name}:\n{p.read_text()}" for p in sorted(tmp_path.glob("run*.log")))
    assert result.returncode == 0, result.stderr + logs
    assert not (tmp_path / "failures").exists(), (tmp_path / "failures").read_text() + logs
    assert served.requests == ["/linux/debian/gpg"]  # the second run downloads nothing
    assert _grand_total(tmp_path / "run1.log") == ["3", "3", "-", "-"]  # hosts, success, error, no change
    assert _grand_total(tmp_path / "run2.log") == ["3", "-", "-", "3"]

    assert (tmp_path / "docker.asc").read_text() == DOCKER_KEY
    assert (tmp_path / "docker.sources").read_text() == docker.render_sources(
        f"{served.url}/linux/debian", "bookworm", "amd64"
    )
    assert (tmp_path / "modes").read_text().split("\n")[:2] == [
        "644 root root /etc/apt/keyrings/docker.asc",
        "644 root root /etc/apt/sources.list.d/docker.sources",
    ]
    listed = (tmp_path / "sources.d").read_text().split()
    assert "docker.list" not in listed and "docker.list.disabled-by-pyinfra-iluvatar" in listed
    assert json.loads((tmp_path / "daemon.json").read_text()) == {
        "debug": True,
        "log-opts": {"max-file": "3", "max-size": "20m"},
        "exec-opts": ["native.cgroupdriver=systemd"],
    }
    assert "LimitNOFILE=1048576\n" in (tmp_path / "pyinfra-iluvatar.conf").read_text()
    policy = (tmp_path / "policy").read_text()
    assert not [line for line in policy.splitlines() if line.startswith(("E:", "W:"))], policy

    (fact,) = json.loads((tmp_path / "fact.json").read_text()).values()
    value = fact["@local"]
    assert [source["path"] for source in value["files"]] == ["/etc/apt/sources.list.d/docker.sources"]
    assert value["disabled"] == ["/etc/apt/sources.list.d/docker.list.disabled-by-pyinfra-iluvatar"]
    assert value["keyring"]["content"] == DOCKER_KEY
    command = AptRepository().command(
        f"{served.url}/linux/debian", "amd64", docker.DOCKER_KEYRING, docker.DOCKER_SOURCES
    )
    assert command.startswith(f"uri={served.url}/linux/debian; arch=amd64;")
