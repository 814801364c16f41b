"""
Pre-flight: every input of every host checked before the first operation of the run runs on any host.

pyinfra first calls each deploy function once per host (the prepare stage) and only then runs the operations
(the execute stage); with ``-y`` the bodies of operations — and any check in them — run only at execute, when
other hosts may already have changed. So every deploy of this package starts with :func:`plan`. Its first call in
a run checks every active host of the inventory: every ``iluvatar_*`` data key (whichever deploy runs), and for
the parts the deploy asks for, the lock file each host names and what each host is (one round trip per host, all
hosts at once: its machine against the lock and the prebuilt maps; its interface, address, CPUs and memory for
``worker.json``; its NVIDIA GPUs and driver, unless ``iluvatar_gpu`` is false). Any failure stops the run with one
message that lists every bad host and key, before anything changed anywhere. An ``iluvatar_*`` key this package does
not know (a typo) is a warning naming the closest known key.

Deploys then read their settings from the :class:`HostPlan` it returns, never from raw host data.
"""

from __future__ import annotations

import difflib
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import gevent  # type: ignore[import-untyped]
from pyinfra import logger
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.host import Host
from pyinfra.api.state import State
from pyinfra.context import ctx_host, host, state

from pyinfra_iluvatar import data, snapshot
from pyinfra_iluvatar.facts.combined import Combined, Probe, Unreadable
from pyinfra_iluvatar.facts.nvidia import NvidiaDevicesInfo, NvidiaGpu, NvidiaGpusInfo
from pyinfra_iluvatar.facts.resources import HostResourcesInfo
from pyinfra_iluvatar.operations.nvidia import GPU_STATE_PROBES, gpu_state
from pyinfra_iluvatar.operations.worker_config import WorkerSettings, render
from pyinfra_iluvatar.releases import lockfile
from pyinfra_iluvatar.releases.components import MACHINE_ARCH

T = TypeVar("T")

Part = Literal["containerd", "cni", "gpu", "worker", "build"]
"""What a deploy asks pre-flight to check beyond the data keys: the release artifacts of containerd, of the CNI
plugins and cnitool, the host's NVIDIA GPUs (``gpu``), (``worker``) the artifacts the host's isolation needs, its
GPUs and its ``worker.json``, or (``build``) the build user and the development configs."""
RESOURCES_PROBE: Probe = ("resources", "pyinfra_iluvatar.facts.resources.HostResources", {})

CONTROLLER_GROUP = "controller"
CONTROLLER_PORT = 8078
"""The inventory group whose first host is the worker's load balancer by default, and the port it listens on."""


class PreflightError(PyinfraError):
    """
    Bad input found before any change: the message lists every bad host and key.

    pyinfra's command line prefixes an error with the deepest stack frame outside pyinfra ("pyinfra error in
    …/preflight.py line 120"): for bad input that frame is this package's code, while the fault is in the
    inventory the message names. Reading ``__traceback__`` therefore gives ``None`` (Python itself still keeps the
    traceback, for ``traceback.print_exc`` and debuggers).
    """

    @property
    def __traceback__(self) -> None:
        return None

    @__traceback__.setter
    def __traceback__(self, _value: object) -> None:
        pass


@dataclass(frozen=True)
class GpuPlan:
    """The GPU work on a host with an NVIDIA GPU (:attr:`HostPlan.gpu`)."""

    gpus: tuple[NvidiaGpu, ...]
    """The GPUs ``nvidia-smi`` lists (none yet where the deploy installs the driver)."""
    on_pci: int
    """NVIDIA GPUs on the PCI bus (0 on a Jetson, whose GPU is not a PCI device)."""
    driver_package: str | None = None
    """The driver package the deploy installs (``iluvatar_nvidia_driver_package``), ``None`` when not set."""

    @property
    def count(self) -> int:
        """How many GPUs the worker gets."""
        return len(self.gpus) or self.on_pci

    @property
    def memory_mb(self) -> int | None:
        """The smallest GPU's memory in MiB, ``None`` when ``nvidia-smi`` did not report every GPU's."""
        sizes = [gpu["memory_total_mib"] for gpu in self.gpus]
        if not sizes or any(size is None for size in sizes):
            return None
        return min(size for size in sizes if size is not None)


