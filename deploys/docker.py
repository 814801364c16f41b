"""
Docker isolation, as the setup page's "Docker" step ("follow the Docker installation guide") does it, done safely:
Docker's apt repository the guide's way (``iluvatar_docker_source: docker``) or the distribution's ``docker.io``,
``/etc/docker/daemon.json`` merged key by key, the service's own file limit, users in the ``docker`` group, and a
wait until the daemon answers with the expected drivers. Run it alone with ``pyinfra INVENTORY deploys/docker.py``.

One containerd by construction: Docker's packages bring theirs (``containerd.io``, or the distribution's
``containerd`` with ``docker.io``), which also serves the worker's containerd isolation when both are chosen; a
containerd release build of this package is removed first (``containerd.release_build_absent``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from io import StringIO
from typing import Any

from pyinfra.api.deploy import deploy
from pyinfra.context import host
from pyinfra.facts.deb import DebArch
from pyinfra.facts.files import File, FileContents, FindInFile
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from pyinfra_iluvatar import data, preflight, snapshot
from pyinfra_iluvatar.deploys import changing, run_as_deploy_file
from pyinfra_iluvatar.facts.apt_repos import AptRepository
from pyinfra_iluvatar.facts.combined import Probe
from pyinfra_iluvatar.facts.docker import UserGroups
from pyinfra_iluvatar.facts.nvidia import DockerImage
from pyinfra_iluvatar.facts.packages import DebPackageVersions
from pyinfra_iluvatar.facts.release import InstalledRelease
from pyinfra_iluvatar.operations import containerd, docker, limits, nvidia, packages
from pyinfra_iluvatar.urls import http_url

SERVICE = "docker.service"
PIN_FILE = "/etc/apt/preferences.d/pyinfra-iluvatar-docker"
"""Keeps ``apt upgrade`` from moving a pinned ``docker-ce`` (``iluvatar_docker_version``)."""


def docker_packages(source: str, version: str | None) -> list[str]:
    """What to install: the guide's four packages (``docker-ce``/``-cli`` at ``version`` when pinned) or docker.io."""
    if source == "distribution":
        return ["docker.io"]
    pin = f"={version}" if version else ""
    return [f"docker-ce{pin}", f"docker-ce-cli{pin}", "containerd.io", "docker-buildx-plugin"]


