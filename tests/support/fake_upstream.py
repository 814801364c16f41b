"""A local HTTP server that plays GitHub (API and download host), go.dev and an artifact mirror, for tests.

One threaded server answers, at ``http://HOST:PORT``:

- the GitHub API: ``/repos/{owner}/{repo}/releases`` (paginated: ``per_page``, ``page``, ``Link`` header),
  ``/repos/{owner}/{repo}/releases/latest`` (GitHub's "latest": the newest non-draft, non-prerelease *by order*,
  not by version), ``/repos/{owner}/{repo}/releases/tags/{tag}``;
- GitHub's download host: ``/{owner}/{repo}/releases/download/{tag}/{file}`` (the ``browser_download_url``);
- go.dev: ``/dl/?mode=json&include=all`` (``mode=json`` alone lists stable releases only) and ``/dl/{file}``;
- a mirror laid out as ``pyinfra_iluvatar.releases.lockfile`` documents: ``/github.com/{owner}/{repo}/releases/
  download/{tag}/{file}`` and ``/go.dev/dl/{file}``.

Releases are described with :class:`FakeRelease` and :class:`FakeFile` (bytes in memory or a file on disk, whose
API ``digest`` is right, wrong or absent) and :class:`FakeGoRelease`. Switches: ``rate_limited`` (API answers
``rate_limit_status``, 403 or 429, with ``X-RateLimit-Remaining: 0`` and ``X-RateLimit-Reset``), ``missing``
(paths answered 404), ``api_prefix`` (the API under ``/api/v3`` as on GitHub Enterprise), ``download_userinfo``
(``user:password`` put in every ``browser_download_url``, as a careless mirror might). Every request is
counted per path (:attr:`FakeUpstream.counts`) and logged with its headers (:attr:`FakeUpstream.log`)::

    with FakeUpstream({"containerd/containerd": [FakeRelease("v1.7.24", files)]}) as upstream:
        run_lock(github_api=upstream.api_url, go_dl=upstream.go_dl_url)
        assert upstream.counts[path] == 1
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

Digest = Literal["right", "wrong", "absent"]


@dataclass(frozen=True)
class FakeFile:
    """A release file: its name, its bytes (or a file on disk), and the ``digest`` the API reports for it."""

    name: str
    data: bytes | Path
    digest: Digest = "right"

    def read(self) -> bytes:
        """The file's bytes."""
        return self.data if isinstance(self.data, bytes) else self.data.read_bytes()

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        return len(self.data) if isinstance(self.data, bytes) else self.data.stat().st_size

    def sha256(self) -> str:
        """The file's real sha256."""
        return _sha256(self.data)

    def api_digest(self) -> str | None:
        """What the API's ``digest`` field says: the real sha256, a wrong one, or nothing (older releases)."""
        if self.digest == "absent":
            return None
        if self.digest == "wrong":
            return "sha256:" + hashlib.sha256(b"not " + self.name.encode()).hexdigest()
        return "sha256:" + self.sha256()


