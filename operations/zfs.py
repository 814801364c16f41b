"""ZFS for the containerd ``zfs`` snapshotter: a pool (on a vdev file or on whole devices), a dataset mounted where
containerd looks for it, and a systemd unit that brings a file-vdev pool back after a reboot.

Nothing here destroys anything: an imported pool is never changed (no vdev added, removed or replaced, never
recreated), an exported one is imported, never created over, and a pool is created only on a new vdev file or on
devices that hold no signature (unless ``force``). pyinfra's own ``zfs`` operations need a ``zfs`` kernel module;
these work under zfs-fuse too (they read ``facts.zfs``, which answer under both).

ZFS facts are ``None`` when ZFS does not answer (no ``zpool``, the module not loaded, the zfs-fuse daemon stopped).
While pyinfra prepares (change detection, before earlier operations of the same deploy have installed or started
ZFS) the operations then yield what a fresh host needs; while it executes they fail the host, saying so.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Generator, Iterator
from io import StringIO
from typing import Any, Literal

from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.exceptions import OperationError, OperationValueError
from pyinfra.api.operation import operation
from pyinfra.api.state import StateStage
from pyinfra.context import host
from pyinfra.operations import files

from pyinfra_iluvatar.facts.devices import DeviceSignature, DeviceSignatures, found_on
from pyinfra_iluvatar.facts.zfs import (
    ImportablePool,
    PoolStatus,
    Vdev,
    ZfsDatasetProperties,
    ZpoolImportable,
    ZpoolStatus,
)
from pyinfra_iluvatar.operations.containerd import MANAGED_HEADER

Implementation = Literal["openzfs", "zfs-fuse"]

IMPLEMENTATIONS: tuple[Implementation, ...] = ("openzfs", "zfs-fuse")
DEVICES_DIRECTORY = "/dev/disk/by-id"
"""Where ``pool`` looks for an exported pool on ``devices`` (``zpool import -d /dev/disk/by-id``)."""
UNIT_DIR = "/etc/systemd/system"
IMPORT_WAIT_SECONDS = 30
"""How long the import unit waits for ``zpool list`` to answer (zfs-fuse's daemon starting, the module loading)."""
MIN_VDEV_BYTES = 64 << 20
"""The smallest vdev ZFS accepts (``SPA_MINDEVSIZE``)."""

_POOL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_RESERVED_PREFIXES = ("mirror", "raidz", "draid", "spare")
_DATASET_COMPONENT = re.compile(r"[A-Za-z0-9_.:-]+")
_SIZE = re.compile(r"([1-9][0-9]*)([KMGTP]?)")
_SIZE_UNITS = "KMGTP"
# Characters allowed in a path written into a unit file: no spaces, quotes, `$`, `%` (systemd specifiers) or `\`.
_UNIT_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/@+-]*")
_IMPORTABLE_STATES = ("ONLINE", "DEGRADED")


def _pool_name(pool: str) -> str:
    """``pool`` when it is a pool name this package accepts; ``OperationValueError`` otherwise."""
    if not isinstance(pool, str) or not _POOL_NAME.fullmatch(pool):
        raise OperationValueError(
            f"pool name must be a letter followed by up to 63 letters, digits, '_' or '-', got {pool!r}"
        )
    # zpool's own check (zfs_namecheck.c, and zfs-fuse's older, stricter one), case-sensitive as it is.
    if pool.startswith(_RESERVED_PREFIXES) or pool == "log" or re.fullmatch(r"c[0-9].*", pool):
        raise OperationValueError(
            f"pool name {pool!r} is reserved by ZFS (names starting with mirror, raidz, draid or spare, 'log', "
            "or c<digit> like a Solaris disk)"
        )
    return pool


def _dataset_name(dataset: str) -> str:
    """``dataset`` when it is ``pool/name[/name…]``; ``OperationValueError`` otherwise."""
    if not isinstance(dataset, str) or "/" not in dataset:
        raise OperationValueError(f"dataset must be pool/name, got {dataset!r}")
    pool, *names = dataset.split("/")
    _pool_name(pool)
    if not all(_DATASET_COMPONENT.fullmatch(name) for name in names):
        raise OperationValueError(
            f"dataset must be pool/name with names of letters, digits, '_', '.', ':' or '-', got {dataset!r}"
        )
    return dataset


