"""Several facts in one round trip.

pyinfra 3 runs one command per fact it reads. :class:`Combined` runs the commands of several facts — this package's
or pyinfra's own — one after the other in one shell, frames each one's output and exit status, and hands each
section to its own fact's ``process``: the same values as reading each fact alone, for one round trip.
"""

from __future__ import annotations

import base64
import functools
import importlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pyinfra.api.command import StringCommand
from pyinfra.api.exceptions import FactProcessError
from pyinfra.api.facts import FactBase
from typing_extensions import override

Probe = tuple[str, str, Mapping[str, Any]]
"""One fact to read: a name for its value, the fact's class (``pyinfra_iluvatar.facts.zfs.ZpoolStatus``), its
arguments."""

_PACKAGES = ("pyinfra_iluvatar.facts.", "pyinfra.facts.")
_SECTION = re.compile(
    r"--- pyinfra-iluvatar combined: (?P<name>[A-Za-z0-9_.-]+) (?P<fact>[A-Za-z0-9_.]+)"
    r" (?P<arguments>[A-Za-z0-9_=-]+) ---"
)
_STATUS = re.compile(r"--- pyinfra-iluvatar combined: status (?P<status>\d+|missing) ---")


class Unreadable(str):
    """A section the host printed but its fact could not process (the value is the fact's message)."""


@functools.cache
def fact_class(path: str) -> type[FactBase[Any]]:
    """The fact class at ``path``: only this package's and pyinfra's facts (output names them; never import more)."""
    module, _, name = path.rpartition(".")
    if not path.startswith(_PACKAGES) or not module:
        raise FactProcessError(f"not a fact of pyinfra or pyinfra-iluvatar: {path!r}")
    try:
        fact = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise FactProcessError(f"no such fact: {path!r}") from None
    if not (isinstance(fact, type) and issubclass(fact, FactBase)):
        raise FactProcessError(f"not a fact: {path!r}")
    return fact


def _shell(command: str | StringCommand | None) -> str | None:
    if command is None or isinstance(command, str):
        return command
    return command.get_raw_value()


class Combined(FactBase[dict[str, Any]]):
    """
    Returns, for each probe ``(name, fact class, arguments)``, the value that fact would return on its own: its
    ``default()`` when its required command is missing, its command fails or prints nothing (as pyinfra does), or
    an :class:`Unreadable` (a ``str``) with the fact's message when its output cannot be processed — one probe's
    surprise never hides the others. Every command's stderr is dropped; facts that report errors read them in-band.

    Runs each probe's command in a subshell after a marker line (its name, fact and arguments: some facts keep
    what ``command`` was given for ``process``), followed by its exit status; prints all of it at the end, at once.

    .. code:: python

        host.get_fact(Combined, probes=(
            ("pools", "pyinfra_iluvatar.facts.zfs.ZpoolStatus", {}),
            ("cni", "pyinfra_iluvatar.facts.cni.CniPlugins", {"directory": "/opt/cni/bin"}),
        ))
        {"pools": {"ilu-pool": {...}}, "cni": {...}}
    """

    @override
    def command(self, probes: Sequence[Probe]) -> str:
        parts = []
        for name, path, arguments in probes:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ValueError(f"a probe name is letters, digits and _.- only: {name!r}")
            fact = fact_class(path)()
            command = _shell(fact.command(**arguments) if callable(fact.command) else fact.command)
            required = _shell(fact.requires_command(**arguments))
            run = f"( {command} ) 2>/dev/null; echo '--- pyinfra-iluvatar combined: status '$?' ---'"
            if required:
                missing = "echo '--- pyinfra-iluvatar combined: status missing ---'"
                run = f"if command -v {required} >/dev/null 2>&1; then {run}; else {missing}; fi"
            encoded = base64.urlsafe_b64encode(json.dumps(dict(arguments), sort_keys=True).encode()).decode()
            parts.append(f"echo '--- pyinfra-iluvatar combined: {name} {path} {encoded} ---'; {run}")
        # Every section's output gathered, then printed in one write: written as each echo and command went, it
        # crossed SSH as dozens of small packets, each costing the controller (paramiko checks every packet's MAC
        # in Python) and the host's sshd; gathered, it is one or two.
        if not parts:
            return ""
        sections = "\n".join(parts)
        return f"_combined=$(\n{sections}\n); printf '%s\\n' \"$_combined\""

    @override
    def process(self, output: list[str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        current: tuple[str, str, str] | None = None
        lines: list[str] = []
        for line in output:
            status = _STATUS.fullmatch(line)
            section = None if status else _SECTION.fullmatch(line)
            if status:
                if current is None:
                    raise FactProcessError("a status line outside any section")
                name, path, encoded = current
                values[name] = _value(path, encoded, status["status"], lines)
                current = None
            elif section:
                if current is not None:
                    raise FactProcessError(f"section {current[0]} has no status line")
                current, lines = (section["name"], section["fact"], section["arguments"]), []
            elif current is not None:
                lines.append(line)
            else:
                raise FactProcessError(f"output outside any section: {line!r}")
        if current is not None:
            raise FactProcessError(f"section {current[0]} was cut short")
        return values


def _value(path: str, encoded: str, status: str, lines: list[str]) -> Any:
    """One section's value, processed by a fresh instance of its fact given its arguments again."""
    fact = fact_class(path)()
    if status != "0" or not lines:
        return fact.default()
    try:
        arguments = json.loads(base64.urlsafe_b64decode(encoded))
        if callable(fact.command):
            fact.command(**arguments)
        return fact.process(lines)
    except (ValueError, TypeError) as error:  # binascii.Error and json.JSONDecodeError are ValueErrors
        return Unreadable(f"bad section header: {error}")
    except FactProcessError as error:
        return Unreadable(str(error))
