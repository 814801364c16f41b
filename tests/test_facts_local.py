"""Facts run for real: `pyinfra @local fact …` on this machine, compared with what the tools say directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def local_fact(fact: str) -> object:
    """Run ``pyinfra @local fact FACT`` the way a user would and return the fact's value."""
    result = subprocess.run(
        [BIN / "pyinfra", "--json", "@local", "fact", fact],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return json.loads(result.stdout)[fact]["@local"]


def test_default_route_interface_matches_ip_route() -> None:
    routes = subprocess.run(["ip", "-o", "-4", "route", "show", "default"], capture_output=True, text=True)
    fields = routes.stdout.split()
    expected = fields[fields.index("dev") + 1] if "dev" in fields else None
    assert local_fact("pyinfra_iluvatar.facts.network.DefaultRouteInterface") == expected
