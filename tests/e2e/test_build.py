"""The build host end to end on a sandbox host, for what can run here.

Podman, the build packages and ansible (from the package index, through the sandbox's proxy, into its own
virtualenv) are installed for real for a build user who is not root, the development configs written into a
checkout, and a second run changes nothing; once with the distribution's Rust, once with rustup: ``rustup-init``
locked from a dist server shaped like static.rust-lang.org, served from the gateway, verified and installed, then run
as the build user. That ``rustup-init`` is a stand-in (:data:`RUSTUP_INIT`): the real one downloads a toolchain from
static.rust-lang.org, which the sandbox cannot reach. Not run here: ``cross`` (built from crates.io, which the
sandbox's proxy does not reach; its operation is covered by fixtures) and Docker as the engine (its deploy has its own
end-to-end tests).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyinfra_iluvatar.operations.build import CONTROLLER_DEV_CONFIG, RUSTUP_INIT_DIR, WORKER_DEV_CONFIG
from pyinfra_iluvatar.releases import lockfile
from pyinfra_iluvatar.releases.components import RUSTUP
from pyinfra_iluvatar.tests.support.docker_repo import serve
from pyinfra_iluvatar.tests.support.lab import Lab, changed

pytestmark = pytest.mark.sandbox

USER, HOME = "builder", "/home/builder"
CHECKOUT = f"{HOME}/iluvatar-faas"
VENV = "/opt/iluvatar-ansible"
ANSIBLE = "10.7.0"
CLEAN = (
    f"rm -rf {VENV} /usr/local/bin/ansible /usr/local/bin/ansible-playbook /usr/local/bin/ansible-galaxy"
    f" {RUSTUP_INIT_DIR} /var/lib/pyinfra-iluvatar/releases/rustup*; pkill -KILL -u {USER} 2>/dev/null; sleep 1;"
    f" userdel -r {USER} 2>/dev/null; true"
)
RUSTUP_VERSION = "1.28.2"
RUSTUP_INIT = """#!/bin/sh
# A stand-in for rustup-init (pyinfra-iluvatar tests): installs ~/.cargo/bin/{rustup,rustc,cargo} stand-ins and
# records the default toolchain, as `rustup-init -y --profile minimal --default-toolchain X` would.
set -eu
toolchain=stable
while [ $# -gt 0 ]; do
  case "$1" in --default-toolchain) toolchain=$2; shift 2 ;; *) shift ;; esac
done
mkdir -p "$HOME/.cargo/bin" "$HOME/.rustup/toolchains/$toolchain-x86_64-unknown-linux-gnu"
echo "$toolchain-x86_64-unknown-linux-gnu" > "$HOME/.rustup/default"
cat > "$HOME/.cargo/bin/rustup" <<'STANDIN'
#!/bin/sh
case "$1" in
  --version) echo "rustup 1.28.2 (test stand-in)" ;;
  default) mkdir -p "$HOME/.rustup/toolchains/$2-x86_64-unknown-linux-gnu"
      echo "$2-x86_64-unknown-linux-gnu" > "$HOME/.rustup/default" ;;
  toolchain)
    if [ "$2" = install ]; then mkdir -p "$HOME/.rustup/toolchains/$5-x86_64-unknown-linux-gnu"; exit 0; fi
    for t in $(ls "$HOME/.rustup/toolchains"); do
      if [ "$t" = "$(cat "$HOME/.rustup/default")" ]; then echo "$t (default)"; else echo "$t"; fi; done ;;
esac
STANDIN
printf '#!/bin/sh\necho "rustc 1.85.0 (test stand-in)"\n' > "$HOME/.cargo/bin/rustc"
printf '#!/bin/sh\necho "cargo 1.85.0 (test stand-in)"\n' > "$HOME/.cargo/bin/cargo"
chmod +x "$HOME/.cargo/bin/rustup" "$HOME/.cargo/bin/rustc" "$HOME/.cargo/bin/cargo"
"""
"""What the stand-in ``rustup-init`` does for a user: what the real one would leave, minus a real toolchain; its
``rustup`` answers ``--version``, ``toolchain list``, ``toolchain install --profile minimal X`` and ``default X``."""


@pytest.fixture(scope="module")
def rustup_lock(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A lock file with rustup-init for amd64, served from the gateway the way rustup's dist server lays it out."""
    root = tmp_path_factory.mktemp("rustup-dist")
    path = RUSTUP.download_path(RUSTUP_VERSION, "amd64")
    (root / path.lstrip("/")).parent.mkdir(parents=True)
    (root / path.lstrip("/")).write_text(RUSTUP_INIT)
    sha256 = hashlib.sha256(RUSTUP_INIT.encode()).hexdigest()
    mirror_path = RUSTUP.published(RUSTUP_VERSION, "amd64").mirror_path
    with serve(root, host=lab.session.sandbox.gateway) as server:
        artifact = lockfile.Artifact("rustup-init", server.url + path, sha256, mirror_path)
        locked = lockfile.LockedComponent("rustup", RUSTUP_VERSION, RUSTUP_VERSION, "latest", {"amd64": artifact})
        lock_file = root / "iluvatar.lock.json"
        lockfile.dump(lockfile.Lock({"rustup": locked}), lock_file)
        yield lock_file


