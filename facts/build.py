"""Facts about a build host: the Rust toolchain, ``cross`` and ansible a build user runs."""

from __future__ import annotations

import re
import shlex
from typing import TypedDict

from pyinfra.api.exceptions import FactProcessError
from pyinfra.api.facts import FactBase
from typing_extensions import override

TOOLS = ("rustup", "rustc", "cargo", "cross")
"""The programs looked up on the build user's ``PATH`` (``~/.cargo/bin`` first, as rustup and cargo install put
them)."""
ANSIBLE_DISTRIBUTIONS = ("ansible", "ansible-core")

_VERSION = re.compile(r"\b(\d+\.\d+\.\d+[0-9A-Za-z.+~-]*)")
_TOOL_LINE = re.compile(r"(?P<name>rustup|rustc|cargo|cross) (?P<path>-|/\S+)(?: (?P<said>.*))?")
_TOOLCHAIN_LINE = re.compile(r"toolchain (?P<name>[A-Za-z0-9._-]+)(?: \((?P<notes>[a-z, ]+)\))?")
_PACKAGE_LINE = re.compile(r"(?P<name>ansible|ansible-core) (?P<version>-|\S+)")


class Tool(TypedDict):
    """One program: where the build user's ``PATH`` finds it, and the version its ``--version`` reports."""

    path: str
    version: str | None
    said: str
    """The first line ``--version`` printed (``None`` version: not a version this fact recognises)."""


class Toolchain(TypedDict):
    """One toolchain rustup has installed for the user (``stable-x86_64-unknown-linux-gnu``), and whether it is the
    default."""

    name: str
    default: bool


class BuildToolsInfo(TypedDict):
    """What a build user has: each of :data:`TOOLS` (``None``: not found), the toolchains its rustup has installed,
    and the ansible packages' versions in the virtualenv (``None``: not installed there, or no virtualenv)."""

    rustup: Tool | None
    toolchains: list[Toolchain]
    rustc: Tool | None
    cargo: Tool | None
    cross: Tool | None
    ansible: str | None
    ansible_core: str | None


class BuildTools(FactBase[BuildToolsInfo]):
    """
    Returns the rustup, Rust toolchain and ``cross`` that ``user`` runs (looked up on its ``~/.cargo/bin``, its
    home from ``getent passwd``, then ``/usr/local/bin``, ``/usr/bin``, ``/bin``; each one's path and the version its
    ``--version`` reports, run from ``/`` with the user's ``HOME`` and ``RUSTUP_AUTO_INSTALL=0`` so that a rustup
    proxy answers without installing anything), the toolchains its rustup lists (``rustup toolchain list``), and
    the versions of the ``ansible`` and ``ansible-core`` distributions installed in the virtualenv ``venv`` (read
    with that virtualenv's own Python). One round trip; runs nothing as the user.
    """

    @override
    def command(self, user: str, venv: str) -> str:
        path = '"$h/.cargo/bin:/usr/local/bin:/usr/bin:/bin"'
        python = shlex.quote(f"{venv}/bin/python")
        script = "import importlib.metadata as m\nfor d in ('ansible', 'ansible-core'):\n"
        script += "    try: print(d, m.version(d))\n    except m.PackageNotFoundError: print(d, '-')"
        home_ = '"$h"'
        return (
            f'h=$(getent passwd {shlex.quote(user)} | cut -d: -f6); [ -n "$h" ] || h=/nonexistent;'
            f" cd / && for tool in {' '.join(TOOLS)}; do"
            f' p=$(PATH={path} command -v "$tool");'
            f' if [ -n "$p" ]; then v=$(HOME={home_} RUSTUP_AUTO_INSTALL=0 "$p" --version 2>/dev/null </dev/null);'
            ' printf \'%s %s %s\\n\' "$tool" "$p" "$(echo "$v" | head -n 1)";'
            ' else echo "$tool -"; fi; done;'
            f' r=$(PATH={path} command -v rustup) && HOME={home_} RUSTUP_AUTO_INSTALL=0 "$r" toolchain list 2>/dev/null'
            " | sed -n 's/^\\([A-Za-z0-9._-]*\\)\\( (\\([a-z, ]*\\))\\)\\{0,1\\}$/toolchain &/p';"
            f" if [ -x {python} ]; then {python} -c {shlex.quote(script)};"
            " else echo 'ansible -'; echo 'ansible-core -'; fi"
        )

    @override
    def process(self, output: list[str]) -> BuildToolsInfo:
        found: BuildToolsInfo = {
            "rustup": None,
            "toolchains": [],
            "rustc": None,
            "cargo": None,
            "cross": None,
            "ansible": None,
            "ansible_core": None,
        }
        for line in output:
            tool = _TOOL_LINE.fullmatch(line)
            toolchain = None if tool else _TOOLCHAIN_LINE.fullmatch(line)
            package = None if tool or toolchain else _PACKAGE_LINE.fullmatch(line)
            if toolchain:
                notes = (toolchain["notes"] or "").split(", ")
                found["toolchains"].append({"name": toolchain["name"], "default": "default" in notes})
                continue
            if tool and tool["path"] != "-":
                said = (tool["said"] or "").strip()
                version = _VERSION.search(said)
                found[tool["name"]] = {  # type: ignore[literal-required]
                    "path": tool["path"],
                    "version": version[1] if version else None,
                    "said": said,
                }
            elif package:
                key = "ansible" if package["name"] == "ansible" else "ansible_core"
                found[key] = None if package["version"] == "-" else package["version"]  # type: ignore[literal-required]
            elif not tool:
                raise FactProcessError(f"unexpected line: {line!r}")
        return found


