"""Which cgroup hierarchies a host gets its own cgroup in (no root needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyinfra_iluvatar.sandbox import cgroups
from pyinfra_iluvatar.sandbox.cgroups import TOP, hierarchies

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
UNIFIED = """\
25 21 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
"""


def test_hybrid_hierarchy_uses_name_systemd_and_unified() -> None:
    assert hierarchies(HYBRID) == [Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified")]


def test_unified_hierarchy() -> None:
    assert hierarchies(UNIFIED) == [Path("/sys/fs/cgroup")]


def test_a_group_removed_while_listing_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "hierarchies", lambda: [tmp_path])
    host = tmp_path / TOP / "ilu3-1"
    (host / "payload").mkdir(parents=True)
    (host / "cgroup.procs").write_text(f"{os.getpid()}\n")
    # No payload/cgroup.procs: the group went between os.walk and the read (a real cgroup always has the file).
    assert [process.pid for process in cgroups.processes("ilu3-1")] == [os.getpid()]
