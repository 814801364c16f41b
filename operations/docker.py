"""Docker Engine from Docker's own apt repository, set up as Docker's install guide does, and the daemon the
Ilúvatar worker's Docker isolation runs on: ``daemon.json`` merged key by key, the unit's file limit, readiness.

The deploy that installs Docker puts these together: :func:`apt_repository` (then ``apt-get update``),
:func:`guide_conflicts_absent`, the packages of :data:`DOCKER_REPO_PACKAGES`, :func:`daemon_json` and
``limits.unit_limits`` (reload systemd and restart docker ``_if`` they changed), then :func:`ready` and
:func:`daemon_as_expected`.

Docker's release key is fetched on the controller (:func:`fetch_key`) and checked against its fingerprint there,
in pure Python (:func:`key_fingerprint`): the hosts need neither ``gpg`` nor a route to ``download.docker.com`` for
the key, and a key that is not the expected one never reaches a host.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import hashlib
import json
import os
import re
import threading
from collections.abc import Generator, Iterator, Mapping
from io import StringIO
from pathlib import Path
from typing import Any, Literal

import requests
from pyinfra import logger
from pyinfra.api.command import FileUploadCommand, FunctionCommand, QuoteString, StringCommand
from pyinfra.api.exceptions import OperationError, OperationValueError
from pyinfra.api.host import Host
from pyinfra.api.operation import operation
from pyinfra.api.state import State
from pyinfra.context import host
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import FileContents
from pyinfra.operations import apt, files
from pyinfra.operations.util import files as file_utils

from pyinfra_iluvatar.facts.docker import (
    DISABLED_SUFFIX,
    SOURCES_LIST,
    DockerAptSources,
    DockerDaemon,
    UserGroups,
)
from pyinfra_iluvatar.facts.docker import DOCKER_KEYRING as DOCKER_KEYRING
from pyinfra_iluvatar.facts.docker import DOCKER_SOURCES as DOCKER_SOURCES
from pyinfra_iluvatar.operations._failure import fail_host
from pyinfra_iluvatar.releases.http import describe
from pyinfra_iluvatar.urls import http_url, redact

DAEMON_JSON = "/etc/docker/daemon.json"
MANAGED_HEADER = "# Managed by pyinfra-iluvatar"
GUIDE_CONFLICTS = ("docker.io", "docker-doc", "docker-compose", "podman-docker", "containerd", "runc")
"""The packages Docker's install guide says to remove before installing from its repository."""
DOCKER_REPO_PACKAGES = ("docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin")
"""What the Docker isolation installs from Docker's repository."""
DOCKER_KEY_FINGERPRINT = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
"""Docker's release key (``Docker Release (CE deb) <docker@docker.com>``), which signs its apt repositories."""
DOCKER_REPOSITORY = "https://download.docker.com/linux"
DISTRIBUTIONS = ("debian", "ubuntu")
KEY_SIZE_LIMIT = 1 << 20
"""Bytes of a downloaded key read at most (Docker's is 3817 bytes)."""

_CODENAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
_ARCH = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_FINGERPRINT = re.compile(r"[0-9A-F]{40}")

# --- OpenPGP: the fingerprint of an armored public key, in pure Python (RFC 4880 / RFC 9580) ---------------------

_ARMOR_BEGIN = re.compile(r"-----BEGIN PGP (.+)-----")
_PUBLIC_KEY_BLOCK = "PUBLIC KEY BLOCK"
_PUBLIC_KEY_TAG = 6
_PACKET_NAMES = {
    1: "public-key encrypted session key",
    2: "signature",
    3: "symmetric-key encrypted session key",
    4: "one-pass signature",
    5: "secret key",
    6: "public key",
    7: "secret subkey",
    8: "compressed data",
    9: "symmetrically encrypted data",
    11: "literal data",
    13: "user ID",
    14: "public subkey",
    17: "user attribute",
    18: "encrypted and integrity protected data",
}


