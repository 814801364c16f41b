"""Resolve each component's spec to one release and its verified artifacts, on the controller, once.

A pin asks GitHub for that tag. A constraint or ``latest`` lists every release and takes the highest version (not
GitHub's newest by date) that satisfies the spec, is neither a draft nor a prerelease, and has every file needed for
every requested architecture. Each artifact's sha256 comes from upstream's checksum file; where the API reports a
``digest`` for the artifact or the checksum file, the two must agree. Go comes from go.dev's listing, whose sha256
are part of it. rustup-init comes from rustup's dist server: its current version or a pinned one (the server lists
no versions, so no constraint), each architecture's sha256 from the ``.sha256`` file beside it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

from packaging.version import InvalidVersion, Version

from pyinfra_iluvatar.releases.components import (
    COMPONENTS,
    UPSTREAM_ARCH,
    GithubSource,
    GoToolchain,
    ReleaseAssets,
    RustupInit,
    TagOnly,
)
from pyinfra_iluvatar.releases.github import Asset, GithubClient, GithubError, NotFound, Release
from pyinfra_iluvatar.releases.godev import GoDevClient
from pyinfra_iluvatar.releases.lockfile import Artifact, Lock, LockedComponent
from pyinfra_iluvatar.releases.rustup import RustupDistClient
from pyinfra_iluvatar.releases.specs import Spec
from pyinfra_iluvatar.urls import redact

_CHECKSUM_LINE = re.compile(r"([0-9a-fA-F]{64})(?:\s+\*?(\S.*))?")


class ResolveError(Exception):
    """No release satisfies a spec, or a release's checksums do not hold together; URL credentials are masked."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


def checksum_for(text: str, filename: str) -> str | None:
    """The sha256 that a ``sha256sum``-format file gives for ``filename`` (a bare hash counts for any name)."""
    for line in text.splitlines():
        match = _CHECKSUM_LINE.fullmatch(line.strip())
        if match and (match[2] is None or match[2].rsplit("/", 1)[-1] == filename):
            return match[1].lower()
    return None


def _version(text: str | None) -> Version | None:
    try:
        return Version(text) if text is not None else None
    except InvalidVersion:
        return None


def _candidates(name: str, source: GithubSource, spec: Spec, github: GithubClient) -> list[tuple[Release, str]]:
    """Releases that may satisfy ``spec``, highest version first, each with its version string."""
    if spec.pin is not None:
        tag = source.tag(spec.pin)
        try:
            release = github.release(source.full_name, tag)
        except NotFound:
            raise ResolveError(f"{name} {spec.text}: {source.full_name} has no release tagged {tag}") from None
        if release.draft:
            raise ResolveError(f"{name} {spec.text}: release {tag} of {source.full_name} is a draft")
        return [(release, spec.pin)]
    found: list[tuple[Version, Release, str]] = []
    for release in github.releases(source.full_name):
        version_text = source.version(release.tag)
        version = _version(version_text)
        if version is None or version_text is None or release.draft or release.prerelease:
            continue
        if spec.allows(version):
            found.append((version, release, version_text))
    found.sort(key=lambda item: item[0], reverse=True)
    return [(release, version_text) for _, release, version_text in found]


def _verified_sha256(name: str, tag: str, asset: Asset, checksum_asset: Asset, github: GithubClient) -> str:
    """The archive's sha256 from its checksum file, cross-checked with the API's digests where present."""
    try:
        content = github.download(checksum_asset.url)
    except GithubError as error:
        raise ResolveError(f"{name} {tag}: {error}") from None
    content_sha256 = hashlib.sha256(content).hexdigest()
    if checksum_asset.sha256 is not None and content_sha256 != checksum_asset.sha256:
        raise ResolveError(
            f"{name} {tag}: {checksum_asset.name} has sha256 {content_sha256},"
            f" the GitHub API's digest says {checksum_asset.sha256}"
        )
    sha256 = checksum_for(content.decode("utf-8", "replace"), asset.name)
    if sha256 is None:
        raise ResolveError(f"{name} {tag}: {checksum_asset.name} lists no sha256 for {asset.name}")
    if asset.sha256 is not None and asset.sha256 != sha256:
        raise ResolveError(
            f"{name} {tag}: sha256 mismatch for {asset.name}: {checksum_asset.name} says {sha256},"
            f" the GitHub API's digest says {asset.sha256}"
        )
    return sha256