def _sha256(data: bytes | Path) -> str:
    """sha256 of bytes, or of a file (hashed once per path, size and mtime; only the digest is kept)."""
    if isinstance(data, bytes):
        return hashlib.sha256(data).hexdigest()
    status = data.stat()
    return _file_sha256(data, status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _file_sha256(path: Path, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def with_checksums(file: FakeFile, *suffixes: str, digest: Digest = "right") -> list[FakeFile]:
    """``file`` plus a checksum file per suffix, in ``sha256sum``/``sha512sum`` format, with real checksums.

    ``.sha512`` gets sha512; every other suffix (``.sha256sum``, ``.sha256``) gets sha256.
    """
    files = [file]
    for suffix in suffixes:
        algorithm = "sha512" if suffix == ".sha512" else "sha256"
        value = hashlib.new(algorithm, file.read()).hexdigest()
        files.append(FakeFile(file.name + suffix, f"{value}  {file.name}\n".encode(), digest))
    return files


@dataclass(frozen=True)
class FakeRelease:
    """One GitHub release as the fake API lists it."""

    tag: str
    files: Sequence[FakeFile] = ()
    draft: bool = False
    prerelease: bool = False


@dataclass(frozen=True)
class FakeGoFile:
    """One file of a Go release; ``sha256`` overrides the listed checksum (None: the file's real sha256)."""

    filename: str
    os: str
    arch: str
    data: bytes | Path
    kind: str = "archive"
    sha256: str | None = None


@dataclass(frozen=True)
class FakeGoRelease:
    """One Go release as go.dev lists it (``version`` is ``go1.23.4``)."""

    version: str
    files: Sequence[FakeGoFile] = ()
    stable: bool = True


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server answered: method, path, decoded query and headers (names lower-cased)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]


@dataclass
class FakeUpstream:
    """The server; a context manager that starts it on ``host:port`` (port 0: any free port) and stops it.

    ``repos`` maps ``owner/repo`` to its releases, newest *by date* first (the order GitHub lists them in);
    ``go`` lists Go releases in go.dev's order; ``max_per_page`` caps the API's page size (GitHub's cap is 100)
    so that tests can force pagination.
    """

    repos: Mapping[str, Sequence[FakeRelease]] = field(default_factory=dict)
    go: Sequence[FakeGoRelease] = ()
    host: str = "127.0.0.1"
    port: int = 0
    max_per_page: int = 100
    api_prefix: str = ""
    rate_limited: bool = False
    rate_limit_status: int = 403
    rate_limit_reset: int = 1_900_000_000
    missing: set[str] = field(default_factory=set)
    download_userinfo: str = ""
    cut_after: int | None = None
    """Serve only this many bytes of each file, with the whole file's Content-Length, then close the connection
    (a truncated download) — or, while :attr:`hold` is not set, keep it open first (a download in progress)."""
    hold: threading.Event | None = None
    counts: Counter[str] = field(default_factory=Counter, init=False)
    log: list[RecordedRequest] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the server (still answered after it stopped, for assertions)."""
        if self._base_url is None:
            raise RuntimeError("the fake upstream was never started; use it as a context manager")
        return self._base_url

    @property
    def api_url(self) -> str:
        """The GitHub API base URL (``--github-api``): ``api_prefix`` is GitHub Enterprise's ``/api/v3``."""
        return self.base_url + self.api_prefix

    @property
    def go_dl_url(self) -> str:
        """go.dev's download page (``--go-dl``)."""
        return self.base_url + "/dl/"

    @property
    def mirror_url(self) -> str:
        """The mirror root: ``<mirror>/github.com/…`` and ``<mirror>/go.dev/dl/…`` are served."""
        return self.base_url

    def requests_to(self, prefix: str) -> list[RecordedRequest]:
        """The logged requests whose path starts with ``prefix``."""
        with self._lock:
            return [request for request in self.log if request.path.startswith(prefix)]

    def __enter__(self) -> FakeUpstream:
        self._server = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        host, port = self._server.server_address[:2]
        self._base_url = f"http://{host!s}:{port}"
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-upstream", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _traceback: TracebackType | None
    ) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = None

    # What the server answers, path by path.

    def record(self, request: RecordedRequest) -> None:
        """Count and log one answered request."""
        with self._lock:
            self.counts[request.path] += 1
            self.log.append(request)

    def release_json(self, full_name: str, index: int, release: FakeRelease) -> dict[str, Any]:
        """A release object shaped like GitHub's."""
        created = datetime(2025, 1, 1, tzinfo=timezone.utc) - timedelta(days=index)
        userinfo = f"{self.download_userinfo}@" if self.download_userinfo else ""
        host = self.base_url.removeprefix("http://")
        download = f"http://{userinfo}{host}/{full_name}/releases/download/{quote(release.tag)}"
        return {
            "id": index + 1,
            "tag_name": release.tag,
            "name": release.tag,
            "draft": release.draft,
            "prerelease": release.prerelease,
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "published_at": None if release.draft else created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "html_url": f"{self.base_url}/{full_name}/releases/tag/{quote(release.tag)}",
            "assets": [
                {
                    "name": file.name,
                    "size": file.size,
                    "state": "uploaded",
                    "content_type": "application/octet-stream",
                    "digest": file.api_digest(),
                    "browser_download_url": f"{download}/{quote(file.name)}",
                }
                for file in release.files
            ],
        }

    def go_json(self, include_all: bool) -> list[dict[str, Any]]:
        """go.dev's listing; without ``include=all`` only stable releases."""
        return [
            {
                "version": release.version,
                "stable": release.stable,
                "files": [
                    {
                        "filename": file.filename,
                        "os": file.os,
                        "arch": file.arch,
                        "version": release.version,
                        "sha256": file.sha256 or _sha256(file.data),
                        "size": FakeFile(file.filename, file.data).size,
                        "kind": file.kind,
                    }
                    for file in release.files
                ],
            }
            for release in self.go
            if include_all or release.stable
        ]

    def release_file(self, full_name: str, tag: str, name: str) -> FakeFile | None:
        """A downloadable file of a published (non-draft) release."""
        for release in self.repos.get(full_name, ()):
            if release.tag == tag and not release.draft:
                return next((file for file in release.files if file.name == name), None)
        return None

    def go_file(self, filename: str) -> FakeFile | None:
        """A downloadable Go file."""
        for release in self.go:
            for file in release.files:
                if file.filename == filename:
                    return FakeFile(filename, file.data)
        return None


def _handler_for(upstream: FakeUpstream) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        fake = upstream

    return Handler