def crc24(data: bytes) -> int:
    """The CRC-24 of RFC 4880 section 6.1, which an armor's ``=XXXX`` line carries."""
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def dearmor(armored: str) -> bytes:
    """
    The binary packets of an ASCII-armored ``PUBLIC KEY BLOCK`` (text before its ``BEGIN`` line is ignored, as gpg
    does). The CRC-24 checksum line is checked when present (RFC 9580 lets a writer omit it). ``ValueError`` saying
    why for anything else.
    """
    lines = [line.strip() for line in armored.splitlines()]
    found = next(
        ((index, match[1]) for index, line in enumerate(lines) if (match := _ARMOR_BEGIN.fullmatch(line))), None
    )
    if found is None:
        raise ValueError("not an ASCII-armored OpenPGP block (no -----BEGIN PGP … ----- line)")
    begin, label = found
    if label != _PUBLIC_KEY_BLOCK:
        raise ValueError(f"an armored {label}, not a {_PUBLIC_KEY_BLOCK}")
    try:
        end = lines.index(f"-----END PGP {label}-----", begin + 1)
    except ValueError:
        raise ValueError(f"the armor has no -----END PGP {label}----- line (truncated?)") from None
    body = lines[begin + 1 : end]
    headers = 0
    while headers < len(body) and ": " in body[headers]:  # Version:, Comment: … (a base64 line has no ':')
        headers += 1
    data_lines = [line for line in body[headers:] if line]
    checksum = data_lines.pop()[1:] if data_lines and data_lines[-1].startswith("=") else None
    try:
        data = base64.b64decode("".join(data_lines), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the armor's body is not valid base64") from None
    if not data:
        raise ValueError("the armor holds no data")
    if checksum is not None:
        try:
            expected = base64.b64decode(checksum, validate=True)
        except (binascii.Error, ValueError):
            expected = b""
        if len(expected) != 3:
            raise ValueError(f"the armor's checksum line ={checksum} is malformed")
        if crc24(data) != int.from_bytes(expected, "big"):
            raise ValueError(
                f"bad armor checksum: the data's CRC-24 is {crc24(data):06X}, the armor says "
                f"{int.from_bytes(expected, 'big'):06X} (the block is corrupted)"
            )
    return data


def _packet(data: bytes, offset: int) -> tuple[int, int, int]:
    """The tag, body offset and body length of the packet at ``offset`` (old or new header format)."""
    ctb = data[offset]
    if not ctb & 0x80:
        raise ValueError(f"byte {offset} is not an OpenPGP packet header (0x{ctb:02X})")
    if ctb & 0x40:  # new format: tag in the low 6 bits, then a 1-, 2- or 5-octet length
        tag = ctb & 0x3F
        first = data[offset + 1] if offset + 1 < len(data) else None
        if first is None:
            raise ValueError(f"the packet header at byte {offset} is truncated")
        if first < 192:
            return tag, offset + 2, first
        if first < 224:
            if offset + 2 >= len(data):
                raise ValueError(f"the packet header at byte {offset} is truncated")
            return tag, offset + 3, ((first - 192) << 8) + data[offset + 2] + 192
        if first == 255:
            if offset + 6 > len(data):
                raise ValueError(f"the packet header at byte {offset} is truncated")
            return tag, offset + 6, int.from_bytes(data[offset + 2 : offset + 6], "big")
        raise ValueError(f"the packet at byte {offset} has a partial body length, which no key packet may have")
    tag, length_type = (ctb >> 2) & 0x0F, ctb & 0x03  # old format: tag in bits 5-2, length type in bits 1-0
    if length_type == 3:
        raise ValueError(f"the packet at byte {offset} has an indeterminate length, which no key packet may have")
    size = (1, 2, 4)[length_type]
    if offset + 1 + size > len(data):
        raise ValueError(f"the packet header at byte {offset} is truncated")
    return tag, offset + 1 + size, int.from_bytes(data[offset + 1 : offset + 1 + size], "big")


def _packets(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Each packet's tag and body."""
    offset = 0
    while offset < len(data):
        tag, start, length = _packet(data, offset)
        if start + length > len(data):
            raise ValueError(f"the {_PACKET_NAMES.get(tag, f'tag {tag}')} packet at byte {offset} is truncated")
        yield tag, data[start : start + length]
        offset = start + length


def _v4_fingerprint(body: bytes) -> str:
    """The fingerprint of a public-key packet's body: SHA-1 over 0x99, the 2-octet body length and the body."""
    version = body[0] if body else None
    if version in (2, 3):
        raise ValueError(
            f"a version {version} key (PGP 2.x, obsolete: its fingerprint is MD5 over the key material); only "
            "version 4 keys are supported"
        )
    if version in (5, 6):
        raise ValueError(
            f"a version {version} key (its fingerprint is SHA-256 based, RFC 9580); only version 4 keys are supported"
        )
    if version != 4:
        raise ValueError(f"a public key packet of unknown version {version}; only version 4 keys are supported")
    if len(body) < 6:
        raise ValueError("the version 4 public key packet is too short to hold a key")
    if len(body) > 0xFFFF:
        raise ValueError("the version 4 public key packet is longer than a fingerprint can cover (64 KiB)")
    return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()


def _first_public_key(data: bytes) -> bytes:
    tag, start, length = _packet(data, 0)
    if tag != _PUBLIC_KEY_TAG:
        raise ValueError(f"not a public key: the block starts with a {_PACKET_NAMES.get(tag, f'tag {tag}')} packet")
    if start + length > len(data):
        raise ValueError("the public key packet is truncated")
    return data[start : start + length]


def key_fingerprint(armored: str) -> str:
    """
    The OpenPGP V4 fingerprint (40 uppercase hex digits) of the primary public key an ASCII-armored public key
    block starts with, computed in pure Python: dearmor (checking the CRC-24), read the first packet's header (old
    or new format), require a version 4 public-key packet, SHA-1 over 0x99, its 2-octet length and its body.
    ``ValueError`` saying why for anything else: not armored, a bad checksum, another kind of block or packet, a
    version 3, 5 or 6 key.
    """
    return _v4_fingerprint(_first_public_key(dearmor(armored)))


def key_fingerprints(armored: str) -> list[str]:
    """
    The fingerprints of every primary public key in an armored block, in order (a keyring export may hold
    several); ``ValueError`` as :func:`key_fingerprint`, or when any packet is malformed.
    """
    data = dearmor(armored)
    _first_public_key(data)
    return [_v4_fingerprint(body) for tag, body in _packets(data) if tag == _PUBLIC_KEY_TAG]


def _holds_only(armored: str, fingerprint: str) -> bool:
    """Whether ``armored`` holds the key ``fingerprint`` and no other primary key (apt would trust them all)."""
    try:
        return key_fingerprints(armored) == [fingerprint]
    except ValueError:
        return False


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
    Controller side of :func:`apt_repository` (a ``FunctionCommand``): make ``path`` on the controller hold the key
    at ``url``, checked to be the key ``fingerprint`` and no other. The key is downloaded at most once per
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
        f"Docker's apt key from {redact(url)} was not accepted: {problem}; nothing was written",
        fg="red",
        log_func=logger.error,
    )
    return False


def _file_holds_only(path: Path, fingerprint: str) -> bool:
    try:
        return _holds_only(path.read_text(encoding="ascii"), fingerprint)
    except (OSError, UnicodeDecodeError):
        return False


# --- operations ----------------------------------------------------------------------------------------------------


def render_sources(uri: str, codename: str, arch: str) -> str:
    """Docker's deb822 source, as its install guide writes it (plus ``Architectures``)."""
    return (
        f"{MANAGED_HEADER}: Docker's apt repository; edits here are overwritten on the next deploy.\n"
        f"Types: deb\nURIs: {uri}\nSuites: {codename}\nComponents: stable\nArchitectures: {arch}\n"
        f"Signed-By: {DOCKER_KEYRING}\n"
    )


def _root_644(entry: Mapping[str, object] | None) -> bool:
    return entry is not None and entry["mode"] == "644" and entry["user"] == "root" and entry["group"] == "root"


@operation()
def apt_repository(
    repository: str,
    distribution: Literal["debian", "ubuntu"],
    codename: str,
    arch: str,
    fingerprint: str = DOCKER_KEY_FINGERPRINT,
    cache_dir: str = "~/.cache/pyinfra-iluvatar/keys",
) -> Generator[Any, None, None]:
    """
    Set up Docker's apt repository the way Docker's install guide does: its key in ``/etc/apt/keyrings/docker.asc``
    (mode 644) and a deb822 source ``/etc/apt/sources.list.d/docker.sources`` signed by it. Refresh the package
    lists afterwards (``_if`` this changed).

    The key is fetched on the controller from ``<repository>/<distribution>/gpg`` (once per run for the whole
    fleet, see :func:`fetch_key`) and must be the key ``fingerprint`` and no other, or the host fails before
    anything on it changes. A keyring already holding exactly that key is kept (only its mode and owner are
    fixed): a converged run downloads nothing and costs one round trip (``facts.docker.DockerAptSources``).

    Another source file under ``/etc/apt/sources.list.d/`` with an entry for the same URI (a ``docker.list`` from
    an older guide) makes apt fail with "Conflicting values set for option Signed-By" when its ``signed-by``
    differs (or is missing, read after ours), and warn "configured multiple times" otherwise: it is disabled by
    renaming it to ``<name>.disabled-by-pyinfra-iluvatar``, never deleted (it is someone else's file; the whole
    file goes, other entries in it included). Commented entries, disabled deb822 stanzas and other URIs do not
    count. An entry for the URI in ``/etc/apt/sources.list`` itself is an ``OperationError`` naming
    the line: that file is the admin's to edit.

    + repository: base URL of Docker's repositories (``https://download.docker.com/linux``, or a mirror of it)
    + distribution: ``debian`` or ``ubuntu`` (the repository's sub-directory)
    + codename: the release (``bookworm``, ``noble``): the source's ``Suites``
    + arch: the Debian architecture (``amd64``, ``arm64``): the source's ``Architectures``
    + fingerprint: the key's V4 fingerprint, 40 hex digits (spaces allowed); Docker's release key by default
    + cache_dir: where the controller keeps the checked key before uploading it

    **Example:**

    .. code:: python

        repo = docker.apt_repository(
            name="Docker's apt repository",
            repository="https://download.docker.com/linux",
            distribution="debian",
            codename="bookworm",
            arch="amd64",
        )
        apt.update(name="Package lists", _if=repo.did_change)
    """
    try:
        base = http_url(repository, base=True)
    except ValueError as error:
        raise OperationValueError(f"repository {redact(str(repository))!r} is not valid: {error}") from None
    if distribution not in DISTRIBUTIONS:
        raise OperationValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")
    if not isinstance(codename, str) or not _CODENAME.fullmatch(codename):
        raise OperationValueError(f"codename must be a release name such as bookworm or noble, got {codename!r}")
    if not isinstance(arch, str) or not _ARCH.fullmatch(arch):
        raise OperationValueError(f"arch must be a Debian architecture such as amd64 or arm64, got {arch!r}")
    wanted = "".join(str(fingerprint).split()).upper()
    if not _FINGERPRINT.fullmatch(wanted):
        raise OperationValueError(f"fingerprint must be a V4 key fingerprint (40 hex digits), got {fingerprint!r}")

    uri = f"{base}/{distribution}"
    found = host.get_fact(DockerAptSources, uri=uri)
    for entry in found["sources_list"]:
        raise OperationError(
            f"{host.name}: {SOURCES_LIST} line {entry['line']} is an entry for {uri} ({entry['text'].strip()!r}); "
            f'beside {DOCKER_SOURCES} apt fails with "Conflicting values set for option Signed-By" (or, when the '
            'signed-by options agree, warns that each target is "configured multiple times"). Remove or comment '
            "out that line: this operation leaves that file to you"
        )
    conflicts = [
        source["path"] for source in found["files"] if source["path"] != DOCKER_SOURCES and source["names_uri"]
    ]
    for path in conflicts:
        if f"{path}{DISABLED_SUFFIX}" in found["disabled"]:
            raise OperationError(
                f"{host.name}: {path} is an entry for {uri} and must be disabled, but {path}{DISABLED_SUFFIX} "
                "(disabled before) is in the way: remove or merge one of them"
            )
    keyring = found["keyring"]
    key_ok = keyring is not None and _holds_only(keyring["content"], wanted)
    content = render_sources(uri, codename, arch)
    own = next((source for source in found["files"] if source["path"] == DOCKER_SOURCES), None)
    own_ok = own is not None and own["lines"] == content.splitlines()
    if key_ok and own_ok and not conflicts and _root_644(keyring) and _root_644(own):
        host.noop(f"Docker's apt repository {uri} {codename} ({arch}) is set up, signed by key {wanted}")
        return

    if not key_ok:
        cached = str(Path(os.path.expanduser(cache_dir)) / f"docker-{wanted}.asc")
        yield FunctionCommand(fetch_key, (f"{uri}/gpg", wanted, cached), {})
        staged = f"{os.path.dirname(DOCKER_KEYRING)}/.{os.path.basename(DOCKER_KEYRING)}.pyinfra-iluvatar-new"
        yield StringCommand("mkdir", "-p", "-m", "755", os.path.dirname(DOCKER_KEYRING))
        yield FileUploadCommand(cached, staged)
        yield StringCommand(
            "chown", "root:root", staged, "&&", "chmod", "644", staged, "&&", "mv", "-f", staged, DOCKER_KEYRING
        )
    elif not _root_644(keyring):
        yield file_utils.chown(DOCKER_KEYRING, "root", "root")
        yield file_utils.chmod(DOCKER_KEYRING, "644")
    for path in conflicts:
        yield StringCommand("mv", QuoteString(path), QuoteString(f"{path}{DISABLED_SUFFIX}"))
    if not own_ok:
        yield from files.put._inner(src=StringIO(content), dest=DOCKER_SOURCES, user="root", group="root", mode="644")
    elif not _root_644(own):
        yield file_utils.chown(DOCKER_SOURCES, "root", "root")
        yield file_utils.chmod(DOCKER_SOURCES, "644")


@operation()
def guide_conflicts_absent() -> Generator[Any, None, None]:
    """
    Remove (``apt-get remove``, not purge: their configuration stays) the packages Docker's install guide says to
    remove before installing from its repository (:data:`GUIDE_CONFLICTS`: ``docker.io``, ``docker-doc``,
    ``docker-compose``, ``podman-docker``, ``containerd``, ``runc``) that are installed. Run it only when Docker's
    repository is the source of Docker: the distribution's ``containerd`` and ``runc`` go too.

    **Example:**

    .. code:: python

        docker.guide_conflicts_absent(name="Packages Docker's guide removes")
    """
    installed = host.get_fact(DebPackages)
    present = [name for name in GUIDE_CONFLICTS if name in installed]
    if not present:
        host.noop(f"none of the packages Docker's install guide removes is installed ({', '.join(GUIDE_CONFLICTS)})")
        return
    yield from apt.packages._inner(packages=present, present=False)


def merge_settings(existing: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """
    ``settings`` merged into ``existing`` key by key: objects in both are merged the same way, any other value of
    ``settings`` replaces the existing one. Existing keys keep their order; new keys follow in ``settings``' order.
    """
    merged = dict(existing)
    for key, value in settings.items():
        current = merged.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            merged[key] = merge_settings(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _canonical(value: Any) -> str:
    """JSON that compares equal only for equal JSON (``true`` is not ``1``, ``1.0`` is not ``1``)."""
    return json.dumps(value, sort_keys=True)


@operation()
def daemon_json(settings: dict[str, Any]) -> Generator[Any, None, None]:
    """
    Merge ``settings`` into ``/etc/docker/daemon.json`` key by key (:func:`merge_settings`: nested objects merged,
    other values replaced), keeping every key already there that ``settings`` does not name. The file is written
    (JSON indented 2, existing keys in their order, then new ones; mode 644) only when the merged content differs
    from what is there, so a second run changes nothing and yields nothing; an absent (or empty) file is created,
    with ``/etc/docker`` (mode 755). A file that is not valid JSON, or not a JSON object, is an ``OperationError``
    naming the file and the parser's message, and is never overwritten. Restart docker ``_if`` this changed: the
    daemon reads the file only when it starts.

    + settings: a JSON object of dockerd settings (``{"storage-driver": "overlay2", "exec-opts":
      ["native.cgroupdriver=systemd"]}``)

    **Example:**

    .. code:: python

        config = docker.daemon_json(
            name="dockerd settings",
            settings={"exec-opts": ["native.cgroupdriver=systemd"], "log-driver": "local"},
        )
        systemd.service(name="Restart docker", service="docker", restarted=True, _if=config.did_change)
    """
    if not isinstance(settings, dict) or not all(isinstance(key, str) for key in settings):
        raise OperationValueError(f"settings must be a JSON object (a dict with string keys), got {settings!r}")
    try:
        json.dumps(settings, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise OperationValueError(f"settings must hold JSON values only: {error}") from None
    lines = host.get_fact(FileContents, path=DAEMON_JSON)
    text = "\n".join(lines or [])
    existing: dict[str, Any] = {}
    if text.strip():
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as error:
            raise OperationError(
                f"{host.name}: {DAEMON_JSON} is not valid JSON ({error}); it is left as it is: fix or remove it"
            ) from None
        if not isinstance(parsed, dict):
            raise OperationError(
                f"{host.name}: {DAEMON_JSON} holds a JSON {type(parsed).__name__}, not an object; it is left as it "
                "is: fix or remove it"
            )
        existing = parsed
    merged = merge_settings(existing, settings)
    if text.strip() and _canonical(merged) == _canonical(existing):
        host.noop(f"{DAEMON_JSON} already has {', '.join(settings) or 'every setting'}")
        return
    if lines is None:
        yield from files.directory._inner(path=os.path.dirname(DAEMON_JSON), user="root", group="root", mode="755")
    content = json.dumps(merged, indent=2) + "\n"
    yield from files.put._inner(
        src=StringIO(content), dest=DAEMON_JSON, user="root", group="root", mode="644", create_remote_dir=False
    )


@operation(is_idempotent=False, idempotent_notice="It waits for the Docker daemon each time it runs: run it with _if=.")
def ready(timeout: int = 60) -> Generator[Any, None, None]:
    """
    Wait until the Docker daemon answers ``docker info`` with its server version (not only an exit status: with
    ``--format '{{json .}}'`` the Docker 20.10 CLI exits 0 while the daemon is down), failing the host after
    ``timeout`` seconds with a message. Use it after a start or restart (``_if=``): it always runs.

    + timeout: seconds to wait

    **Example:**

    .. code:: python

        docker.ready(name="Docker answers", _if=any_changed(config, limits))
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        raise OperationValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    yield (
        "i=0; until [ -n \"$(docker info --format '{{.ServerVersion}}' 2>/dev/null)\" ]; do i=$((i+1)); "
        f'if [ $i -ge {timeout} ]; then echo "pyinfra-iluvatar: the Docker daemon did not answer docker info '
        f'within {timeout}s" >&2; exit 1; fi; sleep 1; done'
    )


def _driver_hint(what: str, wanted: str) -> str:
    if what == "cgroup driver":
        return f' (set "exec-opts": ["native.cgroupdriver={wanted}"] in {DAEMON_JSON} and restart docker)'
    return (
        f' (set "storage-driver": "{wanted}" in {DAEMON_JSON}: without it dockerd takes the first driver the '
        "filesystem under its data root supports)"
    )


@operation(is_idempotent=False, idempotent_notice="It reads the Docker daemon's state each time it runs: use _if=.")
def daemon_as_expected(
    cgroup_driver: str | None = None, storage_driver: str | None = None
) -> Generator[Any, None, None]:
    """
    Check that the Docker daemon answers and, for each one given, uses ``cgroup_driver`` and ``storage_driver``
    (``facts.docker.DockerDaemon``). Changes nothing; a daemon that does not answer, or uses another driver, fails
    this host (not the others) with what it found.

    + cgroup_driver: the cgroup driver dockerd must use (``systemd``, ``cgroupfs``); ``None``: not checked
    + storage_driver: the storage driver dockerd must use (``overlay2``, ``zfs``, ``vfs``); ``None``: not checked

    **Example:**

    .. code:: python

        docker.daemon_as_expected(name="Docker's drivers", cgroup_driver="systemd", storage_driver="overlay2")
    """
    found = host.get_fact(DockerDaemon)
    if not found["answers"]:
        yield fail_host(f"the Docker daemon does not answer: {found['error'] or 'there is no docker CLI on the host'}")
        return
    checked, problems = [], []
    for what, wanted, actual in (
        ("cgroup driver", cgroup_driver, found["cgroup_driver"]),
        ("storage driver", storage_driver, found["storage_driver"]),
    ):
        if wanted is None:
            continue
        if actual != wanted:
            problems.append(f"its {what} is {actual}, not {wanted}{_driver_hint(what, wanted)}")
        checked.append(f"{what} {actual}")
    version = found["server_version"]
    if problems:
        yield fail_host(f"the Docker daemon {version} answers but {'; '.join(problems)}")
        return
    host.noop(f"the Docker daemon {version} answers" + (f" with {' and '.join(checked)}" if checked else ""))


@operation()
def group_members(users: list[str]) -> Generator[Any, None, None]:
    """
    Add each of ``users`` to the ``docker`` group (``usermod -aG``), leaving their other groups alone. Being in it
    lets a user run containers as root on the host: list only who should. A user the host does not have fails this
    host (this operation never creates users). Takes effect at the user's next login.

    + users: existing user names

    **Example:**

    .. code:: python

        docker.group_members(name="Builders run containers", users=["alice"])
    """
    found = host.get_fact(UserGroups, users=list(users))
    if missing := [user for user in users if found.get(user) is None]:
        yield fail_host(f"no such user: {', '.join(missing)} (add users to the docker group only once they exist)")
        return
    joining = [user for user in users if "docker" not in (found[user] or [])]
    if not joining:
        host.noop(f"already in the docker group: {', '.join(users)}")
        return
    for user in joining:
        yield StringCommand("usermod", "-aG", "docker", QuoteString(user))
