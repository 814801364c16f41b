"""The sandbox state file: round trip, absence, damage (no root needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyinfra_iluvatar.sandbox import state
from pyinfra_iluvatar.sandbox.errors import SandboxError
from pyinfra_iluvatar.sandbox.processes import ProcessRef

AMD64 = "/cache/debian-bookworm-amd64-0123456789ab"
ARM64 = "/cache/debian-bookworm-arm64-ba9876543210"


def example() -> state.SandboxState:
    return state.SandboxState(
        net=3,
        suite="bookworm",
        proxy=state.ProxyRecord(3128, ["deb.debian.org"], ProcessRef(100, 5000)),
        hosts=[
            state.HostRecord(
                "worker-1", "workers", "ilusbx3-1", "198.18.3.11", "a" * 32, "amd64", AMD64, ProcessRef(101, 5001)
            ),
            state.HostRecord("worker-arm64-1", "workers", "ilusbx3-2", "198.18.3.12", "b" * 32, "arm64", ARM64, None),
        ],
    )


def test_round_trip(tmp_path: Path) -> None:
    state.save(tmp_path, example())
    assert state.load(tmp_path) == example()
    assert not list(tmp_path.glob("*.tmp")), "the temporary file is renamed into place"


def test_no_state_is_none(tmp_path: Path) -> None:
    assert state.load(tmp_path) is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read"),
        (json.dumps({"format": 2, "net": 0}), "damaged"),
        (json.dumps({"format": 1}), "format 1, this version reads 2"),
        (json.dumps({"format": 99}), "format 99"),
    ],
)
def test_damaged_state_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / state.STATE_FILE).write_text(content)
    with pytest.raises(SandboxError, match=message):
        state.load(tmp_path)


def test_host_lookup_names_the_hosts_there_are() -> None:
    assert example().host("worker-arm64-1").address == "198.18.3.12"
    with pytest.raises(SandboxError, match="worker-1, worker-arm64-1"):
        example().host("worker-9")
