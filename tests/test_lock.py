"""`pyinfra-iluvatar lock` against a local fake GitHub and go.dev: what it picks, what it refuses, what it says."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
import urllib3
from click.testing import CliRunner, Result
from urllib3.exceptions import MaxRetryError

from pyinfra_iluvatar.cli import main
from pyinfra_iluvatar.releases import lockfile
from pyinfra_iluvatar.releases.components import UPSTREAM_ARCH
from pyinfra_iluvatar.releases.github import GithubClient
from pyinfra_iluvatar.releases.http import describe
from pyinfra_iluvatar.tests.support.fake_upstream import FakeFile, FakeGoFile, FakeGoRelease, FakeRelease, FakeUpstream
from pyinfra_iluvatar.tests.support.upstream_fixtures import ARCHES, cni_plugins, containerd, go, standard_upstream

TOKEN = "ghp_" + "Zq7" * 12  # looks like a real token; must never be printed or written


# requests honours HTTP(S)_PROXY even for 127.0.0.1: without these, test traffic (and TOKEN) would go to a proxy.
NO_PROXY = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
DEAD_PROXY = {f"{scheme}_proxy": "http://127.0.0.1:9" for scheme in ("http", "https", "all", "HTTP", "HTTPS", "ALL")}


@pytest.fixture(autouse=True)
def _loopback_bypasses_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in NO_PROXY.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with standard_upstream() as server:
        yield server


def run_lock(
    upstream: FakeUpstream, lock_file: Path, *args: str, token: str | None = None, arches: Sequence[str] = ()
) -> Result:
    """The real `pyinfra-iluvatar lock` command, pointed at the fake upstream."""
    arch_args = [f"--arch={arch}" for arch in arches]
    command = ["lock", f"--lock-file={lock_file}", f"--github-api={upstream.api_url}", f"--go-dl={upstream.go_dl_url}"]
    return CliRunner().invoke(main, [*command, *arch_args, *args], env={"GITHUB_TOKEN": token})


def versions(lock_file: Path) -> dict[str, str]:
    return {name: component.version for name, component in lockfile.load(lock_file).components.items()}


def test_latest_is_the_highest_stable_release_with_every_asset(upstream: FakeUpstream, tmp_path: Path) -> None:
    lock_file = tmp_path / "iluvatar.lock.json"
    result = run_lock(upstream, lock_file)
    assert result.exit_code == 0, result.output
    # Not GitHub's newest by date (1.7.25), not the draft (2.1.0), the prerelease (2.1.0-rc.1), nor the release
    # without assets (2.0.3); CNI plugins skip the asset-less 1.6.1; Go skips the release candidate.
    assert versions(lock_file) == {"containerd": "2.0.2", "cni-plugins": "1.6.0", "go": "1.23.4", "cnitool": "1.2.3"}
    containerd_lock = lockfile.load(lock_file).component("containerd")
    assert containerd_lock.tag == "v2.0.2"
    assert containerd_lock.constraint == "latest"
    assert containerd_lock.artifact("arm64").sha256 == hashlib.sha256(b"containerd 2.0.2 arm64").hexdigest()
    assert "containerd   2.0.2 (new)" in result.output
    assert upstream.counts["/repos/containerd/containerd/releases/latest"] == 0, "GitHub's latest is by date"
    api = f"{upstream.api_url}/repos/containerd/containerd/releases/latest"
    assert requests.get(api, timeout=10).json()["tag_name"] == "v1.7.25"  # the trap the setup page falls into


def test_github_enterprise_api_base_with_a_path(tmp_path: Path) -> None:
    fake = standard_upstream()
    fake.api_prefix = "/api/v3"
    fake.max_per_page = 2
    with fake:
        result = run_lock(fake, tmp_path / "lock.json", token=TOKEN)
    assert result.exit_code == 0, result.output
    assert f"Resolving with {fake.base_url}/api/v3 (GITHUB_TOKEN set)" in result.output
    assert versions(tmp_path / "lock.json")["containerd"] == "2.0.2"
    api_requests = fake.requests_to("/api/v3/repos/")
    assert len(api_requests) == 4 + 2 + 1  # containerd's 7 releases in pages of 2, 3 CNI plugins, 2 CNI
    assert all(request.headers.get("authorization") == f"Bearer {TOKEN}" for request in api_requests)


def test_pin_asks_for_the_tag_only(upstream: FakeUpstream, tmp_path: Path) -> None:
    lock_file = tmp_path / "iluvatar.lock.json"
    result = run_lock(upstream, lock_file, "--containerd=1.7.24", "--cni-plugins=v1.5.1", "--go=1.22.10")
    assert result.exit_code == 0, result.output
    assert versions(lock_file) == {"containerd": "1.7.24", "cni-plugins": "1.5.1", "go": "1.22.10", "cnitool": "1.2.3"}
    assert lockfile.load(lock_file).component("cni-plugins").constraint == "v1.5.1"
    assert upstream.counts["/repos/containerd/containerd/releases/tags/v1.7.24"] == 1
    assert upstream.counts["/repos/containerd/containerd/releases"] == 0


def test_pin_may_name_a_prerelease(upstream: FakeUpstream, tmp_path: Path) -> None:
    lock_file = tmp_path / "iluvatar.lock.json"
    result = run_lock(upstream, lock_file, "--containerd=2.1.0-rc.1", "--go=1.24rc1")
    assert result.exit_code == 0, result.output
    assert versions(lock_file)["containerd"] == "2.1.0-rc.1"
    assert lockfile.load(lock_file).component("containerd").tag == "v2.1.0-rc.1"
    assert lockfile.load(lock_file).component("go").tag == "go1.24rc1"


def test_constraints(upstream: FakeUpstream, tmp_path: Path) -> None:
    lock_file = tmp_path / "iluvatar.lock.json"
    result = run_lock(upstream, lock_file, "--containerd=~=1.7", "--go=>=1.22,<1.23", "--cni-plugins=<1.6")
    assert result.exit_code == 0, result.output
    assert versions(lock_file) == {"containerd": "1.7.25", "cni-plugins": "1.5.1", "go": "1.22.10", "cnitool": "1.2.3"}
    result = run_lock(upstream, lock_file, "--containerd=>=2.0,<2.0.2")
    assert result.exit_code == 0, result.output
    assert versions(lock_file)["containerd"] == "2.0.1"
    assert "containerd   1.7.25 -> 2.0.1" in result.output


def test_pagination_reaches_the_last_page(tmp_path: Path) -> None:
    releases = [containerd(f"1.7.{patch}") for patch in range(20, 25)] + [containerd("2.0.0")]
    fake = standard_upstream()
    fake.repos = {**fake.repos, "containerd/containerd": releases}
    fake.max_per_page = 2
    with fake:
        result = run_lock(fake, tmp_path / "lock.json")
    assert result.exit_code == 0, result.output
    assert versions(tmp_path / "lock.json")["containerd"] == "2.0.0"
    pages = [request.query.get("page", "1") for request in fake.requests_to("/repos/containerd/containerd/releases")]
    assert pages == ["1", "2", "3"]


def test_nothing_satisfies_the_constraint(upstream: FakeUpstream, tmp_path: Path) -> None:
    result = run_lock(upstream, tmp_path / "lock.json", "--containerd=~=2.0.3")
    assert result.exit_code == 1
    assert "containerd: no stable release in containerd/containerd satisfies '~=2.0.3'" in result.output
    assert "v2.0.3 lacks containerd-2.0.3-linux-amd64.tar.gz" in result.output
    assert not (tmp_path / "lock.json").exists()


def test_an_architecture_missing_from_the_newest_release_skips_it(tmp_path: Path) -> None:
    fake = standard_upstream()
    fake.repos = {**fake.repos, "containerd/containerd": [containerd("2.0.2", arches=["amd64"]), containerd("2.0.1")]}
    with fake:
        assert run_lock(fake, tmp_path / "both.json").exit_code == 0
        assert run_lock(fake, tmp_path / "amd64.json", arches=["amd64"]).exit_code == 0
    assert versions(tmp_path / "both.json")["containerd"] == "2.0.1"
    assert versions(tmp_path / "amd64.json")["containerd"] == "2.0.2"
    assert set(lockfile.load(tmp_path / "amd64.json").component("go").artifacts) == {"amd64"}


def test_go_needs_an_archive_for_every_arch(tmp_path: Path) -> None:
    fake = standard_upstream()
    fake.go = [go("1.23.4", arches=["amd64"]), go("1.23.3")]
    with fake:
        result = run_lock(fake, tmp_path / "lock.json")
        assert result.exit_code == 0, result.output
        go_lock = lockfile.load(tmp_path / "lock.json").component("go")
        assert go_lock.version == "1.23.3"
        artifact = go_lock.artifact("arm64")
        assert artifact.filename == "go1.23.3.linux-arm64.tar.gz"
        assert artifact.url == f"{fake.go_dl_url}go1.23.3.linux-arm64.tar.gz"
        assert artifact.sha256 == hashlib.sha256(b"go 1.23.3 arm64").hexdigest()
        assert fake.requests_to("/dl/")[0].query == {"mode": "json", "include": "all"}


@pytest.mark.parametrize("status", [403, 429])
def test_rate_limit_names_the_reset_time(upstream: FakeUpstream, tmp_path: Path, status: int) -> None:
    upstream.rate_limited = True
    upstream.rate_limit_status = status
    upstream.rate_limit_reset = int(datetime(2031, 5, 4, 3, 2, 1, tzinfo=timezone.utc).timestamp())
    result = run_lock(upstream, tmp_path / "lock.json")
    assert result.exit_code == 1
    assert "rate limit exhausted" in result.output
    assert "resets at 2031-05-04 03:02:01 UTC" in result.output
    assert f"HTTP {status}" in result.output
    assert "set GITHUB_TOKEN" in result.output


def test_unknown_tag_is_a_clear_error(upstream: FakeUpstream, tmp_path: Path) -> None:
    result = run_lock(upstream, tmp_path / "lock.json", "--cnitool=9.9.9")
    assert result.exit_code == 1
    assert "cnitool 9.9.9: containernetworking/cni has no release tagged v9.9.9" in result.output


def test_unknown_repository_is_a_clear_error(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.missing.add("/repos/containernetworking/plugins/releases")
    result = run_lock(upstream, tmp_path / "lock.json")
    assert result.exit_code == 1
    assert f"GitHub API at {upstream.api_url}: /repos/containernetworking/plugins/releases" in result.output
    assert "not found (404)" in result.output


def test_missing_checksum_download_is_a_clear_error(upstream: FakeUpstream, tmp_path: Path) -> None:
    path = "/containerd/containerd/releases/download/v2.0.2/containerd-2.0.2-linux-arm64.tar.gz.sha256sum"
    upstream.missing.add(path)
    result = run_lock(upstream, tmp_path / "lock.json")
    assert result.exit_code == 1
    assert f"containerd v2.0.2: cannot download {upstream.base_url}{path}: HTTP 404" in result.output


def test_digest_mismatch_names_the_asset_and_both_values(tmp_path: Path) -> None:
    fake = standard_upstream()
    fake.repos = {**fake.repos, "containerd/containerd": [containerd("2.0.2", digest="wrong")]}
    with fake:
        result = run_lock(fake, tmp_path / "lock.json")
    assert result.exit_code == 1
    real = hashlib.sha256(b"containerd 2.0.2 amd64").hexdigest()
    wrong = hashlib.sha256(b"not containerd-2.0.2-linux-amd64.tar.gz").hexdigest()
    assert (
        f"containerd v2.0.2: sha256 mismatch for containerd-2.0.2-linux-amd64.tar.gz:"
        f" containerd-2.0.2-linux-amd64.tar.gz.sha256sum says {real}, the GitHub API's digest says {wrong}"
    ) in result.output
    assert not (tmp_path / "lock.json").exists()


def test_checksum_file_that_differs_from_its_digest_is_refused(tmp_path: Path) -> None:
    fake = standard_upstream()
    fake.repos = {**fake.repos, "containerd/containerd": [containerd("2.0.2", checksum_digest="wrong")]}
    with fake:
        result = run_lock(fake, tmp_path / "lock.json")
    assert result.exit_code == 1
    assert "containerd-2.0.2-linux-amd64.tar.gz.sha256sum has sha256" in result.output
    assert "the GitHub API's digest says" in result.output


def test_checksum_file_without_the_asset_is_refused(tmp_path: Path) -> None:
    archive = FakeFile("containerd-2.0.2-linux-amd64.tar.gz", b"x")
    other = FakeFile("containerd-2.0.2-linux-amd64.tar.gz.sha256sum", f"{'0' * 64}  other.tar.gz\n".encode())
    fake = standard_upstream()
    fake.repos = {**fake.repos, "containerd/containerd": [FakeRelease("v2.0.2", (archive, other))]}
    with fake:
        result = run_lock(fake, tmp_path / "lock.json", arches=["amd64"])
    assert result.exit_code == 1
    assert (
        "containerd-2.0.2-linux-amd64.tar.gz.sha256sum lists no sha256 for containerd-2.0.2-linux-amd64.tar.gz"
        in result.output
    )


def test_token_is_sent_as_bearer_to_the_api_only_and_never_shown(upstream: FakeUpstream, tmp_path: Path) -> None:
    lock_file = tmp_path / "lock.json"
    result = run_lock(upstream, lock_file, token=TOKEN)
    assert result.exit_code == 0, result.output
    api_requests = upstream.requests_to("/repos/")
    assert api_requests
    assert all(request.headers.get("authorization") == f"Bearer {TOKEN}" for request in api_requests)
    downloads = [request for request in upstream.log if "/releases/download/" in request.path]
    assert downloads
    assert all("authorization" not in request.headers for request in downloads), "token sent to a download host"
    assert "GITHUB_TOKEN set" in result.output
    assert TOKEN not in result.output
    assert TOKEN not in lock_file.read_text()
    upstream.rate_limited = True
    failed = run_lock(upstream, lock_file, token=TOKEN)
    assert failed.exit_code == 1
    assert "the token's quota is used up" in failed.output
    assert TOKEN not in failed.output
    assert TOKEN not in repr(GithubClient(upstream.api_url, TOKEN))


def test_token_goes_only_over_https_or_to_loopback(
    upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for api in ("https://ghe.example/api/v3", "http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"):
        assert GithubClient(api, TOKEN).authenticated, api
    assert not GithubClient("http://ghe.example/api/v3", TOKEN).authenticated
    assert not GithubClient("http://ghe.example/api/v3").token_withheld
    # A plain-http API elsewhere, reached through the fake upstream playing an HTTP proxy (nothing leaves 127.0.0.1).
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, upstream.base_url)
    lock = ["lock", f"--lock-file={tmp_path / 'lock.json'}", "--github-api=http://api.github.invalid"]
    result = CliRunner().invoke(main, [*lock, f"--go-dl={upstream.go_dl_url}"], env={"GITHUB_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    assert "GITHUB_TOKEN not sent: plain http to a host that is not loopback" in result.output
    api_requests = upstream.requests_to("/repos/")
    assert api_requests
    assert all(request.headers["host"] == "api.github.invalid" for request in api_requests), "not via the proxy"
    assert all("authorization" not in request.headers for request in api_requests), "token sent over plain http"


def test_token_never_printed_by_the_installed_command(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.missing.add("/repos/containernetworking/cni/releases")
    command = Path(sys.executable).parent / "pyinfra-iluvatar"
    result = subprocess.run(
        [
            command,
            "lock",
            f"--lock-file={tmp_path}/lock.json",
            f"--github-api={upstream.api_url}",
            "--go-dl",
            upstream.go_dl_url,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **DEAD_PROXY, **NO_PROXY, "GITHUB_TOKEN": TOKEN},
        timeout=60,
    )
    assert result.returncode == 1
    assert "/repos/containernetworking/cni/releases?per_page=100 not found (404)" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert upstream.requests_to("/repos/containerd/")[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_proxy_settings_leave_the_local_upstream_alone(
    upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in DEAD_PROXY.items():
        monkeypatch.setenv(name, value)
    result = run_lock(upstream, tmp_path / "lock.json", token=TOKEN)
    assert result.exit_code == 0, result.output
    assert requests.get(upstream.go_dl_url + "?mode=json", timeout=10).status_code == 200
    assert upstream.requests_to("/repos/")[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_relock_with_nothing_new_is_byte_identical(upstream: FakeUpstream, tmp_path: Path) -> None:
    lock_file = tmp_path / "lock.json"
    assert run_lock(upstream, lock_file, "--containerd=~=1.7", "--go=~=1.22.0").exit_code == 0
    first = lock_file.read_bytes()
    mtime = lock_file.stat().st_mtime_ns
    result = run_lock(upstream, lock_file)  # no options: the recorded constraints apply
    assert result.exit_code == 0, result.output
    assert lock_file.read_bytes() == first
    assert lock_file.stat().st_mtime_ns == mtime
    assert "containerd   1.7.25 (unchanged)" in result.output
    assert "is up to date" in result.output
    assert versions(lock_file)["containerd"] == "1.7.25"
    assert versions(lock_file)["go"] == "1.22.10"


def test_relock_reports_a_constraint_change_apart_from_artifacts(upstream: FakeUpstream, tmp_path: Path) -> None:
    lock_file = tmp_path / "lock.json"
    assert run_lock(upstream, lock_file).exit_code == 0
    result = run_lock(upstream, lock_file, "--containerd=~=2.0")  # same 2.0.2, same files, new constraint
    assert result.exit_code == 0, result.output
    assert "containerd   2.0.2 (constraint was latest)" in result.output
    assert "artifacts changed" not in result.output
    assert "cni-plugins  1.6.0 (unchanged)" in result.output
    assert lockfile.load(lock_file).component("containerd").constraint == "~=2.0"
    result = run_lock(upstream, lock_file, "--arch=amd64")
    assert result.exit_code == 0, result.output
    assert "containerd   2.0.2 (artifacts changed)" in result.output


def test_relock_picks_up_a_new_release_within_the_constraint(tmp_path: Path) -> None:
    lock_file = tmp_path / "lock.json"
    fake = standard_upstream()
    with fake:
        assert run_lock(fake, lock_file, "--containerd=~=1.7").exit_code == 0
        fake.repos = {
            **fake.repos,
            "containerd/containerd": [containerd("1.7.26"), *fake.repos["containerd/containerd"]],
        }
        result = run_lock(fake, lock_file)
    assert result.exit_code == 0, result.output
    assert "containerd   1.7.25 -> 1.7.26" in result.output
    assert "cni-plugins  1.6.0 (unchanged)" in result.output
    assert lockfile.load(lock_file).component("containerd").constraint == "~=1.7"


def test_relock_without_arch_keeps_the_locked_architectures(tmp_path: Path) -> None:
    lock_file = tmp_path / "lock.json"
    three = ("amd64", "arm64", "ppc64el")
    upstream_names = [UPSTREAM_ARCH[arch] for arch in three]  # ppc64le in file names
    fake = standard_upstream()
    fake.repos = {
        **fake.repos,
        "containerd/containerd": [containerd("2.0.2", arches=upstream_names)],
        "containernetworking/plugins": [cni_plugins("1.6.0", arches=upstream_names)],
    }
    fake.go = [go("1.23.4", arches=upstream_names)]
    with fake:
        assert run_lock(fake, lock_file, arches=three).exit_code == 0
        first = lock_file.read_bytes()
        assert set(lockfile.load(lock_file).component("go").artifacts) == set(three)
        result = run_lock(fake, lock_file)  # no --arch: the locked architectures, not the defaults
        assert result.exit_code == 0, result.output
        assert lock_file.read_bytes() == first
        assert "is up to date" in result.output
        assert run_lock(fake, lock_file, arches=["amd64"]).exit_code == 0  # an explicit --arch list replaces them
    for component in ("containerd", "cni-plugins", "go"):
        assert set(lockfile.load(lock_file).component(component).artifacts) == {"amd64"}


def test_locked_artifacts_download_through_upstream_and_mirror(upstream: FakeUpstream, tmp_path: Path) -> None:
    lock_file = tmp_path / "lock.json"
    assert run_lock(upstream, lock_file).exit_code == 0
    for component in lockfile.load(lock_file).components.values():
        for artifact in component.artifacts.values():
            for url in (artifact.url_via(None), artifact.url_via(upstream.mirror_url + "/")):
                response = requests.get(url, timeout=10)
                assert response.status_code == 200, url
                assert hashlib.sha256(response.content).hexdigest() == artifact.sha256
    go_amd64 = lockfile.load(lock_file).component("go").artifact("amd64")
    assert go_amd64.url_via(upstream.mirror_url) == f"{upstream.mirror_url}/go.dev/dl/go1.23.4.linux-amd64.tar.gz"
    assert upstream.counts["/go.dev/dl/go1.23.4.linux-amd64.tar.gz"] == 1
    assert (
        upstream.counts[
            "/github.com/containerd/containerd/releases/download/v2.0.2/containerd-2.0.2-linux-amd64.tar.gz"
        ]
        == 1
    )


def test_bad_spec_is_a_usage_error(upstream: FakeUpstream, tmp_path: Path) -> None:
    result = run_lock(upstream, tmp_path / "lock.json", "--containerd=newest")
    assert result.exit_code == 2
    assert "'newest' is not a version spec" in result.output
    assert upstream.log == []


def test_invalid_existing_lock_file_is_not_overwritten(upstream: FakeUpstream, tmp_path: Path) -> None:
    lock_file = tmp_path / "lock.json"
    lock_file.write_text(json.dumps({"format": True, "components": {}}))
    result = run_lock(upstream, lock_file)
    assert result.exit_code == 1
    assert (
        f"{lock_file}: format: this version reads format 1, not True (fix or remove it, then re-run)" in result.output
    )
    assert json.loads(lock_file.read_text()) == {"format": True, "components": {}}


def test_relock_adds_a_component_the_lock_lacks(upstream: FakeUpstream, tmp_path: Path) -> None:
    lock_file = tmp_path / "lock.json"
    assert run_lock(upstream, lock_file, "--containerd=~=1.7").exit_code == 0
    data = json.loads(lock_file.read_text())
    del data["components"]["go"]
    lock_file.write_text(json.dumps(data))
    result = run_lock(upstream, lock_file)
    assert result.exit_code == 0, result.output
    assert "go           1.23.4 (new)" in result.output
    assert "containerd   1.7.25 (unchanged)" in result.output
    assert versions(lock_file) == {"containerd": "1.7.25", "cni-plugins": "1.6.0", "go": "1.23.4", "cnitool": "1.2.3"}


@pytest.mark.parametrize("option", ["--github-api", "--go-dl"])
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:secret@127.0.0.1:1", "'https://***@127.0.0.1:1': holds credentials"),
        ("https://127.0.0.1:1/?page=2", "'https://127.0.0.1:1/?page=2': has a query string"),
        ("ftp://127.0.0.1/dl/", "'ftp://127.0.0.1/dl/': not an http:// or https:// URL"),
    ],
)
def test_bad_upstream_urls_are_usage_errors_that_mask_credentials(
    upstream: FakeUpstream, tmp_path: Path, option: str, url: str, shown: str
) -> None:
    result = run_lock(upstream, tmp_path / "lock.json", f"{option}={url}")
    assert result.exit_code == 2
    assert f"Invalid value for '{option}': {shown}" in result.output
    assert "secret" not in result.output
    assert upstream.log == []


def test_download_urls_with_credentials_are_refused_unprinted(tmp_path: Path) -> None:
    fake = standard_upstream()
    fake.download_userinfo = "user:secret"
    with fake:
        result = run_lock(fake, tmp_path / "lock.json")
    assert result.exit_code == 1
    assert "upstream's answers make an invalid lock, not written:" in result.output
    host = fake.base_url.removeprefix("http://")
    assert f".artifacts.amd64.url: 'http://***@{host}/containernetworking/plugins/releases/download/" in result.output
    assert "is not an http(s) URL: holds credentials" in result.output
    assert "secret" not in result.output
    assert not (tmp_path / "lock.json").exists()


def closed_port() -> int:
    """A local port nothing listens on: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_api_says_why(upstream: FakeUpstream, tmp_path: Path) -> None:
    api = f"http://127.0.0.1:{closed_port()}"
    result = CliRunner().invoke(
        main, ["lock", f"--lock-file={tmp_path / 'lock.json'}", f"--github-api={api}", f"--go-dl={upstream.go_dl_url}"]
    )
    assert result.exit_code == 1
    assert f"Resolving with {api}\n" in result.output
    assert f"GitHub API: cannot fetch {api}/repos/containerd/containerd/releases?per_page=100: connection refused" in (
        result.output
    )
    assert "ConnectionError" not in result.output


