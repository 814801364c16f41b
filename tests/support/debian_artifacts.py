"""Release-shaped test artifacts made from Debian's real binaries, cached so that a second session builds nothing.

Upstream's release files cannot be fetched here, Debian's packages can. This module downloads Debian's .debs
(with ``apt-get`` and a private apt state, so the machine's own apt setup is left alone; the archive's address is
taken from the machine's apt sources), unpacks them with ``dpkg-deb`` and repacks their binaries the way upstream
publishes them, with real checksum files computed from the files:

==============  ==============================  =========================================================
component       Debian source (suite)           release files (per arch: amd64, arm64)
==============  ==============================  =========================================================
containerd      containerd 1.6.20 (bookworm)    ``containerd-<v>-linux-<arch>.tar.gz`` (``bin/…``) +
                containerd 1.7.24 (trixie)      ``.sha256sum``; trixie's build runs on bookworm (glibc 2.34)
cni-plugins     containernetworking-plugins     ``cni-plugins-linux-<arch>-v<v>.tgz`` (plugins at the root) +
                1.1.1 (bookworm)                ``.sha256`` + ``.sha512``
runc            runc 1.1.5 (bookworm)           ``runc.<arch>`` + one ``runc.sha256sum``
cnitool         built here from Debian's        ``cnitool-linux-<arch>-v<v>.tgz`` (``cnitool`` at the root) +
                golang-github-appc-cni 1.1.2    ``.sha256``. Upstream publishes no cnitool binaries: this is
                source with Debian's Go 1.19    a real cnitool in a layout of ours, for the prebuilt path
go              golang-1.19-go + -src 1.19.8    ``go1.19.8.linux-<arch>.tar.gz`` (``go/`` root, as go.dev's),
                (bookworm)                      without tests and testdata; sha256 listed as go.dev lists them
==============  ==============================  =========================================================

Versions are the upstream versions the Debian builds really are (``1.6.20~ds1-1+deb12u3`` -> ``1.6.20``); the
Debian version is kept in :attr:`BuiltRelease.debian_version`. Archives are reproducible (fixed owners, the
packages' own file times, gzip without a timestamp).

The cache is ``$PYINFRA_ILUVATAR_TEST_ARTIFACTS`` or ``.build/test-artifacts`` in the checkout; a complete build
writes ``manifest.json`` last, and a cache with a manifest of the current recipe is used as it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packaging.version import Version

from pyinfra_iluvatar.tests.support.fake_upstream import FakeFile, FakeGoFile, FakeGoRelease, FakeRelease

CACHE_ENV = "PYINFRA_ILUVATAR_TEST_ARTIFACTS"
DEFAULT_CACHE = Path(__file__).resolve().parents[2] / ".build" / "test-artifacts"
RECIPE = 1  # bump whenever what is built changes: caches of another recipe are rebuilt
ARCHES = ("amd64", "arm64")
GO_DEBIAN = "1.19"
_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
_SUITES = ("bookworm", "trixie")
_ELF_MACHINE = {"amd64": 0x3E, "arm64": 0xB7}
_PACKAGES = {  # what is downloaded, per suite, as `name:arch`
    "bookworm": [
        *(
            f"{name}:{arch}"
            for name in ("containerd", "containernetworking-plugins", "runc", f"golang-{GO_DEBIAN}-go")
            for arch in ARCHES
        ),
        f"golang-{GO_DEBIAN}-src:all",
    ],
    "trixie": [f"containerd:{arch}" for arch in ARCHES],
}


@dataclass(frozen=True)
class BuiltRelease:
    """One release's files, as built: ``repo`` is the GitHub ``owner/repo`` (None for Go, which go.dev lists)."""

    component: str
    repo: str | None
    tag: str
    version: str
    debian_version: str
    suite: str
    files: tuple[str, ...]
    directory: Path

    def path(self, filename: str) -> Path:
        """Where ``filename`` of this release is on disk."""
        if filename not in self.files:
            raise KeyError(f"{self.component} {self.version} has no file {filename}")
        return self.directory / filename


