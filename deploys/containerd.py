"""
containerd from the locked release build, as the Ilúvatar worker needs it.

Binaries in ``/usr/local/bin`` (verified, atomic, from the lock file), ``/usr/bin/ctr`` resolving to the same
``ctr`` (the worker calls that path), its unit with explicit limits (unmasked when masked), the config file
this package owns, and a restart only when binaries, unit or config changed, followed by a wait until ``ctr
version`` answers. Run it alone with ``pyinfra INVENTORY deploys/containerd.py``.
"""

from __future__ import annotations

from packaging.version import Version
from pyinfra.api.deploy import deploy
from pyinfra.context import host
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

from pyinfra_iluvatar import data
from pyinfra_iluvatar.operations import containerd, release

SERVICE = "containerd.service"


@deploy("containerd")
def containerd_runtime() -> None:
    """Install and run the locked containerd; reads the ``iluvatar_*`` data keys (README table)."""
    locked = data.lock(host).component("containerd")
    replace_package = data.get(host, data.CONTAINERD_REPLACE_PACKAGE)
    nofile = data.get(host, data.NOFILE_LIMIT)
    snapshotter = data.get(host, data.SNAPSHOTTER)
    download = data.get(host, data.DOWNLOAD)
    mirror = data.get(host, data.MIRROR)
    cache_dir = data.get(host, data.DOWNLOAD_CACHE)

    containerd.distro_package_absent(name="No packaged containerd", replace=replace_package)
    binaries = release.install(
        name=f"containerd {locked.version} binaries",
        component="containerd",
        version=locked.version,
        artifacts=dict(locked.artifacts),
        destination="/usr/local/bin",
        strip_components=1,
        download=download,
        mirror=mirror,
        cache_dir=cache_dir,
    )
    # A packaged containerd's /usr/bin/ctr (gone once the package is replaced) would be kept as a dated backup.
    files.link(name="/usr/bin/ctr is the release ctr", path="/usr/bin/ctr", target="/usr/local/bin/ctr", force=True)
    unmask = containerd.unmasked(name="containerd.service is not masked")
    unit = containerd.unit(name="containerd unit", limit_nofile=nofile)
    config = containerd.config(
        name="containerd config", containerd_major=Version(locked.version).major, snapshotter=snapshotter
    )
    systemd.daemon_reload(name="Reload systemd units", _if=any_changed(unmask, unit))
    restart = systemd.service(
        name="Start or restart containerd (binaries, unit or config changed)",
        service=SERVICE,
        restarted=True,
        _if=any_changed(binaries, unmask, unit, config),
    )
    start = systemd.service(name="containerd running and enabled", service=SERVICE, running=True, enabled=True)
    containerd.ready(name="containerd answers ctr version", _if=any_changed(restart, start))


# `pyinfra INVENTORY deploys/containerd.py` executes this file without a module name: run the deploy then.
if "__name__" not in globals():
    containerd_runtime()
