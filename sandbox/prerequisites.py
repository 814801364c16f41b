"""What ``sandbox up`` needs on this machine, checked first, with errors that say what to do.

On Debian or Ubuntu, as root, missing tools are installed with apt-get; elsewhere the error names the package.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from pyinfra_iluvatar.sandbox.errors import PrerequisiteError
from pyinfra_iluvatar.sandbox.processes import run

# command -> the Debian package that has it
TOOLS = {
    "systemd-nspawn": "systemd-container",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "mount": "mount",
}
BUILD_TOOLS = {"debootstrap": "debootstrap"}
DEBIAN_KEYRING = (Path("/usr/share/keyrings/debian-archive-keyring.gpg"), "debian-archive-keyring")


def missing_packages(*, building: bool) -> list[str]:
    """Debian packages to install before the sandbox can run (and build an image, if ``building``)."""
    tools = {**TOOLS, **(BUILD_TOOLS if building else {})}
    packages = {package for command, package in tools.items() if shutil.which(command) is None}
    keyring, package = DEBIAN_KEYRING
    if building and not keyring.exists():
        packages.add(package)
    return sorted(packages)


def _kernel_has(filesystem: str) -> bool:
    return any(line.split()[-1] == filesystem for line in Path("/proc/filesystems").read_text().splitlines())


def _load_module(module: str) -> None:
    """Try to load a kernel module; whether it worked is checked by the caller."""
    if shutil.which("modprobe"):
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(["modprobe", module], capture_output=True, timeout=60, check=False)


def apt_install(packages: list[str], say: Callable[[str], None], why: str = "") -> None:
    """Install Debian ``packages`` on this machine with apt-get (lists refreshed first), saying so (and ``why``)."""
    say(f"installing {', '.join(packages)} with apt-get{f' ({why})' if why else ''}")
    run(["apt-get", "update", "-qq"], timeout=600)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], timeout=1200)


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_PER_HOST = 64
"""inotify instances a sandbox host may use (a worker uses about 10: systemd 5, logind, dbus, getty, containerd's
CRI plugin; Docker more). Sandbox hosts are root's processes on this machine and share its per-user limit, which
defaults to 128: 16 workers exhaust it, and containerd's CRI plugin then fails to load ("too many open files")."""


def inotify_room(hosts: int, say: Callable[[str], None], limit: Path = INOTIFY_INSTANCES) -> None:
    """Raise this machine's ``fs.inotify.max_user_instances`` to fit ``hosts`` more sandbox hosts (never lower)."""
    current = int(limit.read_text())
    wanted = 128 + INOTIFY_PER_HOST * hosts
    if current < wanted:
        say(f"raising fs.inotify.max_user_instances from {current} to {wanted} (sandbox hosts share root's inotify)")
        limit.write_text(f"{wanted}\n")


def check(*, building: bool, say: Callable[[str], None]) -> None:
    """Raise :class:`PrerequisiteError` unless this machine can run the sandbox; install what apt-get can."""
    if os.geteuid() != 0:
        raise PrerequisiteError(
            "the sandbox needs root (it mounts overlays, creates a bridge and boots containers):"
            " run it with sudo or as root"
        )
    packages = missing_packages(building=building)
    if packages and shutil.which("apt-get"):
        apt_install(packages, say)
        packages = missing_packages(building=building)
    if packages:
        tools = {**TOOLS, **BUILD_TOOLS}
        commands = [command for command, package in tools.items() if package in packages]
        raise PrerequisiteError(
            f"missing {', '.join(commands) or 'the Debian archive keyring'}: install the package(s)"
            f" {', '.join(packages)}"
        )
    if not _kernel_has("overlay"):
        _load_module("overlay")
        if not _kernel_has("overlay"):
            raise PrerequisiteError(
                "this kernel has no overlayfs (modprobe overlay did not help): sandbox hosts run on overlays"
            )
    if not Path("/dev/fuse").exists():
        _load_module("fuse")
        if not Path("/dev/fuse").exists():
            raise PrerequisiteError("there is no /dev/fuse (modprobe fuse did not help): hosts need it for zfs-fuse")
