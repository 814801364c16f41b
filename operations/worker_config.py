"""The Ilúvatar worker's configuration file (``worker.json``, passed to the worker with ``-c FILE``).

Its keys are those of Ilúvatar's own ``worker.json`` template. The per-host ones come from the host
(:class:`~pyinfra_iluvatar.facts.resources.HostResources`) and from the deploy's data; everything else keeps the
template's value unless the user's overrides (``iluvatar_worker_config``) say otherwise.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from io import StringIO
from typing import Any

from pyinfra.api.operation import operation
from pyinfra.operations import files

from pyinfra_iluvatar.facts.resources import HostResourcesInfo

WORKER_CONFIG = "/etc/iluvatar/worker.json"

# The shape and defaults of Ilúvatar's worker configuration (its `worker.json` template, 2025-09). The values
# marked "per host" below are replaced for each host by `render`.
TEMPLATE: dict[str, Any] = {
    "name": "worker",  # per host
    "address": "127.0.0.1",  # per host
    "port": 8079,  # per host
    "timeout_sec": 6000,
    "tokio_event_interval": 20,
    "tokio_queue_interval": 20,
    "limits": {"timeout_sec": 6000, "mem_min_mb": 5, "mem_max_mb": 3096, "cpu_max": 10},
    "influx": {"host": "http://localhost:8086", "org": "ilu", "token": "", "enabled": False, "update_freq_ms": 1000},
    "invocation": {
        "retries": 0,
        "queue_sleep_ms": 500,
        "queue_policies": {"CPU": "fcfs", "GPU": "fcfs"},
        "queues": {"CPU": "serial", "GPU": "serial"},
        "power_cap": 0.0,
    },
    "logging": {
        "level": "info",
        "directory": "/tmp/iluvatar/logs",
        "basename": "worker",
        "spanning": "NEW+CLOSE",
        "flame": "",
        "span_energy_monitoring": False,
    },
    "container_resources": {
        "memory_mb": 20480,  # per host
        "eviction": "LRU",
        "startup_timeout_ms": 10000,
        "memory_buffer_mb": 0,
        "pool_freq_ms": 500,
        "snapshotter": "zfs",  # per host
        "concurrent_creation": 5,
        "cpu_resource": {"count": 4},  # per host
        "gpu_resource": {"count": 0},  # per host
        "docker_config": {"avoid_pull": True},
    },
    "networking": {
        "bridge": "IlWorkBr0",
        "cnitool": "/opt/cni/bin/cnitool",  # per host
        "cni_plugin_bin": "/opt/cni/bin",  # per host
        "cni_name": "il_worker_br",
        "use_pool": True,
        "pool_size": 20,
        "pool_freq_ms": 500,
        "hardware_interface": "eth0",  # per host
    },
    "load_balancer_url": "http://localhost:8078",  # per host
    "energy": {
        "perf_freq_ms": 0,
        "rapl_freq_ms": 0,
        "ipmi_freq_ms": 0,
        "process_freq_ms": 0,
        "ipmi_pass_file": "",
        "ipmi_ip_addr": "",
        "log_folder": "/tmp/iluvatar/logs/",
    },
    "status": {"report_freq_ms": 5000},
    "http_server": {"enabled": True, "address": "127.0.0.1", "port": 8080},
}


@dataclass(frozen=True)
class WorkerSettings:
    """What the deploy's data says about one worker's config; ``None`` fields are read from the host."""

    name: str
    port: int
    cni_bin_dir: str
    snapshotter: str
    load_balancer_url: str
    memory_reserve_mb: int
    cpu_reserve: int
    gpu_count: int = 0
    gpu_memory_mb: int | None = None
    """The smallest GPU's memory (``gpu_resource.memory_mb``); ``None``: the template's (unset)."""
    address: str | None = None
    hardware_interface: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)


def override_errors(overrides: Mapping[str, Any], template: Mapping[str, Any] = TEMPLATE, where: str = "") -> list[str]:
    """
    Why ``overrides`` cannot be merged into ``template``: a key the template has whose value is of another JSON type
    (a number for a string, an object for a number, …). Keys the template lacks are accepted (newer Ilúvatar keys).
    """
    problems = []
    for key, value in overrides.items():
        path = f"{where}{key}"
        if key not in template:
            continue
        expected = template[key]
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                problems.append(f"{path} must be an object, got {_json_type(value)}")
            else:
                problems += override_errors(value, expected, f"{path}.")
        elif _json_type(value) != _json_type(expected):
            problems.append(f"{path} must be {_json_type(expected)}, got {_json_type(value)}")
    return problems


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else type(value).__name__


def deep_merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in, key by key for objects (a copy; neither argument changes)."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def render(settings: WorkerSettings, resources: HostResourcesInfo) -> dict[str, Any]:
    """
    The worker's config for a host with ``resources``: the template, the per-host values, then the overrides.
    ``ValueError`` saying what is missing when the host gives no hardware interface or address and the settings
    name none, or its memory does not cover the reserve.
    """
    interface = settings.hardware_interface or resources["interface"]
    if interface is None:
        raise ValueError("the host has no default route, so no hardware interface: set iluvatar_hardware_interface")
    address = settings.address or next(iter(resources["addresses"].get(interface, [])), None)
    if address is None:
        raise ValueError(f"interface {interface} has no IPv4 address: set iluvatar_worker_address")
    memory_mb = resources["memory_mb"] - settings.memory_reserve_mb
    if memory_mb < 1:
        raise ValueError(
            f"the host's {resources['memory_mb']} MiB of memory leave nothing for functions after"
            f" iluvatar_memory_reserve_mb = {settings.memory_reserve_mb}"
        )
    config = copy.deepcopy(TEMPLATE)
    config.update(name=settings.name, address=address, port=settings.port, load_balancer_url=settings.load_balancer_url)
    resources_config = config["container_resources"]
    resources_config["memory_mb"] = memory_mb
    resources_config["snapshotter"] = settings.snapshotter
    resources_config["cpu_resource"]["count"] = max(1, resources["cpus"] - settings.cpu_reserve)
    resources_config["gpu_resource"]["count"] = settings.gpu_count
    if settings.gpu_memory_mb is not None:
        resources_config["gpu_resource"]["memory_mb"] = settings.gpu_memory_mb
    networking = config["networking"]
    networking["cnitool"] = f"{settings.cni_bin_dir}/cnitool"
    networking["cni_plugin_bin"] = settings.cni_bin_dir
    networking["hardware_interface"] = interface
    return deep_merge(config, settings.overrides)


@operation()
def worker_config(config: dict[str, Any], path: str = WORKER_CONFIG) -> Generator[Any, None, None]:
    """
    Write the Ilúvatar worker's ``worker.json`` (``config``, as :func:`render` makes it for the host) as indented
    JSON, mode 0600 (it may hold an influx token), only when its content changes.

    + config: the whole configuration
    + path: where the file goes (the worker's ``-c FILE``)

    **Example:**

    .. code:: python

        settings = WorkerSettings(
            name="worker-01", port=8079, cni_bin_dir="/opt/cni/bin", snapshotter="zfs",
            load_balancer_url="http://controller.lab.example:8078", memory_reserve_mb=1024, cpu_reserve=1,
        )
        worker_config.worker_config(
            name="worker.json", config=render(settings, host.get_fact(HostResources))
        )
    """
    text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
    yield from files.put._inner(src=StringIO(text), dest=path, user="root", group="root", mode="600")