def _absolute(what: str, path: str) -> str:
    """``path`` when it is absolute and normalised (no ``..``, ``//`` or trailing ``/``)."""
    if not isinstance(path, str) or not path.startswith("/") or posixpath.normpath(path) != path or path == "/":
        raise OperationValueError(f"{what} must be an absolute, normalised path, got {path!r}")
    return path


def _size(size: str) -> str:
    """``size`` when ``fallocate -l`` takes it (``100G``: binary units) and it is at least ZFS's 64M minimum."""
    match = _SIZE.fullmatch(size) if isinstance(size, str) else None
    if match is None:
        raise OperationValueError(f"vdev_size must be a number with an optional K, M, G, T or P suffix, got {size!r}")
    number, unit = match.groups()
    if int(number) << (10 * (_SIZE_UNITS.index(unit) + 1) if unit else 0) < MIN_VDEV_BYTES:
        raise OperationValueError(f"vdev_size must be at least 64M (the smallest vdev ZFS accepts), got {size!r}")
    return size


def _executing() -> bool:
    """
    Whether pyinfra executes operations now (rather than preparing: detecting changes). The CLI sets
    ``State.current_stage`` to ``StateStage.Execute``; ``run_ops`` (CLI and API) sets ``State.is_executing``.
    Read with ``getattr``: pyinfra-testing's ``FakeState`` has no ``current_stage``.
    """
    state = host.state
    return bool(getattr(state, "is_executing", False)) or getattr(state, "current_stage", None) == StateStage.Execute


def _not_answering(action: str) -> OperationError:
    return OperationError(
        f"{host.name}: ZFS does not answer (no zpool/zfs command, the zfs kernel module not loaded, or the zfs-fuse "
        f"daemon not running): cannot {action}"
    )


def _leaves(vdevs: list[Vdev]) -> Iterator[str]:
    """The leaf vdevs (files, devices) of a ``config`` tree, as ``zpool`` printed them."""
    for vdev in vdevs:
        if vdev["children"]:
            yield from _leaves(vdev["children"])
        elif vdev["state"] is not None:
            yield vdev["name"]


def _imported(pool: str, status: PoolStatus, vdevs: list[str], on_devices: bool) -> str:
    """The noop message for an imported pool, saying when its vdevs are not the configured ones."""
    message = f"pool {pool} is imported ({status['state']})"
    leaves = list(_leaves(status["config"]))
    # zpool prints a file vdev's full path, a device by its name in /dev or /dev/disk/by-id (`sdb`, `ata-…`).
    have = {posixpath.basename(leaf) for leaf in leaves} if on_devices else set(leaves)
    want = {posixpath.basename(vdev) for vdev in vdevs} if on_devices else set(vdevs)
    if have != want:
        message += (
            f"; its vdevs ({', '.join(leaves) or 'none listed'}) differ from the configured {', '.join(vdevs)}: "
            "left as they are (this operation never adds, removes or replaces vdevs, nor recreates a pool)"
        )
    return message


def _import(pool: str, directory: str, listed: list[ImportablePool]) -> Generator[Any, None, None]:
    """Import the one pool named ``pool`` that ``zpool import -d directory`` lists, when it can be imported."""
    if len(listed) > 1:
        ids = ", ".join(entry["id"] for entry in listed)
        raise OperationError(
            f"{host.name}: `zpool import -d {directory}` lists {len(listed)} pools named {pool} (ids {ids}): "
            "import the right one by its id by hand"
        )
    entry = listed[0]
    if entry["state"] not in _IMPORTABLE_STATES:
        said = " ".join(text for text in (entry["status"], entry["action"], entry["remarks"]) if text)
        raise OperationError(
            f"{host.name}: pool {pool} in {directory} cannot be imported: state {entry['state']}; zpool says: "
            f"{said or 'nothing more'} Not creating a new pool over it: bring its missing vdevs back"
        )
    yield StringCommand("zpool", "import", "-d", QuoteString(directory), QuoteString(pool))


