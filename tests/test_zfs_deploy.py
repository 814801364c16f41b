"""The ZFS deploy's choices per host: which ZFS (``auto``), and which packages on Debian and on Ubuntu.

Facts are shaped as pyinfra returns them on such hosts (``server.LinuxDistribution`` of a Debian 12 sandbox host;
Ubuntu 24.04's ``os-release``; ``zfs.ZfsImplementation`` from ``tests/facts/zfs.ZfsImplementation``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pyinfra_iluvatar.deploys.zfs import implementation, zfs_packages

IMPLEMENTATIONS = Path(__file__).parent / "facts" / "zfs.ZfsImplementation"
DEBIAN = {
    "name": "Debian",
    "major": 12,
    "minor": None,
    "release_meta": {"ID": "debian", "VERSION_CODENAME": "bookworm"},
}
UBUNTU = {"name": "Ubuntu", "major": 24, "minor": 4, "release_meta": {"ID": "ubuntu", "VERSION_CODENAME": "noble"}}


def implementation_fact(fixture: str) -> dict[str, Any]:
    fact: dict[str, Any] = json.loads((IMPLEMENTATIONS / f"{fixture}.json").read_text())["fact"]
    return fact


@pytest.mark.parametrize(
    ("distribution", "chosen", "expected"),
    [
        (DEBIAN, "openzfs", ["zfsutils-linux", "zfs-dkms", "linux-headers-6.1.0-28-amd64"]),
        (UBUNTU, "openzfs", ["zfsutils-linux"]),
        (DEBIAN, "zfs-fuse", ["zfs-fuse"]),
        (UBUNTU, "zfs-fuse", ["zfs-fuse"]),
    ],
)
def test_packages_per_distribution(distribution: dict[str, Any], chosen: str, expected: list[str]) -> None:
    assert zfs_packages(chosen, distribution["name"], "6.1.0-28-amd64") == expected


def test_auto_keeps_an_installed_zfs_fuse_and_else_takes_openzfs() -> None:
    fixtures = sorted(path.stem for path in IMPLEMENTATIONS.glob("*.json"))
    kinds = {fixture: implementation_fact(fixture)["kind"] for fixture in fixtures}
    assert {"zfs-fuse", "openzfs", "none"} <= set(kinds.values())
    for fixture, kind in kinds.items():
        expected = "zfs-fuse" if kind == "zfs-fuse" else "openzfs"
        assert implementation("auto", implementation_fact(fixture)) == expected, fixture  # type: ignore[arg-type]
    assert implementation("zfs-fuse", None) == "zfs-fuse"
    assert implementation("openzfs", None) == "openzfs"