@dataclass(frozen=True)
class DebianArtifacts:
    """Everything built, with ways to serve it from :class:`~.fake_upstream.FakeUpstream`."""

    root: Path
    releases: tuple[BuiltRelease, ...]

    def release(self, component: str, version: str) -> BuiltRelease:
        """The built release of ``component`` at ``version``."""
        for release in self.releases:
            if (release.component, release.version) == (component, version):
                return release
        built = ", ".join(f"{release.component} {release.version}" for release in self.releases)
        raise KeyError(f"no {component} {version} was built (built: {built})")

    def fake_repos(self) -> dict[str, list[FakeRelease]]:
        """GitHub repositories for :class:`~.fake_upstream.FakeUpstream`, newest version first, real digests."""
        repos: dict[str, list[FakeRelease]] = {}
        for release in sorted(self.releases, key=lambda release: Version(release.version), reverse=True):
            if release.repo is not None:
                files = tuple(FakeFile(name, release.path(name)) for name in release.files)
                repos.setdefault(release.repo, []).append(FakeRelease(release.tag, files))
        return repos

    def fake_go(self) -> list[FakeGoRelease]:
        """go.dev's listing for :class:`~.fake_upstream.FakeUpstream`: the Go releases built, newest first."""
        go = [release for release in self.releases if release.repo is None]
        return [
            FakeGoRelease(
                release.tag,
                tuple(FakeGoFile(name, "linux", _go_arch(name), release.path(name)) for name in release.files),
            )
            for release in sorted(go, key=lambda release: Version(release.version), reverse=True)
        ]


def _go_arch(filename: str) -> str:
    """``go1.19.8.linux-arm64.tar.gz`` -> ``arm64``."""
    match = re.search(r"\.linux-(\w+)\.tar\.gz$", filename)
    if match is None:
        raise ValueError(f"{filename} is not a Go linux archive")
    return match[1]


def build_debian_artifacts(cache: Path | None = None) -> DebianArtifacts:
    """The artifacts, from the cache when it holds a complete build of this recipe, else built now (minutes)."""
    root = (cache or Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root / ".lock"):
        manifest = root / "manifest.json"
        if manifest.exists():
            data = json.loads(manifest.read_text())
            if data.get("recipe") == RECIPE:
                return _from_manifest(root, data)
        shutil.rmtree(root / "files", ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=root, prefix="work.") as work:
            releases = _Builder(root / "files", Path(work)).build()
        data = {"recipe": RECIPE, "releases": [_manifest_entry(release, root) for release in releases]}
        temporary = manifest.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        temporary.replace(manifest)
        return DebianArtifacts(root, tuple(releases))


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _manifest_entry(release: BuiltRelease, root: Path) -> dict[str, object]:
    entry = asdict(release)
    entry["directory"] = str(release.directory.relative_to(root))
    return entry


def _from_manifest(root: Path, data: dict[str, Any]) -> DebianArtifacts:
    releases = tuple(
        BuiltRelease(**{**entry, "directory": root / entry["directory"], "files": tuple(entry["files"])})
        for entry in data["releases"]
    )
    return DebianArtifacts(root, releases)


def upstream_version(debian_version: str) -> str:
    """The upstream version a Debian version packages: ``1:1.6.20~ds1-1+deb12u3`` -> ``1.6.20``."""
    match = re.match(r"(?:\d+:)?(\d+(?:\.\d+)*)", debian_version)
    if match is None:
        raise ValueError(f"no upstream version in Debian version {debian_version!r}")
    return match[1]


def _run(*command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, command))} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
        )
    return result.stdout


