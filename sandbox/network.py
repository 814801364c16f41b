"""The sandbox's own virtual link: one bridge on this machine, the gateway on it, hosts' addresses.

Sandbox number ``N`` (0 unless configured) owns bridge ``ilusbxN`` and ``198.18.N.0/24`` (198.18.0.0/15 is reserved
for test networks): the gateway, where the proxy listens, is ``198.18.N.1``; hosts get ``198.18.N.11`` upward.
Nothing is routed or NATed off the bridge; hosts have no default route.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyinfra_iluvatar.sandbox.errors import NetworkInUseError, SandboxError
from pyinfra_iluvatar.sandbox.processes import run

FIRST_HOST = 11
LAST_HOST = 254
ALIAS_PREFIX = "pyinfra-iluvatar-sandbox:"


@dataclass(frozen=True)
class SandboxNetwork:
    """The addresses and names of sandbox network number ``index`` (0 to 255)."""

    index: int

    def __post_init__(self) -> None:
        if not 0 <= self.index <= 255:
            raise SandboxError(f"sandbox network number {self.index} is out of range: use 0 to 255")

    @property
    def bridge(self) -> str:
        """The bridge on this machine that every host's veth joins."""
        return f"ilusbx{self.index}"

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        """The /24 the gateway and the hosts share."""
        return ipaddress.IPv4Network(f"198.18.{self.index}.0/24")

    @property
    def gateway(self) -> str:
        """This machine's address on the bridge: the proxy listens here."""
        return str(self.subnet.network_address + 1)

    @property
    def bridge_mac(self) -> str:
        """The bridge's fixed, locally administered MAC address."""
        return f"02:00:c6:12:{self.index:02x}:01"

    @property
    def max_hosts(self) -> int:
        """How many hosts fit in the range."""
        return LAST_HOST - FIRST_HOST + 1

    def host_address(self, position: int) -> str:
        """The address of the host at ``position`` (0-based)."""
        if not 0 <= position < self.max_hosts:
            raise SandboxError(f"a sandbox holds at most {self.max_hosts} hosts")
        return str(self.subnet.network_address + FIRST_HOST + position)

    @classmethod
    def of_bridge(cls, bridge: str) -> SandboxNetwork:
        """The network whose bridge is ``bridge``."""
        return cls(int(bridge.removeprefix("ilusbx")))

    @property
    def machine_prefix(self) -> str:
        """What the machine names of this network's hosts start with."""
        return f"ilu{self.index}-"

    def machine_name(self, position: int) -> str:
        """The systemd-nspawn machine name of the host at ``position``; its veth here is ``vb-`` + this name."""
        return f"{self.machine_prefix}{position + 1}"


def _alias(link: str) -> str:
    try:
        return Path(f"/sys/class/net/{link}/ifalias").read_text().strip()
    except OSError:
        return ""


def bridges_of(owner: str) -> list[str]:
    """The links on this machine that the sandbox with state directory ``owner`` created."""
    return sorted(link.name for link in Path("/sys/class/net").iterdir() if _alias(link.name) == ALIAS_PREFIX + owner)


def check_free(network: SandboxNetwork, owner: str) -> None:
    """Raise :class:`NetworkInUseError` if the bridge or the address range is used by anything but ``owner``."""
    if link_exists(network.bridge) and _alias(network.bridge) != ALIAS_PREFIX + owner:
        alias = _alias(network.bridge)
        holder = f"the sandbox in {alias[len(ALIAS_PREFIX) :]}" if alias.startswith(ALIAS_PREFIX) else "someone else"
        raise NetworkInUseError(
            f"bridge {network.bridge} already exists (made by {holder}): take that down, or choose another"
            " network number (--net)"
        )
    links: list[dict[str, Any]] = json.loads(run(["ip", "-j", "-4", "address", "show"]) or "[]")
    for link in links:
        if link.get("ifname") == network.bridge:
            continue
        for info in link.get("addr_info", []):
            if ipaddress.IPv4Address(info["local"]) in network.subnet:
                raise NetworkInUseError(
                    f"{info['local']} on {link.get('ifname')} is inside {network.subnet}: choose another network"
                    " number (--net)"
                )


def create_bridge(network: SandboxNetwork, owner: str) -> None:
    """Create the bridge with the gateway address, marked as ``owner``'s; IPv4 only, nothing forwarded."""
    bridge = network.bridge
    # A bridge without its own MAC takes its ports' lowest: when a host's veth comes or goes the gateway's MAC
    # changes under the other hosts, and their traffic to it is lost until their ARP entries expire (a minute).
    run(["ip", "link", "add", "name", bridge, "address", network.bridge_mac, "type", "bridge"])
    run(["ip", "link", "set", "dev", bridge, "alias", ALIAS_PREFIX + owner])
    ipv6 = Path(f"/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6")
    if ipv6.exists():
        ipv6.write_text("1\n")
    # Hosts have CAP_NET_ADMIN: one that adds a default route via the gateway must still not be routed out.
    Path(f"/proc/sys/net/ipv4/conf/{bridge}/forwarding").write_text("0\n")
    run(["ip", "address", "add", f"{network.gateway}/{network.subnet.prefixlen}", "dev", bridge])
    run(["ip", "link", "set", "dev", bridge, "up"])


def answers(address: str, port: int, *, banner: bytes = b"", timeout: float = 0.5) -> bool:
    """Whether ``address:port`` accepts a TCP connection (and, given ``banner``, greets with it, as sshd does)."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as connection:
            return not banner or connection.recv(len(banner)).startswith(banner)
    except OSError:
        return False


def link_exists(name: str) -> bool:
    """Whether a network link called ``name`` exists on this machine."""
    return Path(f"/sys/class/net/{name}").exists()


def delete_link(name: str) -> None:
    """Delete the link ``name`` if it exists."""
    if link_exists(name):
        run(["ip", "link", "delete", "dev", name])
