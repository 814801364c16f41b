"""SSH for the sandbox: the client key, each host's host key, the known_hosts file, and the ``ssh`` command line.

One ed25519 key per sandbox logs in as root on every host. Each host gets its own ed25519 host key when it is
created, and the sandbox writes the public halves to its own known_hosts file, so pyinfra and ``ssh`` check host
keys strictly without ever touching the user's ``~/.ssh/known_hosts``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pyinfra_iluvatar.sandbox.processes import run

CLIENT_KEY = "id_ed25519"
KNOWN_HOSTS = "known_hosts"


def client_key(state_dir: Path) -> Path:
    """The sandbox's login key (private half), generated on first use."""
    key = state_dir / CLIENT_KEY
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pyinfra-iluvatar-sandbox", "-f", str(key)])
    return key


def generate_host_key(root: Path, name: str) -> str:
    """Give the host whose root is ``root`` a new ed25519 host key; return its public line."""
    key = root / "etc/ssh/ssh_host_ed25519_key"
    key.unlink(missing_ok=True)
    key.with_suffix(".pub").unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", str(key)])
    return key.with_suffix(".pub").read_text().strip()


def write_known_hosts(state_dir: Path, keys: Iterable[tuple[str, str]]) -> Path:
    """Write ``(address, public key line)`` pairs as the sandbox's known_hosts file."""
    path = state_dir / KNOWN_HOSTS
    lines = []
    for address, public in keys:
        key_type, key_data = public.split()[:2]
        lines.append(f"{address} {key_type} {key_data}\n")
    path.write_text("".join(lines))
    return path


def command(state_dir: Path, address: str, *remote: str) -> list[str]:
    """``ssh`` as root to ``address`` with the sandbox's key and known_hosts, strict, ignoring ``~/.ssh/config``."""
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        str(state_dir / CLIENT_KEY),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={state_dir / KNOWN_HOSTS}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "LogLevel=ERROR",
        f"root@{address}",
        *remote,
    ]
