"""Facts about cgroups: which controllers a host gives containers, which the Ilúvatar worker limits them with."""

from __future__ import annotations

from typing import Literal, TypedDict

from pyinfra.api.exceptions import FactProcessError
from pyinfra.api.facts import FactBase
from typing_extensions import override

# Controller names as the kernel spells them in cgroup.controllers (v2) and in v1 mount options.
_CONTROLLERS = frozenset(
    {"cpu", "cpuacct", "cpuset", "memory", "io", "blkio", "pids", "devices", "freezer", "hugetlb", "rdma", "misc"}
    | {"net_cls", "net_prio", "perf_event"}
)


class CgroupControllersInfo(TypedDict):
    """The host's cgroup hierarchy and the controllers available in it."""

    version: Literal[1, 2]
    """2 when ``/sys/fs/cgroup`` is the unified (v2) hierarchy, else 1 (v1, or hybrid with v1 controllers)."""
    controllers: list[str]
    """Controllers containers can be limited with, sorted: v2's ``cgroup.controllers`` at the root, or the
    controllers of v1's mounted hierarchies."""


class CgroupControllers(FactBase[CgroupControllersInfo]):
    """
    Returns which cgroup hierarchy the host has and its controllers. Ilúvatar limits each function container's CPU
    and memory through containerd's runc, which needs ``cpu`` and ``memory`` here: a host booted with them bound
    elsewhere (a container host, or a machine whose v1 controllers belong to another hierarchy) runs containers it
    cannot limit.

    Runs ``stat -f`` on ``/sys/fs/cgroup``, then reads ``cgroup.controllers`` (v2) or the cgroup mounts of
    ``/proc/self/mountinfo`` (v1).

    .. code:: python

        {"version": 2, "controllers": ["cpu", "cpuset", "io", "memory", "pids"]}
    """

    @override
    def command(self) -> str:
        return (
            'if [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then echo version=2;'
            ' echo "controllers=$(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)";'
            " else echo version=1;"
            " echo \"controllers=$(sed -n 's/.* - cgroup [^ ]* //p' /proc/self/mountinfo | tr ',\\n' '  ')\"; fi"
        )

    @override
    def process(self, output: list[str]) -> CgroupControllersInfo:
        fields = dict(line.partition("=")[::2] for line in output)
        if set(fields) != {"version", "controllers"} or fields["version"] not in ("1", "2"):
            raise FactProcessError(f"unexpected cgroup probe output: {output!r}")
        version: Literal[1, 2] = 2 if fields["version"] == "2" else 1
        return {"version": version, "controllers": sorted(set(fields["controllers"].split()) & _CONTROLLERS)}
