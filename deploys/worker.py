"""
The Ilúvatar worker host, from the setup page's "Worker Runtime dependencies": so far its packages (the
optional energy tools included) and file limits. containerd and the CNI tools have their own deploys
(``deploys/containerd.py``, ``deploys/cni.py``) until the isolation step joins them here.

Use it three ways:

- ``pyinfra inventories/lab.py deploys/worker.py`` (this file is also a pyinfra deploy file);
- ``pyinfra inventories/lab.py pyinfra_iluvatar.deploys.worker.worker``;
- ``from pyinfra_iluvatar.deploys.worker import worker`` in your own deploy code, then ``worker()``.
"""

from __future__ import annotations

from pyinfra.api.deploy import deploy
from pyinfra.context import host
from pyinfra.facts.server import KernelVersion, LinuxDistribution

from pyinfra_iluvatar import data
from pyinfra_iluvatar.operations import limits, packages

# What the worker binary calls by fixed path (iptables, ifconfig, ip, pgrep, ...) and the page's package list.
WORKER_PACKAGES = ["curl", "runc", "bridge-utils", "iptables", "net-tools", "sysstat", "jq", "iproute2", "procps"]


def energy_packages() -> list[str]:
    """ipmitool, and perf for the running kernel: Debian's ``linux-perf``, Ubuntu's ``linux-tools-<release>``."""
    if host.get_fact(LinuxDistribution)["name"] == "Ubuntu":
        return ["ipmitool", "linux-tools-common", f"linux-tools-{host.get_fact(KernelVersion)}"]
    return ["ipmitool", "linux-perf"]


@deploy("Ilúvatar worker")
def worker() -> None:
    """Bring this host to an Ilúvatar worker; reads the ``iluvatar_*`` data keys (README table)."""
    extra = data.get(host, data.EXTRA_PACKAGES)
    energy = data.get(host, data.ENERGY_TOOLS)
    nofile = data.get(host, data.NOFILE_LIMIT)
    nproc = data.get(host, data.NPROC_LIMIT)

    packages.apt_installed(
        name="Worker packages",
        packages=WORKER_PACKAGES + (energy_packages() if energy else []) + extra,
    )
    limits.pam_limits(name="File and process limits", limits={"nofile": nofile, "nproc": nproc})


# `pyinfra INVENTORY deploys/worker.py` executes this file without a module name: run the deploy then.
# Importing it (`pyinfra_iluvatar.deploys.worker`) only defines `worker`.
if "__name__" not in globals():
    worker()