class NotReadYet(Exception):
    """A :class:`HostPlan` was asked for what pre-flight has not read from its host."""


@dataclass(frozen=True)
class HostPlan:
    """One host's validated settings, and what pre-flight resolved for the parts that asked."""

    name: str
    values: Mapping[str, Any]
    lock: lockfile.Lock | None = None
    resources: HostResourcesInfo | None = None
    worker_config: dict[str, Any] | None = None
    gpu: GpuPlan | None = None
    """The GPU work on this host when a part asked for it; ``None``: none (no GPU, ``iluvatar_gpu`` false)."""
    build_home: str | None = None
    """The build user's home directory (the ``build`` part)."""

    def get(self, key: data.DataKey[T]) -> T:
        """The validated value of ``key`` on this host."""
        return cast(T, self.values[key.name])

    @property
    def arch(self) -> str:
        """The host's Debian architecture (``amd64``, ``arm64``)."""
        if self.resources is None:
            raise NotReadYet(f"{self.name}: the host's machine is not read yet (or no part asked for it)")
        return MACHINE_ARCH[self.resources["machine"]]

    def locked(self, component: str) -> lockfile.LockedComponent:
        """The locked ``component`` (pre-flight made sure the lock has it when a part asked for it)."""
        assert self.lock is not None, f"{self.name}: no part asked for the lock file"
        return self.lock.component(component)

    def artifact(self, component: str) -> lockfile.Artifact:
        """The locked ``component``'s artifact for this host's architecture."""
        return self.locked(component).artifact(self.arch)


@dataclass
class _Run:
    """What one pyinfra run has checked so far; shared by the greenlets that prepare each host."""

    guard: threading.Lock = field(default_factory=threading.Lock)
    plans: dict[str, HostPlan] = field(default_factory=dict)
    parts: set[Part] = field(default_factory=set)
    locks: dict[str, lockfile.Lock | lockfile.LockError] = field(default_factory=dict)
    resources: dict[str, HostResourcesInfo | None] = field(default_factory=dict)
    found: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per host: what its one round trip read (``resources``; ``gpus`` and ``devices`` unless GPU is off;
    ``build_user`` for the build part)."""
    read_ahead: dict[str, set[str]] = field(default_factory=dict)
    """Per ``reads`` function given to :func:`plan` (by file and name: pyinfra runs a deploy file anew for each
    host): the hosts it was read ahead on. Each host's deploy calls :func:`plan`; one call reads every host."""


_runs: weakref.WeakKeyDictionary[State, _Run] = weakref.WeakKeyDictionary()


ReadsFor = Callable[[HostPlan], Iterable[Probe]]
"""What a deploy's operations will read on a host with this plan (:mod:`pyinfra_iluvatar.snapshot`)."""


def plan(*parts: Part, reads: ReadsFor | None = None) -> HostPlan:
    """
    The current host's settings, after the whole run's pre-flight passed for ``parts``.

    The first call in a run checks every active host; a later call checks again only when it asks for parts not
    checked yet. Raises :class:`PreflightError` listing every bad host and key. Then, given ``reads``, what each
    host's operations will read is read ahead on every host at once (:func:`pyinfra_iluvatar.snapshot.read_ahead`;
    only what no earlier call read).
    """
    run = _runs.setdefault(state, _Run())
    with run.guard:
        if not run.plans or not set(parts) <= run.parts:
            _check(state, run, set(parts) | run.parts, reads)
        if reads is not None:
            done = run.read_ahead.setdefault(f"{reads.__code__.co_filename}:{reads.__qualname__}", set())
            targets = [
                target
                for target in state.inventory.get_active_hosts()
                if target.name in run.plans and target.name not in done
            ]
            snapshot.read_ahead(state, {target: reads(run.plans[target.name]) for target in targets})
            done.update(target.name for target in targets)
    return run.plans[host.name]


