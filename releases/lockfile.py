"""The lock file: per component the version, the tag and the constraint it was resolved from, and per architecture
the artifact's file name, URL, sha256 and path under a mirror.

Written by ``pyinfra-iluvatar lock``, read by deploys (which never ask upstream what "latest" is). JSON, indented,
keys sorted, no timestamps: re-locking with nothing new rewrites the same bytes, and a change is a readable diff::

    {
      "components": {
        "go": {
          "artifacts": {
            "amd64": {
              "filename": "go1.23.4.linux-amd64.tar.gz",
              "mirror_path": "go.dev/dl/go1.23.4.linux-amd64.tar.gz",
              "sha256": "<64 lowercase hex digits, from go.dev>",
              "url": "https://go.dev/dl/go1.23.4.linux-amd64.tar.gz"
            }
          },
          "constraint": "~=1.23.0",
          "tag": "go1.23.4",
          "version": "1.23.4"
        },
        …
      },
      "format": 1
    }

Mirrors: a lab without internet serves every artifact at ``<mirror>/<mirror_path>``, that is
``<mirror>/github.com/<owner>/<repo>/releases/download/<tag>/<file>`` and ``<mirror>/go.dev/dl/<file>``;
:meth:`Artifact.url_via` gives the URL to fetch with or without a mirror.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from pyinfra_iluvatar.releases.components import ARCHES, COMPONENTS, GithubSource, GoToolchain, ReleaseAssets
from pyinfra_iluvatar.releases.specs import SpecError, parse_spec

FORMAT = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ARTIFACT_KEYS = frozenset({"filename", "url", "sha256", "mirror_path"})
_COMPONENT_KEYS = frozenset({"version", "tag", "constraint", "artifacts"})


class LockError(ValueError):
    """A lock file that is missing, unreadable or invalid, or lacks what a deploy asked of it."""


@dataclass(frozen=True)
class Artifact:
    """One downloadable file: what it is called, where upstream serves it, its sha256, its path under a mirror."""

    filename: str
    url: str
    sha256: str
    mirror_path: str

    def url_via(self, mirror: str | None) -> str:
        """The URL to download from: ``<mirror>/<mirror_path>`` when a mirror is given, else upstream's URL."""
        return f"{mirror.rstrip('/')}/{self.mirror_path}" if mirror else self.url


@dataclass(frozen=True)
class LockedComponent:
    """One component as locked: ``artifacts`` maps a Debian architecture name to its artifact."""

    name: str
    version: str
    tag: str
    constraint: str
    artifacts: Mapping[str, Artifact]

    def artifact(self, arch: str) -> Artifact:
        """The artifact for Debian architecture ``arch``; :class:`LockError` names the locked ones when absent."""
        if arch not in self.artifacts:
            locked = ", ".join(sorted(self.artifacts)) or "none"
            raise LockError(
                f"{self.name} {self.version} is locked for {locked}, not {arch}:"
                f" run `pyinfra-iluvatar lock --arch {arch}` (with every architecture you deploy to)"
            )
        return self.artifacts[arch]


@dataclass(frozen=True)
class Lock:
    """Every component, by name (the keys of :data:`~pyinfra_iluvatar.releases.components.COMPONENTS`)."""

    components: Mapping[str, LockedComponent]

    def component(self, name: str) -> LockedComponent:
        """The locked component called ``name``."""
        if name not in self.components:
            raise LockError(f"the lock has no component {name!r}; components: {', '.join(self.components)}")
        return self.components[name]


def to_json(lock: Lock) -> str:
    """The lock file's text."""
    data = {
        "format": FORMAT,
        "components": {
            name: {
                "version": component.version,
                "tag": component.tag,
                "constraint": component.constraint,
                "artifacts": {
                    arch: {
                        "filename": artifact.filename,
                        "url": artifact.url,
                        "sha256": artifact.sha256,
                        "mirror_path": artifact.mirror_path,
                    }
                    for arch, artifact in component.artifacts.items()
                },
            }
            for name, component in lock.components.items()
        },
    }
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def dump(lock: Lock, path: Path) -> None:
    """Write ``lock`` to ``path`` atomically (a reader never sees half a file), never a lock that :func:`load`
    would refuse (upstream's answers are validated like a hand-edited file). The file keeps the mode of the one it
    replaces; a new one gets 0644 less the umask."""
    text = to_json(lock)
    from_json(text, str(path))
    try:
        mode = stat.S_IMODE(path.stat().st_mode)  # keep the mode of the file replaced
    except FileNotFoundError:
        umask = os.umask(0o022)
        os.umask(umask)
        mode = 0o644 & ~umask  # a new file: readable by everyone, as the umask allows
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with open(descriptor, "w", encoding="utf-8") as stream:
            os.fchmod(descriptor, mode)  # mkstemp creates it 0600: readable by its owner only
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)  # a failed write leaves no temporary file behind
        raise


