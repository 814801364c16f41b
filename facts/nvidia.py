"""Facts about NVIDIA GPUs, as the Ilúvatar worker sees them through ``nvidia-smi``, and what setting them up reads
beside it: the NVIDIA devices on the PCI bus (which need no driver), ``nvidia-persistenced``'s binary and users, and
whether the Docker daemon holds an image (the MPS daemon's)."""

from __future__ import annotations

import re
import shlex
from typing import Literal, TypedDict

from pyinfra.api.exceptions import FactProcessError
from pyinfra.api.facts import FactBase, ShortFactBase
from typing_extensions import override

from pyinfra_iluvatar.facts._inband import merged, split_merged

#: The ``--query-gpu`` fields, in the order ``NvidiaGpus`` reads them.
QUERY_FIELDS = (
    "index",
    "uuid",
    "name",
    "driver_version",
    "persistence_mode",
    "memory.total",
    "memory.used",
    "compute_mode",
    "mig.mode.current",
    "pci.bus_id",
)

#: What ``nvidia-smi`` prints in a CSV cell for a value it cannot give.
NOT_AVAILABLE = frozenset({"[N/A]", "[Not Supported]"})

#: Exit statuses of ``nvidia-smi`` (its man page, "RETURN VALUE") that are expected states of a host.
EXIT_NOT_FOUND = 6
EXIT_DRIVER_NOT_LOADED = 9
EXIT_LIBRARY_NOT_FOUND = 12

_NO_DEVICES = "No devices were found"

NvidiaStatus = Literal["ok", "not_installed", "no_driver", "nvml_missing", "no_gpu", "error"]


class NvidiaGpu(TypedDict):
    """One GPU as ``nvidia-smi --query-gpu`` reports it."""

    index: int
    uuid: str
    name: str
    driver_version: str
    persistence_mode: bool
    memory_total_mib: int | None
    memory_used_mib: int | None
    compute_mode: str
    mig_mode: str | None
    pci_bus_id: str


class NvidiaGpusInfo(TypedDict):
    """What ``nvidia-smi`` says about the host's GPUs, failures included."""

    status: NvidiaStatus
    exit_code: int | None
    message: str | None
    gpus: list[NvidiaGpu]


def _optional(value: str) -> str | None:
    return None if value in NOT_AVAILABLE else value


def _mib(value: str, line: str) -> int | None:
    if value in NOT_AVAILABLE:
        return None
    if not value.isdigit():
        raise FactProcessError(f"not a MiB count in nvidia-smi row {line!r}: {value!r}")
    return int(value)


def _persistence(value: str, line: str) -> bool:
    if value == "Enabled":
        return True
    if value == "Disabled" or value in NOT_AVAILABLE:
        return False
    raise FactProcessError(f"unknown persistence mode in nvidia-smi row {line!r}: {value!r}")


def _gpu(line: str) -> NvidiaGpu:
    cells = [cell.strip() for cell in line.split(",")]
    if len(cells) != len(QUERY_FIELDS):
        raise FactProcessError(f"expected {len(QUERY_FIELDS)} fields in nvidia-smi row, got {line!r}")
    index, uuid, name, driver, persistence, total, used, compute, mig, bus_id = cells
    if not index.isdigit():
        raise FactProcessError(f"not a GPU index in nvidia-smi row {line!r}: {index!r}")
    return {
        "index": int(index),
        "uuid": uuid,
        "name": name,
        "driver_version": driver,
        "persistence_mode": _persistence(persistence, line),
        "memory_total_mib": _mib(total, line),
        "memory_used_mib": _mib(used, line),
        "compute_mode": compute,
        "mig_mode": _optional(mig),
        "pci_bus_id": bus_id,
    }


def _status(exit_code: int, message: str) -> NvidiaStatus:
    if exit_code == EXIT_DRIVER_NOT_LOADED:
        return "no_driver"
    if exit_code == EXIT_LIBRARY_NOT_FOUND:
        return "nvml_missing"
    if exit_code == EXIT_NOT_FOUND and _NO_DEVICES in message:
        return "no_gpu"
    return "error"


