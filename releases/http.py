"""Why an HTTP request failed, in words: ``requests`` says ``ConnectionError`` for a refused connection, an unknown
host and a TLS failure alike, and its own message holds the URL (credentials included)."""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import requests

# Most specific first: the first kind found anywhere in the exception's chain of causes gives the reason.
_REASONS: tuple[tuple[type[BaseException], Callable[[Any], str]], ...] = (
    (requests.exceptions.MissingSchema, lambda _: "invalid URL (no http:// or https://)"),
    (requests.exceptions.InvalidSchema, lambda _: "invalid URL (not http:// or https://)"),
    (requests.exceptions.InvalidURL, lambda _: "invalid URL"),
    (requests.exceptions.URLRequired, lambda _: "invalid URL"),
    (ssl.SSLError, lambda error: _tls(error)),
    (requests.exceptions.SSLError, lambda _: "TLS failure"),
    (socket.gaierror, lambda error: f"host name not resolved ({error.strerror})"),
    (ConnectionRefusedError, lambda _: "connection refused"),
    (requests.exceptions.ConnectTimeout, lambda _: "timed out connecting"),
    (requests.exceptions.ReadTimeout, lambda _: "timed out waiting for the answer"),
    (TimeoutError, lambda _: "timed out"),
    (http.client.RemoteDisconnected, lambda _: "the server closed the connection without answering"),
    (ConnectionResetError, lambda _: "connection reset"),
    (http.client.IncompleteRead, lambda _: "connection broken mid-answer (incomplete read)"),
    (requests.exceptions.ChunkedEncodingError, lambda _: "connection broken mid-answer (incomplete read)"),
    (requests.exceptions.ContentDecodingError, lambda _: "the answer could not be decoded"),
    (requests.exceptions.TooManyRedirects, lambda _: "too many redirects"),
)


def describe(error: requests.RequestException) -> str:
    """Why ``error``'s request failed, in a few words ("connection refused", "host name not resolved (Name or
    service not known)", "TLS failure: …", "timed out connecting"): never the URL, so never its credentials. A
    failure through a proxy says so; one of no known kind gives the system's reason, else the exception's class."""
    reason = _reason(list(_causes(error))) or f"request failed ({type(error).__name__})"
    return f"{reason} (through a proxy)" if isinstance(error, requests.exceptions.ProxyError) else reason


def _reason(causes: list[BaseException]) -> str | None:
    """The reason that the first kind in :data:`_REASONS` found among ``causes`` gives, else an ``OSError``'s
    ``strerror`` (``network is unreachable``), else None."""
    for kind, text in _REASONS:
        found = next((cause for cause in causes if isinstance(cause, kind)), None)
        if found is not None:
            return text(found)
    return next((cause.strerror.lower() for cause in causes if isinstance(cause, OSError) and cause.strerror), None)


def _tls(error: ssl.SSLError) -> str:
    """A TLS failure as OpenSSL explains it: the certificate check's message, else the reason code in words."""
    if verify_message := getattr(error, "verify_message", None):
        return f"TLS failure: certificate not trusted ({verify_message})"
    reason = getattr(error, "reason", None)
    return f"TLS failure ({reason.lower().replace('_', ' ')})" if reason else "TLS failure"


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what it wraps, outermost first: causes, contexts, exceptions among its arguments and
    urllib3's ``reason`` (a ``MaxRetryError``'s underlying error)."""
    pending, seen = [error], set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        pending += [item for item in wrapped if isinstance(item, BaseException)]
