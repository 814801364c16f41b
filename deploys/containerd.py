"""
containerd from the locked release build, as the Ilúvatar worker needs it.

Binaries in ``/usr/local/bin`` (verified, atomic, from the lock file), ``/usr/bin/ctr`` resolving to the same
``ctr`` (the worker calls that path), its unit with explicit limits (unmasked when masked), the config file
this package owns, and a restart only when binaries, unit or config changed, followed by a wait until ``ctr
version`` answers. Run it alone with ``pyinfra INVENTORY deploys/containerd.py``.
"""

from __future__ import annotations

from collections.abc import Callable

from packaging.version import Version
from pyinfra.api.deploy import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import Directory, FindInFile, Link
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

from pyinfra_iluvatar import data, preflight, snapshot
from pyinfra_iluvatar.deploys import changing, run_as_deploy_file
from pyinfra_iluvatar.facts.combined import Probe
from pyinfra_iluvatar.facts.containerd import ContainerdVersion
from pyinfra_iluvatar.facts.packages import DebPackageVersions
from pyinfra_iluvatar.facts.release import InstalledRelease
from pyinfra_iluvatar.operations import containerd, limits, nvidia, release

SERVICE = "containerd.service"


@deploy("containerd")
def containerd_runtime(settings: preflight.HostPlan | None = None) -> Callable[[], bool]:
    """
    Install and run the locked containerd — or, where Docker is an isolation too, configure the containerd its
    packages brought (one containerd per host); reads the ``iluvatar_*`` data keys (README table), or ``settings``
    when a deploy that checked them (the worker's) passes its own. On a GPU host (``HostPlan.gpu``) NVIDIA's
    runtime joins its config as a drop-in. Returns, for ``_if=``, whether this run started or restarted containerd.
    """
    settings = settings or preflight.plan("containerd", "gpu", reads=reads)
    if "docker" in settings.get(data.ISOLATION):
        return packaged_containerd(settings)
    locked = settings.locked("containerd")

    containerd.distro_package_absent(
        name="No packaged containerd", replace=settings.get(data.CONTAINERD_REPLACE_PACKAGE)
    )
    binaries = release.install(
        name=f"containerd {locked.version} binaries",
        component="containerd",
        version=locked.version,
        artifact=settings.artifact("containerd"),
        destination="/usr/local/bin",
        strip_components=1,
        download=settings.get(data.DOWNLOAD),
        mirror=settings.get(data.MIRROR),
        cache_dir=settings.get(data.DOWNLOAD_CACHE),
        verify=settings.get(data.VERIFY_INSTALLED),
    )
    # A packaged containerd's /usr/bin/ctr (gone once the package is replaced) would be kept as a dated backup.
    files.link(name="/usr/bin/ctr is the release ctr", path="/usr/bin/ctr", target="/usr/local/bin/ctr", force=True)
    unmask = containerd.unmasked(name="containerd.service is not masked")
    unit = containerd.unit(name="containerd unit", limit_nofile=settings.get(data.NOFILE_LIMIT))
    config = containerd.config(
        name="containerd config",
        containerd_major=Version(locked.version).major,
        snapshotter=settings.get(data.SNAPSHOTTER),
    )
    gpu_runtime = nvidia_runtime(settings, Version(locked.version).major)
    restarts = []
    if changing():
        systemd.daemon_reload(name="Reload systemd units", _if=any_changed(unmask, unit))
        # A reinstall that found every binary byte-identical (a lost receipt) replaced nothing: no restart for it.
        files_replaced, setup_changed = release.replaced(binaries), any_changed(unmask, unit, config, *gpu_runtime)
        restart = systemd.service(
            name="Start or restart containerd (binaries, unit or config changed)",
            service=SERVICE,
            restarted=True,
            _if=lambda: files_replaced() or setup_changed(),
        )
        restarts.append(restart)
    return started_and_ready(restarts)


