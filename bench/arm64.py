"""Measure what emulation costs an arm64 sandbox host: the worker deploy's first and converged runs on one emulated
arm64 host against one amd64 host of the same sandbox (an emulation figure for this machine, not a Jetson's).

Run as root from a checkout: ``.venv/bin/python bench/arm64.py``. It brings up a sandbox of its own (``--net``;
one amd64 and one arm64 worker; the image cache is shared), serves the test lab's release archives from the
gateway, then:

- the first run of the whole worker deploy on both hosts in one pyinfra run: its wall-clock time, and the CPU time
  each host spent on it (``usage_usec`` of the host's cgroup ``cpu.stat``, before and after);
- ``--runs`` converged runs on each host alone (``--limit``, alternating): the median wall-clock time and host CPU.

It prints one JSON line, ratios arm64 / amd64 measured in the same run, and takes the sandbox down.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from pyinfra_iluvatar.bench.converged import host_cpu_usec, timed
from pyinfra_iluvatar.sandbox import Sandbox, state
from pyinfra_iluvatar.sandbox.settings import STATE_DIR_ENV
from pyinfra_iluvatar.tests.support.lab import OLD, SANDBOX_WORKER, running_lab
from pyinfra_iluvatar.tests.support.sandbox import SandboxSession

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = Path(sys.executable).parent / "pyinfra"
INVENTORY = ROOT / "inventories" / "sandbox.py"
AMD64, ARM64 = "worker-1", "worker-arm64-1"


def measure(net: int, runs: int) -> dict[str, object]:
    """The figures, from a sandbox of one amd64 and one arm64 worker on network ``net``."""
    with tempfile.TemporaryDirectory(prefix="pyinfra-iluvatar-bench-", dir="/var/tmp") as work:
        box = Sandbox(Path(work) / "state", net=net)
        env = {**os.environ, STATE_DIR_ENV: str(box.state_dir)}
        try:
            session = SandboxSession(box, box.up(hosts=1, arm64_hosts=1), env=env)
            current = state.load(box.state_dir)
            assert current is not None
            machine = {record.name: record.machine for record in current.hosts}
            with running_lab(session, Path(work)) as lab:
                deploy = [str(PYINFRA), "-y", str(INVENTORY), *lab.data_arguments(OLD, **SANDBOX_WORKER)]
                before = host_cpu_usec(list(machine.values()))
                first_s, _ = timed([*deploy, "deploys/worker.py"], env)
                after = host_cpu_usec(list(machine.values()))
                first_cpu = {name: (after[m] - before[m]) / 1e6 for name, m in machine.items()}
                converged: dict[str, list[float]] = {AMD64: [], ARM64: []}
                converged_cpu: dict[str, list[float]] = {AMD64: [], ARM64: []}
                for _ in range(runs):
                    for name in (AMD64, ARM64):
                        before = host_cpu_usec([machine[name]])
                        seconds, _ = timed([*deploy, "--limit", name, "deploys/worker.py"], env)
                        after = host_cpu_usec([machine[name]])
                        converged[name].append(seconds)
                        converged_cpu[name].append((after[machine[name]] - before[machine[name]]) / 1e3)
        finally:
            box.down()
    wall = {name: statistics.median(values) for name, values in converged.items()}
    cpu = {name: statistics.median(values) for name, values in converged_cpu.items()}
    return {
        "first_run_both_hosts_s": round(first_s, 1),
        "first_run_host_cpu_s": {name: round(value, 1) for name, value in first_cpu.items()},
        "first_run_host_cpu_ratio": round(first_cpu[ARM64] / first_cpu[AMD64], 1),
        "converged_s": {name: round(value, 2) for name, value in wall.items()},
        "converged_ratio": round(wall[ARM64] / wall[AMD64], 2),
        "converged_host_cpu_ms": {name: round(value) for name, value in cpu.items()},
        "converged_host_cpu_ratio": round(cpu[ARM64] / cpu[AMD64], 1),
        "runs": runs,
    }


def main() -> None:
    """Measure and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", type=int, default=248, help="sandbox network number to use (default 248)")
    parser.add_argument("--runs", type=int, default=5, help="converged runs on each host (default 5)")
    options = parser.parse_args()
    print(json.dumps(measure(options.net, options.runs)), flush=True)


if __name__ == "__main__":
    main()
