"""Measure what users wait for on every re-run across a rack: a converged run of the whole worker deploy, and
``pyinfra-iluvatar check``, on 1 and 3 sandbox hosts, each against ``pyinfra INVENTORY exec -- true``.

Run as root from a checkout: ``.venv/bin/python bench/converged.py``. For each fleet size it brings up a sandbox
of its own (own state directory and network number; the image cache is shared), serves the test lab's release
archives from the gateway, deploys the worker once, then times ``--runs`` rounds of three commands in turn:
``pyinfra -y INVENTORY exec -- true`` (the floor: connect, one command, disconnect), the converged worker deploy,
and ``check``. It prints the medians, their ratios to the floor, and the remote commands per host of a converged
deploy (``-vv`` prints each as ``[host] >>> …``). It takes the sandbox down when done.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pyinfra_iluvatar.sandbox import Sandbox
from pyinfra_iluvatar.sandbox.settings import STATE_DIR_ENV
from pyinfra_iluvatar.tests.support.lab import OLD, SANDBOX_WORKER, running_lab
from pyinfra_iluvatar.tests.support.sandbox import SandboxSession

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = Path(sys.executable).parent / "pyinfra"
CLI = Path(sys.executable).parent / "pyinfra-iluvatar"
INVENTORY = ROOT / "inventories" / "sandbox.py"


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run ``argv`` (checked) in the checkout; its wall-clock seconds and its log (stderr)."""
    started = time.monotonic()
    result = subprocess.run(argv, check=True, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    return time.monotonic() - started, result.stderr


def measure(hosts: int, net: int, runs: int) -> str:
    """The figures for a fleet of ``hosts`` sandbox hosts on network ``net``."""
    with tempfile.TemporaryDirectory(prefix="pyinfra-iluvatar-bench-", dir="/var/tmp") as work:
        box = Sandbox(Path(work) / "state", net=net)
        env = {**os.environ, STATE_DIR_ENV: str(box.state_dir)}
        try:
            session = SandboxSession(box, box.up(hosts=hosts), env=env)
            with running_lab(session, Path(work)) as lab:
                data = lab.data_arguments(OLD, **SANDBOX_WORKER)
                deploy = [str(PYINFRA), "-y", str(INVENTORY), *data]
                check = [str(CLI), "check", str(INVENTORY), *data, "--ignore", "cgroups"]
                timed([*deploy, "deploys/worker.py"], env)  # the first run: the fleet converges
                worker, floor, checks = [], [], []
                for _ in range(runs):
                    floor.append(timed([str(PYINFRA), "-y", str(INVENTORY), "exec", "--", "true"], env)[0])
                    worker.append(timed([*deploy, "deploys/worker.py"], env)[0])
                    checks.append(timed(check, env)[0])
                _, log = timed([*deploy, "-vv", "deploys/worker.py"], env)
                counts = {h: len(re.findall(rf"^\[{h}\] >>> ", log, flags=re.MULTILINE)) for h in lab.hosts}
        finally:
            box.down()
    base = statistics.median(floor)
    return json.dumps(
        {
            "hosts": hosts,
            "exec_true_s": round(base, 2),
            "worker_converged_s": round(statistics.median(worker), 2),
            "worker_ratio": round(statistics.median(worker) / base, 2),
            "check_s": round(statistics.median(checks), 2),
            "check_ratio": round(statistics.median(checks) / base, 2),
            "remote_commands_per_host": sorted(set(counts.values())),
            "runs": runs,
        }
    )


def main() -> None:
    """Measure and print one JSON line per fleet size."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", type=int, default=249, help="sandbox network number to use (default 249)")
    parser.add_argument("--runs", type=int, default=5, help="converged runs of each command (default 5)")
    options = parser.parse_args()
    for hosts in (1, 3):
        print(measure(hosts, options.net, options.runs), flush=True)


if __name__ == "__main__":
    main()