class NvidiaGpus(FactBase[NvidiaGpusInfo]):
    """
    Returns the host's NVIDIA GPUs and, when ``nvidia-smi`` cannot list them, why not.

    Runs ``nvidia-smi --query-gpu=index,uuid,name,driver_version,persistence_mode,memory.total,
    memory.used,compute_mode,mig.mode.current,pci.bus_id --format=csv,noheader,nounits`` (stderr
    folded into stdout) and appends its exit status as a last line, so that a host without a
    working GPU stack is a state this fact reports, not a failed host.

    ``status`` is:

    - ``ok``: exit 0, ``gpus`` holds one entry per GPU;
    - ``not_installed``: no ``nvidia-smi`` on the host (the default; ``exit_code`` is ``None``);
    - ``no_driver``: exit 9, the NVIDIA kernel driver is not loaded;
    - ``nvml_missing``: exit 12, ``libnvidia-ml.so`` cannot be found or loaded;
    - ``no_gpu``: exit 6 with "No devices were found": the driver runs but sees no GPU;
    - ``error``: any other non-zero exit (``message`` holds what ``nvidia-smi`` printed).

    Values ``nvidia-smi`` cannot give (``[N/A]``, ``[Not Supported]``) become ``None`` for
    ``memory_total_mib``, ``memory_used_mib`` and ``mig_mode``; ``persistence_mode`` is ``True``
    only for ``Enabled``. A row that is not such a CSV row raises ``FactProcessError``.

    .. code:: python

        {
            "status": "ok",
            "exit_code": 0,
            "message": None,
            "gpus": [
                {
                    "index": 0,
                    "uuid": "GPU-83933027-18a0-f419-eda4-bef8f81c4896",
                    "name": "NVIDIA H200",
                    "driver_version": "580.159.04",
                    "persistence_mode": True,
                    "memory_total_mib": 143771,
                    "memory_used_mib": 0,
                    "compute_mode": "Default",
                    "mig_mode": "Disabled",
                    "pci_bus_id": "00000000:00:06.0",
                },
            ],
        }
    """

    @override
    def requires_command(self) -> str:
        return "nvidia-smi"

    @staticmethod
    @override
    def default() -> NvidiaGpusInfo:
        return {"status": "not_installed", "exit_code": None, "message": None, "gpus": []}

    @override
    def command(self) -> str:
        return merged(f"nvidia-smi --query-gpu={','.join(QUERY_FIELDS)} --format=csv,noheader,nounits")

    @override
    def process(self, output: list[str]) -> NvidiaGpusInfo:
        body, exit_code = split_merged([line.rstrip() for line in output if line.strip()], "nvidia-smi")
        if exit_code == 0:
            # nvidia-smi prints warnings ("WARNING: infoROM is corrupted at gpu …") among the rows.
            warnings = [line.strip() for line in body if line.lstrip().startswith("WARNING")]
            rows = [line for line in body if not line.lstrip().startswith("WARNING")]
            return {
                "status": "ok",
                "exit_code": 0,
                "message": "\n".join(warnings) or None,
                "gpus": [_gpu(line) for line in rows],
            }
        message = "\n".join(line.strip() for line in body) or None
        return {
            "status": _status(exit_code, message or ""),
            "exit_code": exit_code,
            "message": message,
            "gpus": [],
        }


class NvidiaPersistenceMode(ShortFactBase[dict[str, bool]]):
    """
    Returns each GPU's UUID mapped to whether persistence mode is on, read from ``NvidiaGpus``
    (one ``nvidia-smi`` call); empty when ``nvidia-smi`` lists no GPU (absent, no driver, ...).
    Used to verify that ``nvidia-persistenced`` did its job.

    .. code:: python

        {"GPU-83933027-18a0-f419-eda4-bef8f81c4896": True}
    """

    fact = NvidiaGpus

    @override
    def process_data(self, data: NvidiaGpusInfo) -> dict[str, bool]:
        return {gpu["uuid"]: gpu["persistence_mode"] for gpu in data["gpus"]}