def _on_file(
    pool: str, vdev_file: str, vdev_size: str, signature: DeviceSignature | None
) -> Generator[Any, None, None]:
    """Create ``pool`` on ``vdev_file``: the file first when it does not exist, never over one holding anything."""
    if signature is not None and signature["exists"]:
        if signature["kind"] != "file":
            raise OperationError(
                f"{host.name}: vdev_file {vdev_file} of pool {pool} is a {signature['kind']}, not a regular file"
            )
        found = found_on(signature)
        if found:
            raise OperationError(
                f"{host.name}: vdev_file {vdev_file} holds {' and '.join(found)}; not creating pool {pool} over it "
                "(a vdev file is never overwritten: move it away or remove it yourself)"
            )
        # A blank file (a create that failed after fallocate) is used as it is: never grown, shrunk or rewritten.
    else:
        yield from files.directory._inner(path=posixpath.dirname(vdev_file))
        yield StringCommand("fallocate", "-l", QuoteString(vdev_size), QuoteString(vdev_file))
        yield StringCommand("chmod", "600", QuoteString(vdev_file))
    # Never -f for a file: zpool then refuses one that holds another pool's label.
    yield StringCommand("zpool", "create", QuoteString(pool), QuoteString(vdev_file))


def _on_devices(
    pool: str, devices: list[str], signatures: dict[str, DeviceSignature], force: bool
) -> Generator[Any, None, None]:
    """Create ``pool`` striped over ``devices``, refusing any that is missing or not blank (unless ``force``)."""
    absent: list[str] = []
    used: list[str] = []
    for device in devices:
        signature = signatures.get(device)
        if signature is None or not signature["exists"]:
            absent.append(f"{device} does not exist")
        elif signature["kind"] != "block":
            absent.append(f"{device} is a {signature['kind']}, not a block device")
        elif found := found_on(signature):
            used.append(f"{device} holds {' and '.join(found)}")
    if absent:
        raise OperationError(f"{host.name}: cannot create pool {pool}: {'; '.join(absent)}")
    if used and not force:
        raise OperationError(
            f"{host.name}: refusing to create pool {pool}: {'; '.join(used)}. Nothing was changed: wipe them "
            "yourself, or pass force=True to create the pool over them with `zpool create -f`"
        )
    flags = ["-f"] if force else []
    yield StringCommand("zpool", "create", *flags, QuoteString(pool), *(QuoteString(device) for device in devices))


