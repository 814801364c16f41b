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

from pyinfra_iluvatar.facts.release import InstalledRelease, receipt_paths, stat_path
from pyinfra_iluvatar.operations import release
from pyinfra_iluvatar.releases.components import CNITOOL, CNITOOL_PACKAGE
from pyinfra_iluvatar.releases.lockfile import Artifact


@operation()
def cnitool_from_source(
    version: str,
    go_version: str,
    go_artifact: Artifact,
    go_root: str = "/usr/local/lib/pyinfra-iluvatar/go",
    directory: str = "/opt/cni/bin",
    remove_go: bool = False,
    download: release.DownloadMode = "host",
    mirror: str | None = None,
    cache_dir: str = "~/.cache/pyinfra-iluvatar/artifacts",
    verify: bool = False,
) -> Generator[Any, None, None]:
    """
    Build ``cnitool`` at ``version`` (tag ``v<version>``) with ``go install`` and install it into ``directory``.

    Does nothing when this package's receipt says cnitool ``version`` is installed and unchanged. Otherwise installs
    the locked Go toolchain into ``go_root`` (verified, like every release artifact; a private directory, so an
    admin's ``/usr/local/go`` is never touched), builds in a staging directory with ``GOTOOLCHAIN=local``, and
    renames the binary into place (unless the one there is byte-identical). The host needs the Go module proxy
    (``GOPROXY``) for this; a failed build leaves the previous cnitool untouched. With ``remove_go`` the
    toolchain is removed afterwards — a later run still does nothing, as long as cnitool is unchanged.

    + version: the cnitool version from the lock (``1.2.3``; built from tag ``v1.2.3``)
    + go_version / go_artifact: the locked Go toolchain, its artifact for this host's architecture
    + go_root: where the Go toolchain goes
    + directory: where cnitool goes (the CNI plugin directory)
    + remove_go: remove the Go toolchain after the build
    + download / mirror / cache_dir: as for ``release.install``, for the Go toolchain
    + verify: as for ``release.install``: hash cnitool to decide it is unchanged, or trust its size, ctime, inode

    **Example:**

    .. code:: python

        go = lock.component("go")
        cni.cnitool_from_source(
            name="cnitool",
            version=lock.component("cnitool").version,
            go_version=go.version,
            go_artifact=go.artifact("amd64"),
        )
    """
    installed = host.get_fact(InstalledRelease, component="cnitool", verify=verify)
    in_place = installed and all(path.startswith(f"{directory}/") for path in installed["files"])
    if installed and in_place and installed["version"] == version and installed["intact"]:
        if verify or installed["checked"] == "stat":
            host.noop(f"cnitool {version} is installed in {directory}")
        else:  # a receipt from before the .stat receipt: record it, so later runs need not hash
            yield release.record_stat("cnitool")
        return

    yield from release.install._inner(
        component="go",
        version=go_version,
        artifact=go_artifact,
        destination=go_root,
        layout="tree",
        strip_components=1,
        download=download,
        mirror=mirror,
        cache_dir=cache_dir,
    )
    q = shlex.quote
    module = f"{CNITOOL_PACKAGE}@{CNITOOL.source.tag(version)}"
    build = (
        'export HOME="$staging" GOPATH="$staging/gopath" GOCACHE="$staging/gocache" GOBIN="$staging/unpacked"'
        " GOTOOLCHAIN=local GOFLAGS=-modcacherw\n"
        'mkdir "$staging/unpacked"\n'
        f"{q(go_root + '/bin/go')} install {q(module)} || fail {q('go install ' + module + ' failed')}"
    )
    yield release.script(
        component="cnitool",
        version=version,
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
            *(QuoteString(path) for path in (go_root, *receipt_paths("go"), stat_path("go"))),
        )