def load(path: Path) -> Lock:
    """Read and validate the lock file at ``path``; :class:`LockError` names the file, the entry and the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LockError(f"{path}: no lock file; write one with `pyinfra-iluvatar lock --lock-file {path}`") from None
    except OSError as error:
        raise LockError(f"{path}: cannot read the lock file ({error.strerror})") from None
    return from_json(text, str(path))


def from_json(text: str, source: str) -> Lock:
    """Parse and validate a lock file's text; ``source`` (its path) starts every error message."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise LockError(f"{source}: not JSON ({error})") from None
    _Validator(source).check_top(data)
    return Lock({name: _component(name, entry) for name, entry in data["components"].items()})


def _component(name: str, entry: Mapping[str, Any]) -> LockedComponent:
    artifacts = {arch: Artifact(**value) for arch, value in entry["artifacts"].items()}
    return LockedComponent(name, entry["version"], entry["tag"], entry["constraint"], artifacts)


class _Validator:
    """Checks a parsed lock file, raising :class:`LockError` with the file, the entry's path and what is wrong."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> LockError:
        return LockError(f"{self.source}: {where}: {problem}")

    def keys(self, where: str, value: Any, required: frozenset[str]) -> None:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected an object, got {type(value).__name__}")
        if missing := sorted(required - value.keys()):
            raise self.fail(where, f"missing {', '.join(missing)}")
        if unknown := sorted(value.keys() - required):
            raise self.fail(where, f"unknown key {', '.join(unknown)} (accepted: {', '.join(sorted(required))})")

    def string(self, where: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"expected a non-empty string, got {value!r}")
        return value

    def check_top(self, data: Any) -> None:
        self.keys("top level", data, frozenset({"format", "components"}))
        if data["format"] != FORMAT:
            raise self.fail("format", f"this version reads format {FORMAT}, not {data['format']!r}")
        components = data["components"]
        if not isinstance(components, dict):
            raise self.fail("components", f"expected an object, got {type(components).__name__}")
        if unknown := sorted(components.keys() - COMPONENTS.keys()):
            raise self.fail("components", f"unknown component {', '.join(unknown)} (known: {', '.join(COMPONENTS)})")
        if missing := [name for name in COMPONENTS if name not in components]:
            raise self.fail("components", f"missing {', '.join(missing)}; re-run `pyinfra-iluvatar lock`")
        for name, entry in components.items():
            self.check_component(name, entry)

    def check_component(self, name: str, entry: Any) -> None:
        where = f"components.{name}"
        self.keys(where, entry, _COMPONENT_KEYS)
        version = self.string(f"{where}.version", entry["version"])
        try:
            Version(version)
        except InvalidVersion:
            raise self.fail(f"{where}.version", f"{version!r} is not a version") from None
        component = COMPONENTS[name]
        source = component if isinstance(component, GoToolchain) else component.source
        tag = self.string(f"{where}.tag", entry["tag"])
        if tag != source.tag(version):
            raise self.fail(
                f"{where}.tag", f"{tag!r} does not match version {version} (expected {source.tag(version)!r})"
            )
        try:
            parse_spec(self.string(f"{where}.constraint", entry["constraint"]))
        except SpecError as error:
            raise self.fail(f"{where}.constraint", str(error)) from None
        artifacts = entry["artifacts"]
        if not isinstance(artifacts, dict):
            raise self.fail(f"{where}.artifacts", f"expected an object, got {type(artifacts).__name__}")
        if not artifacts and isinstance(component, (ReleaseAssets, GoToolchain)):
            raise self.fail(f"{where}.artifacts", "no architecture locked")
        for arch, artifact in artifacts.items():
            if arch not in ARCHES:
                raise self.fail(f"{where}.artifacts", f"unknown architecture {arch!r} (known: {', '.join(ARCHES)})")
            self.check_artifact(f"{where}.artifacts.{arch}", artifact, source, tag)

    def check_artifact(self, where: str, artifact: Any, source: GithubSource | GoToolchain, tag: str) -> None:
        self.keys(where, artifact, _ARTIFACT_KEYS)
        filename = self.string(f"{where}.filename", artifact["filename"])
        if "/" in filename or filename.startswith("."):
            raise self.fail(f"{where}.filename", f"{filename!r} is not a plain file name")
        url = self.string(f"{where}.url", artifact["url"])
        if not url.startswith(("https://", "http://")) or not url.endswith("/" + filename):
            raise self.fail(f"{where}.url", f"{url!r} is not an http(s) URL of {filename}")
        sha256 = self.string(f"{where}.sha256", artifact["sha256"])
        if not _SHA256.fullmatch(sha256):
            raise self.fail(f"{where}.sha256", f"{sha256!r} is not 64 lowercase hex digits")
        expected = (
            source.mirror_path(filename) if isinstance(source, GoToolchain) else source.mirror_path(tag, filename)
        )
        if artifact["mirror_path"] != expected:
            raise self.fail(f"{where}.mirror_path", f"{artifact['mirror_path']!r} should be {expected!r}")
