"""GPU hosts end to end on sandbox hosts, as far as hosts without an NVIDIA GPU allow.

NVIDIA's toolkit repository is played by an apt repository the tests build and sign with their own key
(``tests/support/nvidia_repo.py``: NVIDIA's four package names, two versions, NVIDIA's relations between them, stand-in
files), served from the sandbox's gateway: the keyring, ``Signed-By``, the stale guide-written list that makes apt
fail with "Conflicting values set for option Signed-By", and the four packages pinned to one version run for real
with apt. The driver, ``nvidia-persistenced`` and the runtimes' use of the GPU need a GPU: they are proven on captured
``nvidia-smi`` output only (``tests/test_nvidia_operations.py``, ``tests/test_preflight.py``). The hosts are left
without the toolkit afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from pyinfra_iluvatar.operations.nvidia import TOOLKIT_KEYRING, TOOLKIT_PACKAGES, TOOLKIT_PIN_FILE, TOOLKIT_SOURCES
from pyinfra_iluvatar.operations.openpgp import key_fingerprint
from pyinfra_iluvatar.tests.support.lab import Lab, changed
from pyinfra_iluvatar.tests.support.nvidia_repo import NvidiaRepo, build_nvidia_repo, serve

pytestmark = pytest.mark.sandbox

OLD, NEW = "1.17.8-1", "1.18.0-1"
STALE_LIST = "/etc/apt/sources.list.d/nvidia-container-toolkit.list"
CLEAN = (
    "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q $(dpkg-query -W -f '${Package} ' "
    + " ".join(TOOLKIT_PACKAGES)
    + f" 2>/dev/null) >/dev/null; rm -f {TOOLKIT_KEYRING} {TOOLKIT_SOURCES} {TOOLKIT_PIN_FILE}"
    " /etc/apt/sources.list.d/nvidia-container-toolkit.list*; apt-get update -q >/dev/null"
)
"""The toolkit taken off a host."""


@pytest.fixture(scope="module")
def repo(lab: Lab) -> Iterator[tuple[NvidiaRepo, str]]:
    """The NVIDIA-shaped repository and the URL it is served at on the gateway; the toolkit removed afterwards."""
    built = build_nvidia_repo()
    with serve(built.root, host=lab.session.sandbox.gateway) as server:
        yield built, server.url
    for host in lab.hosts:
        cleaned = lab.session.ssh(host, CLEAN, timeout=300)
        assert cleaned.returncode == 0, cleaned.stderr


def run(lab: Lab, host: str, **data: Any) -> dict[str, Any]:
    """The GPU deploy's toolkit step (``tests/e2e/deploys/nvidia_toolkit.py``) on ``host``."""
    arguments = [f"--data={key}={json.dumps(value)}" for key, value in data.items()]
    result = lab.session.pyinfra("--json", "--limit", host, *arguments, "tests/e2e/deploys/nvidia_toolkit.py")
    report: dict[str, Any] = json.loads(result.stdout) if result.stdout.strip() else {"results": None}
    report["returncode"], report["stderr"] = result.returncode, result.stderr
    return report


def versions(lab: Lab, host: str) -> dict[str, str]:
    shown = lab.ssh(host, "dpkg-query -W -f '${Package} ${Version}\\n' " + " ".join(TOOLKIT_PACKAGES))
    return dict(line.split() for line in shown.splitlines())


def test_the_toolkit_from_nvidias_repository_pinned_then_upgraded(lab: Lab, repo: tuple[NvidiaRepo, str]) -> None:
    built, url = repo
    host = lab.hosts[0]
    lab.ssh(host, f"cat > {STALE_LIST} <<'EOF'\n{built.list_text(url)}EOF")
    toolkit = {
        "iluvatar_nvidia_repository": f"{url}/libnvidia-container",
        "iluvatar_nvidia_key_fingerprint": built.fingerprint,
        "iluvatar_nvidia_toolkit_version": OLD,
    }
    report = run(lab, host, **toolkit)
    assert report["returncode"] == 0, report["stderr"][-4000:]
    assert key_fingerprint(lab.ssh(host, f"cat {TOOLKIT_KEYRING}")) == built.fingerprint
    sources = lab.ssh(host, f"cat {TOOLKIT_SOURCES}")
    assert f"Signed-By: {TOOLKIT_KEYRING}" in sources and f"URIs: {built.uri(url)}" in sources
    listed = lab.ssh(host, "ls /etc/apt/sources.list.d").split()
    assert "nvidia-container-toolkit.list" not in listed  # the guide's list, whose signed-by conflicts, is set aside
    assert "nvidia-container-toolkit.list.disabled-by-pyinfra-iluvatar" in listed
    assert lab.ssh(host, "apt-get update 2>&1 >/dev/null").strip() == ""  # no Signed-By conflict left
    assert versions(lab, host) == dict.fromkeys(TOOLKIT_PACKAGES, OLD)
    assert f"Pin: version {OLD}" in lab.ssh(host, f"cat {TOOLKIT_PIN_FILE}")
    assert lab.ssh(host, "nvidia-ctk --version").splitlines()[0].endswith("version 1.17.8")

    again = run(lab, host, **toolkit)
    assert again["returncode"] == 0 and changed(again) == {}, again["stderr"][-4000:]

    upgraded = run(lab, host, **{**toolkit, "iluvatar_nvidia_toolkit_version": NEW})
    assert upgraded["returncode"] == 0, upgraded["stderr"][-4000:]
    assert versions(lab, host) == dict.fromkeys(TOOLKIT_PACKAGES, NEW)
    assert f"Pin: version {NEW}" in lab.ssh(host, f"cat {TOOLKIT_PIN_FILE}")


def test_a_key_with_another_fingerprint_changes_nothing(lab: Lab, repo: tuple[NvidiaRepo, str]) -> None:
    _, url = repo
    host = lab.hosts[1]
    report = run(
        lab,
        host,
        iluvatar_nvidia_repository=f"{url}/libnvidia-container",
        iluvatar_nvidia_key_fingerprint="C95B321B61E88C1809C4F759DDCAE044F796ECB0",  # NVIDIA's, not the test key
    )
    assert report["returncode"] != 0
    assert "fingerprint mismatch: expected C95B321B61E88C1809C4F759DDCAE044F796ECB0" in report["stderr"]
    assert lab.ssh(host, f"ls {TOOLKIT_KEYRING} {TOOLKIT_SOURCES} 2>/dev/null; true").strip() == ""
    assert "nvidia-container-toolkit" not in lab.ssh(host, "dpkg-query -W -f '${Package}\\n'").split()
