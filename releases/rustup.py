"""rustup's dist server (``https://static.rust-lang.org``, a mirror, a test server): the current rustup version
(``rustup/release-stable.toml``) and the sha256 published beside each ``rustup-init``
(``rustup/archive/<version>/<triple>/rustup-init.sha256``). Error messages have URL credentials masked."""

from __future__ import annotations

import re

import requests

from pyinfra_iluvatar.releases.http import describe
from pyinfra_iluvatar.urls import redact

DEFAULT_DIST = "https://static.rust-lang.org"
TIMEOUT_S = 30.0
_STABLE_VERSION = re.compile(r"""^version\s*=\s*['"]([0-9][0-9A-Za-z.+-]*)['"]\s*$""", re.MULTILINE)


class RustupDistError(Exception):
    """The dist server could not be read, or answered something else than rustup publishes."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class RustupDistClient:
    """rustup's releases on the dist server at ``dist``."""

    def __init__(self, dist: str = DEFAULT_DIST, session: requests.Session | None = None) -> None:
        self.dist = dist.rstrip("/")
        self._session = session or requests.Session()

    def __repr__(self) -> str:
        return f"RustupDistClient(dist={self.dist!r})"

    def url(self, path: str) -> str:
        """The URL of ``path`` (``/rustup/…``) on this dist server."""
        return self.dist + path

    def _get(self, path: str) -> requests.Response | None:
        """The answer for ``path``; ``None`` for HTTP 404."""
        url = self.url(path)
        try:
            response = self._session.get(url, timeout=TIMEOUT_S)
        except requests.RequestException as error:
            raise RustupDistError(f"cannot fetch {url}: {describe(error)}") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RustupDistError(f"{url} answered HTTP {response.status_code}")
        return response

    def stable_version(self) -> str:
        """The version of the current rustup release (``release-stable.toml``'s ``version``)."""
        response = self._get("/rustup/release-stable.toml")
        if response is None:
            raise RustupDistError(f"{self.url('/rustup/release-stable.toml')} does not exist (HTTP 404)")
        match = _STABLE_VERSION.search(response.text)
        if match is None:
            raise RustupDistError(f"{self.url('/rustup/release-stable.toml')} names no version")
        return match[1]

    def checksum(self, path: str) -> str | None:
        """The text of the ``.sha256`` file published beside ``path``; ``None`` when there is none (HTTP 404)."""
        response = self._get(path + ".sha256")
        return None if response is None else response.text