# --- NVIDIA devices on the PCI bus, whether or not a driver serves them ---------------------------------------------

NVIDIA_PCI_VENDOR = "10de"
"""NVIDIA's PCI vendor id (``/sys/bus/pci/devices/*/vendor`` reads ``0x10de``)."""
PCI_DISPLAY_CLASS = "03"
"""PCI base class 0x03, display controller: VGA (0x0300), XGA (0x0301), 3D controller (0x0302: data-centre GPUs such
as the H200), other (0x0380). An NVIDIA card's other functions — HD audio (0x0403), USB-C (0x0c03), NVSwitch bridges
(0x0680) — are not GPUs."""

_NO_PCI_BUS = "no PCI bus"
_PCI_ADDRESS = r"[0-9a-f]{4,}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]"
_PCI_ATTRIBUTE = re.compile(
    rf"devices/(?P<address>{_PCI_ADDRESS})/(?P<name>vendor|device|class):0x(?P<value>[0-9a-f]+)"
)
_PCI_DRIVER = re.compile(rf"drivers/(?P<driver>[^/\s]+)/(?P<address>{_PCI_ADDRESS})")
_NO_DRIVER_BOUND = "drivers/*/*:*"
"""What ``printf`` prints for the drivers glob when no device is bound to any driver (the glob stays unexpanded)."""


class NvidiaPciDevice(TypedDict):
    """One NVIDIA display controller (a GPU) on the PCI bus, as sysfs lists it."""

    address: str
    """The PCI address, domain included (``0000:01:00.0``; ``nvidia-smi``'s ``pci.bus_id`` is ``00000000:01:00.0``)."""
    device_id: str
    """The PCI device id, 4 lower-case hex digits (``2335``: H200); ``lspci -nn`` shows it as ``10de:2335``."""
    class_code: str
    """The PCI class code, 6 hex digits: base class, subclass, programming interface (``030200``: 3D controller)."""
    driver: str | None
    """The kernel driver bound to it: ``nvidia`` (the NVIDIA driver serves it), ``nouveau``, ``vfio-pci`` (passed
    through to VMs), ...; ``None`` when no driver is bound."""


class NvidiaDevicesInfo(TypedDict):
    """The NVIDIA GPUs on the PCI bus, and whether there is a PCI bus to look at."""

    pci_bus: bool
    """Whether sysfs has a PCI bus (``/sys/bus/pci/devices``); without one, ``gpus`` is empty and says nothing."""
    gpus: list[NvidiaPciDevice]
    """The NVIDIA display controllers, by PCI address."""


