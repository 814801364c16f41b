"""``make demo``: the whole worker deploy, for real, on one sandbox host.

Brings up (or reuses) the default sandbox with one host, serves release archives from this machine the way GitHub
and go.dev would (repacked from Debian's real containerd, CNI plugins and cnitool builds: the sandbox reaches no
release host), writes a lock file with the real ``pyinfra-iluvatar lock`` against that server, and runs
``pyinfra -y inventories/sandbox.py deploys/worker.py`` with the sandbox's settings (README, "Sandbox"), ending with
pyinfra's change summary. Run it twice: the second run changes nothing. ``pyinfra-iluvatar sandbox down`` removes it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pyinfra_iluvatar.sandbox import Sandbox
from pyinfra_iluvatar.tests.support.lab import OLD, SANDBOX_WORKER, running_lab
from pyinfra_iluvatar.tests.support.sandbox import BIN, ROOT, SandboxSession


def main() -> int:
    """Deploy the worker to the sandbox host; pyinfra's exit status."""
    box = Sandbox(say=lambda message: print(f"sandbox: {message}", file=sys.stderr))
    session = SandboxSession(box, box.up(hosts=1), env=dict(os.environ))
    with (
        tempfile.TemporaryDirectory(prefix="pyinfra-iluvatar-demo-") as folder,
        running_lab(session, Path(folder), clean_up=False) as lab,
    ):
        argv = [str(BIN / "pyinfra"), "-y", str(session.inventory), *lab.data_arguments(OLD, **SANDBOX_WORKER)]
        return subprocess.run([*argv, str(ROOT / "deploys" / "worker.py")], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
