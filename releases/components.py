"""What each locked component is: where its releases come from, how tags map to versions, which files it needs.

Five components can be locked:

- ``containerd``: GitHub ``containerd/containerd``, tag ``v1.7.24``, asset ``containerd-1.7.24-linux-amd64.tar.gz``
  (files under ``bin/``) and its ``.sha256sum`` beside it.
- ``cni-plugins``: GitHub ``containernetworking/plugins``, tag ``v1.6.0``, asset
  ``cni-plugins-linux-amd64-v1.6.0.tgz`` (files at the archive root) and its ``.sha256`` beside it.
- ``go``: the Go toolchain that builds cnitool, from go.dev's JSON listing (``go1.23.4``,
  ``go1.23.4.linux-amd64.tar.gz``, sha256 in the listing itself).
- ``cnitool``: GitHub ``containernetworking/cni``; only its tag is locked (upstream publishes no binaries, it is built
  with ``go install github.com/containernetworking/cni/cnitool@<tag>``).
- ``rustup`` (build hosts, only when asked for): ``rustup-init`` from rustup's dist server
  (``https://static.rust-lang.org/rustup/archive/1.28.2/x86_64-unknown-linux-gnu/rustup-init``) and the
  ``.sha256`` beside it.

Architectures are named as Debian names them (``dpkg --print-architecture``, pyinfra's ``deb.DebArch`` fact); each
component maps them to its upstream's spelling (:data:`UPSTREAM_ARCH`), and a host's ``uname -m`` maps to them with
:data:`MACHINE_ARCH`. All three come from one table, so the accepted set (:data:`ARCHES`) is spelled out once.
"""

from __future__ import annotations

from dataclasses import dataclass

# Every accepted architecture: (Debian's name, `uname -m`, the name containerd, the CNI plugins and go.dev use).
_ARCH_NAMES: tuple[tuple[str, str, str], ...] = (
    ("amd64", "x86_64", "amd64"),
    ("arm64", "aarch64", "arm64"),
    ("ppc64el", "ppc64le", "ppc64le"),
    ("s390x", "s390x", "s390x"),
    ("riscv64", "riscv64", "riscv64"),
)
ARCHES: tuple[str, ...] = tuple(debian for debian, _, _ in _ARCH_NAMES)
"""The Debian architecture names that can be locked (``--arch``) and deployed to."""
UPSTREAM_ARCH: dict[str, str] = {debian: upstream for debian, _, upstream in _ARCH_NAMES}
"""Debian architecture name -> the name upstream's file names use for it (``ppc64el`` -> ``ppc64le``)."""
MACHINE_ARCH: dict[str, str] = {machine: debian for debian, machine, _ in _ARCH_NAMES}
"""A host's ``uname -m`` -> its Debian architecture name (``x86_64`` -> ``amd64``); its values are :data:`ARCHES`,
so a machine missing from it (``armv7l``, ``i686``) is one no artifact is locked for."""
DEFAULT_ARCHES: tuple[str, ...] = ("amd64", "arm64")

CNITOOL_PACKAGE = "github.com/containernetworking/cni/cnitool"
"""The Go package ``go install`` builds cnitool from, at the locked ``cnitool`` tag."""


@dataclass(frozen=True)
class GithubSource:
    """Releases of one GitHub repository; tags are the version with ``tag_prefix`` in front."""

    owner: str
    repo: str
    tag_prefix: str = "v"

    @property
    def full_name(self) -> str:
        """``owner/repo``."""
        return f"{self.owner}/{self.repo}"

    def tag(self, version: str) -> str:
        """The release tag of ``version`` (``1.7.24`` -> ``v1.7.24``)."""
        return f"{self.tag_prefix}{version}"

    def version(self, tag: str) -> str | None:
        """The version a tag names, or None for a tag of another shape (``api/v1.8.0``)."""
        rest = tag[len(self.tag_prefix) :]
        return rest if tag.startswith(self.tag_prefix) and rest[:1].isdigit() else None

    def download_path(self, tag: str, filename: str) -> str:
        """The URL path GitHub serves a release file at: ``/<owner>/<repo>/releases/download/<tag>/<file>``, on
        github.com, a GitHub Enterprise host or a test server alike."""
        return f"/{self.owner}/{self.repo}/releases/download/{tag}/{filename}"

    def mirror_path(self, tag: str, filename: str) -> str:
        """Where a mirror serves a release file: upstream's download path under ``github.com``."""
        return "github.com" + self.download_path(tag, filename)


@dataclass(frozen=True)
class PublishedFile:
    """One archive as upstream publishes it: its file name, the path its download URL ends with (whatever the
    host), and its path under a mirror. A locked artifact must match all three."""

    filename: str
    download_path: str
    mirror_path: str


@dataclass(frozen=True)
class ReleaseAssets:
    """A component whose GitHub releases carry one archive per architecture plus a sha256 checksum file beside it.

    ``asset`` is a template with ``{version}`` (no ``v``), ``{tag}`` and ``{arch}`` (upstream's arch name);
    ``checksum_suffix`` names the checksum file (``<asset><suffix>``, ``sha256sum`` format).
    """

    name: str
    source: GithubSource
    asset: str
    checksum_suffix: str

    def filename(self, version: str, arch: str) -> str:
        """The archive's file name for ``version`` on Debian architecture ``arch``."""
        return self.asset.format(version=version, tag=self.source.tag(version), arch=UPSTREAM_ARCH[arch])

    def checksum_filename(self, version: str, arch: str) -> str:
        """The checksum file published beside the archive."""
        return self.filename(version, arch) + self.checksum_suffix

    def published(self, version: str, arch: str) -> PublishedFile:
        """The archive for ``version`` on Debian architecture ``arch``, as its release publishes it."""
        tag, filename = self.source.tag(version), self.filename(version, arch)
        return PublishedFile(filename, self.source.download_path(tag, filename), self.source.mirror_path(tag, filename))