class _Handler(BaseHTTPRequestHandler):
    fake: FakeUpstream
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # keep-alive answers without a 40 ms delayed-ACK stall each

    def log_message(self, fmt: str, *args: Any) -> None:
        """Quiet: tests read :attr:`FakeUpstream.log` instead."""

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = {key: values[-1] for key, values in parse_qs(split.query).items()}
        status, headers, body = self.route(path, query)
        self.fake.record(RecordedRequest(self.command, path, query, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(status)
        length = body.stat().st_size if isinstance(body, Path) else len(body)
        for name, value in {**headers, "Content-Length": str(length)}.items():
            self.send_header(name, value)
        self.end_headers()
        if isinstance(body, Path) and self.fake.cut_after is not None:
            with body.open("rb") as stream:
                self.wfile.write(stream.read(self.fake.cut_after))
            self.wfile.flush()
            if self.fake.hold is not None:
                self.fake.hold.wait(120)
            self.close_connection = True
        elif isinstance(body, Path):
            with body.open("rb") as stream:
                shutil.copyfileobj(stream, self.wfile, 1 << 20)
        else:
            self.wfile.write(body)

    def route(self, path: str, query: Mapping[str, str]) -> tuple[int, dict[str, str], bytes | Path]:
        fake = self.fake
        if path in fake.missing:
            return _json(404, {"message": "Not Found"})
        if fake.api_prefix and path.startswith(fake.api_prefix + "/"):
            return self.api(path.removeprefix(fake.api_prefix).strip("/").split("/")[1:], query)
        parts = path.strip("/").split("/")
        if parts[0] == "repos" and not fake.api_prefix:
            return self.api(parts[1:], query)
        if parts[0] == "dl" and len(parts) == 1:
            return (
                _json(200, fake.go_json(query.get("include") == "all")) if query.get("mode") == "json" else _not_found()
            )
        if parts[0] == "dl" and len(parts) == 2:
            return _file(fake.go_file(parts[1]))
        if parts[:2] == ["go.dev", "dl"] and len(parts) == 3:
            return _file(fake.go_file(parts[2]))
        if parts[0] == "github.com":
            parts = parts[1:]
        if len(parts) == 6 and parts[2:4] == ["releases", "download"]:
            return _file(fake.release_file(f"{parts[0]}/{parts[1]}", parts[4], parts[5]))
        return _not_found()

    def api(self, parts: list[str], query: Mapping[str, str]) -> tuple[int, dict[str, str], bytes | Path]:
        fake = self.fake
        if fake.rate_limited:
            headers = {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0", "X-RateLimit-Used": "60"}
            headers["X-RateLimit-Reset"] = str(fake.rate_limit_reset)
            status, base, body = _json(fake.rate_limit_status, {"message": "API rate limit exceeded for 127.0.0.1."})
            return status, {**base, **headers}, body
        if len(parts) < 3 or parts[2] != "releases" or f"{parts[0]}/{parts[1]}" not in fake.repos:
            return _json(404, {"message": "Not Found"})
        full_name = f"{parts[0]}/{parts[1]}"
        releases = list(enumerate(fake.repos[full_name]))
        published = [(index, release) for index, release in releases if not release.draft]
        if parts[3:] == ["latest"]:
            stable = [(index, release) for index, release in published if not release.prerelease]
            return (
                _json(200, fake.release_json(full_name, *stable[0])) if stable else _json(404, {"message": "Not Found"})
            )
        if len(parts) == 5 and parts[3] == "tags":
            found = [(index, release) for index, release in published if release.tag == parts[4]]
            return (
                _json(200, fake.release_json(full_name, *found[0])) if found else _json(404, {"message": "Not Found"})
            )
        if len(parts) == 3:
            return self.page(full_name, releases, query)
        return _json(404, {"message": "Not Found"})

    def page(
        self, full_name: str, releases: list[tuple[int, FakeRelease]], query: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes | Path]:
        per_page = min(int(query.get("per_page", "30")), self.fake.max_per_page)
        page = int(query.get("page", "1"))
        pages = max(1, -(-len(releases) // per_page))
        chunk = releases[(page - 1) * per_page : page * per_page]
        status, headers, body = _json(200, [self.fake.release_json(full_name, *item) for item in chunk])
        url = f"{self.fake.api_url}/repos/{full_name}/releases?per_page={per_page}"
        links = [f'<{url}&page={page + 1}>; rel="next"'] if page < pages else []
        links.append(f'<{url}&page={pages}>; rel="last"')
        return status, {**headers, "Link": ", ".join(links)}, body


def _json(status: int, data: Any) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json; charset=utf-8", "X-RateLimit-Remaining": "59"}
    return status, headers, json.dumps(data).encode()


def _not_found() -> tuple[int, dict[str, str], bytes]:
    return 404, {"Content-Type": "text/plain"}, b"not found\n"


def _file(file: FakeFile | None) -> tuple[int, dict[str, str], bytes | Path]:
    if file is None:
        return _not_found()
    return 200, {"Content-Type": "application/octet-stream"}, file.data
