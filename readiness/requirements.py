"""
What makes a host ready for Ilúvatar, each requirement derived from the host's data (what it is meant to be): the
facts each needs (read all at once, in one round trip: :func:`probes`) and its verdict from them (:func:`verdicts`).
Reading changes nothing on the host.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pyinfra.api.host import Host

from pyinfra_iluvatar import data, preflight
from pyinfra_iluvatar.deploys.build import BUILD_PACKAGES, DISTRIBUTION_RUST, PODMAN_PACKAGES
from pyinfra_iluvatar.deploys.docker import docker_packages, expected_drivers
from pyinfra_iluvatar.deploys.gpu import toolkit_packages
from pyinfra_iluvatar.deploys.worker import energy_packages, worker_packages
from pyinfra_iluvatar.deploys.zfs import SNAPSHOTTER_PATH, implementation, zfs_packages
from pyinfra_iluvatar.facts.build import ref_commit
from pyinfra_iluvatar.facts.combined import Probe, Unreadable
from pyinfra_iluvatar.operations import nvidia
from pyinfra_iluvatar.operations.containerd import CRI_PLUGIN, SNAPSHOTTERS
from pyinfra_iluvatar.operations.packages import package_names
from pyinfra_iluvatar.operations.worker_config import render
from pyinfra_iluvatar.releases import lockfile
from pyinfra_iluvatar.releases.components import MACHINE_ARCH

REQUIREMENTS = (
    "packages",
    "limits",
    "docker",
    "containerd",
    "containerd-plugins",
    "ctr",
    "cni",
    "zfs-pool",
    "zfs-dataset",
    "gpu-driver",
    "gpu-toolkit",
    "gpu-runtimes",
    "gpu-persistence",
    "worker-config",
    "releases",
    "cgroups",
    "build-packages",
    "rust",
    "cross",
    "engine",
    "ansible",
    "build-checkout",
)
"""Every requirement, in the order ``check`` shows them; a host is checked for those its data calls for."""
BUILD_REQUIREMENTS = ("build-packages", "rust", "cross", "engine", "ansible", "build-checkout")
"""Checked where ``iluvatar_role`` has ``build``; the others where it has ``worker``."""
GPU_REQUIREMENTS = ("gpu-driver", "gpu-toolkit", "gpu-runtimes", "gpu-persistence")
"""Checked where ``iluvatar_gpu`` is true, or ``auto`` on a host with an NVIDIA GPU."""

ZFS_FULL_PERCENT = 90
"""A pool this full fails ``zfs-pool``: ZFS slows down sharply as free space runs out."""
CNI_PLUGINS = ("bridge", "host-local", "loopback")
"""The plugins the worker's network needs (its ``il_worker_br`` bridge with host-local IPAM) and loopback."""
CNI_NEEDED = [*CNI_PLUGINS, "cnitool"]
RELEASES = ("containerd", "cni-plugins", "cnitool")

_FACTS = "pyinfra_iluvatar.facts."
_CTR = 'p=$(readlink -e /usr/bin/ctr) && test -x "$p" && echo "$p"'


@dataclass(frozen=True)
class Verdict:
    """One requirement on one host: whether it holds, and why not (or what was found, when it holds)."""

    requirement: str
    ok: bool
    detail: str


def applies(values: Mapping[str, Any]) -> tuple[str, ...]:
    """The requirements a host with these settings is checked for."""
    containerd = "containerd" in values[data.ISOLATION.name]
    zfs = values[data.ZFS.name]
    skipped = set() if containerd else {"containerd", "containerd-plugins", "ctr", "cni", "releases"}
    skipped |= set() if zfs else {"zfs-pool", "zfs-dataset"}
    skipped |= set() if "docker" in values[data.ISOLATION.name] else {"docker"}
    skipped |= set(GPU_REQUIREMENTS) if values[data.GPU.name] == "false" else set()
    roles = values.get(data.ROLE.name, data.ROLE.default)
    if "worker" not in roles:
        skipped |= set(REQUIREMENTS) - set(BUILD_REQUIREMENTS)
    if "build" not in roles:
        skipped |= set(BUILD_REQUIREMENTS)
    else:
        skipped |= {"cross"} if not values[data.CROSS_VERSION.name] else set()
        skipped |= {"ansible"} if not values[data.ANSIBLE_VERSION.name] else set()
        skipped |= {"build-checkout"} if not values[data.BUILD_REPOSITORY.name] else set()
    return tuple(name for name in REQUIREMENTS if name not in skipped)


