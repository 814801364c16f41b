"""Operations for a build host, the setup page's "Build Setup": ``cross`` for the build user, ansible in a
virtualenv of its own (never the system Python), and the single-machine development configs.

Each reads the build user's tools (``facts.build.BuildTools``) when it runs, so an earlier operation of the same run
(the distribution's ``cargo`` installed) is seen, and changes nothing when the pinned version is there.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from collections.abc import Generator, Mapping
from io import StringIO
from typing import Any

from pyinfra.api.command import StringCommand
from pyinfra.api.exceptions import OperationValueError
from pyinfra.api.operation import operation
from pyinfra.context import host
from pyinfra.operations import files

from pyinfra_iluvatar.facts.build import BUILD_STAMP, COMMIT, BuildTools, GitCheckout, ref_commit
from pyinfra_iluvatar.operations._failure import fail_host
from pyinfra_iluvatar.operations.worker_config import deep_merge

RUSTUP_INIT_DIR = "/usr/local/lib/pyinfra-iluvatar/rustup"
"""Where the locked ``rustup-init`` is installed (root's, executable by every user)."""
RUST_TOOLCHAIN = "stable"
ANSIBLE_VENV = "/opt/iluvatar-ansible"
ANSIBLE_LINKS = ("ansible", "ansible-playbook", "ansible-galaxy")
"""The virtualenv's programs linked into ``/usr/local/bin``, so the build user runs them without activating it."""
CROSS_VERSION = "0.2.5"
ANSIBLE_VERSION = "10.7.0"
SOURCE_DIR = "src/Ilúvatar"
"""Where Ilúvatar's Rust workspace and its Makefile are, relative to the checkout."""
TARGET_PLATFORMS = ("x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu")
"""The ``TARGET_PLAT`` values Ilúvatar's Makefile names (aarch64: Jetsons)."""
PROFILES = {"release": "release", "debug": "debug", "relwdebug": "relwdebug", "spans": "spans", "spansd": "spansd"}
"""Make target -> the cargo profile directory its binaries land in (``target/<platform>/<profile>/``)."""
GIT_REF = re.compile(r"(?!.*\.\.)(?!.*@\{)(?!.*//)[A-Za-z0-9][A-Za-z0-9._/-]{0,199}(?<![./])(?<!\.lock)")
"""A branch, tag or commit name git accepts (no ``..``, ``@{``, ``//``; not ending in ``.``, ``/`` or ``.lock``)."""
MAKE_TARGET = re.compile(r"[a-z][a-z0-9_-]{0,63}")
WORKER_DEV_CONFIG = "src/Ilúvatar/iluvatar_worker/src/worker.dev.json"
CONTROLLER_DEV_CONFIG = "src/Ilúvatar/iluvatar_controller/src/controller.dev.json"
"""Where Ilúvatar's checkout keeps the development configs its ``.gitignore`` leaves out, relative to it."""

# The shape and defaults of Ilúvatar's controller configuration (its `controller.json`, 2025-09), with influx off
# and no token: a development controller on one machine.
CONTROLLER_TEMPLATE: dict[str, Any] = {
    "name": "controller",
    "address": "127.0.0.1",
    "port": 8078,
    "timeout_sec": 6000,
    "logging": {
        "level": "info",
        "directory": "/tmp/iluvatar/logs",
        "basename": "controller",
        "spanning": "NEW+CLOSE",
        "flame": "",
        "span_energy_monitoring": False,
    },
    "load_balancer": {"algorithm": {"type": "LeastLoaded", "load_metric": "LoadAvg", "thread_sleep_ms": 1000}},
    "influx": {"host": "http://localhost:8086", "org": "ilu", "token": "", "enabled": False, "update_freq_ms": 1000},
}

_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_VERSION = re.compile(r"[0-9][0-9A-Za-z.+-]{0,63}")
TOOLCHAIN = re.compile(r"(stable|beta|nightly|[0-9]+\.[0-9]+(\.[0-9]+)?)(-[0-9]{4}-[0-9]{2}-[0-9]{2})?")
"""A rustup toolchain name without its host triple: a channel or a version, with an optional archive date."""


def _check_user(user: str, home: str) -> None:
    if not isinstance(user, str) or not _USER.fullmatch(user):
        raise OperationValueError(f"user must be a user name, got {user!r}")
    if not isinstance(home, str) or not home.startswith("/"):
        raise OperationValueError(f"home must be an absolute path, got {home!r}")


def _check_version(what: str, version: str) -> None:
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise OperationValueError(f"{what} must be a version such as 1.2.3, got {version!r}")


def as_user(user: str, home: str, command: str) -> str:
    """The shell ``command`` run by ``user`` in a login-like environment (its home as the working directory and
    ``HOME``, ``~/.cargo/bin`` first on ``PATH``)."""
    environment = f"HOME={shlex.quote(home)} PATH={shlex.quote(home + '/.cargo/bin')}:/usr/local/bin:/usr/bin:/bin"
    run = f"env {environment} sh -c {shlex.quote(command)}"
    if user == "root":
        return f"cd {shlex.quote(home)} && {run}"
    return f"cd {shlex.quote(home)} && runuser -u {shlex.quote(user)} -- {run}"


def rustup_environment(mirror: str | None) -> str:
    """``env`` settings that make rustup download from ``<mirror>/static.rust-lang.org`` (nothing without one)."""
    if not mirror:
        return ""
    dist = f"{mirror}/static.rust-lang.org"
    return f"RUSTUP_DIST_SERVER={shlex.quote(dist)} RUSTUP_UPDATE_ROOT={shlex.quote(dist + '/rustup')} "


@operation()
def rust_toolchain(
    user: str,
    home: str,
    toolchain: str = RUST_TOOLCHAIN,
    rustup_init: str = f"{RUSTUP_INIT_DIR}/rustup-init",
    mirror: str | None = None,
    venv: str = ANSIBLE_VENV,
) -> Generator[Any, None, None]:
    """
    Give ``user`` rustup and ``toolchain`` as its default, the way the Rust install page does, as that user:
    without rustup, ``rustup-init -y --profile minimal --default-toolchain TOOLCHAIN`` (the verified ``rustup-init``
    the deploy installed from the lock; it adds ``~/.cargo/bin`` to the user's shell profile); with rustup but
    without the toolchain, ``rustup toolchain install``; with it but another default, ``rustup default``. Changes
    nothing when the toolchain is installed and the default.

    + user: the build user; home: its home directory
    + toolchain: ``stable``, ``beta``, ``nightly`` or a version (``1.85.0``), with an optional date
    + rustup_init: the ``rustup-init`` to run
    + mirror: downloads from ``<mirror>/static.rust-lang.org`` (``RUSTUP_DIST_SERVER``) instead of upstream
    + venv: the ansible virtualenv (read in the same round trip, see ``facts.build.BuildTools``)

    **Example:**

    .. code:: python

        build.rust_toolchain(name="Rust for builder", user="builder", home="/home/builder", toolchain="1.85.0")
    """
    _check_user(user, home)
    if not isinstance(toolchain, str) or not TOOLCHAIN.fullmatch(toolchain):
        raise OperationValueError(
            f"toolchain must be stable, beta, nightly or a version such as 1.85.0, got {toolchain!r}"
        )
    tools = host.get_fact(BuildTools, user=user, venv=venv)
    environment = rustup_environment(mirror)
    matching = [found for found in tools["toolchains"] if found["name"].startswith(f"{toolchain}-")]
    if tools["rustup"] is None:
        command = f"{shlex.quote(rustup_init)} -y --profile minimal --default-toolchain {toolchain}"
    elif not matching:
        command = f"rustup toolchain install --profile minimal {toolchain} && rustup default {toolchain}"
    elif not any(found["default"] for found in matching):
        command = f"rustup default {toolchain}"
    else:
        host.noop(f"{user}'s default Rust toolchain is {matching[0]['name']}")
        return
    yield StringCommand(as_user(user, home, f"{environment}{command}"))


@operation()
def cross(user: str, home: str, venv: str = ANSIBLE_VENV, version: str = CROSS_VERSION) -> Generator[Any, None, None]:
    """
    Install ``cross`` at ``version`` for ``user`` (``cargo install --locked cross --version VERSION``, as that user,
    into ``~/.cargo/bin``) unless the user's ``cross`` already reports it. The user's ``cargo`` (rustup's, or the
    distribution's) builds it; without one the host fails (this host, not the others).

    + user: the build user; home: its home directory
    + venv: the ansible virtualenv (read in the same round trip, see ``facts.build.BuildTools``)
    + version: the ``cross`` release on crates.io

    **Example:**

    .. code:: python

        build.cross(name="cross for builder", user="builder", home="/home/builder", version="0.2.5")
    """
    _check_user(user, home)
    _check_version("version", version)
    tools = host.get_fact(BuildTools, user=user, venv=venv)
    installed = tools["cross"]
    if installed and installed["version"] == version:
        host.noop(f"cross {version} is installed for {user} ({installed['path']})")
        return
    if tools["cargo"] is None:
        yield fail_host(f"cannot build cross {version} for {user}: there is no cargo on its PATH")
        return
    yield StringCommand(as_user(user, home, f"cargo install --locked --quiet cross --version {shlex.quote(version)}"))


@operation()
def ansible(version: str = ANSIBLE_VERSION, venv: str = ANSIBLE_VENV, user: str = "root") -> Generator[Any, None, None]:
    """
    Install ansible ``version`` (the ``ansible`` distribution from the package index) in the virtualenv ``venv``,
    created with ``python3 -m venv`` when missing, never into the system Python; link its ``ansible``,
    ``ansible-playbook`` and ``ansible-galaxy`` into ``/usr/local/bin``. Changes nothing when the virtualenv has
    that version.

    + version: the ``ansible`` release (``10.7.0``)
    + venv: the virtualenv's path (root's; readable by every user)
    + user: the build user (its tools are read in the same round trip, see ``facts.build.BuildTools``)

    **Example:**

    .. code:: python

        build.ansible(name="ansible 10.7.0", version="10.7.0", venv="/opt/iluvatar-ansible")
    """
    _check_version("version", version)
    if not isinstance(venv, str) or not venv.startswith("/"):
        raise OperationValueError(f"venv must be an absolute path, got {venv!r}")
    tools = host.get_fact(BuildTools, user=user, venv=venv)
    installed = tools["ansible"] == version
    if not installed:
        quoted = shlex.quote(venv)
        yield StringCommand(
            f"test -x {quoted}/bin/python || python3 -m venv {quoted};"
            f" {quoted}/bin/pip install --quiet --disable-pip-version-check ansible=={shlex.quote(version)}"
        )
    for program in ANSIBLE_LINKS:
        yield from files.link._inner(path=f"/usr/local/bin/{program}", target=f"{venv}/bin/{program}")
    if installed:  # said last: the links' own messages would hide it
        host.noop(f"ansible {version} is installed in {venv} (ansible-core {tools['ansible_core']})")


def render_controller(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A development controller's config: :data:`CONTROLLER_TEMPLATE` with ``overrides`` merged in."""
    return deep_merge(copy.deepcopy(CONTROLLER_TEMPLATE), overrides or {})


@operation()
def dev_config(config: dict[str, Any], path: str, user: str = "root") -> Generator[Any, None, None]:
    """
    Write a development config (``worker.dev.json``, ``controller.dev.json``) as indented JSON, owned by ``user``,
    mode 0600, only when its content changes. Its directory must exist (it is in Ilúvatar's checkout).

    + config: the whole configuration; path: where it goes; user: its owner (the build user)

    **Example:**

    .. code:: python

        build.dev_config(name="controller.dev.json", config=build.render_controller(),
                         path="/home/builder/iluvatar-faas/" + build.CONTROLLER_DEV_CONFIG, user="builder")
    """
    _check_user(user, "/")
    content = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
    yield from files.put._inner(src=StringIO(content), dest=path, user=user, mode="600")


def _check_checkout(path: str, ref: str) -> None:
    if not isinstance(path, str) or not path.startswith("/"):
        raise OperationValueError(f"path must be an absolute path, got {path!r}")
    if not isinstance(ref, str) or not GIT_REF.fullmatch(ref):
        raise OperationValueError(f"ref must be a branch, tag or commit name, got {ref!r}")


@operation()
def checkout(repository: str, ref: str, path: str, user: str, home: str) -> Generator[Any, None, None]:
    """
    Keep a checkout of ``repository`` at ``ref`` in ``path``, owned by ``user`` (git runs as that user): cloned when
    ``path`` is missing or empty; fetched and checked out (detached) when ``ref`` now names another commit upstream
    (``git ls-remote``, see ``facts.build.GitCheckout``); left alone when it is there. Never destructive: a ``path``
    that holds something else, a checkout of another repository, or local changes that the checkout would overwrite
    fail this host, saying which.

    + repository: the repository's URL; ref: a branch, tag or commit; path: the checkout (absolute)
    + user, home: who owns it, and that user's home (git's ``HOME``)

    **Example:**

    .. code:: python

        build.checkout(name="Ilúvatar at master", repository="https://github.com/COS-IN/iluvatar-faas.git",
                       ref="master", path="/home/builder/iluvatar-faas", user="builder", home="/home/builder")
    """
    _check_user(user, home)
    _check_checkout(path, ref)
    found = host.get_fact(GitCheckout, path=path, ref=ref)
    where = shlex.quote(path)
    if COMMIT.fullmatch(ref):  # every branch is fetched; a commit cannot be asked for by name over every protocol
        update = f"git fetch --quiet origin && git checkout --quiet --detach {ref}"
    else:
        update = f"git fetch --quiet origin {shlex.quote(ref)} && git checkout --quiet --detach FETCH_HEAD"
    if found["head"] is None:
        if found["exists"] and not found["empty"]:
            yield fail_host(f"{path} exists and is not a git checkout: move it away or name another path")
            return
        # root makes the (empty) directory the user's; the user clones into it, whoever owns its parent
        clone = f"git clone --quiet --no-checkout {shlex.quote(repository)} {where} && cd {where} && {update}"
        yield StringCommand(f"install -d -o {shlex.quote(user)} {where} && {as_user(user, home, clone)}")
        return
    if found["origin"] != repository:
        yield fail_host(f"{path} is a checkout of {found['origin']}, not {repository}: left as it is")
        return
    wanted = ref_commit(ref, found["remote"])
    if wanted is None:
        yield fail_host(f"{repository} has no branch, tag or commit {ref!r}")
        return
    if wanted == found["head"]:
        host.noop(f"{path} is at {ref} ({wanted[:12]})")
        return
    yield StringCommand(as_user(user, home, f"cd {where} && {update}"))


@operation()
def make(path: str, user: str, home: str, target: str, platform: str, ref: str) -> Generator[Any, None, None]:
    """
    Build Ilúvatar in the checkout ``path`` with ``make TARGET_PLAT=<platform> <target>`` in ``src/Ilúvatar``, as
    ``user``, unless this package already built that target for that platform from the commit checked out there
    (its stamp in ``.git/``); then stamp it. The binaries land in ``src/Ilúvatar/target/<platform>/<profile>/``.
    A failing build fails this host with make's output, and leaves the stamp as it was (the next run tries again).

    + path: the checkout; user, home: who builds (its ``cross`` and engine)
    + target: the Makefile's target (``release``, ``debug``, …); platform: ``TARGET_PLAT``
    + ref: the ref the checkout follows (read in the same round trip as the checkout's state)

    **Example:**

    .. code:: python

        build.make(name="make release", path="/home/builder/iluvatar-faas", user="builder", home="/home/builder",
                   target="release", platform="x86_64-unknown-linux-gnu", ref="master")
    """
    _check_user(user, home)
    _check_checkout(path, ref)
    if not isinstance(target, str) or not MAKE_TARGET.fullmatch(target):
        raise OperationValueError(f"target must be a make target such as release, got {target!r}")
    if platform not in TARGET_PLATFORMS:
        raise OperationValueError(f"platform must be one of {', '.join(TARGET_PLATFORMS)}, got {platform!r}")
    found = host.get_fact(GitCheckout, path=path, ref=ref)
    if found["head"] is None:
        yield fail_host(f"{path} is not a git checkout: nothing to build")
        return
    stamp = f"{found['head']} {target} {platform}"
    landed = f"{path}/{SOURCE_DIR}/target/{platform}/{PROFILES.get(target, target)}/"
    if found["built"] == stamp:
        host.noop(f"{target} for {platform} is built from {found['head'][:12]}: binaries in {landed}")
        return
    source = shlex.quote(f"{path}/{SOURCE_DIR}")
    record = f"printf '%s\\n' {shlex.quote(stamp)} > {shlex.quote(f'{path}/{BUILD_STAMP}')}"
    yield StringCommand(
        as_user(user, home, f"cd {source} && make TARGET_PLAT={platform} {shlex.quote(target)} && {record}")
    )
