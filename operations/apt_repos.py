"""Signed third-party apt repositories (Docker's, NVIDIA's container toolkit), set up one way.

:func:`signed_repository` installs the repository's key as an armored keyring under ``/etc/apt/keyrings`` and a
deb822 ``.sources`` file signed by it, disables every other source file naming the same URI, and refuses an entry
for it in ``/etc/apt/sources.list``. The key is fetched on the controller (:func:`fetch_key`) and checked against
its fingerprint there, in pure Python (:mod:`.openpgp`): the hosts need neither ``gpg`` nor a route to the key's
host, and a key that is not the expected one never reaches a host. ``operations.docker.apt_repository`` is this
operation with Docker's paths.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Generator, Mapping
from io import StringIO
from pathlib import Path
from typing import Any

import requests
from pyinfra import logger
from pyinfra.api.command import FileUploadCommand, FunctionCommand, QuoteString, StringCommand
from pyinfra.api.exceptions import OperationError, OperationValueError
from pyinfra.api.host import Host
from pyinfra.api.operation import operation
from pyinfra.api.state import State
from pyinfra.context import host
from pyinfra.operations import files
from pyinfra.operations.util import files as file_utils

from pyinfra_iluvatar.facts.apt_repos import (
    ARCH_VARIABLE,
    DISABLED_SUFFIX,
    KEYRINGS_DIR,
    SOURCES_DIR,
    SOURCES_LIST,
    AptRepository,
)
from pyinfra_iluvatar.operations.openpgp import holds_only, key_fingerprints
from pyinfra_iluvatar.releases.http import describe
from pyinfra_iluvatar.urls import http_url, redact

MANAGED_HEADER = "# Managed by pyinfra-iluvatar"
DEFAULT_CACHE_DIR = "~/.cache/pyinfra-iluvatar/keys"
KEY_SIZE_LIMIT = 1 << 20
"""Bytes of a downloaded key read at most (Docker's is 3817 bytes)."""

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
"""A file name apt reads in ``sources.list.d`` (letters, digits, ``_``, ``-``, ``.``), not hidden."""
_KEYRING = re.compile(rf"{re.escape(KEYRINGS_DIR)}/{_NAME}\.asc")
_SOURCES = re.compile(rf"{re.escape(SOURCES_DIR)}/{_NAME}\.sources")
_WORD = r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}"
_SUITE = re.compile(rf"{_WORD}(?:/{_WORD})*")
"""A distribution (``bookworm``, ``noble-security``): the repository has ``dists/<suite>/``."""
_FLAT_SUITE = re.compile(rf"/|\./|(?:{_WORD}/)+")
"""An exact path ending in ``/`` (``/``: the URI itself): a flat repository, without components."""
_COMPONENT = re.compile(rf"{_WORD}(?:/{_WORD})*")
_ARCH = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_FINGERPRINT = re.compile(r"[0-9A-F]{40}")

# --- the controller's key download ---------------------------------------------------------------------------------

_key_locks: dict[str, threading.Lock] = {}
_key_locks_guard = threading.Lock()
_fetched: dict[tuple[str, str, str], str | None] = {}
"""This controller run's downloads: (url, fingerprint, path) -> None when verified and written, else the problem."""


def _key_lock(url: str) -> threading.Lock:
    with _key_locks_guard:
        return _key_locks.setdefault(url, threading.Lock())


