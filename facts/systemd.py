"""What pyinfra's own systemd facts read, for several units and both of their states in one command
(:mod:`pyinfra_iluvatar.snapshot`)."""

from __future__ import annotations

from typing import TypedDict

from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.facts import FactBase
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus
from typing_extensions import override


class SystemdUnitStatesInfo(TypedDict):
    status: dict[str, bool]
    """What pyinfra's ``systemd.SystemdStatus`` returns for the units: whether each is active."""
    enabled: dict[str, bool]
    """What pyinfra's ``systemd.SystemdEnabled`` returns for the units: whether each is enabled."""


class SystemdUnitStates(FactBase[SystemdUnitStatesInfo]):
    """
    Returns pyinfra's ``SystemdStatus`` and ``SystemdEnabled`` of ``services``, from one ``systemctl show`` that
    prints both properties (each fact's own ``process`` reads its property from it). A unit systemd does not know
    is absent from both, as from each fact.

    .. code:: python

        {"status": {"containerd.service": True}, "enabled": {"containerd.service": True}}
    """

    @override
    def requires_command(self, services: list[str]) -> str:
        return "systemctl"

    @override
    def command(self, services: list[str]) -> StringCommand:
        properties = ["--property", "Id", "--property", SystemdStatus.state_key, "--property", SystemdEnabled.state_key]
        return StringCommand("systemctl", "show", "--all", *properties, *[QuoteString(name) for name in services])

    @override
    def process(self, output: list[str]) -> SystemdUnitStatesInfo:
        return {"status": SystemdStatus().process(output), "enabled": SystemdEnabled().process(output)}
