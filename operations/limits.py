"""PAM resource limits, kept in a drop-in file this package owns."""

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
