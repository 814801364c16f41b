"""Capture ``facts.apt_repos.AptRepository`` for Docker's repository for real, on apt trees that never touch this
machine's own ``/etc/apt``.

Run as root from the repository root: ``.venv/bin/python tests/captured/docker-debian12/capture_apt_sources.py``.
Each scenario copies this machine's ``/etc/apt`` into a temporary directory, changes the copy, and runs the fact's
own command (and, where noted, ``apt-cache policy``) inside ``unshare -m`` with that copy bind-mounted over
``/etc/apt`` and a tmpfs over ``/var/cache/apt``: the private mount namespace goes away with the command. Writes
``NN-<scenario>.txt`` here: the command (``$ …``), its output, its exit status (``[exit=N]``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from pyinfra_iluvatar.facts.apt_repos import AptRepository
from pyinfra_iluvatar.operations.docker import DOCKER_KEYRING, DOCKER_SOURCES, render_sources

HERE = Path(__file__).resolve().parent

URI = "https://download.docker.com/linux/debian"
KEYS = HERE / "keys"
POLICY = "/var/cache/apt/policy"  # on the namespace's tmpfs
APT_LINES = "grep -E '^(E|W):'"  # apt's errors and warnings
OLD_GUIDE_LIST = (
    "deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.gpg] https://download.docker.com/linux/debian bookworm stable\n"
)


def fresh(root: Path) -> None:
    """This machine's apt tree as it is: Debian's debian.sources, no Docker anything."""


def converged(root: Path) -> None:
    """What apt_repository leaves: Docker's real key in docker.asc (644) and docker.sources as rendered."""
    shutil.copy(KEYS / "docker-release.asc", root / "keyrings/docker.asc")
    (root / "sources.list.d/docker.sources").write_text(render_sources(URI, "bookworm", "amd64"))
    for path in (root / "keyrings/docker.asc", root / "sources.list.d/docker.sources"):
        path.chmod(0o644)


def stale_docker_list(root: Path) -> None:
    """An older guide's docker.list (another signed-by) beside our converged files, plus files that only mention
    the URI: a commented entry, a disabled deb822 stanza, the ubuntu repository, a longer URI."""
    converged(root)
    (root / "sources.list.d/docker.list").write_text(OLD_GUIDE_LIST)
    (root / "sources.list.d/notes.list").write_text(
        "# deb https://download.docker.com/linux/debian bookworm stable\n"
        "deb https://download.docker.com/linux/debian-archive bookworm stable\n"
    )
    (root / "sources.list.d/off.sources").write_text(
        f"Enabled: no\nTypes: deb\nURIs: {URI}\nSuites: bookworm\nComponents: stable\n"
    )
    (root / "sources.list.d/ubuntu-docker.list").write_text(
        "deb https://download.docker.com/linux/ubuntu noble stable\n"
    )


def sources_list_line(root: Path) -> None:
    """Our converged files, and in /etc/apt/sources.list itself an entry for the URI (line 3, with a trailing /)
    and a commented one (line 2)."""
    converged(root)
    (root / "sources.list").write_text(
        "deb http://deb.debian.org/debian bookworm main\n"
        "#deb https://download.docker.com/linux/debian bookworm stable\n"
        "deb [arch=amd64] https://download.docker.com/linux/debian/ bookworm stable\n"
    )


def sources_list_signed_by(root: Path) -> None:
    """Our converged files, and in /etc/apt/sources.list an entry for the URI signed by another keyring."""
    converged(root)
    (root / "sources.list").write_text(
        f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {URI} bookworm stable\n"
    )


def unsigned_list(root: Path) -> None:
    """Our converged files, and x.list (read after docker.sources) with an entry for the URI and no signed-by."""
    converged(root)
    (root / "sources.list.d/x.list").write_text(f"deb {URI} bookworm stable\n")