def _check(current: State, run: _Run, parts: set[Part], reads: ReadsFor | None = None) -> None:
    hosts = list(current.inventory.get_active_hosts())
    errors: list[tuple[Host, str]] = []
    values: dict[Host, dict[str, Any]] = {}
    for target in hosts:
        checked, problems = host_values(target)
        errors += [(target, problem) for problem in problems]
        if not problems:
            values[target] = checked
    components = {target: _components(parts, checked) for target, checked in values.items()}
    locks: dict[Host, lockfile.Lock] = {}
    for target in values:
        if components[target]:
            lock = _lock(run, values[target])
            if isinstance(lock, lockfile.LockError):
                errors.append((target, f"{data.LOCK_FILE.name}: {lock}"))
            else:
                locks[target] = lock
                errors += [(target, error) for error in _component_errors(lock, components[target])]
    gpu_part = bool({"gpu", "worker"} & parts)
    described = [target for target in values if components[target] or gpu_part]
    described += [target for target in values if "build" in parts and target not in described]
    probes = {target.name: _probes(parts, values[target]) for target in described}
    errors += _read_hosts(run, described, probes, _ahead(current, described, values, locks, reads))
    worker_configs: dict[Host, dict[str, Any]] = {}
    gpus: dict[Host, GpuPlan] = {}
    homes: dict[Host, str] = {}
    for target in described:
        resources = run.resources.get(target.name)
        if resources is None:
            continue
        if target in locks:
            errors += [(target, error) for error in _artifact_errors(target, resources, locks[target], components)]
        found_there = run.found[target.name]
        if "build" in parts:
            home = _home(found_there.get("build_user"))
            if home is None:
                missing = "is not a user on this host (getent passwd)"
                errors.append((target, data.error(target, data.BUILD_USER, missing)))
            else:
                homes[target] = home
        if "gpus" in found_there:
            found, problem = gpu_plan(target, values[target], found_there["gpus"], found_there["devices"])
            if problem:
                errors.append((target, problem))
            elif found:
                gpus[target] = found
        if "worker" in parts:
            try:
                settings = worker_settings(target, values[target], gpus.get(target))
                worker_configs[target] = render(settings, resources)
            except ValueError as problem:
                errors.append((target, f"worker.json: {problem}"))
    if errors:
        bad = len({target.name for target, _ in errors})
        raise PreflightError(
            f"pre-flight found bad input on {bad} of {len(hosts)} host(s); nothing was changed on any host:\n"
            + "\n".join(f"  {target.name}: {error}" for target, error in errors)
        )
    for target, checked in values.items():
        run.plans[target.name] = HostPlan(
            target.name,
            checked,
            locks.get(target),
            run.resources.get(target.name),
            worker_configs.get(target),
            gpus.get(target),
            homes.get(target),
        )
    run.parts |= parts


def host_values(target: Host) -> tuple[dict[str, Any], list[str]]:
    """
    Every data key's value on ``target``, and a problem (``<key> = <value> (<origin>) …``) per bad key or pair of
    keys; warns about ``iluvatar_*`` keys this package lacks.
    """
    values: dict[str, Any] = {}
    errors: list[str] = []
    for key in data.ALL_KEYS:
        try:
            values[key.name] = data.parse(target, key)
        except data.DataError as error:
            errors.append(error.problem)
    known = [key.name for key in data.ALL_KEYS]
    for name in sorted(data.given(target)):
        if name.startswith("iluvatar_") and name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            logger.warning(f"{target.name}: unknown data key {name} ({data.origin(target, name)}) is ignored{hint}")
    if not errors:
        errors += _cross_checks(target, values)
    return values, errors


