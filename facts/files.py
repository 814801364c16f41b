"""What pyinfra's own file facts read, for many paths in one command each (:mod:`pyinfra_iluvatar.snapshot`).

pyinfra's ``files.File``, ``Directory`` and ``Link`` run one ``stat`` per path, ``files.Sha1File`` one ``sha1sum``
per file. These run one for all the paths a deploy's operations read, printing for each path exactly what the
single fact's command prints, so that the single fact's own ``process`` turns it into the same value.
"""

from __future__ import annotations

from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.exceptions import FactProcessError
from pyinfra.api.facts import FactBase
from pyinfra.facts.files import LINUX_STAT_COMMAND
from typing_extensions import override

_STAT_FORMAT = LINUX_STAT_COMMAND.removeprefix("stat -c '").removesuffix("'")
_SENTINEL_STAT = "/"
_SENTINEL_HASH = "/dev/null"
"""A path each command is also asked about, which always exists: no answer for it means the tool did not run (no
GNU ``stat``, no ``sha1sum``), which must not read as "every path is missing"."""


def _paths(paths: list[str]) -> list[QuoteString]:
    if any("\n" in path or path.startswith("~") for path in paths):
        raise ValueError(f"paths must be absolute, one line each: {paths!r}")
    return [QuoteString(path) for path in paths]


class PathStats(FactBase[dict[str, str]]):
    """
    Returns, for each of ``paths`` that exists (a link is not followed), the line pyinfra's ``files.File`` reads
    for it (GNU ``stat -c 'user=%U … %N'``); a path that does not exist is absent. Raises ``FactProcessError``
    when GNU ``stat`` did not answer (read each path with ``files.File`` then).

    .. code:: python

        {"/etc/iluvatar": "user=root group=root mode=drwxr-xr-x atime=… size=4096 '/etc/iluvatar'"}
    """

    @override
    def command(self, paths: list[str]) -> StringCommand:
        # `%n` on its own line names each answer: stat says nothing on stdout for a missing path.
        return StringCommand(
            "stat --printf", QuoteString(f"%n\\n{_STAT_FORMAT}\\n"), "--", _SENTINEL_STAT, *_paths(paths), "|| true"
        )

    @override
    def process(self, output: list[str]) -> dict[str, str]:
        if len(output) % 2:
            raise FactProcessError(f"stat printed an odd number of lines: {output!r}")
        found = dict(zip(output[::2], output[1::2], strict=True))
        if found.pop(_SENTINEL_STAT, None) is None:
            raise FactProcessError("GNU stat did not answer")
        return found


class FileHashes(FactBase[dict[str, str]]):
    """
    Returns the SHA1 of each of ``paths`` that is a readable file, as pyinfra's ``files.Sha1File`` reads it
    (``sha1sum``); other paths are absent. Raises ``FactProcessError`` when ``sha1sum`` did not answer.

    .. code:: python

        {"/etc/iluvatar/worker.json": "5c1d…"}
    """

    @override
    def command(self, paths: list[str]) -> StringCommand:
        return StringCommand("sha1sum --", _SENTINEL_HASH, *_paths(paths), "2>/dev/null || true")

    @override
    def process(self, output: list[str]) -> dict[str, str]:
        found = {}
        for line in output:
            digest, separator, path = line.partition("  ")
            if separator and len(digest) == 40 and not digest.startswith("\\"):
                found[path] = digest
        if found.pop(_SENTINEL_HASH, None) is None:
            raise FactProcessError("sha1sum did not answer")
        return found