def settings_for(**data: Any) -> dict[str, Any]:
    """The build host's data in these tests (Podman, no cross, a checkout for the dev configs), ``data`` over it."""
    return {
        "iluvatar_rust_source": "distribution",
        "iluvatar_build_user": USER,
        "iluvatar_build_engine": "podman",
        "iluvatar_cross_version": "",
        "iluvatar_ansible_version": ANSIBLE,
        "iluvatar_build_checkout": CHECKOUT,
        "iluvatar_hardware_interface": "host0",
        **data,
    }


def run(lab: Lab, host: str, **data: Any) -> dict[str, Any]:
    arguments = [f"--data={key}={json.dumps(value)}" for key, value in settings_for(**data).items()]
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

        data = [f"--data={key}={json.dumps(value)}" for key, value in settings_for(iluvatar_role="build").items()]
        argv = [str(Path(sys.executable).parent / "pyinfra-iluvatar"), "check", str(lab.session.inventory)]
        checked = subprocess.run(
            [*argv, "--json", "--limit", host, *data], capture_output=True, text=True, env=lab.session.env, timeout=300
        )
        rows = json.loads(checked.stdout)["hosts"][host]["requirements"]
        assert checked.returncode == 0, {name: row["detail"] for name, row in rows.items() if not row["ok"]}
        assert set(rows) == {"build-packages", "rust", "engine", "ansible"}
        assert rows["engine"]["detail"].startswith(f"podman 4.3.1 answers for {USER}"), rows
    finally:
        lab.session.ssh(host, CLEAN)


def test_a_build_user_that_does_not_exist_stops_the_run(lab: Lab) -> None:
    report = run(lab, lab.hosts[1], iluvatar_build_user="nobody-here")
    assert report["returncode"] != 0
    assert "iluvatar_build_user = 'nobody-here' (--data) is not a user on this host" in report["stderr"]
    assert "nothing was changed on any host" in report["stderr"]


def test_rust_from_the_locked_rustup_init_for_the_build_user(lab: Lab, rustup_lock: Path) -> None:
    host = lab.hosts[2]
    rust = {
        "iluvatar_rust_source": "rustup",
        "iluvatar_rust_toolchain": "1.85.0",
        "iluvatar_lock_file": str(rustup_lock),
        "iluvatar_ansible_version": "",
        "iluvatar_build_checkout": "",
    }
    try:
        lab.ssh(host, f"useradd -m {USER}")
        report = run(lab, host, **rust)
        assert report["returncode"] == 0, report["stderr"][-4000:]
        installed = lab.ssh(host, f"sha256sum {RUSTUP_INIT_DIR}/rustup-init").split()[0]
        assert installed == hashlib.sha256(RUSTUP_INIT.encode()).hexdigest()
        listed = lab.ssh(host, f"runuser -u {USER} -- env HOME={HOME} {HOME}/.cargo/bin/rustup toolchain list")
        assert listed.strip() == "1.85.0-x86_64-unknown-linux-gnu (default)"
        assert lab.ssh(host, f"stat -c %U {HOME}/.cargo/bin/rustc").strip() == USER  # run as the user, not root
        assert "rustc" not in lab.ssh(host, "dpkg-query -W -f '${Package}\\n'").split()  # not the distribution's

        again = run(lab, host, **rust)
        assert again["returncode"] == 0 and changed(again) == {}, again["stderr"][-4000:]
        other = run(lab, host, **{**rust, "iluvatar_rust_toolchain": "stable"})
        assert other["returncode"] == 0, other["stderr"][-4000:]
        listed = lab.ssh(host, f"runuser -u {USER} -- env HOME={HOME} {HOME}/.cargo/bin/rustup toolchain list")
        assert "stable-x86_64-unknown-linux-gnu (default)" in listed
    finally:
        lab.session.ssh(host, CLEAN)