def expected_drivers(settings: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The cgroup and storage drivers ``daemon.json`` asks for (``None``: whatever dockerd picks)."""
    cgroup = next(
        (
            option.split("=", 1)[1]
            for option in settings.get("exec-opts", [])
            if isinstance(option, str) and option.startswith("native.cgroupdriver=")
        ),
        None,
    )
    storage = settings.get("storage-driver")
    return cgroup, storage if isinstance(storage, str) else None


def reads(settings: preflight.HostPlan) -> list[Probe]:
    """What this deploy and its operations read on a converged host (:mod:`pyinfra_iluvatar.snapshot`)."""
    found = [
        snapshot.probe(FileContents, path=docker.DAEMON_JSON),
        *snapshot.put_reads(limits.unit_drop_in(SERVICE)),
        snapshot.probe(InstalledRelease, component="containerd", verify=False),
        snapshot.probe(FindInFile, path=containerd.UNIT_PATH, pattern=f"^{containerd.MANAGED_HEADER}"),
    ]
    source = settings.get(data.DOCKER_SOURCE)
    names = packages.package_names(docker_packages(source, settings.get(data.DOCKER_VERSION)))
    if source == "docker":
        names += docker.GUIDE_CONFLICTS
    found.append(snapshot.probe(DebPackageVersions, packages=names))
    if source == "docker":
        found += [snapshot.probe(LinuxDistribution), snapshot.probe(DebArch)]
        base = http_url(settings.get(data.DOCKER_REPOSITORY), base=True)
        found += [
            snapshot.probe(
                AptRepository,
                uri=f"{base}/{distribution}",
                arch=settings.arch,
                keyring=docker.DOCKER_KEYRING,
                sources=docker.DOCKER_SOURCES,
            )
            for distribution in docker.DISTRIBUTIONS
        ]
        if settings.get(data.DOCKER_VERSION):
            found += snapshot.put_reads(PIN_FILE)
        else:
            found.append(snapshot.probe(File, path=PIN_FILE))
    if users := settings.get(data.DOCKER_USERS):
        found.append(snapshot.probe(UserGroups, users=list(users)))
    found += snapshot.service_reads(SERVICE)
    if settings.gpu is not None and settings.get(data.GPU_MPS):
        found.append(snapshot.probe(DockerImage, image=settings.get(data.GPU_MPS_IMAGE)))
    return found


@deploy("Docker")
def docker_engine(settings: preflight.HostPlan | None = None) -> Callable[[], bool]:
    """
    Install and run Docker; reads the ``iluvatar_docker_*`` data keys (README table), or ``settings`` when a
    deploy that checked them (the worker's) passes its own. On a GPU host (``HostPlan.gpu``) ``daemon.json`` gets
    NVIDIA's runtime, and with ``iluvatar_gpu_mps`` the MPS daemon's image is pulled. Returns, for ``_if=``,
    whether this run started or restarted dockerd.
    """
    settings = settings or preflight.plan("gpu", reads=reads)
    source = settings.get(data.DOCKER_SOURCE)
    version = settings.get(data.DOCKER_VERSION) if source == "docker" else None
    configured: Mapping[str, Any] = settings.get(data.DOCKER_DAEMON)
    daemon_settings = dict(configured)
    if settings.gpu is not None:
        daemon_settings = docker.merge_settings(daemon_settings, nvidia.docker_runtime_settings())

    # daemon.json and the unit's limit first: the packages' postinst starts dockerd, which must not come up once on
    # Docker's defaults (bridge 172.17.0.0/16, another storage driver) or without its limit.
    daemon = docker.daemon_json(name="daemon.json merged", settings=daemon_settings)
    drop_in = limits.unit_limits(
        name="docker.service file limit", unit=SERVICE, limit_nofile=settings.get(data.NOFILE_LIMIT)
    )
    if changing():
        systemd.daemon_reload(name="Reload systemd units (docker)", _if=drop_in.did_change)
    containerd.release_build_absent(name="No containerd release build (Docker's package brings containerd)")
    if source == "docker":
        distribution = host.get_fact(LinuxDistribution)
        docker.guide_conflicts_absent(name="No package Docker's guide says conflicts")
        docker.apt_repository(
            name="Docker's apt repository",
            repository=settings.get(data.DOCKER_REPOSITORY),
            distribution="ubuntu" if distribution["name"] == "Ubuntu" else "debian",
            codename=distribution["release_meta"].get("VERSION_CODENAME", ""),
            arch=host.get_fact(DebArch),
            fingerprint=settings.get(data.DOCKER_KEY_FINGERPRINT),
        )
        if version:
            pin = f"Package: docker-ce docker-ce-cli\nPin: version {version}\nPin-Priority: 1001\n"
            text = f"# Managed by pyinfra-iluvatar (iluvatar_docker_version): apt upgrade keeps this version.\n{pin}"
            files.put(name="docker-ce pinned", src=StringIO(text), dest=PIN_FILE, mode="644")
        else:
            files.file(name="docker-ce not pinned", path=PIN_FILE, present=False)
    installed = packages.apt_installed(name="Docker packages", packages=docker_packages(source, version))
    if users := settings.get(data.DOCKER_USERS):
        docker.group_members(name="Users in the docker group", users=list(users))

    # Docker's unit allows 3 starts a minute and an install's own start counts: forget them before restarting.
    changes = [installed]
    if changing():
        restart = server.shell(
            name="Restart docker (daemon.json or its limit changed)",
            commands=[f"systemctl reset-failed {SERVICE}; systemctl restart {SERVICE}"],
            _if=any_changed(daemon, drop_in),
        )
        changes.append(restart)
    start = systemd.service(name="docker running and enabled", service=SERVICE, running=True, enabled=True)
    started = any_changed(*changes, start)
    if changing():
        docker.ready(name="Docker answers docker info", _if=started)
        cgroup_driver, storage_driver = expected_drivers(daemon_settings)
        docker.daemon_as_expected(
            name="Docker's drivers are the configured ones",
            cgroup_driver=cgroup_driver,
            storage_driver=storage_driver,
            _if=started,
        )
    if settings.gpu is not None and settings.get(data.GPU_MPS):
        nvidia.mps_image(name="MPS daemon image pulled", image=settings.get(data.GPU_MPS_IMAGE))
    return started


# `pyinfra INVENTORY deploys/docker.py` executes this file without a module name: run the deploy then.
if "__name__" not in globals():
    run_as_deploy_file(__file__, "pyinfra_iluvatar.deploys.docker", docker_engine)
