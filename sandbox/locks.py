"""Exclusive locks on directories and lock files, so two sandbox commands never change the same things at once."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory`` (created if missing) for the ``with`` block; waits for it.

    Locking the directory itself leaves no lock file behind.
    """
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        _release(descriptor)


@contextmanager
def locked_file(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``path`` (created if missing, and left) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        _release(descriptor)


def _release(descriptor: int) -> None:
    """
    Unlock, then close. Closing alone is not enough where gevent has patched ``os.close`` (pyinfra imports gevent
    and patches everything): it may close the descriptor later, and the lock is held until it does.
    """
    try:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)
