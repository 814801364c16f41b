"""Facts about the Docker daemon, as the Ilúvatar worker needs it (isolation and the NVIDIA runtime)."""

from __future__ import annotations

import json
import shlex
from typing import Any, TypedDict

from pyinfra.api.exceptions import FactProcessError
from pyinfra.api.facts import FactBase
from typing_extensions import override

from pyinfra_iluvatar.facts._inband import merged, split_merged


class DockerDaemonInfo(TypedDict):
    """Whether the Docker daemon answers, and the parts of ``docker info`` a worker depends on."""

    answers: bool
    server_version: str | None
    runtimes: list[str]
    default_runtime: str | None
    cgroup_driver: str | None
    storage_driver: str | None
    error: str | None


def _text(info: dict[str, Any], key: str) -> str | None:
    value = info.get(key)
    return value if isinstance(value, str) and value else None


class DockerDaemon(FactBase[DockerDaemonInfo]):
    """
    Returns whether the Docker daemon answers the ``docker`` CLI and, when it does, its version,
    registered runtimes (sorted names, e.g. ``["io.containerd.runc.v2", "nvidia", "runc"]``), default
    runtime, cgroup driver and storage driver. When it does not answer, ``answers`` is ``False`` and
    ``error`` holds what the CLI said. Without a ``docker`` CLI on the host the fact returns its default:
    ``answers`` ``False``, ``error`` ``None``, everything else empty.

    Runs ``docker info --format '{{json .}}'`` with stderr folded into stdout and the exit status
    appended as a last line. pyinfra's own ``docker.DockerSystemInfo`` runs the same query but does
    not hold up for this: with the daemon down, the Docker 28 CLI (seen here) exits 1, which fails
    the host, while the Docker 20.10 CLI exits 0 and ``DockerSystemInfo`` returns its
    ``{"ServerErrors": [...]}`` document as if it were the daemon's info. Both are handled here. For
    the client version alone, pyinfra's ``docker.DockerVersion`` (``docker --version``) holds up and
    is the one to use.

    .. code:: python

        {
            "answers": True,
            "server_version": "20.10.24+dfsg1",
            "runtimes": ["io.containerd.runc.v2", "io.containerd.runtime.v1.linux", "nvidia", "runc"],
            "default_runtime": "runc",
            "cgroup_driver": "cgroupfs",
            "storage_driver": "vfs",
            "error": None,
        }
    """

    @override
    def requires_command(self) -> str:
        return "docker"

    @staticmethod
    @override
    def default() -> DockerDaemonInfo:
        return {
            "answers": False,
            "server_version": None,
            "runtimes": [],
            "default_runtime": None,
            "cgroup_driver": None,
            "storage_driver": None,
            "error": None,
        }

    @override
    def command(self) -> str:
        return merged("docker info --format '{{json .}}'")

    @override
    def process(self, output: list[str]) -> DockerDaemonInfo:
        body, exit_code = split_merged([line.strip() for line in output if line.strip()], "docker info")
        json_lines = [line for line in body if line.startswith("{")]
        messages = [line for line in body if not line.startswith("{")]
        info: dict[str, Any] = {}
        for json_line in json_lines:
            try:
                info.update(json.loads(json_line))
            except ValueError as error:
                raise FactProcessError(f"docker info printed invalid JSON: {error}") from error
        server_errors = [str(error) for error in info.get("ServerErrors") or []]
        server_version = _text(info, "ServerVersion")
        answers = exit_code == 0 and server_version is not None and not server_errors
        if not answers:
            errors = server_errors + messages
            if not errors:
                raise FactProcessError(f"docker info gave neither a server version nor an error: {output!r}")
            return {**self.default(), "error": "\n".join(errors)}
        return {
            "answers": True,
            "server_version": server_version,
            "runtimes": sorted(info.get("Runtimes") or {}),
            "default_runtime": _text(info, "DefaultRuntime"),
            "cgroup_driver": _text(info, "CgroupDriver"),
            "storage_driver": _text(info, "Driver"),
            "error": None,
        }


SOURCES_DIR = "/etc/apt/sources.list.d"
SOURCES_LIST = "/etc/apt/sources.list"
DOCKER_KEYRING = "/etc/apt/keyrings/docker.asc"
DOCKER_SOURCES = f"{SOURCES_DIR}/docker.sources"
DISABLED_SUFFIX = ".disabled-by-pyinfra-iluvatar"
"""What ``operations.docker.apt_repository`` appends to the name of another source file it disables."""
KEYRING_LIMIT = 65536
"""Bytes of the keyring the fact reads at most (Docker's key is 3817 bytes; more than this is not one key)."""