def wrong_key_and_modes(root: Path) -> None:
    """docker.asc holds Debian's bookworm release key (mode 600), docker.sources an older suite (mode 640), a
    docker.list and a docker.list.disabled-by-pyinfra-iluvatar from an earlier run."""
    shutil.copy(KEYS / "debian-12-bookworm-stable-release.asc", root / "keyrings/docker.asc")
    (root / "keyrings/docker.asc").chmod(0o600)
    (root / "sources.list.d/docker.sources").write_text(render_sources(URI, "bullseye", "amd64"))
    (root / "sources.list.d/docker.sources").chmod(0o640)
    (root / "sources.list.d/docker.list").write_text(OLD_GUIDE_LIST)
    (root / "sources.list.d/docker.list.disabled-by-pyinfra-iluvatar").write_text(OLD_GUIDE_LIST)


def wrong_key_and_modes_only(root: Path) -> None:
    """As wrong-key-and-modes, without the docker.list.disabled-by-pyinfra-iluvatar of an earlier run."""
    wrong_key_and_modes(root)
    (root / "sources.list.d/docker.list.disabled-by-pyinfra-iluvatar").unlink()


def modes_only(root: Path) -> None:
    """The converged files with other modes and group: docker.asc 600, docker.sources 664 group adm."""
    converged(root)
    (root / "keyrings/docker.asc").chmod(0o600)
    (root / "sources.list.d/docker.sources").chmod(0o664)
    shutil.chown(root / "sources.list.d/docker.sources", group="adm")


def binary_keyring(root: Path) -> None:
    """docker.asc holds the key dearmored (what `gpg --dearmor` gives): apt needs .asc files armored."""
    converged(root)
    dearmored = subprocess.run(
        ["gpg", "--dearmor"], input=(KEYS / "docker-release.asc").read_bytes(), capture_output=True, check=True
    ).stdout
    (root / "keyrings/docker.asc").write_bytes(dearmored[:300])  # the first 300 bytes: enough to show the shape


SCENARIOS: list[tuple[str, Callable[[Path], None], bool]] = [
    ("fresh", fresh, False),
    ("converged", converged, True),
    ("stale-docker-list", stale_docker_list, True),
    ("sources-list-line", sources_list_line, True),
    ("wrong-key-and-modes", wrong_key_and_modes, False),
    ("binary-keyring", binary_keyring, False),
    ("sources-list-signed-by", sources_list_signed_by, True),
    ("unsigned-list", unsigned_list, True),
    ("wrong-key-and-modes-only", wrong_key_and_modes_only, False),
    ("modes-only", modes_only, False),
]


def in_namespace(root: Path, command: str) -> subprocess.CompletedProcess[str]:
    script = (
        f"mount --bind {root} /etc/apt && mount -t tmpfs tmpfs /var/cache/apt"
        f" && mkdir -p /var/cache/apt/archives/partial && {{ {command}; }}"
    )
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, check=False)


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root (unshare -m, mount)")
    command = AptRepository().command(URI, "amd64", DOCKER_KEYRING, DOCKER_SOURCES)
    for number, (name, prepare, with_apt) in enumerate(SCENARIOS, start=1):
        with tempfile.TemporaryDirectory() as temporary:
            root = Path(temporary) / "apt"
            shutil.copytree("/etc/apt", root, symlinks=True)
            prepare(root)
            result = in_namespace(root, command)
            text = f"# {prepare.__doc__}\n$ {command}\n{result.stdout}{result.stderr}[exit={result.returncode}]\n"
            if with_apt:
                policy = in_namespace(root, f"apt-cache policy > {POLICY} 2>&1; rc=$?; {APT_LINES} {POLICY}; exit $rc")
                text += f"\n$ apt-cache policy 2>&1 | {APT_LINES}\n{policy.stdout}{policy.stderr}"
                text += f"[exit={policy.returncode}]\n"
        (HERE / f"{number:02d}-apt-sources-{name}.txt").write_text(text)
        print("captured", name)


if __name__ == "__main__":
    main()
