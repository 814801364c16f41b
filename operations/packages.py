"""Distribution packages, installed so that a converged host costs no ``apt-get update``, and the sources they
come from."""

from __future__ import annotations

from collections.abc import Collection, Generator, Mapping
from io import StringIO
from typing import Any

from pyinfra.api.command import StringCommand
from pyinfra.api.exceptions import OperationError
from pyinfra.api.operation import operation
from pyinfra.context import host
from pyinfra.facts.apt import AptSources
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, files

from pyinfra_iluvatar.facts.packages import DebPackageVersions

CONTRIB_SOURCES = "/etc/apt/sources.list.d/pyinfra-iluvatar-contrib.sources"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


@operation()
def apt_installed(packages: list[str]) -> Generator[Any, None, None]:
    """
    Install Debian/Ubuntu packages, refreshing the package lists only when one of them is missing.

    pyinfra's ``apt.packages(update=True)`` refreshes the lists on every run (or whenever ``cache_time`` has
    passed), which reports a change on a host that already has everything. This one reads the installed
    packages first and does nothing when all are present. Before installing, it lets dpkg finish what an
    interrupted run left half-configured (``dpkg --configure -a``: a host powered off during an install), which
    apt would otherwise refuse to go on from.

    + packages: package names, or ``name=version`` for an exact version (installed with ``--allow-downgrades``:
      a pin is kept even when a newer version is installed)

    **Example:**

    .. code:: python

        packages.apt_installed(
            name="Worker packages",
            packages=["runc", "iptables", "jq"],
        )
    """
    installed = host.get_fact(DebPackageVersions, packages=package_names(packages))
    missing = [spec for spec in packages if not _installed(spec, installed)]
    if not missing:
        host.noop(f"packages already installed: {', '.join(packages)}")
        return
    yield StringCommand("DEBIAN_FRONTEND=noninteractive", "dpkg", "--configure", "-a")
    yield from apt.update._inner()
    pinned = any("=" in spec for spec in missing)
    yield from apt.packages._inner(packages=missing, no_recommends=True, allow_downgrades=pinned)


def package_names(specs: list[str]) -> list[str]:
    """The package names of ``specs`` (``name`` or ``name=version``)."""
    return [spec.partition("=")[0] for spec in specs]


def _installed(spec: str, installed: Mapping[str, Collection[str]]) -> bool:
    """Whether ``spec`` (``name`` or ``name=version``) is installed, at that version when one is given."""
    name, _, version = spec.partition("=")
    return name in installed and (not version or version in installed[name])


@operation()
def debian_contrib() -> Generator[Any, None, None]:
    """
    Enable Debian's ``contrib`` component (``zfs-dkms`` and ``zfsutils-linux`` live there) when no configured
    source of the host's release has it: a deb822 file of this package's own,
    ``/etc/apt/sources.list.d/pyinfra-iluvatar-contrib.sources``, for the release and its ``-updates``, from the
    same archive as the host's ``main`` source (``deb.debian.org`` when there is none). The host's own source files
    are never edited. Refresh the package lists afterwards (``packages.apt_installed`` does when a package is missing).

    **Example:**

    .. code:: python

        packages.debian_contrib(name="Debian contrib enabled")
    """
    distribution = host.get_fact(LinuxDistribution)
    codename = distribution["release_meta"].get("VERSION_CODENAME")
    if distribution["name"] != "Debian" or not codename:
        raise OperationError(f"{host.name}: contrib is a Debian component; this host runs {distribution['name']}")
    sources = host.get_fact(AptSources)
    releases = [repo for repo in sources if repo["type"] == "deb" and repo["distribution"] == codename]
    if any("contrib" in repo["components"] for repo in releases):
        host.noop(f"contrib is enabled for {codename}")
        return
    archive = next((repo["url"] for repo in releases if "main" in repo["components"]), "http://deb.debian.org/debian")
    text = (
        "# Managed by pyinfra-iluvatar: Debian's contrib component, for zfs-dkms and zfsutils-linux.\n"
        f"Types: deb\nURIs: {archive}\nSuites: {codename} {codename}-updates\nComponents: contrib\n"
        f"Signed-By: {DEBIAN_KEYRING}\n"
    )
    yield from files.put._inner(src=StringIO(text), dest=CONTRIB_SOURCES, user="root", group="root", mode="644")
