"""The sandbox as a whole, where no root is needed: what ``down`` refuses to touch, locks."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from pyinfra_iluvatar.sandbox import Sandbox, image, manager, prerequisites, state
from pyinfra_iluvatar.sandbox.errors import PrerequisiteError, SandboxError
from pyinfra_iluvatar.sandbox.manager import MARKER
from pyinfra_iluvatar.sandbox.network import SandboxNetwork


@pytest.fixture(autouse=True)
def _locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lock files here, not one more in /run/lock for each test's state directory."""
    monkeypatch.setattr(manager, "LOCKS", tmp_path / "locks")


def test_down_refuses_a_directory_that_is_not_a_sandbox(tmp_path: Path) -> None:
    precious = tmp_path / "releases" / "receipt.json"
    precious.parent.mkdir()
    precious.write_text("{}")
    with pytest.raises(SandboxError, match="not a sandbox's state directory"):
        Sandbox(tmp_path, tmp_path / "cache", net=254).down()
    assert precious.read_text() == "{}"


@pytest.mark.parametrize("mark", [MARKER, "state.json", None])
def test_down_removes_a_marked_or_empty_state_directory(tmp_path: Path, mark: str | None) -> None:
    state_dir = tmp_path / "sandbox"
    state_dir.mkdir()
    if mark is not None:
        (state_dir / mark).write_text("")
        (state_dir / "proxy.log").write_text("")
    Sandbox(state_dir, tmp_path / "cache", net=254).down()
    assert not state_dir.exists()
    Sandbox(state_dir, tmp_path / "cache", net=254).down()  # safe to repeat


def test_each_sandbox_has_its_own_lock(tmp_path: Path) -> None:
    first, second = Sandbox(tmp_path / "one", net=254), Sandbox(tmp_path / "two", net=254)
    assert first.lock_file != second.lock_file
    assert Sandbox(tmp_path / "x" / ".." / "one", net=254).lock_file == first.lock_file
    with first._locked():
        other = threading.Thread(target=second.down, daemon=True)
        other.start()
        other.join(timeout=10)
        assert not other.is_alive(), "down of another sandbox waited for this one's lock"


def test_a_sandbox_on_another_image_or_architecture_is_not_reused(tmp_path: Path) -> None:
    box = Sandbox(tmp_path, net=3)
    amd64, arm64 = tmp_path / "debian-bookworm-amd64-0123456789ab", tmp_path / "debian-bookworm-arm64-0123456789ab"
    current = state.SandboxState(
        net=3,
        suite="bookworm",
        proxy=state.ProxyRecord(3128, list(box.proxy_allow)),
        hosts=[
            state.HostRecord("worker-1", "workers", "ilu3-1", "198.18.3.11", "0" * 32, "amd64", str(amd64)),
            state.HostRecord("worker-arm64-1", "workers", "ilu3-2", "198.18.3.12", "1" * 32, "arm64", str(arm64)),
        ],
    )
    bases = {"amd64": amd64, "arm64": arm64}
    shape = [("workers", "amd64", 1), ("workers", "arm64", 1)]
    assert box._same(current, SandboxNetwork(3), bases, shape)
    other = {**bases, "amd64": amd64.with_name("debian-bookworm-amd64-ba9876543210")}
    assert not box._same(current, SandboxNetwork(3), other, shape)
    assert not box._same(current, SandboxNetwork(3), bases, [("workers", "amd64", 2)])
    assert not box._same(current, SandboxNetwork(3), bases, [("workers", "amd64", 1), ("workers", "arm64", 2)])


def test_a_bad_proxy_allowlist_entry_is_a_sandbox_error_at_once(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match=r"bad allowlist entry 'cache\.local:http'"):
        Sandbox(tmp_path, net=3, proxy_allow=["deb.debian.org", "cache.local:http"])


def test_up_checks_for_root_before_asking_dpkg_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def host_arch() -> str:
        raise AssertionError("dpkg asked before the prerequisites were checked")

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(image, "host_arch", host_arch)
    with pytest.raises(PrerequisiteError, match="needs root"):
        Sandbox(tmp_path / "state", tmp_path / "cache", net=3).up(hosts=1)
    assert not (tmp_path / "state").exists()


def test_an_architecture_without_emulation_is_refused_before_anything_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prerequisites, "check", lambda **kwargs: None)
    monkeypatch.setattr(image, "host_arch", lambda: "amd64")
    with pytest.raises(PrerequisiteError, match="no emulation for 'riscv64' hosts: accepted arm64"):
        Sandbox(tmp_path / "state", tmp_path / "cache", net=3).up(hosts=1, arch="riscv64")
    assert not (tmp_path / "state").exists() and not (tmp_path / "cache").exists()
