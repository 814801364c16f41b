"""
Facts about ZFS, as the Ilúvatar worker's containerd ``zfs`` snapshotter needs it: which ZFS the host runs
(kernel OpenZFS or zfs-fuse), its pools and their health, dataset properties, and pools that sit exported
in a directory of file vdevs (a file-vdev pool is not found by a device scan after a reboot: it needs
``zpool import -d DIR``).

Every ``zpool``/``zfs`` command here runs with its exit status and error output captured in-band, so a
host where ZFS does not answer (the zfs-fuse daemon stopped, the OpenZFS module not loaded) gives ``None``
instead of failing the host, a host with no pools gives an empty result, and any other error still fails
the host with the tool's own message. The commands and property names are the ones both implementations
accept: zfs-fuse 0.7 has no ``zpool status -P``, no ``zpool list -p``, no ``zpool get`` without a pool
and no ``zfs get -t``.
"""

from __future__ import annotations

import re
import shlex
from typing import Literal, NamedTuple, TypedDict

from pyinfra.api.exceptions import FactProcessError
from pyinfra.api.facts import FactBase
from typing_extensions import override

from pyinfra_iluvatar.facts._inband import Captured, separated, split_separated

# What libzfs prints when there is no ZFS to talk to: OpenZFS's libzfs_error_init() messages for a missing
# module or /dev/zfs, and zfs-fuse's when its daemon's socket is missing. Anything else (not root, a libzfs
# failure of another kind) fails the host with the tool's message.
_NOT_ANSWERING = (
    "The ZFS modules are not loaded",
    "The ZFS modules cannot be auto-loaded",
    "/dev/zfs and /proc/self/mounts are required",
    "Please make sure that the zfs-fuse daemon is running",
)
_NO_SUCH_POOL = re.compile(r"cannot open '[^']*': no such pool")
_NO_SUCH_DATASET = re.compile(r"cannot open '[^']*': dataset does not exist")
_NO_POOLS = "no pools available"
_NO_POOLS_TO_IMPORT = "no pools available to import"
_NO_DIRECTORY = "directory-absent"

# A header line (`  pool: tank`, ` state: ONLINE`, `config:`): a key right-aligned in at most six spaces.
# Continuation lines of a header start with a tab (or, copied from a terminal, with more spaces).
_HEADER_LINE = re.compile(r" {0,6}(?P<key>[a-z]+):(?: (?P<value>.*))?")
_VDEV_STATES = frozenset(
    {"ONLINE", "DEGRADED", "FAULTED", "OFFLINE", "UNAVAIL", "REMOVED", "SUSPENDED", "AVAIL", "INUSE"}
)
_ERROR_COUNT = re.compile(r"\d+(?:\.\d+)?[KMGTPE]?")
_STATUS_COLUMNS = ["NAME", "STATE", "READ", "WRITE", "CKSUM"]
_TOKEN = re.compile(r"\S+")

LIST_PROPERTIES = ("name", "size", "allocated", "free", "capacity", "dedupratio", "health", "altroot")
"""The pool properties ``ZpoolList`` asks for, in order (names both OpenZFS and zfs-fuse accept)."""

DATASET_PROPERTIES = (
    "type",
    "mountpoint",
    "mounted",
    "compression",
    "atime",
    "recordsize",
    "quota",
    "readonly",
    "used",
    "available",
    "referenced",
)
"""The dataset properties ``ZfsDatasetProperties`` asks for (names both OpenZFS and zfs-fuse accept)."""


