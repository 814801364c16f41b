"""A small GitHub releases client: list releases (paginated), get one by tag, fetch a release's checksum file.

The API base URL is configurable (``https://api.github.com``, a GitHub Enterprise ``https://HOST/api/v3``, a test
server). A token (``GITHUB_TOKEN``) is sent as ``Authorization: Bearer`` to the API base URL only, never to download
hosts, and never appears in a message, a ``repr`` or a log line. It goes only over https, or over plain http to a
loopback address (a test server): a plain-http API elsewhere gets no token (:attr:`GithubClient.token_withheld`).
Every error message has the credentials of any URL in it masked (:func:`~pyinfra_iluvatar.urls.redact`).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import requests

from pyinfra_iluvatar.releases.http import describe
from pyinfra_iluvatar.urls import redact

DEFAULT_API = "https://api.github.com"
TIMEOUT_S = 30.0


class GithubError(Exception):
    """The GitHub API (or a download host) gave no usable answer; the message has URL credentials masked."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class NotFound(GithubError):
    """The API answered 404: no such repository, release or tag (or a private one the token cannot see)."""


class RateLimited(GithubError):
    """The API's rate limit is exhausted; ``reset`` is when it refills (None when the API did not say)."""

    def __init__(self, message: str, reset: datetime | None) -> None:
        super().__init__(message)
        self.reset = reset


@dataclass(frozen=True)
class Asset:
    """One file of a release; ``sha256`` is the API's ``digest`` (hex) where GitHub reports one."""

    name: str
    url: str
    sha256: str | None


@dataclass(frozen=True)
class Release:
    """One GitHub release."""

    tag: str
    draft: bool
    prerelease: bool
    assets: tuple[Asset, ...]


def _sha256_of_digest(digest: Any) -> str | None:
    if isinstance(digest, str) and digest.startswith("sha256:"):
        return digest.removeprefix("sha256:").lower()
    return None


def _release(data: Any) -> Release:
    try:
        return Release(
            tag=str(data["tag_name"]),
            draft=bool(data.get("draft", False)),
            prerelease=bool(data.get("prerelease", False)),
            assets=tuple(
                Asset(str(asset["name"]), str(asset["browser_download_url"]), _sha256_of_digest(asset.get("digest")))
                for asset in data.get("assets") or ()
            ),
        )
    except (KeyError, TypeError, AttributeError) as error:
        raise GithubError(f"unexpected release object from the GitHub API (missing {error})") from error


def _utc(epoch: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(epoch), tz=timezone.utc) if epoch else None
    except (ValueError, OverflowError, OSError):
        return None


def _may_carry_token(api: str) -> bool:
    """Whether a token may go to ``api``: over https, or over plain http to a loopback address (a test server)."""
    url = urlsplit(api)
    if url.scheme == "https":
        return True
    if url.scheme != "http" or url.hostname is None:
        return False
    if url.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(url.hostname).is_loopback
    except ValueError:
        return False


class GithubClient:
    """GitHub releases of public (or token-readable) repositories, through the REST API at ``api``."""

    def __init__(
        self, api: str = DEFAULT_API, token: str | None = None, session: requests.Session | None = None
    ) -> None:
        self.api = api.rstrip("/")
        self.token_withheld = bool(token) and not _may_carry_token(self.api)
        self._token = None if self.token_withheld else token or None
        self._session = session or requests.Session()

    @classmethod
    def from_environment(cls, api: str = DEFAULT_API) -> GithubClient:
        """A client that authenticates with ``GITHUB_TOKEN`` when it is set."""
        return cls(api, os.environ.get("GITHUB_TOKEN"))

    @property
    def authenticated(self) -> bool:
        """Whether a token is sent to the API."""
        return self._token is not None

    def __repr__(self) -> str:
        return f"GithubClient(api={self.api!r}, authenticated={self.authenticated})"

    def releases(self, full_name: str) -> Iterator[Release]:
        """Every release of ``owner/repo``, newest first by date (as GitHub orders them), across all pages."""
        url: str | None = f"{self.api}/repos/{full_name}/releases?per_page=100"
        while url is not None:
            response = self._api_get(url)
            page = self._json(response)
            if not isinstance(page, list):
                raise GithubError(f"GitHub API: expected a list of releases from {self._where(response.url)}")
            yield from (_release(item) for item in page)
            url = response.links.get("next", {}).get("url")

    def release(self, full_name: str, tag: str) -> Release:
        """The release of ``owner/repo`` tagged ``tag``; :class:`NotFound` when there is none."""
        return _release(self._json(self._api_get(f"{self.api}/repos/{full_name}/releases/tags/{tag}")))

    def download(self, url: str) -> bytes:
        """A small release file (a checksum file). Fetched without the token: download hosts need none."""
        try:
            response = self._session.get(url, timeout=TIMEOUT_S)
        except requests.RequestException as error:
            raise GithubError(f"cannot download {url}: {describe(error)}") from None
        if response.status_code != 200:
            error_class = NotFound if response.status_code == 404 else GithubError
            raise error_class(f"cannot download {url}: HTTP {response.status_code}")
        return response.content

    def _where(self, url: str) -> str:
        """A URL as shown in messages: the API path, relative to the API base."""
        return url[len(self.api) :] if url.startswith(self.api) else urlsplit(url).path

    def _api_get(self, url: str) -> requests.Response:
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if self._token is not None and url.startswith(self.api + "/"):
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            response = self._session.get(url, headers=headers, timeout=TIMEOUT_S)
        except requests.RequestException as error:
            raise GithubError(f"GitHub API: cannot fetch {url}: {describe(error)}") from None
        if response.status_code == 200:
            return response
        where = self._where(url)
        if response.status_code in (403, 429) and (
            response.headers.get("X-RateLimit-Remaining") == "0" or "Retry-After" in response.headers
        ):
            raise self._rate_limited(response, where)
        if response.status_code == 404:
            raise NotFound(f"GitHub API at {self.api}: {where} not found (404)")
        if response.status_code == 401:
            raise GithubError(f"GitHub API at {self.api} rejected the token in GITHUB_TOKEN (401): {where}")
        raise GithubError(f"GitHub API at {self.api}: {where} answered HTTP {response.status_code}")

    def _rate_limited(self, response: requests.Response, where: str) -> RateLimited:
        reset = _utc(response.headers.get("X-RateLimit-Reset"))
        if reset is not None:
            when = f"it resets at {reset:%Y-%m-%d %H:%M:%S} UTC"
        else:
            when = f"retry after {response.headers.get('Retry-After', 'a while')} s"
        advice = (
            "the token's quota is used up"
            if self.authenticated
            else "set GITHUB_TOKEN for 5000 requests/hour instead of 60"
        )
        return RateLimited(
            f"GitHub API rate limit exhausted at {self.api} ({where}, HTTP {response.status_code}): {when}; {advice}",
            reset,
        )

    def _json(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise GithubError(f"GitHub API: {self._where(response.url)} did not answer JSON") from None
