"""What decides whether a signed third-party apt repository is set up this package's way, read in one round trip.

``operations.apt_repos.signed_repository`` reads :class:`AptRepository`; the helpers below (which URI an apt source
line or a deb822 stanza names) are the only parser of apt source files in this package.
"""

from __future__ import annotations

import shlex
from typing import TypedDict

from pyinfra.api.exceptions import FactProcessError
from pyinfra.api.facts import FactBase
from typing_extensions import override

SOURCES_DIR = "/etc/apt/sources.list.d"
SOURCES_LIST = "/etc/apt/sources.list"
KEYRINGS_DIR = "/etc/apt/keyrings"
DISABLED_SUFFIX = ".disabled-by-pyinfra-iluvatar"
"""What ``operations.apt_repos.signed_repository`` appends to the name of another source file it disables."""
KEYRING_LIMIT = 65536
"""Bytes of the keyring the fact reads at most (Docker's key is 3817 bytes; more than this is not one key)."""
ARCH_VARIABLE = "$(ARCH)"
"""What apt replaces with the host's architecture in a source's URI (NVIDIA's guide writes ``…/deb/$(ARCH)``)."""

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
    """The repository's keyring: permissions and content (non-printable bytes read as ``?``)."""

    mode: str
    user: str
    group: str
    content: str


class AptRepositoryInfo(TypedDict):
    uri: str
    arch: str
    files: list[AptSourceFile]
    disabled: list[str]
    sources_list: list[AptSourcesListLine]
    keyring: KeyringFile | None


def _normal(uri: str) -> str:
    return uri.rstrip("/")


def same_uri(entry: str, uri: str, arch: str) -> bool:
    """
    Whether apt reads the source URI ``entry`` as ``uri`` on a host of architecture ``arch``: a trailing ``/`` aside,
    and with ``$(ARCH)`` replaced by ``arch`` as apt does (``…/deb/$(ARCH)`` is ``…/deb/amd64`` on amd64).
    """
    return _normal(entry.replace(ARCH_VARIABLE, arch)) == _normal(uri)


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


def source_names_uri(path: str, lines: list[str], uri: str, arch: str = "") -> bool:
    """
    Whether apt reads an entry for ``uri`` from the source file ``path`` (see :func:`same_uri`; without ``arch`` an
    entry holding ``$(ARCH)`` names no URI).
    """
    if path.endswith(".sources"):
        found = deb822_uris(lines)
    else:
        found = [entry for entry in map(one_line_uri, lines) if entry is not None]
    return any(same_uri(entry, uri, arch) for entry in found if arch or ARCH_VARIABLE not in entry)


def _permissions(line: str, what: str) -> tuple[str, str, str, str]:
    parts = line.split(" ", 4)
    if len(parts) < 4 or not parts[1].isdigit():
        raise FactProcessError(f"malformed {what} line: {line!r}")
    return parts[1], parts[2], parts[3], parts[4] if len(parts) > 4 else ""


class AptRepository(FactBase[AptRepositoryInfo]):
    """
    Returns what decides whether the apt repository at ``uri`` is set up with its key in ``keyring`` and its deb822
    source in ``sources`` (a file under ``/etc/apt/sources.list.d/``), on a host whose architecture is ``arch``, read
    in one round trip:

    - ``files``: every ``*.list`` and ``*.sources`` file under ``/etc/apt/sources.list.d/`` that mentions ``uri`` or
      ``$(ARCH)`` (plus ``sources`` always, when it exists), with its mode, owner, group, lines, and ``names_uri``:
      whether apt reads an entry for that URI from it (a trailing ``/`` aside, and with ``$(ARCH)`` read as
      ``arch``, as apt does: NVIDIA's guide writes ``…/stable/deb/$(ARCH)``; commented lines, disabled stanzas and
      other URIs that merely start with it do not count);
    - ``disabled``: the ``*.disabled-by-pyinfra-iluvatar`` files already there;
    - ``sources_list``: the active entries of ``/etc/apt/sources.list`` for the URI, with their line numbers;
    - ``keyring``: ``keyring`` (mode, owner, group, content), ``None`` when absent.

    Bytes that are not printable ASCII are read as ``?`` (an armored key and a source file are plain text), and
    at most 64 KiB of the keyring is read.

    .. code:: python

        {
            "uri": "https://nvidia.github.io/libnvidia-container/stable/deb/amd64",
            "arch": "amd64",
            "files": [
                {
                    "path": "/etc/apt/sources.list.d/nvidia-container-toolkit.list",
                    "mode": "644",
                    "user": "root",
                    "group": "root",
                    "names_uri": True,
                    "lines": [
                        "deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg]"
                        " https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /",
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
    def default() -> AptRepositoryInfo:
        return {"uri": "", "arch": "", "files": [], "disabled": [], "sources_list": [], "keyring": None}

    @override
    def command(self, uri: str, arch: str, keyring: str, sources: str) -> str:
        printable = "LC_ALL=C tr -c '\\11\\12\\40-\\176' '?'"
        prefixed = "awk '{print \"|\" $0}'"
        mode = "stat -L -c '%a %U %G'"
        patterns = f'-e "$uri" -e {shlex.quote(ARCH_VARIABLE)}'
        keyring, sources = shlex.quote(keyring), shlex.quote(sources)
        return (
            f'uri={shlex.quote(uri)}; arch={shlex.quote(arch)}; echo "uri $uri"; echo "arch $arch"; '
            f"for f in {SOURCES_DIR}/*.list {SOURCES_DIR}/*.sources; do "
            f'if [ -f "$f" ] && {{ [ "$f" = {sources} ] || grep -qsF {patterns} "$f"; }}; then '
            f'echo "file $({mode} "$f") $f"; {printable} < "$f" | {prefixed}; fi; done; '
            f"for f in {SOURCES_DIR}/*{DISABLED_SUFFIX}; do "
            f'if [ -e "$f" ] || [ -L "$f" ]; then echo "disabled $f"; fi; done; '
            f"if [ -f {SOURCES_LIST} ]; then grep -nF {patterns} {SOURCES_LIST} | {printable} | sed 's/^/list /'; fi; "
            f'if [ -f {keyring} ]; then echo "keyring $({mode} {keyring})"; '
            f"head -c {KEYRING_LIMIT} {keyring} | {printable} | {prefixed}; fi; "
            "echo end"
        )

    @override
    def process(self, output: list[str]) -> AptRepositoryInfo:
        complete = len(output) >= 3 and output[-1] == "end"
        if not (complete and output[0].startswith("uri ") and output[1].startswith("arch ")):
            raise FactProcessError(f"apt sources output is not complete: {output[:3]!r} … {output[-1:]!r}")
        uri, arch = output[0][len("uri ") :], output[1][len("arch ") :]
        info = self.default()
        info["uri"], info["arch"] = uri, arch
        keyring_lines: list[str] = []
        current: list[str] | None = None
        for line in output[2:-1]:
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
                named = one_line_uri(text)
                if named is not None and same_uri(named, uri, arch):
                    info["sources_list"].append({"line": int(number), "text": text})
            elif kind == "keyring" and info["keyring"] is None:
                mode, user, group, _ = _permissions(line + " ", "keyring")
                info["keyring"] = {"mode": mode, "user": user, "group": group, "content": ""}
                current = keyring_lines
            else:
                raise FactProcessError(f"unexpected line in apt sources output: {line!r}")
        for source in info["files"]:
            source["names_uri"] = source_names_uri(source["path"], source["lines"], uri, arch)
        if info["keyring"] is not None:
            info["keyring"]["content"] = "".join(f"{line}\n" for line in keyring_lines)
        return info