class Vdev(TypedDict):
    """One line of a pool's ``config:`` tree in ``zpool status`` or ``zpool import``, with its children."""

    name: str
    """The vdev as printed: the pool itself, ``mirror-0``, ``raidz1-0``, a device or file path, a GUID
    for a missing device, or a group heading (``logs``, ``cache``, ``spares``, ``special``)."""
    state: str | None
    """``ONLINE``, ``DEGRADED``, ``FAULTED``, ``OFFLINE``, ``UNAVAIL``, ``REMOVED``; ``AVAIL``/``INUSE``
    for spares; ``None`` for a group heading."""
    read: str | None
    """READ error count exactly as printed (``"0"``, ``"43.5K"``: OpenZFS abbreviates counts from 1000
    on, so these stay strings); ``None`` where the line has no counts (spares, ``zpool import``)."""
    write: str | None
    """WRITE error count as printed, like ``read``."""
    cksum: str | None
    """CKSUM error count as printed, like ``read``."""
    note: str | None
    """Text after the columns: ``too many errors``, ``was /dev/sdb``, ``cannot open``,
    ``insufficient replicas``, ``308K repaired``; ``None`` when there is none."""
    children: list[Vdev]
    """The vdevs printed under this one, one level deeper."""


class PoolStatus(TypedDict):
    """One pool as ``zpool status`` describes it."""

    name: str
    """The pool's name."""
    state: str
    """The pool's state: ``ONLINE``, ``DEGRADED``, ``FAULTED``, ``UNAVAIL``, ``SUSPENDED``. A pool can
    be ``ONLINE`` while one of its vdevs is ``FAULTED``: look at ``config`` too."""
    status: str | None
    """The ``status:`` text (what is wrong), continuation lines joined with spaces; ``None`` when healthy."""
    action: str | None
    """The ``action:`` text (what to do about it); ``None`` when healthy."""
    see: str | None
    """The ``see:`` link to the message's article."""
    scan: str | None
    """The last or running scrub/resilver: OpenZFS's ``scan:`` line, zfs-fuse's ``scrub:`` line
    (``none requested``); ``None`` when the pool was never scanned (newer OpenZFS prints no line then)."""
    config: list[Vdev]
    """The vdev tree: the pool's root vdev first, then any group headings (``logs``, ``spares``, …)."""
    errors: str | None
    """The ``errors:`` text: ``No known data errors``, ``1 data errors, use '-v' for a list``; ``None``
    when not printed."""
    other: dict[str, str]
    """Any other header line, by key (``remove``, ``checkpoint``, ``expand``, …)."""


class PoolListEntry(TypedDict):
    """One pool's ``zpool list`` properties, exactly as printed (sizes are human-readable)."""

    size: str
    """Total size (``"123M"``, ``"3.62T"``)."""
    allocated: str
    """Space allocated."""
    free: str
    """Space free."""
    capacity: str
    """Percentage allocated (``"0%"``)."""
    dedupratio: str
    """Deduplication ratio (``"1.00x"``)."""
    health: str
    """``ONLINE``, ``DEGRADED``, ``FAULTED``, ``OFFLINE``, ``UNAVAIL``, ``REMOVED``, ``SUSPENDED``."""
    altroot: str
    """Alternate root (``"-"`` when none)."""


class DatasetProperty(TypedDict):
    """A dataset property's value and where it comes from, as ``zfs get`` prints them."""

    value: str
    """The value (``"/var/lib/containerd/io.containerd.snapshotter.v1.zfs"``, ``"yes"``, ``"-"``)."""
    source: str
    """``local``, ``default``, ``inherited from <dataset>``, ``received``, ``temporary``, or ``-``."""


class ImportablePool(TypedDict):
    """A pool that ``zpool import -d DIR`` could import, as it describes it."""

    name: str
    """The pool's name."""
    id: str
    """The pool's GUID (two exported pools may share a name, never an id)."""
    state: str
    """``ONLINE`` (importable as is), ``DEGRADED`` (importable, redundancy lost), ``UNAVAIL``/``FAULTED``
    (cannot be imported: devices missing)."""
    status: str | None
    """The ``status:`` text; ``None`` when nothing is wrong."""
    action: str | None
    """The ``action:`` text: whether and how it can be imported."""
    see: str | None
    """The ``see:`` link."""
    config: list[Vdev]
    """The vdev tree as found in ``DIR`` (no error counts)."""
    remarks: str | None
    """Text printed after the tree (zfs-fuse: ``Additional devices are known to be part of this pool…``)."""
    other: dict[str, str]
    """Any other header line, by key (``comment``, …)."""


