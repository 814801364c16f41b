"""The sandbox's locks are released when their block ends, also where gevent has patched ``os.close`` (pyinfra
patches everything with gevent on import; its ``close`` may close a descriptor later, holding the lock till then)."""

from __future__ import annotations

import fcntl
import os
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from pyinfra_iluvatar.sandbox import locks


@pytest.mark.parametrize("kind", ["directory", "file"])
def test_a_lock_is_free_once_its_block_ends_even_if_closing_is_deferred(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    path = tmp_path if kind == "directory" else tmp_path / "lock"
    hold: AbstractContextManager[None] = locks.locked(path) if kind == "directory" else locks.locked_file(path)
    deferred: list[int] = []
    with monkeypatch.context() as patched:
        patched.setattr(os, "close", deferred.append)  # a close that happens later, as gevent's may
        with hold:
            pass
    assert len(deferred) == 1, "the block closed its descriptor"
    other = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if the block's lock were still held
    finally:
        os.close(other)
        os.close(deferred[0])
