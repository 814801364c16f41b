"""
ZFS for containerd's zfs snapshotter, as the setup page's "ZFS and file system" step makes it, done safely.

Packages for the host's ZFS (Ubuntu's ``zfsutils-linux``; Debian's ``zfsutils-linux`` and ``zfs-dkms`` from
``contrib`` with the running kernel's headers; or ``zfs-fuse``), ZFS running, the pool (from a file vdev or from
whole devices; created only when absent, imported when exported, never destroyed or changed), a unit that imports a
file-vdev pool at boot before containerd starts, and the dataset ``<pool>/containerd`` mounted where containerd's
zfs snapshotter looks for it. Run it alone with ``pyinfra INVENTORY deploys/zfs.py``; the worker deploy runs it
and restarts containerd once when the dataset's mount first appears.
"""

from __future__ import annotations

import posixpath
from io import StringIO

from pyinfra.api.deploy import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.context import host
from pyinfra.facts.apt import AptSources
from pyinfra.facts.server import KernelModules, KernelVersion, LinuxDistribution
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from pyinfra_iluvatar import data, preflight, snapshot
from pyinfra_iluvatar.deploys import changing, run_as_deploy_file
from pyinfra_iluvatar.facts.combined import Probe
from pyinfra_iluvatar.facts.packages import DebPackageVersions
from pyinfra_iluvatar.facts.zfs import ZfsDatasetProperties, ZfsImplementation, ZfsImplementationInfo, ZpoolStatus
from pyinfra_iluvatar.operations import packages, zfs

SNAPSHOTTER_PATH = "/var/lib/containerd/io.containerd.snapshotter.v1.zfs"
"""Where containerd's zfs snapshotter wants a mounted ZFS dataset (else it skips itself)."""
ZFS_FUSE_DROP_IN = "/etc/systemd/system/zfs-fuse.service.d/pyinfra-iluvatar.conf"
# Debian's zfs-fuse unit runs an init script that forks the daemon (systemd does not track it: KillMode=process)
# and, inside a container, fails after forking (it cannot write oom_score_adj), so the unit reads "failed" while a
# daemon runs. Run the daemon in the foreground instead; a stop unmounts, then ends every process of the unit (the
# first restart so ends a daemon the package's own start left behind).
ZFS_FUSE_SERVICE = """# Managed by pyinfra-iluvatar: zfs-fuse in the foreground, under systemd.
[Service]
Type=simple
RemainAfterExit=no
KillMode=control-group
ExecStart=
ExecStart=/usr/sbin/zfs-fuse --no-daemon
ExecStop=
ExecStop=-/usr/sbin/zfs umount -a
"""


def implementation(chosen: str, found: ZfsImplementationInfo | None) -> str:
    """``openzfs`` or ``zfs-fuse``: the data's choice; ``auto`` keeps a zfs-fuse the host has (``found``)."""
    if chosen != "auto":
        return chosen
    return "zfs-fuse" if found is not None and found["kind"] == "zfs-fuse" else "openzfs"


def zfs_packages(chosen: str, distribution: str, kernel: str) -> list[str]:
    """The packages for ``chosen`` on ``distribution`` (Debian builds OpenZFS's module for ``kernel`` with DKMS)."""
    if chosen == "zfs-fuse":
        return ["zfs-fuse"]
    if distribution == "Debian":
        return ["zfsutils-linux", "zfs-dkms", f"linux-headers-{kernel}"]
    return ["zfsutils-linux"]


def reads(settings: preflight.HostPlan) -> list[Probe]:
    """What this deploy and its operations read on a converged host (:mod:`pyinfra_iluvatar.snapshot`)."""
    if not settings.get(data.ZFS):
        return []
    chosen = settings.get(data.ZFS_IMPLEMENTATION)
    found = [snapshot.probe(ZfsImplementation)] if chosen == "auto" else []
    # Debian's packages are Ubuntu's and the headers of the running kernel, whichever that is.
    names = zfs_packages("zfs-fuse", "", "") if chosen in ("auto", "zfs-fuse") else []
    names += zfs_packages("openzfs", "Debian", "*") if chosen in ("auto", "openzfs") else []
    found.append(snapshot.probe(DebPackageVersions, packages=names))
    if chosen in ("auto", "zfs-fuse"):
        found += [*snapshot.put_reads(ZFS_FUSE_DROP_IN), *snapshot.service_reads("zfs-fuse.service")]
    if chosen in ("auto", "openzfs"):
        found += [snapshot.probe(LinuxDistribution), snapshot.probe(KernelVersion), snapshot.probe(AptSources)]
        found += [snapshot.probe(KernelModules)]
    pool = settings.get(data.ZFS_POOL)
    found.append(snapshot.probe(ZpoolStatus, pool=pool))
    if not settings.get(data.ZFS_DEVICES):
        unit = zfs.import_unit_name(pool)
        found += [*snapshot.put_reads(f"{zfs.UNIT_DIR}/{unit}"), *snapshot.service_reads(unit)]
    return [*found, snapshot.probe(ZfsDatasetProperties, dataset=f"{pool}/containerd")]


