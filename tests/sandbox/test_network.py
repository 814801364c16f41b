"""Sandbox network numbering: bridge, gateway, host addresses, machine names (no root needed)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading

import pytest

from pyinfra_iluvatar.sandbox.errors import SandboxError
from pyinfra_iluvatar.sandbox.network import SandboxNetwork, answers

TEST_NETWORKS = ipaddress.IPv4Network("198.18.0.0/15")


def test_default_network_is_the_documented_one() -> None:
    net = SandboxNetwork(0)
    assert (net.bridge, net.gateway, str(net.subnet)) == ("ilusbx0", "198.18.0.1", "198.18.0.0/24")
    assert [net.host_address(i) for i in range(3)] == ["198.18.0.11", "198.18.0.12", "198.18.0.13"]


@pytest.mark.parametrize("index", [0, 1, 77, 255])
def test_every_address_is_in_the_reserved_test_range(index: int) -> None:
    net = SandboxNetwork(index)
    addresses = [net.gateway] + [net.host_address(i) for i in range(net.max_hosts)]
    assert all(ipaddress.IPv4Address(a) in TEST_NETWORKS for a in addresses)
    assert all(ipaddress.IPv4Address(a) in net.subnet for a in addresses)
    assert len(set(addresses)) == len(addresses)
    assert net.host_address(net.max_hosts - 1) == f"198.18.{index}.254"


def test_host_addresses_stop_before_broadcast() -> None:
    with pytest.raises(SandboxError, match="at most 244 hosts"):
        SandboxNetwork(0).host_address(244)


@pytest.mark.parametrize("index", [-1, 256])
def test_network_number_out_of_range(index: int) -> None:
    with pytest.raises(SandboxError, match="out of range"):
        SandboxNetwork(index)


def test_veth_names_fit_the_kernel_limit() -> None:
    # nspawn names the host side of a host's veth "vb-" + machine name; Linux allows 15 characters.
    longest = SandboxNetwork(255).machine_name(SandboxNetwork(255).max_hosts - 1)
    assert longest == "ilu255-244"
    assert len("vb-" + longest) <= 15


def test_a_port_answers_when_it_accepts_and_greets_as_asked() -> None:
    def greet(server: socket.socket) -> None:
        with contextlib.suppress(OSError):  # until the server is closed
            while True:
                connection, _ = server.accept()
                with connection:
                    connection.sendall(b"SSH-2.0-test\r\n")

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert answers("127.0.0.1", port), "the kernel accepts the connection"
        assert not answers("127.0.0.1", port, banner=b"SSH-", timeout=0.2), "but nobody greets"
        greeter = threading.Thread(target=greet, args=(server,), daemon=True)
        greeter.start()
        assert answers("127.0.0.1", port, banner=b"SSH-")
        assert not answers("127.0.0.1", port, banner=b"HTTP", timeout=0.2)
        server.shutdown(socket.SHUT_RDWR)
    greeter.join(timeout=5)
    assert not answers("127.0.0.1", port), "nothing listens any more"