def engine_command(values: Mapping[str, Any]) -> str:
    """
    What prints the version of the build user's container engine, run as that user: the Docker daemon's (so it
    fails when the user cannot reach the daemon), or Podman's (``podman --version``, which starts nothing, where
    ``podman version`` would leave a rootless pause process behind), with the user's subordinate ids checked for
    rootless containers.
    """
    user = values[data.BUILD_USER.name]
    if values[data.BUILD_ENGINE.name] == "docker":
        ask = "docker version --format '{{.Server.Version}}'"
    else:
        subids = "" if user == "root" else f" && grep -q '^{user}:' /etc/subuid && grep -q '^{user}:' /etc/subgid"
        ask = f"podman --version{subids}"
    if user == "root":
        return f"cd / && {ask}"
    # From /, with the user's HOME: root's home is not the user's to enter.
    return f'cd / && runuser -u {user} -- env HOME="$(getent passwd {user} | cut -d: -f6)" sh -c "{ask}"'


def probes(values: Mapping[str, Any]) -> tuple[Probe, ...]:
    """The facts the requirements of a host with these settings read (one :class:`Combined` fact)."""
    found: list[Probe] = [("packages", "pyinfra.facts.deb.DebPackages", {})]
    roles = values.get(data.ROLE.name, data.ROLE.default)
    if "build" in roles:
        venv, user = values[data.ANSIBLE_VENV.name], values[data.BUILD_USER.name]
        found += [
            ("build_tools", _FACTS + "build.BuildTools", {"user": user, "venv": venv}),
            ("engine", "pyinfra.facts.server.Command", {"command": engine_command(values)}),
        ]
        if values[data.BUILD_REPOSITORY.name] and values[data.BUILD_CHECKOUT.name]:
            checkout = {"path": values[data.BUILD_CHECKOUT.name], "ref": values[data.BUILD_REF.name]}
            found.append(("checkout", _FACTS + "build.GitCheckout", checkout))
    if "worker" not in roles:
        return tuple(found)
    found += [
        ("distribution", "pyinfra.facts.server.LinuxDistribution", {}),
        ("kernel", "pyinfra.facts.server.KernelVersion", {}),
        ("limits", _FACTS + "limits.PamLimits", {}),
        ("resources", _FACTS + "resources.HostResources", {}),
        ("worker_config", "pyinfra.facts.files.FileContents", {"path": values[data.WORKER_CONFIG_PATH.name]}),
        ("cgroups", _FACTS + "cgroups.CgroupControllers", {}),
    ]
    if "docker" in values[data.ISOLATION.name]:
        found += [
            ("docker", _FACTS + "docker.DockerDaemon", {}),
            ("docker_unit_limits", _FACTS + "limits.SystemdUnitLimits", {"unit": "docker.service"}),
        ]
    if "containerd" in values[data.ISOLATION.name]:
        found += [
            ("unit_limits", _FACTS + "limits.SystemdUnitLimits", {"unit": "containerd.service"}),
            ("plugins", _FACTS + "containerd.ContainerdPlugins", {}),
            ("plugin_errors", _FACTS + "containerd.ContainerdPluginErrors", {}),
            ("ctr", "pyinfra.facts.server.Command", {"command": _CTR}),
            ("cni", _FACTS + "cni.CniPlugins", {"directory": values[data.CNI_BIN_DIR.name], "only": CNI_NEEDED}),
            *((f"release-{name}", _FACTS + "release.InstalledRelease", {"component": name}) for name in RELEASES),
        ]
    if values[data.ZFS.name]:
        pool = values[data.ZFS_POOL.name]
        found += [
            ("zfs", _FACTS + "zfs.ZfsImplementation", {}),
            ("pool", _FACTS + "zfs.ZpoolStatus", {"pool": pool}),
            ("pool_list", _FACTS + "zfs.ZpoolList", {"pool": pool}),
            ("dataset", _FACTS + "zfs.ZfsDatasetProperties", {"dataset": f"{pool}/containerd"}),
        ]
    if values[data.GPU.name] != "false":
        found += nvidia.GPU_STATE_PROBES
        if "containerd" in values[data.ISOLATION.name]:
            found.append(("nvidia_drop_in", "pyinfra.facts.files.FileContents", {"path": nvidia.CONTAINERD_DROP_IN}))
    return tuple(found)