def _cross_checks(target: Host, values: Mapping[str, Any]) -> list[str]:
    """Errors from keys that are valid alone but not together, or that name something missing on the controller."""
    errors = []
    snapshotter = values[data.SNAPSHOTTER.name]
    if snapshotter == "zfs" and not values[data.ZFS.name]:
        errors.append(data.error(target, data.SNAPSHOTTER, "needs the ZFS dataset, but iluvatar_zfs is false"))
    if snapshotter == "zfs" and values[data.ZFS_IMPLEMENTATION.name] == "zfs-fuse":
        fuse = "cannot work on zfs-fuse (containerd's zfs snapshotter refuses fuse.zfs mounts)"
        errors.append(data.error(target, data.SNAPSHOTTER, fuse))
    if values[data.GPU_MPS.name] and values[data.GPU.name] == "false":
        errors.append(data.error(target, data.GPU_MPS, "needs GPU support, but iluvatar_gpu is false"))
    if values[data.GPU_MPS.name] and "docker" not in values[data.ISOLATION.name]:
        errors.append(data.error(target, data.GPU_MPS, "needs Docker (the MPS daemon is a Docker container)"))
    for key in (data.BUILD_REPOSITORY, data.BUILD_TARGET):
        if values[key.name] and not values[data.BUILD_CHECKOUT.name]:
            errors.append(data.error(target, key, "needs iluvatar_build_checkout, the checkout's path"))
    if values[data.DOWNLOAD.name] == "controller":
        cache = values[data.DOWNLOAD_CACHE.name]
        if unusable := _not_a_directory(Path(os.path.expanduser(cache))):
            errors.append(data.error(target, data.DOWNLOAD_CACHE, unusable))
    return errors


