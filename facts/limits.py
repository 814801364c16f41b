"""Facts about resource limits: PAM's (login sessions) and systemd's (services)."""

from __future__ import annotations

import shlex
from typing import Literal, TypedDict

from pyinfra.api.exceptions import FactProcessError
from pyinfra.api.facts import FactBase
from typing_extensions import override

from pyinfra_iluvatar.facts._inband import separated, split_separated

LIMITS_CONF = "/etc/security/limits.conf"
LIMITS_D = "/etc/security/limits.d"

_FILE_MARKER = "file="
_LINE_MARKER = "|"

LimitType = Literal["soft", "hard"]


class PamLimit(TypedDict):
    """One effective PAM limit: a domain's soft or hard value for an item, and the file that set it."""

    domain: str
    type: LimitType
    item: str
    value: str
    file: str


def _limit_lines(path: str, lines: list[str]) -> list[tuple[str, LimitType, str, str]]:
    """The ``(domain, type, item, value)`` entries of one limits file, ``-`` expanded to soft and hard."""
    entries: list[tuple[str, LimitType, str, str]] = []
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.split()
        if len(fields) != 4:
            raise FactProcessError(f"{path}: expected `domain type item value`, got {line!r}")
        domain, limit_type, item, value = fields
        if limit_type == "-":
            entries += [(domain, "soft", item, value), (domain, "hard", item, value)]
        elif limit_type in ("soft", "hard"):
            entries.append((domain, "soft" if limit_type == "soft" else "hard", item, value))
        else:
            raise FactProcessError(f"{path}: limit type must be soft, hard or -, got {line!r}")
    return entries


class PamLimits(FactBase[list[PamLimit]]):
    """
    Returns the PAM limits configured in ``/etc/security/limits.conf`` and
    ``/etc/security/limits.d/*.conf``, as ``pam_limits`` applies them: ``limits.conf`` first, then the
    drop-ins in "C" locale order, as if concatenated (pam_limits(8)). For the same domain, type and
    item the later entry wins; type ``-`` sets both ``soft`` and ``hard``. Each entry names the file
    that set it. Comments (also trailing ones) and blank lines are skipped; a line without exactly
    four fields, or with a type other than ``soft``/``hard``/``-``, raises ``FactProcessError``.

    Which domain applies to a given user (the user's own entry before ``@group`` before ``*``, and
    ``*`` never for root) is PAM's choice at login: this fact reports each domain's values. PAM
    limits apply to login sessions only, never to systemd services (see ``SystemdUnitLimits``).

    pyinfra's ``server.SecurityLimits`` is not enough: it reads only ``limits.conf`` (so a drop-in
    that overrides it goes unseen), and a line without exactly four fields, such as a trailing
    comment, makes it raise ``ValueError``, which aborts the whole run rather than failing one host.

    Runs one ``sed`` per file, each file's lines prefixed so that file content cannot pose as a marker.

    .. code:: python

        [
            {
                "domain": "root",
                "type": "soft",
                "item": "nofile",
                "value": "1000000",
                "file": "/etc/security/limits.d/90-iluvatar.conf",
            },
        ]
    """

    @staticmethod
    @override
    def default() -> list[PamLimit]:
        return []

    @override
    def command(self) -> str:
        return (
            f"for f in {LIMITS_CONF} {LIMITS_D}/*.conf; do"
            f' if [ -f "$f" ]; then echo "{_FILE_MARKER}$f"; sed "s/^/{_LINE_MARKER}/" "$f"; fi;'
            " done"
        )

    @override
    def process(self, output: list[str]) -> list[PamLimit]:
        files: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in output:
            if line.startswith(_FILE_MARKER):
                current = files.setdefault(line.removeprefix(_FILE_MARKER), [])
            elif line.startswith(_LINE_MARKER) and current is not None:
                current.append(line.removeprefix(_LINE_MARKER))
            else:
                raise FactProcessError(f"unexpected line in limits files listing: {line!r}")
        drop_ins = sorted(path for path in files if path != LIMITS_CONF)
        order = ([LIMITS_CONF] if LIMITS_CONF in files else []) + drop_ins
        effective: dict[tuple[str, LimitType, str], PamLimit] = {}
        for path in order:
            for domain, limit_type, item, value in _limit_lines(path, files[path]):
                effective[domain, limit_type, item] = {
                    "domain": domain,
                    "type": limit_type,
                    "item": item,
                    "value": value,
                    "file": path,
                }
        return list(effective.values())


