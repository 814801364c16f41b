"""``pyinfra @local deploys/build.py --dry`` on this machine, as on a researcher's workstation: it shows what would
change and changes nothing. (This machine runs no systemd, so the Docker engine, whose deploy reads systemd's state,
is left to the sandbox tests: Podman is chosen here; and the distribution's Rust, as rustup needs a lock file.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = Path(sys.executable).parent / "pyinfra"


def test_a_dry_run_on_this_machine_shows_what_would_change(tmp_path: Path) -> None:
    argv = [
        str(PYINFRA),
        "@local",
        str(ROOT / "deploys" / "build.py"),
        "--dry",
        "--data",
        "iluvatar_build_engine=podman",
        "--data",
        "iluvatar_rust_source=distribution",
    ]
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Detected changes" in output and "Ilúvatar build host" in output, output
    assert "ansible 10.7.0 in /opt/iluvatar-ansible" in output
    assert not Path("/opt/iluvatar-ansible").exists()  # shown, not made


def test_a_missing_build_user_is_refused_before_any_change(tmp_path: Path) -> None:
    argv = [
        str(PYINFRA),
        "@local",
        str(ROOT / "deploys" / "build.py"),
        "--dry",
        "--data",
        "iluvatar_build_user=nobody-xyz",
    ]
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "@local: iluvatar_build_user = 'nobody-xyz' (--data) is not a user on this host (getent passwd)" in output


def test_rustup_needs_it_in_the_lock_file(tmp_path: Path) -> None:
    (tmp_path / "iluvatar.lock.json").write_text('{"format": 1, "components": {}}')
    argv = [str(PYINFRA), "@local", str(ROOT / "deploys" / "build.py"), "--dry"]
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "has no component 'rustup' (it has none): run `pyinfra-iluvatar lock --rustup latest --lock-file" in output
