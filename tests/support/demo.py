"""``make demo``: the whole worker deploy, for real, on one sandbox host.

Brings up (or reuses) the default sandbox with one host, serves release archives from this machine the way GitHub
and go.dev would (repacked from Debian's real containerd, CNI plugins and cnitool builds: the sandbox reaches no
release host), writes a lock file with the real ``pyinfra-iluvatar lock`` against that server, and runs
``pyinfra -y inventories/sandbox.py deploys/worker.py`` with the sandbox's settings (README, "Sandbox"), then
``pyinfra-iluvatar check --smoke`` on the host: ready, ignoring only what this machine cannot provide (``cgroups``:
its sandbox hosts get no cpu or memory controller), and a function container started the way the worker does.
Run it twice: the second deploy changes nothing. ``pyinfra-iluvatar sandbox down`` removes it.
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

SMOKE_SUBNET = "198.19.10.0/24"
"""The smoke test's network: in 198.18.0.0/15, as every address the sandbox uses (not Ilúvatar's own default)."""
IGNORED = ("cgroups",)
"""What this machine cannot give its sandbox hosts (README, "Readiness")."""


def main() -> int:
    """Deploy the worker to the sandbox host, then check it; the first failing exit status, else 0."""
    box = Sandbox(say=lambda message: print(f"sandbox: {message}", file=sys.stderr))
    session = SandboxSession(box, box.up(hosts=1), env=dict(os.environ))
    with (
        tempfile.TemporaryDirectory(prefix="pyinfra-iluvatar-demo-") as folder,
        running_lab(session, Path(folder), clean_up=False) as lab,
    ):
        data = lab.data_arguments(OLD, **SANDBOX_WORKER, iluvatar_smoke_subnet=SMOKE_SUBNET)
        deploy = [str(BIN / "pyinfra"), "-y", str(session.inventory), *data, str(ROOT / "deploys" / "worker.py")]
        status = subprocess.run(deploy, check=False).returncode
        if status:
            return status
        ignored = [option for name in IGNORED for option in ("--ignore", name)]
        check = [str(BIN / "pyinfra-iluvatar"), "check", str(session.inventory), *data, "--smoke", *ignored]
        return subprocess.run(check, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
