"""
The Ilúvatar worker host, the setup page's "Worker Runtime dependencies" whole, in this order: packages (the
optional energy tools included), file limits, on GPU hosts NVIDIA's container toolkit and nvidia-persistenced,
isolation (Docker from its repository or the distribution, and/or containerd: the locked release build, or Docker's
containerd where both are chosen; NVIDIA's runtime in each on GPU hosts), the CNI plugins and cnitool, ZFS (pool and
containerd's snapshotter dataset; containerd restarted once when that mount first appears), and the worker's
``worker.json``. Every part is also a deploy of its own (``deploys/gpu.py``, ``deploys/docker.py``,
``deploys/containerd.py``, ``deploys/cni.py``, ``deploys/zfs.py``).

Use it three ways:

- ``pyinfra inventories/lab.py deploys/worker.py`` (this file is also a pyinfra deploy file);
- ``pyinfra inventories/lab.py pyinfra_iluvatar.deploys.worker.worker``;
- ``from pyinfra_iluvatar.deploys.worker import worker`` in your own deploy code, then ``worker()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from pyinfra.api.deploy import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.context import host
from pyinfra.facts.server import KernelVersion, LinuxDistribution
from pyinfra.operations import systemd

from pyinfra_iluvatar import data, preflight, snapshot
from pyinfra_iluvatar.deploys import changing, cni, docker, gpu, run_as_deploy_file, zfs
from pyinfra_iluvatar.deploys import containerd as containerd_part
from pyinfra_iluvatar.deploys.cni import cni_tools
from pyinfra_iluvatar.deploys.containerd import SERVICE, containerd_runtime
from pyinfra_iluvatar.deploys.docker import docker_engine
from pyinfra_iluvatar.deploys.gpu import nvidia_gpu
from pyinfra_iluvatar.deploys.zfs import zfs_storage
from pyinfra_iluvatar.facts.combined import Probe
from pyinfra_iluvatar.facts.packages import DebPackageVersions
from pyinfra_iluvatar.operations import containerd, limits, packages, worker_config

# What the worker binary calls by fixed path (iptables, ifconfig, ip, pgrep, ...), the page's package list, and
# busybox-static: the root filesystem of `pyinfra-iluvatar check --smoke`'s function container.
WORKER_PACKAGES = [
    "curl",
    "runc",
    "bridge-utils",
    "iptables",
    "net-tools",
    "sysstat",
    "jq",
    "iproute2",
    "procps",
    "busybox-static",
]


def worker_packages(isolation: tuple[str, ...], docker_source: str) -> list[str]:
    """:data:`WORKER_PACKAGES`, less ``runc`` where Docker's ``containerd.io`` provides it (and conflicts with it)."""
    if "docker" in isolation and docker_source == "docker":
        return [name for name in WORKER_PACKAGES if name != "runc"]
    return list(WORKER_PACKAGES)


def energy_packages(distribution: str, kernel: str) -> list[str]:
    """ipmitool, and perf for the running ``kernel``: Debian's ``linux-perf``, Ubuntu's ``linux-tools-<release>``."""
    if distribution == "Ubuntu":
        return ["ipmitool", "linux-tools-common", f"linux-tools-{kernel}"]
    return ["ipmitool", "linux-perf"]


def reads(settings: preflight.HostPlan) -> list[Probe]:
    """
    What the whole worker deploy reads on a converged host, every part's (:mod:`pyinfra_iluvatar.snapshot`): read
    in one round trip per host, so a converged run costs that and pre-flight's.
    """
    names = worker_packages(settings.get(data.ISOLATION), settings.get(data.DOCKER_SOURCE))
    found = []
    if settings.get(data.ENERGY_TOOLS):  # for either distribution, and whichever kernel runs
        names += energy_packages("Debian", "*") + energy_packages("Ubuntu", "*")
        found += [snapshot.probe(LinuxDistribution), snapshot.probe(KernelVersion)]
    found.append(snapshot.probe(DebPackageVersions, packages=names + settings.get(data.EXTRA_PACKAGES)))
    found += snapshot.put_reads(f"{limits.LIMITS_D}/90-iluvatar.conf")
    found += gpu.reads(settings)
    isolation = settings.get(data.ISOLATION)
    if "docker" in isolation:
        found += docker.reads(settings)
    if "containerd" in isolation:
        found += [*containerd_part.reads(settings), *cni.reads(settings)]
    found += zfs.reads(settings)
    return [*found, *snapshot.put_reads(settings.get(data.WORKER_CONFIG_PATH))]


@deploy("Ilúvatar worker")
def worker() -> None:
    """Bring this host to an Ilúvatar worker; reads the ``iluvatar_*`` data keys (README table)."""
    settings = preflight.plan("worker", reads=reads)
    energy = []
    if settings.get(data.ENERGY_TOOLS):
        energy = energy_packages(host.get_fact(LinuxDistribution)["name"] or "", host.get_fact(KernelVersion))
    base = worker_packages(settings.get(data.ISOLATION), settings.get(data.DOCKER_SOURCE))
    packages.apt_installed(name="Worker packages", packages=base + energy + settings.get(data.EXTRA_PACKAGES))
    limits.pam_limits(
        name="File and process limits",
        limits={"nofile": settings.get(data.NOFILE_LIMIT), "nproc": settings.get(data.NPROC_LIMIT)},
    )
    nvidia_gpu(settings=settings)
    isolation = settings.get(data.ISOLATION)
    uses_containerd = "containerd" in isolation
    # pyinfra types a deploy's call like an operation's; these deploys return what the worker needs of them.
    if "docker" in isolation:
        docker_engine(settings=settings)
    if uses_containerd:
        started = cast("Callable[[], bool]", containerd_runtime(settings=settings))
        cni_tools(settings=settings)
    dataset = cast("OperationMeta | None", zfs_storage(settings=settings))
    if uses_containerd:
        starts = [started]
        if dataset is not None and changing():
            restarted = systemd.service(
                name="containerd restarted: its zfs snapshotter's dataset is mounted",
                service=SERVICE,
                restarted=True,
                _if=dataset.did_change,
            )
            containerd.ready(name="containerd answers ctr version again", _if=restarted.did_change)
            starts.append(restarted.did_change)
        if changing():
            containerd.plugins_ready(
                name="containerd's CRI and snapshotter plugins loaded",
                snapshotter=settings.get(data.SNAPSHOTTER),
                _if=lambda: any(start() for start in starts),
            )
    assert settings.worker_config is not None  # pre-flight rendered it for the "worker" part
    worker_config.worker_config(
        name="Worker config", config=settings.worker_config, path=settings.get(data.WORKER_CONFIG_PATH)
    )


# `pyinfra INVENTORY deploys/worker.py` executes this file without a module name: run the deploy then.
if "__name__" not in globals():
    run_as_deploy_file(__file__, "pyinfra_iluvatar.deploys.worker", worker)
