"""The build host end to end on a sandbox host, for what can run here.

The distribution's Rust, Podman, the build packages and ansible (from the package index, through the sandbox's
proxy, into its own virtualenv) are installed for real for a build user who is not root, the development configs
written into a checkout, and a second run changes nothing. Not run here: ``cross`` (built from crates.io, which the
sandbox's proxy does not reach; its operation is covered by fixtures) and Docker as the engine (its deploy has its
own end-to-end tests).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pyinfra_iluvatar.operations.build import CONTROLLER_DEV_CONFIG, WORKER_DEV_CONFIG
from pyinfra_iluvatar.tests.support.lab import Lab, changed

pytestmark = pytest.mark.sandbox

USER, HOME = "builder", "/home/builder"
CHECKOUT = f"{HOME}/iluvatar-faas"
VENV = "/opt/iluvatar-ansible"
ANSIBLE = "10.7.0"
CLEAN = (
    f"rm -rf {VENV} /usr/local/bin/ansible /usr/local/bin/ansible-playbook /usr/local/bin/ansible-galaxy;"
    f" userdel -r {USER} 2>/dev/null; true"
)


def run(lab: Lab, host: str, **data: Any) -> dict[str, Any]:
    settings = {
        "iluvatar_build_user": USER,
        "iluvatar_build_engine": "podman",
        "iluvatar_cross_version": "",
        "iluvatar_ansible_version": ANSIBLE,
        "iluvatar_build_checkout": CHECKOUT,
        "iluvatar_hardware_interface": "host0",
        **data,
    }
    arguments = [f"--data={key}={json.dumps(value)}" for key, value in settings.items()]
    result = lab.session.pyinfra("--json", "--limit", host, *arguments, "deploys/build.py")
    report: dict[str, Any] = json.loads(result.stdout) if result.stdout.strip() else {"results": None}
    report["returncode"], report["stderr"] = result.returncode, result.stderr
    return report


def test_a_build_host_for_a_user_converges(lab: Lab) -> None:
    host = lab.hosts[0]
    try:
        worker_dir, controller_dir = (
            f"{CHECKOUT}/{path.rsplit('/', 1)[0]}" for path in (WORKER_DEV_CONFIG, CONTROLLER_DEV_CONFIG)
        )
        lab.ssh(host, f"useradd -m {USER} && runuser -u {USER} -- mkdir -p '{worker_dir}' '{controller_dir}'")
        report = run(lab, host)
        assert report["returncode"] == 0, report["stderr"][-4000:]
        versions = lab.ssh(host, "dpkg-query -W -f '${Package} ${Version}\\n' rustc cargo podman protobuf-compiler")
        assert len(versions.splitlines()) == 4
        said = lab.ssh(host, f"runuser -u {USER} -- ansible --version").splitlines()[0]
        assert said.startswith("ansible [core 2.17."), said
        assert lab.ssh(host, f"{VENV}/bin/pip show ansible | grep ^Version").strip() == f"Version: {ANSIBLE}"
        assert "ansible" not in lab.ssh(host, "python3 -m pip list 2>/dev/null; true")  # not the system Python's
        assert lab.ssh(host, f"runuser -u {USER} -- cargo --version").startswith("cargo ")
        worker = json.loads(lab.ssh(host, f"cat '{CHECKOUT}/{WORKER_DEV_CONFIG}'"))
        assert (worker["address"], worker["load_balancer_url"]) == ("127.0.0.1", "http://127.0.0.1:8078")
        assert worker["networking"]["hardware_interface"] == "host0"
        controller = json.loads(lab.ssh(host, f"cat '{CHECKOUT}/{CONTROLLER_DEV_CONFIG}'"))
        assert (controller["port"], controller["influx"]["token"]) == (8078, "")
        owners = lab.ssh(host, f"stat -c '%U %a' '{CHECKOUT}/{WORKER_DEV_CONFIG}' '{CHECKOUT}/{CONTROLLER_DEV_CONFIG}'")
        assert owners.split("\n")[:2] == [f"{USER} 600", f"{USER} 600"]

        again = run(lab, host)
        assert again["returncode"] == 0 and changed(again) == {}, again["stderr"][-4000:]
    finally:
        lab.session.ssh(host, CLEAN)


def test_a_build_user_that_does_not_exist_stops_the_run(lab: Lab) -> None:
    report = run(lab, lab.hosts[1], iluvatar_build_user="nobody-here")
    assert report["returncode"] != 0
    assert "iluvatar_build_user = 'nobody-here' (--data) is not a user on this host" in report["stderr"]
    assert "nothing was changed on any host" in report["stderr"]
