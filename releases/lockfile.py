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

Reading is strict: each artifact's ``filename``, ``mirror_path`` and ``url`` must be the ones its component publishes
for that version and architecture, and any failure is a :class:`LockError` naming the file, the entry and the
problem (URL credentials masked). A lock holds the components a run needs; ``pyinfra-iluvatar lock`` writes all.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.version import InvalidVersion, Version

from pyinfra_iluvatar.releases.components import (
    ARCHES,
    COMPONENTS,
    OPTIONAL,
    Downloadable,
    GoToolchain,
    RustupInit,
    TagOnly,
)
from pyinfra_iluvatar.releases.specs import SpecError, parse_spec
from pyinfra_iluvatar.urls import http_url, redact

FORMAT = 1
MAX_SIZE = 1 << 20
"""The largest lock file read (1 MiB); a real one is a few KiB."""
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ARTIFACT_KEYS = frozenset({"filename", "url", "sha256", "mirror_path"})
_COMPONENT_KEYS = frozenset({"version", "tag", "constraint", "artifacts"})


class LockError(ValueError):
    """A lock file that is missing, unreadable or invalid, or lacks what a deploy asked of it; URL credentials in
    the message are masked."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


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
    """Locked components by name (keys of :data:`~pyinfra_iluvatar.releases.components.COMPONENTS`): all of them as
    ``pyinfra-iluvatar lock`` writes it, those a run needs at least. ``source`` is the file it was read from ("" for
    a lock not read from a file); it is not compared."""

    components: Mapping[str, LockedComponent]
    source: str = field(default="", compare=False)

    def component(self, name: str) -> LockedComponent:
        """The locked component called ``name``; :class:`LockError` names the file and how to add it when absent."""
        if name not in self.components:
            where, option = (self.source, f" --lock-file {self.source}") if self.source else ("the lock", "")
            asked = f" --{name} latest" if name in OPTIONAL else ""
            effect = "which adds it" if name in OPTIONAL else "which locks every component"
            raise LockError(
                f"{where} has no component {name!r} (it has {', '.join(self.components) or 'none'}):"
                f" run `pyinfra-iluvatar lock{asked}{option}`, {effect}"
            )
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
    """Read and validate the lock file at ``path``. Raises :class:`LockError` naming the file, the entry and the
    problem: no such file, unreadable (a directory, no permission), a NUL byte in the path, over
    :data:`MAX_SIZE`, not UTF-8, not JSON, or not a valid lock (:func:`from_json`)."""
    if "\0" in str(path):
        raise LockError(f"{str(path)!r}: not a usable path (it contains a NUL byte)")
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a pipe would block the open, a device never end
            raise LockError(f"{path}: not a regular file (a directory, a device or a pipe), so not a lock file")
        with path.open("rb") as stream:
            data = stream.read(MAX_SIZE + 1)
    except FileNotFoundError:
        raise LockError(f"{path}: no lock file; write one with `pyinfra-iluvatar lock --lock-file {path}`") from None
    except OSError as error:
        raise LockError(f"{path}: cannot read the lock file ({error.strerror})") from None
    if len(data) > MAX_SIZE:
        raise LockError(f"{path}: larger than 1 MiB; no lock file is that big (is it the right file?)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise LockError(f"{path}: not UTF-8 text (byte {error.start}), so not a lock file") from None
    return from_json(text, str(path))


def from_json(text: str, source: str) -> Lock:
    """Parse and validate a lock file's text, which ``source`` (its path) was read from. Returns the lock; raises
    :class:`LockError` starting with ``source`` and the entry (``components.go.artifacts.amd64.url``) when the
    text is not JSON, is nested too deeply, or any entry is missing, of the wrong type or not what it must be."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise LockError(f"{source}: JSON nested too deeply, so not a lock file") from None
    except ValueError as error:  # JSONDecodeError, or an integer too long to convert
        raise LockError(f"{source}: not JSON ({error})") from None
    _Validator(source).check_top(data)
    return Lock({name: _component(name, entry) for name, entry in data["components"].items()}, source)


def _component(name: str, entry: Mapping[str, Any]) -> LockedComponent:
    artifacts = {arch: Artifact(**value) for arch, value in entry["artifacts"].items()}
    return LockedComponent(name, entry["version"], entry["tag"], entry["constraint"], artifacts)


def _shown(value: Any) -> str:
    """``value`` as a message shows it: the type of an object or array (``dict``, ``list``), else its ``repr`` (at
    most 200 characters, URL credentials masked first)."""
    if isinstance(value, (dict, list)):
        return type(value).__name__
    text = redact(repr(value))
    return text if len(text) <= 200 else text[:199] + "…"


