"""``operations/nvidia.py`` where pyinfra-testing fixtures cannot reach.

- The containerd drop-in is valid TOML for both config schemas, and what containerd makes of it beside
  ``operations.containerd.render_config``'s ``config.toml``: containerd 1.x replaces a plugin's whole section with an
  imported file's, containerd 2.x merges them key by key (modelled here from containerd's ``mergeConfig``, and shown
  for real by Debian 12's containerd 1.6.20 in ``tests/captured/nvidia-ops-debian12/07-09``).
- :func:`docker_runtime_settings` merged with a user's ``daemon.json`` settings through ``docker.merge_settings``.
- :func:`gpu_state` over every captured ``NvidiaGpus`` and ``NvidiaDevices`` value.
- The ``nvidia-persistenced`` unit against Debian 12's packaged one (``tests/captured/nvidia-ops-debian12``).
- ``containerd_runtime``, ``persistenced_unit``, ``driver_present`` and ``docker.daemon_json`` with the NVIDIA runtime
  run for real by ``pyinfra @local``, twice, inside a throwaway mount namespace whose ``/etc`` and ``/usr/bin`` are
  overlays (this machine's own are never written): needs root. The facts ``NvidiaDevices`` and
  ``NvidiaPersistenced`` run for real too, compared with what Python reads from sysfs and the user database.
"""

from __future__ import annotations

import copy
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api.exceptions import OperationValueError
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host

from pyinfra_iluvatar.facts.nvidia import PERSISTENCED_USERS, NvidiaGpusInfo
from pyinfra_iluvatar.operations import containerd, docker, nvidia

if sys.version_info >= (3, 11):
    import tomllib
else:  # the package supports 3.10, whose standard library has no TOML reader
    tomllib = pytest.importorskip("tomli")

TESTS = Path(__file__).parent
CAPTURED = TESTS / "captured" / "nvidia-ops-debian12"
FACTS = TESTS / "facts"
BIN = Path(sys.executable).parent
MAJORS = (1, 2, 3)


def _fixture_facts(folder: str) -> dict[str, Any]:
    return {path.stem: json.loads(path.read_text())["fact"] for path in sorted((FACTS / folder).glob("*.json"))}


# --- the containerd drop-in ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("major", MAJORS)
@pytest.mark.parametrize("default", [False, True])
@pytest.mark.parametrize("snapshotter", containerd.SNAPSHOTTERS)
def test_drop_in_is_valid_toml_registering_the_runtime(major: int, default: bool, snapshotter: str) -> None:
    text = nvidia.render_containerd_drop_in(major, default=default, snapshotter=snapshotter)
    assert text.startswith("# Managed by pyinfra-iluvatar")
    parsed = tomllib.loads(text)
    schema = 2 if major == 1 else 3
    plugin = parsed["plugins"][nvidia.CRI_PLUGINS[schema]]
    assert parsed["version"] == schema
    assert set(parsed) == {"version", "plugins"} and set(parsed["plugins"]) == {nvidia.CRI_PLUGINS[schema]}
    assert plugin["containerd"]["runtimes"]["nvidia"] == {
        "runtime_type": "io.containerd.runc.v2",
        "options": {"BinaryName": "/usr/bin/nvidia-container-runtime", "SystemdCgroup": True},
    }
    assert plugin["containerd"].get("default_runtime_name") == ("nvidia" if default else None)