def _release_assets(
    component: ReleaseAssets, spec: Spec, arches: Sequence[str], github: GithubClient
) -> LockedComponent:
    source = component.source
    skipped: list[str] = []
    for release, version in _candidates(component.name, source, spec, github):
        files = {
            arch: (component.filename(version, arch), component.checksum_filename(version, arch)) for arch in arches
        }
        needed = [name for pair in files.values() for name in pair]
        present = {asset.name: asset for asset in release.assets if asset.name in needed}
        if missing := [name for name in needed if name not in present]:
            skipped.append(f"{release.tag} lacks {', '.join(missing)}")
            continue
        artifacts: dict[str, Artifact] = {}
        for arch, (filename, checksum_name) in files.items():
            asset = present[filename]
            sha256 = _verified_sha256(component.name, release.tag, asset, present[checksum_name], github)
            artifacts[arch] = Artifact(filename, asset.url, sha256, source.mirror_path(release.tag, filename))
        return LockedComponent(component.name, version, release.tag, spec.text, artifacts)
    raise ResolveError(_nothing_found(component.name, spec, source.full_name, arches, skipped))


def _tag_only(component: TagOnly, spec: Spec, github: GithubClient) -> LockedComponent:
    candidates = _candidates(component.name, component.source, spec, github)
    if not candidates:
        raise ResolveError(_nothing_found(component.name, spec, component.source.full_name, (), []))
    release, version = candidates[0]
    return LockedComponent(component.name, version, release.tag, spec.text, {})


def _go(component: GoToolchain, spec: Spec, arches: Sequence[str], godev: GoDevClient) -> LockedComponent:
    found = []
    for release in godev.releases():
        version_text = component.version(release.version)
        version = _version(version_text)
        if version is None or version_text is None or not (release.stable or spec.pin is not None):
            continue
        if spec.allows(version):
            found.append((version, release, version_text))
    found.sort(key=lambda item: item[0], reverse=True)
    skipped: list[str] = []
    for _, release, version_text in found:
        files = {arch: release.archive(component.os, UPSTREAM_ARCH[arch]) for arch in arches}
        missing = [
            arch for arch, file in files.items() if file is None or not re.fullmatch("[0-9a-f]{64}", file.sha256)
        ]
        if missing:
            skipped.append(f"{release.version} has no archive with a sha256 for {', '.join(missing)}")
            continue
        artifacts = {
            arch: Artifact(
                file.filename, godev.file_url(file.filename), file.sha256, component.mirror_path(file.filename)
            )
            for arch, file in files.items()
            if file is not None
        }
        return LockedComponent(component.name, version_text, release.version, spec.text, artifacts)
    raise ResolveError(_nothing_found(component.name, spec, godev.dl, arches, skipped))


def _rustup(component: RustupInit, spec: Spec, arches: Sequence[str], dist: RustupDistClient) -> LockedComponent:
    if spec.pin is None and spec.text != "latest":
        raise ResolveError(
            f"{component.name} {spec.text}: rustup's dist server lists no versions: give a version (1.28.2) or latest"
        )
    version = spec.pin or dist.stable_version()
    artifacts = {}
    for arch in arches:
        path = component.download_path(version, arch)
        text = dist.checksum(path)
        if text is None:
            raise ResolveError(f"{component.name} {version}: {dist.url(path)}.sha256 does not exist (HTTP 404)")
        sha256 = checksum_for(text, component.binary)
        if sha256 is None:
            raise ResolveError(f"{component.name} {version}: {dist.url(path)}.sha256 holds no sha256")
        published = component.published(version, arch)
        artifacts[arch] = Artifact(published.filename, dist.url(path), sha256, published.mirror_path)
    return LockedComponent(component.name, version, component.tag(version), spec.text, artifacts)


def _nothing_found(name: str, spec: Spec, where: str, arches: Sequence[str], skipped: list[str]) -> str:
    wanted = f" with files for {', '.join(arches)}" if arches else ""
    message = f"{name}: no stable release in {where} satisfies {spec.text!r}{wanted}"
    if skipped:
        shown = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        message += f" (skipped: {shown})"
    return message


def resolve(
    name: str,
    spec: Spec,
    arches: Sequence[str],
    github: GithubClient,
    godev: GoDevClient,
    dist: RustupDistClient | None = None,
) -> LockedComponent:
    """Resolve component ``name`` (a key of ``COMPONENTS``) for Debian architectures ``arches``."""
    component = COMPONENTS[name]
    if isinstance(component, ReleaseAssets):
        return _release_assets(component, spec, arches, github)
    if isinstance(component, TagOnly):
        return _tag_only(component, spec, github)
    if isinstance(component, RustupInit):
        return _rustup(component, spec, arches, dist or RustupDistClient())
    return _go(component, spec, arches, godev)


def resolve_all(
    specs: Mapping[str, Spec],
    arches: Sequence[str],
    github: GithubClient,
    godev: GoDevClient,
    dist: RustupDistClient | None = None,
) -> Lock:
    """Resolve each component ``specs`` has a spec for, in ``COMPONENTS`` order."""
    return Lock({name: resolve(name, specs[name], arches, github, godev, dist) for name in COMPONENTS if name in specs})