@dataclass(frozen=True)
class _Host:
    """What a verdict reads: the host, its settings, its facts and its lock file."""

    target: Host
    values: Mapping[str, Any]
    facts: Mapping[str, Any]
    lock: lockfile.Lock | lockfile.LockError
    gpu: preflight.GpuPlan | None = None
    gpu_problem: str | None = None

    def fact(self, name: str) -> Any:
        """The fact ``name``; :class:`_Unread` when the host's output for it could not be processed."""
        value = self.facts.get(name)
        if isinstance(value, Unreadable):
            raise _Unread(f"could not read {name}: {value}")
        return value


class _Unread(Exception):
    """A fact a verdict needs could not be read: the verdict fails with this message."""


def verdicts(
    target: Host, values: Mapping[str, Any], facts: Mapping[str, Any], lock: lockfile.Lock | lockfile.LockError
) -> list[Verdict]:
    """The verdict of each requirement that applies to ``target``, from its facts (see :func:`probes`)."""
    gpu, gpu_problem = None, None
    if values[data.GPU.name] != "false":
        gpu, gpu_problem = preflight.gpu_plan(target, values, facts.get("gpus"), facts.get("devices"))
    host = _Host(target, values, facts, lock, gpu, gpu_problem)
    # iluvatar_gpu auto on a host without an NVIDIA GPU: no GPU requirement.
    no_gpu = gpu is None and gpu_problem is None
    results = []
    for name in applies(values):
        if no_gpu and name in GPU_REQUIREMENTS:
            continue
        try:
            ok, detail = _CHECKS[name](host)
        except _Unread as unread:
            ok, detail = False, str(unread)
        results.append(Verdict(name, ok, detail))
    return results


def _packages(host: _Host) -> tuple[bool, str]:
    installed = host.fact("packages") or {}
    distribution = (host.fact("distribution") or {}).get("name") or ""
    kernel = host.fact("kernel") or ""
    isolation = host.values[data.ISOLATION.name]
    expected = worker_packages(isolation, host.values[data.DOCKER_SOURCE.name]) + host.values[data.EXTRA_PACKAGES.name]
    if "docker" in isolation:
        version = host.values[data.DOCKER_VERSION.name]
        expected += package_names(docker_packages(host.values[data.DOCKER_SOURCE.name], version))
    if host.values[data.ENERGY_TOOLS.name]:
        expected += energy_packages(distribution, kernel)
    if host.values[data.ZFS.name]:
        chosen = implementation(host.values[data.ZFS_IMPLEMENTATION.name], host.fact("zfs"))
        expected += zfs_packages(chosen, distribution, kernel)
    missing = [name for name in expected if name not in installed]
    if missing:
        return False, f"not installed: {', '.join(missing)}"
    return True, f"{len(expected)} installed"


def _limits(host: _Host) -> tuple[bool, str]:
    wanted = {"nofile": str(host.values[data.NOFILE_LIMIT.name]), "nproc": str(host.values[data.NPROC_LIMIT.name])}
    effective = {(limit["domain"], limit["type"], limit["item"]): limit for limit in host.fact("limits") or []}
    problems = []
    for domain in ("root", "*"):
        for item, value in wanted.items():
            for kind in ("soft", "hard"):
                found = effective.get((domain, kind, item))
                if found is None:
                    problems.append(f"no {kind} {item} for {domain}")
                elif found["value"] != value:
                    problems.append(f"{domain} {kind} {item} is {found['value']} ({found['file']}), not {value}")
    # The isolations' services must carry the limit in their units: PAM limits never reach services.
    units = {"unit_limits": "containerd.service", "docker_unit_limits": "docker.service"}
    checked = [unit for probe, unit in units.items() if probe in host.facts]
    for probe, unit_name in units.items():
        if probe not in host.facts:
            continue
        unit = host.fact(probe)
        if unit is None or unit["load_state"] != "loaded":
            problems.append(f"{unit_name} is not loaded")
        elif str(unit["nofile_hard"]) != wanted["nofile"]:
            problems.append(f"{unit_name} LimitNOFILE is {unit['nofile_hard']}, not {wanted['nofile']}")
    if problems:
        return False, "; ".join(problems)
    where = " and ".join(["PAM drop-in", *checked])
    return True, f"nofile {wanted['nofile']}, nproc {wanted['nproc']} configured ({where})"