def test_drop_in_without_systemd_cgroup() -> None:
    parsed = tomllib.loads(nvidia.render_containerd_drop_in(2, systemd_cgroup=False))
    options = parsed["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["nvidia"]["options"]
    assert options["SystemdCgroup"] is False


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"containerd_major": 0}, "containerd_major must be a containerd major version"),
        ({"containerd_major": True}, "containerd_major must be a containerd major version"),
        ({"containerd_major": "2"}, "containerd_major must be a containerd major version"),
        ({"containerd_major": 2, "default": "yes"}, "default must be true or false"),
        ({"containerd_major": 2, "systemd_cgroup": 1}, "systemd_cgroup must be true or false"),
        ({"containerd_major": 1, "snapshotter": "btrfs"}, "snapshotter must be one of zfs, overlayfs, native"),
    ],
)
def test_drop_in_refuses_bad_arguments(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(OperationValueError, match=message):
        nvidia.render_containerd_drop_in(**arguments)


def _deep_merge(into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(into)
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _containerd_loads(config: str, drop_in: str, major: int) -> dict[str, Any]:
    """
    ``config.toml`` with one imported drop-in, merged as containerd's ``mergeConfig`` does: 1.x replaces each plugin
    section the import names (``to.Plugins[k] = v``), 2.x merges plugin sections key by key (containerd PR 9982).
    """
    main, imported = tomllib.loads(config), tomllib.loads(drop_in)
    if major >= 2:
        return _deep_merge(main, imported)
    merged = _deep_merge({key: value for key, value in main.items() if key != "plugins"}, imported)
    merged["plugins"] = {**main.get("plugins", {}), **imported.get("plugins", {})}
    return merged


def _leaves(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    found: dict[tuple[str, ...], Any] = {}
    for key, value in tree.items():
        path = (*prefix, key)
        if isinstance(value, dict):
            found.update(_leaves(value, path))
        else:
            found[path] = value
    return found


@pytest.mark.parametrize("major", MAJORS)
@pytest.mark.parametrize("default", [False, True])
@pytest.mark.parametrize("snapshotter", containerd.SNAPSHOTTERS)
def test_drop_in_keeps_every_setting_of_config_toml(major: int, default: bool, snapshotter: str) -> None:
    config = containerd.render_config(major, snapshotter)
    effective = _containerd_loads(
        config, nvidia.render_containerd_drop_in(major, default=default, snapshotter=snapshotter), major
    )
    # Every plugin setting config.toml makes survives the import (on 1.x only because the drop-in restates them).
    for path, value in _leaves(tomllib.loads(config)["plugins"]).items():
        node: Any = effective["plugins"]
        for key in path:
            node = node[key]
        assert node == value, path
    runtimes = effective["plugins"][nvidia.CRI_PLUGINS[2 if major == 1 else 3]]["containerd"]["runtimes"]
    assert runtimes["nvidia"]["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    assert runtimes["runc"]["options"]["SystemdCgroup"] is True


def test_a_runtime_only_drop_in_would_lose_config_tomls_cri_settings_on_containerd_1() -> None:
    """Why the schema-2 drop-in restates config.toml's CRI settings: without them containerd 1.x drops them."""
    runtime_only = (
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]\n'
        'runtime_type = "io.containerd.runc.v2"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]\n'
        'BinaryName = "/usr/bin/nvidia-container-runtime"\n'
    )
    effective = _containerd_loads(containerd.render_config(1, "zfs"), runtime_only, 1)
    cri = effective["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]
    assert "snapshotter" not in cri and "runc" not in cri["runtimes"]


def _dump(name: str) -> tuple[dict[str, str], dict[str, Any]]:
    """A capture of ``containerd config dump``: the files shown before it (by path), and the dump parsed."""
    shown: dict[str, str] = {}
    lines = (CAPTURED / name).read_text().splitlines()
    current: str | None = None
    for index, line in enumerate(lines):
        if line.startswith("$ cat "):
            current = line.removeprefix("$ cat ")
            shown[current] = ""
        elif line.startswith("$ containerd"):
            assert lines[-1] == "[exit=0]", name
            return shown, tomllib.loads("\n".join(lines[index + 1 : -1]))
        elif current is not None:
            shown[current] += line + "\n"
    raise AssertionError(f"{name} holds no config dump")


def test_containerd_1_6_for_real_keeps_config_toml_beside_the_drop_in() -> None:
    """Debian 12's containerd 1.6.20 (``capture-containerd.sh``) reading config.toml with and without a drop-in."""
    shown, alone = _dump("07-containerd-1.6-no-drop-in.txt")
    assert shown["/etc/containerd/config.toml"] == containerd.render_config(1, "zfs"), "recapture: config.toml changed"
    cri = alone["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]
    assert cri["snapshotter"] == "zfs" and cri["runtimes"]["runc"]["options"]["SystemdCgroup"] is True

    _, runtime_only = _dump("08-containerd-1.6-runtime-only-drop-in.txt")
    cri = runtime_only["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]
    assert cri["snapshotter"] == "overlayfs"  # containerd's default: config.toml's zfs is gone
    assert set(cri["runtimes"]) == {"nvidia"}  # and runc's SystemdCgroup with it

    shown, ours = _dump("09-containerd-1.6-our-drop-in.txt")
    assert shown["/etc/containerd/conf.d/99-nvidia.toml"] == nvidia.render_containerd_drop_in(1, snapshotter="zfs"), (
        "recapture with capture-containerd.sh: the drop-in changed"
    )
    cri = ours["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]
    assert cri["snapshotter"] == "zfs"
    assert cri["default_runtime_name"] == "runc"
    assert cri["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert cri["runtimes"]["nvidia"]["runtime_type"] == "io.containerd.runc.v2"
    assert cri["runtimes"]["nvidia"]["options"] == {
        "BinaryName": "/usr/bin/nvidia-container-runtime",
        "SystemdCgroup": True,
    }


# --- Docker ----------------------------------------------------------------------------------------------------------


def test_docker_settings_are_nvidia_ctks() -> None:
    assert nvidia.docker_runtime_settings() == {
        "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}
    }
    assert nvidia.docker_runtime_settings(default=True) == {
        "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}},
        "default-runtime": "nvidia",
    }
    with pytest.raises(OperationValueError, match="default must be true or false"):
        nvidia.docker_runtime_settings(default="yes")  # type: ignore[arg-type]


def test_docker_settings_merge_keeps_the_users_keys_and_is_a_fixed_point() -> None:
    users = {
        "exec-opts": ["native.cgroupdriver=systemd"],
        "runtimes": {"crun": {"path": "/usr/bin/crun"}},
        "default-runtime": "crun",
        "log-opts": {"max-size": "20m"},
    }
    merged = docker.merge_settings(users, nvidia.docker_runtime_settings())
    assert merged == {
        "exec-opts": ["native.cgroupdriver=systemd"],
        "runtimes": {"crun": {"path": "/usr/bin/crun"}, "nvidia": {"args": [], "path": "nvidia-container-runtime"}},
        "default-runtime": "crun",  # kept: not asked to make nvidia the default
        "log-opts": {"max-size": "20m"},
    }
    assert docker.merge_settings(merged, nvidia.docker_runtime_settings()) == merged
    as_default = docker.merge_settings(users, nvidia.docker_runtime_settings(default=True))
    assert as_default["default-runtime"] == "nvidia" and "crun" in as_default["runtimes"]
    assert users["runtimes"] == {"crun": {"path": "/usr/bin/crun"}}  # the caller's settings are not changed


def _daemon_json_commands(existing: str | None, settings: dict[str, Any]) -> tuple[list[Any], str | None]:
    state = FakeState()
    lines = None if existing is None else existing.splitlines()
    host = create_host(state, facts={"files.FileContents": {f"path={docker.DAEMON_JSON}": lines}})
    with ctx_state.use(state), ctx_host.use(host):
        return list(docker.daemon_json._inner(settings=settings)), host.noop_description


def test_daemon_json_written_by_nvidia_ctk_is_already_converged() -> None:
    """The daemon.json nvidia-ctk writes (as in the daemon_json fixture nvidia_runtime_kept_and_merged) changes
    nothing; the same with the user's own keys beside it."""
    by_ctk = json.dumps({"runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}}, indent=4)
    commands, noop = _daemon_json_commands(by_ctk, nvidia.docker_runtime_settings())
    assert commands == [] and noop == f"{docker.DAEMON_JSON} already has runtimes"
    with_user = json.dumps({"debug": True, **json.loads(by_ctk)}, indent=2)
    commands, _ = _daemon_json_commands(
        with_user, docker.merge_settings({"debug": True}, nvidia.docker_runtime_settings())
    )
    assert commands == []


# --- gpu_state -------------------------------------------------------------------------------------------------------

GPUS = _fixture_facts("nvidia.NvidiaGpus")
DEVICES = _fixture_facts("nvidia.NvidiaDevices")


@pytest.mark.parametrize("gpus_case", sorted(GPUS))
@pytest.mark.parametrize("devices_case", sorted(DEVICES))
def test_gpu_state_over_every_captured_value(gpus_case: str, devices_case: str) -> None:
    gpus, devices = GPUS[gpus_case], DEVICES[devices_case]
    state, message = nvidia.gpu_state(gpus, devices)
    assert message
    if gpus["status"] == "ok" and gpus["gpus"]:
        assert state == "ready"
        assert all(gpu["uuid"] in message for gpu in gpus["gpus"])
    elif gpus["status"] in ("nvml_missing", "error"):
        assert state == gpus["status"]
    elif devices["gpus"]:
        assert state == "no_driver"
        assert all(device["address"] in message for device in devices["gpus"])
    elif gpus["status"] == "no_driver" and not devices["pci_bus"]:
        assert state == "no_driver"
    else:
        assert state == "no_gpu"


def test_gpu_state_messages() -> None:
    no_smi: NvidiaGpusInfo = {"status": "not_installed", "exit_code": None, "message": None, "gpus": []}
    assert nvidia.gpu_state(no_smi, DEVICES["rtx3080_bound_to_nouveau_projected"]) == (
        "no_driver",
        "NVIDIA GPU(s) on the PCI bus, but there is no nvidia-smi (the NVIDIA driver, or its nvidia-smi, is not "
        "installed): 0000:09:00.0 (10de:2206, driver nouveau)",
    )
    assert nvidia.gpu_state(no_smi, DEVICES["debian12_vm_no_nvidia"]) == (
        "no_gpu",
        "no NVIDIA GPU: no NVIDIA display controller on the PCI bus",
    )
    assert nvidia.gpu_state(GPUS["no_driver"], DEVICES["no_pci_bus"]).state == "no_driver"
    assert nvidia.gpu_state(GPUS["gpu_access_blocked"], DEVICES["h200_projected_from_nvidia_smi_q"]) == (
        "error",
        "nvidia-smi fails (exit 17: Failed to initialize NVML: GPU access blocked by the operating system); NVIDIA "
        "GPU(s) on the PCI bus: 0000:00:06.0 (10de:2335, driver nvidia)",
    )


# --- nvidia-persistenced ---------------------------------------------------------------------------------------------


def _unit(text: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections[current] = {}
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            sections[current][key] = value
    return sections


@pytest.mark.parametrize("user", [None, "nvidia-persistenced", "nvpd"])
def test_persistenced_unit_turns_persistence_mode_on_and_can_be_enabled(user: str | None) -> None:
    text = nvidia.render_persistenced_unit(user)
    unit = _unit(text)
    packaged = _unit((CAPTURED / "debian-12-package-nvidia-persistenced.service").read_text())
    assert text.startswith("# Managed by pyinfra-iluvatar")
    start = unit["Service"]["ExecStart"].split()
    assert start[0] == "/usr/bin/nvidia-persistenced" and "--persistence-mode" in start
    assert "--no-persistence-mode" not in start
    assert ("--user" in start) == (user is not None) and (user is None or start[start.index("--user") + 1] == user)
    # What Debian's package unit has, ours has too; and it can be enabled (the setup page's cannot: no [Install]).
    assert unit["Service"]["Type"] == packaged["Service"]["Type"] == "forking"
    assert unit["Service"]["ExecStopPost"] == packaged["Service"]["ExecStopPost"]
    assert unit["Install"] == packaged["Install"] == {"WantedBy": "multi-user.target"}
    assert "StopWhenUnneeded" not in unit["Unit"]


def test_debian_package_runs_persistenced_as_nvpd() -> None:
    """Why the unit looks for ``nvpd`` too: Debian's package creates that user, not ``nvidia-persistenced``."""
    packaged = _unit((CAPTURED / "debian-12-package-nvidia-persistenced.service").read_text())
    assert packaged["Service"]["ExecStart"] == "/usr/bin/nvidia-persistenced --user nvpd"
    assert "adduser --system --group" in (CAPTURED / "debian-12-package-postinst.txt").read_text()
    assert PERSISTENCED_USERS == ("nvidia-persistenced", "nvpd")


def test_persistenced_unit_prefers_the_nvidia_persistenced_user() -> None:
    state = FakeState()
    found = {
        "binary": True,
        "found_at": "/usr/bin/nvidia-persistenced",
        "users": {"nvidia-persistenced": 116, "nvpd": 102},
    }
    facts = {
        "nvidia.NvidiaPersistenced": found,
        "files.File": {f"path={nvidia.PERSISTENCED_UNIT}": None},
        "files.Directory": {f"path={nvidia.PERSISTENCED_UNIT}": None, "path=/etc/systemd/system": {"mode": 755}},
        "server.TmpDir": "",
    }
    with ctx_state.use(state), ctx_host.use(create_host(state, facts=facts)):
        commands = list(nvidia.persistenced_unit._inner())
    uploaded = commands[0].src.getvalue()
    assert "ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --persistence-mode" in uploaded


# --- image references ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "valid"),
    [
        ("nvidia/cuda:11.8.0-base-ubuntu20.04", True),
        ("docker.io/nvidia/cuda:12.4.1-base-ubuntu22.04", True),
        ("localhost:5000/cuda", True),
        ("registry.example.com/a/b@sha256:" + "a" * 64, True),
        ("busybox", True),
        ("Nvidia/cuda", False),  # a first component without a dot or port is part of the name: lower case only
        ("nvidia/cuda:", False),
        ("nvidia/cuda:11.8; reboot", False),
        ("-cuda", False),
        ("nvidia//cuda", False),
        ("nvidia/cuda@sha256:abc", False),
        ("a" * 256, False),
        ("", False),
    ],
)
def test_image_references(image: str, valid: bool) -> None:
    assert nvidia.valid_image_reference(image) is valid


# --- for real: the facts here, and the operations by pyinfra @local in a private mount namespace ----------------------


def _local_fact(fact: str) -> Any:
    result = subprocess.run(
        [BIN / "pyinfra", "--json", "@local", "fact", f"pyinfra_iluvatar.facts.nvidia.{fact}"],
        check=True,
        capture_output=True,
        text=True,
    )
    (value,) = json.loads(result.stdout).values()
    return value["@local"]


def test_nvidia_devices_for_real_matches_sysfs() -> None:
    root = Path("/sys/bus/pci/devices")
    expected = []
    for device in sorted(root.iterdir()) if root.is_dir() else []:
        vendor = (device / "vendor").read_text().strip()
        class_code = (device / "class").read_text().strip()
        if vendor == "0x10de" and class_code.startswith("0x03"):
            driver = device / "driver"
            expected.append(
                {
                    "address": device.name,
                    "device_id": (device / "device").read_text().strip().removeprefix("0x"),
                    "class_code": class_code.removeprefix("0x"),
                    "driver": driver.resolve().name if driver.exists() else None,
                }
            )
    assert _local_fact("NvidiaDevices") == {"pci_bus": root.is_dir(), "gpus": expected}


def test_nvidia_persistenced_for_real_matches_the_user_database() -> None:
    def uid(name: str) -> int | None:
        try:
            return pwd.getpwnam(name).pw_uid
        except KeyError:
            return None

    assert _local_fact("NvidiaPersistenced") == {
        "binary": os.access("/usr/bin/nvidia-persistenced", os.X_OK),
        "found_at": shutil.which("nvidia-persistenced"),
        "users": {"nvidia-persistenced": uid("nvidia-persistenced"), "nvpd": uid("nvpd")},
    }


def _can_overlay() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as scratch:
        probe = subprocess.run(
            [
                "unshare",
                "-m",
                "sh",
                "-c",
                f"mount -t tmpfs tmpfs {scratch} && mkdir {scratch}/u {scratch}/w && mount -t overlay overlay -o "
                f"lowerdir=/etc,upperdir={scratch}/u,workdir={scratch}/w /etc",
            ],
            capture_output=True,
            check=False,
        )
    return probe.returncode == 0


DEPLOY = """
from pyinfra_iluvatar.operations import docker, nvidia

nvidia.driver_present(name="NVIDIA GPU if any", required=False)
nvidia.containerd_runtime(name="NVIDIA runtime for containerd", snapshotter="zfs")
nvidia.persistenced_unit(name="nvidia-persistenced unit")
docker.daemon_json(
    name="daemon.json with the NVIDIA runtime",
    settings=docker.merge_settings({"exec-opts": ["native.cgroupdriver=systemd"]}, nvidia.docker_runtime_settings()),
)
"""

# /etc and /usr/bin are overlays over this machine's (their changes vanish with the namespace); /usr/bin gets a
# stand-in nvidia-persistenced (the operation only needs it to be there), /etc the user Debian's package creates and
# the daemon.json nvidia-ctk writes, beside a key of the user's.
NAMESPACE = """
set -eu
scratch=$(mktemp -d)
mount -t tmpfs tmpfs "$scratch"
for d in etc bin; do mkdir "$scratch/$d-u" "$scratch/$d-w"; done
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$scratch/etc-u,workdir=$scratch/etc-w" /etc
mount -t overlay overlay -o "lowerdir=/usr/bin,upperdir=$scratch/bin-u,workdir=$scratch/bin-w" /usr/bin
printf '#!/bin/sh\\nexit 0\\n' > /usr/bin/nvidia-persistenced; chmod 755 /usr/bin/nvidia-persistenced
rm -rf /etc/containerd /etc/systemd/system/nvidia-persistenced.service /etc/docker/daemon.json
useradd --system --no-create-home --home-dir /var/run/nvpd --shell /usr/sbin/nologin nvpd
mkdir -p /etc/docker
printf '{{"debug": true, "runtimes": {{"nvidia": {{"args": [], "path": "nvidia-container-runtime"}}}}}}\\n' \\
    > /etc/docker/daemon.json
cd {out}
for run in 1 2; do {pyinfra} -y @local deploy.py > run$run.log 2>&1 || echo "run $run failed" >> failures; done
cp /etc/containerd/conf.d/99-nvidia.toml /etc/systemd/system/nvidia-persistenced.service /etc/docker/daemon.json .
stat -c '%a %U %G %n' /etc/containerd/conf.d/99-nvidia.toml /etc/systemd/system/nvidia-persistenced.service > modes
"""


def _grand_total(log: Path) -> list[str]:
    """The counts of pyinfra's ``Grand total`` result line: hosts, success, error, no change."""
    (line,) = [line for line in log.read_text().splitlines() if line.strip().startswith("Grand total")]
    return line.split()[2:]


def test_operations_for_real_twice(tmp_path: Path) -> None:
    if not _can_overlay():
        pytest.skip("needs root, unshare and overlays over /etc and /usr/bin in a private mount namespace")
    if Path("/usr/bin/containerd").exists() or Path("/usr/local/bin/containerd").exists():
        pytest.skip("expects a host without containerd (schema 2 for lack of one)")
    if nvidia.gpu_state(_local_fact("NvidiaGpus"), _local_fact("NvidiaDevices")).state != "no_gpu":
        pytest.skip("expects a host without an NVIDIA GPU (driver_present is then a no-op)")
    (tmp_path / "deploy.py").write_text(DEPLOY)
    script = NAMESPACE.format(out=tmp_path, pyinfra=BIN / "pyinfra")
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    logs = "\n".join(f"{p.name}:\n{p.read_text()}" for p in sorted(tmp_path.glob("run*.log")))
    assert result.returncode == 0, result.stderr + logs
    assert not (tmp_path / "failures").exists(), (tmp_path / "failures").read_text() + logs
    assert _grand_total(tmp_path / "run1.log") == ["4", "3", "-", "1"], logs  # hosts, success, error, no change
    assert _grand_total(tmp_path / "run2.log") == ["4", "-", "-", "4"], logs

    assert (tmp_path / "99-nvidia.toml").read_text() == nvidia.render_containerd_drop_in(1, snapshotter="zfs")
    assert (tmp_path / "nvidia-persistenced.service").read_text() == nvidia.render_persistenced_unit("nvpd")
    assert json.loads((tmp_path / "daemon.json").read_text()) == {
        "debug": True,
        "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}},
        "exec-opts": ["native.cgroupdriver=systemd"],
    }
    assert (tmp_path / "modes").read_text().splitlines() == [
        "644 root root /etc/containerd/conf.d/99-nvidia.toml",
        "644 root root /etc/systemd/system/nvidia-persistenced.service",
    ]


def test_sandbox_capture_is_of_this_unit() -> None:
    """``10-persistenced-unit-systemd-sandbox.txt`` ran the unit this code renders (as root: no user there yet)."""
    capture = (CAPTURED / "10-persistenced-unit-systemd-sandbox.txt").read_text()
    shown = capture.split("$ cat /etc/systemd/system/nvidia-persistenced.service\n", 1)[1]
    assert shown.startswith(nvidia.render_persistenced_unit(None)), "recapture: the unit changed"
    assert "argv[]=/usr/bin/nvidia-persistenced --user nvpd --persistence-mode --verbose" in capture
    assert capture.count("Grand total                   4       -         -       4") == 2  # runs 2 and 4: no change
