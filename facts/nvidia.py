"""Facts about NVIDIA GPUs, as the Ilúvatar worker sees them through ``nvidia-smi``."""

from __future__ import annotations

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