def git(folder: Path, *arguments: str) -> str:
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@lab.example", "-C", str(folder), *arguments]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def iluvatar_repo(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """
    A repository shaped like Ilúvatar's where the tests need it (``src/Ilúvatar`` with a Makefile whose ``release``
    target honours ``TARGET_PLAT``, the dev configs' directories), two commits (tag ``v1`` on the first, ``master``
    on the second), served over git's dumb HTTP protocol from the gateway: its URL and the commits by name.
    """
    work = tmp_path_factory.mktemp("iluvatar-src")
    source = work / "src" / "Ilúvatar"
    for folder in ("iluvatar_worker/src", "iluvatar_controller/src"):
        (source / folder).mkdir(parents=True)
        (source / folder / ".gitkeep").write_text("")
    (source / ".gitignore").write_text(  # Ilúvatar's own lines for these
        "iluvatar_worker/src/worker.dev*json\niluvatar_controller/src/controller.dev*json\ntarget/\n"
    )
    (source / "Makefile").write_text(
        "TARGET_PLAT?=x86_64-unknown-linux-gnu\n"
        "release:\n\tmkdir -p target/$(TARGET_PLAT)/release\n"
        "\tcp VERSION target/$(TARGET_PLAT)/release/iluvatar_worker\n"
    )
    git(work, "init", "-q", "-b", "master")
    commits = {}
    for name in ("one", "two"):
        (source / "VERSION").write_text(f"{name}\n")
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", name)
        commits[name] = git(work, "rev-parse", "HEAD")
        if name == "one":
            git(work, "tag", "-a", "v1", "-m", "v1")
    served = tmp_path_factory.mktemp("iluvatar-served")
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(served / "iluvatar-faas.git")], check=True)
    git(served / "iluvatar-faas.git", "update-server-info")
    with serve(served, host=lab.session.sandbox.gateway) as server:
        yield f"{server.url}/iluvatar-faas.git", commits


def test_iluvatar_cloned_at_a_ref_and_built_once_per_commit(
    lab: Lab, iluvatar_repo: tuple[str, dict[str, str]]
) -> None:
    url, commits = iluvatar_repo
    host = lab.hosts[0]
    built = f"{CHECKOUT}/src/Ilúvatar/target/x86_64-unknown-linux-gnu/release/iluvatar_worker"
    clone = {
        "iluvatar_ansible_version": "",
        "iluvatar_build_repository": url,
        "iluvatar_build_ref": "v1",
        "iluvatar_build_target": "release",
    }
    try:
        lab.ssh(host, f"useradd -m {USER}")
        report = run(lab, host, **clone)
        assert report["returncode"] == 0, report["stderr"][-4000:]
        assert lab.ssh(host, f"git -C {CHECKOUT} -c safe.directory='*' rev-parse HEAD").strip() == commits["one"]
        assert lab.ssh(host, f"cat '{built}'").strip() == "one"
        assert lab.ssh(host, f"stat -c %U '{built}' '{CHECKOUT}/{WORKER_DEV_CONFIG}'").split() == [USER, USER]
        assert lab.ssh(host, f"git -C {CHECKOUT} -c safe.directory='*' status --porcelain").strip() == ""

        again = run(lab, host, **clone)
        assert again["returncode"] == 0 and changed(again) == {}, again["stderr"][-4000:]

        moved = run(lab, host, **{**clone, "iluvatar_build_ref": "master"})
        assert moved["returncode"] == 0, moved["stderr"][-4000:]
        assert set(changed(moved)) == {
            "Ilúvatar at master in /home/builder/iluvatar-faas",
            "make release for x86_64-unknown-linux-gnu",
        }
        assert lab.ssh(host, f"cat '{built}'").strip() == "two"
        still = run(lab, host, **{**clone, "iluvatar_build_ref": "master"})
        assert still["returncode"] == 0 and changed(still) == {}, still["stderr"][-4000:]
    finally:
        lab.session.ssh(host, CLEAN)


def test_a_checkout_path_holding_something_else_is_left_alone(
    lab: Lab, iluvatar_repo: tuple[str, dict[str, str]]
) -> None:
    url, _ = iluvatar_repo
    host = lab.hosts[0]
    try:
        lab.ssh(host, f"useradd -m {USER} && mkdir -p {CHECKOUT} && echo mine > {CHECKOUT}/notes.txt")
        report = run(lab, host, iluvatar_ansible_version="", iluvatar_build_repository=url)
        assert report["returncode"] != 0
        assert f"{CHECKOUT} exists and is not a git checkout" in report["stderr"]
        assert lab.ssh(host, f"cat {CHECKOUT}/notes.txt").strip() == "mine"
    finally:
        lab.session.ssh(host, CLEAN)