class GitCheckoutInfo(TypedDict):
    """A directory that should be a git checkout: what it is, what it has checked out, what ``ref`` is upstream."""

    exists: bool
    empty: bool
    head: str | None
    """The commit checked out (``None``: not a git checkout)."""
    origin: str | None
    remote: dict[str, str]
    """``git ls-remote origin`` for the ref: ref name (``refs/heads/master``, ``refs/tags/v1^{}``) -> commit."""
    built: str | None
    """What this package's last build there recorded (``<commit> <target> <platform>``), ``None`` when none."""


BUILD_STAMP = ".git/pyinfra-iluvatar-build"
"""Where the build operation records what it built, inside ``.git`` (never a file git would show)."""
COMMIT = re.compile(r"[0-9a-f]{40}")
"""A full commit name (SHA-1)."""


class GitCheckout(FactBase[GitCheckoutInfo]):
    """
    Returns whether ``path`` exists (and is empty), the commit checked out there and its ``origin`` when it is the
    top of a git checkout (not a directory inside another one), what ``git ls-remote origin`` says of ``ref`` (its
    branch, its tag and the tag's commit; nothing asked when ``ref`` is a commit), and the build stamp
    (:data:`BUILD_STAMP`). Reads only; asks the remote, so it needs the network the checkout came from. Git runs as
    root with the checkout marked safe for this one command.
    """

    @override
    def command(self, path: str, ref: str) -> str:
        where = shlex.quote(path)
        git = f"git -c safe.directory={where} -C {where}"
        refs = (
            ""
            if COMMIT.fullmatch(ref)
            else " ".join(
                shlex.quote(name) for name in (f"refs/heads/{ref}", f"refs/tags/{ref}", f"refs/tags/{ref}^{{}}")
            )
        )
        remote = f" {git} ls-remote origin {refs} 2>/dev/null | sed 's/^/remote /';" if refs else ""
        return (
            f"if [ ! -e {where} ]; then echo 'exists no'; exit 0; fi; echo 'exists yes';"
            f' [ -z "$(ls -A {where} 2>/dev/null)" ] && echo empty;'
            f' [ "$({git} rev-parse --show-toplevel 2>/dev/null)" = "$(cd {where} && pwd -P)" ] || exit 0;'
            f' h=$({git} rev-parse --verify -q HEAD 2>/dev/null) || exit 0; echo "head $h";'
            f' echo "origin $({git} config --get remote.origin.url)";{remote}'
            f" [ -f {where}/{BUILD_STAMP} ] && sed 's/^/built /' {where}/{BUILD_STAMP}; true"
        )

    @override
    def process(self, output: list[str]) -> GitCheckoutInfo:
        found: GitCheckoutInfo = {
            "exists": False,
            "empty": False,
            "head": None,
            "origin": None,
            "remote": {},
            "built": None,
        }
        for line in output:
            key, _, value = line.partition(" ")
            if key == "exists" and value in ("yes", "no"):
                found["exists"] = value == "yes"
            elif key == "empty" and not value:
                found["empty"] = True
            elif key == "head" and COMMIT.fullmatch(value):
                found["head"] = value
            elif key == "origin":
                found["origin"] = value or None
            elif key == "remote" and (parts := value.split("\t")) and len(parts) == 2 and COMMIT.fullmatch(parts[0]):
                found["remote"][parts[1]] = parts[0]
            elif key == "built":
                found["built"] = value
            else:
                raise FactProcessError(f"unexpected line: {line!r}")
        return found


def ref_commit(ref: str, remote: dict[str, str]) -> str | None:
    """The commit ``ref`` names: itself when it is a commit, else its tag's commit, its tag, or its branch."""
    if COMMIT.fullmatch(ref):
        return ref
    for name in (f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", f"refs/heads/{ref}"):
        if name in remote:
            return remote[name]
    return None
