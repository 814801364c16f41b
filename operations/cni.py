"""cnitool, built on the host with a locked Go toolchain (upstream publishes no cnitool binaries since CNI v0.7.0).

The CNI plugins themselves are a release archive: ``operations.release.install`` puts them in place. A lab without
internet installs a prebuilt cnitool from its own mirror with ``release.install(layout="binary")`` instead.
"""

from __future__ import annotations

import shlex
from collections.abc import Generator
from typing import Any

from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.operation import operation
from pyinfra.context import host

from pyinfra_iluvatar.facts.release import InstalledRelease, receipt_paths
from pyinfra_iluvatar.operations import release
from pyinfra_iluvatar.releases.components import CNITOOL_PACKAGE
from pyinfra_iluvatar.releases.lockfile import Artifact


@operation()
def cnitool_from_source(
    tag: str,
    go_version: str,
    go_artifacts: dict[str, Artifact],
    go_root: str = "/usr/local/lib/pyinfra-iluvatar/go",
    directory: str = "/opt/cni/bin",
    remove_go: bool = False,
    download: release.DownloadMode = "host",
    mirror: str | None = None,
    cache_dir: str = "~/.cache/pyinfra-iluvatar/artifacts",
) -> Generator[Any, None, None]:
    """
    Build ``cnitool`` at ``tag`` with ``go install`` and install it into ``directory``.

    Does nothing when this package's receipt says cnitool ``tag`` is installed and unchanged. Otherwise installs
    the locked Go toolchain into ``go_root`` (verified, like every release artifact; a private directory, so an
    admin's ``/usr/local/go`` is never touched), builds in a staging directory with ``GOTOOLCHAIN=local``, and
    renames the binary into place. The host needs the Go module proxy (``GOPROXY``) for this; a failed build
    leaves the previous cnitool untouched. With ``remove_go`` the toolchain is removed afterwards — a later run
    still does nothing, as long as cnitool is unchanged.

    + tag: the cnitool tag from the lock (``v1.2.3``)
    + go_version / go_artifacts: the locked Go toolchain
    + go_root: where the Go toolchain goes
    + directory: where cnitool goes (the CNI plugin directory)
    + remove_go: remove the Go toolchain after the build
    + download / mirror / cache_dir: as for ``release.install``, for the Go toolchain

    **Example:**

    .. code:: python

        cni.cnitool_from_source(
            name="cnitool",
            tag=lock.component("cnitool").tag,
            go_version=lock.component("go").version,
            go_artifacts=dict(lock.component("go").artifacts),
        )
    """
    installed = host.get_fact(InstalledRelease, component="cnitool")
    in_place = installed and all(path.startswith(f"{directory}/") for path in installed["files"])
    if installed and in_place and installed["version"] == tag and installed["intact"]:
        host.noop(f"cnitool {tag} is installed in {directory}")
        return

    yield from release.install._inner(
        component="go",
        version=go_version,
        artifacts=go_artifacts,
        destination=go_root,
        layout="tree",
        strip_components=1,
        download=download,
        mirror=mirror,
        cache_dir=cache_dir,
    )
    q = shlex.quote
    module = f"{CNITOOL_PACKAGE}@{tag}"
    build = (
        'export HOME="$staging" GOPATH="$staging/gopath" GOCACHE="$staging/gocache" GOBIN="$staging/unpacked"'
        " GOTOOLCHAIN=local GOFLAGS=-modcacherw\n"
        'mkdir "$staging/unpacked"\n'
        f"{q(go_root + '/bin/go')} install {q(module)} || fail {q('go install ' + module + ' failed')}"
    )
    yield release.script(
        component="cnitool",
        version=tag,
        source=f"go install {module} with go {go_version}",
        steps=f"{build}\n{release.place_executables(directory, receipt_paths('cnitool')[1])}",
    )
    if remove_go:
        go_sums = receipt_paths("go")[1]
        yield StringCommand(
            release.installed_here(go_root, go_sums),
            "&&",
            "rm",
            "-rf",
            *(QuoteString(path) for path in (go_root, *receipt_paths("go"))),
        )
