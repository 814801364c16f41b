"""worker.json: rendered from the host's resources (captured real output) and the data; overrides merged and checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyinfra_iluvatar.facts.resources import HostResourcesInfo
from pyinfra_iluvatar.operations.worker_config import TEMPLATE, WorkerSettings, deep_merge, override_errors, render

FIXTURES = Path(__file__).parent / "facts" / "resources.HostResources"


def resources(fixture: str) -> HostResourcesInfo:
    """The fact as read from real output: this machine (eth0, a default route), or a sandbox host (none)."""
    fact: HostResourcesInfo = json.loads((FIXTURES / f"{fixture}.json").read_text())["fact"]
    return fact


SETTINGS = WorkerSettings(
    name="worker-01",
    port=8079,
    cni_bin_dir="/opt/cni/bin",
    snapshotter="zfs",
    load_balancer_url="http://controller.lab.example:8078",
    memory_reserve_mb=1024,
    cpu_reserve=1,
)


def test_per_host_values_come_from_the_host() -> None:
    config = render(SETTINGS, resources("this_machine"))
    assert config["name"] == "worker-01"
    assert config["address"] == "192.0.2.2"  # eth0's address: the default route's interface
    assert config["networking"]["hardware_interface"] == "eth0"
    assert config["networking"]["cnitool"] == "/opt/cni/bin/cnitool"
    assert config["container_resources"]["memory_mb"] == 24105 - 1024
    assert config["container_resources"]["cpu_resource"]["count"] == 1  # two CPUs, one kept for the host
    assert config["container_resources"]["gpu_resource"]["count"] == 0
    assert config["load_balancer_url"] == "http://controller.lab.example:8078"
    assert set(config) == set(TEMPLATE)  # every key of Ilúvatar's template, nothing else


def test_a_host_without_default_route_needs_the_interface_named() -> None:
    with pytest.raises(ValueError, match="no default route, so no hardware interface: set iluvatar_hardware_interface"):
        render(SETTINGS, resources("sandbox_host_without_default_route"))
    named = WorkerSettings(**{**SETTINGS.__dict__, "hardware_interface": "host0"})
    config = render(named, resources("sandbox_host_without_default_route"))
    assert (config["networking"]["hardware_interface"], config["address"]) == ("host0", "198.18.0.11")


def test_an_interface_without_ipv4_needs_the_address_named() -> None:
    settings = WorkerSettings(**{**SETTINGS.__dict__, "hardware_interface": "eth1"})
    with pytest.raises(ValueError, match="interface eth1 has no IPv4 address: set iluvatar_worker_address"):
        render(settings, resources("this_machine"))
    settings = WorkerSettings(**{**settings.__dict__, "address": "192.0.2.7"})
    assert render(settings, resources("this_machine"))["address"] == "192.0.2.7"


def test_a_reserve_larger_than_the_host_is_refused() -> None:
    settings = WorkerSettings(**{**SETTINGS.__dict__, "memory_reserve_mb": 30000})
    with pytest.raises(ValueError, match="24105 MiB of memory leave nothing"):
        render(settings, resources("this_machine"))


def test_overrides_merge_key_by_key() -> None:
    overrides = {"logging": {"directory": "/data2/logs"}, "container_resources": {"cpu_resource": {"count": 8}}}
    config = render(WorkerSettings(**{**SETTINGS.__dict__, "overrides": overrides}), resources("this_machine"))
    assert config["logging"]["directory"] == "/data2/logs"
    assert config["logging"]["level"] == "info"  # the rest of the object stays
    assert config["container_resources"]["cpu_resource"]["count"] == 8
    assert config["container_resources"]["snapshotter"] == "zfs"
    assert TEMPLATE["logging"]["directory"] == "/tmp/iluvatar/logs"  # the template itself is never changed


def test_deep_merge_copies() -> None:
    base = {"a": {"b": 1}, "c": [1]}
    merged = deep_merge(base, {"a": {"d": 2}, "c": [2]})
    assert merged == {"a": {"b": 1, "d": 2}, "c": [2]}
    assert base == {"a": {"b": 1}, "c": [1]}


def test_override_types_are_checked_against_the_template() -> None:
    assert override_errors({"port": 9000, "new_key": "kept", "influx": {"enabled": True}}) == []
    assert override_errors({"port": "9000", "networking": 3, "influx": {"enabled": "yes"}}) == [
        "port must be a number, got a string",
        "networking must be an object, got a number",
        "influx.enabled must be a boolean, got a string",
    ]


def test_gpus_counted_with_their_memory() -> None:
    assert "memory_mb" not in render(SETTINGS, resources("this_machine"))["container_resources"]["gpu_resource"]
    gpus = WorkerSettings(**{**SETTINGS.__dict__, "gpu_count": 4, "gpu_memory_mb": 81559})
    gpu_resource = render(gpus, resources("this_machine"))["container_resources"]["gpu_resource"]
    assert gpu_resource == {"count": 4, "memory_mb": 81559}