def _docker(host: _Host) -> tuple[bool, str]:
    daemon = host.fact("docker")
    if not daemon["answers"]:
        return False, f"the Docker daemon does not answer: {daemon['error'] or 'there is no docker CLI'}"
    cgroup, storage = expected_drivers(host.values[data.DOCKER_DAEMON.name])
    problems = [
        f"its {what} driver is {found}, daemon.json asks for {wanted}"
        for what, wanted, found in (
            ("cgroup", cgroup, daemon["cgroup_driver"]),
            ("storage", storage, daemon["storage_driver"]),
        )
        if wanted is not None and found != wanted
    ]
    if problems:
        return False, "; ".join(problems)
    return True, (
        f"Docker {daemon['server_version']} answers (cgroup driver {daemon['cgroup_driver']},"
        f" storage driver {daemon['storage_driver']})"
    )


def _containerd(host: _Host) -> tuple[bool, str]:
    plugins = host.fact("plugins")
    if plugins is None:
        return False, "ctr is not installed"
    if not plugins["answering"]:
        return False, f"containerd does not answer: {plugins['error']}"
    return True, "answers on /run/containerd/containerd.sock"


def _containerd_plugins(host: _Host) -> tuple[bool, str]:
    plugins = host.fact("plugins")
    if plugins is None or not plugins["answering"]:
        return False, "containerd does not answer"
    errors = host.fact("plugin_errors") or {}
    snapshotter = f"io.containerd.snapshotter.v1.{host.values[data.SNAPSHOTTER.name]}"
    problems = []
    for name in (snapshotter, CRI_PLUGIN):
        plugin = plugins["plugins"].get(name)
        if plugin is None:
            problems.append(f"{name} is absent (not in this containerd build)")
        elif plugin["status"] != "ok":
            reason = errors.get(name)
            problems.append(f"{name} is {plugin['status']}" + (f": {reason}" if reason else ""))
    if problems:
        return False, "; ".join(problems)
    return True, f"{snapshotter} and {CRI_PLUGIN} ok"


def _ctr(host: _Host) -> tuple[bool, str]:
    path = host.fact("ctr")
    if not path:
        return False, "/usr/bin/ctr does not resolve to an executable (the worker calls that path)"
    return True, f"/usr/bin/ctr -> {path}"


def _cni(host: _Host) -> tuple[bool, str]:
    found = host.fact("cni")
    directory = host.values[data.CNI_BIN_DIR.name]
    plugins = found["plugins"] if found else {}
    problems = [f"{name} missing" for name in CNI_PLUGINS if name not in plugins]
    problems += [
        f"{name} exits {plugins[name]['exit_status']}"
        for name in CNI_PLUGINS
        if name in plugins and plugins[name]["exit_status"] != 0
    ]
    if not (found and found["cnitool"]):
        problems.append("cnitool missing")
    if problems:
        return False, f"{directory}: {', '.join(problems)}"
    return True, f"{', '.join(CNI_PLUGINS)} and cnitool in {directory}"


def _zfs_pool(host: _Host) -> tuple[bool, str]:
    pool = host.values[data.ZFS_POOL.name]
    status = host.fact("pool")
    if status is None:
        return False, "ZFS does not answer (no zpool, module not loaded, or zfs-fuse not running)"
    if pool not in status:
        return False, f"pool {pool} is not imported"
    if status[pool]["state"] != "ONLINE":
        return False, f"pool {pool} is {status[pool]['state']}: {status[pool]['status'] or 'no status text'}"
    listed = (host.fact("pool_list") or {}).get(pool)
    if listed is None:
        return False, f"pool {pool} is not listed by zpool list"
    capacity = int(listed["capacity"].rstrip("%") or 0)
    if capacity >= ZFS_FULL_PERCENT:
        return False, f"pool {pool} is {capacity}% full ({listed['free']} free)"
    return True, f"{pool} ONLINE, {listed['free']} free ({capacity}% used)"


