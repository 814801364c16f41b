"""
Facts about block devices (and files) before this package writes to them: whether each one exists and
which low-level signatures it holds (a filesystem, a partition table, a ZFS label, swap, an LVM or RAID
member), so an operation can refuse to put a pool on a device that is not blank.
"""

from __future__ import annotations

import re
import shlex
from typing import Literal, TypedDict

from pyinfra.api.exceptions import FactProcessError
from pyinfra.api.facts import FactBase
from typing_extensions import override

from pyinfra_iluvatar.facts._inband import separated, split_separated

DeviceKind = Literal["block", "file", "directory", "other"]

_KINDS: dict[str, DeviceKind | None] = {
    "block": "block",
    "file": "file",
    "directory": "directory",
    "other": "other",
    "missing": None,
}
_DEVICE = "device="
_KIND = "kind="
_EXPORT_LINE = re.compile(r"(?P<key>[A-Z][A-Z0-9_]*)=(?P<value>.*)")
_ESCAPE = re.compile(r"\\(.)")

# blkid's exit statuses (blkid(8)): 0 something found, 2 nothing found (or the device could not be read: then
# it says why on stderr), 4 usage error, 8 ambivalent low-level probing result.
BLKID_FOUND = 0
BLKID_NOTHING = 2
BLKID_AMBIVALENT = 8


class DeviceSignature(TypedDict):
    """One path as ``test`` and ``blkid -p -o export`` see it."""

    exists: bool
    """Whether the path exists (a symlink such as ``/dev/disk/by-id/...`` counts when its target exists)."""
    kind: DeviceKind | None
    """``block`` (a block device), ``file`` (a regular file), ``directory``, ``other`` (a character device,
    a FIFO, ...); ``None`` when the path does not exist. Only ``block`` and ``file`` are probed."""
    status: int | None
    """blkid's exit status: ``0`` something found, ``2`` nothing found, ``8`` ambivalent (more than one
    signature, blkid will not say which wins); ``None`` when the path was not probed (missing, not a block
    device or file)."""
    type: str | None
    """``TYPE``: the superblock blkid found: ``ext4``, ``xfs``, ``swap``, ``zfs_member``, ``LVM2_member``,
    ``linux_raid_member``, ``crypto_LUKS``, ...; ``None`` when none."""
    usage: str | None
    """``USAGE``: ``filesystem``, ``raid`` (LVM and MD members), ``crypto``, ``other`` (swap)."""
    label: str | None
    """``LABEL``: the filesystem label; for ``zfs_member`` the pool's name."""
    uuid: str | None
    """``UUID``: the filesystem's UUID; for ``zfs_member`` the pool's GUID."""
    partition_table: str | None
    """``PTTYPE``: ``gpt``, ``dos``, ...; ``None`` when no partition table was found."""
    zfs_pool: str | None
    """The pool a ``zfs_member`` label belongs to (its ``LABEL``); ``None`` for anything else."""
    ambivalent: bool
    """Whether blkid found several signatures and refused to choose (exit 8): the device is not blank."""
    message: str | None
    """What blkid said on stderr (the ambivalent result's explanation); ``None`` when it said nothing."""
    values: dict[str, str]
    """Every ``KEY=value`` blkid printed (``DEVNAME``, ``VERSION``, ``BLOCK_SIZE``, ``PTUUID``, ``UUID_SUB``,
    ``PART_ENTRY_*`` for a partition, ...), blkid's backslash escapes undone (``VERSION=LVM2 001``); bytes
    above 127 stay in blkid's ``M-`` notation."""


def _unescape(value: str) -> str:
    """Undo ``blkid -o export``'s shell escaping (a backslash before space, quotes, ``$``, ...)."""
    return _ESCAPE.sub(lambda match: match[1], value)


def _not_probed(kind: DeviceKind | None) -> DeviceSignature:
    return {
        "exists": kind is not None,
        "kind": kind,
        "status": None,
        "type": None,
        "usage": None,
        "label": None,
        "uuid": None,
        "partition_table": None,
        "zfs_pool": None,
        "ambivalent": False,
        "message": None,
        "values": {},
    }


def _probed(path: str, kind: DeviceKind, lines: list[str]) -> DeviceSignature:
    what = f"blkid -p -o export {path}"
    result = split_separated(lines, what)
    if result.status == BLKID_NOTHING and result.stderr:
        # Exit 2 with a message: blkid could not read the device (permission denied, I/O error), which is not
        # "nothing found".
        raise FactProcessError(f"`{what}` exited with status 2: {result.stderr}")
    if result.status not in (BLKID_FOUND, BLKID_NOTHING, BLKID_AMBIVALENT):
        raise FactProcessError(f"`{what}` exited with status {result.status}: {result.stderr or 'no message'}")
    values: dict[str, str] = {}
    for line in result.stdout:
        match = _EXPORT_LINE.fullmatch(line)
        if match is None:
            raise FactProcessError(f"not a `{what}` KEY=value line: {line!r}")
        values[match["key"]] = _unescape(match["value"])
    if result.status == BLKID_FOUND and not values:
        raise FactProcessError(f"`{what}` exited with status 0 but printed nothing")
    if result.status != BLKID_FOUND and values:
        raise FactProcessError(f"`{what}` exited with status {result.status} but printed {result.stdout!r}")
    fs_type = values.get("TYPE")
    return {
        "exists": True,
        "kind": kind,
        "status": result.status,
        "type": fs_type,
        "usage": values.get("USAGE"),
        "label": values.get("LABEL"),
        "uuid": values.get("UUID"),
        "partition_table": values.get("PTTYPE"),
        "zfs_pool": values.get("LABEL") if fs_type == "zfs_member" else None,
        "ambivalent": result.status == BLKID_AMBIVALENT,
        "message": result.stderr or None,
        "values": values,
    }


