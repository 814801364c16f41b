"""
CNI plugins and cnitool, as the Ilúvatar worker's containerd networking needs them.

The plugins come from the locked release archive; cnitool is built with the locked Go toolchain (``go install``)
or, with ``iluvatar_cnitool_prebuilt``, installed from a prebuilt binary (labs without internet). Both land in
``iluvatar_cni_bin_dir``. Run it alone with ``pyinfra INVENTORY deploys/cni.py``.
"""

from __future__ import annotations

from pyinfra.api.deploy import deploy
from pyinfra.context import host

from pyinfra_iluvatar import data
from pyinfra_iluvatar.operations import cni, release


@deploy("CNI plugins and cnitool")
def cni_tools() -> None:
    """Install the locked CNI plugins and cnitool; reads the ``iluvatar_*`` data keys (README table)."""
    lock = data.lock(host)
    plugins = lock.component("cni-plugins")
    cnitool_tag = lock.component("cnitool").tag
    directory = data.get(host, data.CNI_BIN_DIR)
    prebuilt = data.get(host, data.CNITOOL_PREBUILT)
    download = data.get(host, data.DOWNLOAD)
    mirror = data.get(host, data.MIRROR)
    cache_dir = data.get(host, data.DOWNLOAD_CACHE)

    release.install(
        name=f"CNI plugins {plugins.version}",
        component="cni-plugins",
        version=plugins.version,
        artifacts=dict(plugins.artifacts),
        destination=directory,
        download=download,
        mirror=mirror,
        cache_dir=cache_dir,
    )
    if prebuilt:
        # A prebuilt cnitool is the binary itself, or a .tar.gz/.tgz with it at the root.
        archived = all(artifact.filename.endswith((".tgz", ".tar.gz")) for artifact in prebuilt.values())
        release.install(
            name=f"cnitool {cnitool_tag} (prebuilt)",
            component="cnitool",
            version=cnitool_tag,
            artifacts=prebuilt,
            destination=directory,
            layout="archive" if archived else "binary",
            binary_name="cnitool",
            download=download,
            cache_dir=cache_dir,
        )
    else:
        go = lock.component("go")
        cni.cnitool_from_source(
            name=f"cnitool {cnitool_tag} (go install)",
            tag=cnitool_tag,
            go_version=go.version,
            go_artifacts=dict(go.artifacts),
            go_root=data.get(host, data.GO_ROOT),
            directory=directory,
            remove_go=data.get(host, data.GO_REMOVE_AFTER_BUILD),
            download=download,
            mirror=mirror,
            cache_dir=cache_dir,
        )


# `pyinfra INVENTORY deploys/cni.py` executes this file without a module name: run the deploy then.
if "__name__" not in globals():
    cni_tools()
