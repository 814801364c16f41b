"""A cgroup of its own for each host, so hosts' systemds never share (and fight over) one cgroup tree.

Without systemd on this machine, nspawn runs with ``--keep-unit --register=no`` and puts its container in
``payload/`` under the cgroup it was started in. Hosts started from one cgroup would share ``payload/`` and so
``payload/system.slice/…``: one host's systemd stopping a unit would kill another host's processes. So each
host's nspawn is started in ``pyinfra-iluvatar-sandbox/MACHINE`` of the hierarchies that track processes
(cgroup v2, and v1 ``name=systemd`` where mounted). v1 controllers are left alone: hosts do not see them.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from pyinfra_iluvatar.sandbox.processes import ProcessRef

TOP = "pyinfra-iluvatar-sandbox"


def hierarchies(mountinfo: str | None = None) -> list[Path]:
    """Mount points of the hierarchies systemd tracks processes in: cgroup2, and v1 ``name=systemd``."""
    text = Path("/proc/self/mountinfo").read_text() if mountinfo is None else mountinfo
    found = []
    for line in text.splitlines():
        fields = line.split()
        separator = fields.index("-")
        point, fstype, options = fields[4], fields[separator + 1], fields[separator + 3].split(",")
        if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in options):
            found.append(Path(point))
    return found


def create(machine: str) -> list[Path]:
    """Create the host's cgroups; return their ``cgroup.procs`` files (write a pid there to move it in)."""
    files = []
    for hierarchy in hierarchies():
        group = hierarchy / TOP / machine
        group.mkdir(parents=True, exist_ok=True)
        files.append(group / "cgroup.procs")
    return files


def machines(prefix: str) -> list[str]:
    """Machine names with cgroups here that start with ``prefix``."""
    names = {
        group.name
        for hierarchy in hierarchies()
        if (hierarchy / TOP).is_dir()
        for group in (hierarchy / TOP).iterdir()
        if group.is_dir() and group.name.startswith(prefix)
    }
    return sorted(names)


def _groups(machine: str) -> list[Path]:
    """The host's cgroup directories, deepest first."""
    groups: list[Path] = []
    for hierarchy in hierarchies():
        top = hierarchy / TOP / machine
        if top.is_dir():
            groups += [Path(path) for path, _, _ in os.walk(top, topdown=False)]
    return groups


def processes(machine: str) -> list[ProcessRef]:
    """Every process in the host's cgroups."""
    found = []
    for group in _groups(machine):
        try:
            pids = (group / "cgroup.procs").read_text().split()
        except FileNotFoundError:  # the group was removed (by the host's systemd) after the walk
            continue
        for pid in pids:
            ref = ProcessRef.of(int(pid))
            if ref is not None and ref.alive():
                found.append(ref)
    return found


def kill(machine: str) -> None:
    """SIGKILL every process in the host's cgroups."""
    for process in processes(machine):
        process.signal(signal.SIGKILL)


def remove(machine: str) -> None:
    """Remove the host's (empty) cgroups, and the top one when no host is left in it."""
    for group in _groups(machine):
        with contextlib.suppress(FileNotFoundError):
            group.rmdir()
    for hierarchy in hierarchies():
        with contextlib.suppress(OSError):  # another host is still there, or was removed at the same time
            (hierarchy / TOP).rmdir()