def test_unreachable_go_listing_says_why(upstream: FakeUpstream, tmp_path: Path) -> None:
    dl = f"http://127.0.0.1:{closed_port()}/dl/"
    result = run_lock(upstream, tmp_path / "lock.json", f"--go-dl={dl}")
    assert result.exit_code == 1
    assert f"cannot fetch go.dev's listing {dl}?mode=json&include=all: connection refused" in result.output


@contextmanager
def raw_server(answer: Callable[[socket.socket], object]) -> Iterator[str]:
    """``user:secret@127.0.0.1:PORT`` of a server that takes one connection, reads the request, calls ``answer``."""
    with socket.create_server(("127.0.0.1", 0)) as server:

        def serve() -> None:
            connection, _ = server.accept()
            with connection:
                connection.recv(65536)
                answer(connection)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield f"user:secret@127.0.0.1:{server.getsockname()[1]}"
        thread.join(timeout=10)


def _reset(connection: socket.socket) -> None:
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST


ANSWERS: list[tuple[str, Callable[[socket.socket], object], str]] = [
    ("closed", lambda _: None, "the server closed the connection without answering"),
    ("reset", _reset, "connection reset"),
    (
        "cut short",
        lambda connection: connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"),
        "connection broken mid-answer (incomplete read)",
    ),
    ("silent", lambda _: time.sleep(1), "timed out waiting for the answer"),
]