class _PrivateApt:
    """apt-get with its own sources (bookworm and trixie main, amd64 and arm64, bookworm sources) and state."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        for sub in ("lists/partial", "archives/partial", "sources.list.d"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        (directory / "status").touch()
        archive = _debian_archive()
        options = f"arch={','.join(ARCHES)} signed-by={_KEYRING}"
        lines = [f"deb [{options}] {archive} {suite} main" for suite in _SUITES]
        lines.append(f"deb-src [signed-by={_KEYRING}] {archive} bookworm main")
        (directory / "sources.list").write_text("\n".join(lines) + "\n")
        self.options = [
            f"-oDir::Etc::sourcelist={directory / 'sources.list'}",
            f"-oDir::Etc::sourceparts={directory / 'sources.list.d'}",
            f"-oDir::State={directory}",
            f"-oDir::State::lists={directory / 'lists'}",
            f"-oDir::State::status={directory / 'status'}",
            f"-oDir::Cache={directory}",
            f"-oDir::Cache::archives={directory / 'archives'}",
            "-oAPT::Architecture=amd64",
            *(f"-oAPT::Architectures::={arch}" for arch in ARCHES),
            "-oAPT::Sandbox::User=root",
            "-oAcquire::Languages=none",
        ]
        _run("apt-get", *self.options, "-qq", "update")

    def download(self, suite: str, packages: Iterable[str]) -> Path:
        """Download ``packages`` (``name:arch``) from ``suite`` in one go; the directory they are in."""
        target = self.directory / "debs" / suite
        target.mkdir(parents=True, exist_ok=True)
        _run("apt-get", *self.options, "-qq", "download", *(f"{package}/{suite}" for package in packages), cwd=target)
        return target

    def source(self, package: str, suite: str) -> tuple[Path, str]:
        """The upstream (orig) tarball of source package ``package`` in ``suite``, and the Debian version."""
        target = self.directory / "sources" / suite
        target.mkdir(parents=True, exist_ok=True)
        _run("apt-get", *self.options, "-qq", "source", "--download-only", f"{package}/{suite}", cwd=target)
        (orig,) = target.glob(f"{package}_*.orig.tar.*")
        (dsc,) = target.glob(f"{package}_*.dsc")
        return orig, dsc.name.removeprefix(f"{package}_").removesuffix(".dsc")


def _debian_archive() -> str:
    """The Debian archive the machine's apt already uses (so that no address is written here)."""
    targets = _run("apt-get", "indextargets", "--format", "$(REPO_URI) $(RELEASE)")
    for line in targets.splitlines():
        uri, _, release = line.partition(" ")
        if "-" not in release and "security" not in uri:
            return uri
    raise RuntimeError("apt has no Debian archive configured (apt-get indextargets lists none): cannot fetch .debs")


def _tar_gz(output: Path, entries: Iterable[tuple[str, Path]], directories: Iterable[str] = ()) -> None:
    """A reproducible .tar.gz: ``directories`` first, then each (archive name, file) in order."""
    with (
        output.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=1) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name in directories:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name, path in entries:
            with path.open("rb") as stream:
                info = tar.gettarinfo(arcname=name, fileobj=stream)
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                tar.addfile(info, stream)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _checksum_file(path: Path, files: Iterable[Path], algorithm: str = "sha256") -> Path:
    lines = []
    for file in files:
        digest = _sha256(file) if algorithm == "sha256" else hashlib.new(algorithm, file.read_bytes()).hexdigest()
        lines.append(f"{digest}  {file.name}\n")
    path.write_text("".join(lines))
    return path


def _check_elf(path: Path, arch: str) -> None:
    """Refuse a binary that is not an ELF executable for ``arch``."""
    with path.open("rb") as stream:
        header = stream.read(20)
    if header[:4] != b"\x7fELF" or int.from_bytes(header[18:20], "little") != _ELF_MACHINE[arch]:
        raise RuntimeError(f"{path} is not an ELF binary for {arch}")


