"""Docker isolation end to end on sandbox hosts: Docker's repository the guide's way, and Debian's docker.io.

Docker's repository is played by an apt repository the tests build and sign with their own key
(``tests/support/docker_repo.py``: Docker's package names, versions and relations around Debian's real binaries),
served from the sandbox's gateway, so the keyring, ``Signed-By``, the conflicting-source handling and version
pinning run for real with apt. ``docker.io`` comes from Debian through the sandbox's proxy. Both daemons run
with the settings the sandbox needs (vfs: no overlay on the hosts' overlay root; bridge and pools in
198.18.0.0/15). The hosts are left without Docker afterwards, as the next test modules expect them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from pyinfra_iluvatar.operations.docker import DOCKER_KEYRING, DOCKER_SOURCES, key_fingerprint
from pyinfra_iluvatar.tests.support.docker_repo import DockerRepo, build_docker_repo, serve
from pyinfra_iluvatar.tests.support.lab import Lab, changed

pytestmark = pytest.mark.sandbox

DAEMON = {
    "storage-driver": "vfs",
    "bip": "198.19.250.1/24",
    "default-address-pools": [{"base": "198.19.0.0/16", "size": 24}],
    "exec-opts": ["native.cgroupdriver=systemd"],
}
OLD, NEW = "5:20.10.24-1~debian.12~bookworm", "5:26.1.5-1~debian.12~bookworm"
CLEAN = (
    "systemctl stop docker.socket docker containerd 2>/dev/null; DEBIAN_FRONTEND=noninteractive apt-get purge -y -q"
    " $(dpkg-query -W -f '${Package} ' docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker.io containerd"
    " runc 2>/dev/null) >/dev/null;"
    " rm -rf /etc/docker /var/lib/docker /etc/apt/sources.list.d/docker* /etc/apt/keyrings/docker.asc"
    " /etc/apt/preferences.d/pyinfra-iluvatar-docker /etc/systemd/system/docker.service.d"
    " /etc/systemd/system/containerd.service.d /etc/containerd /etc/iluvatar; ip link del docker0 2>/dev/null;"
    " systemctl daemon-reload; apt-get update -q >/dev/null"
)
"""Docker taken off a host: only the packages it has are purged (apt refuses a whole purge over one unknown name)."""


@pytest.fixture(scope="module")
def repo(lab: Lab) -> Iterator[tuple[DockerRepo, str]]:
    """The Docker-shaped repository and the URL it is served at on the gateway; Docker removed afterwards."""
    built = build_docker_repo()
    with serve(built.root, host=lab.session.sandbox.gateway) as server:
        yield built, server.url
    for host in lab.hosts:
        cleaned = lab.session.ssh(host, CLEAN, timeout=300)
        assert cleaned.returncode == 0, cleaned.stderr


def run(lab: Lab, host: str, **data: Any) -> dict[str, Any]:
    """``deploys/docker.py`` on ``host`` with Docker isolation and the sandbox's daemon settings."""
    settings = {"iluvatar_isolation": "docker", "iluvatar_docker_daemon": DAEMON, **data}
    arguments = [f"--data={key}={json.dumps(value)}" for key, value in settings.items()]
    result = lab.session.pyinfra("--json", "--limit", host, *arguments, "deploys/docker.py")
    report: dict[str, Any] = json.loads(result.stdout) if result.stdout.strip() else {"results": None}
    report["returncode"], report["stderr"] = result.returncode, result.stderr
    return report


def docker_pid(lab: Lab, host: str) -> str:
    return lab.ssh(host, "systemctl show -p MainPID --value docker").strip()


def test_dockers_repository_the_guides_way_with_a_pinned_version(lab: Lab, repo: tuple[DockerRepo, str]) -> None:
    built, url = repo
    host = lab.hosts[0]
    stale = (
        f"deb [arch=amd64 signed-by=/usr/share/keyrings/docker-archive-keyring.gpg] {built.uri(url)} bookworm stable"
    )
    lab.ssh(host, "mkdir -p /etc/docker && echo '{\"debug\": true}' > /etc/docker/daemon.json")
    lab.ssh(host, f"echo '{stale}' > /etc/apt/sources.list.d/docker.list")
    docker = {
        "iluvatar_docker_repository": f"{url}/linux",
        "iluvatar_docker_key_fingerprint": built.fingerprint,
        "iluvatar_docker_version": OLD,
    }
    report = run(lab, host, **docker)
    assert report["returncode"] == 0, report["stderr"][-4000:]
    assert key_fingerprint(lab.ssh(host, f"cat {DOCKER_KEYRING}")) == built.fingerprint
    assert f"Signed-By: {DOCKER_KEYRING}" in lab.ssh(host, f"cat {DOCKER_SOURCES}")
    sources = lab.ssh(host, "ls /etc/apt/sources.list.d").split()
    assert "docker.list" not in sources and "docker.list.disabled-by-pyinfra-iluvatar" in sources  # kept, not lost
    assert lab.ssh(host, "apt-get update 2>&1 >/dev/null").strip() == ""  # no Signed-By conflict left
    assert lab.ssh(host, "dpkg-query -W -f '${Version}' docker-ce").strip() == OLD
    assert f"Pin: version {OLD}" in lab.ssh(host, "cat /etc/apt/preferences.d/pyinfra-iluvatar-docker")
    info = json.loads(lab.ssh(host, "docker info --format '{{json .}}'"))
    assert (info["Driver"], info["CgroupDriver"], info["ServerVersion"]) == ("vfs", "systemd", "20.10.24+dfsg1")
    assert "inet 198.19.250.1/24" in lab.ssh(host, "ip -4 addr show docker0")
    daemon_json = json.loads(lab.ssh(host, "cat /etc/docker/daemon.json"))
    assert daemon_json == {"debug": True, **DAEMON}  # the key that was there is kept
    assert "LimitNOFILE=" in lab.ssh(host, "systemctl cat docker | grep LimitNOFILE | tail -n 1")
    assert lab.ssh(host, "readlink -e /usr/bin/ctr").strip() == "/usr/bin/ctr"  # containerd.io's, the only one

    pid = docker_pid(lab, host)
    again = run(lab, host, **docker)
    assert again["returncode"] == 0 and changed(again) == {}, again["stderr"][-4000:]
    assert docker_pid(lab, host) == pid

    upgraded = run(lab, host, **{**docker, "iluvatar_docker_version": NEW})
    assert upgraded["returncode"] == 0, upgraded["stderr"][-4000:]
    assert lab.ssh(host, "docker version --format '{{.Server.Version}}'").strip() == "26.1.5+dfsg1"