@pytest.mark.parametrize(("answer", "reason"), [case[1:] for case in ANSWERS], ids=[case[0] for case in ANSWERS])
def test_describe_says_why_a_request_failed(answer: Callable[[socket.socket], object], reason: str) -> None:
    with raw_server(answer) as address, pytest.raises(requests.RequestException) as raised:
        requests.get(f"http://{address}/x", timeout=0.5).content  # noqa: B018 (reads the body)
    assert describe(raised.value) == reason


def _ssl_error(kind: type[ssl.SSLError], **attributes: str) -> requests.RequestException:
    """A TLS failure shaped as requests raises one (made by hand: the test run may have had gevent patch ssl)."""
    error = kind(1, "[SSL] handshake failed")
    for name, value in attributes.items():
        setattr(error, name, value)
    url = "https://user:secret@127.0.0.1/x"
    return requests.exceptions.SSLError(MaxRetryError(None, url, urllib3.exceptions.SSLError(error)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            _ssl_error(ssl.SSLCertVerificationError, reason="CERTIFICATE_VERIFY_FAILED", verify_message="self-signed"),
            "TLS failure: certificate not trusted (self-signed)",
        ),
        (_ssl_error(ssl.SSLError, reason="WRONG_VERSION_NUMBER"), "TLS failure (wrong version number)"),
        (requests.exceptions.SSLError("https://user:secret@127.0.0.1/x"), "TLS failure"),
        (requests.exceptions.ConnectTimeout("https://user:secret@127.0.0.1/x"), "timed out connecting"),
        (requests.exceptions.RetryError("https://user:secret@127.0.0.1/x"), "request failed (RetryError)"),
    ],
    ids=["certificate", "protocol", "bare TLS", "connect timeout", "other"],
)
def test_describe_tls_and_other_failures(error: requests.RequestException, reason: str) -> None:
    assert describe(error) == reason


