"""Release installs end to end: three sandbox hosts install containerd, the CNI plugins and cnitool over SSH.

A local server on the sandbox's gateway plays GitHub, go.dev and a mirror, serving release-shaped archives
repacked from Debian's real binaries (containerd 1.6.20 and 1.7.24, CNI plugins 1.1.1, a cnitool built from
Debian's sources) with real checksum files. ``pyinfra-iluvatar lock`` resolves against it; the deploys read
that lock. The tests run in file order and build on each other: install, converge, upgrade, break, recover.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest

from pyinfra_iluvatar.sandbox.processes import wait_for
from pyinfra_iluvatar.tests.support.fake_upstream import FakeFile, FakeRelease, FakeUpstream
from pyinfra_iluvatar.tests.support.lab import NEW, OLD, Lab, changed, failed_hosts

pytestmark = pytest.mark.sandbox

CONTAINERD = "containerd/containerd"


def test_packaged_containerd_is_refused_before_any_change_on_any_host(lab: Lab) -> None:
    host = lab.hosts[2]
    apt = "DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Options::=--force-confold"
    lab.ssh(host, f"apt-get update -q >/dev/null && {apt} install containerd >/dev/null")
    result = lab.session.pyinfra("--parallel", "3", *lab.data_arguments(OLD), "deploys/containerd.py")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{host}: containerd is already installed from the package containerd 1.6.20~ds1" in output
    assert "iluvatar_containerd_replace_package=true" in output
    for each in lab.hosts:  # raised while preparing: no operation ran on any host
        assert lab.ssh(each, "test -e /usr/local/bin/containerd && echo present || echo absent").strip() == "absent"
        assert lab.ssh(each, "test -e /var/lib/pyinfra-iluvatar && echo present || echo absent").strip() == "absent"
    # The package stays: the next test replaces it.


def test_first_install_on_three_hosts_downloads_each_artifact_once(lab: Lab) -> None:
    """Controller download mode; the third host still has Debian's containerd package, which is replaced."""
    lab.upstream.counts.clear()
    report = lab.deploy(
        "deploys/containerd.py",
        "deploys/cni.py",
        iluvatar_download="controller",
        iluvatar_containerd_replace_package=True,
    )
    assert lab.controller_cache.is_dir()
    assert report["returncode"] == 0, report["stderr"][-3000:]
    assert failed_hosts(report) == []
    ops = changed(report)
    assert sorted(ops[f"containerd {OLD} binaries"]) == sorted(lab.hosts)
    assert sorted(ops["containerd answers ctr version"]) == sorted(lab.hosts)
    # Started (or, on the third host where the package had it running, restarted) once; then enabled where the
    # package had not enabled it already.
    assert sorted(ops["Start or restart containerd (binaries, unit or config changed)"]) == sorted(lab.hosts)
    assert sorted(ops["containerd running and enabled"]) == lab.hosts[:2]
    assert ops["No packaged containerd"] == [lab.hosts[2]]
    assert lab.ssh(lab.hosts[2], "dpkg-query -W -f '${db:Status-Status}' containerd").strip() == "config-files"

    downloads = {path: count for path, count in lab.upstream.counts.items() if "/releases/download/" in path}
    containerd_archive = f"/{CONTAINERD}/releases/download/v{OLD}/containerd-{OLD}-linux-amd64.tar.gz"
    assert downloads[containerd_archive] == 1, downloads  # three hosts, one upstream download
    assert all(count == 1 for count in downloads.values()), downloads


def test_the_fact_and_the_worker_path_see_the_installed_release(lab: Lab) -> None:
    result = lab.session.pyinfra("--json", "fact", "pyinfra_iluvatar.facts.containerd.ContainerdVersion")
    versions = json.loads(result.stdout)["pyinfra_iluvatar.facts.containerd.ContainerdVersion"]
    assert {host: value["version"] for host, value in versions.items()} == dict.fromkeys(lab.hosts, OLD)
    for host in lab.hosts:
        assert lab.ssh(host, "readlink -f /usr/bin/ctr").strip() == "/usr/local/bin/ctr"
        assert f"Version:  {OLD}" in lab.ssh(host, "/usr/bin/ctr version")
        plugins = lab.ssh(host, f"ls {'/opt/cni/bin'}").split()
        assert {"bridge", "host-local", "cnitool"} <= set(plugins)
        assert "README.md" not in plugins  # only executables are installed