def reads(settings: preflight.HostPlan) -> list[Probe]:
    """What this deploy's operations read on a converged host (:mod:`pyinfra_iluvatar.snapshot`)."""
    found = config_reads()
    if settings.gpu is not None:
        found += snapshot.put_reads(nvidia.CONTAINERD_DROP_IN)
    found += snapshot.service_reads(SERVICE)
    if "docker" in settings.get(data.ISOLATION):
        versions = [containerd.PACKAGED_BINARY]
        if settings.gpu is not None:  # NVIDIA's drop-in picks its schema from the containerd installed
            versions += [binary for _, binary in nvidia.CONTAINERD_BINARIES]
        probes = [snapshot.probe(ContainerdVersion, binary=binary) for binary in versions]
        return [*snapshot.put_reads(limits.unit_drop_in(SERVICE)), *probes, *found]
    verify = settings.get(data.VERIFY_INSTALLED)
    return [
        snapshot.probe(DebPackageVersions, packages=[*containerd.DISTRO_PACKAGES, *containerd.DOCKER_PACKAGES]),
        snapshot.probe(InstalledRelease, component="containerd", verify=verify),
        snapshot.probe(Link, path="/usr/bin/ctr"),
        snapshot.probe(Link, path=containerd.UNIT_PATH),
        *snapshot.put_reads(containerd.UNIT_PATH),
        *found,
    ]


def config_reads() -> list[Probe]:
    """What ``containerd.config`` reads on a host where the file is this package's."""
    return [
        snapshot.probe(FindInFile, path=containerd.CONFIG_PATH, pattern=f"^{containerd.MANAGED_HEADER}"),
        snapshot.probe(Directory, path=containerd.CONFIG_DROP_INS),
        *snapshot.put_reads(containerd.CONFIG_PATH),
    ]


def packaged_containerd(settings: preflight.HostPlan) -> Callable[[], bool]:
    """
    The containerd of Docker's packages (``containerd.io``, or the distribution's ``containerd`` with
    ``docker.io``), made the worker's: this package's config (the package's own disables the CRI plugin), the
    service's file limit in a drop-in, restarted only when either changed. ``/usr/bin/ctr`` is the package's.
    """
    drop_in = limits.unit_limits(
        name="containerd.service file limit", unit=SERVICE, limit_nofile=settings.get(data.NOFILE_LIMIT)
    )
    config = containerd.config(name="containerd config", snapshotter=settings.get(data.SNAPSHOTTER))
    gpu_runtime = nvidia_runtime(settings, None)
    restarts = []
    if changing():
        systemd.daemon_reload(name="Reload systemd units", _if=drop_in.did_change)
        restart = systemd.service(
            name="Restart containerd (its config or limit changed)",
            service=SERVICE,
            restarted=True,
            _if=any_changed(drop_in, config, *gpu_runtime),
        )
        restarts.append(restart)
    return started_and_ready(restarts)


def started_and_ready(restarts: list[OperationMeta]) -> Callable[[], bool]:
    """
    containerd running and enabled, then a wait until ``ctr version`` answers when this run restarted (one of
    ``restarts`` changed) or started it. Returns, for ``_if=``, whether this run started or restarted containerd.
    """
    start = systemd.service(name="containerd running and enabled", service=SERVICE, running=True, enabled=True)
    started = any_changed(*restarts, start)
    if changing():
        containerd.ready(name="containerd answers ctr version", _if=started)
    return started


def nvidia_runtime(settings: preflight.HostPlan, containerd_major: int | None) -> list[OperationMeta]:
    """On a GPU host, NVIDIA's runtime in a config drop-in (for ``any_changed``); nothing elsewhere."""
    if settings.gpu is None:
        return []
    return [
        nvidia.containerd_runtime(
            name="NVIDIA runtime for containerd",
            containerd_major=containerd_major,
            snapshotter=settings.get(data.SNAPSHOTTER),
        )
    ]


# `pyinfra INVENTORY deploys/containerd.py` executes this file without a module name: run the deploy then.
if "__name__" not in globals():
    run_as_deploy_file(__file__, "pyinfra_iluvatar.deploys.containerd", containerd_runtime)