def _zfs_dataset(host: _Host) -> tuple[bool, str]:
    dataset = f"{host.values[data.ZFS_POOL.name]}/containerd"
    properties = (host.fact("dataset") or {}).get(dataset)
    if properties is None:
        return False, f"{dataset} does not exist (or ZFS does not answer)"
    mountpoint, mounted = properties["mountpoint"]["value"], properties["mounted"]["value"]
    if mountpoint != SNAPSHOTTER_PATH:
        return False, f"{dataset} is mounted at {mountpoint}, not {SNAPSHOTTER_PATH}"
    if mounted != "yes":
        return False, f"{dataset} is not mounted (at {SNAPSHOTTER_PATH})"
    return True, f"{dataset} mounted at {SNAPSHOTTER_PATH}"


def _worker_config(host: _Host) -> tuple[bool, str]:
    path = host.values[data.WORKER_CONFIG_PATH.name]
    lines = host.fact("worker_config")
    if lines is None:
        return False, f"{path} is missing"
    try:
        found = json.loads("\n".join(lines))
    except ValueError as error:
        return False, f"{path} is not valid JSON ({error})"
    resources = host.fact("resources")
    if resources is None:
        return False, "could not read the host's interfaces, CPUs and memory"
    try:
        expected = render(preflight.worker_settings(host.target, host.values, host.gpu), resources)
    except ValueError as error:
        return False, str(error)
    differing = _differing(expected, found)
    if differing:
        shown = ", ".join(differing[:5]) + (f" and {len(differing) - 5} more" if len(differing) > 5 else "")
        return False, f"{path} does not match this host: {shown}"
    return True, f"{path} matches (interface {expected['networking']['hardware_interface']})"


