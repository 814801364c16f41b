"""
Facts about containerd: which build is installed and which plugins the running daemon loaded.

The Ilúvatar worker drives containerd through ``/usr/bin/ctr`` and pulls images with
``--snapshotter zfs``; containerd starts without the zfs snapshotter when its dataset is not mounted
(status ``skip``), and containerd 2.0.0 shipped without the plugin at all. ``ContainerdPlugins`` is how a
deploy tells these apart.
"""

from __future__ import annotations

import shlex
from typing import TypedDict

from pyinfra.api.exceptions import FactProcessError
from pyinfra.api.facts import FactBase
from typing_extensions import override

from pyinfra_iluvatar.facts._inband import separated, split_separated
from pyinfra_iluvatar.facts._versions import upstream_version


class ContainerdVersionInfo(TypedDict):
    """What ``containerd --version`` says about a containerd binary."""

    version: str
    """The upstream release, PEP 440-normalised (``"1.6.20"`` for Debian's ``1.6.20~ds1``)."""
    raw: str
    """The version as printed (``"1.6.20~ds1"``, ``"v2.1.4"``)."""
    revision: str | None
    """The build's revision (a git commit, or Debian's package version); ``None`` when the build has none."""
    package: str | None
    """The build's package name: ``github.com/containerd/containerd`` (``/v2`` from 2.0) for upstream and
    distribution builds, ``containerd.io`` for Docker's packages."""


class ContainerdVersion(FactBase[ContainerdVersionInfo | None]):
    """
    Returns the version of a containerd binary (``containerd`` on the ``PATH`` by default, or a path such
    as ``/usr/local/bin/containerd``), ``None`` when there is none. Compare ``version`` with a release
    version: ``"v2.1.4"`` and ``"2.1.4"`` both give ``"2.1.4"`` and distribution suffixes stay in ``raw``.

    Runs ``containerd --version``.

    .. code:: python

        {
            "version": "1.6.20",
            "raw": "1.6.20~ds1",
            "revision": "1.6.20~ds1-1+deb12u3",
            "package": "github.com/containerd/containerd",
        }
    """

    @override
    def requires_command(self, binary: str = "containerd") -> str:
        return binary

    @override
    def command(self, binary: str = "containerd") -> str:
        return f"{shlex.quote(binary)} --version"

    @override
    def process(self, output: list[str]) -> ContainerdVersionInfo | None:
        lines = [line for line in output if line.strip()]
        fields = lines[0].split() if len(lines) == 1 else []
        # `containerd <package> <version> [<revision>]`; builds without a revision print a trailing space.
        if len(fields) not in (3, 4) or fields[0] != "containerd":
            raise FactProcessError(f"not a `containerd --version` line: {output!r}")
        version = upstream_version(fields[2])
        if version is None:
            raise FactProcessError(f"no release version in `containerd --version`: {fields[2]!r}")
        return {
            "version": version,
            "raw": fields[2],
            "revision": fields[3] if len(fields) == 4 else None,
            "package": fields[1],
        }


class ContainerdPlugin(TypedDict):
    """One row of ``ctr plugins ls``."""

    type: str
    """Plugin type, e.g. ``io.containerd.snapshotter.v1``."""
    id: str
    """Plugin id within its type, e.g. ``zfs``."""
    platforms: list[str]
    """Platforms the plugin supports (``["linux/amd64"]``); empty for platform-independent plugins."""
    status: str
    """``ok`` (loaded), ``skip`` (declined to load, e.g. zfs without its dataset) or ``error``."""


class ContainerdPluginsInfo(TypedDict):
    """What the containerd daemon says about its plugins, or why it said nothing."""

    answering: bool
    """Whether containerd answered on its socket."""
    error: str | None
    """What ``ctr`` printed when containerd did not answer (socket missing, connection refused, …)."""
    plugins: dict[str, ContainerdPlugin]
    """Plugins keyed ``"<type>.<id>"`` (``io.containerd.snapshotter.v1.zfs``); empty when not answering."""


_HEADER = ["TYPE", "ID", "PLATFORMS", "STATUS"]
_STATUSES = ("ok", "skip", "error")