_FALSE = frozenset(("no", "false", "without", "off", "disable", "0"))
"""The values apt reads as false in a deb822 ``Enabled:`` field."""


class AptSourceFile(TypedDict):
    """A file under ``/etc/apt/sources.list.d/``: its permissions, its lines, and whether apt reads the URI from it."""

    path: str
    mode: str
    user: str
    group: str
    names_uri: bool
    lines: list[str]


class AptSourcesListLine(TypedDict):
    """A line of ``/etc/apt/sources.list`` that is an active ``deb``/``deb-src`` entry for the URI."""

    line: int
    text: str


class KeyringFile(TypedDict):
    """``/etc/apt/keyrings/docker.asc``: permissions and content (non-printable bytes read as ``?``)."""

    mode: str
    user: str
    group: str
    content: str


class DockerAptSourcesInfo(TypedDict):
    uri: str
    files: list[AptSourceFile]
    disabled: list[str]
    sources_list: list[AptSourcesListLine]
    keyring: KeyringFile | None


def _normal(uri: str) -> str:
    return uri.rstrip("/")


def one_line_uri(line: str) -> str | None:
    """The URI of an active one-line-style entry (``deb [options] URI suite …``), else ``None``."""
    words = line.split("#", 1)[0].split()
    if len(words) < 2 or words[0] not in ("deb", "deb-src"):
        return None
    index = 1
    if words[index].startswith("["):
        while index < len(words) and not words[index].endswith("]"):
            index += 1
        index += 1
    return words[index] if index < len(words) else None


