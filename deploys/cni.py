"""
CNI plugins and cnitool, as the Ilúvatar worker's containerd networking needs them.

The plugins come from the locked release archive; cnitool is built with the locked Go toolchain (``go install``)
or, with ``iluvatar_cnitool_prebuilt``, installed from a prebuilt binary (labs without internet). Both land in
``iluvatar_cni_bin_dir``. Run it alone with ``pyinfra INVENTORY deploys/cni.py``.
"""

from __future__ import annotations

from pyinfra.api.deploy import deploy

from pyinfra_iluvatar import data, preflight, snapshot
from pyinfra_iluvatar.deploys import run_as_deploy_file
from pyinfra_iluvatar.facts.combined import Probe
from pyinfra_iluvatar.facts.release import InstalledRelease
from pyinfra_iluvatar.operations import cni, release


@deploy("CNI plugins and cnitool")
def cni_tools(settings: preflight.HostPlan | None = None) -> None:
    """
    Install the locked CNI plugins and cnitool; reads the ``iluvatar_*`` data keys (README table), or ``settings``
    when a deploy that checked them (the worker's) passes its own.
    """
    settings = settings or preflight.plan("cni", reads=reads)
    plugins = settings.locked("cni-plugins")
    cnitool = settings.locked("cnitool")
    directory = settings.get(data.CNI_BIN_DIR)
    prebuilt = settings.get(data.CNITOOL_PREBUILT)
    download = settings.get(data.DOWNLOAD)
    mirror = settings.get(data.MIRROR)
    cache_dir = settings.get(data.DOWNLOAD_CACHE)
    verify = settings.get(data.VERIFY_INSTALLED)

    release.install(
        name=f"CNI plugins {plugins.version}",
        component="cni-plugins",
        version=plugins.version,
        artifact=settings.artifact("cni-plugins"),
        destination=directory,
        download=download,
        mirror=mirror,
        cache_dir=cache_dir,
        verify=verify,
    )
    if prebuilt:
        # A prebuilt cnitool is the binary itself, or a .tar.gz/.tgz with it at the root (pre-flight checked that
        # this host's architecture has an entry).
        artifact = prebuilt[settings.arch]
        release.install(
            name=f"cnitool {cnitool.version} (prebuilt)",
            component="cnitool",
            version=cnitool.version,
            artifact=artifact,
            destination=directory,
            layout="archive" if artifact.filename.endswith((".tgz", ".tar.gz")) else "binary",
            binary_name="cnitool",
            download=download,
            cache_dir=cache_dir,
            verify=verify,
        )
    else:
        go = settings.locked("go")
        cni.cnitool_from_source(
            name=f"cnitool {cnitool.version} (go install)",
            version=cnitool.version,
            go_version=go.version,
            go_artifact=settings.artifact("go"),
            go_root=settings.get(data.GO_ROOT),
            directory=directory,
            remove_go=settings.get(data.GO_REMOVE_AFTER_BUILD),
            download=download,
            mirror=mirror,
            cache_dir=cache_dir,
            verify=verify,
        )


def reads(settings: preflight.HostPlan) -> list[Probe]:
    """What this deploy's operations read on a converged host (:mod:`pyinfra_iluvatar.snapshot`)."""
    verify = settings.get(data.VERIFY_INSTALLED)
    return [snapshot.probe(InstalledRelease, component=name, verify=verify) for name in ("cni-plugins", "cnitool")]


# `pyinfra INVENTORY deploys/cni.py` executes this file without a module name: run the deploy then.
if "__name__" not in globals():
    run_as_deploy_file(__file__, "pyinfra_iluvatar.deploys.cni", cni_tools)
