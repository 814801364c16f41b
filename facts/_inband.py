"""Exit status (and error output) of a fact's command, carried in its output.

pyinfra fails the host when a fact's command exits non-zero; where a non-zero exit is a state to report
(containerd not running, ZFS not answering, no NVIDIA driver), the command prints its exit status instead.
Two shapes, both parsed here so every fact reads them the same way:

- :func:`separated`: stdout as printed, then ``exit=<status>``, then each stderr line prefixed ``stderr: ``;
- :func:`merged`: stdout and stderr interleaved as printed (``2>&1``), then ``exit=<status>``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from pyinfra.api.exceptions import FactProcessError

_EXIT = re.compile(r"exit=(\d+)")
STDERR_PREFIX = "stderr: "


class Captured(NamedTuple):
    """What a command printed on stdout, its exit status, and its stderr (joined lines, ``""`` when none)."""

    stdout: list[str]
    status: int
    stderr: str


def separated(command: str) -> str:
    """``command`` with its stdout as is, then ``exit=<status>``, then its stderr lines prefixed."""
    # stdout goes straight out through fd 3 while stderr is kept in $err, so stdout stays clean and in order,
    # and the error message still reaches `process`, after the exit status.
    return (
        f"{{ err=$({command} 2>&1 >&3 3>&-); rc=$?; }} 3>&1;"
        ' echo "exit=$rc";'
        f" [ -z \"$err\" ] || printf '%s\\n' \"$err\" | sed 's/^/{STDERR_PREFIX}/'"
    )


def split_separated(output: list[str], what: str) -> Captured:
    """Parse :func:`separated` output of ``what`` (named in errors); ``FactProcessError`` when malformed."""
    exits = [index for index, line in enumerate(output) if _EXIT.fullmatch(line)]
    if not exits:
        raise FactProcessError(f"no exit status in `{what}` output: {output!r}")
    last = exits[-1]
    errors = output[last + 1 :]
    if any(not line.startswith(STDERR_PREFIX) for line in errors):
        raise FactProcessError(f"unexpected lines after the exit status of `{what}`: {errors!r}")
    status = int(output[last].removeprefix("exit="))
    return Captured(output[:last], status, "\n".join(line[len(STDERR_PREFIX) :] for line in errors))


def merged(command: str) -> str:
    """``command`` with stdout and stderr together, then ``exit=<status>``."""
    return f'{command} 2>&1; echo "exit=$?"'


def split_merged(output: list[str], what: str) -> tuple[list[str], int]:
    """Parse :func:`merged` output of ``what``: the lines before the status, and the status."""
    match = _EXIT.fullmatch(output[-1]) if output else None
    if match is None:
        raise FactProcessError(f"{what} output lacks its exit status: {output!r}")
    return output[:-1], int(match[1])
