"""The lab the end-to-end tests deploy to: sandbox hosts, and a local server on the sandbox's gateway that plays
GitHub, go.dev and a mirror with release-shaped archives repacked from Debian's real binaries (containerd 1.6.20 and
1.7.24, CNI plugins 1.1.1, a cnitool built from Debian's sources), with lock files made by the real
``pyinfra-iluvatar lock`` against it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyinfra_iluvatar.tests.support.debian_artifacts import DebianArtifacts, build_debian_artifacts
from pyinfra_iluvatar.tests.support.fake_upstream import FakeFile, FakeUpstream
from pyinfra_iluvatar.tests.support.sandbox import BIN, SandboxSession

OLD, NEW = "1.6.20", "1.7.24"
"""The containerd versions the lab has lock files for."""
BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr")
SANDBOX_NOFILE = 20000
"""The hard ``nofile`` cap of the machine the sandbox runs on (README): a unit asking for more cannot start."""
RESET = (
    "systemctl stop containerd 2>/dev/null; if command -v zpool >/dev/null; then zpool destroy -f ilu-pool; fi;"
    " rm -rf /var/lib/pyinfra-iluvatar /opt/cni /etc/iluvatar /etc/containerd /var/lib/iluvatar"
    " /usr/local/bin/containerd /usr/local/bin/containerd-shim* /usr/local/bin/ctr"
    " /etc/systemd/system/containerd.service /etc/systemd/system/iluvatar-zpool-*.service;"
    " if [ -L /usr/bin/ctr ]; then rm -f /usr/bin/ctr; fi; systemctl daemon-reload"
)
"""What the worker deploy made on a sandbox host, undone (its packages stay): each test module starts from it."""
SANDBOX_WORKER: dict[str, Any] = {
    "iluvatar_zfs_implementation": "zfs-fuse",  # no ZFS kernel module on this machine
    "iluvatar_snapshotter": "native",  # containerd's zfs snapshotter refuses zfs-fuse's mounts; overlayfs cannot
    # stack on the hosts' overlay root
    "iluvatar_zfs_vdev_size": "256M",
    "iluvatar_hardware_interface": "host0",  # sandbox hosts have no default route
}
"""What a worker deploy on sandbox hosts needs beyond the lab's lock and prebuilt cnitool (README, Sandbox)."""


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
            "iluvatar_nofile_limit": SANDBOX_NOFILE,
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

    def deploy_worker(self, host: str, **data: object) -> dict[str, Any]:
        """The whole worker deploy on ``host`` alone with the sandbox's settings (:data:`SANDBOX_WORKER`)."""
        arguments = self.data_arguments(OLD, **{**SANDBOX_WORKER, **data})
        result = self.session.pyinfra("--json", "--limit", host, *arguments, "deploys/worker.py")
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


def lock(upstream: FakeUpstream, path: Path, containerd: str, arches: tuple[str, ...] = ("amd64", "arm64")) -> Path:
    """Run the real ``pyinfra-iluvatar lock`` against the fake upstream, for ``arches``."""
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
            *[option for arch in arches for option in ("--arch", arch)],
            "--containerd",
            containerd,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return path


@contextmanager
def running_lab(sandbox: SandboxSession, folder: Path, clean_up: bool = True) -> Iterator[Lab]:
    """
    The lab on ``sandbox``'s hosts, lock files in ``folder``; afterwards (``clean_up``) the hosts are reset
    (:data:`RESET`) for the next test module.
    """
    artifacts = build_debian_artifacts()
    with FakeUpstream(artifacts.fake_repos(), go=artifacts.fake_go(), host=sandbox.sandbox.gateway) as upstream:
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
        for host in sandbox.hosts if clean_up else ():
            sandbox.ssh(host.name, RESET, timeout=120)
