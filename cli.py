"""The ``pyinfra-iluvatar`` command line: ``check``, ``lock`` and ``sandbox``, each imported only when it runs."""

from __future__ import annotations

import importlib

import click

from pyinfra_iluvatar import __version__

COMMANDS = {
    "check": "pyinfra_iluvatar.readiness.cli",
    "lock": "pyinfra_iluvatar.releases.cli",
    "sandbox": "pyinfra_iluvatar.sandbox.cli",
}
"""Each command and the module that defines it (a command of that name): ``check`` must not wait for ``lock``'s
HTTP client or the sandbox's modules to load, nor they for pyinfra's command line."""


class _Commands(click.Group):
    """A group that imports a command's module when that command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        command = getattr(importlib.import_module(COMMANDS[cmd_name]), cmd_name)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_Commands)
@click.version_option(__version__, prog_name="pyinfra-iluvatar")
def main() -> None:
    """Prepare hosts for the Ilúvatar FaaS platform with pyinfra."""
