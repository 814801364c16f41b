"""
NVIDIA GPUs for the worker, the setup page's "GPU support" steps: the driver (a prerequisite, or a package the
inventory names), NVIDIA's container toolkit from its signed apt repository with its four packages pinned to one
version, and ``nvidia-persistenced`` running the page's unit with persistence mode on — then checked on every GPU.
Run it alone with ``pyinfra INVENTORY deploys/gpu.py``; on a host without an NVIDIA GPU (``iluvatar_gpu: auto``) it
does nothing.

The runtimes are wired where their daemons are configured: the Docker deploy adds the ``nvidia`` runtime to
``daemon.json`` and the containerd deploy writes ``/etc/containerd/conf.d/99-nvidia.toml``, each restarting its
daemon only when that changed (the worker deploy runs them after this one's toolkit); the Docker deploy also
pre-pulls the MPS daemon's image on MPS hosts (``iluvatar_gpu_mps``).
"""

from __future__ import annotations

from io import StringIO

from pyinfra.api.deploy import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, systemd

from pyinfra_iluvatar import data, preflight, snapshot
from pyinfra_iluvatar.deploys import changing, run_as_deploy_file
from pyinfra_iluvatar.facts.apt_repos import AptRepository
from pyinfra_iluvatar.facts.combined import Probe
from pyinfra_iluvatar.facts.nvidia import NvidiaGpus, NvidiaPersistenced
from pyinfra_iluvatar.facts.packages import DebPackageVersions
from pyinfra_iluvatar.operations import apt_repos, nvidia, packages
from pyinfra_iluvatar.urls import http_url

PERSISTENCED = "nvidia-persistenced.service"
REPOSITORY_LABEL = "NVIDIA's container toolkit apt repository"


def toolkit_packages(version: str) -> list[str]:
    """The four toolkit packages at ``version`` (``name=version``), as NVIDIA's install guide pins them."""
    return [f"{name}={version}" for name in nvidia.TOOLKIT_PACKAGES]


def pin_text(version: str) -> str:
    """The apt preferences file that keeps ``apt upgrade`` from moving the toolkit off ``version``."""
    return (
        "# Managed by pyinfra-iluvatar (iluvatar_nvidia_toolkit_version): apt upgrade keeps this version.\n"
        f"Package: {' '.join(nvidia.TOOLKIT_PACKAGES)}\nPin: version {version}\nPin-Priority: 1001\n"
    )


@deploy("NVIDIA container toolkit")
def nvidia_toolkit(
    repository: str, fingerprint: str, version: str, arch: str, driver_package: str | None = None
) -> OperationMeta:
    """
    NVIDIA's container toolkit apt repository (``<repository>/stable/deb/<arch>``, a flat repository signed by the
    key ``fingerprint``, fetched from ``<repository>/gpgkey`` and checked on the controller; a stale
    ``nvidia-container-toolkit.list`` for the same URI disabled), the four packages at ``version`` and pinned there,
    and ``driver_package`` when given. Returns the packages' operation.
    """
    apt_repos.signed_repository(
        name=REPOSITORY_LABEL,
        uri=f"{repository}/stable/deb/{arch}",
        suites=["/"],
        components=[],
        arch=arch,
        keyring=nvidia.TOOLKIT_KEYRING,
        sources=nvidia.TOOLKIT_SOURCES,
        key_url=f"{repository}/gpgkey",
        fingerprint=fingerprint,
        label=REPOSITORY_LABEL,
    )
    files.put(
        name="NVIDIA container toolkit pinned",
        src=StringIO(pin_text(version)),
        dest=nvidia.TOOLKIT_PIN_FILE,
        mode="644",
    )
    driver = [driver_package] if driver_package else []
    return packages.apt_installed(name="NVIDIA container toolkit", packages=driver + toolkit_packages(version))


@deploy("nvidia-persistenced")
def persistence() -> None:
    """
    The setup page's ``nvidia-persistenced`` unit (persistence mode on, overriding a packaged unit that runs with
    ``--no-persistence-mode``), restarted only when it changed, enabled and running; then persistence mode checked
    on every GPU (the host fails naming each GPU where it is off).
    """
    unit = nvidia.persistenced_unit(name="nvidia-persistenced unit (persistence mode on)")
    if changing():
        systemd.daemon_reload(name="Reload systemd units (nvidia-persistenced)", _if=unit.did_change)
        systemd.service(
            name="Restart nvidia-persistenced (its unit changed)",
            service=PERSISTENCED,
            restarted=True,
            _if=unit.did_change,
        )
    systemd.service(name="nvidia-persistenced running and enabled", service=PERSISTENCED, running=True, enabled=True)
    nvidia.persistence_enabled(name="Persistence mode is on for every GPU")


def reads(settings: preflight.HostPlan) -> list[Probe]:
    """What this deploy's operations read on a converged GPU host (:mod:`pyinfra_iluvatar.snapshot`)."""
    if settings.gpu is None:
        return []
    uri = http_url(f"{settings.get(data.NVIDIA_REPOSITORY)}/stable/deb/{settings.arch}", base=True)
    driver = [settings.gpu.driver_package] if settings.gpu.driver_package else []
    return [
        snapshot.probe(
            AptRepository,
            uri=uri,
            arch=settings.arch,
            keyring=nvidia.TOOLKIT_KEYRING,
            sources=nvidia.TOOLKIT_SOURCES,
        ),
        *snapshot.put_reads(nvidia.TOOLKIT_PIN_FILE),
        snapshot.probe(DebPackageVersions, packages=[*driver, *nvidia.TOOLKIT_PACKAGES]),
        snapshot.probe(NvidiaPersistenced),
        *snapshot.put_reads(nvidia.PERSISTENCED_UNIT),
        *snapshot.service_reads(PERSISTENCED),
        snapshot.probe(NvidiaGpus),
    ]


@deploy("NVIDIA GPU")
def nvidia_gpu(settings: preflight.HostPlan | None = None) -> None:
    """
    The toolkit (:func:`nvidia_toolkit`) and ``nvidia-persistenced`` (:func:`persistence`) on a host with an
    NVIDIA GPU; nothing on one without (``iluvatar_gpu: auto``) or with ``iluvatar_gpu: false``. Reads the
    ``iluvatar_gpu``/``iluvatar_nvidia_*`` data keys (README table), or ``settings`` when a deploy that checked them
    (the worker's) passes its own.
    """
    settings = settings or preflight.plan("gpu", reads=reads)
    if settings.gpu is None:
        return
    nvidia_toolkit(
        repository=settings.get(data.NVIDIA_REPOSITORY),
        fingerprint=settings.get(data.NVIDIA_KEY_FINGERPRINT),
        version=settings.get(data.NVIDIA_TOOLKIT_VERSION),
        arch=settings.arch,
        driver_package=settings.gpu.driver_package,
    )
    persistence()


# `pyinfra INVENTORY deploys/gpu.py` executes this file without a module name: run the deploy then.
if "__name__" not in globals():
    run_as_deploy_file(__file__, "pyinfra_iluvatar.deploys.gpu", nvidia_gpu)
