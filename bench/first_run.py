"""Measure a first run: the whole worker deploy on freshly booted sandbox hosts, this checkout against an earlier
revision of it (``--against``, default ``bf6b336``: the last one before the converged-speed work of issue #13).

Run as root from a checkout: ``.venv/bin/python bench/first_run.py``. Each round brings up a fresh sandbox of
``--hosts`` hosts for each revision in turn (own state directory and network number; the image cache is shared),
serves the test lab's release archives from the gateway, and times ``pyinfra -y INVENTORY deploys/worker.py`` on
it, with the CPU time each host spent (``usage_usec`` of its cgroup's ``cpu.stat``; the largest over hosts). The
earlier revision runs from a ``git worktree`` (imported first through ``PYTHONPATH``), both on the same static
inventory written from the sandbox, so only the deploy code differs. It prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyinfra_iluvatar.bench.converged import PYINFRA, ROOT, host_cpu_usec, timed
from pyinfra_iluvatar.sandbox import Sandbox, cgroups, network
from pyinfra_iluvatar.tests.support.lab import OLD, SANDBOX_WORKER, running_lab
from pyinfra_iluvatar.tests.support.sandbox import SandboxSession


@contextmanager
def revision(rev: str, work: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A worktree of ``rev`` and the environment that makes ``pyinfra_iluvatar`` import from it."""
    tree, packages = work / "tree", work / "packages"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, check=True, capture_output=True)
    try:
        packages.mkdir()
        (packages / "pyinfra_iluvatar").symlink_to(tree)
        yield tree, {"PYTHONPATH": str(packages)}
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True, capture_output=True)


def first_run(hosts: int, net: int, checkout: Path, extra_env: dict[str, str]) -> tuple[float, float]:
    """Seconds and the busiest host's CPU milliseconds of the worker deploy from ``checkout`` on fresh hosts."""
    with tempfile.TemporaryDirectory(prefix="pyinfra-iluvatar-bench-", dir="/var/tmp") as work:
        box = Sandbox(Path(work) / "state", net=net)
        try:
            session = SandboxSession(box, box.up(hosts=hosts), env=dict(os.environ))
            with running_lab(session, Path(work), clean_up=False) as lab:
                inventory = Path(work) / "inventory.py"
                workers = box.inventory()["workers"]
                listed = json.dumps(json.dumps(workers))
                inventory.write_text(f"import json\nworkers = [tuple(host) for host in json.loads({listed})]\n")
                env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}  # as users
                data = lab.data_arguments(OLD, **SANDBOX_WORKER)
                argv = [str(PYINFRA), "-y", str(inventory), *data, "deploys/worker.py"]
                machines = cgroups.machines(network.SandboxNetwork(net).machine_prefix)
                before = host_cpu_usec(machines)
                seconds, log = timed(argv, {**env, **extra_env}, cwd=checkout)
                after = host_cpu_usec(machines)
                changed = [name for name, _ in workers if f"[{name}] Success" in log]
                if len(changed) != hosts:
                    tail = log[-4000:]
                    raise SystemExit(f"the deploy from {checkout} changed {len(changed)} of {hosts} hosts:\n{tail}")
        finally:
            box.down()
    return seconds, max(after[machine] - before[machine] for machine in machines) / 1000


def main() -> None:
    """Measure and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", type=int, default=248, help="sandbox network number to use (default 248)")
    parser.add_argument("--runs", type=int, default=3, help="first runs of each revision (default 3)")
    parser.add_argument("--hosts", type=int, default=3, help="sandbox hosts (default 3)")
    parser.add_argument("--against", default="bf6b336", help="the earlier revision (default bf6b336)")
    options = parser.parse_args()
    work = tempfile.TemporaryDirectory(prefix="pyinfra-iluvatar-bench-rev-", dir="/var/tmp")
    with work, revision(options.against, Path(work.name)) as (tree, env):
        now, then, now_cpu, then_cpu = [], [], [], []
        for _ in range(options.runs):
            seconds, cpu = first_run(options.hosts, options.net, ROOT, {})
            now.append(seconds)
            now_cpu.append(cpu)
            seconds, cpu = first_run(options.hosts, options.net, tree, env)
            then.append(seconds)
            then_cpu.append(cpu)
    print(
        json.dumps(
            {
                "hosts": options.hosts,
                "against": options.against,
                "first_run_s": round(statistics.median(now), 1),
                "first_run_before_s": round(statistics.median(then), 1),
                "ratio": round(statistics.median(now) / statistics.median(then), 2),
                "host_cpu_s": round(statistics.median(now_cpu) / 1000, 1),
                "host_cpu_before_s": round(statistics.median(then_cpu) / 1000, 1),
                "runs": options.runs,
                "all_s": [round(value, 1) for value in now],
                "all_before_s": [round(value, 1) for value in then],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
