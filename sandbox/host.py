"""One sandbox host: an overlay on the image, the files that make it itself, and its systemd-nspawn.

A host lives in ``STATE_DIR/hosts/NAME/``: ``upper/`` and ``work/`` (the overlay's writable layer), ``root/``
(the overlay, mounted on this machine) and ``console.log``. systemd-nspawn boots it with systemd as PID 1, in its
own network namespace on the sandbox bridge (so CAP_NET_ADMIN there: iptables, bridges, Docker), with
``/dev/fuse`` bound in (zfs-fuse), in cgroups of its own (:mod:`.cgroups`) with a cgroup v2 hierarchy inside and
the system calls runc needs (so runc containers start there). nspawn runs in its own session and outlives the
command that started it.

Its container's PID 1 carries ``PYINFRA_ILUVATAR_SANDBOX_HOST=<host directory>`` in its environment and nspawn
carries ``--directory=<root>`` in its argv: :func:`kill` finds both from the directory alone, state file or not.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pyinfra_iluvatar.sandbox import cgroups, network
from pyinfra_iluvatar.sandbox.errors import SandboxError
from pyinfra_iluvatar.sandbox.processes import (
    ProcessRef,
    command_line,
    environment,
    find,
    run,
    start_daemon,
    wait_for,
)

MARKER = "PYINFRA_ILUVATAR_SANDBOX_HOST"
NETWORK_UNIT = "etc/systemd/network/10-pyinfra-iluvatar-sandbox.network"
NSPAWN_RUNTIME = Path("/run/systemd/nspawn/propagate")


@dataclass(frozen=True)
class HostPaths:
    """Where one host's files are."""

    directory: Path

    @property
    def upper(self) -> Path:
        """The overlay's writable layer: everything this host changed."""
        return self.directory / "upper"

    @property
    def work(self) -> Path:
        """overlayfs's work directory."""
        return self.directory / "work"

    @property
    def root(self) -> Path:
        """The host's root file system (the overlay), as this machine sees it."""
        return self.directory / "root"

    @property
    def machine_file(self) -> Path:
        """Holds the host's nspawn machine name, which names its veth and cgroups."""
        return self.directory / "machine"

    def machine(self) -> str | None:
        """The host's nspawn machine name, if it was ever booted."""
        try:
            return self.machine_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    @property
    def console(self) -> Path:
        """The host's console output (its boot messages)."""
        return self.directory / "console.log"

    def console_tail(self, lines: int = 20) -> str:
        """The last lines of the console, for error messages."""
        try:
            return "\n".join(self.console.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no console output)"


@dataclass(frozen=True)
class HostConfig:
    """What makes a host itself and joins it to the sandbox network."""

    name: str
    address: str
    subnet: ipaddress.IPv4Network
    gateway: str
    proxy_port: int
    machine_id: str
    authorized_key: str
    neighbours: Sequence[tuple[str, str]]  # (name, address) of every host in the sandbox


def new_machine_id() -> str:
    """A fresh machine-id (32 hex digits)."""
    return uuid.uuid4().hex


def files(config: HostConfig) -> dict[str, str]:
    """The per-host files, by path relative to the host's root."""
    proxy = f"http://{config.gateway}:{config.proxy_port}"
    no_proxy = ",".join(
        ["localhost", "127.0.0.1", "::1", config.gateway, str(config.subnet)] + [name for name, _ in config.neighbours]
    )
    proxy_variables = {
        "http_proxy": proxy,
        "https_proxy": proxy,
        "no_proxy": no_proxy,
        "HTTP_PROXY": proxy,
        "HTTPS_PROXY": proxy,
        "NO_PROXY": no_proxy,
    }
    hosts = "".join(f"{address}\t{name}\n" for name, address in config.neighbours)
    return {
        "etc/hostname": f"{config.name}\n",
        "etc/machine-id": f"{config.machine_id}\n",
        "etc/hosts": (
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{config.name}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"{config.gateway}\tsandbox-gateway\n{hosts}"
        ),
        NETWORK_UNIT: (
            "# pyinfra-iluvatar sandbox: a static address on the sandbox bridge; no gateway, no route out.\n"
            "# Sorts before the vendor 80-container-host0.network, which would otherwise win.\n"
            "[Match]\nName=host0\n\n"
            f"[Network]\nAddress={config.address}/{config.subnet.prefixlen}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
        ),
        "etc/apt/apt.conf.d/90pyinfra-iluvatar-sandbox-proxy": (
            f'Acquire::http::Proxy "{proxy}";\nAcquire::https::Proxy "{proxy}";\n'
        ),
        "etc/environment": "".join(f"{key}={value}\n" for key, value in proxy_variables.items()),
        "etc/pip.conf": f"[global]\nproxy = {proxy}\n",
        "etc/systemd/system.conf.d/pyinfra-iluvatar-sandbox-proxy.conf": (
            "[Manager]\nDefaultEnvironment="
            + " ".join(f'"{key}={value}"' for key, value in proxy_variables.items())
            + "\n"
        ),
        "root/.ssh/authorized_keys": f"{config.authorized_key}\n",
    }


def mount(paths: HostPaths, image: Path) -> None:
    """Mount the host's overlay on ``image`` (once; a no-op when it is mounted)."""
    if paths.root in mounts_under(paths.directory):
        return
    for directory in (paths.upper, paths.work, paths.root):
        directory.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={image},upperdir={paths.upper},workdir={paths.work},redirect_dir=on"
    run(["mount", "-t", "overlay", "overlay", "-o", options, str(paths.root)])


def configure(paths: HostPaths, config: HostConfig) -> None:
    """Write the per-host files into the mounted overlay (they land in the host's own layer)."""
    ssh_dir = paths.root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    for relative, content in files(config).items():
        path = paths.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    (ssh_dir / "authorized_keys").chmod(0o600)