class NvidiaDevices(FactBase[NvidiaDevicesInfo]):
    """
    Returns the NVIDIA GPUs on the host's PCI bus — every PCI function of vendor ``0x10de`` with base class ``0x03``
    (display controller) — with the kernel driver bound to each, whether or not the NVIDIA driver is installed or
    loaded: what tells a host without a GPU from a host whose GPU has no working driver, which ``nvidia-smi`` cannot
    (it needs the driver to see anything). ``pci_bus`` is ``False`` when sysfs has no PCI bus
    (``/sys/bus/pci/devices`` absent): then this fact cannot say. GPUs that are not PCI devices — a Jetson's
    integrated GPU — are not listed: only ``nvidia-smi`` (``NvidiaGpus``) sees them.

    Runs ``grep -H . devices/*/vendor devices/*/device devices/*/class`` in ``/sys/bus/pci`` and lists the devices
    bound to each driver (``drivers/<driver>/<address>``) with a shell glob: reads only, forks one ``grep``, needs no
    ``lspci``.

    .. code:: python

        {
            "pci_bus": True,
            "gpus": [{"address": "0000:01:00.0", "device_id": "1c8c", "class_code": "030000", "driver": "nvidia"}],
        }
    """

    @staticmethod
    @override
    def default() -> NvidiaDevicesInfo:
        return {"pci_bus": False, "gpus": []}

    @override
    def command(self) -> str:
        return (
            "if [ -d /sys/bus/pci/devices ]; then cd /sys/bus/pci"
            " && grep -H . devices/*/vendor devices/*/device devices/*/class 2>/dev/null;"
            f" printf '%s\\n' drivers/*/*:*; else echo '{_NO_PCI_BUS}'; fi"
        )

    @override
    def process(self, output: list[str]) -> NvidiaDevicesInfo:
        lines = [line.strip() for line in output if line.strip()]
        if lines == [_NO_PCI_BUS]:
            return self.default()
        attributes: dict[str, dict[str, str]] = {}
        drivers: dict[str, str] = {}
        for line in lines:
            attribute = _PCI_ATTRIBUTE.fullmatch(line)
            driver = None if attribute else _PCI_DRIVER.fullmatch(line)
            if attribute:
                attributes.setdefault(attribute["address"], {})[attribute["name"]] = attribute["value"]
            elif driver:
                drivers[driver["address"]] = driver["driver"]
            elif line != _NO_DRIVER_BOUND:
                raise FactProcessError(f"not a PCI sysfs attribute or driver line: {line!r}")
        devices: list[NvidiaPciDevice] = []
        for address, values in sorted(attributes.items()):
            if values.get("vendor") != NVIDIA_PCI_VENDOR:
                continue
            class_code, device_id = values.get("class"), values.get("device")
            if class_code is None or device_id is None or len(class_code) != 6:
                raise FactProcessError(f"NVIDIA PCI device {address} lacks a device id or a 6-digit class: {values!r}")
            if class_code.startswith(PCI_DISPLAY_CLASS):
                devices.append(
                    {
                        "address": address,
                        "device_id": device_id,
                        "class_code": class_code,
                        "driver": drivers.get(address),
                    }
                )
        return {"pci_bus": True, "gpus": devices}


# --- what nvidia-persistenced needs on the host ----------------------------------------------------------------------

PERSISTENCED_BINARY = "/usr/bin/nvidia-persistenced"
PERSISTENCED_USERS = ("nvidia-persistenced", "nvpd")
"""The users driver packages create for ``nvidia-persistenced``, preferred first: ``nvidia-persistenced`` (NVIDIA's
installer and Ubuntu's packages; the setup page's ``--user``), ``nvpd`` (Debian's ``nvidia-persistenced`` package)."""


class NvidiaPersistencedInfo(TypedDict):
    """Whether ``nvidia-persistenced`` is installed where a unit can run it, and the users it could run as."""

    binary: bool
    """Whether ``/usr/bin/nvidia-persistenced`` exists and is executable."""
    found_at: str | None
    """Where ``command -v nvidia-persistenced`` finds it (the fact's shell ``PATH``); ``None`` when it does not."""
    users: dict[str, int | None]
    """Each of :data:`PERSISTENCED_USERS` to its uid, ``None`` when the host has no such user."""


_PERSISTENCED_USER = re.compile(r"user (?P<name>\S+)(?: (?P<uid>\d+))?")
_PERSISTENCED_BINARY = re.compile(r"binary (?P<present>yes|no)")
_PERSISTENCED_PATH = re.compile(r"path(?: (?P<path>/\S*))?")


