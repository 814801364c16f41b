"""The data keys this package reads, with their defaults and what each accepts.

Every key is read through :func:`get`, which validates it and raises ``OperationValueError`` naming the host,
the key, the value given and what is accepted. Deploys read all their keys first, so bad input stops the run
before the first change on any host. The README's data-key table lists the same keys (a test keeps them equal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pyinfra.api.exceptions import OperationValueError
from pyinfra.api.host import Host

T = TypeVar("T")


@dataclass(frozen=True)
class DataKey(Generic[T]):
    """One data key: its name, default, a parser that raises ``ValueError`` on bad input, and docs."""

    name: str
    default: T
    parse: Callable[[Any], T]
    accepted: str
    doc: str


def get(host: Host, key: DataKey[T]) -> T:
    """The validated value of ``key`` on ``host`` (its default when unset)."""
    value = host.data.get(key.name, key.default)
    try:
        return key.parse(value)
    except (TypeError, ValueError) as error:
        raise OperationValueError(
            f"{host.name}: data key {key.name} = {value!r} is not valid ({error}); accepted: {key.accepted}"
        ) from error


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ValueError("not a boolean")


def _positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("not an integer")
    number = int(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def _limit(value: Any) -> int | str:
    if value == "unlimited":
        return "unlimited"
    return _positive_int(value)


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.split(",") if value else []
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) and item for item in value):
        raise ValueError("not a list of names")
    return [item.strip() for item in value]


EXTRA_PACKAGES: DataKey[list[str]] = DataKey(
    "iluvatar_extra_packages",
    [],
    _names,
    "a list of Debian package names (or one comma-separated string)",
    "Packages installed on every worker in addition to the ones the setup page lists.",
)
ENERGY_TOOLS: DataKey[bool] = DataKey(
    "iluvatar_energy_tools",
    False,
    _boolean,
    "true or false",
    "Install the optional energy-monitoring tools: ipmitool and perf for the running kernel.",
)
NOFILE_LIMIT: DataKey[int | str] = DataKey(
    "iluvatar_nofile_limit",
    1000000,
    _limit,
    'a positive integer or "unlimited"',
    "Soft and hard `nofile` limit for root and all users (PAM drop-in; services get it from their units).",
)
NPROC_LIMIT: DataKey[int | str] = DataKey(
    "iluvatar_nproc_limit",
    1000000,
    _limit,
    'a positive integer or "unlimited"',
    "Soft and hard `nproc` limit for root and all users (PAM drop-in).",
)

ALL_KEYS: tuple[DataKey[Any], ...] = (EXTRA_PACKAGES, ENERGY_TOOLS, NOFILE_LIMIT, NPROC_LIMIT)