class ZfsImplementationInfo(TypedDict):
    """Which ZFS the host has, and the pieces a deploy checks before it uses one."""

    kind: Literal["openzfs", "zfs-fuse", "none"]
    """``openzfs`` when the ``zfs`` kernel module is loaded; otherwise ``zfs-fuse`` when its daemon binary
    is installed; otherwise ``none``."""
    version: str | None
    """OpenZFS: the loaded module's version (``/sys/module/zfs/version``, e.g. ``"2.2.2-0ubuntu9.1"``).
    zfs-fuse: the installed Debian package version (``"0.7.0-25+b1"``), ``None`` without dpkg."""
    module_loaded: bool
    """Whether the ``zfs`` kernel module is loaded (``/sys/module/zfs`` exists)."""
    module_available: str | None
    """Version of a ``zfs`` module the running kernel could load (``modinfo``); ``None`` when none is
    installed (Debian without zfs-dkms) or ``modinfo`` is missing."""
    zfs_fuse: str | None
    """Path of the ``zfs-fuse`` daemon binary, ``None`` when not installed."""
    zfs_fuse_running: bool
    """Whether a ``zfs-fuse`` process runs (from ``/proc/*/comm``)."""
    zpool: str | None
    """Path of the ``zpool`` command (OpenZFS's ``zfsutils-linux`` or zfs-fuse's), ``None`` when absent."""


def _require_not_answering(result: Captured, what: str) -> None:
    """Raise unless ``what`` failed because ZFS is not there to answer (the fact then returns ``None``)."""
    if any(message in result.stderr for message in _NOT_ANSWERING):
        return
    raise FactProcessError(f"`{what}` exited with status {result.status}: {result.stderr or 'no message'}")


class _Block(NamedTuple):
    headers: dict[str, str]
    config: list[str]
    trailing: list[str]


def _is_continuation(line: str) -> bool:
    return line.startswith("\t") or line.startswith(" " * 7)


def _blocks(lines: list[str], what: str) -> list[_Block]:
    """
    Split ``zpool status``/``zpool import`` output into one block per ``pool:`` header: its header lines
    (continuation lines joined with spaces, a repeated key's values joined with newlines), the lines of
    its ``config:`` tree, and any text after the tree that is not a header.
    """
    blocks: list[_Block] = []
    stage = "headers"
    last_key: str | None = None
    for line in lines:
        header = None if _is_continuation(line) else _HEADER_LINE.fullmatch(line)
        if header is not None and header["key"] == "pool":
            blocks.append(_Block({}, [], []))
            stage, last_key = "headers", None
        if not blocks:
            if line.strip():
                raise FactProcessError(f"`{what}` output does not start with a pool: {line!r}")
            continue
        block = blocks[-1]
        if stage == "config":
            if header is None:
                if line.strip():
                    block.config.append(line)
                elif block.config:
                    stage = "after-config"
                continue
            stage = "after-config"
        if not line.strip():
            continue
        if header is not None:
            key, value = header["key"], (header["value"] or "").strip()
            block.headers[key] = f"{block.headers[key]}\n{value}" if key in block.headers else value
            last_key = key
            if key == "config":
                stage = "config"
        elif stage == "headers" and last_key is not None and _is_continuation(line):
            block.headers[last_key] = f"{block.headers[last_key]} {line.strip()}"
        elif stage == "after-config":
            block.trailing.append(line.strip())
        else:
            raise FactProcessError(f"unexpected line in `{what}` output: {line!r}")
    return blocks


