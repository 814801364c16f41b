"""containerd installed from release archives: its systemd unit, its config file, and readiness.

The binaries themselves are installed by ``operations.release.install``; ``deploys/containerd.py`` puts these
operations together and restarts containerd only when binaries, unit or config changed.
"""

from __future__ import annotations

from collections.abc import Generator
from io import StringIO
from typing import Any

from packaging.version import Version
from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.exceptions import OperationError, OperationValueError
from pyinfra.api.operation import operation
from pyinfra.context import host
from pyinfra.facts.files import FindInFile, Link
from pyinfra.operations import apt, files

from pyinfra_iluvatar.facts.containerd import ContainerdPluginErrors, ContainerdPlugins, ContainerdVersion
from pyinfra_iluvatar.facts.packages import DebPackageVersions
from pyinfra_iluvatar.facts.release import InstalledRelease, receipt_paths, stat_path
from pyinfra_iluvatar.operations._failure import fail_host

UNIT_PATH = "/etc/systemd/system/containerd.service"
PACKAGED_BINARY = "/usr/bin/containerd"
"""Where a distribution's or Docker's containerd package puts containerd (the release build goes in /usr/local/bin)."""
CONFIG_PATH = "/etc/containerd/config.toml"
CONFIG_DROP_INS = "/etc/containerd/conf.d"
MANAGED_HEADER = "# Managed by pyinfra-iluvatar"
DISTRO_PACKAGES = ("containerd", "containerd.io")
DOCKER_PACKAGES = ("docker.io", "docker-ce")
SNAPSHOTTERS = ("zfs", "overlayfs", "native")
"""The snapshotters a deploy may set as containerd's default (and the worker's ``container_resources.snapshotter``)."""


def render_unit(limit_nofile: int) -> str:
    """The containerd unit: explicit resource limits (containerd 2.0 dropped ``LimitNOFILE`` from its own)."""
    return f"""{MANAGED_HEADER}: edits here are overwritten on the next deploy.
# Put local changes in a drop-in: /etc/systemd/system/containerd.service.d/*.conf
[Unit]
Description=containerd container runtime (release build)
Documentation=https://containerd.io
After=network.target local-fs.target

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/containerd
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5
LimitNOFILE={limit_nofile}
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
"""


def render_config(containerd_major: int, snapshotter: str) -> str:
    """
    ``/etc/containerd/config.toml`` for this containerd major version (config schema 2 for 1.x, 3 for 2.x):
    the default snapshotter, the systemd cgroup driver for runc, and an ``imports`` line so that drop-ins such
    as NVIDIA's (``nvidia-ctk`` writes ``/etc/containerd/conf.d/99-nvidia.toml``) survive redeploys.
    """
    if snapshotter not in SNAPSHOTTERS:
        raise OperationValueError(f"snapshotter must be one of {', '.join(SNAPSHOTTERS)}, got {snapshotter!r}")
    header = f"{MANAGED_HEADER}: edits here are overwritten; add files to {CONFIG_DROP_INS}/ instead.\n"
    imports = f'imports = ["{CONFIG_DROP_INS}/*.toml"]\n'
    if containerd_major >= 2:
        return (
            f"{header}version = 3\n{imports}\n"
            f'[plugins."io.containerd.cri.v1.images"]\n  snapshotter = "{snapshotter}"\n\n'
            '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]\n'
            "  SystemdCgroup = true\n"
        )
    return (
        f"{header}version = 2\n{imports}\n"
        f'[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "{snapshotter}"\n\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n'
        "  SystemdCgroup = true\n"
    )


