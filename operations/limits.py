"""Resource limits: PAM's for login sessions, and systemd's for the services PAM never reaches, each in a drop-in
file this package owns."""

from __future__ import annotations

from collections.abc import Generator
from io import StringIO
from typing import Any

from pyinfra.api.exceptions import OperationValueError
from pyinfra.api.operation import operation
from pyinfra.operations import files

LIMITS_D = "/etc/security/limits.d"


def render_limits(limits: dict[str, int | str], domains: tuple[str, ...] = ("root", "*")) -> str:
    """The drop-in text: a soft and a hard line per domain and item (``root`` first: ``*`` skips root)."""
    lines = ["# Managed by pyinfra-iluvatar: edits here are overwritten on the next deploy."]
    for domain in domains:
        for item, value in limits.items():
            for limit_type in ("soft", "hard"):
                lines.append(f"{domain:<12}{limit_type:<8}{item:<16}{value}")
    return "\n".join(lines) + "\n"


@operation()
def pam_limits(limits: dict[str, int | str], filename: str = "90-iluvatar.conf") -> Generator[Any, None, None]:
    """
    Set PAM limits (``limits.conf`` syntax) for ``root`` and ``*`` in a drop-in under
    ``/etc/security/limits.d``, leaving ``/etc/security/limits.conf`` (the distribution's file) alone.

    Drop-ins are read after ``limits.conf``, so these values win over it. PAM limits apply to login
    sessions, not to systemd services: a service's limits come from its unit (``LimitNOFILE=``).

    + limits: item (``nofile``, ``nproc``, ...) to value (a positive integer or ``"unlimited"``)
    + filename: the drop-in's name under ``/etc/security/limits.d``

    **Example:**

    .. code:: python

        limits.pam_limits(
            name="File and process limits",
            limits={"nofile": 1000000, "nproc": 1000000},
        )
    """
    if "/" in filename or not filename.endswith(".conf"):
        raise OperationValueError(f"filename must be a plain name ending in .conf, got {filename!r}")
    yield from files.put._inner(
        src=StringIO(render_limits(limits)),
        dest=f"{LIMITS_D}/{filename}",
        user="root",
        group="root",
        mode="644",
    )


def unit_drop_in(unit: str) -> str:
    """This package's drop-in for ``unit``: ``/etc/systemd/system/<unit>.d/pyinfra-iluvatar.conf``."""
    return f"/etc/systemd/system/{unit}.d/pyinfra-iluvatar.conf"


def render_unit_drop_in(limit_nofile: int) -> str:
    """A unit drop-in setting the service's own file limit (PAM limits, limits.conf, never reach services)."""
    return (
        "# Managed by pyinfra-iluvatar: edits here are overwritten on the next deploy.\n"
        "# PAM limits (limits.conf) do not apply to services: this is the service's own.\n"
        f"[Service]\nLimitNOFILE={limit_nofile}\n"
    )


@operation()
def unit_limits(unit: str, limit_nofile: int) -> Generator[Any, None, None]:
    """
    Give a packaged service its file limit with a systemd drop-in of this package's own
    (:func:`unit_drop_in`), leaving the package's unit file alone. Reload systemd and restart the service ``_if``
    this changed.

    + unit: the service (``docker.service``, ``containerd.service``)
    + limit_nofile: its soft and hard ``nofile`` limit (a positive integer)

    **Example:**

    .. code:: python

        drop_in = limits.unit_limits(name="docker.service file limit", unit="docker.service", limit_nofile=1000000)
        systemd.daemon_reload(name="Reload systemd", _if=drop_in.did_change)
    """
    if not unit.endswith(".service") or "/" in unit:
        raise OperationValueError(f"unit must be a service unit name, got {unit!r}")
    if isinstance(limit_nofile, bool) or not isinstance(limit_nofile, int) or limit_nofile < 1:
        raise OperationValueError(f"limit_nofile must be a positive integer, got {limit_nofile!r}")
    yield from files.put._inner(
        src=StringIO(render_unit_drop_in(limit_nofile)), dest=unit_drop_in(unit), user="root", group="root", mode="644"
    )
