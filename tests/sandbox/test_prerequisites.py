"""Prerequisite errors say what is missing and what to do (no root needed: the checks are faked)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pyinfra_iluvatar.sandbox import prerequisites
from pyinfra_iluvatar.sandbox.errors import PrerequisiteError


def test_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(PrerequisiteError, match=r"needs root.*sudo"):
        prerequisites.check(building=False, say=print)


def test_missing_tools_name_their_packages_where_apt_get_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    absent = {"systemd-nspawn", "debootstrap", "apt-get"}
    real_which = shutil.which
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda c: None if c in absent else real_which(c))
    with pytest.raises(PrerequisiteError) as raised:
        prerequisites.check(building=True, say=print)
    assert "systemd-nspawn" in str(raised.value) and "systemd-container" in str(raised.value)
    assert "debootstrap" in str(raised.value)


def test_debootstrap_is_needed_only_to_build_an_image(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda c: None if c == "debootstrap" else real_which(c))
    assert "debootstrap" in prerequisites.missing_packages(building=True)
    assert "debootstrap" not in prerequisites.missing_packages(building=False)


def test_inotify_room_raises_the_limit_for_the_hosts_and_never_lowers_it(tmp_path: Path) -> None:
    limit = tmp_path / "max_user_instances"
    limit.write_text("128\n")  # the kernel's default
    said: list[str] = []
    prerequisites.inotify_room(16, said.append, limit=limit)
    assert int(limit.read_text()) == 128 + prerequisites.INOTIFY_PER_HOST * 16
    assert said and "max_user_instances from 128" in said[0]
    limit.write_text("100000\n")
    prerequisites.inotify_room(16, said.append, limit=limit)
    assert limit.read_text() == "100000\n" and len(said) == 1
