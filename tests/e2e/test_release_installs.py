"""Release installs end to end: three sandbox hosts install containerd, the CNI plugins and cnitool over SSH.

A local server on the sandbox's gateway plays GitHub, go.dev and a mirror, serving release-shaped archives
repacked from Debian's real binaries (containerd 1.6.20 and 1.7.24, CNI plugins 1.1.1, a cnitool built from
Debian's sources) with real checksum files. ``pyinfra-iluvatar lock`` resolves against it; the deploys read
that lock. The tests run in file order and build on each other: install, converge, upgrade, break, recover.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pyinfra_iluvatar.tests.support.debian_artifacts import DebianArtifacts, build_debian_artifacts
from pyinfra_iluvatar.tests.support.fake_upstream import FakeFile, FakeRelease, FakeUpstream
from pyinfra_iluvatar.tests.support.sandbox import SandboxSession

pytestmark = pytest.mark.sandbox

BIN = Path(sys.executable).parent
CONTAINERD = "containerd/containerd"
OLD, NEW = "1.6.20", "1.7.24"
BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr")


@dataclass
class Lab:
    """The sandbox plus the fake upstream serving it, and a lock file for each containerd version."""

    session: SandboxSession
    artifacts: DebianArtifacts
    upstream: FakeUpstream
    locks: dict[str, Path]
    cnitool: dict[str, dict[str, str]]
    controller_cache: Path

    @property
    def hosts(self) -> list[str]:
        return [host.name for host in self.session.hosts]

    def data_arguments(self, lock: str, **data: object) -> list[str]:
        """``--data`` options: the lock for containerd ``lock``, the prebuilt cnitool, the sandbox's limits."""
        settings = {
            "iluvatar_lock_file": str(self.locks[lock]),
            "iluvatar_nofile_limit": 20000,  # the sandbox's hard cap (README): a unit asking for more cannot start
            "iluvatar_cnitool_prebuilt": self.cnitool,
            "iluvatar_download_cache": str(self.controller_cache),
            **data,
        }
        return [f"--data={key}={json.dumps(value)}" for key, value in settings.items()]

    def deploy(self, *deploys: str, lock: str = OLD, **data: object) -> dict[str, Any]:
        """
        Run the deploy files on every host in parallel: pyinfra's JSON report, its exit code and log. pyinfra
        prints no report when every host failed ("No hosts remaining!"): ``results`` is None then.
        """
        result = self.session.pyinfra("--json", "--parallel", "3", *self.data_arguments(lock, **data), *deploys)
        report: dict[str, Any] = json.loads(result.stdout) if result.stdout.strip() else {"results": None}
        report["returncode"] = result.returncode
        report["stderr"] = result.stderr
        return report

    def ssh(self, host: str, command: str) -> str:
        result = self.session.ssh(host, command)
        assert result.returncode == 0, f"{host}: {command}: {result.stderr}"
        return result.stdout

    def binaries_sha256(self, host: str) -> str:
        return self.ssh(host, "cd /usr/local/bin && sha256sum " + " ".join(BINARIES))


def changed(report: dict[str, Any]) -> dict[str, list[str]]:
    """Operation name (without its deploy's prefix) → hosts it changed, from pyinfra's ``--json`` report."""
    results = report["results"]
    return {op["name"].split(" | ")[-1]: op["success"] for op in results["operations"] if op["success"]}


def failed_hosts(report: dict[str, Any]) -> list[str]:
    return sorted(report["results"]["failed_hosts"])