def test_describe_without_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    def reason(url: str) -> str:
        with pytest.raises(requests.RequestException) as raised:
            requests.get(url, timeout=5)
        return describe(raised.value)

    assert reason(f"http://user:secret@127.0.0.1:{closed_port()}/x") == "connection refused"
    assert reason("http://user:secret@[::1/x") == "invalid URL"
    assert reason("ftp://user:secret@127.0.0.1/x") == "invalid URL (not http:// or https://)"
    assert reason("ghe.example/api/v3") == "invalid URL (no http:// or https://)"
    proxy = f"http://127.0.0.1:{closed_port()}"  # nothing listens there
    for name in DEAD_PROXY:
        monkeypatch.setenv(name, proxy)
    assert reason("http://user:secret@ghe.example/api/v3") == "connection refused (through a proxy)"
    for name in DEAD_PROXY:
        monkeypatch.delenv(name)

    def unresolvable(*_args: object, **_kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
    assert reason("https://user:secret@ghe.example/api/v3") == "host name not resolved (Name or service not known)"


def test_cni_plugins_checksums_come_from_the_sha256_file(upstream: FakeUpstream, tmp_path: Path) -> None:
    lock_file = tmp_path / "lock.json"
    assert run_lock(upstream, lock_file).exit_code == 0
    download = "/containernetworking/plugins/releases/download/v1.6.0/cni-plugins-linux-amd64-v1.6.0.tgz"
    assert upstream.counts[download + ".sha256"] == 1
    assert upstream.counts[download + ".sha512"] == 0
    assert lockfile.load(lock_file).component("cni-plugins").artifact("amd64").sha256 == (
        hashlib.sha256(b"plugins 1.6.0 amd64").hexdigest()
    )


def test_a_lock_that_would_not_load_is_never_written(tmp_path: Path) -> None:
    fake = standard_upstream()
    fake.go = [FakeGoRelease("go1.23.4", tuple(FakeGoFile("../go.tar.gz", "linux", arch, b"go") for arch in ARCHES))]
    with fake:
        result = run_lock(fake, tmp_path / "lock.json")
    assert result.exit_code == 1
    assert "components.go.artifacts.amd64.filename: '../go.tar.gz' should be 'go1.23.4.linux-amd64.tar.gz'" in (
        result.output
    )
    assert not (tmp_path / "lock.json").exists()


def test_fake_upstream_keeps_no_file_contents_and_sees_changed_files(tmp_path: Path) -> None:
    data = b"an archive" * 1000
    references = sys.getrefcount(data)
    assert FakeFile("archive.tar.gz", data).sha256() == hashlib.sha256(data).hexdigest()
    assert sys.getrefcount(data) == references, "the bytes are kept alive after hashing"
    path = tmp_path / "archive.tar.gz"
    path.write_bytes(b"first")
    assert FakeFile(path.name, path).sha256() == hashlib.sha256(b"first").hexdigest()
    path.write_bytes(b"second, longer")
    assert FakeFile(path.name, path).sha256() == hashlib.sha256(b"second, longer").hexdigest()
