"""Measure what users wait for on every re-run across a rack: a converged run of the whole worker deploy, and
``pyinfra-iluvatar check``, on 1 and 3 sandbox hosts, each against ``pyinfra INVENTORY exec -- true``.

Run as root from a checkout: ``.venv/bin/python bench/converged.py``. For each fleet size it brings up a sandbox
of its own (own state directory and network number; the image cache is shared), serves the test lab's release
archives from the gateway, deploys the worker once, then times ``--runs`` rounds of three commands in turn:
``pyinfra -y INVENTORY exec -- true`` (the floor: connect, one command, disconnect), the converged worker deploy,
and ``check`` (and, on a fleet of several hosts, the converged deploy on its first host alone, ``--limit``: the
fleet's run against one host's, in the same minutes, which this machine's speed drifts over). It prints the
medians, their ratios to the floor (and ``worker_scale``: the fleet's run over one host's), the remote commands
per host of a converged deploy (``-vv`` prints each as ``[host] >>> …``), and the CPU time each host spent per
converged deploy and per ``exec -- true`` (``usage_usec`` of the host's cgroup ``cpu.stat``, before and after;
the median over runs, the largest over hosts), and the CPU time pyinfra itself spent on this machine (the
controller's: user and system time of the command). Commands run with Python's bytecode cache on, as users have
it. It takes the sandbox down when done.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pyinfra_iluvatar.sandbox import Sandbox, cgroups, network
from pyinfra_iluvatar.sandbox.settings import STATE_DIR_ENV
from pyinfra_iluvatar.tests.support.lab import OLD, SANDBOX_WORKER, running_lab
from pyinfra_iluvatar.tests.support.sandbox import SandboxSession

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = Path(sys.executable).parent / "pyinfra"
CLI = Path(sys.executable).parent / "pyinfra-iluvatar"
INVENTORY = ROOT / "inventories" / "sandbox.py"


def host_cpu_usec(machines: list[str]) -> dict[str, int]:
    """CPU time used so far by each sandbox host's processes (its cgroup's ``cpu.stat`` ``usage_usec``)."""
    (unified,) = [point for point in cgroups.hierarchies() if (point / "cgroup.controllers").exists()]
    found = {}
    for machine in machines:
        stat = (unified / cgroups.TOP / machine / "cpu.stat").read_text()
        found[machine] = int(next(line.split()[1] for line in stat.splitlines() if line.startswith("usage_usec ")))
    return found


def timed_cpu(argv: list[str], env: dict[str, str], machines: list[str]) -> tuple[float, float, float]:
    """
    Run ``argv`` as :func:`timed`; its wall-clock seconds, the most CPU milliseconds one host spent on it, and the
    CPU milliseconds (user and system) the command itself spent on this machine: the controller's.
    """
    before, children = host_cpu_usec(machines), resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds, _ = timed(argv, env)
    after, done = host_cpu_usec(machines), resource.getrusage(resource.RUSAGE_CHILDREN)
    controller = (done.ru_utime + done.ru_stime - children.ru_utime - children.ru_stime) * 1000
    return seconds, max(after[machine] - before[machine] for machine in machines) / 1000, controller


def timed(argv: list[str], env: dict[str, str], cwd: Path = ROOT) -> tuple[float, str]:
    """Run ``argv`` (checked) in ``cwd``, the checkout by default; its wall-clock seconds and its log (stderr)."""
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=900, check=False)
    if result.returncode != 0:
        log = Path(tempfile.mkstemp(prefix="pyinfra-iluvatar-bench-failed-", suffix=".log", dir="/var/tmp")[1])
        log.write_text(result.stdout + result.stderr)
        output = (result.stdout + result.stderr)[-4000:]
        raise SystemExit(f"{' '.join(argv[-2:])} exited {result.returncode} (whole log: {log}):\n{output}")
    return time.monotonic() - started, result.stderr


def measure(hosts: int, net: int, runs: int) -> dict[str, Any]:
    """The figures for a fleet of ``hosts`` sandbox hosts on network ``net``."""
    with tempfile.TemporaryDirectory(prefix="pyinfra-iluvatar-bench-", dir="/var/tmp") as work:
        box = Sandbox(Path(work) / "state", net=net)
        # Python's bytecode cache as users have it (this machine's shell turns it off).
        plain = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        env = {**plain, STATE_DIR_ENV: str(box.state_dir)}
        try:
            session = SandboxSession(box, box.up(hosts=hosts), env=env)
            with running_lab(session, Path(work)) as lab:
                data = lab.data_arguments(OLD, **SANDBOX_WORKER)
                deploy = [str(PYINFRA), "-y", str(INVENTORY), *data]
                check = [str(CLI), "check", str(INVENTORY), *data, "--ignore", "cgroups"]
                machines = cgroups.machines(network.SandboxNetwork(net).machine_prefix)
                timed([*deploy, "deploys/worker.py"], env)  # the first run: the fleet converges
                timed([*deploy, "deploys/worker.py"], env)  # receipts written by an older version are completed
                worker, floor, checks, worker_cpu, floor_cpu, worker_own, floor_own = [], [], [], [], [], [], []
                one_host: list[float] = []
                for _ in range(runs):
                    exec_true = [str(PYINFRA), "-y", str(INVENTORY), "exec", "--", "true"]
                    seconds, cpu, own = timed_cpu(exec_true, env, machines)
                    floor.append(seconds)
                    floor_cpu.append(cpu)
                    floor_own.append(own)
                    seconds, cpu, own = timed_cpu([*deploy, "deploys/worker.py"], env, machines)
                    worker.append(seconds)
                    worker_cpu.append(cpu)
                    worker_own.append(own)
                    checks.append(timed(check, env)[0])
                    if hosts > 1:  # the same deploy on one host of this fleet, in the same minutes
                        one_host.append(timed([*deploy, "--limit", lab.hosts[0], "deploys/worker.py"], env)[0])
                _, log = timed([*deploy, "-vv", "deploys/worker.py"], env)
                counts = {h: len(re.findall(rf"^\[{h}\]\s+>>> ", log, flags=re.MULTILINE)) for h in lab.hosts}
        finally:
            box.down()
    base = statistics.median(floor)
    return {
        "hosts": hosts,
        "exec_true_s": round(base, 2),
        "worker_converged_s": round(statistics.median(worker), 2),
        "worker_ratio": round(statistics.median(worker) / base, 2),
        "worker_one_host_s": round(statistics.median(one_host or worker), 2),
        "worker_scale": round(statistics.median(worker) / statistics.median(one_host or worker), 2),
        "check_s": round(statistics.median(checks), 2),
        "check_ratio": round(statistics.median(checks) / base, 2),
        "remote_commands_per_host": sorted(set(counts.values())),
        "host_cpu_ms_worker": round(statistics.median(worker_cpu)),
        "host_cpu_ms_exec_true": round(statistics.median(floor_cpu)),
        "controller_cpu_ms_worker": round(statistics.median(worker_own)),
        "controller_cpu_ms_exec_true": round(statistics.median(floor_own)),
        "runs": runs,
    }


def main() -> None:
    """Measure and print one JSON line per fleet size."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", type=int, default=249, help="sandbox network number to use (default 249)")
    parser.add_argument("--runs", type=int, default=5, help="converged runs of each command (default 5)")
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 3], help="fleet sizes (default 1 3)")
    options = parser.parse_args()
    for hosts in options.hosts:
        print(json.dumps(measure(hosts, options.net, options.runs)), flush=True)


if __name__ == "__main__":
    main()
