"""go.dev's list of Go releases (``<dl>?mode=json&include=all``): versions, stability, files and their sha256.

The download base is configurable (``https://go.dev/dl/``, a mirror, a test server); files are downloaded from
``<dl>/<filename>``. Error messages have the credentials of any URL in them masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from pyinfra_iluvatar.releases.http import describe
from pyinfra_iluvatar.urls import redact

DEFAULT_DL = "https://go.dev/dl/"
TIMEOUT_S = 30.0


class GoDevError(Exception):
    """go.dev's listing could not be fetched or read; the message has URL credentials masked."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


@dataclass(frozen=True)
class GoFile:
    """One downloadable file of a Go release."""

    filename: str
    os: str
    arch: str
    kind: str
    sha256: str


@dataclass(frozen=True)
class GoRelease:
    """One Go release as go.dev lists it (``version`` is ``go1.23.4``)."""

    version: str
    stable: bool
    files: tuple[GoFile, ...]

    def archive(self, os: str, arch: str) -> GoFile | None:
        """The binary archive for ``os``/``arch`` (go.dev's names), if the release has one."""
        return next((file for file in self.files if (file.os, file.arch, file.kind) == (os, arch, "archive")), None)


def _release(data: Any) -> GoRelease:
    try:
        return GoRelease(
            version=str(data["version"]),
            stable=bool(data["stable"]),
            files=tuple(
                GoFile(
                    str(file["filename"]), str(file["os"]), str(file["arch"]), str(file["kind"]), str(file["sha256"])
                )
                for file in data["files"]
            ),
        )
    except (KeyError, TypeError) as error:
        raise GoDevError(f"unexpected release object in go.dev's listing (missing {error})") from error


class GoDevClient:
    """The Go releases listed at ``dl`` (go.dev's download page or a copy of it)."""

    def __init__(self, dl: str = DEFAULT_DL, session: requests.Session | None = None) -> None:
        self.dl = dl.rstrip("/") + "/"
        self._session = session or requests.Session()

    def __repr__(self) -> str:
        return f"GoDevClient(dl={self.dl!r})"

    def file_url(self, filename: str) -> str:
        """Where ``filename`` is downloaded from."""
        return self.dl + filename

    def releases(self) -> list[GoRelease]:
        """Every release go.dev lists, stable or not, as it orders them."""
        url = f"{self.dl}?mode=json&include=all"
        try:
            response = self._session.get(url, timeout=TIMEOUT_S)
        except requests.RequestException as error:
            raise GoDevError(f"cannot fetch go.dev's listing {url}: {describe(error)}") from None
        if response.status_code != 200:
            raise GoDevError(f"{url} answered HTTP {response.status_code}")
        try:
            listing = response.json()
        except ValueError:
            raise GoDevError(f"{url} did not answer JSON") from None
        if not isinstance(listing, list):
            raise GoDevError(f"{url} did not answer a list of releases")
        return [_release(item) for item in listing]
