"""The ``pyinfra-iluvatar`` command line."""

from __future__ import annotations

import click

from pyinfra_iluvatar import __version__
from pyinfra_iluvatar.readiness.cli import check
from pyinfra_iluvatar.releases.cli import lock
from pyinfra_iluvatar.sandbox.cli import sandbox


@click.group()
@click.version_option(__version__, prog_name="pyinfra-iluvatar")
def main() -> None:
    """Prepare hosts for the Ilúvatar FaaS platform with pyinfra."""


main.add_command(check)
main.add_command(lock)
main.add_command(sandbox)
