"""Debian packages, read for just the names an operation asks about."""

from __future__ import annotations

from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.exceptions import FactProcessError
from pyinfra.api.facts import FactBase
from typing_extensions import override

_FORMAT = "${db:Status-Abbrev} ${Package} ${Version}\\n"


class DebPackageVersions(FactBase[dict[str, list[str]]]):
    """
    Returns the installed version of each of ``packages`` that dpkg has installed, as pyinfra's ``DebPackages``
    has it for that name (installed, or installed and held: ``ii``/``hi``); other names are absent. One
    ``dpkg-query`` for just these names, where ``DebPackages`` lists every package (``dpkg -l``: thousands of
    lines on a real host, each read and parsed on the controller on every run).

    .. code:: python

        {"runc": ["1.1.5+ds1-1+deb12u1"], "busybox-static": ["1:1.35.0-4+deb12u1+b1"]}
    """

    @staticmethod
    @override
    def default() -> dict[str, list[str]]:
        return {}

    @override
    def requires_command(self, packages: list[str]) -> str:
        return "dpkg-query"

    @override
    def command(self, packages: list[str]) -> StringCommand:
        if not packages:
            return StringCommand("true")
        names = [QuoteString(name) for name in packages]
        # dpkg-query exits 1 when a name is not a package it knows, which is an answer here; more is an error.
        return StringCommand(
            "dpkg-query --show --showformat", QuoteString(_FORMAT), "--", *names, "2>/dev/null;", "[ $? -le 1 ]"
        )

    @override
    def process(self, output: list[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for line in output:
            # The status is 3 letters (desired, state, error: "ii ", "rc ", "iHR"); a package dpkg knows but that is
            # not installed may have no version.
            fields = line.split()
            if len(fields) not in (2, 3) or not 2 <= len(fields[0]) <= 3:
                raise FactProcessError(f"unexpected dpkg-query line: {line!r}")
            status, name = fields[0], fields[1]
            if status[0] in "ih" and status[1] == "i":
                if len(fields) != 3:
                    raise FactProcessError(f"installed package without a version: {line!r}")
                found.setdefault(name, []).append(fields[2])
        return found
