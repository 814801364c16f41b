"""What this package installed from release artifacts, read from the receipts it leaves on each host.

Every release install (``operations/release.py``) ends by writing three files under
``/var/lib/pyinfra-iluvatar/releases/``: ``<component>.sha256`` (``sha256sum`` lines for every file it
installed), ``<component>.stat`` (each file's size, ctime and inode as installed: ``stat -c '%s %Z %i %n'``) and
then ``<component>.release`` (``key=value`` lines: component, version, and source — the artifact's
``sha256:<hex>``, or how it was built). The receipt is written last, so it only exists for an install that
finished.
"""

from __future__ import annotations

from typing import Literal, TypedDict

from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.exceptions import FactProcessError
from pyinfra.api.facts import FactBase
from typing_extensions import override

RECEIPT_DIR = "/var/lib/pyinfra-iluvatar/releases"
_SEPARATOR = "--"

FileState = Literal["ok", "modified", "missing"]


class InstalledReleaseInfo(TypedDict):
    component: str
    version: str
    source: str
    files: dict[str, FileState]
    intact: bool
    checked: Literal["sha256", "stat"]
    """How the files were checked: hashed against the ``.sha256`` receipt, or ``stat`` against the ``.stat`` one."""


def receipt_paths(component: str) -> tuple[str, str]:
    """The ``(.release, .sha256)`` receipt paths of ``component``."""
    return f"{RECEIPT_DIR}/{component}.release", f"{RECEIPT_DIR}/{component}.sha256"


def stat_path(component: str) -> str:
    """The receipt of ``component``'s files' size, ctime and inode as installed."""
    return f"{RECEIPT_DIR}/{component}.stat"


STAT_FORMAT = "%s %Z %i %n"
"""``stat -c`` format of the ``.stat`` receipt: size, ctime (which no tool can set back), inode, path."""
_STAT_RECORDED, _STAT_NOW = "-- stat", "-- now"


def _stats(lines: list[str]) -> dict[str, str]:
    """Path → ``size ctime inode`` from ``stat -c STAT_FORMAT`` lines."""
    found = {}
    for line in lines:
        fields = line.split(" ", 3)
        if len(fields) != 4 or not all(field.isdigit() for field in fields[:3]):
            raise FactProcessError(f"unexpected stat line: {line!r}")
        found[fields[3]] = " ".join(fields[:3])
    return found


def _stat_states(lines: list[str]) -> dict[str, FileState]:
    """File states from the recorded ``.stat`` lines and the same files' ``stat`` now (none for a missing one)."""
    if _STAT_NOW not in lines:
        raise FactProcessError("stat receipt output without the files' stat now")
    split = lines.index(_STAT_NOW)
    recorded, now = _stats(lines[:split]), _stats(lines[split + 1 :])
    return {
        path: "missing" if path not in now else "ok" if now[path] == recorded[path] else "modified" for path in recorded
    }


def _file_states(lines: list[str]) -> dict[str, FileState]:
    states: dict[str, FileState] = {}
    for line in lines:
        if line.startswith("sha256sum: "):
            # `sha256sum: PATH: No such file or directory` precedes `PATH: FAILED open or read`, and
            # `sha256sum: WARNING: ...` summarises: the per-file lines carry the state.
            continue
        path, sep, result = line.rpartition(": ")
        if not sep:
            raise FactProcessError(f"unexpected sha256sum line: {line!r}")
        if result == "OK":
            states[path] = "ok"
        elif result == "FAILED":
            states[path] = "modified"
        elif result == "FAILED open or read":
            states[path] = "missing"
        else:
            raise FactProcessError(f"unexpected sha256sum line: {line!r}")
    return states


def _read_lines(path: QuoteString, body: str) -> list[str | QuoteString]:
    """Shell that runs ``body`` for each line of ``path`` (in ``$_line``; a last line without newline too)."""
    return ['while IFS= read -r _line || [ -n "$_line" ]; do', body, "; done <", path]


def _print_lines(path: QuoteString) -> list[str | QuoteString]:
    """Shell that prints ``path`` line by line, as ``cat`` would but without a process of its own."""
    return _read_lines(path, "printf '%s\\n' \"$_line\"")


class InstalledRelease(FactBase[InstalledReleaseInfo | None]):
    """
    Returns the release of ``component`` this package installed, and whether each installed file is still
    byte-identical to what was installed; ``None`` when there is no receipt (never installed by this package,
    or an install that did not finish). ``intact`` is true when every recorded file is unchanged.

    Prints the receipt and runs ``sha256sum --check`` on its file list: one round trip, and the time to hash every
    file (about 100 MB for containerd). With ``verify=False`` a file counts as unchanged when its size, ctime and
    inode are those recorded when it was installed (one ``stat`` for all, no reading): any write, ``chmod`` or
    replacement changes the ctime, and no tool can set it back; a receipt without them is checked by hashing.

    .. code:: python

        {
            "component": "containerd",
            "version": "2.1.4",
            "source": "sha256:316d5104…",
            "files": {"/usr/local/bin/containerd": "ok", "/usr/local/bin/ctr": "modified"},
            "intact": False,
            "checked": "sha256",
        }
    """

    @override
    def command(self, component: str, verify: bool = True) -> StringCommand:
        release, sums = receipt_paths(component)
        hashed: list[str | QuoteString] = ["sha256sum --check", QuoteString(sums), "2>&1"]
        if not verify:
            stat = QuoteString(stat_path(component))
            # The shell's own read and printf, and one `stat` for every file: a converged run forks nothing else.
            # sha256sum lines are the 64-digit hash, two spaces, the path.
            recorded: list[str | QuoteString] = ["echo", f"'{_STAT_RECORDED}';", *_print_lines(stat)]
            recorded += [
                f"; echo '{_STAT_NOW}'; set --;",
                *_read_lines(QuoteString(sums), 'set -- "$@" "${_line#*  }"'),
            ]
            now: list[str | QuoteString] = ["; stat -c", QuoteString(STAT_FORMAT), '-- "$@" 2>/dev/null']
            hashed = ["if [ -f", stat, "]; then", *recorded, *now, "; else", *hashed, "; fi"]
        # Hashing reads every file anyway: `cat` is nothing beside it (and its captured fixtures stay as they are).
        printed = ["cat", QuoteString(release)] if verify else _print_lines(QuoteString(release))
        return StringCommand(
            "if [ -f",
            QuoteString(release),
            "]; then",
            *printed,
            f"&& echo {_SEPARATOR} && {{",
            *hashed,
            "|| true; }; fi",
        )

    @override
    def process(self, output: list[str]) -> InstalledReleaseInfo | None:
        if not output:
            return None
        if _SEPARATOR not in output:
            raise FactProcessError(f"receipt output without its file check: {output!r}")
        split = output.index(_SEPARATOR)
        receipt: dict[str, str] = {}
        for line in output[:split]:
            key, sep, value = line.partition("=")
            if not sep:
                raise FactProcessError(f"malformed receipt line: {line!r}")
            receipt[key] = value
        missing = {"component", "version", "source"} - receipt.keys()
        if missing:
            raise FactProcessError(f"receipt lacks {', '.join(sorted(missing))}")
        rest = output[split + 1 :]
        by_stat = rest[:1] == [_STAT_RECORDED]
        files = _stat_states(rest[1:]) if by_stat else _file_states(rest)
        return {
            "component": receipt["component"],
            "version": receipt["version"],
            "source": receipt["source"],
            "files": files,
            "intact": bool(files) and all(state == "ok" for state in files.values()),
            "checked": "stat" if by_stat else "sha256",
        }
