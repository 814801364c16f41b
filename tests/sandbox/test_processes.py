"""Processes the sandbox must find again: identity by pid and start time, lookup by command line (no root)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from pyinfra_iluvatar.sandbox.errors import PrerequisiteError
from pyinfra_iluvatar.sandbox.processes import ProcessRef, command_line, find, run, wait_for


def test_find_and_stop_a_process_by_its_command_line() -> None:
    marker = f"sandbox-test-{uuid.uuid4().hex}"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    try:
        # Until the child has exec'd, its command line is still this test's.
        assert wait_for(lambda: bool(find(lambda pid: marker in command_line(pid))), timeout=10)
        (found,) = find(lambda pid: marker in command_line(pid))
        assert found.pid == child.pid and found.alive()
        found.stop(timeout=10)
        assert not found.alive()
        assert child.poll() is not None, "stop() reaps its own children"
    finally:
        child.kill()
        child.wait()


def test_a_recycled_pid_is_not_the_same_process() -> None:
    me = ProcessRef.of(os.getpid())
    assert me is not None and me.alive()
    assert not ProcessRef(me.pid, me.start_time + 1).alive()


def test_a_command_that_is_not_installed_is_a_prerequisite_error() -> None:
    with pytest.raises(PrerequisiteError, match="pyinfra-iluvatar-no-such-command` is not installed"):
        run(["pyinfra-iluvatar-no-such-command", "--version"])