def _not_a_directory(path: Path) -> str | None:
    """Why ``path`` cannot be a directory this controller writes into, or ``None`` when it can."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return "is a file, not a directory" if existing == path else f"cannot be created: {existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"is not writable ({existing})"
    return None


def _components(parts: Iterable[Part], values: Mapping[str, Any]) -> list[str]:
    """The lock components ``parts`` install on a host with these settings (with Docker, its containerd serves)."""
    isolation = values[data.ISOLATION.name]
    containerd = "containerd" in parts or ("worker" in parts and "containerd" in isolation)
    cni = "cni" in parts or ("worker" in parts and "containerd" in isolation)
    components = ["containerd"] if containerd and "docker" not in isolation else []
    if "build" in parts and values[data.RUST_SOURCE.name] == "rustup":
        components.append("rustup")
    if cni:
        components += ["cni-plugins", "cnitool"]
        if not values[data.CNITOOL_PREBUILT.name]:
            components.append("go")
    return components


def _lock(run: _Run, values: Mapping[str, Any]) -> lockfile.Lock | lockfile.LockError:
    """The lock file these settings name, read once per run and path (or why it cannot be read)."""
    path = values[data.LOCK_FILE.name]
    if path not in run.locks:
        run.locks[path] = load_lock(path)
    return run.locks[path]


def load_lock(path: str) -> lockfile.Lock | lockfile.LockError:
    """The lock file at ``path`` (relative: to the directory pyinfra runs in), or why it cannot be read."""
    try:
        return lockfile.load(Path(path).absolute())
    except lockfile.LockError as error:
        return error


def _component_errors(lock: lockfile.Lock, components: list[str]) -> list[str]:
    errors = []
    for component in components:
        try:
            lock.component(component)
        except lockfile.LockError as error:
            errors.append(f"{data.LOCK_FILE.name}: {error}")
    return errors


def _probes(parts: set[Part], values: Mapping[str, Any]) -> tuple[Probe, ...]:
    """What pre-flight reads on a host with these settings for ``parts``, besides what it is."""
    probes: tuple[Probe, ...] = ()
    if {"gpu", "worker"} & parts and values[data.GPU.name] != "false":
        probes += GPU_STATE_PROBES
    if "build" in parts:
        command = f"getent passwd {values[data.BUILD_USER.name]}"
        probes += (("build_user", "pyinfra.facts.server.Command", {"command": command}),)
    return probes


def _home(entry: Any) -> str | None:
    """The home directory in a ``getent passwd`` line, ``None`` when there is none (no such user)."""
    fields = entry.split(":") if isinstance(entry, str) else []
    return fields[5] if len(fields) >= 7 and fields[5].startswith("/") else None


def _ahead(
    current: State,
    targets: list[Host],
    values: Mapping[Host, dict[str, Any]],
    locks: Mapping[Host, lockfile.Lock],
    reads: ReadsFor | None,
) -> dict[Host, list[Probe]]:
    """
    What ``reads`` will ask of each host, as far as its settings tell before anything is read from it (a host whose
    reads need what the host is — its architecture, its GPUs — has those read after pre-flight's own read), made
    ready to read ahead in that read (:func:`pyinfra_iluvatar.snapshot.prepare`).
    """
    if reads is None:
        return {}
    known: dict[Host, Iterable[Probe]] = {}
    for target in targets:
        try:
            known[target] = reads(HostPlan(target.name, values[target], locks.get(target)))
        except NotReadYet:
            continue
    return snapshot.prepare(current, known)


def _read_hosts(
    run: _Run, targets: list[Host], probes: Mapping[str, tuple[Probe, ...]], ahead: Mapping[Host, list[Probe]]
) -> list[tuple[Host, str]]:
    """
    Read what each host is (``HostResources``), its ``probes``, and what its deploy will read (``ahead``, kept by
    :func:`pyinfra_iluvatar.snapshot.store`): one round trip per host, all hosts at once, each probe read once
    per run; an error per host it cannot read.
    """

    def read(target: Host, wanted: tuple[Probe, ...]) -> dict[str, Any]:
        with ctx_host.use(target):
            if target in ahead:
                try:
                    return target.get_fact(Combined, probes=(*wanted, *ahead[target]))
                except Exception as error:  # reading ahead must never fail pre-flight's own read
                    # Some fact's command could not be made (pyinfra's KernelModules reads the kernel to make its
                    # own): pre-flight reads alone, and the deploy's reads are read after it.
                    logger.debug(f"{target.print_prefix}reading ahead with pre-flight failed ({type(error).__name__})")
            return target.get_fact(Combined, probes=wanted)

    unread: dict[Host, tuple[Probe, ...]] = {}
    for target in targets:
        have = run.found.get(target.name, {})
        wanted = tuple(probe for probe in (RESOURCES_PROBE, *probes[target.name]) if probe[0] not in have)
        if wanted:
            unread[target] = wanted
    greenlets = {target: gevent.spawn(read, target, wanted) for target, wanted in unread.items()}
    gevent.joinall(list(greenlets.values()))
    errors = []
    for target, greenlet in greenlets.items():
        found = greenlet.value if greenlet.successful() else {}
        if target in ahead:
            snapshot.store(target, ahead[target], found)
            kept = {probe[0] for probe in ahead[target]}
            found = {name: value for name, value in found.items() if name not in kept}
        run.found.setdefault(target.name, {}).update(found)
        if "resources" in found or target.name not in run.resources:
            resources = found.get("resources")
            run.resources[target.name] = None if isinstance(resources, Unreadable) else resources
        if run.resources[target.name] is None:
            errors.append((target, "could not read what the host is (uname -m, nproc, /proc/meminfo, ip)"))
    return errors


def gpu_plan(
    target: Host, values: Mapping[str, Any], gpus: NvidiaGpusInfo | str | None, devices: NvidiaDevicesInfo | str | None
) -> tuple[GpuPlan | None, str | None]:
    """
    The GPU work on ``target`` from ``iluvatar_gpu`` and what ``nvidia-smi`` and the PCI bus show (the values of
    ``NvidiaGpus`` and ``NvidiaDevices``; a ``str`` where one could not be read): ``(plan, None)``, ``(None, None)``
    for no GPU work, or ``(None, problem)`` when the host cannot be what its data asks for.
    """
    mode = values[data.GPU.name]
    if mode == "false":
        return None, None
    if not isinstance(gpus, dict) or not isinstance(devices, dict):
        read = (("nvidia-smi", gpus), ("the PCI bus", devices))
        unread = [what for what, value in read if not isinstance(value, dict)]
        return None, data.error(target, data.GPU, f"needs the host's GPUs, but could not read {' or '.join(unread)}")
    state = gpu_state(gpus, devices)
    if state.state == "ready":
        return GpuPlan(tuple(gpus["gpus"]), len(devices["gpus"])), None
    if state.state == "no_gpu":
        return None, None if mode == "auto" else data.error(target, data.GPU, f"needs an NVIDIA GPU: {state.message}")
    package = values[data.NVIDIA_DRIVER_PACKAGE.name]
    if package and state.state in ("no_driver", "nvml_missing"):
        return GpuPlan((), len(devices["gpus"]), package), None
    hint = (
        "the driver is a prerequisite: install it, or name its package in iluvatar_nvidia_driver_package"
        if state.state in ("no_driver", "nvml_missing")
        else "fix the driver"
    )
    off = "; or set iluvatar_gpu: false to leave the GPU alone" if mode == "auto" else ""
    return None, data.error(target, data.GPU, f"finds no working NVIDIA driver: {state.message}; {hint}{off}")


def _artifact_errors(
    target: Host, resources: HostResourcesInfo, lock: lockfile.Lock, components: Mapping[Host, list[str]]
) -> list[str]:
    """Errors for a host whose machine no artifact is locked for, in the lock file or the prebuilt cnitool map."""
    machine = resources["machine"]
    if machine not in MACHINE_ARCH:
        return [f"machine {machine!r} is not supported (supported: {', '.join(MACHINE_ARCH)})"]
    arch = MACHINE_ARCH[machine]
    errors = []
    for component in components[target]:
        locked = lock.components.get(component)  # a component the lock lacks is reported already
        if locked is not None and locked.artifacts:
            try:
                locked.artifact(arch)
            except lockfile.LockError as error:
                errors.append(f"{data.LOCK_FILE.name}: this host is {arch}: {error}")
    prebuilt = data.parse(target, data.CNITOOL_PREBUILT)
    if prebuilt and "cnitool" in components[target] and arch not in prebuilt:
        problem = f"has no entry for this host's architecture {arch} (it has {', '.join(sorted(prebuilt))})"
        errors.append(data.error(target, data.CNITOOL_PREBUILT, problem))
    return errors


def worker_settings(target: Host, values: Mapping[str, Any], gpu: GpuPlan | None = None) -> WorkerSettings:
    """
    The worker.json settings of ``target``, from its data (the load balancer defaults to the controller's) and its
    GPUs (``gpu``: :func:`gpu_plan`; ``None``: no GPU work).
    """
    return WorkerSettings(
        name=values[data.WORKER_NAME.name] or target.name,
        port=values[data.WORKER_PORT.name],
        cni_bin_dir=values[data.CNI_BIN_DIR.name],
        snapshotter=values[data.SNAPSHOTTER.name],
        load_balancer_url=values[data.LOAD_BALANCER_URL.name] or _controller_url(target),
        memory_reserve_mb=values[data.MEMORY_RESERVE_MB.name],
        cpu_reserve=values[data.CPU_RESERVE.name],
        address=values[data.WORKER_ADDRESS.name],
        hardware_interface=values[data.HARDWARE_INTERFACE.name],
        overrides=values[data.WORKER_CONFIG_OVERRIDES.name],
        gpu_count=gpu.count if gpu else 0,
        gpu_memory_mb=gpu.memory_mb if gpu else None,
    )


def _controller_url(target: Host) -> str:
    """``http://<controller>:8078`` for the first host of the inventory's ``controller`` group, else localhost."""
    controllers = target.inventory.groups.get(CONTROLLER_GROUP)
    if not controllers:
        return f"http://localhost:{CONTROLLER_PORT}"
    controller = controllers[0]
    address = controller.data.get("ssh_hostname") or controller.name
    return f"http://{address}:{CONTROLLER_PORT}"
