"""`pyinfra-iluvatar lock --rustup`: rustup-init locked from a dist server shaped like static.rust-lang.org.

The dist server is a directory served on loopback: ``rustup/release-stable.toml`` (the shape rustup's own answers
with: ``schema-version`` and ``version``) and, per target triple, ``rustup/archive/<version>/<triple>/rustup-init``
with the ``.sha256`` beside it (``<hash>  *rustup-init``, as rustup publishes it). GitHub and go.dev are the other
lock tests' fake upstream.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pyinfra_iluvatar.cli import main
from pyinfra_iluvatar.releases import lockfile
from pyinfra_iluvatar.releases.components import RUST_TRIPLES
from pyinfra_iluvatar.tests.support.docker_repo import serve
from pyinfra_iluvatar.tests.support.fake_upstream import FakeUpstream
from pyinfra_iluvatar.tests.support.upstream_fixtures import standard_upstream

VERSION = "1.28.2"


@pytest.fixture(autouse=True)
def _loopback_bypasses_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with standard_upstream() as server:
        yield server


def make_dist(
    root: Path, versions: tuple[str, ...] = ("1.27.1", VERSION), arches: tuple[str, ...] = ("amd64", "arm64")
) -> Path:
    """A rustup dist tree: ``release-stable.toml`` naming the last version, and rustup-init per version and arch."""
    (root / "rustup").mkdir(parents=True)
    (root / "rustup" / "release-stable.toml").write_text(f"schema-version = '1'\nversion = '{versions[-1]}'\n")
    for version in versions:
        for arch in arches:
            folder = root / "rustup" / "archive" / version / RUST_TRIPLES[arch]
            folder.mkdir(parents=True)
            body = f"#!/bin/sh\necho 'rustup-init {version} {arch} (test stand-in)'\n".encode()
            (folder / "rustup-init").write_bytes(body)
            (folder / "rustup-init.sha256").write_text(f"{hashlib.sha256(body).hexdigest()}  *rustup-init\n")
    return root


def run_lock(upstream: FakeUpstream, dist: str, lock_file: Path, *args: str) -> Result:
    command = [
        "lock",
        f"--lock-file={lock_file}",
        f"--github-api={upstream.api_url}",
        f"--go-dl={upstream.go_dl_url}",
        f"--rustup-dist={dist}",
        "--arch=amd64",
        "--arch=arm64",
    ]
    return CliRunner().invoke(main, [*command, *args])


def test_rustup_is_locked_only_when_asked_then_kept(upstream: FakeUpstream, tmp_path: Path) -> None:
    root = make_dist(tmp_path / "dist")
    lock_file = tmp_path / "iluvatar.lock.json"
    with serve(root) as server:
        plain = run_lock(upstream, server.url, lock_file)
        assert plain.exit_code == 0, plain.output
        assert "rustup" not in lockfile.load(lock_file).components
        asked = run_lock(upstream, server.url, lock_file, "--rustup=latest")
        assert asked.exit_code == 0, asked.output
        assert f"rustup       {VERSION} (new)" in asked.output
        locked = lockfile.load(lock_file).component("rustup")
        assert (locked.version, locked.tag, locked.constraint) == (VERSION, VERSION, "latest")
        artifact = locked.artifact("arm64")
        path = f"/rustup/archive/{VERSION}/aarch64-unknown-linux-gnu/rustup-init"
        body = (root / path.lstrip("/")).read_bytes()
        assert (artifact.filename, artifact.url, artifact.mirror_path) == (
            "rustup-init",
            server.url + path,
            "static.rust-lang.org" + path,
        )
        assert artifact.sha256 == hashlib.sha256(body).hexdigest()
        again = run_lock(upstream, server.url, lock_file)  # not asked again: kept, and re-resolved
        assert again.exit_code == 0, again.output
        assert lockfile.load(lock_file).component("rustup").version == VERSION


def test_a_pinned_rustup(upstream: FakeUpstream, tmp_path: Path) -> None:
    root = make_dist(tmp_path / "dist")
    lock_file = tmp_path / "iluvatar.lock.json"
    with serve(root) as server:
        result = run_lock(upstream, server.url, lock_file, "--rustup=1.27.1")
    assert result.exit_code == 0, result.output
    assert lockfile.load(lock_file).component("rustup").version == "1.27.1"


@pytest.mark.parametrize(
    ("spec", "arches", "error"),
    [
        (">=1.27", ("amd64", "arm64"), "rustup >=1.27: rustup's dist server lists no versions: give a version"),
        ("1.20.0", ("amd64", "arm64"), "rustup 1.20.0: http://127.0.0.1:"),
        ("latest", ("amd64",), f"rustup {VERSION}: http://127.0.0.1:"),
    ],
)
def test_what_the_dist_server_lacks_is_a_clear_error(
    upstream: FakeUpstream, tmp_path: Path, spec: str, arches: tuple[str, ...], error: str
) -> None:
    root = make_dist(tmp_path / "dist", arches=arches)
    lock_file = tmp_path / "iluvatar.lock.json"
    with serve(root) as server:
        result = run_lock(upstream, server.url, lock_file, f"--rustup={spec}")
    assert result.exit_code != 0
    assert error in result.output, result.output
    assert "Traceback" not in result.output and not lock_file.exists()


def test_an_unreachable_dist_server_says_why(upstream: FakeUpstream, tmp_path: Path) -> None:
    result = run_lock(upstream, "http://127.0.0.1:9", tmp_path / "lock.json", "--rustup=latest")
    assert result.exit_code != 0
    assert "cannot fetch http://127.0.0.1:9/rustup/release-stable.toml: connection refused" in result.output


def test_a_lock_file_with_a_rustup_artifact_not_rustups_is_refused(upstream: FakeUpstream, tmp_path: Path) -> None:
    root = make_dist(tmp_path / "dist")
    lock_file = tmp_path / "iluvatar.lock.json"
    with serve(root) as server:
        assert run_lock(upstream, server.url, lock_file, "--rustup=latest").exit_code == 0
    data = json.loads(lock_file.read_text())
    amd64 = data["components"]["rustup"]["artifacts"]["amd64"]
    amd64["mirror_path"] = amd64["mirror_path"].replace("x86_64", "aarch64")  # the arm64 file for amd64
    lock_file.write_text(json.dumps(data))
    with pytest.raises(lockfile.LockError, match=r"components.rustup.artifacts.amd64.mirror_path: .* should be"):
        lockfile.load(lock_file)