class ContainerdPlugins(FactBase[ContainerdPluginsInfo | None]):
    """
    Returns the plugins the running containerd loaded, keyed ``"<type>.<id>"``, each with its platforms
    and status; ``None`` when ``ctr`` is not installed. When containerd does not answer (not running,
    socket missing, connection refused) the fact does not fail the host: it returns ``answering: False``
    with ``ctr``'s message in ``error`` and no plugins. A deploy checks the zfs snapshotter with
    ``plugins.get("io.containerd.snapshotter.v1.zfs")``: absent (a build without it, such as 2.0.0),
    ``skip`` (no ZFS dataset mounted at ``/var/lib/containerd/io.containerd.snapshotter.v1.zfs``),
    ``error`` or ``ok``.

    Runs ``ctr plugins ls`` (connect timeout 3 s, total 10 s) on containerd's default socket, with its exit
    status and its error output captured in-band.

    .. code:: python

        {
            "answering": True,
            "error": None,
            "plugins": {
                "io.containerd.snapshotter.v1.zfs": {
                    "type": "io.containerd.snapshotter.v1",
                    "id": "zfs",
                    "platforms": ["linux/amd64"],
                    "status": "skip",
                },
                ...
            },
        }
    """

    @override
    def requires_command(self) -> str:
        return "ctr"

    @override
    def command(self) -> str:
        return separated("ctr --connect-timeout 3s --timeout 10s plugins ls")

    @override
    def process(self, output: list[str]) -> ContainerdPluginsInfo | None:
        result = split_separated(output, "ctr plugins ls")
        if result.status != 0:
            fallback = f"ctr plugins ls exited with status {result.status}"
            return {"answering": False, "error": result.stderr or fallback, "plugins": {}}
        return {"answering": True, "error": None, "plugins": _parse_plugin_table(result.stdout)}


def _parse_plugin_table(lines: list[str]) -> dict[str, ContainerdPlugin]:
    rows = [line.split() for line in lines if line.strip()]
    if not rows or rows[0] != _HEADER:
        raise FactProcessError(f"`ctr plugins ls` printed no plugin table: {lines!r}")
    plugins: dict[str, ContainerdPlugin] = {}
    for row in rows[1:]:
        if len(row) != len(_HEADER) or row[3] not in _STATUSES:
            raise FactProcessError(f"not a `ctr plugins ls` row: {' '.join(row)!r}")
        plugin_type, plugin_id, platforms, status = row
        plugins[f"{plugin_type}.{plugin_id}"] = {
            "type": plugin_type,
            "id": plugin_id,
            "platforms": [] if platforms == "-" else platforms.split(","),
            "status": status,
        }
    return plugins


class ContainerdPluginErrors(FactBase["dict[str, str] | None"]):
    """
    Returns containerd's own reason for every plugin that did not load, keyed ``"<type>.<id>"`` like
    :class:`ContainerdPlugins` (a plugin that loaded is absent); ``{}`` when containerd does not answer; ``None``
    without ``ctr``. ``skip`` reasons end in ``: skip plugin`` (the zfs snapshotter: ``path
    /var/lib/containerd/io.containerd.snapshotter.v1.zfs must be a zfs filesystem to be used with the zfs
    snapshotter: skip plugin``).

    Runs ``ctr plugins ls -d`` (connect timeout 3 s, total 10 s) with its exit status captured in-band.

    .. code:: python

        {"io.containerd.snapshotter.v1.devmapper": "devmapper not configured"}
    """

    @override
    def requires_command(self) -> str:
        return "ctr"

    @override
    def command(self) -> str:
        return separated("ctr --connect-timeout 3s --timeout 10s plugins ls -d")

    @override
    def process(self, output: list[str]) -> dict[str, str] | None:
        result = split_separated(output, "ctr plugins ls -d")
        if result.status != 0:
            return {}
        errors: dict[str, str] = {}
        plugin_type = plugin_id = None
        for line in result.stdout:
            key, _, value = line.strip().partition(":")
            if not line.startswith(" ") and key == "Type":
                plugin_type, plugin_id = value.strip(), None
            elif not line.startswith(" ") and key == "ID":
                plugin_id = value.strip()
            elif line.startswith(" ") and key == "Message":
                if plugin_type is None or plugin_id is None:
                    raise FactProcessError(f"`ctr plugins ls -d`: an error message outside a plugin: {line!r}")
                errors[f"{plugin_type}.{plugin_id}"] = value.strip()
        return errors
