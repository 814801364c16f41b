"""Capture ``facts.build.BuildTools`` on this machine: run as root from a checkout, after making the ansible
virtualenv the second case reads (``python3 -m venv /tmp/ilu-venv && /tmp/ilu-venv/bin/pip install ansible==10.7.0``).
Writes ``<case>.txt`` here (the command, its output, its exit status) and the fact fixtures in
``tests/facts/build.BuildTools/``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from pyinfra_iluvatar.facts.build import BuildTools

HERE = Path(__file__).parent
FIXTURES = HERE.parent.parent / "facts" / "build.BuildTools"
CASES = {
    "rustup_toolchain_no_venv": (
        "root",
        "/opt/iluvatar-ansible",
        "rustup 1.29.0 with its stable (default) and nightly toolchains, rustc and cargo 1.95.0 in /root/.cargo/bin,"
        " no cross, no ansible virtualenv",
    ),
    "rustup_toolchain_ansible_venv": (
        "root",
        "/tmp/ilu-venv",
        "the same rustup, and a virtualenv made with python3 -m venv and `pip install ansible==10.7.0` from PyPI",
    ),
}


def main() -> None:
    for name, (user, venv, what) in CASES.items():
        command = BuildTools().command(user=user, venv=venv)
        run = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
        (HERE / f"{name}.txt").write_text(f"$ {command}\n{run.stdout}[exit={run.returncode}]\n")
        lines = run.stdout.splitlines()
        fixture = {
            "source": f"Real: tests/captured/build-tools/{name}.txt, the fact's command on the development machine"
            f" (Debian 12), 2026-12-03: {what}.",
            "command": command,
            "arg": {"user": user, "venv": venv},
            "output": lines,
            "fact": BuildTools().process(lines),
        }
        (FIXTURES / f"{name}.json").write_text(json.dumps(fixture, indent=2) + "\n")


if __name__ == "__main__":
    main()