@deploy("ZFS for containerd")
def zfs_storage(settings: preflight.HostPlan | None = None) -> OperationMeta | None:
    """
    Make the pool and the containerd dataset (README data keys ``iluvatar_zfs*``), or nothing when ``iluvatar_zfs``
    is false; ``settings`` as for the other parts. Returns the dataset operation, so that a caller can restart
    containerd when the mount first appears.
    """
    settings = settings or preflight.plan(reads=reads)
    if not settings.get(data.ZFS):
        return None
    chosen = settings.get(data.ZFS_IMPLEMENTATION)
    chosen = implementation(chosen, host.get_fact(ZfsImplementation) if chosen == "auto" else None)
    if chosen == "zfs-fuse" and settings.get(data.SNAPSHOTTER) == "zfs":
        raise preflight.PreflightError(
            f"{host.name}: iluvatar_snapshotter = 'zfs' cannot work on zfs-fuse, which this host runs (containerd's"
            " zfs snapshotter refuses fuse.zfs mounts): set iluvatar_snapshotter to overlayfs or native, or"
            " iluvatar_zfs_implementation to openzfs"
        )
    distribution = (host.get_fact(LinuxDistribution)["name"] or "") if chosen == "openzfs" else ""
    if chosen == "openzfs" and distribution == "Debian":
        packages.debian_contrib(name="Debian contrib enabled (zfs-dkms, zfsutils-linux)")
    kernel = host.get_fact(KernelVersion) if chosen == "openzfs" and distribution == "Debian" else ""
    packages.apt_installed(name="ZFS packages", packages=zfs_packages(chosen, distribution, kernel))
    if chosen == "zfs-fuse":
        drop_in = files.put(
            name="zfs-fuse runs in the foreground",
            src=StringIO(ZFS_FUSE_SERVICE),
            dest=ZFS_FUSE_DROP_IN,
            user="root",
            group="root",
            mode="644",
        )
        restarts = []
        if changing():
            systemd.daemon_reload(name="Reload systemd units (zfs-fuse)", _if=drop_in.did_change)
            restart = systemd.service(
                name="zfs-fuse restarted in the foreground",
                service="zfs-fuse.service",
                restarted=True,
                _if=drop_in.did_change,
            )
            restarts.append(restart)
        start = systemd.service(
            name="zfs-fuse running and enabled", service="zfs-fuse.service", running=True, enabled=True
        )
        if changing():
            zfs.answering(name="zfs-fuse answers", _if=any_changed(*restarts, start))
    else:
        server.modprobe(name="ZFS module loaded", module="zfs")

    pool = settings.get(data.ZFS_POOL)
    devices = settings.get(data.ZFS_DEVICES)
    vdev_file = settings.get(data.ZFS_VDEV_FILE)
    if devices:
        zfs.pool(name=f"ZFS pool {pool}", pool=pool, devices=list(devices), force=settings.get(data.ZFS_FORCE))
    else:
        zfs.pool(name=f"ZFS pool {pool}", pool=pool, vdev_file=vdev_file, vdev_size=settings.get(data.ZFS_VDEV_SIZE))
        unit = zfs.import_unit(
            name=f"Pool {pool} imported at boot",
            pool=pool,
            directory=posixpath.dirname(vdev_file),
            implementation="zfs-fuse" if chosen == "zfs-fuse" else "openzfs",
        )
        if changing():
            systemd.daemon_reload(name="Reload systemd units (pool import)", _if=unit.did_change)
        systemd.service(name=f"Pool {pool} import enabled", service=zfs.import_unit_name(pool), enabled=True)
    return zfs.dataset(
        name=f"Dataset {pool}/containerd at containerd's zfs snapshotter path",
        dataset=f"{pool}/containerd",
        mountpoint=SNAPSHOTTER_PATH,
    )


# `pyinfra INVENTORY deploys/zfs.py` executes this file without a module name: run the deploy then.
if "__name__" not in globals():
    run_as_deploy_file(__file__, "pyinfra_iluvatar.deploys.zfs", zfs_storage)
