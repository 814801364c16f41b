"""Real sandbox hosts for tests: a free test network per session, and helpers to reach the hosts.

Test sandboxes use networks 1 and up (0 is the default of ``pyinfra-iluvatar sandbox up``) with state in
``/var/lib/pyinfra-iluvatar/sandbox-test-N``. A lock in ``/run/lock`` per network lets concurrent test sessions
on one machine each take their own; a network whose lock is free but whose state remains belongs to a crashed
session, and ``Sandbox.up`` cleans that up.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pyinfra_iluvatar.sandbox import Sandbox, SandboxHost
from pyinfra_iluvatar.sandbox.errors import NetworkInUseError
from pyinfra_iluvatar.sandbox.network import SandboxNetwork, check_free

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TEST_NETWORKS = range(1, 32)
TEST_STATE = Path("/var/lib/pyinfra-iluvatar")
LOCKS = Path("/run/lock")


@dataclass
class SandboxSession:
    """A test session's sandbox: its hosts, the inventory that lists them, and helpers to reach them."""

    sandbox: Sandbox
    hosts: list[SandboxHost]
    env: dict[str, str] = field(default_factory=dict)
    inventory: Path = ROOT / "inventories" / "sandbox.py"

    def pyinfra_argv(self, *args: str) -> list[str]:
        """The ``pyinfra -y INVENTORY ARGS...`` command line (run it with ``env=self.env``)."""
        return [str(BIN / "pyinfra"), "-y", str(self.inventory), *args]

    def pyinfra(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run ``pyinfra -y INVENTORY ARGS...`` on the sandbox's hosts; the completed process (not checked)."""
        return subprocess.run(
            self.pyinfra_argv(*args), capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )

    def ssh(self, host: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on ``host`` as root over SSH; the completed process (not checked)."""
        argv = self.sandbox.ssh_command(host, command)
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def _lock(index: int) -> int | None:
    """An exclusive, non-blocking lock on test network ``index``: its descriptor, or None if it is taken."""
    LOCKS.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(LOCKS / f"pyinfra-iluvatar-sandbox-test-{index}", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


@contextmanager
def free_test_network() -> Iterator[tuple[int, Path]]:
    """A test network no other session holds and nothing else on this machine uses, with its state directory."""
    for index in TEST_NETWORKS:
        descriptor = _lock(index)
        if descriptor is None:
            continue
        try:
            state_dir = TEST_STATE / f"sandbox-test-{index}"
            try:
                check_free(SandboxNetwork(index), str(state_dir))
            except NetworkInUseError:
                continue
            yield index, state_dir
            return
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)  # before closing: gevent's os.close may close it later
            os.close(descriptor)
    raise RuntimeError(f"no free sandbox test network among {TEST_NETWORKS.start}..{TEST_NETWORKS.stop - 1}")