@operation()
def distro_package_absent(replace: bool = False) -> Generator[Any, None, None]:
    """
    Make sure no distribution containerd package (``containerd``, ``containerd.io``) competes with the release
    build: two containerd binaries on one host confuse everyone.

    Without ``replace`` a packaged containerd is an error that names the package; with it, the package is
    removed (not purged). A host that runs Docker's engine from packages keeps its containerd: that is an
    error either way, since removing it would remove Docker.

    + replace: remove the packaged containerd instead of stopping with an error

    **Example:**

    .. code:: python

        containerd.distro_package_absent(name="No packaged containerd", replace=False)
    """
    installed = host.get_fact(DebPackageVersions, packages=[*DISTRO_PACKAGES, *DOCKER_PACKAGES])
    present = [name for name in DISTRO_PACKAGES if name in installed]
    if not present:
        host.noop("no distribution containerd package is installed")
        return
    found = ", ".join(f"{name} {'/'.join(installed[name])}" for name in present)
    docker = [name for name in DOCKER_PACKAGES if name in installed]
    if docker:
        raise OperationError(
            f"{host.name}: containerd comes from the package {found}, which {', '.join(docker)} needs; "
            "the release build cannot replace it while Docker's engine is installed from packages"
        )
    if not replace:
        raise OperationError(
            f"{host.name}: containerd is already installed from the package {found}; set "
            "iluvatar_containerd_replace_package=true to remove it in favour of the locked release build"
        )
    yield from apt.packages._inner(packages=present, present=False)


@operation()
def unmasked() -> Generator[Any, None, None]:
    """
    Unmask ``containerd.service``: remove ``/etc/systemd/system/containerd.service`` when it is a mask (a link to
    ``/dev/null``), as ``systemctl unmask`` does, but without needing a running systemd. Reload systemd after it.

    **Example:**

    .. code:: python

        containerd.unmasked(name="containerd.service is not masked")
    """
    link = host.get_fact(Link, path=UNIT_PATH)
    if link and link.get("link_target") == "/dev/null":
        yield StringCommand("rm", "-f", UNIT_PATH)
    else:
        host.noop("containerd.service is not masked")


@operation()
def release_build_absent() -> Generator[Any, None, None]:
    """
    Remove the containerd release build this package installed — its binaries (the receipt lists them), its
    unit ``/etc/systemd/system/containerd.service`` (which would shadow a package's unit) and the ``/usr/bin/ctr``
    link — so that a containerd package (Docker's ``containerd.io``, the distribution's ``containerd``) can be the
    host's only containerd. Stops containerd first. Does nothing where no such build is installed.

    **Example:**

    .. code:: python

        containerd.release_build_absent(name="No containerd release build")
    """
    installed = host.get_fact(InstalledRelease, component="containerd", verify=False)
    unit_ours = host.get_fact(FindInFile, path=UNIT_PATH, pattern=f"^{MANAGED_HEADER}")
    if installed is None and not unit_ours:
        host.noop("no containerd release build of pyinfra-iluvatar is installed")
        return
    yield "systemctl stop containerd.service 2>/dev/null || true"
    if unit_ours:
        yield StringCommand("rm", "-f", UNIT_PATH)
        yield "systemctl daemon-reload"
    files_installed = sorted(installed["files"]) if installed else []
    yield StringCommand(
        'if [ "$(readlink /usr/bin/ctr)" = /usr/local/bin/ctr ]; then rm -f /usr/bin/ctr; fi;',
        "rm",
        "-f",
        *(QuoteString(path) for path in (*files_installed, *receipt_paths("containerd"), stat_path("containerd"))),
    )


@operation()
def unit(limit_nofile: int) -> Generator[Any, None, None]:
    """
    Write the containerd unit to ``/etc/systemd/system/containerd.service`` (which wins over any packaged unit
    and over a hard-linked copy left by the setup page). Reload systemd when this changes.

    + limit_nofile: the service's ``LimitNOFILE`` (PAM limits do not reach services)

    **Example:**

    .. code:: python

        containerd.unit(name="containerd unit", limit_nofile=1000000)
    """
    yield from files.put._inner(
        src=StringIO(render_unit(limit_nofile)), dest=UNIT_PATH, user="root", group="root", mode="644"
    )