def deb822_uris(lines: list[str]) -> list[str]:
    """The URIs of every enabled ``deb``/``deb-src`` stanza of a deb822 ``.sources`` file."""
    stanzas: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    key = None
    for line in [*lines, ""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields:
                stanzas.append(fields)
            fields, key = {}, None
        elif line[0] in " \t":
            if key is not None:
                fields[key] += " " + line.strip()
        else:
            name, sep, value = line.partition(":")
            if sep:
                key = name.strip().lower()
                fields[key] = value.strip()
    uris = []
    for stanza in stanzas:
        types = stanza.get("types", "").split()
        if stanza.get("enabled", "yes").strip().lower() in _FALSE or not {"deb", "deb-src"} & set(types):
            continue
        uris += stanza.get("uris", "").split()
    return uris


def source_names_uri(path: str, lines: list[str], uri: str) -> bool:
    """Whether apt reads an entry for ``uri`` (a trailing ``/`` aside) from the source file ``path``."""
    if path.endswith(".sources"):
        found = deb822_uris(lines)
    else:
        found = [entry for entry in map(one_line_uri, lines) if entry is not None]
    return any(_normal(entry) == _normal(uri) for entry in found)


def _permissions(line: str, what: str) -> tuple[str, str, str, str]:
    parts = line.split(" ", 4)
    if len(parts) < 4 or not parts[1].isdigit():
        raise FactProcessError(f"malformed {what} line: {line!r}")
    return parts[1], parts[2], parts[3], parts[4] if len(parts) > 4 else ""


class DockerAptSources(FactBase[DockerAptSourcesInfo]):
    """
    Returns what decides whether Docker's apt repository at ``uri`` is set up the install guide's way, read in
    one round trip:

    - ``files``: every ``*.list`` and ``*.sources`` file under ``/etc/apt/sources.list.d/`` that mentions ``uri``
      (plus ``docker.sources`` always, when it exists), with its mode, owner, group, lines, and ``names_uri``:
      whether apt reads an entry for that URI from it (commented lines, disabled stanzas and other URIs that
      merely start with it do not count);
    - ``disabled``: the ``*.disabled-by-pyinfra-iluvatar`` files already there;
    - ``sources_list``: the active entries of ``/etc/apt/sources.list`` for the URI, with their line numbers;
    - ``keyring``: ``/etc/apt/keyrings/docker.asc`` (mode, owner, group, content), ``None`` when absent.

    Bytes that are not printable ASCII are read as ``?`` (an armored key and a source file are plain text), and
    at most 64 KiB of the keyring is read.

    .. code:: python

        {
            "uri": "https://download.docker.com/linux/debian",
            "files": [
                {
                    "path": "/etc/apt/sources.list.d/docker.list",
                    "mode": "644",
                    "user": "root",
                    "group": "root",
                    "names_uri": True,
                    "lines": [
                        "deb [signed-by=/etc/apt/keyrings/docker.gpg] https://download.docker.com/linux/debian bookworm"
                        " stable",
                    ],
                },
            ],
            "disabled": [],
            "sources_list": [],
            "keyring": {"mode": "644", "user": "root", "group": "root", "content": "-----BEGIN PGP PUBLIC …"},
        }
    """

    @staticmethod
    @override
    def default() -> DockerAptSourcesInfo:
        return {"uri": "", "files": [], "disabled": [], "sources_list": [], "keyring": None}

    @override
    def command(self, uri: str) -> str:
        printable = "LC_ALL=C tr -c '\\11\\12\\40-\\176' '?'"
        prefixed = "awk '{print \"|\" $0}'"
        mode = "stat -L -c '%a %U %G'"
        return (
            f'uri={shlex.quote(uri)}; echo "uri $uri"; '
            f"for f in {SOURCES_DIR}/*.list {SOURCES_DIR}/*.sources; do "
            f'if [ -f "$f" ] && {{ [ "$f" = {DOCKER_SOURCES} ] || grep -qsF -e "$uri" "$f"; }}; then '
            f'echo "file $({mode} "$f") $f"; {printable} < "$f" | {prefixed}; fi; done; '
            f"for f in {SOURCES_DIR}/*{DISABLED_SUFFIX}; do "
            f'if [ -e "$f" ] || [ -L "$f" ]; then echo "disabled $f"; fi; done; '
            f"if [ -f {SOURCES_LIST} ]; then grep -nF -e \"$uri\" {SOURCES_LIST} | {printable} | sed 's/^/list /'; fi; "
            f'if [ -f {DOCKER_KEYRING} ]; then echo "keyring $({mode} {DOCKER_KEYRING})"; '
            f"head -c {KEYRING_LIMIT} {DOCKER_KEYRING} | {printable} | {prefixed}; fi; "
            "echo end"
        )

    @override
    def process(self, output: list[str]) -> DockerAptSourcesInfo:
        if not output or not output[0].startswith("uri ") or output[-1] != "end":
            raise FactProcessError(f"apt sources output is not complete: {output[:3]!r} … {output[-1:]!r}")
        uri = output[0][len("uri ") :]
        info = self.default()
        info["uri"] = uri
        keyring_lines: list[str] = []
        current: list[str] | None = None
        for line in output[1:-1]:
            if line.startswith("|"):
                if current is None:
                    raise FactProcessError(f"file content outside a file: {line!r}")
                current.append(line[1:])
                continue
            current = None
            kind = line.split(" ", 1)[0]
            if kind == "file":
                mode, user, group, path = _permissions(line, "file")
                entry: AptSourceFile = {
                    "path": path,
                    "mode": mode,
                    "user": user,
                    "group": group,
                    "names_uri": False,
                    "lines": [],
                }
                info["files"].append(entry)
                current = entry["lines"]
            elif kind == "disabled":
                info["disabled"].append(line[len("disabled ") :])
            elif kind == "list":
                number, sep, text = line[len("list ") :].partition(":")
                if not sep or not number.isdigit():
                    raise FactProcessError(f"malformed {SOURCES_LIST} line: {line!r}")
                if _normal(one_line_uri(text) or "") == _normal(uri):
                    info["sources_list"].append({"line": int(number), "text": text})
            elif kind == "keyring" and info["keyring"] is None:
                mode, user, group, _ = _permissions(line + " ", "keyring")
                info["keyring"] = {"mode": mode, "user": user, "group": group, "content": ""}
                current = keyring_lines
            else:
                raise FactProcessError(f"unexpected line in apt sources output: {line!r}")
        for source in info["files"]:
            source["names_uri"] = source_names_uri(source["path"], source["lines"], uri)
        if info["keyring"] is not None:
            info["keyring"]["content"] = "".join(f"{line}\n" for line in keyring_lines)
        return info


class UserGroups(FactBase["dict[str, list[str] | None]"]):
    """
    Returns each of ``users``' groups (``id -nG``), ``None`` for a user the host does not have. (pyinfra's own
    ``server.Users`` reads ``/etc/shadow`` too, so its output — which ``-vvv`` prints — would hold password hashes.)

    Runs ``id -nG USER`` for each user.

    .. code:: python

        {"alice": ["alice", "sudo", "docker"], "bob": None}
    """

    @override
    def command(self, users: list[str]) -> str:
        lines = []
        for user in users:
            quoted = shlex.quote(user)
            lines.append(f"printf '%s:%s\\n' {quoted} \"$(id -nG {quoted} 2>/dev/null || echo '!missing')\"")
        return "; ".join(lines) or "true"

    @override
    def process(self, output: list[str]) -> dict[str, list[str] | None]:
        groups: dict[str, list[str] | None] = {}
        for line in output:
            user, sep, found = line.partition(":")
            if not sep or not user:
                raise FactProcessError(f"unexpected line from id -nG: {line!r}")
            groups[user] = None if found == "!missing" else found.split()
        return groups
