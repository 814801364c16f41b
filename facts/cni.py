"""
Facts about CNI: the plugins in a plugin directory and the ``cnitool`` beside them.

The Ilúvatar worker runs ``/opt/cni/bin/cnitool`` with the plugins in ``/opt/cni/bin``; its network needs
at least ``bridge`` and ``host-local``.
"""

from __future__ import annotations

import re
import shlex
from typing import TypedDict

from pyinfra.api.exceptions import FactProcessError
from pyinfra.api.facts import FactBase
from typing_extensions import override

from pyinfra_iluvatar.facts._versions import upstream_version


class CniPlugin(TypedDict):
    """What one executable in a CNI plugin directory said when run with no ``CNI_COMMAND``."""

    about: str | None
    """The first line it printed: a plugin's about line (``"CNI bridge plugin v1.6.1"``), or for anything
    else whatever it printed first (``None`` when it printed nothing)."""
    version: str | None
    """The release from the about line, PEP 440-normalised (``"1.6.1"``); ``None`` when the build does not
    know its version (Debian's builds say ``version unknown``) or it printed no about line."""
    protocols: list[str]
    """CNI spec versions it supports (its ``CNI protocol versions supported:`` line); empty when absent."""
    exit_status: int
    """Its exit status: 0 for a CNI plugin; 124 when it was stopped after 5 s; 126 when it cannot run here
    (for instance a binary for another architecture)."""


class CniPluginsInfo(TypedDict):
    """The CNI plugins in a directory, and whether ``cnitool`` is there too."""

    cnitool: bool
    """Whether an executable ``cnitool`` is in the directory (it is listed here, never run)."""
    plugins: dict[str, CniPlugin]
    """Every other executable file in the directory, keyed by file name."""


_PLUGIN = re.compile(r"plugin (?P<exit>\d+) (?P<name>.+)")
_OUTPUT_PREFIX = "| "
_CNITOOL = "cnitool"
_ABOUT = re.compile(r"CNI \S+ plugin (?P<version>.+)")
_PROTOCOLS_PREFIX = "CNI protocol versions supported:"


class CniPlugins(FactBase[CniPluginsInfo]):
    """
    Returns the CNI plugins in ``directory`` (default ``/opt/cni/bin``) with the version each reports
    about itself, and whether ``cnitool`` is there. A missing or empty directory gives no plugins and no
    ``cnitool``. Non-executable files (a release tarball's ``README.md`` and ``LICENSE``) are left out.

    Runs every executable file in the directory except ``cnitool`` once (or, with ``only``, just the files so
    named), in one round trip, with an empty ``CNI_COMMAND``, stdin from ``/dev/null`` and a 5 s ``timeout``: a
    CNI plugin then prints its about line and changes nothing.

    .. code:: python

        {
            "cnitool": True,
            "plugins": {
                "bridge": {
                    "about": "CNI bridge plugin v1.6.1",
                    "version": "1.6.1",
                    "protocols": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
                    "exit_status": 0,
                },
                ...
            },
        }
    """

    @override
    @staticmethod
    def default() -> CniPluginsInfo:
        return {"cnitool": False, "plugins": {}}

    @override
    def command(self, directory: str = "/opt/cni/bin", only: list[str] | None = None) -> str:
        if only is not None and not all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in only):
            raise ValueError(f"plugin names are plain file names: {only!r}")
        files = '"$d"/*' if only is None else " ".join(f'"$d"/{name}' for name in only)
        return (
            f"d={shlex.quote(directory)};"
            f' if [ -d "$d" ]; then for f in {files}; do'
            ' [ -f "$f" ] && [ -x "$f" ] || continue;'
            ' n="${f##*/}";'
            f' if [ "$n" = {_CNITOOL} ]; then echo {_CNITOOL}; continue; fi;'
            ' out=$(CNI_COMMAND= timeout 5 "$f" </dev/null 2>&1); rc=$?;'
            ' echo "plugin $rc $n";'
            f" [ -z \"$out\" ] || printf '%s\\n' \"$out\" | head -n 5 | sed 's/^/{_OUTPUT_PREFIX}/';"
            " done; fi"
        )

    @override
    def process(self, output: list[str]) -> CniPluginsInfo:
        info = self.default()
        name: str | None = None
        printed: dict[str, list[str]] = {}
        exits: dict[str, int] = {}
        for line in output:
            plugin = _PLUGIN.fullmatch(line)
            if line == _CNITOOL:
                info["cnitool"] = True
            elif plugin is not None:
                name = plugin["name"]
                exits[name] = int(plugin["exit"])
                printed[name] = []
            elif line.startswith(_OUTPUT_PREFIX.rstrip()) and name is not None:
                printed[name].append(line[len(_OUTPUT_PREFIX) :])
            else:
                raise FactProcessError(f"unexpected line in CNI plugin listing: {line!r}")
        for name, lines in printed.items():
            info["plugins"][name] = _describe(lines, exits[name])
        return info


def _describe(lines: list[str], exit_status: int) -> CniPlugin:
    about = next((line for line in lines if line.strip()), None)
    match = _ABOUT.fullmatch(about) if about is not None else None
    protocols = next(
        (line.removeprefix(_PROTOCOLS_PREFIX) for line in lines if line.startswith(_PROTOCOLS_PREFIX)), None
    )
    return {
        "about": about,
        "version": upstream_version(match["version"]) if match is not None else None,
        "protocols": [item.strip() for item in protocols.split(",")] if protocols else [],
        "exit_status": exit_status,
    }
