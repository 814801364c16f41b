"""
A host that builds Ilúvatar and drives its clusters, the setup page's "Build Setup": the build packages (a C
toolchain, ``pkg-config``, ``libssl-dev``, ``protobuf-compiler``, ``make``, ``git``), a container engine for
``cross`` (Docker, with the build user in the ``docker`` group, or Podman), Rust (rustup, verified through the lock,
or the distribution's) and ``cross`` for the build user, ansible in its own virtualenv, and — with
``iluvatar_build_checkout`` — Ilúvatar cloned there at a ref and built (``iluvatar_build_repository``,
``iluvatar_build_target``), and ``worker.dev.json`` and ``controller.dev.json`` for a single-machine setup in that
checkout.

Use it as ``pyinfra inventories/lab.py deploys/build.py``, ``pyinfra @local deploys/build.py`` on your own
workstation (``--dry`` shows what would change), or ``from pyinfra_iluvatar.deploys.build import build_host``.
"""

from __future__ import annotations

import dataclasses

from pyinfra.api.deploy import deploy
from pyinfra.context import host

from pyinfra_iluvatar import data, preflight
from pyinfra_iluvatar.deploys import run_as_deploy_file
from pyinfra_iluvatar.deploys.docker import docker_engine
from pyinfra_iluvatar.operations import build, docker, packages, release
from pyinfra_iluvatar.operations.worker_config import render

BUILD_PACKAGES = [
    "build-essential",
    "pkg-config",
    "libssl-dev",
    "protobuf-compiler",
    "make",
    "git",
    "curl",
    "ca-certificates",
    "python3-venv",
]
"""The page's build dependencies (its commented-out list, which ``cross``'s images make optional but a native
``make`` needs), and what rustup and the virtualenv need."""
DISTRIBUTION_RUST = ["rustc", "cargo"]
PODMAN_PACKAGES = ["podman", "uidmap", "slirp4netns", "fuse-overlayfs"]
"""Podman and what it needs to run rootless containers for a build user."""


def dev_configs(settings: preflight.HostPlan) -> None:
    """``worker.dev.json`` and ``controller.dev.json`` in ``iluvatar_build_checkout``, owned by the build user."""
    checkout = settings.get(data.BUILD_CHECKOUT)
    assert settings.resources is not None and checkout is not None
    user = settings.get(data.BUILD_USER)
    worker = preflight.worker_settings(host, settings.values)
    local = dataclasses.replace(
        worker, name="worker-dev", address="127.0.0.1", load_balancer_url="http://127.0.0.1:8078"
    )
    build.dev_config(
        name="worker.dev.json",
        config=render(local, settings.resources),
        path=f"{checkout}/{build.WORKER_DEV_CONFIG}",
        user=user,
    )
    build.dev_config(
        name="controller.dev.json",
        config=build.render_controller(),
        path=f"{checkout}/{build.CONTROLLER_DEV_CONFIG}",
        user=user,
    )


@deploy("Ilúvatar build host")
def build_host() -> None:
    """Bring this host to an Ilúvatar build host; reads the build keys of the README table (and Docker's)."""
    settings = preflight.plan("build")
    assert settings.build_home is not None  # pre-flight found the build user
    user, home = settings.get(data.BUILD_USER), settings.build_home
    engine = settings.get(data.BUILD_ENGINE)
    rustup = settings.get(data.RUST_SOURCE) == "rustup"
    extra = (PODMAN_PACKAGES if engine == "podman" else []) + ([] if rustup else DISTRIBUTION_RUST)
    packages.apt_installed(name="Build packages", packages=BUILD_PACKAGES + extra)
    if engine == "docker":
        docker_engine(settings=settings)
        if user != "root":
            docker.group_members(name="Build user in the docker group", users=[user])
    venv = settings.get(data.ANSIBLE_VENV)
    if rustup:
        locked = settings.locked("rustup")
        release.install(
            name=f"rustup-init {locked.version}",
            component="rustup",
            version=locked.version,
            artifact=settings.artifact("rustup"),
            destination=build.RUSTUP_INIT_DIR,
            layout="binary",
            binary_name="rustup-init",
            download=settings.get(data.DOWNLOAD),
            mirror=settings.get(data.MIRROR),
            cache_dir=settings.get(data.DOWNLOAD_CACHE),
        )
        toolchain = settings.get(data.RUST_TOOLCHAIN)
        build.rust_toolchain(
            name=f"Rust {toolchain} for {user}",
            user=user,
            home=home,
            toolchain=toolchain,
            rustup_init=f"{build.RUSTUP_INIT_DIR}/rustup-init",
            mirror=settings.get(data.MIRROR),
            venv=venv,
        )
    if version := settings.get(data.CROSS_VERSION):
        build.cross(name=f"cross {version} for {user}", user=user, home=home, venv=venv, version=version)
    if version := settings.get(data.ANSIBLE_VERSION):
        build.ansible(name=f"ansible {version} in {venv}", version=version, venv=venv, user=user)
    checkout = settings.get(data.BUILD_CHECKOUT)
    ref = settings.get(data.BUILD_REF)
    if checkout and (repository := settings.get(data.BUILD_REPOSITORY)):
        build.checkout(
            name=f"Ilúvatar at {ref} in {checkout}", repository=repository, ref=ref, path=checkout, user=user, home=home
        )
    if checkout:
        dev_configs(settings)
    if checkout and (target := settings.get(data.BUILD_TARGET)):
        platform = settings.get(data.BUILD_PLATFORM)
        build.make(
            name=f"make {target} for {platform}",
            path=checkout,
            user=user,
            home=home,
            target=target,
            platform=platform,
            ref=ref,
        )


# `pyinfra INVENTORY deploys/build.py` executes this file without a module name: run the deploy then.
if "__name__" not in globals():
    run_as_deploy_file(__file__, "pyinfra_iluvatar.deploys.build", build_host)
