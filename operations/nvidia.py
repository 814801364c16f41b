"""NVIDIA GPUs for the Ilúvatar worker: the setup page's "GPU support" steps, done so a second run changes nothing.

The worker's GPU deploy puts these together: :func:`gpu_state` in pre-flight (a GPU the inventory requires but whose
driver is missing stops the run before any change; ``auto`` on a host without an NVIDIA device does nothing),
:func:`docker_runtime_settings` merged into ``daemon.json`` by ``docker.daemon_json`` and :func:`containerd_runtime`
(what ``nvidia-ctk runtime configure`` would write, with this package's change detection: ``nvidia-ctk`` says "Wrote
updated config" every time), :func:`persistenced_unit` (reload systemd and restart it ``_if`` it changed, keep it
enabled and running) then :func:`persistence_enabled`, and :func:`mps_image` on MPS hosts.

Nothing here installs the driver or the NVIDIA Container Toolkit, and nothing restarts a service: the caller restarts
``_if`` an operation changed something.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Sequence
from io import StringIO
from typing import Any, Literal, NamedTuple

from packaging.version import InvalidVersion, Version
from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.exceptions import OperationValueError
from pyinfra.api.operation import operation
from pyinfra.context import host
from pyinfra.operations import files

from pyinfra_iluvatar.facts.combined import Combined, Probe
from pyinfra_iluvatar.facts.nvidia import (
    PERSISTENCED_BINARY,
    PERSISTENCED_USERS,
    DockerImage,
    NvidiaDevicesInfo,
    NvidiaGpus,
    NvidiaGpusInfo,
    NvidiaPciDevice,
    NvidiaPersistenced,
)
from pyinfra_iluvatar.operations._failure import fail_host
from pyinfra_iluvatar.operations.containerd import CONFIG_DROP_INS, MANAGED_HEADER, SNAPSHOTTERS

NVIDIA_REPOSITORY = "https://nvidia.github.io/libnvidia-container"
"""NVIDIA's container toolkit apt repository: ``<it>/stable/deb/<arch>`` is a flat repository, ``<it>/gpgkey`` its
key (the toolkit install guide's paths)."""
NVIDIA_KEY_FINGERPRINT = "C95B321B61E88C1809C4F759DDCAE044F796ECB0"
"""The key that signs it (``NVIDIA CORPORATION (Open Source Projects) <cudatools@nvidia.com>``)."""
TOOLKIT_VERSION = "1.17.8-1"
"""The toolkit version installed by default (``iluvatar_nvidia_toolkit_version``)."""
TOOLKIT_PACKAGES = (
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
)
"""The four packages the install guide pins to one version."""
TOOLKIT_KEYRING = "/etc/apt/keyrings/nvidia-container-toolkit.asc"
TOOLKIT_SOURCES = "/etc/apt/sources.list.d/nvidia-container-toolkit.sources"
TOOLKIT_PIN_FILE = "/etc/apt/preferences.d/pyinfra-iluvatar-nvidia-container-toolkit"
"""Keeps ``apt upgrade`` from moving the toolkit off its pinned version."""
RUNTIME_NAME = "nvidia"
"""The runtime's name in ``daemon.json`` and in containerd's CRI config (``nvidia-ctk``'s default)."""
DOCKER_RUNTIME_PATH = "nvidia-container-runtime"
"""What ``nvidia-ctk runtime configure --runtime=docker`` writes as the runtime's ``path`` (looked up on dockerd's
``PATH``)."""
CONTAINERD_RUNTIME_BINARY = "/usr/bin/nvidia-container-runtime"
"""The ``BinaryName`` ``nvidia-ctk runtime configure --runtime=containerd`` writes (the toolkit's package path)."""
CONTAINERD_RUNTIME_TYPE = "io.containerd.runc.v2"
"""The shim the ``nvidia`` runtime runs under, as for runc: ``nvidia-container-runtime`` stands in for ``runc``."""
CONTAINERD_DROP_IN = f"{CONFIG_DROP_INS}/99-nvidia.toml"
"""The drop-in ``nvidia-ctk`` (1.18 and later) writes, read through ``config.toml``'s ``imports`` line."""
CONTAINERD_BINARIES = (("packaged", "/usr/bin/containerd"), ("release", "/usr/local/bin/containerd"))
"""Where a containerd is looked for, in this order, when :func:`containerd_runtime` is not told its version."""
CRI_PLUGINS = {2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.runtime"}
"""The CRI runtime plugin's section per containerd config schema (2: containerd 1.x, 3: containerd 2.x)."""
PERSISTENCED_UNIT = "/etc/systemd/system/nvidia-persistenced.service"
PACKAGED_PERSISTENCED_UNIT = "/lib/systemd/system/nvidia-persistenced.service"
GPU_STATE_PROBES: tuple[Probe, ...] = (
    ("gpus", "pyinfra_iluvatar.facts.nvidia.NvidiaGpus", {}),
    ("devices", "pyinfra_iluvatar.facts.nvidia.NvidiaDevices", {}),
)
"""``facts.combined.Combined`` probes reading what :func:`gpu_state` needs in one round trip (``gpus``, ``devices``)."""
MPS_IMAGE = "nvidia/cuda:11.8.0-base-ubuntu20.04"
"""The image the worker's MPS daemon container runs (the worker starts it without pulling it)."""

GpuStateName = Literal["ready", "no_gpu", "no_driver", "nvml_missing", "error"]

# Docker's reference grammar (distribution/reference): [host[:port]/]path[:tag][@digest], lower-case path components.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
# A first component is a registry only with a dot or a port, or as "localhost"; otherwise it is part of the name.
_DOMAIN = rf"(?:localhost|{_LABEL}(?:\.{_LABEL})+|{_LABEL}(?=:[0-9]+/))(?::[0-9]+)?"
_IMAGE_REFERENCE = re.compile(
    rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)
_IMAGE_REFERENCE_MAX = 255

# --- pure functions: what the deploy and its pre-flight compute without touching a host -----------------------------


class GpuState(NamedTuple):
    """What a host's GPUs are ready for, and why: :func:`gpu_state`."""

    state: GpuStateName
    message: str


def _pci(devices: Sequence[NvidiaPciDevice]) -> str:
    described = []
    for device in devices:
        driver = f"driver {device['driver']}" if device["driver"] else "no driver bound"
        described.append(f"{device['address']} (10de:{device['device_id']}, {driver})")
    return ", ".join(described)


def describe_nvidia_smi(gpus: NvidiaGpusInfo) -> str:
    """What ``nvidia-smi`` said when it listed no GPU (a ``NvidiaGpus`` value), for a message."""
    said = (gpus["message"] or "").splitlines()
    output = f": {said[0]}" if said else ""
    status = gpus["status"]
    if status == "not_installed":
        return "there is no nvidia-smi (the NVIDIA driver, or its nvidia-smi, is not installed)"
    if status == "no_driver":
        return f"the NVIDIA kernel driver is not loaded (nvidia-smi exit 9{output})"
    if status == "nvml_missing":
        return f"nvidia-smi cannot load NVML, the driver's libnvidia-ml.so (exit 12{output})"
    if status == "no_gpu":
        return f"nvidia-smi finds no GPU (exit 6{output})"
    if status == "error":
        return f"nvidia-smi fails (exit {gpus['exit_code']}{output})"
    return "nvidia-smi lists no GPU"


def gpu_state(gpus: NvidiaGpusInfo, devices: NvidiaDevicesInfo) -> GpuState:
    """
    Whether the host's NVIDIA GPUs are ready for the worker, from the values of ``facts.nvidia.NvidiaGpus``
    (``nvidia-smi``, which needs the driver) and ``facts.nvidia.NvidiaDevices`` (the PCI bus, which does not): a
    pre-flight check, so that a GPU host without a working driver stops the run before any change. ``state`` is:

    - ``ready``: ``nvidia-smi`` lists at least one GPU;
    - ``no_gpu``: no NVIDIA display controller on the PCI bus and ``nvidia-smi`` lists none (or, without a PCI bus in
      sysfs, ``nvidia-smi`` is absent or finds no device): nothing for a GPU deploy to do;
    - ``no_driver``: NVIDIA GPUs on the PCI bus, but no ``nvidia-smi`` (no driver installed), the kernel driver not
      loaded (exit 9), or a driver that serves none of them (exit 6: the GPU bound to ``vfio-pci``, ``nouveau``, ...);
      also exit 9 where sysfs has no PCI bus to look at;
    - ``nvml_missing``: ``nvidia-smi`` cannot load ``libnvidia-ml.so`` (exit 12): the driver's libraries are missing;
    - ``error``: any other ``nvidia-smi`` failure (``GPU access blocked by the operating system``, ...).

    ``message`` names the GPUs (index, name, UUID) or the PCI devices (address, ids, bound driver) and what
    ``nvidia-smi`` said. A GPU that is not on the PCI bus (a Jetson's) is seen through ``nvidia-smi`` only. Read both
    facts in one round trip with ``host.get_fact(Combined, probes=GPU_STATE_PROBES)``.
    """
    listed, on_pci = gpus["gpus"], devices["gpus"]
    if gpus["status"] == "ok" and listed:
        names = ", ".join(f"{gpu['index']} {gpu['name']} ({gpu['uuid']})" for gpu in listed)
        return GpuState("ready", f"NVIDIA driver {listed[0]['driver_version']} serves {len(listed)} GPU(s): {names}")
    status, smi = gpus["status"], describe_nvidia_smi(gpus)
    on_bus = f"; NVIDIA GPU(s) on the PCI bus: {_pci(on_pci)}" if on_pci else ""
    if status == "nvml_missing":
        return GpuState("nvml_missing", f"{smi}{on_bus}")
    if status == "error":
        return GpuState("error", f"{smi}{on_bus}")
    # Left: nvidia-smi absent, exit 9 (no driver), exit 6 (no GPU), or exit 0 without a row: it lists no GPU.
    if on_pci:
        return GpuState("no_driver", f"NVIDIA GPU(s) on the PCI bus, but {smi}: {_pci(on_pci)}")
    if not devices["pci_bus"] and status == "no_driver":
        return GpuState("no_driver", f"{smi}, and sysfs has no PCI bus to look for NVIDIA GPUs on")
    where = "no NVIDIA display controller on the PCI bus" if devices["pci_bus"] else "sysfs has no PCI bus"
    also = "" if status == "not_installed" else f", and {smi}"
    return GpuState("no_gpu", f"no NVIDIA GPU: {where}{also}")


def docker_runtime_settings(default: bool = False) -> dict[str, Any]:
    """
    The ``daemon.json`` keys that register NVIDIA's runtime with Docker, as ``nvidia-ctk runtime configure
    --runtime=docker`` writes them (``--set-as-default`` adds ``"default-runtime": "nvidia"``): merge them into the
    daemon's other settings and pass them to ``docker.daemon_json``, whose own comparison decides whether anything
    changed (a second run changes nothing), then restart docker ``_if`` it did.

    + default: make ``nvidia`` dockerd's default runtime (every container gets the GPUs' runtime hook)

    **Example:**

    .. code:: python

        settings = docker.merge_settings(daemon_settings, nvidia.docker_runtime_settings())
        config = docker.daemon_json(name="dockerd settings", settings=settings)
    """
    if not isinstance(default, bool):
        raise OperationValueError(f"default must be true or false, got {default!r}")
    settings: dict[str, Any] = {"runtimes": {RUNTIME_NAME: {"args": [], "path": DOCKER_RUNTIME_PATH}}}
    if default:
        settings["default-runtime"] = RUNTIME_NAME
    return settings


def _containerd_schema(containerd_major: int) -> int:
    if isinstance(containerd_major, bool) or not isinstance(containerd_major, int) or containerd_major < 1:
        raise OperationValueError(
            f"containerd_major must be a containerd major version (1, 2, ...), got {containerd_major!r}"
        )
    return 3 if containerd_major >= 2 else 2


def _check_drop_in_options(systemd_cgroup: bool, default: bool, snapshotter: str) -> None:
    for name, value in (("systemd_cgroup", systemd_cgroup), ("default", default)):
        if not isinstance(value, bool):
            raise OperationValueError(f"{name} must be true or false, got {value!r}")
    if snapshotter not in SNAPSHOTTERS:
        raise OperationValueError(f"snapshotter must be one of {', '.join(SNAPSHOTTERS)}, got {snapshotter!r}")


def render_containerd_drop_in(
    containerd_major: int, systemd_cgroup: bool = True, default: bool = False, snapshotter: str = "zfs"
) -> str:
    """
    ``/etc/containerd/conf.d/99-nvidia.toml``: the ``nvidia`` runtime for containerd's CRI plugin — runc's shim
    (``io.containerd.runc.v2``) running ``/usr/bin/nvidia-container-runtime`` — in config schema 2 (containerd 1.x,
    plugin ``io.containerd.grpc.v1.cri``) or 3 (containerd 2.x, ``io.containerd.cri.v1.runtime``), as
    ``nvidia-ctk runtime configure --runtime=containerd`` registers it, and as ``operations.containerd.render_config``
    configures runc (``SystemdCgroup``).

    containerd 1.x replaces a plugin's whole section with an imported file's (containerd 2.0 merges them key by key):
    on 1.x this drop-in would drop ``config.toml``'s snapshotter and runc's ``SystemdCgroup``, so for schema 2 it
    repeats them — pass the same ``snapshotter`` as to ``containerd.config``. For schema 3 it holds only the runtime.

    + containerd_major: major version of the containerd that reads it (1: schema 2; 2 and later: schema 3)
    + systemd_cgroup: the runtime's ``SystemdCgroup`` (``true``, as runc's in ``config.toml``)
    + default: make ``nvidia`` the CRI plugin's ``default_runtime_name``
    + snapshotter: ``config.toml``'s snapshotter (``zfs``, ``overlayfs``, ``native``), restated for schema 2 only
    """
    schema = _containerd_schema(containerd_major)
    _check_drop_in_options(systemd_cgroup=systemd_cgroup, default=default, snapshotter=snapshotter)
    plugin = f'plugins."{CRI_PLUGINS[schema]}"'
    lines = [
        f"{MANAGED_HEADER}: edits here are overwritten on the next deploy.",
        "# NVIDIA's container runtime for containerd's CRI plugin, as nvidia-ctk runtime configure registers it.",
    ]
    containerd_keys = []
    if schema == 2:
        lines.append("# containerd 1.x replaces config.toml's whole CRI section with this file's: it restates it.")
        containerd_keys.append(f'snapshotter = "{snapshotter}"')
    lines += [f"version = {schema}", ""]
    if default:
        containerd_keys.append(f'default_runtime_name = "{RUNTIME_NAME}"')
    if containerd_keys:
        lines += [f"[{plugin}.containerd]", *(f"  {key}" for key in containerd_keys), ""]
    if schema == 2:
        lines += [f"[{plugin}.containerd.runtimes.runc.options]", "  SystemdCgroup = true", ""]
    lines += [
        f"[{plugin}.containerd.runtimes.{RUNTIME_NAME}]",
        f'  runtime_type = "{CONTAINERD_RUNTIME_TYPE}"',
        "",
        f"[{plugin}.containerd.runtimes.{RUNTIME_NAME}.options]",
        f'  BinaryName = "{CONTAINERD_RUNTIME_BINARY}"',
        f"  SystemdCgroup = {'true' if systemd_cgroup else 'false'}",
    ]
    return "\n".join(lines) + "\n"


def render_persistenced_unit(user: str | None) -> str:
    """
    The ``nvidia-persistenced`` unit of the setup page, run as ``user`` (``None``: as root, ``--user`` left out),
    with persistence mode on (``--persistence-mode``). Unlike the page's unit (Ubuntu's packaged unit with that one
    flag flipped, which udev starts with the device) it has an ``[Install]`` section and no ``StopWhenUnneeded=true``:
    it is enabled (so it comes back after a reboot whatever started it) and a ``systemctl start`` while no other unit
    wants it yet (before ``enable`` on a first run) does not stop it again at once.
    """
    if user is not None and user not in PERSISTENCED_USERS:
        raise OperationValueError(f"user must be one of {', '.join(PERSISTENCED_USERS)} or None, got {user!r}")
    run_as = f" --user {user}" if user else ""
    return f"""{MANAGED_HEADER}: edits here are overwritten on the next deploy.
# Overrides {PACKAGED_PERSISTENCED_UNIT} (a driver package's, which may start it with --no-persistence-mode).
[Unit]
Description=NVIDIA Persistence Daemon
Wants=syslog.target
Before=systemd-backlight@backlight:nvidia_0.service

[Service]
Type=forking
ExecStart={PERSISTENCED_BINARY}{run_as} --persistence-mode --verbose
ExecStopPost=/bin/rm -rf /var/run/nvidia-persistenced

[Install]
WantedBy=multi-user.target
"""


def valid_image_reference(image: str) -> bool:
    """Whether ``image`` is a Docker image reference (``[registry[:port]/]name[:tag][@sha256:digest]``)."""
    return isinstance(image, str) and len(image) <= _IMAGE_REFERENCE_MAX and bool(_IMAGE_REFERENCE.fullmatch(image))


# --- operations ------------------------------------------------------------------------------------------------------


def _installed_containerd_major() -> int | str:
    """The major version of the host's containerd (``/usr/bin`` first, then ``/usr/local/bin``; 1 when there is none),
    read in one round trip; a ``str`` when a ``containerd --version`` could not be read (the reason)."""
    probes = tuple(
        (name, "pyinfra_iluvatar.facts.containerd.ContainerdVersion", {"binary": binary})
        for name, binary in CONTAINERD_BINARIES
    )
    found = host.get_fact(Combined, probes=probes)
    for name, binary in CONTAINERD_BINARIES:
        value = found.get(name)
        if isinstance(value, str):  # facts.combined.Unreadable: the fact's message
            return f"cannot read the version of {binary}: {value}"
        if value:
            try:
                return Version(value["version"]).major
            except InvalidVersion:
                return f"{binary} reports version {value['version']!r}, not a release version"
    return 1


@operation()
def containerd_runtime(
    containerd_major: int | None = None, default: bool = False, snapshotter: str = "zfs"
) -> Generator[Any, None, None]:
    """
    Register NVIDIA's runtime with containerd in ``/etc/containerd/conf.d/99-nvidia.toml`` (see
    :func:`render_containerd_drop_in`), the drop-in ``nvidia-ctk`` 1.18 writes, written only when its content
    differs (mode 644; ``conf.d`` created when missing). containerd reads it through ``config.toml``'s ``imports``
    line, which ``containerd.config`` writes. Restart containerd ``_if`` this changed: it reads its config only
    when it starts.

    + containerd_major: major version of the containerd that reads it (picks the schema); ``None``: the installed
      one's, ``/usr/bin/containerd`` (a package's) first, else ``/usr/local/bin/containerd`` (the release build),
      read in one round trip (1 when there is neither)
    + default: make ``nvidia`` the CRI plugin's default runtime
    + snapshotter: ``config.toml``'s snapshotter (restated for containerd 1.x, which would otherwise lose it)

    **Example:**

    .. code:: python

        runtime = nvidia.containerd_runtime(name="NVIDIA runtime for containerd", snapshotter="zfs")
        systemd.service(name="Restart containerd", service="containerd", restarted=True, _if=runtime.did_change)
    """
    if containerd_major is not None:
        _containerd_schema(containerd_major)
    _check_drop_in_options(systemd_cgroup=True, default=default, snapshotter=snapshotter)
    if containerd_major is None:
        found = _installed_containerd_major()
        if isinstance(found, str):
            yield fail_host(found)
            return
        containerd_major = found
    content = render_containerd_drop_in(containerd_major, default=default, snapshotter=snapshotter)
    yield from files.put._inner(src=StringIO(content), dest=CONTAINERD_DROP_IN, user="root", group="root", mode="644")


@operation()
def persistenced_unit() -> Generator[Any, None, None]:
    """
    Write the setup page's ``nvidia-persistenced`` unit (:func:`render_persistenced_unit`: persistence mode on) to
    ``/etc/systemd/system/nvidia-persistenced.service``, which overrides a driver package's
    ``/lib/systemd/system/nvidia-persistenced.service`` — Ubuntu's runs ``--no-persistence-mode`` — without touching
    the package's file. It runs as the ``nvidia-persistenced`` user (NVIDIA's installer, Ubuntu's packages), else
    ``nvpd`` (Debian's ``nvidia-persistenced`` package), else as root (``--user`` left out) when the host has neither
    (``facts.nvidia.NvidiaPersistenced``). Written only when its content differs (mode 644).

    ``/usr/bin/nvidia-persistenced`` missing fails this host (not the others): it comes with the driver; where the
    shell finds it elsewhere the message says where. Reload systemd and restart the service ``_if`` this changed,
    and keep it enabled and running; then check with :func:`persistence_enabled`.

    **Example:**

    .. code:: python

        unit = nvidia.persistenced_unit(name="nvidia-persistenced unit")
        systemd.daemon_reload(name="Reload systemd", _if=unit.did_change)
        systemd.service(name="Restart nvidia-persistenced", service="nvidia-persistenced", restarted=True,
                        _if=unit.did_change)
        systemd.service(name="nvidia-persistenced running", service="nvidia-persistenced", running=True, enabled=True)
    """
    found = host.get_fact(NvidiaPersistenced)
    if not found["binary"]:
        elsewhere = found["found_at"]
        hint = f"; the shell finds one at {elsewhere}, but the unit runs {PERSISTENCED_BINARY}" if elsewhere else ""
        yield fail_host(f"nvidia-persistenced is not installed (it comes with the driver){hint}")
        return
    user = next((name for name in PERSISTENCED_USERS if found["users"].get(name) is not None), None)
    yield from files.put._inner(
        src=StringIO(render_persistenced_unit(user)), dest=PERSISTENCED_UNIT, user="root", group="root", mode="644"
    )


@operation(is_idempotent=False, idempotent_notice="It reads the GPUs' persistence mode each time it runs.")
def persistence_enabled() -> Generator[Any, None, None]:
    """
    Check that persistence mode is on for every GPU ``nvidia-smi`` lists (``facts.nvidia.NvidiaGpus``). Changes
    nothing; a GPU with persistence mode off fails this host (not the others) naming each such GPU (index, UUID), and
    so does an ``nvidia-smi`` that lists no GPU (no driver loaded, NVML missing, no GPU: it says which). Run it after
    ``nvidia-persistenced`` started.

    **Example:**

    .. code:: python

        nvidia.persistence_enabled(name="Persistence mode is on")
    """
    gpus = host.get_fact(NvidiaGpus)
    if gpus["status"] != "ok" or not gpus["gpus"]:
        yield fail_host(f"cannot check persistence mode: {describe_nvidia_smi(gpus)}")
        return
    off = [gpu for gpu in gpus["gpus"] if not gpu["persistence_mode"]]
    if off:
        named = ", ".join(f"{gpu['index']} ({gpu['uuid']})" for gpu in off)
        yield fail_host(
            f"persistence mode is off for {len(off)} of {len(gpus['gpus'])} GPU(s): {named} (is nvidia-persistenced "
            "running with --persistence-mode?)"
        )
        return
    named = ", ".join(f"{gpu['index']} ({gpu['uuid']})" for gpu in gpus["gpus"])
    host.noop(f"persistence mode is on for every GPU: {named}")


@operation(is_idempotent=False, idempotent_notice="It reads the host's GPUs each time it runs.")
def driver_present(required: bool = True) -> Generator[Any, None, None]:
    """
    Check that the host's NVIDIA GPUs are ready (:func:`gpu_state`, from ``facts.nvidia.NvidiaGpus`` and
    ``facts.nvidia.NvidiaDevices``, read in one round trip). Changes nothing. A host without an NVIDIA GPU fails
    (this host, not the others) when ``required``, and is a no-op otherwise; a host whose NVIDIA GPU has no working
    driver (none installed, not loaded, NVML missing, ``nvidia-smi`` failing) fails either way: that GPU is there to
    be used. The deploy's pre-flight runs :func:`gpu_state` on the same facts to stop the whole run before any change;
    this is the same check for a deploy without one.

    + required: whether the host must have a usable NVIDIA GPU (``iluvatar_gpu: true``); ``False`` for ``auto``

    **Example:**

    .. code:: python

        nvidia.driver_present(name="NVIDIA driver ready", required=True)
    """
    if not isinstance(required, bool):
        raise OperationValueError(f"required must be true or false, got {required!r}")
    found = host.get_fact(Combined, probes=GPU_STATE_PROBES)
    gpus, devices = found["gpus"], found["devices"]
    # facts.combined.Unreadable (a str): the fact's own message about output it could not read.
    unreadable = [
        f"{what}: {value}" for what, value in (("nvidia-smi", gpus), ("PCI", devices)) if isinstance(value, str)
    ]
    if unreadable:
        yield fail_host(f"cannot read {'; '.join(unreadable)}")
        return
    state = gpu_state(gpus, devices)
    if state.state == "ready" or (state.state == "no_gpu" and not required):
        host.noop(state.message)
        return
    yield fail_host(state.message)


@operation()
def mps_image(image: str = MPS_IMAGE) -> Generator[Any, None, None]:
    """
    Pull ``image`` (``docker pull``) when the Docker daemon does not have it (``facts.nvidia.DockerImage``): the
    worker's MPS daemon starts its container from ``nvidia/cuda:11.8.0-base-ubuntu20.04`` without pulling it. An
    image already there is never pulled again (a tag that moved upstream stays as pulled). A daemon that does not
    answer, or no ``docker`` CLI, fails this host with what the CLI said.

    + image: a Docker image reference (``[registry[:port]/]name[:tag][@sha256:digest]``)

    **Example:**

    .. code:: python

        nvidia.mps_image(name="MPS image pulled")
    """
    if not valid_image_reference(image):
        raise OperationValueError(
            f"image must be a Docker image reference ([registry[:port]/]name[:tag][@sha256:digest], lower-case name), "
            f"got {image!r}"
        )
    found = host.get_fact(DockerImage, image=image)
    if found["status"] == "present":
        host.noop(f"the Docker daemon has {image} ({found['id']})")
        return
    if found["status"] == "unknown":
        why = found["message"] or "there is no docker CLI on the host"
        yield fail_host(f"cannot tell whether the Docker daemon has {image}: {why}")
        return
    yield StringCommand("docker", "pull", QuoteString(image))