LimitValue = int | Literal["infinity"]


class UnitLimits(TypedDict):
    """A systemd unit's load state and its configured ``nofile`` and ``nproc`` limits."""

    load_state: str
    nofile_soft: LimitValue
    nofile_hard: LimitValue
    nproc_soft: LimitValue
    nproc_hard: LimitValue


_UNIT_PROPERTIES = ("LoadState", "LimitNOFILE", "LimitNOFILESoft", "LimitNPROC", "LimitNPROCSoft")
_NO_SYSTEMD = "System has not been booted with systemd"


def _limit_value(key: str, value: str) -> LimitValue:
    if value == "infinity":
        return "infinity"
    if not value.isdigit():
        raise FactProcessError(f"{key} is neither a number nor infinity: {value!r}")
    return int(value)


class SystemdUnitLimits(FactBase[UnitLimits | None]):
    """
    Returns a systemd unit's ``nofile`` and ``nproc`` limits, soft and hard, as systemd will apply
    them to the unit's processes (``"infinity"`` or a number), and its ``load_state``: ``loaded``, or
    ``not-found`` for a unit that does not exist (systemd then reports its defaults). ``None`` without
    ``systemctl``, or where systemd is not running (a chroot, a container without it). PAM limits never
    reach services: the worker's limits must be set in its units.

    Runs ``systemctl show -p LoadState -p LimitNOFILE -p LimitNOFILESoft -p LimitNPROC
    -p LimitNPROCSoft UNIT``, its exit status in-band. These are the unit's configured values: where the
    environment caps limits lower (a container), the processes get less, which ``/proc/PID/limits`` shows.

    .. code:: python

        {
            "load_state": "loaded",
            "nofile_soft": "infinity",
            "nofile_hard": "infinity",
            "nproc_soft": "infinity",
            "nproc_hard": "infinity",
        }
    """

    @override
    def requires_command(self, unit: str) -> str:
        return "systemctl"

    @override
    def command(self, unit: str) -> str:
        properties = " ".join(f"-p {name}" for name in _UNIT_PROPERTIES)
        return separated(f"systemctl show {properties} {shlex.quote(unit)}")

    @override
    def process(self, output: list[str]) -> UnitLimits | None:
        result = split_separated(output, "systemctl show")
        if result.status != 0:
            if _NO_SYSTEMD in result.stderr:
                return None
            raise FactProcessError(f"systemctl show exited with status {result.status}: {result.stderr}")
        values: dict[str, str] = {}
        for line in result.stdout:
            key, sep, value = line.strip().partition("=")
            if not sep or key not in _UNIT_PROPERTIES:
                raise FactProcessError(f"unexpected line from systemctl show: {line!r}")
            values[key] = value
        missing = sorted(set(_UNIT_PROPERTIES) - set(values))
        if missing:
            raise FactProcessError(f"systemctl show did not report {', '.join(missing)}")
        return {
            "load_state": values["LoadState"],
            "nofile_soft": _limit_value("LimitNOFILESoft", values["LimitNOFILESoft"]),
            "nofile_hard": _limit_value("LimitNOFILE", values["LimitNOFILE"]),
            "nproc_soft": _limit_value("LimitNPROCSoft", values["LimitNPROCSoft"]),
            "nproc_hard": _limit_value("LimitNPROC", values["LimitNPROC"]),
        }
