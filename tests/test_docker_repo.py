"""The Docker-shaped apt repository built from Debian's packages: signed, indexed, real binaries, usable by apt.

Built once into ``.build/test-docker-repo`` (about half a minute); with the cache these tests take a few seconds.
No sandbox: apt runs here with a private state against the repository served on loopback.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pyinfra_iluvatar.tests.support.docker_repo import DockerRepo, build_docker_repo, serve

OLD_ENGINE = "5:20.10.24-1~debian.12~bookworm"
NEW_ENGINE = "5:26.1.5-1~debian.12~bookworm"
EXPECTED = {
    ("docker-ce", OLD_ENGINE),
    ("docker-ce", NEW_ENGINE),
    ("docker-ce-cli", OLD_ENGINE),
    ("docker-ce-cli", NEW_ENGINE),
    ("containerd.io", "1.6.20-1"),
    ("containerd.io", "1.7.24-1"),
    ("docker-buildx-plugin", "0.13.1-1~debian.12~bookworm"),
    ("docker-compose-plugin", "2.26.1-1~debian.12~bookworm"),
}


@pytest.fixture(scope="module")
def repo() -> DockerRepo:
    return build_docker_repo()


def deb822(text: str) -> list[dict[str, str]]:
    """Stanzas of a Packages/Release/control text (continuation lines joined with newlines)."""
    stanzas: list[dict[str, str]] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        stanza: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line[:1] in (" ", "\t"):
                stanza[key] += "\n" + line[1:]
            else:
                key, _, value = line.partition(":")
                stanza[key] = value.strip()
        stanzas.append(stanza)
    return stanzas


def run(
    *command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def test_second_build_uses_the_cache(repo: DockerRepo) -> None:
    manifest = repo.root.parent / "manifest.json"
    before = manifest.stat().st_mtime_ns
    assert build_docker_repo(repo.root.parents[1]) == repo
    assert manifest.stat().st_mtime_ns == before


def test_layout_and_key_are_dockers(repo: DockerRepo) -> None:
    assert re.fullmatch(r"[0-9A-F]{40}", repo.fingerprint)
    assert (repo.codename, repo.component, repo.architectures) == ("bookworm", "stable", ("amd64",))
    assert repo.key_file == repo.root / "linux/debian/gpg"
    assert repo.key_file.read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    for path in (repo.in_release_path, repo.release_path, repo.release_gpg_path, repo.packages_path()):
        assert (repo.root / path).is_file(), path
    assert repo.in_release_path == "linux/debian/dists/bookworm/InRelease"
    assert repo.packages_path() == "linux/debian/dists/bookworm/stable/binary-amd64/Packages"
    assert {(package.name, package.version) for package in repo.packages} == EXPECTED
    assert repo.versions["docker-ce"] == [OLD_ENGINE, NEW_ENGINE]
    assert repo.versions["containerd.io"] == ["1.6.20-1", "1.7.24-1"]
    for package in repo.packages:  # Docker's pool: dists/<codename>/pool/<component>/<arch>/
        assert package.filename.startswith("dists/bookworm/pool/stable/amd64/"), package.filename
        assert (repo.distro_dir / package.filename).is_file()


def test_release_is_signed_with_the_key(repo: DockerRepo, tmp_path: Path) -> None:
    dist = repo.root / "linux/debian/dists/bookworm"
    inline = run("gpgv", "--keyring", repo.keyring, dist / "InRelease")
    assert inline.returncode == 0, inline.stderr
    assert f"using RSA key {repo.fingerprint}" in inline.stderr
    assert "Good signature" in inline.stderr
    detached = run("gpgv", "--keyring", repo.keyring, dist / "Release.gpg", dist / "Release")
    assert detached.returncode == 0, detached.stderr
    # the served, armored key is the same key: dearmored, it verifies too
    env = {**os.environ, "GNUPGHOME": str(tmp_path)}
    tmp_path.chmod(0o700)
    served = tmp_path / "served.gpg"
    assert run("gpg", "--batch", "--dearmor", "-o", served, repo.key_file, env=env).returncode == 0
    assert run("gpgv", "--keyring", served, dist / "InRelease").returncode == 0
    # a changed Release no longer verifies
    tampered = tmp_path / "Release"
    tampered.write_text((dist / "Release").read_text().replace("Label: Docker CE", "Label: Docker EE"))
    assert run("gpgv", "--keyring", repo.keyring, dist / "Release.gpg", tampered).returncode != 0
    # what InRelease signs is Release
    assert (dist / "Release").read_text() in (dist / "InRelease").read_text()


def test_packages_lists_every_deb_with_its_checksums(repo: DockerRepo) -> None:
    dist = repo.root / "linux/debian/dists/bookworm"
    packages_bytes = (repo.root / repo.packages_path()).read_bytes()
    assert gzip.decompress((dist / "stable/binary-amd64/Packages.gz").read_bytes()) == packages_bytes
    stanzas = deb822(packages_bytes.decode())
    assert {(stanza["Package"], stanza["Version"]) for stanza in stanzas} == EXPECTED
    for stanza in stanzas:
        deb = (repo.distro_dir / stanza["Filename"]).read_bytes()
        assert int(stanza["Size"]) == len(deb)
        assert stanza["SHA256"] == hashlib.sha256(deb).hexdigest()
        assert stanza["MD5sum"] == hashlib.md5(deb).hexdigest()
        assert stanza["Architecture"] == "amd64"
        listed = next(p for p in repo.packages if (p.name, p.version) == (stanza["Package"], stanza["Version"]))
        assert listed.sha256 == stanza["SHA256"]
    release = deb822((dist / "Release").read_text())[0]
    assert (release["Origin"], release["Label"], release["Suite"], release["Components"]) == (
        "Docker",
        "Docker CE",
        "bookworm",
        "stable",
    )
    sha256 = {line.split()[2]: line.split()[0] for line in release["SHA256"].strip().splitlines()}
    assert sha256["stable/binary-amd64/Packages"] == hashlib.sha256(packages_bytes).hexdigest()


def test_relations_are_dockers(repo: DockerRepo) -> None:
    stanzas = {
        (stanza["Package"], stanza["Version"]): stanza
        for stanza in deb822((repo.root / repo.packages_path()).read_text())
    }
    engine = stanzas[("docker-ce", NEW_ENGINE)]
    assert engine["Depends"].startswith("containerd.io (>= 1.6.24), docker-ce-cli, iptables,")
    assert "docker.io" in engine["Conflicts"].split(", ")
    assert "docker.io" in stanzas[("docker-ce-cli", NEW_ENGINE)]["Conflicts"].split(", ")
    containerd = stanzas[("containerd.io", "1.6.20-1")]
    assert containerd["Provides"] == containerd["Conflicts"] == containerd["Replaces"] == "containerd, runc"
    assert (
        "Test package: Debian's docker-buildx 0.13.1+ds1-3 (trixie)"
        in (stanzas[("docker-buildx-plugin", "0.13.1-1~debian.12~bookworm")]["Description"])
    )


def test_debs_install_dockers_paths(repo: DockerRepo) -> None:
    def contents(name: str, version: str) -> set[str]:
        listing = run("dpkg-deb", "-c", repo.deb(name, version))
        assert listing.returncode == 0, listing.stderr
        return {line.split()[5].removeprefix(".") for line in listing.stdout.splitlines()}

    for version in (OLD_ENGINE, NEW_ENGINE):
        engine = contents("docker-ce", version)
        assert {
            "/usr/bin/dockerd",
            "/usr/bin/docker-proxy",
            "/usr/bin/docker-init",
            "/lib/systemd/system/docker.service",
            "/lib/systemd/system/docker.socket",
        } <= engine
        assert "/usr/bin/docker" not in engine
        assert "/usr/bin/docker" in contents("docker-ce-cli", version)
    for version in ("1.6.20-1", "1.7.24-1"):
        assert {
            "/usr/bin/containerd",
            "/usr/bin/ctr",
            "/usr/bin/runc",
            "/usr/bin/containerd-shim-runc-v2",
            "/lib/systemd/system/containerd.service",
            "/etc/containerd/config.toml",
        } <= contents("containerd.io", version)
    assert "/usr/libexec/docker/cli-plugins/docker-buildx" in contents(
        "docker-buildx-plugin", "0.13.1-1~debian.12~bookworm"
    )


@pytest.mark.parametrize(("version", "reported"), [(OLD_ENGINE, "20.10.24"), (NEW_ENGINE, "26.1.5")])
def test_dockerd_is_a_real_binary_of_its_version(repo: DockerRepo, version: str, reported: str, tmp_path: Path) -> None:
    tar = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", repo.deb("docker-ce", version)], capture_output=True, check=True
    ).stdout
    dockerd = tmp_path / "dockerd"
    extracted = subprocess.run(["tar", "-xO", "./usr/bin/dockerd"], input=tar, capture_output=True, check=True)
    dockerd.write_bytes(extracted.stdout)
    dockerd.chmod(0o755)
    assert f"Docker version {reported}+dfsg1" in run(dockerd, "--version").stdout


def test_served_with_a_prefix_without_listings(repo: DockerRepo) -> None:
    with serve(repo.root, prefix="download.docker.com") as server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/download\.docker\.com", server.url)
        uri = repo.uri(server.url)
        with urllib.request.urlopen(f"{uri}/gpg", timeout=10) as response:
            assert response.read() == repo.key_file.read_bytes()
        for missing in (f"{server.url.rsplit('/', 1)[0]}/linux/debian/gpg", f"{uri}/dists/"):
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(missing, timeout=10)
            assert error.value.code == 404
        assert server.requests[0] == "/download.docker.com/linux/debian/gpg"


def test_sources_text(repo: DockerRepo) -> None:
    assert repo.sources("http://198.18.37.1:8737") == (
        "Types: deb\nURIs: http://198.18.37.1:8737/linux/debian\nSuites: bookworm\nComponents: stable\n"
        "Architectures: amd64\nSigned-By: /etc/apt/keyrings/docker.asc\n"
    )
    assert repo.list_line("http://198.18.37.1:8737") == (
        "deb [arch=amd64 signed-by=/usr/share/keyrings/docker-archive-keyring.gpg] "
        "http://198.18.37.1:8737/linux/debian bookworm stable\n"
    )


def private_apt(state: Path, sources: str) -> list[str]:
    """apt options for a private state in ``state`` whose only source is ``sources`` (deb822)."""
    for sub in ("lists/partial", "archives/partial", "sources.list.d"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "status").touch()
    (state / "sources.list.d" / "docker.sources").write_text(sources)
    (state / "sources.list").write_text("")
    return [
        f"-oDir::Etc::sourcelist={state / 'sources.list'}",
        f"-oDir::Etc::sourceparts={state / 'sources.list.d'}",
        f"-oDir::State={state}",
        f"-oDir::State::lists={state / 'lists'}",
        f"-oDir::State::status={state / 'status'}",
        f"-oDir::Cache={state}",
        f"-oDir::Cache::archives={state / 'archives'}",
        "-oAPT::Architecture=amd64",
        "-oAPT::Sandbox::User=root",
        "-oAcquire::Languages=none",
        "-oAcquire::http::Proxy=DIRECT",
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="apt-get update with a private state runs as root here")
def test_apt_accepts_it_and_refuses_another_key(repo: DockerRepo, tmp_path: Path) -> None:
    with serve(repo.root) as server:
        options = private_apt(tmp_path / "apt", repo.sources(server.url, signed_by=str(repo.key_file)))
        update = run("apt-get", *options, "update")
        assert update.returncode == 0, update.stdout + update.stderr
        assert "W:" not in update.stdout + update.stderr
        madison = run("apt-cache", *options, "madison", "docker-ce")
        assert [line.split("|")[1].strip() for line in madison.stdout.splitlines()] == [NEW_ENGINE, OLD_ENGINE]
        download = run("apt-get", *options, "download", f"docker-ce={OLD_ENGINE}", cwd=tmp_path)
        assert download.returncode == 0, download.stderr
        (deb,) = tmp_path.glob("docker-ce_*.deb")
        assert deb.read_bytes() == repo.deb("docker-ce", OLD_ENGINE).read_bytes()

        wrong = "/usr/share/keyrings/debian-archive-keyring.gpg"
        options = private_apt(tmp_path / "wrong", repo.sources(server.url, signed_by=wrong))
        refused = run("apt-get", *options, "update")
        assert refused.returncode == 100
        assert f"NO_PUBKEY {repo.fingerprint[-16:]}" in refused.stderr
        assert f"The repository '{repo.uri(server.url)} bookworm InRelease' is not signed." in refused.stderr
