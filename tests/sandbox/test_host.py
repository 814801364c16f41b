"""What makes each sandbox host itself: the per-host files; its mounts (no root needed)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pyinfra_iluvatar.sandbox.host import NETWORK_UNIT, HostConfig, files, mounts_under

CONFIG = HostConfig(
    name="worker-2",
    address="198.18.4.12",
    subnet=ipaddress.IPv4Network("198.18.4.0/24"),
    gateway="198.18.4.1",
    proxy_port=3128,
    machine_id="0123456789abcdef0123456789abcdef",
    authorized_key="ssh-ed25519 AAAAC3Nza sandbox",
    neighbours=[("worker-1", "198.18.4.11"), ("worker-2", "198.18.4.12")],
)


def test_identity() -> None:
    written = files(CONFIG)
    assert written["etc/hostname"] == "worker-2\n"
    assert written["etc/machine-id"] == "0123456789abcdef0123456789abcdef\n"
    assert written["root/.ssh/authorized_keys"] == "ssh-ed25519 AAAAC3Nza sandbox\n"
    hosts = written["etc/hosts"].splitlines()
    assert {"127.0.1.1\tworker-2", "198.18.4.1\tsandbox-gateway", "198.18.4.11\tworker-1"} <= set(hosts)


def test_static_address_wins_over_the_vendor_container_network_file() -> None:
    name = NETWORK_UNIT.rsplit("/", 1)[1]
    assert sorted([name, "80-container-host0.network"])[0] == name, "networkd uses the first matching file"
    unit = files(CONFIG)[NETWORK_UNIT]
    assert "Name=host0" in unit
    assert "Address=198.18.4.12/24" in unit
    assert "Gateway" not in unit, "no route out of the sandbox link"


def test_every_client_uses_the_proxy_except_for_the_sandbox_itself() -> None:
    written = files(CONFIG)
    proxy = "http://198.18.4.1:3128"
    assert f'Acquire::http::Proxy "{proxy}";' in written["etc/apt/apt.conf.d/90pyinfra-iluvatar-sandbox-proxy"]
    assert f'Acquire::https::Proxy "{proxy}";' in written["etc/apt/apt.conf.d/90pyinfra-iluvatar-sandbox-proxy"]
    assert f"proxy = {proxy}" in written["etc/pip.conf"]
    environment = dict(line.split("=", 1) for line in written["etc/environment"].splitlines())
    assert environment["https_proxy"] == environment["HTTPS_PROXY"] == proxy
    no_proxy = environment["no_proxy"].split(",")
    assert {"198.18.4.1", "198.18.4.0/24", "worker-1", "localhost", "127.0.0.1"} <= set(no_proxy)
    manager = written["etc/systemd/system.conf.d/pyinfra-iluvatar-sandbox-proxy.conf"]
    assert manager.startswith("[Manager]\nDefaultEnvironment=")
    assert f'"https_proxy={proxy}"' in manager


def test_mount_points_with_spaces_backslashes_and_non_ascii_names() -> None:
    state = "/var/lib/café sandbox"
    mountinfo = (
        b"22 1 0:21 / / rw - ext4 /dev/sda1 rw\n"
        b"90 22 0:50 / /var/lib/caf\xc3\xa9\\040sandbox/hosts/w\\134x/root rw - overlay overlay rw\n"
        b"91 90 0:51 / /var/lib/caf\xc3\xa9\\040sandbox/hosts/w\\134x/root/d\xc2\xa0e rw - tmpfs tmpfs rw\n"
        b"92 22 0:52 / /var/lib/caf\xc3\xa9\\040sandbox-other rw - tmpfs tmpfs rw\n"
    )
    assert mounts_under(Path(state), mountinfo) == [
        Path(f"{state}/hosts/w\\x/root/d\u00a0e"),
        Path(f"{state}/hosts/w\\x/root"),
    ]