class NvidiaPersistenced(FactBase[NvidiaPersistencedInfo]):
    """
    Returns whether ``/usr/bin/nvidia-persistenced`` (the path the setup page's unit runs) is installed, where the
    shell finds an ``nvidia-persistenced`` otherwise, and the uid of each user driver packages create for it
    (:data:`PERSISTENCED_USERS`): what ``operations.nvidia.persistenced_unit`` writes its unit from.

    Runs ``id -u`` for each user, ``test -x`` on the binary and ``command -v nvidia-persistenced``, in one command.

    .. code:: python

        {
            "binary": True,
            "found_at": "/usr/bin/nvidia-persistenced",
            "users": {"nvidia-persistenced": None, "nvpd": 104},
        }
    """

    @override
    def command(self) -> str:
        users = " ".join(PERSISTENCED_USERS)
        return (
            f'for u in {users}; do printf \'user %s %s\\n\' "$u" "$(id -u "$u" 2>/dev/null)"; done;'
            f" if [ -x {PERSISTENCED_BINARY} ]; then echo 'binary yes'; else echo 'binary no'; fi;"
            " printf 'path %s\\n' \"$(command -v nvidia-persistenced)\""
        )

    @override
    def process(self, output: list[str]) -> NvidiaPersistencedInfo:
        users: dict[str, int | None] = {}
        binary: bool | None = None
        found_at: str | None = None
        seen_path = False
        for line in (line.strip() for line in output if line.strip()):
            if user := _PERSISTENCED_USER.fullmatch(line):
                users[user["name"]] = int(user["uid"]) if user["uid"] else None
            elif present := _PERSISTENCED_BINARY.fullmatch(line):
                binary = present["present"] == "yes"
            elif path := _PERSISTENCED_PATH.fullmatch(line):
                found_at, seen_path = path["path"], True
            else:
                raise FactProcessError(f"unexpected line about nvidia-persistenced: {line!r}")
        if sorted(users) != sorted(PERSISTENCED_USERS) or binary is None or not seen_path:
            raise FactProcessError(f"incomplete answer about nvidia-persistenced: {output!r}")
        return {"binary": binary, "found_at": found_at, "users": {name: users[name] for name in PERSISTENCED_USERS}}


# --- a Docker image on the host (the MPS daemon's) -------------------------------------------------------------------

DockerImageStatus = Literal["present", "absent", "unknown"]

_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")
_NO_SUCH_IMAGE = "no such image"


class DockerImageInfo(TypedDict):
    """Whether the Docker daemon holds an image, or why it could not say."""

    status: DockerImageStatus
    """``present``; ``absent`` (the daemon answered "No such image"); ``unknown``: no ``docker`` CLI, or the daemon
    did not answer (``message`` says what the CLI printed)."""
    id: str | None
    """The image's id (``sha256:…``) when present."""
    message: str | None
    """What the CLI printed when it did not give an id."""


class DockerImage(FactBase[DockerImageInfo]):
    """
    Returns whether the Docker daemon has ``image`` (a reference such as ``nvidia/cuda:11.8.0-base-ubuntu20.04``)
    locally, without pulling it: the Ilúvatar worker's MPS daemon starts a container from its image without pulling
    it. A daemon that does not answer, or no ``docker`` CLI at all (the default), is ``unknown``, never a failed host.

    Runs ``docker image inspect --format '{{.Id}}' IMAGE`` with stderr folded into stdout and the exit status
    appended as a last line. The Docker 20.10 CLI says ``Error: No such image: IMAGE`` for an image the daemon lacks,
    Docker 28's ``Error response from daemon: no such image: …``: both are ``absent``.

    .. code:: python

        {"status": "present", "id": "sha256:5b2c…", "message": None}
    """

    @override
    def requires_command(self, image: str) -> str:
        return "docker"

    @staticmethod
    @override
    def default() -> DockerImageInfo:
        return {"status": "unknown", "id": None, "message": None}

    @override
    def command(self, image: str) -> str:
        return merged(f"docker image inspect --format '{{{{.Id}}}}' {shlex.quote(image)}")

    @override
    def process(self, output: list[str]) -> DockerImageInfo:
        body, exit_code = split_merged([line.strip() for line in output if line.strip()], "docker image inspect")
        if exit_code == 0:
            if len(body) != 1 or not _IMAGE_ID.fullmatch(body[0]):
                raise FactProcessError(f"docker image inspect printed no image id: {output!r}")
            return {"status": "present", "id": body[0], "message": None}
        message = "\n".join(body) or f"docker image inspect exited with status {exit_code}"
        status: DockerImageStatus = "absent" if _NO_SUCH_IMAGE in message.lower() else "unknown"
        return {"status": status, "id": None, "message": message}
