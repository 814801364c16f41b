"""What a worker host is and offers Ilúvatar's functions: its machine, CPUs, memory, and its network."""

from __future__ import annotations

from typing import TypedDict

from pyinfra.api.exceptions import FactProcessError
from pyinfra.api.facts import FactBase
from typing_extensions import override

from pyinfra_iluvatar.facts.network import best_route_device

_SECTIONS = ("--machine--", "--cpus--", "--memory--", "--ipv4-routes--", "--ipv6-routes--", "--ipv4-addresses--")


class HostResourcesInfo(TypedDict):
    """A host's machine, CPUs, memory, default-route interface and IPv4 addresses."""

    machine: str
    """The machine hardware name (``uname -m``: ``x86_64``, ``aarch64``)."""
    cpus: int
    """Processors this host's processes may use (``nproc``)."""
    memory_mb: int
    """Total memory in MiB (``MemTotal`` of ``/proc/meminfo``)."""
    interface: str | None
    """The default route's interface, as :class:`~pyinfra_iluvatar.facts.network.DefaultRouteInterface` reads
    it (IPv4 first, the lowest metric wins); ``None`` without a default route."""
    addresses: dict[str, list[str]]
    """Interface → its IPv4 addresses (without prefix length), in the order ``ip`` lists them."""


class HostResources(FactBase[HostResourcesInfo]):
    """
    Returns what a worker host is and offers: its machine (which release artifacts it takes), CPU count, total
    memory, the default route's interface (the worker's ``networking.hardware_interface``) and every interface's
    IPv4 addresses (the worker's ``address``) — what pre-flight needs of a host, read in one round trip.

    Runs ``uname -m`` and ``nproc``, reads ``MemTotal`` from ``/proc/meminfo``, and runs ``ip -o -4 route show
    default``, ``ip -o -6 route show default`` and ``ip -o -4 addr show``.

    .. code:: python

        {
            "machine": "x86_64",
            "cpus": 2,
            "memory_mb": 24105,
            "interface": "eth0",
            "addresses": {"lo": ["127.0.0.1"], "eth0": ["192.0.2.2"]},
        }
    """

    @override
    def requires_command(self) -> str:
        return "ip"

    @override
    def command(self) -> str:
        machine, cpus, memory, ipv4_routes, ipv6_routes, addresses = _SECTIONS
        return (
            f"echo {machine}; uname -m; echo {cpus}; nproc; echo {memory}; grep '^MemTotal:' /proc/meminfo;"
            f" echo {ipv4_routes}; ip -o -4 route show default;"
            f" echo {ipv6_routes}; ip -o -6 route show default 2>/dev/null || true;"
            f" echo {addresses}; ip -o -4 addr show"
        )

    @override
    def process(self, output: list[str]) -> HostResourcesInfo:
        sections = _split(output)
        machine, cpus, memory = sections["--machine--"], sections["--cpus--"], sections["--memory--"]
        if len(machine) != 1 or not machine[0].strip():
            raise FactProcessError(f"unexpected uname -m output: {machine!r}")
        if len(cpus) != 1 or not cpus[0].strip().isdigit():
            raise FactProcessError(f"unexpected nproc output: {cpus!r}")
        fields = memory[0].split() if len(memory) == 1 else []
        if len(fields) != 3 or fields[0] != "MemTotal:" or not fields[1].isdigit() or fields[2] != "kB":
            raise FactProcessError(f"unexpected MemTotal line: {memory!r}")
        interface = best_route_device(sections["--ipv4-routes--"]) or best_route_device(sections["--ipv6-routes--"])
        return {
            "machine": machine[0].strip(),
            "cpus": int(cpus[0]),
            "memory_mb": int(fields[1]) // 1024,
            "interface": interface,
            "addresses": _addresses(sections["--ipv4-addresses--"]),
        }


def _split(output: list[str]) -> dict[str, list[str]]:
    """The non-empty lines of each section, by its marker; ``FactProcessError`` unless all are there in order."""
    markers = [line for line in output if line in _SECTIONS]
    if markers != list(_SECTIONS):
        raise FactProcessError(f"unexpected host resources output: {output!r}")
    sections: dict[str, list[str]] = {}
    current = ""
    for line in output:
        if line in _SECTIONS:
            current = line
            sections[current] = []
        elif line.strip():
            sections[current].append(line)
    return sections


def _addresses(lines: list[str]) -> dict[str, list[str]]:
    """``ip -o -4 addr show`` lines (``2: eth0    inet 192.0.2.2/24 brd … scope global eth0\\ …``) by interface."""
    addresses: dict[str, list[str]] = {}
    for line in lines:
        fields = line.split()
        if len(fields) < 4 or fields[2] != "inet" or "/" not in fields[3]:
            raise FactProcessError(f"not an `ip -o -4 addr show` line: {line!r}")
        addresses.setdefault(fields[1], []).append(fields[3].split("/", 1)[0])
    return addresses
