"""The worker deploy end to end: three sandbox hosts, twice; the second run changes nothing and SSH still logs in."""

from __future__ import annotations

import json

import pytest

from pyinfra_iluvatar.tests.support.sandbox import SandboxSession

pytestmark = pytest.mark.sandbox


def run_worker(sandbox: SandboxSession) -> dict[str, list[str]]:
    """Operation name → hosts it changed, for one run of ``deploys/worker.py`` (which must succeed)."""
    result = sandbox.pyinfra("--json", "--parallel", "3", "deploys/worker.py")
    assert result.returncode == 0, result.stderr[-3000:]
    operations = json.loads(result.stdout)["results"]["operations"]
    return {op["name"]: op["success"] for op in operations if op["success"]}


def test_worker_deploy_converges_and_logins_still_work(sandbox: SandboxSession) -> None:
    hosts = sorted(host.name for host in sandbox.hosts)
    first = run_worker(sandbox)
    assert sorted(first["Ilúvatar worker | File and process limits"]) == hosts
    # A PAM limit that setrlimit refuses can refuse logins: the second run logs in over SSH afresh.
    assert run_worker(sandbox) == {}
    for host in hosts:
        drop_in = sandbox.ssh(host, "cat /etc/security/limits.d/90-iluvatar.conf").stdout
        assert "root        hard    nofile          1000000" in drop_in
        assert sandbox.ssh(host, "command -v jq ifconfig iptables").returncode == 0
