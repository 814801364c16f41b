"""The test artifacts repacked from Debian's real binaries: real programs, real checksums, lockable and downloadable
through the fake upstream exactly as upstream's files would be."""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from pyinfra_iluvatar.cli import main
from pyinfra_iluvatar.releases import lockfile
from pyinfra_iluvatar.releases.resolve import checksum_for
from pyinfra_iluvatar.tests.support.debian_artifacts import DebianArtifacts, build_debian_artifacts, upstream_version
from pyinfra_iluvatar.tests.support.fake_upstream import FakeUpstream

ELF_MACHINE = {"amd64": 0x3E, "arm64": 0xB7}


@pytest.fixture(scope="module")
def artifacts() -> DebianArtifacts:
    return build_debian_artifacts()


def elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF"
    return int.from_bytes(data[18:20], "little")


def unpack(archive: Path, into: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        tar.extractall(into, filter="data")
    return names


@pytest.mark.parametrize("debian_version", ["1.6.20~ds1-1+deb12u3", "1:1.6.20~ds1-1", "1.1.1+ds1-3+b5"])
def test_upstream_version(debian_version: str) -> None:
    assert upstream_version(debian_version) in ("1.6.20", "1.1.1")


def test_what_is_built(artifacts: DebianArtifacts) -> None:
    built = {(release.component, release.version, release.suite) for release in artifacts.releases}
    assert built == {
        ("containerd", "1.6.20", "bookworm"),
        ("containerd", "1.7.24", "trixie"),
        ("cni-plugins", "1.1.1", "bookworm"),
        ("runc", "1.1.5", "bookworm"),
        ("go", "1.19.8", "bookworm"),
        ("cnitool", "1.1.2", "bookworm"),
    }


def test_second_build_uses_the_cache(artifacts: DebianArtifacts) -> None:
    manifest = artifacts.root / "manifest.json"
    before = manifest.stat().st_mtime_ns
    assert build_debian_artifacts(artifacts.root) == artifacts
    assert manifest.stat().st_mtime_ns == before


@pytest.mark.parametrize("version", ["1.6.20", "1.7.24"])
def test_containerd_archives_hold_real_binaries_under_bin(
    artifacts: DebianArtifacts, version: str, tmp_path: Path
) -> None:
    release = artifacts.release("containerd", version)
    for arch in ("amd64", "arm64"):
        names = unpack(release.path(f"containerd-{version}-linux-{arch}.tar.gz"), tmp_path / arch)
        assert {"bin/containerd", "bin/ctr", "bin/containerd-shim-runc-v2"} <= set(names)
        assert all(name == "bin" or name.startswith("bin/") for name in names)
        assert elf_machine((tmp_path / arch / "bin/containerd").read_bytes()[:20]) == ELF_MACHINE[arch]
    reported = subprocess.run([tmp_path / "amd64/bin/containerd", "--version"], capture_output=True, text=True)
    assert reported.returncode == 0
    assert f" {version}" in reported.stdout


def test_checksum_files_are_real(artifacts: DebianArtifacts) -> None:
    checked = 0
    for release in artifacts.releases:
        for name in release.files:
            if name.endswith((".sha256sum", ".sha256")):
                for listed in release.path(name).read_text().splitlines():
                    filename = listed.split()[1]
                    real = hashlib.sha256(release.path(filename).read_bytes()).hexdigest()
                    assert checksum_for(release.path(name).read_text(), filename) == real
                    checked += 1
            elif name.endswith(".sha512"):
                archive = release.path(name.removesuffix(".sha512"))
                assert release.path(name).read_text().split()[0] == hashlib.sha512(archive.read_bytes()).hexdigest()
                checked += 1
    assert checked == 12  # containerd 2 x 2 arches, CNI plugins 2 x 2 files, runc 2, cnitool 2


def test_cni_plugins_and_cnitool_at_the_archive_root(artifacts: DebianArtifacts, tmp_path: Path) -> None:
    plugins = unpack(artifacts.release("cni-plugins", "1.1.1").path("cni-plugins-linux-amd64-v1.1.1.tgz"), tmp_path)
    assert {"./bridge", "./host-local", "./loopback"} <= set(plugins)
    cnitool = unpack(artifacts.release("cnitool", "1.1.2").path("cnitool-linux-arm64-v1.1.2.tgz"), tmp_path / "arm")
    assert cnitool == [".", "./cnitool"]
    assert elf_machine((tmp_path / "arm/cnitool").read_bytes()[:20]) == ELF_MACHINE["arm64"]
    unpack(artifacts.release("cnitool", "1.1.2").path("cnitool-linux-amd64-v1.1.2.tgz"), tmp_path / "amd")
    usage = subprocess.run([tmp_path / "amd/cnitool"], capture_output=True, text=True)
    assert "Add, check, or remove network interfaces from a network namespace" in usage.stdout + usage.stderr


def test_go_archive_is_a_working_toolchain(artifacts: DebianArtifacts, tmp_path: Path) -> None:
    names = unpack(artifacts.release("go", "1.19.8").path("go1.19.8.linux-amd64.tar.gz"), tmp_path)
    assert all(name == "go" or name.startswith("go/") for name in names)
    (tmp_path / "hello.go").write_text('package main\n\nfunc main() { println("hello from go") }\n')
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GOCACHE": str(tmp_path / "cache"), "GO111MODULE": "off"}
    go = tmp_path / "go/bin/go"
    assert "go version go1.19.8 linux/amd64" in subprocess.run([go, "version"], capture_output=True, text=True).stdout
    built = subprocess.run([go, "run", "hello.go"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert built.returncode == 0
    assert built.stderr == "hello from go\n"  # println writes to stderr


def test_locked_and_downloaded_through_the_fake_upstream(artifacts: DebianArtifacts, tmp_path: Path) -> None:
    lock_file = tmp_path / "iluvatar.lock.json"
    with FakeUpstream(artifacts.fake_repos(), artifacts.fake_go()) as upstream:
        command = [
            "lock",
            f"--lock-file={lock_file}",
            f"--github-api={upstream.api_url}",
            f"--go-dl={upstream.go_dl_url}",
        ]
        result = CliRunner().invoke(main, command, env={"GITHUB_TOKEN": None})
        assert result.exit_code == 0, result.output
        lock = lockfile.load(lock_file)
        assert {name: component.version for name, component in lock.components.items()} == {
            "containerd": "1.7.24",
            "cni-plugins": "1.1.1",
            "go": "1.19.8",
            "cnitool": "1.1.2",
        }
        for component in lock.components.values():
            for artifact in component.artifacts.values():
                for url in (artifact.url_via(None), artifact.url_via(upstream.mirror_url)):
                    response = requests.get(url, timeout=60)
                    assert response.status_code == 200, url
                    assert hashlib.sha256(response.content).hexdigest() == artifact.sha256
        containerd = lock.component("containerd").artifact("amd64")
        assert (
            containerd.sha256
            == hashlib.sha256(
                artifacts.release("containerd", "1.7.24").path(containerd.filename).read_bytes()
            ).hexdigest()
        )
        assert upstream.counts[f"/{containerd.mirror_path}"] == 1
        downgrade = CliRunner().invoke(main, [*command, "--containerd=1.6.20"], env={"GITHUB_TOKEN": None})
        assert downgrade.exit_code == 0, downgrade.output
        assert "containerd   1.7.24 -> 1.6.20" in downgrade.output