@operation()
def pool(
    pool: str,
    vdev_file: str | None = None,
    vdev_size: str | None = None,
    devices: list[str] | None = None,
    force: bool = False,
) -> Generator[Any, None, None]:
    """
    Make sure ZFS pool ``pool`` is imported: leave it when it is, import it when it sits exported (or not imported
    after a reboot) among its vdevs, create it only when there is no trace of it.

    + pool: the pool's name (a letter, then letters, digits, ``_``, ``-``; at most 64)
    + vdev_file: absolute path of the pool's one vdev file (its directory is scanned for an exported pool)
    + vdev_size: with ``vdev_file``: its size when it has to be created (``fallocate -l``: ``100G``, ``512M``)
    + devices: instead of ``vdev_file``: absolute paths of whole devices (``/dev/disk/by-id/…``), striped; an
      exported pool is looked for with ``zpool import -d /dev/disk/by-id``
    + force: with ``devices``: create the pool even over devices that hold a filesystem, a partition table or
      another pool's label (``zpool create -f``); a missing device is refused anyway

    In order:

    - imported (``zpool status POOL``): nothing changes, whatever its vdevs; the noop message gives its state and
      says when its vdevs differ from the configured ones (vdevs are never added, removed or replaced, and a pool
      is never recreated);
    - listed by ``zpool import -d DIR`` (DIR: the vdev file's directory, or ``/dev/disk/by-id``): ``zpool import
      -d DIR POOL``; a pool listed as ``UNAVAIL``/``FAULTED`` (vdevs missing) stops the host with what zpool said,
      and is never created over;
    - otherwise, on a file: the directory and the file (``fallocate``, mode 600) when the file does not exist,
      then ``zpool create POOL FILE`` (never ``-f``). An existing file is never grown, shrunk or overwritten: one
      that holds any signature (blkid) stops the host; a blank one is used as it is;
    - otherwise, on devices: ``zpool create POOL DEVICE…`` when every device exists, is a block device and holds
      no signature (``facts.devices.DeviceSignatures``); else the host stops with a message naming each device
      and what it holds (``force`` overrides signatures only).

    Nothing is ever destroyed. When ZFS does not answer: while pyinfra prepares, the commands a fresh host needs
    (an earlier operation may install or start ZFS); while it executes, an error.

    **Example:**

    .. code:: python

        zfs.pool(
            name="ZFS pool for containerd",
            pool="iluvatar",
            vdev_file="/var/lib/iluvatar/zfs/iluvatar.vdev",
            vdev_size="100G",
        )
    """
    name = _pool_name(pool)
    if (vdev_file is None) == (devices is None):
        raise OperationValueError(f"pool {name}: give exactly one of vdev_file (with vdev_size) or devices")
    if vdev_file is not None:
        file = _absolute("vdev_file", vdev_file)
        if vdev_size is None:
            raise OperationValueError(f"pool {name}: vdev_file needs vdev_size (e.g. '100G')")
        size = _size(vdev_size)
        if force:
            raise OperationValueError(f"pool {name}: force applies to devices only: a vdev file is never overwritten")
        vdevs, directory = [file], posixpath.dirname(file)
    else:
        if vdev_size is not None:
            raise OperationValueError(f"pool {name}: vdev_size applies to vdev_file only, not to devices")
        if not isinstance(devices, list) or not devices:
            raise OperationValueError(f"pool {name}: devices must be a non-empty list of paths, got {devices!r}")
        vdevs = [_absolute("each of devices", device) for device in devices]
        if len(set(vdevs)) != len(vdevs):
            raise OperationValueError(f"pool {name}: devices lists a device twice: {vdevs!r}")
        directory = DEVICES_DIRECTORY

    status = host.get_fact(ZpoolStatus, pool=name)
    if status and name in status:
        host.noop(_imported(name, status[name], vdevs, on_devices=devices is not None))
        return
    importable = None if status is None else host.get_fact(ZpoolImportable, directory=directory)
    silent = importable is None
    if silent and _executing():
        raise _not_answering(f"check or create pool {name}")
    listed = [entry for entry in importable or [] if entry["name"] == name]
    if listed:
        yield from _import(name, directory, listed)
        return

    signatures = host.get_fact(DeviceSignatures, devices=vdevs)
    if signatures is None:
        raise OperationError(
            f"{host.name}: blkid (util-linux) is not installed: cannot check that {', '.join(vdevs)} hold nothing"
        )
    labels = [signatures[vdev]["zfs_pool"] if vdev in signatures else None for vdev in vdevs]
    if silent and all(label == name for label in labels):
        # ZFS does not answer yet, but the vdevs carry this pool's labels: once it answers, it imports them.
        yield StringCommand("zpool", "import", "-d", QuoteString(directory), QuoteString(name))
        return
    if vdev_file is not None:
        yield from _on_file(name, file, size, signatures.get(file))
    else:
        yield from _on_devices(name, vdevs, signatures, force)


