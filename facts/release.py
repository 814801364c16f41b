"""What this package installed from release artifacts, read from the receipts it leaves on each host.

Every release install (``operations/release.py``) ends by writing two files under
``/var/lib/pyinfra-iluvatar/releases/``: ``<component>.sha256`` (``sha256sum`` lines for every file it
installed) and then ``<component>.release`` (``key=value`` lines: component, version, and source — the
artifact's ``sha256:<hex>``, or how it was built). The receipt is written last, so it only exists for an
install that finished.
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


def receipt_paths(component: str) -> tuple[str, str]:
    """The ``(.release, .sha256)`` receipt paths of ``component``."""
    return f"{RECEIPT_DIR}/{component}.release", f"{RECEIPT_DIR}/{component}.sha256"


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


class InstalledRelease(FactBase[InstalledReleaseInfo | None]):
    """
    Returns the release of ``component`` this package installed, and whether each installed file is still
    byte-identical to what was installed; ``None`` when there is no receipt (never installed by this package,
    or an install that did not finish). ``intact`` is true when every recorded file is unchanged.

    Runs ``cat`` on the receipt and ``sha256sum --check`` on its file list: one round trip.

    .. code:: python

        {
            "component": "containerd",
            "version": "2.1.4",
            "source": "sha256:316d5104…",
            "files": {"/usr/local/bin/containerd": "ok", "/usr/local/bin/ctr": "modified"},
            "intact": False,
        }
    """

    @override
    def command(self, component: str) -> StringCommand:
        release, sums = receipt_paths(component)
        return StringCommand(
            "if [ -f",
            QuoteString(release),
            "]; then cat",
            QuoteString(release),
            f"&& echo {_SEPARATOR} && {{ sha256sum --check",
            QuoteString(sums),
            "2>&1 || true; }; fi",
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
        files = _file_states(output[split + 1 :])
        return {
            "component": receipt["component"],
            "version": receipt["version"],
            "source": receipt["source"],
            "files": files,
            "intact": bool(files) and all(state == "ok" for state in files.values()),
        }
