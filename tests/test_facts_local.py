"""Facts run for real: `pyinfra @local fact …` on this machine, compared with what the tools say directly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def local_fact(fact: str) -> object:
    """Run ``pyinfra @local fact FACT`` the way a user would and return the fact's value."""
    result = subprocess.run(
        [BIN / "pyinfra", "--json", "@local", "fact", fact],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return json.loads(result.stdout)[fact]["@local"]


def test_default_route_interface_matches_ip_route() -> None:
    routes = subprocess.run(["ip", "-o", "-4", "route", "show", "default"], capture_output=True, text=True)
    fields = routes.stdout.split()
    expected = fields[fields.index("dev") + 1] if "dev" in fields else None
    assert local_fact("pyinfra_iluvatar.facts.network.DefaultRouteInterface") == expected


def local_fact_with_args(fact: str, *args: str, env: dict[str, str] | None = None) -> object:
    """Run ``pyinfra @local fact FACT key=value …`` and return the fact's value (its output key names the args)."""
    result = subprocess.run(
        [BIN / "pyinfra", "--json", "@local", "fact", fact, *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    (value,) = json.loads(result.stdout).values()
    return value["@local"]


def _containerd_version_line(binary: str) -> list[str] | None:
    if shutil.which(binary) is None:
        return None
    return subprocess.run([binary, "--version"], check=True, capture_output=True, text=True).stdout.split()


def test_containerd_version_matches_containerd() -> None:
    for binary in ("containerd", "/usr/local/bin/containerd"):
        fields = _containerd_version_line(binary)
        fact = local_fact_with_args("pyinfra_iluvatar.facts.containerd.ContainerdVersion", f"binary={binary}")
        if fields is None:
            assert fact is None, binary
            continue
        assert isinstance(fact, dict)
        assert [fact["package"], fact["raw"]] == fields[1:3]
        assert fact["revision"] == (fields[3] if len(fields) == 4 else None)
        release = fact["raw"].removeprefix("v").split(".")
        assert fact["version"].split(".")[:2] == release[:2]


def test_containerd_plugins_matches_ctr() -> None:
    fact = local_fact_with_args("pyinfra_iluvatar.facts.containerd.ContainerdPlugins")
    if shutil.which("ctr") is None:
        assert fact is None
        return
    direct = subprocess.run(["ctr", "--connect-timeout", "3s", "plugins", "ls"], capture_output=True, text=True)
    assert isinstance(fact, dict)
    assert fact["answering"] == (direct.returncode == 0)
    rows = [line.split() for line in direct.stdout.splitlines()[1:] if line.strip()]
    assert set(fact["plugins"]) == {f"{row[0]}.{row[1]}" for row in rows}
    assert {key: plugin["status"] for key, plugin in fact["plugins"].items()} == {
        f"{row[0]}.{row[1]}": row[3] for row in rows
    }


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def test_cni_plugins_runs_each_plugin_safely(tmp_path: Path) -> None:
    """Each executable runs once with an empty CNI_COMMAND, stdin from /dev/null and a timeout; cnitool never."""
    plugins = tmp_path / "bin"
    plugins.mkdir()
    # Stand-ins: one prints a plugin's about lines on stderr as a CNI plugin does, one shows its CNI_COMMAND.
    _executable(
        plugins / "bridge",
        '#!/bin/sh\necho "CNI bridge plugin v1.6.1" >&2\necho "CNI protocol versions supported: 1.0.0, 1.1.0" >&2\n',
    )
    _executable(plugins / "shows-env", '#!/bin/sh\necho "CNI_COMMAND=[${CNI_COMMAND-unset}]"\n')
    _executable(plugins / "reads-stdin", '#!/bin/sh\ncat\necho "stdin closed"\n')
    _executable(plugins / "hangs", "#!/bin/sh\nsleep 30\n")
    _executable(plugins / "cnitool", f"#!/bin/sh\ntouch {tmp_path / 'cnitool-ran'}\n")
    (plugins / "README.md").write_text("not a plugin\n")

    fact = local_fact_with_args(
        "pyinfra_iluvatar.facts.cni.CniPlugins", f"directory={plugins}", env={"CNI_COMMAND": "ADD"}
    )

    assert isinstance(fact, dict)
    assert fact["cnitool"] is True
    assert not (tmp_path / "cnitool-ran").exists()
    assert sorted(fact["plugins"]) == ["bridge", "hangs", "reads-stdin", "shows-env"]
    assert fact["plugins"]["shows-env"]["about"] == "CNI_COMMAND=[]"
    assert fact["plugins"]["bridge"] == {
        "about": "CNI bridge plugin v1.6.1",
        "version": "1.6.1",
        "protocols": ["1.0.0", "1.1.0"],
        "exit_status": 0,
    }
    assert fact["plugins"]["reads-stdin"]["about"] == "stdin closed"
    assert fact["plugins"]["hangs"]["exit_status"] == 124


def test_cni_plugins_missing_directory_is_empty(tmp_path: Path) -> None:
    fact = local_fact_with_args("pyinfra_iluvatar.facts.cni.CniPlugins", f"directory={tmp_path / 'absent'}")
    assert fact == {"cnitool": False, "plugins": {}}


def test_nvidia_gpus_matches_nvidia_smi() -> None:
    gpus = local_fact("pyinfra_iluvatar.facts.nvidia.NvidiaGpus")
    persistence = local_fact("pyinfra_iluvatar.facts.nvidia.NvidiaPersistenceMode")
    if shutil.which("nvidia-smi") is None:
        assert gpus == {"status": "not_installed", "exit_code": None, "message": None, "gpus": []}
        assert persistence == {}
        return
    direct = subprocess.run(
        ["nvidia-smi", "--query-gpu=uuid,persistence_mode", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    )
    assert isinstance(gpus, dict)
    assert gpus["exit_code"] == direct.returncode
    rows = [line.split(", ") for line in direct.stdout.splitlines() if line.strip()]
    expected = {uuid: mode == "Enabled" for uuid, mode in rows} if direct.returncode == 0 else {}
    assert {gpu["uuid"]: gpu["persistence_mode"] for gpu in gpus["gpus"]} == expected
    assert persistence == expected


def test_docker_daemon_matches_docker_version() -> None:
    fact = local_fact("pyinfra_iluvatar.facts.docker.DockerDaemon")
    assert isinstance(fact, dict)
    if shutil.which("docker") is None:
        assert fact["answers"] is False and fact["error"] is None
        return
    direct = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True)
    assert fact["answers"] == (direct.returncode == 0)
    assert fact["server_version"] == (direct.stdout.strip() if direct.returncode == 0 else None)
    assert (fact["error"] is None) == fact["answers"]


def test_pam_limits_reports_a_real_drop_in_overriding_limits_conf() -> None:
    """Writes a drop-in (and one limits.conf line) for a user that does not exist; restores both."""
    if os.geteuid() != 0:
        pytest.skip("writes /etc/security: needs root")
    domain = f"iluvatar-test-{os.getpid()}"
    limits_conf = Path("/etc/security/limits.conf")
    drop_in = Path(f"/etc/security/limits.d/zz-iluvatar-test-{os.getpid()}.conf")
    original = limits_conf.read_bytes() if limits_conf.exists() else None
    try:
        head = original or b""
        if head and not head.endswith(b"\n"):
            head += b"\n"
        limits_conf.write_bytes(head + f"{domain} - nofile 4096\n".encode())
        drop_in.write_text(
            f"# test drop-in\n{domain}  hard  nofile  8192   # overrides limits.conf\n{domain} soft nproc 512\n"
        )
        fact = local_fact("pyinfra_iluvatar.facts.limits.PamLimits")
        assert isinstance(fact, list)
        mine = {
            (entry["type"], entry["item"]): (entry["value"], entry["file"])
            for entry in fact
            if entry["domain"] == domain
        }
        assert mine == {
            ("soft", "nofile"): ("4096", str(limits_conf)),
            ("hard", "nofile"): ("8192", str(drop_in)),
            ("soft", "nproc"): ("512", str(drop_in)),
        }
    finally:
        drop_in.unlink(missing_ok=True)
        if original is None:
            limits_conf.unlink(missing_ok=True)
        else:
            limits_conf.write_bytes(original)


def _sh(command: str) -> str | None:
    """What ``sh -c COMMAND`` prints, stripped; ``None`` when it prints nothing."""
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout.strip() or None


def test_zfs_implementation_matches_this_machine() -> None:
    fact = local_fact("pyinfra_iluvatar.facts.zfs.ZfsImplementation")
    assert isinstance(fact, dict)
    module = Path("/sys/module/zfs")
    zfs_fuse = _sh("command -v zfs-fuse")
    comms = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            comms.append(comm.read_text().strip())
        except OSError:  # the process ended while we looked
            continue
    assert fact["module_loaded"] == module.is_dir()
    assert fact["zfs_fuse"] == zfs_fuse
    assert fact["zfs_fuse_running"] == ("zfs-fuse" in comms)
    assert fact["zpool"] == _sh("command -v zpool")
    if module.is_dir():
        assert (fact["kind"], fact["version"]) == ("openzfs", (module / "version").read_text().strip())
    elif zfs_fuse is not None:
        assert (fact["kind"], fact["version"]) == ("zfs-fuse", _sh("dpkg-query -W -f='${Version}' zfs-fuse"))
    else:
        assert (fact["kind"], fact["version"]) == ("none", None)


def test_zpool_facts_match_zpool_list_or_answer_none() -> None:
    """Where ZFS does not answer (no zpool, zfs-fuse daemon stopped) the facts give None instead of failing."""
    status = local_fact("pyinfra_iluvatar.facts.zfs.ZpoolStatus")
    listing = local_fact("pyinfra_iluvatar.facts.zfs.ZpoolList")
    names = subprocess.run(["sh", "-c", "zpool list -H -o name"], capture_output=True, text=True)
    if names.returncode != 0:
        assert status is None and listing is None
    else:
        assert isinstance(status, dict) and isinstance(listing, dict)
        assert set(status) == set(listing) == set(names.stdout.split())


def test_device_signatures_match_blkid(tmp_path: Path) -> None:
    """An empty file, an ext4 file (where mkfs.ext4 exists), a directory and a missing path, in one fact run."""
    empty, ext4, missing = tmp_path / "empty.img", tmp_path / "ext4.img", tmp_path / "missing.img"
    for image in (empty, ext4):
        with image.open("wb") as stream:
            stream.truncate(16 << 20)
    if shutil.which("mkfs.ext4"):
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "iluvatar-test", str(ext4)], check=True)
    paths = [str(empty), str(ext4), str(tmp_path), str(missing)]
    fact = local_fact_with_args("pyinfra_iluvatar.facts.devices.DeviceSignatures", f"devices={json.dumps(paths)}")
    assert isinstance(fact, dict)
    assert list(fact) == paths
    for path in (empty, ext4):
        direct = subprocess.run(["blkid", "-p", "-o", "export", str(path)], capture_output=True, text=True)
        values = dict(line.split("=", 1) for line in direct.stdout.splitlines())
        assert fact[str(path)]["kind"] == "file"
        assert fact[str(path)]["status"] == direct.returncode
        assert fact[str(path)]["type"] == values.get("TYPE")
        assert fact[str(path)]["label"] == values.get("LABEL")
        assert fact[str(path)]["uuid"] == values.get("UUID")
    assert fact[str(empty)]["status"] == 2 and fact[str(empty)]["values"] == {}
    assert (fact[str(tmp_path)]["kind"], fact[str(tmp_path)]["status"]) == ("directory", None)
    assert (fact[str(missing)]["exists"], fact[str(missing)]["kind"]) == (False, None)


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (Debian's strace) to count the writes")
def test_combined_prints_its_sections_in_one_write(tmp_path: Path) -> None:
    """
    ``Combined`` run by ``sh`` here: every section's output reaches stdout in one write (one SSH packet on a real
    host, not one per echo and command), and its sections give each fact's value.
    """
    from pyinfra_iluvatar.facts.combined import Combined

    probes = [
        (f"p{index}", "pyinfra.facts.server.Command", {"command": f"echo line {index}; echo more {index}"})
        for index in range(6)
    ]
    probes.append(("missing", "pyinfra_iluvatar.facts.zfs.ZpoolStatus", {"pool": "no-such-pool"}))
    log = tmp_path / "writes"
    run = subprocess.run(
        ["strace", "-o", str(log), "-e", "trace=write", "sh", "-c", Combined().command(probes)],
        capture_output=True,
        text=True,
        check=True,
    )
    values = Combined().process(run.stdout.splitlines())
    assert {name: values[name] for name in values if name != "missing"} == {
        f"p{index}": f"line {index}\nmore {index}" for index in range(6)
    }
    assert "missing" in values  # a section whose tool is absent here, or a pool that is not there
    writes = [line for line in log.read_text().splitlines() if line.startswith("write(1,")]
    assert len(writes) == 1, writes  # the shell itself (strace without -f): only the final printf