@operation()
def dataset(dataset: str, mountpoint: str) -> Generator[Any, None, None]:
    """
    Make sure ZFS filesystem ``dataset`` exists, has ``mountpoint`` and is mounted: ``zfs create -o
    mountpoint=MP DATASET`` when it does not exist (its parent must), ``zfs set mountpoint=MP DATASET`` when it is
    elsewhere (ZFS moves a mounted dataset itself), ``zfs mount DATASET`` when it is not mounted. Nothing is
    destroyed; a volume or snapshot of that name stops the host.

    + dataset: ``pool/name`` (``iluvatar/containerd``)
    + mountpoint: absolute path (containerd's zfs snapshotter wants
      ``/var/lib/containerd/io.containerd.snapshotter.v1.zfs``)

    When ZFS does not answer: while pyinfra prepares, the ``zfs create`` a fresh host needs; while it executes,
    an error.

    **Example:**

    .. code:: python

        zfs.dataset(
            name="containerd snapshotter dataset",
            dataset="iluvatar/containerd",
            mountpoint="/var/lib/containerd/io.containerd.snapshotter.v1.zfs",
        )
    """
    name = _dataset_name(dataset)
    path = _absolute("mountpoint", mountpoint)
    create = StringCommand("zfs", "create", "-o", QuoteString(f"mountpoint={path}"), QuoteString(name))
    datasets = host.get_fact(ZfsDatasetProperties, dataset=name)
    if datasets is None:
        if _executing():
            raise _not_answering(f"check or create dataset {name}")
        yield create
        return
    if name not in datasets:
        yield create
        return
    properties = datasets[name]
    kind = properties["type"]["value"] if "type" in properties else "dataset of unknown type"
    if kind != "filesystem":
        raise OperationError(f"{host.name}: {name} is a {kind}, not a filesystem: it cannot be mounted at {path}")
    current = properties["mountpoint"]["value"]
    mounted = properties["mounted"]["value"] == "yes"
    if current != path:
        yield StringCommand("zfs", "set", QuoteString(f"mountpoint={path}"), QuoteString(name))
        if not mounted:  # a dataset that was not mounted stays unmounted when its mountpoint changes
            yield StringCommand("zfs", "mount", QuoteString(name))
        return
    if not mounted:
        yield StringCommand("zfs", "mount", QuoteString(name))
        return
    host.noop(f"dataset {name} is mounted at {path}")


def _wait_until_answering(seconds: int) -> str:
    """Shell: wait up to ``seconds`` until ``zpool list`` answers, else fail saying so (no ``$``, ``%``, ``\\``)."""
    return (
        f'timeout {seconds} sh -c "until zpool list >/dev/null 2>&1; do sleep 1; done"'
        f' || {{ echo "ZFS did not answer zpool list within {seconds} s" >&2; exit 1; }}'
    )


@operation(is_idempotent=False)
def answering(timeout: int = 30) -> Generator[Any, None, None]:
    """
    Wait until ZFS answers ``zpool list`` (the zfs-fuse daemon started, the module loaded), failing the host after
    ``timeout`` seconds. Use it after starting ZFS (``_if=``): it always runs, and changes nothing.

    + timeout: seconds to wait

    **Example:**

    .. code:: python

        zfs.answering(name="zfs-fuse answers", _if=any_changed(restart, start))
    """
    seconds = int(timeout)
    if seconds < 1:
        raise OperationValueError(f"timeout must be at least 1 second, got {timeout!r}")
    yield _wait_until_answering(seconds)


def import_unit_name(pool: str) -> str:
    """The name of ``pool``'s import unit (``iluvatar-zpool-<pool>.service``)."""
    return f"iluvatar-zpool-{_pool_name(pool)}.service"


def import_script(pool: str, directory: str) -> str:
    """
    The shell script the import unit runs (``/bin/sh -ec``): wait up to :data:`IMPORT_WAIT_SECONDS` for ``zpool
    list`` to answer, import ``pool`` from ``directory`` unless it is imported, mount every dataset. No ``$``,
    ``%`` or backslash in it, so it reads the same in a unit file and in a shell.
    """
    name = _pool_name(pool)
    return (
        f"{_wait_until_answering(IMPORT_WAIT_SECONDS)};"
        f" zpool list -H -o name {name} >/dev/null 2>&1 || zpool import -d {directory} {name};"
        " zfs mount -a"
    )