def boot(paths: HostPaths, machine: str, name: str, machine_id: str, bridge: str) -> ProcessRef:
    """Start systemd-nspawn booting the mounted host, in the host's own cgroups; returns at once."""
    paths.machine_file.write_text(f"{machine}\n")
    # sh moves itself into the host's cgroups, then becomes nspawn: no process of the host starts elsewhere.
    enter = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 1; shift; done; shift; exec "$@"'
    argv = [
        "sh",
        "-c",
        enter,
        "sh",
        *(str(procs) for procs in cgroups.create(machine)),
        "--",
        "systemd-nspawn",
        "--quiet",
        "--boot",
        "--register=no",  # no systemd (machined) on this machine to register with
        "--keep-unit",
        "--settings=no",
        "--link-journal=no",
        f"--directory={paths.root}",
        f"--machine={machine}",
        f"--hostname={name}",
        f"--uuid={uuid.UUID(machine_id)}",
        f"--network-bridge={bridge}",
        "--bind=/dev/fuse",
        # runc (containerd's and Docker's runtime) makes a session keyring and a BPF device filter per container;
        # nspawn's default seccomp filter refuses both.
        "--system-call-filter=@keyring bpf",
        "--resolv-conf=off",
        "--console=read-only",
        f"--setenv={MARKER}={paths.directory}",
        "--setenv=SYSTEMD_COLORS=0",
    ]
    # A cgroup v2 hierarchy of the host's own, even where this machine mounts v1 controllers (which nspawn gives
    # hosts read-only, so runc could not make container cgroups); where v1 owns the controllers, none are enforced.
    return start_daemon(argv, paths.console, env={"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"})


def wait_for_ssh(paths: HostPaths, address: str, process: ProcessRef, timeout: float) -> None:
    """Wait until sshd on ``address`` sends its banner; fail early, with the console, if nspawn exits."""

    ready = wait_for(lambda: not process.alive() or network.answers(address, 22, banner=b"SSH-"), timeout=timeout)
    if not process.alive():
        raise SandboxError(f"{paths.directory.name}: systemd-nspawn exited; console:\n{paths.console_tail()}")
    if not ready:
        raise SandboxError(
            f"{paths.directory.name}: no SSH on {address} after {timeout:.0f} s; console:\n{paths.console_tail()}"
        )


def _nspawn_processes(paths: HostPaths) -> list[ProcessRef]:
    argument = f"--directory={paths.root}"
    return find(lambda pid: argument in command_line(pid))


def _containers(paths: HostPaths) -> list[ProcessRef]:
    marker = f"{MARKER}={paths.directory}"
    return find(lambda pid: marker in environment(pid))


def kill(paths: HostPaths, timeout: float = 15) -> None:
    """Stop the host at once, as a power cut would: SIGKILL its PID 1, then let nspawn exit and clean up.

    Killing the container's PID 1 ends its whole PID namespace; the network namespace and the veth go with it.
    nspawn is killed only if it does not exit by itself; whatever is left in the host's cgroups is killed last.
    """
    machine = paths.machine()

    def kill_containers() -> bool:
        """SIGKILL the container's processes; whether there were none. Asked again and again: an nspawn that was
        still starting (a killed `up`) makes its container after the first look, and waits for it to exit."""
        containers = _containers(paths)
        for container in containers:
            container.signal(signal.SIGKILL)
        return not containers

    def nspawns_gone() -> bool:
        kill_containers()
        for process in nspawns:
            process.reap()
        return not any(process.alive() for process in nspawns)

    # Each look scans all of /proc, and hosts are killed in parallel: look five times a second, not twenty.
    nspawns = _nspawn_processes(paths)
    if not wait_for(nspawns_gone, timeout=timeout, interval=0.2):
        for process in nspawns:
            process.signal(signal.SIGKILL)
    if not wait_for(lambda: kill_containers() and not _nspawn_processes(paths), timeout=timeout, interval=0.2):
        raise SandboxError(f"{paths.directory.name}: its processes did not exit within {timeout:.0f} s")
    if machine:
        kill_cgroup(machine, timeout)


def kill_cgroup(machine: str, timeout: float = 15) -> None:
    """Kill whatever is left in the cgroups of host ``machine``, remove them and nspawn's runtime directory."""
    cgroups.kill(machine)
    if not wait_for(lambda: not cgroups.processes(machine), timeout=timeout):
        raise SandboxError(f"{machine}: processes in its cgroups did not exit within {timeout:.0f} s")
    cgroups.remove(machine)
    leftover = NSPAWN_RUNTIME / machine  # nspawn removes this itself, unless it was killed
    if leftover.is_dir() and not mounts_under(leftover):
        shutil.rmtree(leftover)


def _unescape(field: bytes) -> str:
    """A path in mountinfo: raw bytes, but for space, tab, newline and backslash written as ``\\NNN`` (octal)."""
    return os.fsdecode(re.sub(rb"\\([0-7]{3})", lambda octal: bytes([int(octal[1], 8)]), field))


def mounts_under(directory: Path, mountinfo: bytes | None = None) -> list[Path]:
    """Mount points at or below ``directory`` on this machine (or in ``mountinfo``), deepest first."""
    prefix = str(directory).rstrip("/")
    points = []
    text = Path("/proc/self/mountinfo").read_bytes() if mountinfo is None else mountinfo
    for line in text.splitlines():
        point = _unescape(line.split()[4])
        if point == prefix or point.startswith(prefix + "/"):
            points.append(Path(point))
    return sorted(points, key=lambda point: len(point.parts), reverse=True)


def unmount_all(directory: Path) -> None:
    """Unmount everything at or below ``directory``."""
    for point in mounts_under(directory):
        run(["umount", str(point)])
