"""Processes the sandbox runs: one-shot commands, and daemons it must find again after a crash.

A daemon is remembered as a :class:`ProcessRef` (pid and kernel start time), so a recycled pid is never taken for
it. When the state file is gone, :func:`find` scans ``/proc`` for command lines that name the sandbox's own paths.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pyinfra_iluvatar.sandbox.errors import PrerequisiteError, SandboxError


def run(argv: Sequence[str], *, timeout: float = 120) -> str:
    """Run ``argv`` and return its stdout; raise :class:`SandboxError` with its stderr when it fails.

    A command that is not installed is a :class:`PrerequisiteError`.
    """
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as error:
        raise PrerequisiteError(
            f"`{argv[0]}` is not installed on this machine (needed for `{' '.join(argv)}`)"
        ) from error
    except subprocess.TimeoutExpired as error:
        raise SandboxError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from error
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise SandboxError(f"`{' '.join(argv)}` failed (exit {result.returncode}): {detail}")
    return result.stdout


def wait_for(condition: Callable[[], bool], *, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name (field 3, the state, comes first); None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


@dataclass(frozen=True)
class ProcessRef:
    """A process by pid and start time (clock ticks after boot), immune to pid reuse."""

    pid: int
    start_time: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        """The process now running as ``pid``, or None if there is none."""
        fields = _stat_fields(pid)
        return None if fields is None else cls(pid, int(fields[19]))

    def alive(self) -> bool:
        """Whether this very process still runs (a zombie counts as gone)."""
        fields = _stat_fields(self.pid)
        return fields is not None and int(fields[19]) == self.start_time and fields[0] != "Z"

    def signal(self, signum: signal.Signals) -> None:
        """Send ``signum`` if this process still runs."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def reap(self) -> None:
        """Collect the exit status if this process is our child (a no-op otherwise)."""
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, os.WNOHANG)

    def stop(self, *, timeout: float = 10) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; returns once the process is gone."""
        self.signal(signal.SIGTERM)
        if not self.wait_gone(timeout):
            self.signal(signal.SIGKILL)
            if not self.wait_gone(timeout):
                raise SandboxError(f"process {self.pid} survived SIGKILL for {timeout:.0f} s")

    def wait_gone(self, timeout: float) -> bool:
        """Wait until this process has exited (reaping it when it is ours); False on timeout."""

        def gone() -> bool:
            self.reap()
            return not self.alive()

        return wait_for(gone, timeout=timeout)


def command_line(pid: int) -> list[str]:
    """The argv of ``pid`` (empty when it is gone or a kernel thread)."""
    return _nul_separated(Path(f"/proc/{pid}/cmdline"))


def environment(pid: int) -> list[str]:
    """The initial ``NAME=value`` environment of ``pid`` (empty when it is gone)."""
    return _nul_separated(Path(f"/proc/{pid}/environ"))


def _nul_separated(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def find(predicate: Callable[[int], bool]) -> list[ProcessRef]:
    """Every running process (but this one) whose pid satisfies ``predicate``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid() or not predicate(int(entry.name)):
            continue
        ref = ProcessRef.of(int(entry.name))
        if ref is not None and ref.alive():
            found.append(ref)
    return found


def start_daemon(argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> ProcessRef:
    """Start ``argv`` in its own session, stdout and stderr to ``log``, with ``env`` added to the environment.

    It outlives this process.
    """
    with log.open("ab") as output:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    # Until it is reaped, our child keeps its /proc entry (as a zombie at worst), so it always has a ref here. One
    # that exits at once is caught by the callers, which check `alive()` while they wait for it to be ready.
    ref = ProcessRef.of(process.pid)
    assert ref is not None
    return ref