def _download_key(url: str, fingerprint: str, target: Path) -> str | None:
    """Download the key at ``url``, check it is ``fingerprint`` alone, write it to ``target`` atomically."""
    try:
        with requests.get(url, stream=True, timeout=60) as response:
            if response.status_code != 200:
                return f"download failed: HTTP {response.status_code} {response.reason}".rstrip()
            content = b""
            for chunk in response.iter_content(chunk_size=1 << 16):
                content += chunk
                if len(content) > KEY_SIZE_LIMIT:
                    return f"the answer is larger than {KEY_SIZE_LIMIT} bytes: not a key"
    except requests.RequestException as error:
        return f"download failed: {describe(error)}"
    try:
        found = key_fingerprints(content.decode("ascii"))
    except UnicodeDecodeError:
        return f"the answer is not an ASCII-armored key (it holds non-ASCII bytes); expected {fingerprint}"
    except ValueError as error:
        return f"the answer is not a usable OpenPGP key ({error}); expected {fingerprint}"
    if found != [fingerprint]:
        got = found[0] if len(found) == 1 else f"{len(found)} keys: {', '.join(found)}"
        return f"fingerprint mismatch: expected {fingerprint}, got {got}"
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}-{threading.get_ident()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(content)
        partial.replace(target)
    except OSError as error:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        return f"cannot write {target}: {error.strerror}"
    return None


def fetch_key(state: State, host: Host, url: str, fingerprint: str, path: str) -> bool:
    """
    Controller side of :func:`signed_repository` (a ``FunctionCommand``): make ``path`` on the controller hold the
    key at ``url``, checked to be the key ``fingerprint`` and no other. The key is downloaded at most once per
    controller run however many hosts ask (one lock per URL; a failure is remembered too), and written atomically:
    ``path`` never holds a partial or unchecked key. On failure it logs, in red, the URL (credentials masked), both
    fingerprints or the network's reason, and returns ``False``, which fails this host.
    """
    target = Path(path)
    done = (url, fingerprint, str(target))
    with _key_lock(url):
        if done not in _fetched or (_fetched[done] is None and not _file_holds_only(target, fingerprint)):
            _fetched[done] = _download_key(url, fingerprint, target)
        problem = _fetched[done]
    if problem is None:
        return True
    host.log_styled(
        f"the apt key from {redact(url)} was not accepted: {problem}; nothing was written",
        fg="red",
        log_func=logger.error,
    )
    return False


def _file_holds_only(path: Path, fingerprint: str) -> bool:
    try:
        return holds_only(path.read_text(encoding="ascii"), fingerprint)
    except (OSError, UnicodeDecodeError):
        return False


# --- the operation -------------------------------------------------------------------------------------------------


def render_sources(uri: str, suites: list[str], components: list[str], arch: str, keyring: str, label: str) -> str:
    """The deb822 source :func:`signed_repository` writes (no ``Components:`` line for a flat repository)."""
    lines = [
        f"{MANAGED_HEADER}: {label}; edits here are overwritten on the next deploy.",
        "Types: deb",
        f"URIs: {uri}",
        f"Suites: {' '.join(suites)}",
        *([f"Components: {' '.join(components)}"] if components else []),
        f"Architectures: {arch}",
        f"Signed-By: {keyring}",
    ]
    return "".join(f"{line}\n" for line in lines)


def normal_fingerprint(fingerprint: object) -> str:
    """``fingerprint`` as 40 uppercase hex digits (spaces dropped); ``OperationValueError`` for anything else."""
    wanted = "".join(str(fingerprint).split()).upper() if isinstance(fingerprint, str) else ""
    if not _FINGERPRINT.fullmatch(wanted):
        raise OperationValueError(f"fingerprint must be a V4 key fingerprint (40 hex digits), got {fingerprint!r}")
    return wanted


def _url(what: str, value: object, base: bool) -> str:
    try:
        return http_url(value, base=base)
    except ValueError as error:
        raise OperationValueError(f"{what} {redact(str(value))!r} is not valid: {error}") from None


def _words(what: str, value: object) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise OperationValueError(f"{what} must be a list of strings, got {value!r}")
    return list(value)


def _checked_suites(suites: object, components: object) -> tuple[list[str], list[str]]:
    """``suites`` and ``components`` as apt accepts them together: distributions with components, or exact paths
    ending in ``/`` (a flat repository) without."""
    suite_list, component_list = _words("suites", suites), _words("components", components)
    if not suite_list:
        raise OperationValueError('suites must name at least one suite (a flat repository is suites=["/"])')
    flat = [suite for suite in suite_list if _FLAT_SUITE.fullmatch(suite)]
    named = [suite for suite in suite_list if _SUITE.fullmatch(suite)]
    if bad := [suite for suite in suite_list if suite not in flat and suite not in named]:
        raise OperationValueError(
            f"suites must be distributions such as bookworm or noble, or exact paths ending in / such as / (a flat "
            f"repository), got {bad[0]!r}"
        )
    if flat and named:
        raise OperationValueError(
            f"suites mixes distributions ({', '.join(named)}) and exact paths ({', '.join(flat)}): apt needs "
            "components for the ones and none for the others"
        )
    if bad := [component for component in component_list if not _COMPONENT.fullmatch(component)]:
        raise OperationValueError(f"components must be names such as main or stable, got {bad[0]!r}")
    if flat and component_list:
        raise OperationValueError(
            f"a flat repository (suites {', '.join(flat)}) has no components, got {', '.join(component_list)}: apt "
            "refuses the source"
        )
    if named and not component_list:
        raise OperationValueError(
            f"suites {', '.join(named)} need at least one component (or an exact path such as / for a flat "
            "repository): apt refuses the source"
        )
    return suite_list, component_list


def _root_644(entry: Mapping[str, object] | None) -> bool:
    return entry is not None and entry["mode"] == "644" and entry["user"] == "root" and entry["group"] == "root"


@operation()
def signed_repository(
    uri: str,
    suites: list[str],
    components: list[str],
    arch: str,
    keyring: str,
    sources: str,
    key_url: str,
    fingerprint: str,
    cache_dir: str = DEFAULT_CACHE_DIR,
    label: str = "",
) -> Generator[Any, None, None]:
    """
    Set up the apt repository at ``uri``, signed by the key ``fingerprint``: the key, armored, in ``keyring`` (mode
    644) and a deb822 source ``sources`` (mode 644) with ``Signed-By: keyring``. Refresh the package lists
    afterwards (``_if`` this changed).

    The key is fetched on the controller from ``key_url`` (once per run for the whole fleet, see :func:`fetch_key`)
    and must be the key ``fingerprint`` and no other, or the host fails before anything on it changes. A keyring
    already holding exactly that key is kept (only its mode and owner are fixed): a converged run downloads nothing,
    writes nothing and costs one round trip (``facts.apt_repos.AptRepository``).

    Another source file under ``/etc/apt/sources.list.d/`` with an entry for the same URI (a vendor guide's
    ``docker.list`` or ``nvidia-container-toolkit.list``, ``$(ARCH)`` in its URI read as apt reads it) makes apt
    fail with "Conflicting values set for option Signed-By" when its ``signed-by`` differs (or is missing, read after
    ours), and warn "configured multiple times" otherwise: it is disabled by renaming it to
    ``<name>.disabled-by-pyinfra-iluvatar``, never deleted (it is someone else's file; the whole file goes, other
    entries in it included). Commented entries, disabled deb822 stanzas and other URIs do not count. An entry for the
    URI in ``/etc/apt/sources.list`` itself is an ``OperationError`` naming the line: that file is the admin's to
    edit.

    + uri: the repository's base URL (``https://download.docker.com/linux/debian``,
      ``https://nvidia.github.io/libnvidia-container/stable/deb/amd64``), http(s), no credentials
    + suites: the source's ``Suites``: distributions (``["bookworm"]``), or, for a flat repository (``Release`` and
      ``Packages`` at ``uri`` itself), ``["/"]``
    + components: the source's ``Components`` (``["stable"]``); ``[]`` for a flat repository (no ``Components:``)
    + arch: the Debian architecture (``amd64``, ``arm64``): the source's ``Architectures``, and what ``$(ARCH)`` in
      other source files is read as
    + keyring: where the armored key goes: ``/etc/apt/keyrings/<name>.asc``
    + sources: the source file: ``/etc/apt/sources.list.d/<name>.sources``
    + key_url: where the controller downloads the ASCII-armored key from
    + fingerprint: the key's V4 fingerprint, 40 hex digits (spaces allowed)
    + cache_dir: where the controller keeps the checked key before uploading it
    + label: what the source file's header and the messages call the repository, one line of printable ASCII
      (default: ``the <name> apt repository``, ``<name>`` from ``sources``)

    **Example:**

    .. code:: python

        repo = apt_repos.signed_repository(
            name="NVIDIA container toolkit apt repository",
            uri="https://nvidia.github.io/libnvidia-container/stable/deb/amd64",
            suites=["/"],
            components=[],
            arch="amd64",
            keyring="/etc/apt/keyrings/nvidia-container-toolkit.asc",
            sources="/etc/apt/sources.list.d/nvidia-container-toolkit.sources",
            key_url="https://nvidia.github.io/libnvidia-container/gpgkey",
            fingerprint="C95B 321B 61E8 8C18 09C4  F759 DDCA E044 F796 ECB0",
        )
        apt.update(name="Package lists", _if=repo.did_change)
    """
    base = _url("uri", uri, base=True)
    if ARCH_VARIABLE in base:
        raise OperationValueError(f"uri must name the architecture itself, not {ARCH_VARIABLE}: got {uri!r}")
    if not base.isascii():
        raise OperationValueError(f"uri must be ASCII (percent-encode other characters), got {redact(base)!r}")
    suite_list, component_list = _checked_suites(suites, components)
    if not isinstance(arch, str) or not _ARCH.fullmatch(arch):
        raise OperationValueError(f"arch must be a Debian architecture such as amd64 or arm64, got {arch!r}")
    if not isinstance(keyring, str) or not _KEYRING.fullmatch(keyring):
        raise OperationValueError(
            f"keyring must be a file in {KEYRINGS_DIR}/ named <letters, digits, _ . -> ending in .asc (an armored key),"
            f" got {keyring!r}"
        )
    if not isinstance(sources, str) or not _SOURCES.fullmatch(sources):
        raise OperationValueError(
            f"sources must be a file in {SOURCES_DIR}/ named <letters, digits, _ . -> ending in .sources (apt ignores "
            f"other names), got {sources!r}"
        )
    key_source = _url("key_url", key_url, base=False)
    wanted = normal_fingerprint(fingerprint)
    if not isinstance(cache_dir, str) or not cache_dir:
        raise OperationValueError(f"cache_dir must be a directory path, got {cache_dir!r}")
    if not isinstance(label, str) or not (label.isascii() and label.isprintable()):
        raise OperationValueError(f"label must be one line of printable ASCII, got {label!r}")
    label = label or f"the {os.path.basename(sources).removesuffix('.sources')} apt repository"

    found = host.get_fact(AptRepository, uri=base, arch=arch, keyring=keyring, sources=sources)
    for entry in found["sources_list"]:
        raise OperationError(
            f"{host.name}: {SOURCES_LIST} line {entry['line']} is an entry for {base} ({entry['text'].strip()!r}); "
            f'beside {sources} apt fails with "Conflicting values set for option Signed-By" (or, when the '
            'signed-by options agree, warns that each target is "configured multiple times"). Remove or comment '
            "out that line: this operation leaves that file to you"
        )
    conflicts = [source["path"] for source in found["files"] if source["path"] != sources and source["names_uri"]]
    for path in conflicts:
        if f"{path}{DISABLED_SUFFIX}" in found["disabled"]:
            raise OperationError(
                f"{host.name}: {path} is an entry for {base} and must be disabled, but {path}{DISABLED_SUFFIX} "
                "(disabled before) is in the way: remove or merge one of them"
            )
    installed = found["keyring"]
    key_ok = installed is not None and holds_only(installed["content"], wanted)
    content = render_sources(base, suite_list, component_list, arch, keyring, label)
    own = next((source for source in found["files"] if source["path"] == sources), None)
    own_ok = own is not None and own["lines"] == content.splitlines()
    if key_ok and own_ok and not conflicts and _root_644(installed) and _root_644(own):
        host.noop(f"{label} {base} {' '.join(suite_list)} ({arch}) is set up, signed by key {wanted}")
        return

    if not key_ok:
        name = os.path.basename(keyring).removesuffix(".asc")
        cached = str(Path(os.path.expanduser(cache_dir)) / f"{name}-{wanted}.asc")
        yield FunctionCommand(fetch_key, (key_source, wanted, cached), {})
        staged = f"{os.path.dirname(keyring)}/.{os.path.basename(keyring)}.pyinfra-iluvatar-new"
        yield StringCommand("mkdir", "-p", "-m", "755", os.path.dirname(keyring))
        yield FileUploadCommand(cached, staged)
        yield StringCommand(
            "chown", "root:root", staged, "&&", "chmod", "644", staged, "&&", "mv", "-f", staged, keyring
        )
    elif not _root_644(installed):
        yield file_utils.chown(keyring, "root", "root")
        yield file_utils.chmod(keyring, "644")
    for path in conflicts:
        yield StringCommand("mv", QuoteString(path), QuoteString(f"{path}{DISABLED_SUFFIX}"))
    if not own_ok:
        yield from files.put._inner(src=StringIO(content), dest=sources, user="root", group="root", mode="644")
    elif not _root_644(own):
        yield file_utils.chown(sources, "root", "root")
        yield file_utils.chmod(sources, "644")