@operation()
def config(containerd_major: int | None = None, snapshotter: str = "zfs") -> Generator[Any, None, None]:
    """
    Own ``/etc/containerd/config.toml`` (see :func:`render_config`). A config this package did not write is
    kept once as ``config.toml.orig`` before the first overwrite, so nothing an admin wrote (or a package shipped:
    Docker's ``containerd.io`` disables the CRI plugin in its own) is lost.

    + containerd_major: major version of the containerd that reads it (picks the config schema); ``None``: the one
      installed at ``/usr/bin/containerd`` (a package's), read when the operation runs (1 when there is none yet)
    + snapshotter: ``zfs`` (default), ``overlayfs`` or ``native``

    **Example:**

    .. code:: python

        containerd.config(name="containerd config", containerd_major=2, snapshotter="zfs")
    """
    if containerd_major is None:
        installed = host.get_fact(ContainerdVersion, binary=PACKAGED_BINARY)
        containerd_major = Version(installed["version"]).major if installed else 1
    content = render_config(containerd_major, snapshotter)
    foreign = host.get_fact(FindInFile, path=CONFIG_PATH, pattern=f"^{MANAGED_HEADER}")
    if foreign == []:  # the file exists and lacks our header (None: no such file)
        yield StringCommand("test", "-e", f"{CONFIG_PATH}.orig", "||", "cp", "-p", CONFIG_PATH, f"{CONFIG_PATH}.orig")
    yield from files.directory._inner(path=CONFIG_DROP_INS, user="root", group="root", mode="755")
    yield from files.put._inner(src=StringIO(content), dest=CONFIG_PATH, user="root", group="root", mode="644")


@operation(is_idempotent=False, idempotent_notice="It waits for containerd each time it runs: run it with _if=.")
def ready(timeout: int = 60) -> Generator[Any, None, None]:
    """
    Wait until containerd answers ``ctr version`` (through ``/usr/bin/ctr``, the path the worker calls), failing
    the host after ``timeout`` seconds. Use it after a start or restart (``_if=``): it always runs.

    + timeout: seconds to wait

    **Example:**

    .. code:: python

        containerd.ready(name="containerd answers", _if=any_changed(restart, start))
    """
    seconds = int(timeout)
    yield (
        f"i=0; until /usr/bin/ctr version >/dev/null 2>&1; do i=$((i+1)); if [ $i -ge {seconds} ]; then "
        f'echo "containerd did not answer ctr version within {seconds}s" >&2; exit 1; fi; sleep 1; done'
    )


CRI_PLUGIN = "io.containerd.grpc.v1.cri"
_SNAPSHOTTER_HINTS = {
    "zfs": "no ZFS dataset is mounted at /var/lib/containerd/io.containerd.snapshotter.v1.zfs (zfs-fuse's fuse.zfs"
    " mounts do not count), or this containerd build lacks the zfs snapshotter (2.0.0)",
    "overlayfs": "/var/lib/containerd cannot hold overlay mounts (it is itself on overlayfs, or the kernel lacks it)",
}


@operation(is_idempotent=False, idempotent_notice="It reads containerd's plugins each time it runs: use _if=.")
def plugins_ready(snapshotter: str) -> Generator[Any, None, None]:
    """
    Check that containerd answers and loaded its CRI plugin and the ``snapshotter`` snapshotter: the Ilúvatar
    worker pulls images with that snapshotter and runs containers through them. Changes nothing; a missing or
    failed plugin fails this host (not the others) with containerd's status, its own reason (``ctr plugins ls
    -d``) and the likely cause. Run it after a start or restart (``_if=``).

    + snapshotter: the snapshotter the worker uses (``zfs``, ``overlayfs``, ``native``)

    **Example:**

    .. code:: python

        containerd.plugins_ready(name="containerd plugins", snapshotter="zfs", _if=any_changed(restart, start))
    """
    found = host.get_fact(ContainerdPlugins)
    if found is None or not found["answering"]:
        reason = "ctr is not installed" if found is None else found["error"]
        yield fail_host(f"containerd does not answer: {reason}")
        return
    problems = []
    snapshotter_plugin = f"io.containerd.snapshotter.v1.{snapshotter}"
    for name, hint in ((snapshotter_plugin, _SNAPSHOTTER_HINTS.get(snapshotter)), (CRI_PLUGIN, None)):
        plugin = found["plugins"].get(name)
        status = plugin["status"] if plugin else "absent"
        if status != "ok":
            problems.append(f"plugin {name} is {status}" + (f" ({hint})" if hint else ""))
    if problems:
        reasons = host.get_fact(ContainerdPluginErrors) or {}
        why = [f"{name}: {reasons[name]}" for name in (snapshotter_plugin, CRI_PLUGIN) if name in reasons]
        detail = f" (containerd says: {'; '.join(why)})" if why else ""
        yield fail_host(f"containerd is running but {'; '.join(problems)}{detail}")
        return
    host.noop(f"containerd's CRI plugin and {snapshotter} snapshotter are loaded")