def _differing(expected: Any, found: Any, where: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON documents (keys only one has count too)."""
    if isinstance(expected, dict) and isinstance(found, dict):
        keys = list(expected) + [key for key in found if key not in expected]
        return [path for key in keys for path in _differing(expected.get(key), found.get(key), f"{where}{key}.")]
    return [] if expected == found else [where.rstrip(".")]


def _releases(host: _Host) -> tuple[bool, str]:
    if isinstance(host.lock, lockfile.LockError):
        return False, f"cannot compare with the lock file: {host.lock}"
    resources = host.fact("resources")
    arch = MACHINE_ARCH.get(resources["machine"]) if resources else None
    prebuilt = host.values[data.CNITOOL_PREBUILT.name]
    problems, shown = [], []
    # With Docker, containerd is its package's, not a release build of this package.
    components = [name for name in RELEASES if name != "containerd" or "docker" not in host.values[data.ISOLATION.name]]
    for name in components:
        installed = host.fact(f"release-{name}")
        locked = host.lock.components.get(name)
        if installed is None:
            problems.append(f"{name} not installed by pyinfra-iluvatar")
            continue
        if locked is not None and installed["version"] != locked.version:
            problems.append(f"{name} {installed['version']} installed, the lock has {locked.version}")
        artifact = None
        if arch is not None and name == "cnitool" and prebuilt:
            artifact = prebuilt.get(arch)
        elif arch is not None and locked is not None:
            artifact = locked.artifacts.get(arch)
        if artifact is not None and installed["source"] != f"sha256:{artifact.sha256}":
            problems.append(f"{name} was installed from another artifact than the lock's ({installed['source']})")
        changed = sorted(path for path, state in installed["files"].items() if state != "ok")
        if changed:
            problems.append(f"{name} files changed since install: {', '.join(changed)}")
        shown.append(f"{name} {installed['version']}")
    if problems:
        return False, "; ".join(problems)
    return True, ", ".join(shown) + ", byte-identical"


def _cgroups(host: _Host) -> tuple[bool, str]:
    found = host.fact("cgroups")
    missing = [name for name in ("cpu", "memory") if name not in found["controllers"]]
    if missing:
        available = ", ".join(found["controllers"]) or "none"
        return False, (
            f"no {' or '.join(missing)} controller in the cgroup v{found['version']} hierarchy (it has: {available}):"
            " containers run without the worker's CPU and memory limits"
        )
    return True, f"cpu and memory (cgroup v{found['version']})"


def _gpu(host: _Host) -> preflight.GpuPlan:
    """The host's GPU plan; :class:`_Unread` with pre-flight's problem when the host is not what its data asks."""
    if host.gpu is None:
        raise _Unread(host.gpu_problem or "no NVIDIA GPU")
    return host.gpu


def _gpu_driver(host: _Host) -> tuple[bool, str]:
    gpu = _gpu(host)
    if not gpu.gpus:
        return False, f"nvidia-smi lists no GPU ({gpu.on_pci} NVIDIA GPU(s) on the PCI bus): is the driver loaded?"
    return True, nvidia.gpu_state(host.fact("gpus"), host.fact("devices")).message


def _gpu_toolkit(host: _Host) -> tuple[bool, str]:
    _gpu(host)
    version = host.values[data.NVIDIA_TOOLKIT_VERSION.name]
    installed = host.fact("packages") or {}
    missing = []
    for spec in toolkit_packages(version):
        name = spec.partition("=")[0]
        if version not in installed.get(name, ()):
            found = ", ".join(sorted(installed.get(name, ()))) or "not installed"
            missing.append(f"{name} ({found})")
    if missing:
        return False, f"not at {version}: {', '.join(missing)}"
    return True, f"NVIDIA container toolkit {version} ({len(nvidia.TOOLKIT_PACKAGES)} packages)"


def _gpu_runtimes(host: _Host) -> tuple[bool, str]:
    _gpu(host)
    isolation = host.values[data.ISOLATION.name]
    problems, found = [], []
    if "docker" in isolation:
        daemon = host.fact("docker")
        if not daemon["answers"]:
            problems.append("the Docker daemon does not answer")
        elif nvidia.RUNTIME_NAME not in daemon["runtimes"]:
            problems.append(f"Docker has no {nvidia.RUNTIME_NAME} runtime (it has {', '.join(daemon['runtimes'])})")
        else:
            found.append("Docker")
    if "containerd" in isolation:
        lines = host.fact("nvidia_drop_in")
        snapshotter = host.values[data.SNAPSHOTTER.name]
        expected = {
            nvidia.render_containerd_drop_in(major, snapshotter=snapshotter if snapshotter in SNAPSHOTTERS else "zfs")
            for major in (1, 2)
        }
        if lines is None:
            problems.append(f"{nvidia.CONTAINERD_DROP_IN} is missing")
        elif "\n".join(lines) + "\n" not in expected:
            problems.append(f"{nvidia.CONTAINERD_DROP_IN} is not the deploy's (changed by hand or by nvidia-ctk?)")
        else:
            found.append("containerd")
    if problems:
        return False, "; ".join(problems)
    return True, f"the {nvidia.RUNTIME_NAME} runtime is configured for {' and '.join(found)}"


def _gpu_persistence(host: _Host) -> tuple[bool, str]:
    gpus = _gpu(host).gpus
    off = [f"{gpu['index']} ({gpu['uuid']})" for gpu in gpus if not gpu["persistence_mode"]]
    if not gpus:
        return False, "nvidia-smi lists no GPU"
    if off:
        return False, f"persistence mode is off for {len(off)} of {len(gpus)} GPU(s): {', '.join(off)}"
    return True, f"on for all {len(gpus)} GPU(s)"


def _build_packages(host: _Host) -> tuple[bool, str]:
    installed = host.fact("packages") or {}
    expected = list(BUILD_PACKAGES)
    expected += PODMAN_PACKAGES if host.values[data.BUILD_ENGINE.name] == "podman" else []
    expected += DISTRIBUTION_RUST if host.values[data.RUST_SOURCE.name] == "distribution" else []
    missing = [name for name in expected if name not in installed]
    if missing:
        return False, f"not installed: {', '.join(missing)}"
    return True, f"{len(expected)} installed"


def _rust(host: _Host) -> tuple[bool, str]:
    tools = host.fact("build_tools")
    user = host.values[data.BUILD_USER.name]
    missing = [name for name in ("rustc", "cargo") if tools[name] is None or tools[name]["version"] is None]
    if missing:
        return False, f"{user} has no working {' or '.join(missing)} on its PATH"
    versions = f"rustc {tools['rustc']['version']}, cargo {tools['cargo']['version']}"
    if host.values[data.RUST_SOURCE.name] == "distribution":
        return True, f"{versions} ({tools['rustc']['path']})"
    toolchain = host.values[data.RUST_TOOLCHAIN.name]
    default = next((found["name"] for found in tools["toolchains"] if found["default"]), None)
    if tools["rustup"] is None:
        return False, f"{user} has no rustup ({versions} from {tools['rustc']['path']})"
    if default is None or not default.startswith(f"{toolchain}-"):
        return False, f"{user}'s default toolchain is {default or 'none'}, not {toolchain}"
    return True, f"{versions} (rustup, default {default})"


def _cross(host: _Host) -> tuple[bool, str]:
    found = host.fact("build_tools")["cross"]
    wanted = host.values[data.CROSS_VERSION.name]
    if found is None:
        return False, f"{host.values[data.BUILD_USER.name]} has no cross"
    if found["version"] != wanted:
        return False, f"cross {found['version']} ({found['path']}), not {wanted}"
    return True, f"cross {wanted} ({found['path']})"


def _engine(host: _Host) -> tuple[bool, str]:
    engine, user = host.values[data.BUILD_ENGINE.name], host.values[data.BUILD_USER.name]
    said = (host.fact("engine") or "").strip()
    version = said.rsplit(" ", 1)[-1]  # "podman version 4.3.1", or the daemon's "28.2.2"
    if not said:
        hint = (
            " (is it in the docker group, is dockerd running?)"
            if engine == "docker"
            else " (is podman installed, does the user have /etc/subuid and /etc/subgid ranges?)"
        )
        return False, f"{engine} does not answer for {user}{hint}"
    return True, f"{engine} {version} answers for {user}"


def _ansible(host: _Host) -> tuple[bool, str]:
    tools = host.fact("build_tools")
    wanted, venv = host.values[data.ANSIBLE_VERSION.name], host.values[data.ANSIBLE_VENV.name]
    if tools["ansible"] != wanted:
        return False, f"ansible {tools['ansible'] or 'is not installed'} in {venv}, not {wanted}"
    return True, f"ansible {wanted} (ansible-core {tools['ansible_core']}) in {venv}"


def _build_checkout(host: _Host) -> tuple[bool, str]:
    found = host.fact("checkout")
    path, ref = host.values[data.BUILD_CHECKOUT.name], host.values[data.BUILD_REF.name]
    if found is None or found["head"] is None:
        return False, f"{path} is not a git checkout"
    wanted = ref_commit(ref, found["remote"])
    if wanted != found["head"]:
        upstream = wanted[:12] if wanted else "unknown upstream"
        return False, f"{path} is at {found['head'][:12]}, {ref} is {upstream}"
    target = host.values[data.BUILD_TARGET.name]
    if target:
        stamp = f"{found['head']} {target} {host.values[data.BUILD_PLATFORM.name]}"
        if found["built"] != stamp:
            return False, f"{path} at {ref} ({found['head'][:12]}) is not built ({target})"
        return True, f"{path} at {ref} ({found['head'][:12]}), {target} built"
    return True, f"{path} at {ref} ({found['head'][:12]})"


_CHECKS: Mapping[str, Callable[[_Host], tuple[bool, str]]] = {
    "packages": _packages,
    "limits": _limits,
    "docker": _docker,
    "containerd": _containerd,
    "containerd-plugins": _containerd_plugins,
    "ctr": _ctr,
    "cni": _cni,
    "zfs-pool": _zfs_pool,
    "zfs-dataset": _zfs_dataset,
    "gpu-driver": _gpu_driver,
    "gpu-toolkit": _gpu_toolkit,
    "gpu-runtimes": _gpu_runtimes,
    "gpu-persistence": _gpu_persistence,
    "worker-config": _worker_config,
    "releases": _releases,
    "cgroups": _cgroups,
    "build-packages": _build_packages,
    "rust": _rust,
    "cross": _cross,
    "engine": _engine,
    "ansible": _ansible,
    "build-checkout": _build_checkout,
}