def test_second_run_changes_nothing_and_restarts_nothing(lab: Lab) -> None:
    started = {host: lab.ssh(host, "systemctl show -p ExecMainStartTimestamp containerd") for host in lab.hosts}
    report = lab.deploy("deploys/containerd.py", "deploys/cni.py", iluvatar_download="controller")
    assert report["returncode"] == 0, report["stderr"][-3000:]
    assert changed(report) == {}
    assert started == {host: lab.ssh(host, "systemctl show -p ExecMainStartTimestamp containerd") for host in lab.hosts}


def test_corrupted_artifact_fails_with_checksum_error_and_keeps_the_install(lab: Lab) -> None:
    name = f"containerd-{NEW}-linux-amd64.tar.gz"
    good = lab.artifacts.release("containerd", NEW).path(name).read_bytes()
    corrupted = good[:1000] + bytes([good[1000] ^ 0xFF]) + good[1001:]
    mirror_releases = {CONTAINERD: [FakeRelease(f"v{NEW}", (FakeFile(name, corrupted),))]}
    before = {host: lab.binaries_sha256(host) for host in lab.hosts}
    started = {host: lab.ssh(host, "systemctl show -p ExecMainStartTimestamp containerd") for host in lab.hosts}
    with FakeUpstream(mirror_releases, host=lab.session.sandbox.gateway) as mirror:
        report = lab.deploy("deploys/containerd.py", lock=NEW, iluvatar_mirror=mirror.mirror_url)
        assert mirror.counts[f"/github.com/{CONTAINERD}/releases/download/v{NEW}/{name}"] == 3
    assert report["returncode"] != 0
    assert report["results"] is None, "every host must fail"
    for host in lab.hosts:
        assert f"[{host}] pyinfra-iluvatar: containerd {NEW}: checksum mismatch for {name}" in report["stderr"]
    assert {host: lab.binaries_sha256(host) for host in lab.hosts} == before
    assert started == {host: lab.ssh(host, "systemctl show -p ExecMainStartTimestamp containerd") for host in lab.hosts}


def test_upgrade_restarts_once_and_converges(lab: Lab) -> None:
    report = lab.deploy("deploys/containerd.py", lock=NEW)
    assert report["returncode"] == 0, report["stderr"][-3000:]
    ops = changed(report)
    assert sorted(ops[f"containerd {NEW} binaries"]) == sorted(lab.hosts)
    assert sorted(ops["Start or restart containerd (binaries, unit or config changed)"]) == sorted(lab.hosts)
    assert "containerd running and enabled" not in ops  # restarted once, not started again
    for host in lab.hosts:
        assert f"Version:  {NEW}" in lab.ssh(host, "/usr/bin/ctr version")
    assert changed(lab.deploy("deploys/containerd.py", lock=NEW)) == {}


def test_masked_unit_is_unmasked_and_started(lab: Lab) -> None:
    """The setup page's case: `systemctl enable containerd` says the unit is masked (a /dev/null link in /etc)."""
    host = lab.hosts[0]
    unit = "/etc/systemd/system/containerd.service"
    lab.ssh(host, f"systemctl stop containerd && rm {unit} && systemctl mask containerd && systemctl daemon-reload")
    assert lab.ssh(host, f"readlink {unit}").strip() == "/dev/null"
    report = lab.deploy("deploys/containerd.py", lock=NEW)
    assert report["returncode"] == 0, report["stderr"][-3000:]
    assert changed(report)["containerd.service is not masked"] == [host]
    assert lab.ssh(host, "systemctl is-active containerd").strip() == "active"
    assert lab.ssh(host, "systemctl is-enabled containerd").strip() == "enabled"


