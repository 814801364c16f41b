"""Distribution packages, installed so that a converged host costs no ``apt-get update``."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from pyinfra.api.operation import operation
from pyinfra.context import host
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt


@operation()
def apt_installed(packages: list[str]) -> Generator[Any, None, None]:
    """
    Install Debian/Ubuntu packages, refreshing the package lists only when one of them is missing.

    pyinfra's ``apt.packages(update=True)`` refreshes the lists on every run (or whenever ``cache_time`` has
    passed), which reports a change on a host that already has everything. This one reads the installed
    packages first and does nothing when all are present.

    + packages: package names (no version pins)

    **Example:**

    .. code:: python

        packages.apt_installed(
            name="Worker packages",
            packages=["runc", "iptables", "jq"],
        )
    """
    installed = host.get_fact(DebPackages)
    missing = [name for name in packages if name not in installed]
    if not missing:
        host.noop(f"packages already installed: {', '.join(packages)}")
        return
    yield from apt.update._inner()
    yield from apt.packages._inner(packages=missing, no_recommends=True)
