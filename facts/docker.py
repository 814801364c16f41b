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
