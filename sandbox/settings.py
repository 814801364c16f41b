"""Where the sandbox keeps things and what it lets out: defaults, each overridable by environment variable.

Each setting is checked where it is read, whether given as an argument or taken from the environment: a bad value
is a :class:`SandboxError` naming the argument or variable, the value and what is accepted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pyinfra_iluvatar.sandbox import proxy
from pyinfra_iluvatar.sandbox.errors import SandboxError
from pyinfra_iluvatar.urls import http_url, redact

T = TypeVar("T")

STATE_DIR_ENV = "PYINFRA_ILUVATAR_SANDBOX_STATE"
CACHE_DIR_ENV = "PYINFRA_ILUVATAR_SANDBOX_CACHE"
MIRROR_ENV = "PYINFRA_ILUVATAR_SANDBOX_MIRROR"
NET_ENV = "PYINFRA_ILUVATAR_SANDBOX_NET"
PROXY_ALLOW_ENV = "PYINFRA_ILUVATAR_SANDBOX_PROXY_ALLOW"

DEFAULT_STATE_DIR = Path("/var/lib/pyinfra-iluvatar/sandbox")
DEFAULT_CACHE_DIR = Path("/var/cache/pyinfra-iluvatar/images")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
SUITES = ("bookworm", "trixie")

# The package registries hosts may reach through the proxy. A leading dot matches every subdomain;
# ``host:port`` allows that port only (a bare host allows 80 and 443).
DEFAULT_PROXY_ALLOW = (
    "deb.debian.org",
    "security.debian.org",
    "pypi.org",
    "files.pythonhosted.org",
)


def _shown(value: object) -> str:
    """``value`` quoted for a message, credentials in URLs masked."""
    return redact(repr(str(value) if isinstance(value, Path) else value))


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One setting: the argument ``argument`` if given, else ``$env`` if set, else ``default``.

    ``parse`` checks a value (a string from the environment, or what the argument takes) and raises ``ValueError``
    saying what is wrong; ``accepted`` says what is accepted.
    """

    argument: str
    env: str
    default: T
    parse: Callable[[Any], T]
    accepted: str

    def get(self, given: object = None) -> T:
        """``given`` unless it is None, else the environment variable unless unset or empty, else the default.

        Raises :class:`SandboxError` naming the argument or variable, the value and what is accepted.
        """
        if given is not None:
            return self._check(self.argument, given)
        value = os.environ.get(self.env)
        return self._check(self.env, value) if value else self.default

    def _check(self, source: str, value: object) -> T:
        try:
            return self.parse(value)
        except ValueError as error:
            raise SandboxError(
                f"{source} = {_shown(value)} is not valid ({error}); accepted: {self.accepted}"
            ) from None


def _directory(value: Any) -> Path:
    """``value`` (a ``str`` or ``Path``) as an absolute path that is a directory or does not exist yet."""
    if not isinstance(value, (str, Path)) or value == "":
        raise ValueError("not a path")
    path = Path(value).absolute()
    if path.exists() and not path.is_dir():
        raise ValueError("not a directory")
    return path


def _net(value: Any) -> int:
    """``value`` (an ``int``, or its digits in a string) as a network number from 0 to 255."""
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("not an integer")
    if not 0 <= value <= 255:
        raise ValueError("out of range")
    return value


def _allowlist(value: Any) -> tuple[str, ...]:
    """``value`` (entries, or a string of them separated by commas) as checked proxy allowlist entries."""
    entries = [entry.strip() for entry in value.split(",")] if isinstance(value, str) else list(value)
    if not entries:
        raise ValueError("no entries")
    return proxy.Allowlist(entries).entries


STATE_DIR = Setting("state_dir", STATE_DIR_ENV, DEFAULT_STATE_DIR, _directory, "a directory (made if missing)")
CACHE_DIR = Setting("cache_dir", CACHE_DIR_ENV, DEFAULT_CACHE_DIR, _directory, "a directory (made if missing)")
MIRROR = Setting(
    "mirror", MIRROR_ENV, DEFAULT_MIRROR, http_url, "an http:// or https:// URL of a Debian mirror (no credentials)"
)
NET = Setting("net", NET_ENV, 0, _net, "an integer from 0 to 255 (bridge ilusbxN, addresses 198.18.N.0/24)")
PROXY_ALLOW = Setting[tuple[str, ...]](
    "proxy_allow",
    PROXY_ALLOW_ENV,
    DEFAULT_PROXY_ALLOW,
    _allowlist,
    f"entries (comma-separated in a string), each {proxy.ENTRY_ACCEPTED}",
)
