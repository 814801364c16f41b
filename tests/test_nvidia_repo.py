"""The NVIDIA-shaped flat apt repository of test stand-ins: signed, indexed, usable by apt, NVIDIA's layout.

Built once into ``.build/test-nvidia-repo`` (a few seconds). No sandbox: apt runs here with a private state
against the repository served on loopback.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from pyinfra_iluvatar.operations.openpgp import key_fingerprint
from pyinfra_iluvatar.tests.support.nvidia_repo import NvidiaRepo, build_nvidia_repo, recipe_hash, serve

OLD, NEW = "1.17.8-1", "1.18.0-1"
NAMES = (
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
)
EXPECTED = {(name, version) for name in NAMES for version in (OLD, NEW)}


@pytest.fixture(scope="module")
def repo() -> NvidiaRepo:
    return build_nvidia_repo()


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


def test_built_once_then_cached(repo: NvidiaRepo) -> None:
    manifest = repo.root.parent / "manifest.json"
    before = manifest.stat().st_mtime_ns
    assert build_nvidia_repo(repo.root.parents[1]) == repo
    assert manifest.stat().st_mtime_ns == before
    assert repo.root.parent.name == recipe_hash()  # .build/test-nvidia-repo/<recipe hash>


def test_layout_is_nvidias(repo: NvidiaRepo) -> None:
    assert repo.architectures == ("amd64",)
    assert repo.key_file == repo.root / "libnvidia-container/gpgkey"
    assert repo.arch_dir() == repo.root / "libnvidia-container/stable/deb/amd64"
    for name in ("InRelease", "Release", "Release.gpg", "Packages", "Packages.gz"):
        assert (repo.arch_dir() / name).is_file(), name
    assert not (repo.arch_dir() / "dists").exists()  # flat: no dists/
    assert {(package.name, package.version) for package in repo.packages} == EXPECTED
    assert all(repo.versions[name] == [OLD, NEW] for name in NAMES)
    for package in repo.packages:  # NVIDIA's Packages: ./<name>_<version>_<arch>.deb beside the index
        assert package.filename == f"./{package.name}_{package.version}_amd64.deb"
        assert repo.deb(package.name, package.version).is_file()
    assert repo.uri("http://127.0.0.1:8080/") == "http://127.0.0.1:8080/libnvidia-container/stable/deb/amd64"
    assert repo.key_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080/libnvidia-container/gpgkey"


def test_the_key_is_the_repositorys_own(repo: NvidiaRepo) -> None:
    armored = repo.key_file.read_text()
    assert armored.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    assert re.fullmatch(r"[0-9A-F]{40}", repo.fingerprint)
    assert key_fingerprint(armored) == repo.fingerprint  # what operations.apt_repos checks, in pure Python
    assert repo.fingerprint != "C95B321B61E88C1809C4F759DDCAE044F796ECB0"  # not NVIDIA's key: a test key


def test_gpgv_accepts_in_release_and_refuses_a_changed_release(repo: NvidiaRepo, tmp_path: Path) -> None:
    directory = repo.arch_dir()
    inline = run("gpgv", "--keyring", repo.keyring, directory / "InRelease")
    assert inline.returncode == 0, inline.stderr
    assert f"using RSA key {repo.fingerprint}" in inline.stderr and "Good signature" in inline.stderr
    detached = run("gpgv", "--keyring", repo.keyring, directory / "Release.gpg", directory / "Release")
    assert detached.returncode == 0, detached.stderr
    assert (directory / "Release").read_text() in (directory / "InRelease").read_text()
    tampered = tmp_path / "Release"
    tampered.write_text((directory / "Release").read_text().replace("Version: 1.0", "Version: 1.1"))
    assert run("gpgv", "--keyring", repo.keyring, directory / "Release.gpg", tampered).returncode != 0
    other = run("gpgv", "--keyring", "/usr/share/keyrings/debian-archive-keyring.gpg", directory / "InRelease")
    assert other.returncode != 0


def test_packages_lists_both_versions_with_their_hashes(repo: NvidiaRepo) -> None:
    directory = repo.arch_dir()
    packages_bytes = (directory / "Packages").read_bytes()
    assert gzip.decompress((directory / "Packages.gz").read_bytes()) == packages_bytes
    stanzas = deb822(packages_bytes.decode())
    assert {(stanza["Package"], stanza["Version"]) for stanza in stanzas} == EXPECTED
    for stanza in stanzas:
        deb = (directory / stanza["Filename"]).read_bytes()
        assert int(stanza["Size"]) == len(deb)
        for field, algorithm in (("MD5sum", "md5"), ("SHA1", "sha1"), ("SHA256", "sha256"), ("SHA512", "sha512")):
            assert stanza[field] == hashlib.new(algorithm, deb).hexdigest(), (stanza["Package"], field)
        assert stanza["Architecture"] == "amd64"
        assert stanza["Maintainer"] == "NVIDIA CORPORATION <cudatools@nvidia.com>"
        assert "Test stand-in built by pyinfra-iluvatar's tests" in stanza["Description"]
    release = deb822((directory / "Release").read_text())[0]
    assert (release["Codename"], release["Architectures"]) == ("stable", "amd64")
    for title, algorithm in (("SHA256", "sha256"), ("SHA512", "sha512")):
        listed = {line.split()[2]: line.split()[0] for line in release[title].strip().splitlines()}
        assert listed == {
            name: hashlib.new(algorithm, (directory / name).read_bytes()).hexdigest()
            for name in ("Packages", "Packages.gz")
        }


def test_relations_are_nvidias(repo: NvidiaRepo) -> None:
    stanzas = {(s["Package"], s["Version"]): s for s in deb822((repo.arch_dir() / "Packages").read_text())}
    assert stanzas[("nvidia-container-toolkit", OLD)]["Depends"] == (
        "nvidia-container-toolkit-base (= 1.17.8-1), libnvidia-container-tools (>= 1.17.8-1), "
        "libnvidia-container-tools (<< 2.0.0)"
    )
    assert stanzas[("nvidia-container-toolkit", NEW)]["Depends"] == (
        "nvidia-container-toolkit-base (= 1.18.0-1), libnvidia-container-tools (= 1.18.0-1)"
    )
    for version, upstream in ((OLD, "1.17.8"), (NEW, "1.18.0")):
        tools = stanzas[("libnvidia-container-tools", version)]["Depends"]
        assert tools == f"libc6 (>= 2.14), libcap2 (>= 1:2.10), libnvidia-container1 (>= {upstream})"
        assert stanzas[("nvidia-container-toolkit", version)]["Breaks"].startswith("nvidia-container-runtime (<=")


def _extract(repo: NvidiaRepo, name: str, version: str, member: str, target: Path) -> Path:
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", repo.deb(name, version)], capture_output=True, check=True)
    extracted = subprocess.run(["tar", "-xO", f"./{member}"], input=tar.stdout, capture_output=True, check=True)
    target.write_bytes(extracted.stdout)
    target.chmod(0o755)
    return target


@pytest.mark.parametrize(("version", "upstream"), [(OLD, "1.17.8"), (NEW, "1.18.0")])
def test_programs_print_their_version(repo: NvidiaRepo, version: str, upstream: str, tmp_path: Path) -> None:
    programs = [
        ("nvidia-container-toolkit-base", "usr/bin/nvidia-ctk", f"NVIDIA Container Toolkit CLI version {upstream}"),
        (
            "nvidia-container-toolkit-base",
            "usr/bin/nvidia-container-runtime",
            f"NVIDIA Container Runtime version {upstream}",
        ),
        ("libnvidia-container-tools", "usr/bin/nvidia-container-cli", f"cli-version: {upstream}"),
    ]
    for name, member, first in programs:
        program = _extract(repo, name, version, member, tmp_path / Path(member).name)
        assert run(program, "--version").stdout.splitlines()[0] == first
    listing = run("dpkg-deb", "-c", repo.deb("libnvidia-container1", version)).stdout
    assert f"./usr/lib/x86_64-linux-gnu/libnvidia-container.so.1 -> libnvidia-container.so.{upstream}" in listing


def test_served_key_and_guide_list(repo: NvidiaRepo) -> None:
    with serve(repo.root) as server:
        with urllib.request.urlopen(repo.key_url(server.url), timeout=10) as response:
            assert response.read() == repo.key_file.read_bytes()
        assert server.requests == ["/libnvidia-container/gpgkey"]
    assert repo.list_text("http://198.18.37.1:8737") == (
        "deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] "
        "http://198.18.37.1:8737/libnvidia-container/stable/deb/$(ARCH) /\n"
        "#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] "
        "http://198.18.37.1:8737/libnvidia-container/experimental/deb/$(ARCH) /\n"
    )


def private_apt(state: Path, name: str, text: str) -> list[str]:
    """apt options for a private state in ``state`` whose only source is ``text`` in ``sources.list.d/<name>``."""
    for sub in ("lists/partial", "archives/partial", "sources.list.d"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "status").touch()
    (state / "sources.list.d" / name).write_text(text)
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
def test_apt_updates_and_downloads_from_it(repo: NvidiaRepo, tmp_path: Path) -> None:
    with serve(repo.root) as server:
        sources = repo.sources(server.url, signed_by=str(repo.key_file))  # deb822, Suites: /, the armored key
        options = private_apt(tmp_path / "apt", "nvidia-container-toolkit.sources", sources)
        update = run("apt-get", *options, "update")
        assert update.returncode == 0, update.stdout + update.stderr
        assert "W:" not in update.stdout + update.stderr
        madison = run("apt-cache", *options, "madison", "nvidia-container-toolkit")
        assert [line.split("|")[1].strip() for line in madison.stdout.splitlines()] == [NEW, OLD]
        download = run("apt-get", *options, "download", f"nvidia-container-toolkit={OLD}", cwd=tmp_path)
        assert download.returncode == 0, download.stderr
        (deb,) = tmp_path.glob("nvidia-container-toolkit_*.deb")
        assert deb.name == "nvidia-container-toolkit_1.17.8-1_amd64.deb"
        assert deb.read_bytes() == repo.deb("nvidia-container-toolkit", OLD).read_bytes()
        # apt's resolver sees NVIDIA's relations (simulated against this machine's dpkg status, which has libc6
        # and libcap2): the old toolkit alone is refused, its base is pinned (=); with all four named it resolves
        simulate = [*options, "-oDir::State::status=/var/lib/dpkg/status", "install", "-s", "--no-install-recommends"]
        alone = run("apt-get", *simulate, f"nvidia-container-toolkit={OLD}")
        assert alone.returncode == 100
        assert "Depends: nvidia-container-toolkit-base (= 1.17.8-1) but 1.18.0-1 is to be installed" in alone.stdout
        together = run("apt-get", *simulate, *(f"{name}={OLD}" for name in NAMES))
        assert together.returncode == 0, together.stdout + together.stderr
        planned = {tuple(line.split()[1:3]) for line in together.stdout.splitlines() if line.startswith("Inst ")}
        assert planned == {(name, f"({OLD}") for name in NAMES}

        # NVIDIA's guide: a one-line source with $(ARCH) in the URI and the dearmored keyring
        options = private_apt(
            tmp_path / "guide", "nvidia-container-toolkit.list", repo.list_text(server.url, str(repo.keyring))
        )
        update = run("apt-get", *options, "update")
        assert update.returncode == 0, update.stdout + update.stderr
        assert f"{repo.uri(server.url)}  InRelease" in update.stdout  # $(ARCH) read as amd64

        wrong = "/usr/share/keyrings/debian-archive-keyring.gpg"
        options = private_apt(tmp_path / "wrong", "nvidia-container-toolkit.sources", repo.sources(server.url, wrong))
        refused = run("apt-get", *options, "update")
        assert refused.returncode == 100
        assert f"NO_PUBKEY {repo.fingerprint[-16:]}" in refused.stderr