class _Validator:
    """Checks a parsed lock file, raising :class:`LockError` with the file, the entry's path and what is wrong."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> LockError:
        """The error for entry ``where`` (``components.go.version``)."""
        return LockError(f"{self.source}: {where}: {problem}")

    def keys(self, where: str, value: Any, required: frozenset[str]) -> None:
        """Raises unless ``value`` is an object with exactly the keys ``required``."""
        self.object(where, value)
        if missing := sorted(required - value.keys()):
            raise self.fail(where, f"missing {', '.join(missing)}")
        if unknown := sorted(value.keys() - required):
            raise self.fail(where, f"unknown key {', '.join(unknown)} (accepted: {', '.join(sorted(required))})")

    def object(self, where: str, value: Any) -> None:
        """Raises unless ``value`` is a JSON object."""
        if not isinstance(value, dict):
            raise self.fail(where, f"expected an object, got {type(value).__name__}")

    def string(self, where: str, value: Any) -> str:
        """``value``; raises unless it is a non-empty string."""
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"expected a non-empty string, got {_shown(value)}")
        return value

    def check_top(self, data: Any) -> None:
        """Checks the whole lock: the format, then each component present (unknown names are refused)."""
        self.keys("top level", data, frozenset({"format", "components"}))
        file_format = data["format"]
        if isinstance(file_format, bool) or not isinstance(file_format, int) or file_format != FORMAT:
            raise self.fail("format", f"this version reads format {FORMAT}, not {_shown(file_format)}")
        components = data["components"]
        self.object("components", components)
        if unknown := sorted(components.keys() - COMPONENTS.keys()):
            raise self.fail("components", f"unknown component {', '.join(unknown)} (known: {', '.join(COMPONENTS)})")
        for name, entry in components.items():
            self.check_component(name, entry)

    def check_component(self, name: str, entry: Any) -> None:
        """Checks one component: its version, its tag for that version, its constraint, its artifacts."""
        where = f"components.{name}"
        self.keys(where, entry, _COMPONENT_KEYS)
        version = self.string(f"{where}.version", entry["version"])
        try:
            Version(version)
        except InvalidVersion:
            raise self.fail(f"{where}.version", f"{_shown(version)} is not a version") from None
        component = COMPONENTS[name]
        expected_tag = (
            component.tag(version)
            if isinstance(component, (GoToolchain, RustupInit))
            else component.source.tag(version)
        )
        tag = self.string(f"{where}.tag", entry["tag"])
        if tag != expected_tag:
            raise self.fail(
                f"{where}.tag", f"{_shown(tag)} does not match version {version} (expected {expected_tag!r})"
            )
        try:
            parse_spec(self.string(f"{where}.constraint", entry["constraint"]))
        except SpecError as error:
            raise self.fail(f"{where}.constraint", str(error)) from None
        artifacts = entry["artifacts"]
        self.object(f"{where}.artifacts", artifacts)
        if isinstance(component, TagOnly):
            if artifacts:
                raise self.fail(f"{where}.artifacts", f"{name} is locked by its tag alone; it has no artifacts")
            return
        if not artifacts:
            raise self.fail(f"{where}.artifacts", "no architecture locked")
        for arch, artifact in artifacts.items():
            if arch not in ARCHES:
                raise self.fail(
                    f"{where}.artifacts", f"unknown architecture {_shown(arch)} (known: {', '.join(ARCHES)})"
                )
            self.check_artifact(f"{where}.artifacts.{arch}", artifact, component, version, arch)

    def check_artifact(self, where: str, artifact: Any, component: Downloadable, version: str, arch: str) -> None:
        """Checks one artifact: file name, URL and mirror path exactly those ``component`` publishes for ``version``
        on ``arch``, and a sha256."""
        self.keys(where, artifact, _ARTIFACT_KEYS)
        what = f"{component.name} {version} on {arch}"
        published = component.published(version, arch)
        self.exact(f"{where}.filename", artifact["filename"], published.filename, what)
        url = self.string(f"{where}.url", artifact["url"])
        try:
            http_url(url)
        except ValueError as error:
            raise self.fail(f"{where}.url", f"{_shown(url)} is not an http(s) URL: {error}") from None
        if not urlsplit(url).path.endswith(published.download_path):
            raise self.fail(f"{where}.url", f"{_shown(url)} should end with {published.download_path!r} ({what})")
        sha256 = self.string(f"{where}.sha256", artifact["sha256"])
        if not _SHA256.fullmatch(sha256):
            raise self.fail(f"{where}.sha256", f"{_shown(sha256)} is not 64 lowercase hex digits")
        self.exact(f"{where}.mirror_path", artifact["mirror_path"], published.mirror_path, what)

    def exact(self, where: str, value: Any, expected: str, what: str) -> None:
        """Raises unless ``value`` is ``expected``, the string that ``what`` (``go 1.23.4 on amd64``) needs."""
        if self.string(where, value) != expected:
            raise self.fail(where, f"{_shown(value)} should be {expected!r} ({what})")
