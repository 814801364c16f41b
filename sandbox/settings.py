"""Where the sandbox keeps things and what it lets out: defaults, each overridable by environment variable."""

from __future__ import annotations

import os
from pathlib import Path

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


def state_dir() -> Path:
    """The state directory: ``$PYINFRA_ILUVATAR_SANDBOX_STATE`` or ``/var/lib/pyinfra-iluvatar/sandbox``."""
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def cache_dir() -> Path:
    """The image cache: ``$PYINFRA_ILUVATAR_SANDBOX_CACHE`` or ``/var/cache/pyinfra-iluvatar/images``."""
    return Path(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR)


def mirror() -> str:
    """The Debian mirror images are built from: ``$PYINFRA_ILUVATAR_SANDBOX_MIRROR`` or deb.debian.org."""
    return os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR


def net() -> int:
    """The sandbox network number (``198.18.NET.0/24``, bridge ``ilusbxNET``): ``$PYINFRA_ILUVATAR_SANDBOX_NET``."""
    return int(os.environ.get(NET_ENV) or 0)


def proxy_allow() -> tuple[str, ...]:
    """The proxy allowlist: ``$PYINFRA_ILUVATAR_SANDBOX_PROXY_ALLOW`` (comma-separated) or the default."""
    value = os.environ.get(PROXY_ALLOW_ENV)
    if not value:
        return DEFAULT_PROXY_ALLOW
    return tuple(entry.strip() for entry in value.split(",") if entry.strip())
