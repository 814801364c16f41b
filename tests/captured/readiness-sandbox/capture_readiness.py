"""Capture what ``pyinfra-iluvatar check`` reads on a worker host, ready and broken in each way the tests judge.

Run as root from a checkout, against a sandbox whose first host ran the worker deploy with the lab's settings
(``make demo`` leaves one such), with the lab's data arguments file (one ``--data=KEY=VALUE`` per line) as the
only argument. For each case it breaks the host, reads the check's single combined fact over SSH, writes
``<case>.txt`` (the fact's output) beside this script, and repairs the host. ``data.json`` records the settings
and ``lock.json`` the lock file the verdicts compare against.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from pyinfra.api.inventory import Inventory

from pyinfra_iluvatar import data, preflight
from pyinfra_iluvatar.facts.combined import Combined
from pyinfra_iluvatar.readiness.requirements import probes
from pyinfra_iluvatar.sandbox import Sandbox

HERE = Path(__file__).parent
CASES = {
    "ready": ("true", "true"),
    "containerd_stopped": ("systemctl stop containerd", "systemctl start containerd"),
    "cnitool_removed": ("mv /opt/cni/bin/cnitool /root/cnitool", "mv /root/cnitool /opt/cni/bin/cnitool"),
    "dataset_unmounted": ("zfs umount ilu-pool/containerd", "zfs mount ilu-pool/containerd"),
    "wrong_interface": (
        'cp /etc/iluvatar/worker.json /root/worker.json && sed -i \'s/"host0"/"eth0"/\' /etc/iluvatar/worker.json',
        "mv /root/worker.json /etc/iluvatar/worker.json",
    ),
    "binary_modified": (
        "cp -p /usr/local/bin/ctr /root/ctr && echo x >> /usr/local/bin/ctr",
        "mv /root/ctr /usr/local/bin/ctr",
    ),
}


def main() -> None:
    """Capture every case on the sandbox's first host."""
    settings = {}
    for line in Path(sys.argv[1]).read_text().splitlines():
        key, _, value = line.removeprefix("--data=").partition("=")
        settings[key] = json.loads(value)
    box = Sandbox()
    host = box.status()[0].name
    inventory = Inventory(([(host, settings)], {}))  # type: ignore[no-untyped-call]
    values, problems = preflight.host_values(inventory.get_host(host))
    assert not problems, problems
    shutil.copy(values[data.LOCK_FILE.name], HERE / "lock.json")
    settings[data.LOCK_FILE.name] = "lock.json"
    (HERE / "data.json").write_text(json.dumps({"host": host, "data": settings}, indent=2) + "\n")
    command = Combined().command(probes(values))
    for case, (breaking, repairing) in CASES.items():
        run = subprocess.run(box.ssh_command(host, f"{breaking} && {{ {command}\n}}"), capture_output=True, text=True)
        subprocess.run(box.ssh_command(host, repairing), check=True)
        assert run.returncode == 0, run.stderr
        (HERE / f"{case}.txt").write_text(run.stdout)
        print(case, len(run.stdout.splitlines()), "lines")


if __name__ == "__main__":
    main()
