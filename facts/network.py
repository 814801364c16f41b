"""Facts about the host's network, as the Ilúvatar worker sees it."""

from __future__ import annotations

from pyinfra.api.exceptions import FactProcessError
from pyinfra.api.facts import FactBase
from typing_extensions import override

_FAMILY_SEPARATOR = "--"
# `ip route` prints these route types first (`blackhole default metric 50`): they drop traffic, no interface.
_ROUTE_TYPES_WITHOUT_DEVICE = ("blackhole", "unreachable", "prohibit", "throw")


def _route_metric(fields: list[str]) -> int:
    if "metric" in fields:
        index = fields.index("metric") + 1
        if index < len(fields) and fields[index].isdigit():
            return int(fields[index])
    return 0


def best_route_device(lines: list[str]) -> str | None:
    """Device of the default route with the lowest metric, ``None`` when there is none."""
    routes: list[tuple[int, str]] = []
    for line in lines:
        fields = line.split()
        if fields and fields[0] in _ROUTE_TYPES_WITHOUT_DEVICE:
            continue
        if not fields or fields[0] != "default":
            raise FactProcessError(f"not a default route line: {line!r}")
        if "dev" not in fields or fields.index("dev") + 1 >= len(fields):
            # A multipath route (`default nexthop via ... dev a nexthop ...`) has no single device.
            continue
        routes.append((_route_metric(fields), fields[fields.index("dev") + 1]))
    return min(routes)[1] if routes else None


class DefaultRouteInterface(FactBase[str | None]):
    """
    Returns the interface of the IPv4 default route, or of the IPv6 one when the host has no IPv4 default
    route; ``None`` when it has neither. Among several default routes the lowest metric wins, as in the
    kernel. This is the worker's ``networking.hardware_interface``: the worker adds its MASQUERADE and
    FORWARD rules on it.

    Runs ``ip -o -4 route show default`` and ``ip -o -6 route show default``.

    .. code:: python

        "eth0"
    """

    @override
    def requires_command(self) -> str:
        return "ip"

    @override
    def command(self) -> str:
        return (
            "ip -o -4 route show default"
            f" && echo {_FAMILY_SEPARATOR}"
            " && { ip -o -6 route show default 2>/dev/null || true; }"
        )

    @override
    def process(self, output: list[str]) -> str | None:
        lines = [line for line in output if line.strip()]
        if _FAMILY_SEPARATOR not in lines:
            raise FactProcessError(f"unexpected `ip route` output: {output!r}")
        split = lines.index(_FAMILY_SEPARATOR)
        return best_route_device(lines[:split]) or best_route_device(lines[split + 1 :])
