"""Small release-shaped upstreams for lock tests: containerd, CNI plugins, CNI (cnitool) and Go releases whose
files are a few bytes each, with real checksum files."""

from __future__ import annotations

from collections.abc import Sequence

from pyinfra_iluvatar.tests.support.fake_upstream import (
    Digest,
    FakeFile,
    FakeGoFile,
    FakeGoRelease,
    FakeRelease,
    FakeUpstream,
    with_checksums,
)

ARCHES = ("amd64", "arm64")


def containerd(
    version: str,
    arches: Sequence[str] = ARCHES,
    digest: Digest = "right",
    checksum_digest: Digest = "right",
    draft: bool = False,
    prerelease: bool = False,
) -> FakeRelease:
    """A containerd release: ``containerd-<version>-linux-<arch>.tar.gz`` and ``.sha256sum`` per arch."""
    files: list[FakeFile] = []
    for arch in arches:
        archive = FakeFile(f"containerd-{version}-linux-{arch}.tar.gz", f"containerd {version} {arch}".encode(), digest)
        files += with_checksums(archive, ".sha256sum", digest=checksum_digest)
    return FakeRelease(f"v{version}", tuple(files), draft, prerelease)


def cni_plugins(version: str, arches: Sequence[str] = ARCHES, prerelease: bool = False) -> FakeRelease:
    """A CNI plugins release: ``cni-plugins-linux-<arch>-v<version>.tgz``, ``.sha256`` and ``.sha512`` per arch."""
    files: list[FakeFile] = []
    for arch in arches:
        archive = FakeFile(f"cni-plugins-linux-{arch}-v{version}.tgz", f"plugins {version} {arch}".encode(), "absent")
        files += with_checksums(archive, ".sha256", ".sha512", digest="absent")
    return FakeRelease(f"v{version}", tuple(files), prerelease=prerelease)


def go(version: str, arches: Sequence[str] = ARCHES, stable: bool = True) -> FakeGoRelease:
    """A Go release as go.dev lists it: a source tarball and one linux archive per arch."""
    files = [FakeGoFile(f"go{version}.src.tar.gz", "", "", f"go {version} source".encode(), kind="source")]
    files += [
        FakeGoFile(f"go{version}.linux-{arch}.tar.gz", "linux", arch, f"go {version} {arch}".encode())
        for arch in arches
    ]
    return FakeGoRelease(f"go{version}", tuple(files), stable)


def standard_upstream() -> FakeUpstream:
    """An upstream with the traps real ones have.

    containerd: GitHub's newest by date is a 1.7 backport; above 2.0.2 there are a draft, a prerelease and a
    release without assets. CNI plugins: the newest release has no assets (as v1.6.1 upstream). CNI: a
    prerelease above the highest release. Go: a release candidate above the highest stable.
    Expected latest: containerd 2.0.2, cni-plugins 1.6.0, cnitool v1.2.3, go 1.23.4.
    """
    return FakeUpstream(
        repos={
            "containerd/containerd": [
                containerd("1.7.25"),
                containerd("2.1.0", draft=True),
                containerd("2.1.0-rc.1", prerelease=True),
                FakeRelease("v2.0.3"),
                containerd("2.0.2"),
                containerd("2.0.1", digest="absent", checksum_digest="absent"),
                containerd("1.7.24"),
            ],
            "containernetworking/plugins": [FakeRelease("v1.6.1"), cni_plugins("1.6.0"), cni_plugins("1.5.1")],
            "containernetworking/cni": [FakeRelease("v1.3.0-rc1", prerelease=True), FakeRelease("v1.2.3")],
        },
        go=[go("1.24rc1", stable=False), go("1.23.4"), go("1.22.10")],
    )
