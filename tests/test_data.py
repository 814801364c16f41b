"""Data keys: validated with errors that name host, key, value and what is accepted; documented in the README."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api.host import Host
from pyinfra.api.inventory import Inventory

from pyinfra_iluvatar import data

README = Path(__file__).resolve().parent.parent / "README.md"


def make_host(**host_data: Any) -> Host:
    inventory = Inventory(([("worker-07", host_data)], {}))
    return inventory.get_host("worker-07")


def readme_rows() -> dict[str, str]:
    """key → default cell of the README's data-key table."""
    rows = {}
    for line in README.read_text().splitlines():
        match = re.match(r"\| `(iluvatar_[a-z0-9_]+)` \| (.*?) \|", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_readme_documents_every_key_with_its_default() -> None:
    rows = readme_rows()
    assert set(rows) == {key.name for key in data.ALL_KEYS}
    for key in data.ALL_KEYS:
        assert rows[key.name] == f"`{key.default!r}`", key.name


@pytest.mark.parametrize("key", data.ALL_KEYS, ids=lambda key: key.name)
def test_default_is_valid(key: data.DataKey[Any]) -> None:
    assert data.parse(make_host(), key) == key.default


@pytest.mark.parametrize(
    ("key", "given", "expected"),
    [
        (data.NOFILE_LIMIT, "65536", 65536),
        (data.NOFILE_LIMIT, 1048576, 1048576),
        (data.NPROC_LIMIT, "unlimited", "unlimited"),
        (data.EXTRA_PACKAGES, ["linux-perf", "g++", "libc6.1"], ["linux-perf", "g++", "libc6.1"]),
        (data.GO_ROOT, "/opt/go/", "/opt/go"),
        (data.ENERGY_TOOLS, "yes", True),
        (data.EXTRA_PACKAGES, "htop,tmux", ["htop", "tmux"]),
        (data.MIRROR, "https://mirror.lab.example/files/", "https://mirror.lab.example/files"),
        (data.DOWNLOAD, "controller", "controller"),
    ],
)
def test_accepted_values(key: data.DataKey[Any], given: object, expected: object) -> None:
    assert data.parse(make_host(**{key.name: given}), key) == expected


@pytest.mark.parametrize(
    ("key", "given"),
    [
        (data.NOFILE_LIMIT, "lots"),
        (data.NOFILE_LIMIT, 0),
        (data.NOFILE_LIMIT, "unlimited"),
        (data.NOFILE_LIMIT, 2000000),
        (data.EXTRA_PACKAGES, "htop; curl x|sh"),
        (data.EXTRA_PACKAGES, ["jq=1.6-2.1"]),
        (data.GO_ROOT, "/"),
        (data.GO_ROOT, "/opt/go tools"),
        (data.CNITOOL_PREBUILT, {"amd64": {"url": "https://mirror.lab.example/cnitool?x=1", "sha256": "a" * 64}}),
        (
            data.CNITOOL_PREBUILT,
            {
                "amd64": {"url": "https://mirror.lab.example/cnitool.tgz", "sha256": "a" * 64},
                "arm64": {"url": "https://mirror.lab.example/cnitool", "sha256": "b" * 64},
            },
        ),
        (data.NPROC_LIMIT, True),
        (data.ENERGY_TOOLS, "maybe"),
        (data.EXTRA_PACKAGES, ["ok", ""]),
        (data.MIRROR, "ftp://mirror.lab.example"),
        (data.MIRROR, "https://user:secret@mirror.lab.example"),
        (data.DOWNLOAD, "peer"),
        (data.SNAPSHOTTER, "btrfs"),
        (data.CNI_BIN_DIR, "opt/cni/bin"),
        (data.CNI_BIN_DIR, "/opt/cni/bin/.."),
        (data.CNI_BIN_DIR, "/opt/./cni"),
        (data.CNI_BIN_DIR, "/opt/cni\0bin"),
        (data.CNI_BIN_DIR, "/" + "a/" * 2100),
        (data.GO_ROOT, "/opt/" + "g" * 256),
        (data.MIRROR, "http://"),
        (data.MIRROR, "http://mirror lab.example"),
        (data.MIRROR, "https://mirror.lab.example/files?token=x"),
        (data.MIRROR, "https://mirror.lab.example/files\n"),
        (data.MIRROR, "https://mirror.lab.example#top"),
        (data.LOCK_FILE, "iluvatar\0.lock.json"),
        (data.DOWNLOAD_CACHE, ""),
        (data.NOFILE_LIMIT, "9" * 5000),
        (data.CNITOOL_PREBUILT, {"sparc": {"url": "https://mirror.lab.example/cnitool", "sha256": "a" * 64}}),
        (data.CNITOOL_PREBUILT, {"x86_64": {"url": "https://mirror.lab.example/cnitool", "sha256": "a" * 64}}),
        (data.CNITOOL_PREBUILT, {"amd64": {"url": "https://u:secret@mirror.lab.example/c", "sha256": "a" * 64}}),
    ],
)
def test_bad_value_names_host_key_value_and_accepted(key: data.DataKey[Any], given: object) -> None:
    with pytest.raises(data.DataError) as raised:
        data.parse(make_host(**{key.name: given}), key)
    message = str(raised.value)
    assert message.startswith(f"worker-07: {key.name} = ")
    assert "(host data) is not valid: " in message
    assert f"accepted: {key.accepted}" in message
    if "secret" in str(given):
        assert "secret" not in message, "a credential must never be echoed"
    else:
        assert data.shown(given) in message


def test_long_values_are_shown_cut_short() -> None:
    with pytest.raises(data.DataError) as raised:
        data.parse(make_host(iluvatar_nofile_limit="9" * 5000), data.NOFILE_LIMIT)
    assert "(5002 characters)" in str(raised.value)
    assert len(str(raised.value)) < 400


def test_an_x86_64_key_is_told_its_debian_name() -> None:
    prebuilt = {"x86_64": {"url": "https://mirror.lab.example/cnitool", "sha256": "a" * 64}}
    with pytest.raises(data.DataError, match="'x86_64' is not a Debian architecture name \\(write 'amd64'\\)"):
        data.parse(make_host(iluvatar_cnitool_prebuilt=prebuilt), data.CNITOOL_PREBUILT)


def test_where_a_value_was_set_is_named() -> None:
    inventory = Inventory(
        ([("worker-07", {"iluvatar_snapshotter": "btrfs"}), ("worker-08", {})], {}),
        override_data={"iluvatar_nofile_limit": "lots"},
        workers=(["worker-07", "worker-08"], {"iluvatar_download": "peer"}),
    )
    worker7, worker8 = inventory.get_host("worker-07"), inventory.get_host("worker-08")
    assert data.origin(worker7, "iluvatar_snapshotter") == "host data"
    assert data.origin(worker8, "iluvatar_download") == "group 'workers' data"
    assert data.origin(worker8, "iluvatar_nofile_limit") == "--data"
    assert data.origin(worker8, "iluvatar_mirror") == "default"
    assert data.given(worker8) == {"iluvatar_nofile_limit", "iluvatar_download"}