class _Builder:
    """Builds every release into ``output`` (one directory per release), using ``work`` for downloads."""

    def __init__(self, output: Path, work: Path) -> None:
        self.output = output
        self.work = work
        self.apt = _PrivateApt(work / "apt")
        self.debs = {suite: self.apt.download(suite, packages) for suite, packages in _PACKAGES.items()}

    def unpack(self, package: str, suite: str, arch: str, tree: Path | None = None) -> tuple[Path, str]:
        """The unpacked tree of a package (into ``tree`` beside others, like an install) and its Debian version."""
        (deb,) = self.debs[suite].glob(f"{package}_*_{arch}.deb")
        tree = tree or self.work / "unpacked" / f"{package}_{suite}_{arch}"
        tree.mkdir(parents=True, exist_ok=True)
        _run("dpkg-deb", "-x", deb, tree)
        return tree, _run("dpkg-deb", "-f", deb, "Version").strip()

    def release_dir(self, repo: str, tag: str) -> Path:
        directory = self.output / repo / tag
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def build(self) -> list[BuiltRelease]:
        releases = [self.containerd("bookworm"), self.containerd("trixie"), self.cni_plugins(), self.runc()]
        go_root, go_release = self.go()
        return [*releases, go_release, self.cnitool(go_root)]

    def containerd(self, suite: str) -> BuiltRelease:
        files: list[str] = []
        for arch in ARCHES:
            tree, debian_version = self.unpack("containerd", suite, arch)
            version = upstream_version(debian_version)
            directory = self.release_dir("containerd/containerd", f"v{version}")
            binaries = sorted((tree / "usr/bin").iterdir())
            for binary in binaries:
                _check_elf(binary, arch)
            if arch == "amd64":
                reported = _run(tree / "usr/bin/containerd", "--version")
                if version not in reported:
                    raise RuntimeError(f"containerd from {suite} reports {reported!r}, not {version}")
            archive = directory / f"containerd-{version}-linux-{arch}.tar.gz"
            _tar_gz(archive, [(f"bin/{binary.name}", binary) for binary in binaries], directories=["bin"])
            checksum = _checksum_file(directory / f"{archive.name}.sha256sum", [archive])
            files += [archive.name, checksum.name]
        return BuiltRelease(
            "containerd",
            "containerd/containerd",
            f"v{version}",
            version,
            debian_version,
            suite,
            tuple(files),
            directory,
        )

    def cni_plugins(self) -> BuiltRelease:
        files: list[str] = []
        for arch in ARCHES:
            tree, debian_version = self.unpack("containernetworking-plugins", "bookworm", arch)
            version = upstream_version(debian_version)
            directory = self.release_dir("containernetworking/plugins", f"v{version}")
            plugins = sorted((tree / "usr/lib/cni").iterdir())
            for plugin in plugins:
                _check_elf(plugin, arch)
            archive = directory / f"cni-plugins-linux-{arch}-v{version}.tgz"
            _tar_gz(archive, [(f"./{plugin.name}", plugin) for plugin in plugins], directories=["."])
            sha256 = _checksum_file(directory / f"{archive.name}.sha256", [archive])
            sha512 = _checksum_file(directory / f"{archive.name}.sha512", [archive], "sha512")
            files += [archive.name, sha256.name, sha512.name]
        return BuiltRelease(
            "cni-plugins",
            "containernetworking/plugins",
            f"v{version}",
            version,
            debian_version,
            "bookworm",
            tuple(files),
            directory,
        )

    def runc(self) -> BuiltRelease:
        binaries: list[Path] = []
        for arch in ARCHES:
            tree, debian_version = self.unpack("runc", "bookworm", arch)
            version = upstream_version(debian_version)
            directory = self.release_dir("opencontainers/runc", f"v{version}")
            _check_elf(tree / "usr/sbin/runc", arch)
            binaries.append(directory / f"runc.{arch}")
            shutil.copy2(tree / "usr/sbin/runc", binaries[-1])
        checksum = _checksum_file(directory / "runc.sha256sum", binaries)
        files = (*(binary.name for binary in binaries), checksum.name)
        return BuiltRelease(
            "runc", "opencontainers/runc", f"v{version}", version, debian_version, "bookworm", files, directory
        )

    def go(self) -> tuple[Path, BuiltRelease]:
        """Go tarballs like go.dev's, and the amd64 GOROOT (which builds cnitool).

        Debian splits a GOROOT in two packages (``-go``: binaries, tools and generated sources; ``-src``: the
        sources); unpacked into one tree, ``usr/lib/go-<v>`` is a complete GOROOT (its ``src`` is a symlink).
        """
        directory = self.output / "go"
        directory.mkdir(parents=True, exist_ok=True)
        files: list[str] = []
        goroots: dict[str, Path] = {}
        for arch in ARCHES:
            tree, debian_version = self.unpack(f"golang-{GO_DEBIAN}-go", "bookworm", arch)
            self.unpack(f"golang-{GO_DEBIAN}-src", "bookworm", "all", tree)
            version = upstream_version(debian_version)
            goroot = goroots[arch] = tree / f"usr/lib/go-{GO_DEBIAN}"
            _check_elf(goroot / "bin/go", arch)
            entries = [("go/VERSION", goroot / "VERSION")]
            for part in ("bin", "pkg/tool", "pkg/include", "src"):
                entries += [
                    (f"go/{path.relative_to(goroot)}", path)
                    for path in sorted((goroot / part).rglob("*"))
                    if path.is_file() and not path.name.endswith("_test.go") and "testdata" not in path.parts
                ]
            archive = directory / f"go{version}.linux-{arch}.tar.gz"
            _tar_gz(archive, entries, directories=["go"])
            files.append(archive.name)
        reported = _run(goroots["amd64"] / "bin/go", "version", env={"PATH": os.defpath})
        if f"go{version} " not in reported:
            raise RuntimeError(f"Debian's Go reports {reported!r}, not go{version}")
        release = BuiltRelease("go", None, f"go{version}", version, debian_version, "bookworm", tuple(files), directory)
        return goroots["amd64"], release

    def cnitool(self, goroot: Path) -> BuiltRelease:
        """cnitool built from Debian's CNI source in GOPATH mode (no module proxy), for each arch."""
        orig, debian_version = self.apt.source("golang-github-appc-cni", "bookworm")
        version = upstream_version(debian_version)
        gopath = self.work / "gopath"
        package_dir = gopath / "src/github.com/containernetworking/cni"
        package_dir.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(orig) as tar:
            tar.extractall(self.work / "cni-source", filter="data")
        (unpacked,) = (self.work / "cni-source").iterdir()
        unpacked.rename(package_dir)
        source_time = (package_dir / "cnitool/cnitool.go").stat().st_mtime
        directory = self.release_dir("containernetworking/cni", f"v{version}")
        files: list[str] = []
        for arch in ARCHES:
            binary = self.work / "cnitool-build" / arch / "cnitool"
            env = {
                "PATH": os.defpath,
                "HOME": str(self.work),
                "GOROOT": str(goroot),
                "GOPATH": str(gopath),
                "GOCACHE": str(self.work / "gocache"),
                "GO111MODULE": "off",
                "GOPROXY": "off",
                "CGO_ENABLED": "0",
                "GOOS": "linux",
                "GOARCH": arch,
            }
            _run(
                goroot / "bin/go",
                "build",
                "-trimpath",
                "-o",
                binary,
                "github.com/containernetworking/cni/cnitool",
                env=env,
            )
            _check_elf(binary, arch)
            os.utime(binary, (source_time, source_time))  # the archive is reproducible, as the build is
            archive = directory / f"cnitool-linux-{arch}-v{version}.tgz"
            _tar_gz(archive, [("./cnitool", binary)], directories=["."])
            checksum = _checksum_file(directory / f"{archive.name}.sha256", [archive])
            files += [archive.name, checksum.name]
        return BuiltRelease(
            "cnitool",
            "containernetworking/cni",
            f"v{version}",
            version,
            debian_version,
            "bookworm",
            tuple(files),
            directory,
        )
