"""URLs given by users: one parser for every http(s) URL this package accepts, and one mask for every message.

:func:`http_url` is what data keys (``iluvatar_mirror``, ``iluvatar_cnitool_prebuilt``), the lock file and the
command line use to accept a URL; :func:`redact` is applied to every message that can hold one, so a password in a
URL (``https://user:secret@host``) is never printed or logged.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_CREDENTIALS = re.compile(r"(?<=://)[^/?#@\s]*@")
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")
MAX_URL = 2048


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it (``user:pass@``) replaced by ``***@``."""
    return _CREDENTIALS.sub("***@", text)


def http_url(value: object, *, base: bool = False) -> str:
    """
    ``value`` as an http(s) URL: a scheme of ``http`` or ``https``, a host name or IP address (an optional port),
    no credentials, no query string or fragment, no whitespace or control characters, at most 2048 characters.
    ``base`` (a URL other paths are appended to) drops a trailing ``/``. Raises ``ValueError`` saying what is wrong.
    """
    if not isinstance(value, str) or not value:
        raise ValueError("not a URL")
    if len(value) > MAX_URL:
        raise ValueError(f"longer than {MAX_URL} characters")
    if any(character.isspace() or ord(character) < 32 or ord(character) == 127 for character in value):
        raise ValueError("contains whitespace or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as error:
        raise ValueError(f"not a URL ({error})") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("not an http:// or https:// URL")
    if "@" in parts.netloc:
        raise ValueError("holds credentials, which would be printed in logs; put them in ~/.netrc instead")
    host = parts.hostname or ""
    if not (_HOSTNAME.fullmatch(host) or _is_ip_literal(parts.netloc)):
        raise ValueError("has no valid host name")
    if port == 0:
        raise ValueError("has port 0")
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise ValueError("has a query string or fragment")
    return value.rstrip("/") if base else value


def _is_ip_literal(netloc: str) -> bool:
    """Whether ``netloc`` is a bracketed IPv6 address, with an optional port (``[::1]:8080``)."""
    return re.fullmatch(r"\[[0-9A-Fa-f:.]+\](?::\d+)?", netloc) is not None
