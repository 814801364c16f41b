"""End to end on real sandbox hosts: pyinfra over SSH in parallel, apt through the proxy, systemd units, a host
lost mid-run; the command line; and ``down`` after a crash leaving nothing behind. Needs root."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from pyinfra_iluvatar.sandbox import Sandbox, cgroups, network, state
from pyinfra_iluvatar.sandbox.network import SandboxNetwork
from pyinfra_iluvatar.sandbox.processes import wait_for
from pyinfra_iluvatar.tests.support.sandbox import BIN, SandboxSession, free_test_network

pytestmark = pytest.mark.sandbox

DEPLOYS = Path(__file__).parent / "deploys"


def host_lines(result: subprocess.CompletedProcess[str], host: str) -> list[str]:
    """What ``host`` printed in a pyinfra run (pyinfra logs to stderr), without its ``[host]`` prefix."""
    prefix = f"[{host}] "
    return [line[len(prefix) :] for line in result.stderr.splitlines() if line.startswith(prefix)]


def test_parallel_ssh_each_host_reports_its_own_name_and_address(sandbox: SandboxSession) -> None:
    result = sandbox.pyinfra(
        "--parallel", "3", "exec", "--", "echo identity $(hostname) $(hostname -I) $(systemctl is-system-running)"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(sandbox.hosts) == 3
    for host in sandbox.hosts:
        assert f"identity {host.name} {host.address} running" in host_lines(result, host.name)


def test_apt_through_the_proxy_and_a_systemd_unit_on_every_host(sandbox: SandboxSession) -> None:
    result = sandbox.pyinfra(str(DEPLOYS / "apt_and_unit.py"))
    assert result.returncode == 0, result.stdout + result.stderr

    check = sandbox.pyinfra(
        "exec", "--", "hello; systemctl is-enabled sandbox-probe; systemctl is-active sandbox-probe"
    )
    assert check.returncode == 0, check.stdout + check.stderr
    proxy_log = (sandbox.sandbox.state_dir / "proxy.log").read_text()
    for host in sandbox.hosts:
        assert host_lines(check, host.name)[-3:] == ["Hello, world!", "enabled", "active"]
        # The packages came through the proxy: the hosts have no other way out.
        assert re.search(rf"{re.escape(host.address)} \"GET http://deb\.debian\.org/\S+/hello_\S+\.deb", proxy_log)


def test_hosts_reach_only_allowed_registries_and_the_gateway(sandbox: SandboxSession) -> None:
    host = sandbox.hosts[0].name
    registry = sandbox.ssh(host, "curl -sS -o /dev/null -w '%{http_code}' https://pypi.org/simple/pip/")
    assert registry.stdout == "200", registry.stderr
    refused = sandbox.ssh(host, "curl -sS -o /dev/null https://github.com/")
    assert refused.returncode != 0 and "403" in refused.stderr
    direct = sandbox.ssh(host, "curl -sS --noproxy '*' -m 5 https://deb.debian.org/ || ip route")
    assert "198.18." in direct.stdout and "default" not in direct.stdout, "no route out but the sandbox link"
    # Hosts may add routes (CAP_NET_ADMIN), but the gateway forwards nothing off the bridge (this machine may
    # forward elsewhere). 192.0.2.1 is a documentation address (TEST-NET-1): no server can be there.
    routed = sandbox.ssh(
        host,
        f"ip route add default via {sandbox.sandbox.gateway} && curl -sS --noproxy '*' -m 3 http://192.0.2.1/;"
        " status=$?; ip route del default; exit $status",
    )
    assert routed.returncode not in (0, 255), routed.stderr
    bridge = SandboxNetwork(current(sandbox.sandbox.state_dir).net).bridge
    address = sandbox.hosts[0].address
    # The kernel's own decision for such a packet: dropped on arrival, not routed out.
    decision = subprocess.run(
        ["ip", "route", "get", "192.0.2.1", "from", address, "iif", bridge],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert decision.returncode != 0 and "No route to host" in decision.stderr, decision.stdout
    # The gateway itself is reached directly (no_proxy): nothing listens on port 9, so it refuses at once.
    gateway = sandbox.ssh(host, f"curl -sS -m 5 http://{sandbox.sandbox.gateway}:9/ ; env | grep ^no_proxy=")
    assert "Failed to connect" in gateway.stderr
    assert sandbox.sandbox.gateway in gateway.stdout


def test_containers_bridges_and_nat_work_inside_a_host(sandbox: SandboxSession) -> None:
    host = sandbox.hosts[0].name
    install = sandbox.ssh(host, "apt-get update -qq && apt-get install -y -qq runc busybox-static iptables", 300)
    assert install.returncode == 0, install.stderr
    bundle = "/var/tmp/runc-probe"
    command = """s/"terminal": true/"terminal": false/; s/"sh"$/"sh", "-c", "echo in-a-container"/"""
    container = sandbox.ssh(
        host,
        f"rm -rf {bundle} && mkdir -p {bundle}/rootfs/bin && cp /bin/busybox {bundle}/rootfs/bin/sh && cd {bundle}"
        f" && runc spec && sed -i '{command}' config.json && runc run sandbox-probe",
    )
    assert container.stdout.strip() == "in-a-container", container.stderr
    # What the Ilúvatar worker does at start: its own bridge, NAT on the host's interface.
    network = sandbox.ssh(
        host,
        "ip link add probe-br0 type bridge && ip link show probe-br0 >/dev/null && ip link del probe-br0"
        " && iptables -t nat -A POSTROUTING -o host0 -j MASQUERADE && iptables -t nat -S POSTROUTING"
        " && iptables -t nat -D POSTROUTING -o host0 -j MASQUERADE",
    )
    assert "-A POSTROUTING -o host0 -j MASQUERADE" in network.stdout, network.stderr


def test_a_host_stopped_mid_run_fails_and_the_others_complete(sandbox: SandboxSession) -> None:
    names = [host.name for host in sandbox.hosts]
    victim, survivors = names[1], [names[0], names[2]]
    for name in names:
        sandbox.ssh(name, "rm -f /var/tmp/started /var/tmp/release /var/tmp/finished")
    run = subprocess.Popen(
        sandbox.pyinfra_argv("--parallel", "3", str(DEPLOYS / "wait_for_release.py")),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=sandbox.env,
    )
    try:
        # All three are inside the first operation at once: pyinfra really runs them in parallel.
        assert wait_for(
            lambda: all(sandbox.ssh(n, "test -e /var/tmp/started").returncode == 0 for n in names),
            timeout=60,
            interval=0.5,
        )
        sandbox.sandbox.stop_host(victim)
        for name in survivors:
            sandbox.ssh(name, "touch /var/tmp/release")
        output, _ = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        sandbox.sandbox.start_host(victim)
    assert run.returncode == 1, output
    assert f"[{victim}] Error" in output
    for name in survivors:
        assert sandbox.ssh(name, "test -e /var/tmp/finished").returncode == 0, output
    assert re.search(r"Finish\s+3\s+2\s+1\b", output), output


def test_command_line_status_and_shell(sandbox: SandboxSession) -> None:
    cli = str(BIN / "pyinfra-iluvatar")
    status = subprocess.run(
        [cli, "sandbox", "status"], capture_output=True, text=True, env=sandbox.env, timeout=60, check=True
    )
    for host in sandbox.hosts:
        line = rf"^{host.name}\s+workers\s+{host.arch}\s+{re.escape(host.address)}\s+running$"
        assert re.search(line, status.stdout, re.M), status.stdout
    shell = subprocess.run(
        [cli, "sandbox", "shell", sandbox.hosts[2].name, "hostname"],
        capture_output=True,
        text=True,
        env=sandbox.env,
        timeout=60,
        check=True,
    )
    assert shell.stdout.strip() == sandbox.hosts[2].name


def current(state_dir: Path) -> state.SandboxState:
    """The sandbox's state, which must be there."""
    loaded = state.load(state_dir)
    assert loaded is not None
    return loaded