@dataclass(frozen=True)
class TagOnly:
    """A component locked by release tag alone: nothing is downloaded from its release."""

    name: str
    source: GithubSource


@dataclass(frozen=True)
class GoToolchain:
    """The Go toolchain, listed by go.dev (``?mode=json&include=all``); versions are ``go1.23.4``."""

    name: str
    version_prefix: str = "go"
    os: str = "linux"
    kind: str = "archive"

    def tag(self, version: str) -> str:
        """go.dev's version string (``1.23.4`` -> ``go1.23.4``)."""
        return f"{self.version_prefix}{version}"

    def version(self, tag: str) -> str | None:
        """The version in go.dev's version string, or None when it is not ``go<digit>…``."""
        rest = tag[len(self.version_prefix) :]
        return rest if tag.startswith(self.version_prefix) and rest[:1].isdigit() else None

    def filename(self, version: str, arch: str) -> str:
        """The archive's file name for ``version`` on Debian architecture ``arch`` (``go1.23.4.linux-amd64.tar.gz``)."""
        return f"{self.tag(version)}.{self.os}-{UPSTREAM_ARCH[arch]}.tar.gz"

    @staticmethod
    def mirror_path(filename: str) -> str:
        """Where a mirror serves a go.dev file: ``go.dev/dl/<file>``."""
        return f"go.dev/dl/{filename}"

    def published(self, version: str, arch: str) -> PublishedFile:
        """The archive for ``version`` on Debian architecture ``arch``, as go.dev publishes it. Its download URL ends
        with ``/<file>`` only: files are served right under the download page, which ``lock --go-dl`` may put
        anywhere (``https://go.dev/dl/``, a copy of it, the test server's ``/dl/``)."""
        filename = self.filename(version, arch)
        return PublishedFile(filename, f"/{filename}", self.mirror_path(filename))


RUST_TRIPLES: dict[str, str] = {
    "amd64": "x86_64-unknown-linux-gnu",
    "arm64": "aarch64-unknown-linux-gnu",
    "ppc64el": "powerpc64le-unknown-linux-gnu",
    "s390x": "s390x-unknown-linux-gnu",
    "riscv64": "riscv64gc-unknown-linux-gnu",
}
"""Debian architecture name -> the Rust target triple rustup-init is published for."""


@dataclass(frozen=True)
class RustupInit:
    """``rustup-init``, one executable per target triple on rustup's dist server; versions are ``1.28.2``."""

    name: str
    binary: str = "rustup-init"
    host: str = "static.rust-lang.org"

    def tag(self, version: str) -> str:
        """The version as the dist server names it (``release-stable.toml``'s ``version``): the version itself."""
        return version

    def version(self, tag: str) -> str | None:
        """The version of a dist server's version string, or None when it does not start with a digit."""
        return tag if tag[:1].isdigit() else None

    def filename(self, version: str, arch: str) -> str:
        """The file's name: ``rustup-init`` for every version and architecture."""
        return self.binary

    def download_path(self, version: str, arch: str) -> str:
        """``/rustup/archive/<version>/<triple>/rustup-init``, on the dist server (or a copy of it)."""
        return f"/rustup/archive/{version}/{RUST_TRIPLES[arch]}/{self.binary}"

    def published(self, version: str, arch: str) -> PublishedFile:
        """``rustup-init`` for ``version`` on Debian architecture ``arch``; a mirror serves it under
        ``static.rust-lang.org``."""
        path = self.download_path(version, arch)
        return PublishedFile(self.binary, path, self.host + path)


Downloadable = ReleaseAssets | GoToolchain | RustupInit
"""A component with one archive per architecture (:meth:`~ReleaseAssets.published` says which)."""
Component = ReleaseAssets | TagOnly | GoToolchain | RustupInit

CONTAINERD = ReleaseAssets(
    "containerd",
    GithubSource("containerd", "containerd"),
    asset="containerd-{version}-linux-{arch}.tar.gz",
    checksum_suffix=".sha256sum",
)
CNI_PLUGINS = ReleaseAssets(
    "cni-plugins",
    GithubSource("containernetworking", "plugins"),
    asset="cni-plugins-linux-{arch}-{tag}.tgz",
    checksum_suffix=".sha256",
)
GO = GoToolchain("go")
CNITOOL = TagOnly("cnitool", GithubSource("containernetworking", "cni"))
RUSTUP = RustupInit("rustup")

COMPONENTS: dict[str, Component] = {
    component.name: component for component in (CONTAINERD, CNI_PLUGINS, GO, CNITOOL, RUSTUP)
}
"""Every lockable component by name, in the order ``pyinfra-iluvatar lock`` resolves and reports them."""
OPTIONAL = frozenset({"rustup"})
"""Components ``lock`` resolves only when asked (``--rustup``) or when the lock file already has them."""