def test_a_host_powered_off_mid_download_converges_next_run_and_leaves_no_staging(lab: Lab) -> None:
    """The mirror sends part of the archive and holds the connection: the host dies while it downloads."""
    host = lab.hosts[1]
    name = f"containerd-{OLD}-linux-amd64.tar.gz"
    archive = FakeFile(name, lab.artifacts.release("containerd", OLD).path(name))
    held = threading.Event()
    staging = "ls -d /var/tmp/pyinfra-iluvatar-containerd.* 2>/dev/null || true"
    with FakeUpstream(
        {CONTAINERD: [FakeRelease(f"v{OLD}", (archive,))]},
        host=lab.session.sandbox.gateway,
        cut_after=1 << 16,
        hold=held,
    ) as mirror:
        argv = lab.session.pyinfra_argv(
            "--limit", host, *lab.data_arguments(OLD, iluvatar_mirror=mirror.mirror_url), "deploys/containerd.py"
        )
        run = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=lab.session.env)
        try:
            path = f"/github.com/{CONTAINERD}/releases/download/v{OLD}/{name}"
            assert wait_for(lambda: mirror.counts[path] > 0, timeout=120, interval=0.2)
            assert lab.ssh(host, staging).strip()  # the download is under way in its staging directory
            lab.session.sandbox.stop_host(host)
        finally:
            held.set()
            run.kill()
            run.wait()
            lab.session.sandbox.start_host(host)
    assert lab.ssh(host, staging).strip(), "the power cut left the staging directory behind"
    report = lab.deploy("deploys/containerd.py", lock=OLD)
    assert report["returncode"] == 0, report["stderr"][-3000:]
    assert f"Version:  {OLD}" in lab.ssh(host, "/usr/bin/ctr version")
    assert lab.ssh(host, staging).strip() == ""
    assert changed(lab.deploy("deploys/containerd.py", lock=OLD)) == {}


def test_a_lost_receipt_is_rewritten_without_a_restart(lab: Lab) -> None:
    host = lab.hosts[2]
    started = lab.ssh(host, "systemctl show -p ExecMainStartTimestamp containerd")
    lab.ssh(
        host,
        "rm /var/lib/pyinfra-iluvatar/releases/containerd.release /var/lib/pyinfra-iluvatar/releases/containerd.sha256",
    )
    report = lab.deploy("deploys/containerd.py", lock=OLD)
    assert report["returncode"] == 0, report["stderr"][-3000:]
    assert changed(report) == {f"containerd {OLD} binaries": [host]}
    assert lab.ssh(host, "systemctl show -p ExecMainStartTimestamp containerd") == started
    assert lab.ssh(host, "cat /var/lib/pyinfra-iluvatar/releases/containerd.release").startswith(
        "component=containerd\n"
    )


def test_a_truncated_controller_download_names_the_file_and_leaves_no_cache_entry(lab: Lab, tmp_path: Path) -> None:
    host = lab.hosts[0]
    name = f"containerd-{NEW}-linux-amd64.tar.gz"
    archive = FakeFile(name, lab.artifacts.release("containerd", NEW).path(name))
    cache = tmp_path / "cache"
    with FakeUpstream(
        {CONTAINERD: [FakeRelease(f"v{NEW}", (archive,))]}, host=lab.session.sandbox.gateway, cut_after=4096
    ) as mirror:
        result = lab.session.pyinfra(
            "--limit",
            host,
            *lab.data_arguments(
                NEW,
                iluvatar_mirror=mirror.mirror_url,
                iluvatar_download="controller",
                iluvatar_download_cache=str(cache),
            ),
            "deploys/containerd.py",
        )
        url = f"{mirror.mirror_url}/github.com/{CONTAINERD}/releases/download/v{NEW}/{name}"
    assert result.returncode != 0
    assert f"controller download of {name} from {url} failed" in result.stderr, result.stderr[-3000:]
    assert not cache.exists() or not any(cache.iterdir()), sorted(cache.rglob("*"))
    assert f"Version:  {OLD}" in lab.ssh(host, "/usr/bin/ctr version")  # the installed release is untouched
