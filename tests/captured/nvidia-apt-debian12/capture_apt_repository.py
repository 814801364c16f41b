"""Capture ``facts.apt_repos.AptRepository`` for NVIDIA's container toolkit repository (a flat repository) for real,
on apt trees that never touch this machine's own ``/etc/apt``.

Run as root from the repository root: ``.venv/bin/python tests/captured/nvidia-apt-debian12/capture_apt_repository.py``.
As ``tests/captured/docker-debian12/capture_apt_sources.py`` does: each scenario copies this machine's ``/etc/apt``
into a temporary directory, changes the copy, and runs the fact's own command (and, where noted, ``apt-cache
policy``) inside ``unshare -m`` with that copy bind-mounted over ``/etc/apt`` and a tmpfs over ``/var/cache/apt``:
the private mount namespace goes away with the command. Writes ``NN-apt-repository-<scenario>.txt`` here: the
command (``$ …``), its output, its exit status (``[exit=N]``).
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
from pyinfra_iluvatar.operations.apt_repos import render_sources

HERE = Path(__file__).resolve().parent
KEYS = HERE / "keys"
DOCKER_KEY = HERE.parent / "docker-debian12" / "keys" / "docker-release.asc"

URI = "https://nvidia.github.io/libnvidia-container/stable/deb/amd64"
KEYRING = "/etc/apt/keyrings/nvidia-container-toolkit.asc"
SOURCES = "/etc/apt/sources.list.d/nvidia-container-toolkit.sources"
LABEL = "the nvidia-container-toolkit apt repository"  # signed_repository's default for this sources file
POLICY = "/var/cache/apt/policy"  # on the namespace's tmpfs
APT_LINES = "grep -E '^(E|W):'"  # apt's errors and warnings
GUIDE_KEYRING = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"
GUIDE_LIST = (  # NVIDIA's stable/deb/nvidia-container-toolkit.list after the install guide's sed adds signed-by
    f"deb [signed-by={GUIDE_KEYRING}] https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /\n"
    f"#deb [signed-by={GUIDE_KEYRING}] https://nvidia.github.io/libnvidia-container/experimental/deb/$(ARCH) /\n"
)


def _keyring(root: Path) -> Path:
    return root / "keyrings" / Path(KEYRING).name


def _sources(root: Path) -> Path:
    return root / "sources.list.d" / Path(SOURCES).name


def fresh(root: Path) -> None:
    """This machine's apt tree as it is: Debian's debian.sources, nothing of NVIDIA's."""


def converged(root: Path) -> None:
    """What signed_repository leaves: NVIDIA's key in nvidia-container-toolkit.asc (644) and the flat deb822 source
    as rendered (Suites: /, no Components)."""
    _keyring(root).parent.mkdir(exist_ok=True)
    shutil.copy(KEYS / "nvidia-container-toolkit.asc", _keyring(root))
    _sources(root).write_text(render_sources(URI, ["/"], [], "amd64", KEYRING, LABEL))
    for path in (_keyring(root), _sources(root)):
        path.chmod(0o644)


def guide_list(root: Path) -> None:
    """A host set up by NVIDIA's install guide: nvidia-container-toolkit.list with $(ARCH) in its URI, signed by
    the guide's dearmored keyring under /usr/share/keyrings (outside /etc/apt: not in the copy); nothing of ours."""
    (root / "sources.list.d/nvidia-container-toolkit.list").write_text(GUIDE_LIST)


def stale_guide_list(root: Path) -> None:
    """Our converged files beside the guide's nvidia-container-toolkit.list, plus experimental.list whose active
    entry has $(ARCH) in another URI (the experimental channel: listed, since it holds $(ARCH), but not ours)."""
    converged(root)
    guide_list(root)
    (root / "sources.list.d/experimental.list").write_text(
        "deb https://nvidia.github.io/libnvidia-container/experimental/deb/$(ARCH) /\n"
    )


def sources_list_guide_line(root: Path) -> None:
    """Our converged files, and in /etc/apt/sources.list itself the guide's entry (line 2, $(ARCH) in the URI)."""
    converged(root)
    (root / "sources.list").write_text("deb http://deb.debian.org/debian bookworm main\n" + GUIDE_LIST)


def wrong_key_wrong_modes(root: Path) -> None:
    """nvidia-container-toolkit.asc holds Docker's release key (mode 600), the source is as rendered (mode 640)."""
    converged(root)
    shutil.copy(DOCKER_KEY, _keyring(root))
    _keyring(root).chmod(0o600)
    _sources(root).chmod(0o640)


def appended_key(root: Path) -> None:
    """The converged files, but nvidia-container-toolkit.asc holds NVIDIA's key block followed by a second armored
    block (Docker's release key): apt trusts the keys of every block of an .asc keyring, so this is not NVIDIA's key
    alone."""
    converged(root)
    _keyring(root).write_text((KEYS / "nvidia-container-toolkit.asc").read_text() + DOCKER_KEY.read_text())


SCENARIOS: list[tuple[str, Callable[[Path], None], bool]] = [
    ("fresh", fresh, False),
    ("converged", converged, True),
    ("guide-list", guide_list, True),
    ("stale-guide-list", stale_guide_list, True),
    ("sources-list-guide-line", sources_list_guide_line, True),
    ("wrong-key-wrong-modes", wrong_key_wrong_modes, False),
    ("appended-key", appended_key, False),
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
    command = AptRepository().command(URI, "amd64", KEYRING, SOURCES)
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
        (HERE / f"{number:02d}-apt-repository-{name}.txt").write_text(text)
        print("captured", name)


if __name__ == "__main__":
    main()