def render_import_unit(pool: str, directory: str, implementation: Implementation) -> str:
    """
    The unit that imports file-vdev pool ``pool`` from ``directory`` at boot, before containerd starts. A device
    scan never finds file vdevs, and a missing or stale ``zpool.cache`` leaves the pool exported after a reboot.
    """
    name = _pool_name(pool)
    if not isinstance(directory, str) or not _UNIT_SAFE_PATH.fullmatch(directory):
        raise OperationValueError(
            f"directory must be an absolute path of letters, digits and . _ / @ + - (it goes into a unit file), "
            f"got {directory!r}"
        )
    _absolute("directory", directory)
    if implementation == "openzfs":
        # Before zfs-mount.service, which runs before local-fs.target: no default dependencies (they would order
        # this unit after sysinit.target, itself after local-fs.target: a cycle), as OpenZFS's own import units.
        # Not Before=zfs-import.target: where DIRECTORY is itself on a ZFS dataset (root on ZFS), its mount unit
        # comes after zfs-import.target, and RequiresMountsFor= orders this unit after that mount.
        ordering = (
            "DefaultDependencies=no\n"
            "Wants=zfs-load-module.service\n"
            "After=zfs-load-module.service zfs-import-cache.service zfs-import-scan.service"
            " systemd-remount-fs.service\n"
            "Before=zfs-mount.service containerd.service\n"
        )
        pre = "ExecStartPre=-/sbin/modprobe zfs\n"
    elif implementation == "zfs-fuse":
        ordering = "Wants=zfs-fuse.service\nAfter=zfs-fuse.service\nBefore=containerd.service\n"
        pre = ""
    else:
        raise OperationValueError(f"implementation must be one of {', '.join(IMPLEMENTATIONS)}, got {implementation!r}")
    return f"""{MANAGED_HEADER}: edits here are overwritten on the next deploy.
# Imports ZFS pool {name} from its file vdevs in {directory} ({implementation}), before containerd starts.
[Unit]
Description=Import ZFS pool {name} from {directory}
Documentation=man:zpool(8)
{ordering}RequiresMountsFor={directory}

[Service]
Type=oneshot
RemainAfterExit=yes
{pre}ExecStart=/bin/sh -ec '{import_script(name, directory)}'

[Install]
WantedBy=containerd.service multi-user.target
"""


@operation()
def import_unit(pool: str, directory: str, implementation: Implementation) -> Generator[Any, None, None]:
    """
    Write ``/etc/systemd/system/iluvatar-zpool-<pool>.service`` (:func:`import_unit_name`), a oneshot unit that
    makes file-vdev pool ``pool`` come back after a reboot, before containerd starts: ordered after
    ``zfs-fuse.service`` (zfs-fuse) or after the module load and ``zfs-import-cache.service`` and before
    ``zfs-mount.service`` (openzfs), it waits up to 30 s until ``zpool list`` answers, runs ``zpool import -d
    DIRECTORY POOL`` only when the pool is not imported, and ``zfs mount -a``. Wanted by ``containerd.service``
    and ``multi-user.target``.

    It does not reload systemd nor enable the unit: when this operation changed something, run ``systemctl
    daemon-reload`` (``systemd.daemon_reload(_if=unit.did_change)``), and enable it with ``systemd.service(
    service=import_unit_name(pool), running=True, enabled=True)``.

    + pool: the pool's name
    + directory: the directory of its vdev files (absolute; letters, digits and ``. _ / @ + -`` only)
    + implementation: ``openzfs`` (kernel module) or ``zfs-fuse`` (``facts.zfs.ZfsImplementation``'s ``kind``)

    **Example:**

    .. code:: python

        unit = zfs.import_unit(
            name="Import the pool at boot",
            pool="iluvatar",
            directory="/var/lib/iluvatar/zfs",
            implementation="zfs-fuse",
        )
        systemd.daemon_reload(name="Reload systemd", _if=unit.did_change)
        systemd.service(
            name="Import unit enabled",
            service=zfs.import_unit_name("iluvatar"),
            running=True,
            enabled=True,
        )
    """
    unit = import_unit_name(pool)
    content = render_import_unit(pool, directory, implementation)
    commands = list(
        files.put._inner(src=StringIO(content), dest=f"{UNIT_DIR}/{unit}", user="root", group="root", mode="644")
    )
    if not commands:
        host.noop(f"{unit} is up to date")
        return
    yield from commands