def test_a_daemon_json_that_is_not_json_is_reported_not_clobbered(lab: Lab, repo: tuple[DockerRepo, str]) -> None:
    built, url = repo
    host = lab.hosts[0]
    lab.ssh(host, "echo '{\"debug\": tru' > /etc/docker/daemon.json")
    report = run(
        lab,
        host,
        iluvatar_docker_repository=f"{url}/linux",
        iluvatar_docker_key_fingerprint=built.fingerprint,
        iluvatar_docker_version=NEW,
    )
    assert report["returncode"] != 0
    assert "/etc/docker/daemon.json" in report["stderr"] and "not valid JSON" in report["stderr"]
    assert lab.ssh(host, "cat /etc/docker/daemon.json").strip() == '{"debug": tru'
    lab.ssh(host, f"echo '{json.dumps(DAEMON)}' > /etc/docker/daemon.json")


def test_the_distributions_docker_io(lab: Lab, repo: tuple[DockerRepo, str]) -> None:
    host = lab.hosts[1]
    report = run(lab, host, iluvatar_docker_source="distribution")
    assert report["returncode"] == 0, report["stderr"][-4000:]
    assert lab.ssh(host, "dpkg-query -W -f '${Status}' docker.io").strip() == "install ok installed"
    info = json.loads(lab.ssh(host, "docker info --format '{{json .}}'"))
    assert (info["Driver"], info["CgroupDriver"]) == ("vfs", "systemd")
    pid = docker_pid(lab, host)
    again = run(lab, host, iluvatar_docker_source="distribution")
    assert again["returncode"] == 0 and changed(again) == {}, again["stderr"][-4000:]
    assert docker_pid(lab, host) == pid


def test_both_isolations_share_dockers_containerd(lab: Lab, repo: tuple[DockerRepo, str]) -> None:
    """The whole worker with Docker and containerd on a host that had the release build: one containerd, Docker's."""
    built, url = repo
    host = lab.hosts[2]
    containerd_only = lab.deploy_worker(host)
    assert containerd_only["returncode"] == 0, containerd_only["stderr"][-4000:]
    assert lab.ssh(host, "readlink -f /usr/bin/ctr").strip() == "/usr/local/bin/ctr"
    docker = {
        "iluvatar_isolation": ["docker", "containerd"],
        "iluvatar_docker_repository": f"{url}/linux",
        "iluvatar_docker_key_fingerprint": built.fingerprint,
        "iluvatar_docker_daemon": DAEMON,
    }
    both = lab.deploy_worker(host, **docker)
    assert both["returncode"] == 0, both["stderr"][-4000:]
    assert lab.ssh(host, "ls /usr/local/bin").split() == []  # the release build is gone
    assert lab.ssh(host, "readlink -f /usr/bin/ctr").strip() == "/usr/bin/ctr"
    unit = lab.ssh(host, "systemctl show -p FragmentPath --value containerd").strip()
    assert unit == "/lib/systemd/system/containerd.service"
    assert "LimitNOFILE=20000" in lab.ssh(host, "systemctl cat containerd")
    assert "Version:  1.7.24" in lab.ssh(host, "/usr/bin/ctr version")
    assert lab.ssh(host, "pgrep -c -x containerd").strip() == "1"
    plugins = lab.ssh(host, "ctr plugins ls")
    assert re.search(r"snapshotter\.v1\s+native\s+\S+\s+ok", plugins)
    assert re.search(r"grpc\.v1\s+cri\s+\S+\s+ok", plugins)
    assert json.loads(lab.ssh(host, "docker info --format '{{json .}}'"))["Driver"] == "vfs"
    again = lab.deploy_worker(host, **docker)
    assert again["returncode"] == 0 and changed(again) == {}, again["stderr"][-4000:]
