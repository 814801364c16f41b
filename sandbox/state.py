"""The sandbox's state file, ``STATE_DIR/state.json``: what runs, where, so that later commands find it.

Written before anything starts and after each change, atomically (a crash leaves the old file or the new one).
Everything the sandbox creates lives under the state directory, so a lost or damaged state file still leaves
``down`` able to find its processes and mounts (see :mod:`.host`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyinfra_iluvatar.sandbox.errors import SandboxError
from pyinfra_iluvatar.sandbox.processes import ProcessRef

FORMAT = 2
STATE_FILE = "state.json"


@dataclass
class HostRecord:
    """
    One host: inventory name and group, nspawn machine name, address, machine-id, Debian architecture, the image
    it runs on, its nspawn process.
    """

    name: str
    group: str
    machine: str
    address: str
    machine_id: str
    arch: str
    image: str
    process: ProcessRef | None = None


@dataclass
class ProxyRecord:
    """The proxy daemon on the gateway: port, allowlist, process."""

    port: int
    allow: list[str]
    process: ProcessRef | None = None


@dataclass
class SandboxState:
    """Everything ``sandbox up`` made: the network, the Debian suite of the hosts, the proxy and the hosts."""

    net: int
    suite: str
    proxy: ProxyRecord
    hosts: list[HostRecord] = field(default_factory=list)

    def host(self, name: str) -> HostRecord:
        """The host called ``name``; :class:`SandboxError` naming the hosts there are if none is."""
        for record in self.hosts:
            if record.name == name:
                return record
        raise SandboxError(f"no sandbox host {name!r}; hosts: {', '.join(h.name for h in self.hosts) or 'none'}")


def _process(value: Any) -> ProcessRef | None:
    if value is None:
        return None
    return ProcessRef(int(value["pid"]), int(value["start_time"]))


def load(state_dir: Path) -> SandboxState | None:
    """The state in ``state_dir``; None when there is none; :class:`SandboxError` when it cannot be read."""
    path = state_dir / STATE_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise SandboxError(f"cannot read the sandbox state {path}: {error}") from error
    try:
        if raw["format"] != FORMAT:
            raise SandboxError(f"{path} has format {raw['format']}, this version reads {FORMAT}")
        proxy = raw["proxy"]
        return SandboxState(
            net=int(raw["net"]),
            suite=str(raw["suite"]),
            proxy=ProxyRecord(int(proxy["port"]), [str(a) for a in proxy["allow"]], _process(proxy["process"])),
            hosts=[
                HostRecord(
                    name=str(h["name"]),
                    group=str(h["group"]),
                    machine=str(h["machine"]),
                    address=str(h["address"]),
                    machine_id=str(h["machine_id"]),
                    arch=str(h["arch"]),
                    image=str(h["image"]),
                    process=_process(h["process"]),
                )
                for h in raw["hosts"]
            ],
        )
    except (KeyError, TypeError, ValueError) as error:
        raise SandboxError(f"the sandbox state {path} is damaged ({error!r})") from error


def save(state_dir: Path, state: SandboxState) -> None:
    """Write ``state`` to ``state_dir`` atomically."""
    path = state_dir / STATE_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"format": FORMAT, **asdict(state)}, indent=2) + "\n")
    os.replace(temporary, path)