def lock(upstream: FakeUpstream, path: Path, containerd: str) -> Path:
    """Run the real ``pyinfra-iluvatar lock`` against the fake upstream."""
    subprocess.run(
        [
            BIN / "pyinfra-iluvatar",
            "lock",
            "--lock-file",
            str(path),
            "--github-api",
            upstream.api_url,
            "--go-dl",
            upstream.go_dl_url,
            "--arch",
            "amd64",
            "--arch",
            "arm64",
            "--containerd",
            containerd,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return path


@pytest.fixture(scope="module")
def lab(sandbox: SandboxSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    artifacts = build_debian_artifacts()
    with FakeUpstream(artifacts.fake_repos(), go=artifacts.fake_go(), host=sandbox.sandbox.gateway) as upstream:
        folder = tmp_path_factory.mktemp("locks")
        locks = {version: lock(upstream, folder / f"containerd-{version}.lock.json", version) for version in (OLD, NEW)}
        cnitool_release = next(release for release in artifacts.releases if release.component == "cnitool")
        cnitool = {}
        for arch in ("amd64", "arm64"):
            (name,) = [name for name in cnitool_release.files if f"-{arch}-" in name and name.endswith(".tgz")]
            cnitool[arch] = {
                "url": f"{upstream.base_url}/containernetworking/cni/releases/download/{cnitool_release.tag}/{name}",
                "sha256": FakeFile(name, cnitool_release.path(name)).sha256(),
            }
        yield Lab(sandbox, artifacts, upstream, locks, cnitool, folder / "controller-cache")
        for host in sandbox.hosts:  # leave the session's hosts as other test modules expect them
            sandbox.ssh(host.name, "systemctl stop containerd; rm -rf /var/lib/pyinfra-iluvatar /opt/cni")


def test_packaged_containerd_is_refused_before_any_change_on_any_host(lab: Lab) -> None:
    host = lab.hosts[2]
    apt = "DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Options::=--force-confold"
    lab.ssh(host, f"apt-get update -q >/dev/null && {apt} install containerd >/dev/null")
    result = lab.session.pyinfra("--parallel", "3", *lab.data_arguments(OLD), "deploys/containerd.py")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{host}: containerd is already installed from the package containerd 1.6.20~ds1" in output
    assert "iluvatar_containerd_replace_package=true" in output
    for each in lab.hosts:  # raised while preparing: no operation ran on any host
        assert lab.ssh(each, "test -e /usr/local/bin/containerd && echo present || echo absent").strip() == "absent"
        assert lab.ssh(each, "test -e /var/lib/pyinfra-iluvatar && echo present || echo absent").strip() == "absent"
    # The package stays: the next test replaces it.


def test_first_install_on_three_hosts_downloads_each_artifact_once(lab: Lab) -> None:
    """Controller download mode; the third host still has Debian's containerd package, which is replaced."""
    lab.upstream.counts.clear()
    report = lab.deploy(
        "deploys/containerd.py",
        "deploys/cni.py",
        iluvatar_download="controller",
        iluvatar_containerd_replace_package=True,
    )
    assert lab.controller_cache.is_dir()
    assert report["returncode"] == 0, report["stderr"][-3000:]
    assert failed_hosts(report) == []
    ops = changed(report)
    assert sorted(ops[f"containerd {OLD} binaries"]) == sorted(lab.hosts)
    assert sorted(ops["containerd answers ctr version"]) == sorted(lab.hosts)
    # Started (or, on the third host where the package had it running, restarted) once; then enabled where the
    # package had not enabled it already.
    assert sorted(ops["Start or restart containerd (binaries, unit or config changed)"]) == sorted(lab.hosts)
    assert sorted(ops["containerd running and enabled"]) == lab.hosts[:2]
    assert ops["No packaged containerd"] == [lab.hosts[2]]
    assert lab.ssh(lab.hosts[2], "dpkg-query -W -f '${db:Status-Status}' containerd").strip() == "config-files"

    downloads = {path: count for path, count in lab.upstream.counts.items() if "/releases/download/" in path}
    containerd_archive = f"/{CONTAINERD}/releases/download/v{OLD}/containerd-{OLD}-linux-amd64.tar.gz"
    assert downloads[containerd_archive] == 1, downloads  # three hosts, one upstream download
    assert all(count == 1 for count in downloads.values()), downloads


def test_the_fact_and_the_worker_path_see_the_installed_release(lab: Lab) -> None:
    result = lab.session.pyinfra("--json", "fact", "pyinfra_iluvatar.facts.containerd.ContainerdVersion")
    versions = json.loads(result.stdout)["pyinfra_iluvatar.facts.containerd.ContainerdVersion"]
    assert {host: value["version"] for host, value in versions.items()} == dict.fromkeys(lab.hosts, OLD)
    for host in lab.hosts:
        assert lab.ssh(host, "readlink -f /usr/bin/ctr").strip() == "/usr/local/bin/ctr"
        assert f"Version:  {OLD}" in lab.ssh(host, "/usr/bin/ctr version")
        plugins = lab.ssh(host, f"ls {'/opt/cni/bin'}").split()
        assert {"bridge", "host-local", "cnitool"} <= set(plugins)
        assert "README.md" not in plugins  # only executables are installed


def test_second_run_changes_nothing_and_restarts_nothing(lab: Lab) -> None:
    started = {host: lab.ssh(host, "systemctl show -p ExecMainStartTimestamp containerd") for host in lab.hosts}
    report = lab.deploy("deploys/containerd.py", "deploys/cni.py", iluvatar_download="controller")
    assert report["returncode"] == 0, report["stderr"][-3000:]
    assert changed(report) == {}
    assert started == {host: lab.ssh(host, "systemctl show -p ExecMainStartTimestamp containerd") for host in lab.hosts}


def test_corrupted_artifact_fails_with_checksum_error_and_keeps_the_install(lab: Lab) -> None:
    name = f"containerd-{NEW}-linux-amd64.tar.gz"
    good = lab.artifacts.release("containerd", NEW).path(name).read_bytes()
    corrupted = good[:1000] + bytes([good[1000] ^ 0xFF]) + good[1001:]
    mirror_releases = {CONTAINERD: [FakeRelease(f"v{NEW}", (FakeFile(name, corrupted),))]}
    before = {host: lab.binaries_sha256(host) for host in lab.hosts}
    started = {host: lab.ssh(host, "systemctl show -p ExecMainStartTimestamp containerd") for host in lab.hosts}
    with FakeUpstream(mirror_releases, host=lab.session.sandbox.gateway) as mirror:
        report = lab.deploy("deploys/containerd.py", lock=NEW, iluvatar_mirror=mirror.mirror_url)
        assert mirror.counts[f"/github.com/{CONTAINERD}/releases/download/v{NEW}/{name}"] == 3
    assert report["returncode"] != 0
    assert report["results"] is None, "every host must fail"
    for host in lab.hosts:
        assert f"[{host}] pyinfra-iluvatar: containerd {NEW}: checksum mismatch for {name}" in report["stderr"]
    assert {host: lab.binaries_sha256(host) for host in lab.hosts} == before
    assert started == {host: lab.ssh(host, "systemctl show -p ExecMainStartTimestamp containerd") for host in lab.hosts}


def test_upgrade_restarts_once_and_converges(lab: Lab) -> None:
    report = lab.deploy("deploys/containerd.py", lock=NEW)
    assert report["returncode"] == 0, report["stderr"][-3000:]
    ops = changed(report)
    assert sorted(ops[f"containerd {NEW} binaries"]) == sorted(lab.hosts)
    assert sorted(ops["Start or restart containerd (binaries, unit or config changed)"]) == sorted(lab.hosts)
    assert "containerd running and enabled" not in ops  # restarted once, not started again
    for host in lab.hosts:
        assert f"Version:  {NEW}" in lab.ssh(host, "/usr/bin/ctr version")
    assert changed(lab.deploy("deploys/containerd.py", lock=NEW)) == {}


def test_masked_unit_is_unmasked_and_started(lab: Lab) -> None:
    """The setup page's case: `systemctl enable containerd` says the unit is masked (a /dev/null link in /etc)."""
    host = lab.hosts[0]
    unit = "/etc/systemd/system/containerd.service"
    lab.ssh(host, f"systemctl stop containerd && rm {unit} && systemctl mask containerd && systemctl daemon-reload")
    assert lab.ssh(host, f"readlink {unit}").strip() == "/dev/null"
    report = lab.deploy("deploys/containerd.py", lock=NEW)
    assert report["returncode"] == 0, report["stderr"][-3000:]
    assert changed(report)["containerd.service is not masked"] == [host]
    assert lab.ssh(host, "systemctl is-active containerd").strip() == "active"
    assert lab.ssh(host, "systemctl is-enabled containerd").strip() == "enabled"