def _leading(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _vdev(rest: str, with_counts: bool, what: str) -> Vdev:
    """One vdev line without its indentation: name, state, error counts (``zpool status``), note."""
    tokens = list(_TOKEN.finditer(rest))
    state_at = next((index for index, token in enumerate(tokens) if index and token[0] in _VDEV_STATES), None)
    if state_at is None:
        if len(tokens) != 1:
            raise FactProcessError(f"no vdev state in `{what}` line: {rest!r}")
        return {
            "name": tokens[0][0],
            "state": None,
            "read": None,
            "write": None,
            "cksum": None,
            "note": None,
            "children": [],
        }
    after = tokens[state_at + 1 :]
    counts: list[str | None] = [None, None, None]
    if with_counts and len(after) >= 3 and all(_ERROR_COUNT.fullmatch(token[0]) for token in after[:3]):
        counts = [token[0] for token in after[:3]]
        after = after[3:]
    return {
        "name": rest[: tokens[state_at].start()].rstrip(),
        "state": tokens[state_at][0],
        "read": counts[0],
        "write": counts[1],
        "cksum": counts[2],
        "note": rest[after[0].start() :].strip() if after else None,
        "children": [],
    }


def _config_tree(lines: list[str], status_columns: bool, what: str) -> list[Vdev]:
    """
    The vdev tree of a ``config:`` block. ``zpool status`` prints a ``NAME STATE READ WRITE CKSUM`` header
    first; ``zpool import`` prints none. Each level is indented two more spaces than its parent.
    """
    if not lines:
        return []
    body = lines
    if status_columns:
        if lines[0].split() != _STATUS_COLUMNS:
            raise FactProcessError(f"`{what}` config has no NAME/STATE/READ/WRITE/CKSUM header: {lines[0]!r}")
        body = lines[1:]
    base = _leading(lines[0])
    roots: list[Vdev] = []
    stack: list[Vdev] = []
    for line in body:
        indent = _leading(line)
        extra = indent[len(base) :]
        if not indent.startswith(base) or extra.strip(" ") or len(extra) % 2:
            raise FactProcessError(f"unexpected indentation in `{what}` config: {line!r}")
        depth = len(extra) // 2
        if depth > len(stack):
            raise FactProcessError(f"`{what}` config line is nested too deep: {line!r}")
        del stack[depth:]
        node = _vdev(line[len(indent) :], status_columns, what)
        (stack[-1]["children"] if stack else roots).append(node)
        stack.append(node)
    return roots


_STATUS_KEYS = {"pool", "state", "status", "action", "see", "scan", "scrub", "config", "errors"}
_IMPORT_KEYS = {"pool", "id", "state", "status", "action", "see", "config"}


def _pool_status(block: _Block, what: str) -> PoolStatus:
    headers = block.headers
    if "state" not in headers or "config" not in headers:
        raise FactProcessError(f"`{what}` pool {headers['pool']!r} has no state or no config")
    if block.trailing:
        raise FactProcessError(f"unexpected lines after the config of pool {headers['pool']!r}: {block.trailing!r}")
    scans = [headers[key] for key in ("scan", "scrub") if key in headers]
    return {
        "name": headers["pool"],
        "state": headers["state"],
        "status": headers.get("status"),
        "action": headers.get("action"),
        "see": headers.get("see"),
        "scan": "\n".join(scans) if scans else None,
        "config": _config_tree(block.config, True, what),
        "errors": headers.get("errors"),
        "other": {key: value for key, value in headers.items() if key not in _STATUS_KEYS},
    }


def _importable_pool(block: _Block, what: str) -> ImportablePool:
    headers = block.headers
    if "id" not in headers or "state" not in headers or "config" not in headers:
        raise FactProcessError(f"`{what}` pool {headers['pool']!r} has no id, state or config")
    return {
        "name": headers["pool"],
        "id": headers["id"],
        "state": headers["state"],
        "status": headers.get("status"),
        "action": headers.get("action"),
        "see": headers.get("see"),
        "config": _config_tree(block.config, False, what),
        "remarks": " ".join(block.trailing) or None,
        "other": {key: value for key, value in headers.items() if key not in _IMPORT_KEYS},
    }


def _only_message(lines: list[str], message: str) -> bool:
    """Whether ``lines`` say nothing but ``message`` (or nothing at all)."""
    return [line.strip() for line in lines if line.strip()] in ([], [message])


class ZfsImplementation(FactBase[ZfsImplementationInfo]):
    """
    Returns which ZFS the host has: ``openzfs`` when the ``zfs`` kernel module is loaded, else
    ``zfs-fuse`` when the zfs-fuse daemon is installed, else ``none``; with the module's or package's
    version, whether a loadable module exists, whether the zfs-fuse daemon runs, and where ``zpool`` is.
    pyinfra's own ``zfs`` facts return nothing unless a kernel module is loaded, so they see no zfs-fuse.
    zfs-fuse mounts its datasets as ``fuse.zfs`` filesystems, not ``zfs``: a deploy that needs containerd's
    zfs snapshotter checks ``kind`` before it relies on the dataset.

    Runs one shell line: tests ``/sys/module/zfs``, reads ``/sys/module/zfs/version``, ``modinfo -F
    version zfs``, ``command -v zfs-fuse zpool``, ``/proc/*/comm`` and ``dpkg-query`` for the zfs-fuse
    package. It never fails the host: absent pieces print empty values.

    .. code:: python

        {
            "kind": "zfs-fuse",
            "version": "0.7.0-25+b1",
            "module_loaded": False,
            "module_available": None,
            "zfs_fuse": "/usr/sbin/zfs-fuse",
            "zfs_fuse_running": True,
            "zpool": "/usr/sbin/zpool",
        }
    """

    _KEYS = (
        "module",
        "module_version",
        "module_available",
        "zfs_fuse",
        "zfs_fuse_running",
        "zfs_fuse_package",
        "zpool",
    )

    @override
    def command(self) -> str:
        return (
            "if [ -d /sys/module/zfs ]; then echo module=loaded; else echo module=absent; fi;"
            ' echo "module_version=$(cat /sys/module/zfs/version 2>/dev/null)";'
            ' echo "module_available=$(modinfo -F version zfs 2>/dev/null)";'
            ' echo "zfs_fuse=$(command -v zfs-fuse)";'
            ' echo "zfs_fuse_running=$(grep -lx zfs-fuse /proc/[0-9]*/comm 2>/dev/null | head -n 1)";'
            " echo \"zfs_fuse_package=$(dpkg-query -W -f='${Status} ${Version}' zfs-fuse 2>/dev/null)\";"
            ' echo "zpool=$(command -v zpool)"'
        )

    @override
    def process(self, output: list[str]) -> ZfsImplementationInfo:
        values: dict[str, str] = {}
        for line in output:
            key, equals, value = line.partition("=")
            if not equals or key not in self._KEYS or key in values:
                raise FactProcessError(f"unexpected line in ZFS implementation probe: {line!r}")
            values[key] = value.strip()
        if set(values) != set(self._KEYS) or values["module"] not in ("loaded", "absent"):
            raise FactProcessError(f"incomplete ZFS implementation probe: {output!r}")
        status, _, package_version = values["zfs_fuse_package"].rpartition(" ")
        module_loaded = values["module"] == "loaded"
        zfs_fuse = values["zfs_fuse"] or None
        kind: Literal["openzfs", "zfs-fuse", "none"] = "none"
        version: str | None = None
        if module_loaded:
            kind, version = "openzfs", values["module_version"] or None
        elif zfs_fuse is not None:
            kind = "zfs-fuse"
            version = package_version if status == "install ok installed" and package_version else None
        return {
            "kind": kind,
            "version": version,
            "module_loaded": module_loaded,
            "module_available": values["module_available"] or None,
            "zfs_fuse": zfs_fuse,
            "zfs_fuse_running": bool(values["zfs_fuse_running"]),
            "zpool": values["zpool"] or None,
        }


class ZpoolStatus(FactBase["dict[str, PoolStatus] | None"]):
    """
    Returns every imported pool (or only ``pool``) as ``zpool status`` describes it: state, the
    ``status:``/``action:``/``see:`` text of an unhealthy pool, the last scrub or resilver, the vdev
    tree with error counts and notes (``too many errors``, ``was /dev/sdb``), and the ``errors:`` line.
    ``{}`` when there are no pools (or ``pool`` is not imported); ``None`` when ``zpool`` is missing or
    ZFS does not answer (zfs-fuse daemon stopped, OpenZFS module not loaded) — never read ``None`` as
    "no pool". A pool's ``state`` can be ``ONLINE`` while a vdev is ``FAULTED``: check the tree too.

    Runs ``zpool status [POOL]`` (no ``-v``: the error line counts files instead of listing them) with
    its exit status and error output captured in-band.

    .. code:: python

        {
            "tank": {
                "name": "tank",
                "state": "DEGRADED",
                "status": "One or more devices has been taken offline by the administrator. ...",
                "action": "Online the device using 'zpool online' or replace the device with 'zpool replace'.",
                "see": None,
                "scan": "none requested",
                "config": [{"name": "tank", "state": "DEGRADED", "read": "0", "write": "0", "cksum": "0",
                            "note": None, "children": [...]}],
                "errors": "No known data errors",
                "other": {},
            },
        }
    """

    @override
    def requires_command(self, pool: str | None = None) -> str:
        return "zpool"

    @override
    def command(self, pool: str | None = None) -> str:
        return separated("zpool status" + (f" {shlex.quote(pool)}" if pool else ""))

    @override
    def process(self, output: list[str]) -> dict[str, PoolStatus] | None:
        result = split_separated(output, "zpool status")
        if result.status != 0:
            if _NO_SUCH_POOL.search(result.stderr):
                return {}
            _require_not_answering(result, "zpool status")
            return None
        if _only_message(result.stdout, _NO_POOLS):
            return {}
        pools = [_pool_status(block, "zpool status") for block in _blocks(result.stdout, "zpool status")]
        return {pool["name"]: pool for pool in pools}


class ZpoolList(FactBase["dict[str, PoolListEntry] | None"]):
    """
    Returns every imported pool (or only ``pool``) with its size, allocation, free space, capacity,
    dedup ratio, health and altroot, exactly as ``zpool list`` prints them (human-readable sizes:
    zfs-fuse has no ``-p``). ``{}`` when there are no pools (or ``pool`` is not imported); ``None`` when
    ``zpool`` is missing or ZFS does not answer.

    Runs ``zpool list -H -o name,size,allocated,free,capacity,dedupratio,health,altroot [POOL]`` with its
    exit status and error output captured in-band.

    .. code:: python

        {
            "tank": {
                "size": "123M",
                "allocated": "536K",
                "free": "122M",
                "capacity": "0%",
                "dedupratio": "1.00x",
                "health": "ONLINE",
                "altroot": "-",
            },
        }
    """

    @override
    def requires_command(self, pool: str | None = None) -> str:
        return "zpool"

    @override
    def command(self, pool: str | None = None) -> str:
        target = f" {shlex.quote(pool)}" if pool else ""
        return separated(f"zpool list -H -o {','.join(LIST_PROPERTIES)}{target}")

    @override
    def process(self, output: list[str]) -> dict[str, PoolListEntry] | None:
        result = split_separated(output, "zpool list")
        if result.status != 0:
            if _NO_SUCH_POOL.search(result.stderr):
                return {}
            _require_not_answering(result, "zpool list")
            return None
        if _only_message(result.stdout, _NO_POOLS):
            return {}
        pools: dict[str, PoolListEntry] = {}
        for line in result.stdout:
            fields = line.split("\t")
            if len(fields) != len(LIST_PROPERTIES) or not all(fields):
                raise FactProcessError(f"not a `zpool list -H` line with {len(LIST_PROPERTIES)} fields: {line!r}")
            name, size, allocated, free, capacity, dedupratio, health, altroot = fields
            pools[name] = {
                "size": size,
                "allocated": allocated,
                "free": free,
                "capacity": capacity,
                "dedupratio": dedupratio,
                "health": health,
                "altroot": altroot,
            }
        return pools


class ZfsDatasetProperties(FactBase["dict[str, dict[str, DatasetProperty]] | None"]):
    """
    Returns ``dataset`` (or every dataset, snapshots included) with a fixed set of properties —
    ``type``, ``mountpoint``, ``mounted``, ``compression``, ``atime``, ``recordsize``, ``quota``,
    ``readonly``, ``used``, ``available``, ``referenced`` — each with its value and source. ``{}`` when
    ``dataset`` does not exist or there are none; ``None`` when ``zfs`` is missing or ZFS does not answer.

    Beside pyinfra's ``zfs.ZfsDatasets``: that fact returns nothing unless a ``zfs`` *kernel module* is
    loaded, so it sees nothing under zfs-fuse, and it reads ``all`` properties of every dataset, which on
    a containerd zfs-snapshotter host means every layer's snapshot. Pass ``dataset`` there: containerd's
    snapshotter dataset is the one a worker deploy checks (``mounted`` ``yes`` at
    ``/var/lib/containerd/io.containerd.snapshotter.v1.zfs``).

    Runs ``zfs get -H -o name,property,value,source <properties> [DATASET]`` with its exit status and
    error output captured in-band.

    .. code:: python

        {
            "tank/containerd": {
                "type": {"value": "filesystem", "source": "-"},
                "mountpoint": {"value": "/var/lib/containerd/io.containerd.snapshotter.v1.zfs", "source": "local"},
                "mounted": {"value": "yes", "source": "-"},
                ...
            },
        }
    """

    @override
    def requires_command(self, dataset: str | None = None) -> str:
        return "zfs"

    @override
    def command(self, dataset: str | None = None) -> str:
        target = f" {shlex.quote(dataset)}" if dataset else ""
        return separated(f"zfs get -H -o name,property,value,source {','.join(DATASET_PROPERTIES)}{target}")

    @override
    def process(self, output: list[str]) -> dict[str, dict[str, DatasetProperty]] | None:
        result = split_separated(output, "zfs get")
        if result.status != 0:
            if _NO_SUCH_DATASET.search(result.stderr):
                return {}
            _require_not_answering(result, "zfs get")
            return None
        datasets: dict[str, dict[str, DatasetProperty]] = {}
        for line in result.stdout:
            fields = line.split("\t")
            if len(fields) != 4 or fields[1] not in DATASET_PROPERTIES:
                raise FactProcessError(f"not a `zfs get -H -o name,property,value,source` line: {line!r}")
            name, prop, value, source = fields
            datasets.setdefault(name, {})[prop] = {"value": value, "source": source}
        return datasets


class ZpoolImportable(FactBase["list[ImportablePool] | None"]):
    """
    Returns the pools ``zpool import -d DIRECTORY`` finds in ``directory`` (an absolute path: zfs-fuse
    refuses relative ones) and could import — exported
    pools, or file-vdev pools not imported after a reboot (a device scan never looks at files) — each
    with its id, state, what ``zpool import`` says about importing it, and its vdev tree as found.
    Imported pools are not listed. ``[]`` when there is nothing to import or ``directory`` does not exist;
    ``None`` when ``zpool`` is missing or ZFS does not answer. A deploy tells the three safe cases apart
    with ``ZpoolStatus`` (imported: healthy or not) and this fact (vdev files there, pool not imported:
    import it, never create over it).

    Runs ``zpool import -d DIRECTORY`` (it only lists, imports nothing) with its exit status and error
    output captured in-band.

    .. code:: python

        [
            {
                "name": "tank",
                "id": "15102891279026657310",
                "state": "ONLINE",
                "status": None,
                "action": "The pool can be imported using its name or numeric identifier.",
                "see": None,
                "config": [{"name": "tank", "state": "ONLINE", ..., "children": [...]}],
                "remarks": None,
                "other": {},
            },
        ]
    """

    @override
    def requires_command(self, directory: str) -> str:
        return "zpool"

    @override
    def command(self, directory: str) -> str:
        quoted = shlex.quote(directory)
        return f"if [ -d {quoted} ]; then {separated(f'zpool import -d {quoted}')}; else echo {_NO_DIRECTORY}; fi"

    @override
    def process(self, output: list[str]) -> list[ImportablePool] | None:
        if output == [_NO_DIRECTORY]:
            return []
        result = split_separated(output, "zpool import")
        nothing = not any(line.strip() for line in result.stdout)
        if result.status == 1 and nothing and result.stderr in ("", _NO_POOLS_TO_IMPORT):
            return []
        if result.status != 0:
            _require_not_answering(result, "zpool import")
            return None
        return [_importable_pool(block, "zpool import") for block in _blocks(result.stdout, "zpool import")]