def leftovers(box: Sandbox, bridge: str, machines: list[str]) -> list[str]:
    """Whatever of ``box`` (on ``bridge``) is still on this machine."""
    found = []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, timeout=30, check=True).stdout
    found += [f"link {m}" for m in machines if f"-{m}@" in links or f"-{m}:" in links]
    found += [f"bridge {bridge}"] if network.link_exists(bridge) else []
    mounts = Path("/proc/self/mountinfo").read_text()
    found += ["mount"] if str(box.state_dir) in mounts else []
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, timeout=30, check=True).stdout
    found += [line for line in processes.splitlines() if str(box.state_dir) in line]
    found += ["state directory"] if box.state_dir.exists() else []
    found += [
        f"cgroup {h / cgroups.TOP / m}"
        for h in cgroups.hierarchies()
        for m in machines
        if (h / cgroups.TOP / m).exists()
    ]
    return found


def test_up_recovers_from_a_killed_run_and_down_leaves_nothing() -> None:
    with free_test_network() as (index, state_dir):
        box = Sandbox(state_dir, net=index)
        cli = [str(BIN / "pyinfra-iluvatar"), "sandbox", "up", "--hosts", "2", "--net", str(index)]
        up = subprocess.Popen([*cli, "--state-dir", str(state_dir)])
        try:
            # Kill `sandbox up` as soon as a host is booting: it leaves a proxy, a bridge, mounts and nspawns.
            assert wait_for(lambda: any(state_dir.glob("hosts/*/console.log")), timeout=120, interval=0.05)
            up.send_signal(signal.SIGKILL)
            up.wait()
            hosts = box.up(hosts=2)
            assert [h.state for h in hosts] == ["running", "running"]
            # A crash of another kind: one nspawn killed, its container left running without it.
            first = current(state_dir).hosts[0].process
            assert first is not None
            first.signal(signal.SIGKILL)
            hosts = box.up(hosts=2)
            assert [h.state for h in hosts] == ["running", "running"]
            machines = [record.machine for record in current(state_dir).hosts]
        finally:
            box.down()
        bridge = SandboxNetwork(index).bridge
        assert leftovers(box, bridge, machines) == []
        box.down()
        assert leftovers(box, bridge, machines) == []