def found_on(signature: DeviceSignature) -> list[str]:
    """
    What ``signature`` says the device holds, in words (``["a filesystem (TYPE=ext4, LABEL=data, UUID=…)"]``,
    ``["a partition table (PTTYPE=gpt)"]``, ``["a ZFS label of pool 'tank'"]``); ``[]`` when it exists and blkid found
    nothing (or only ``PART_ENTRY_*`` values: a blank partition). A missing path is ``["nothing: it does not
    exist"]``.
    """
    if not signature["exists"]:
        return ["nothing: it does not exist"]
    found: list[str] = []
    if signature["ambivalent"]:
        found.append("more than one signature (blkid: ambivalent result; `wipefs` lists them)")
    fs_type, usage = signature["type"], signature["usage"]
    if fs_type == "zfs_member":
        pool = signature["zfs_pool"]
        found.append(f"a ZFS label of pool {pool!r}" if pool else "a ZFS label")
    elif fs_type is not None:
        ids = [("TYPE", fs_type), ("LABEL", signature["label"]), ("UUID", signature["uuid"])]
        shown = ", ".join(f"{key}={value}" for key, value in ids if value)
        what = {"filesystem": "a filesystem", "raid": "a RAID or LVM member", "crypto": "an encrypted volume"}
        found.append(f"{'swap' if fs_type == 'swap' else what.get(usage or '', 'a signature')} ({shown})")
    if signature["partition_table"] is not None:
        found.append(f"a partition table (PTTYPE={signature['partition_table']})")
    return found


class DeviceSignatures(FactBase["dict[str, DeviceSignature] | None"]):
    """
    Returns, for each path in ``devices`` (absolute paths: ``/dev/disk/by-id/...``, ``/dev/sdb``, or a
    regular file such as a pool's vdev file), whether it exists, what it is (block device, regular file,
    ...) and which low-level signatures ``blkid -p`` finds on it: a filesystem (``ext4``, ``xfs``, ...), a
    partition table (``gpt``, ``dos``), a ZFS label (``zfs_member``, with the pool's name as ``LABEL``),
    swap, LVM or RAID members; or several at once (``ambivalent``). One round trip for all paths, keyed by
    path in the order given. A missing path and a blank one are states, not failures; a device blkid cannot
    read (permission denied) fails the host with blkid's message. ``None`` when ``blkid`` is not installed.

    ``-p`` reads the device itself (no cache), so it sees what is on the disk now, also on a device that is
    in use; it needs root to read block devices.

    Runs, for each path: ``test -b``/``-f``/``-d``/``-e`` and, for a block device or a regular file, ``blkid
    -p -o export PATH`` with its exit status and error output captured in-band.

    .. code:: python

        {
            "/dev/disk/by-id/nvme-Samsung_SSD_980_1TB_S64ANS0T1": {
                "exists": True,
                "kind": "block",
                "status": 0,
                "type": "zfs_member",
                "usage": "filesystem",
                "label": "scratch",
                "uuid": "13173812069280072009",
                "partition_table": None,
                "zfs_pool": "scratch",
                "ambivalent": False,
                "message": None,
                "values": {"DEVNAME": "/dev/disk/by-id/nvme-…", "VERSION": "5000", "LABEL": "scratch", ...},
            },
            "/dev/disk/by-id/nvme-Samsung_SSD_980_1TB_S64ANS0T2": {
                "exists": True, "kind": "block", "status": 2, "type": None, ..., "values": {},
            },
            "/dev/disk/by-id/nvme-gone": {"exists": False, "kind": None, "status": None, ..., "values": {}},
        }
    """

    @override
    def requires_command(self, devices: list[str]) -> str:
        return "blkid"

    @override
    def command(self, devices: list[str]) -> str:
        paths = " ".join(shlex.quote(device) for device in devices)
        probe = separated('blkid -p -o export "$d"')
        return (
            f"for d in {paths}; do printf '{_DEVICE}%s\\n' \"$d\";"
            ' if [ -b "$d" ]; then k=block; elif [ -f "$d" ]; then k=file; elif [ -d "$d" ]; then k=directory;'
            ' elif [ -e "$d" ]; then k=other; else k=missing; fi;'
            f' echo "{_KIND}$k"; case $k in block|file) {probe};; esac; done'
        )

    @override
    def process(self, output: list[str]) -> dict[str, DeviceSignature]:
        sections: list[tuple[str, list[str]]] = []
        for line in output:
            if line.startswith(_DEVICE):
                sections.append((line.removeprefix(_DEVICE), []))
            elif not sections:
                raise FactProcessError(f"device signature probe output does not start with a device: {line!r}")
            else:
                sections[-1][1].append(line)
        devices: dict[str, DeviceSignature] = {}
        for path, lines in sections:
            if not lines or not lines[0].startswith(_KIND) or lines[0].removeprefix(_KIND) not in _KINDS:
                raise FactProcessError(f"no kind=block|file|directory|other|missing line for {path!r}: {lines!r}")
            kind = _KINDS[lines[0].removeprefix(_KIND)]
            if kind in ("block", "file"):
                devices[path] = _probed(path, kind, lines[1:])
            elif len(lines) > 1:
                raise FactProcessError(f"unexpected lines for {path!r}, which is not probed: {lines[1:]!r}")
            else:
                devices[path] = _not_probed(kind)
        return devices
