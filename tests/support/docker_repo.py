"""A signed apt repository shaped like Docker's (``https://download.docker.com/linux/debian``), for tests.

download.docker.com cannot be reached here, Debian's archive can. This module downloads Debian's real packages
(``apt-get download`` with a private apt state, as :mod:`.debian_artifacts` does), repacks them under Docker's
package names, versions, relations, paths and systemd units (``dpkg-deb -x`` / ``dpkg-deb -b``), writes
``Packages``/``Release`` and signs them with an OpenPGP key generated for the purpose:

=========================  ===================================  ==================================================
package (version)          made from (Debian suite)             installs, as Docker's package does
=========================  ===================================  ==================================================
docker-ce                  docker.io 20.10.24 (bookworm),       ``/usr/bin/dockerd``, ``docker-proxy``,
(5:20.10.24-1~debian.12~   tini-static 0.19.0 (bookworm) as     ``docker-init``; ``docker.service``,
bookworm, 5:26.1.5-1~...)  docker-init; docker.io 26.1.5        ``docker.socket`` (Docker's units, in
                           (trixie; runs on bookworm)           ``/lib/systemd/system``); ``/etc/default/docker``
docker-ce-cli (same two)   docker.io 20.10.24 (bookworm),       ``/usr/bin/docker`` and its completions
                           docker-cli 26.1.5 (trixie)
containerd.io (1.6.20-1,   containerd 1.6.20 (bookworm) or      ``/usr/bin/containerd``, ``containerd-shim*``,
1.7.24-1)                  1.7.24 (trixie), runc 1.1.5          ``ctr``, ``runc``; ``containerd.service``;
                           (bookworm) in both                   ``/etc/containerd/config.toml`` (Docker's:
                                                                ``disabled_plugins = ["cri"]``, a conffile)
docker-buildx-plugin       docker-buildx 0.13.1 (trixie)        ``/usr/libexec/docker/cli-plugins/docker-buildx``
(0.13.1-1~debian.12~...)
docker-compose-plugin      docker-compose 2.26.1 (trixie)       ``/usr/libexec/docker/cli-plugins/docker-compose``
(2.26.1-1~debian.12~...)
=========================  ===================================  ==================================================

Relations are Docker's: docker-ce depends on ``containerd.io`` and ``docker-ce-cli`` and conflicts with
``docker.io``; containerd.io provides, conflicts with and replaces ``containerd`` and ``runc``; Recommends are
Docker's too (apt installs them unless told not to). Maintainer scripts are those debhelper generates for such
units (enable, start on install, restart on upgrade, stop on removal) plus docker-ce's ``docker`` group. Only
amd64 is built (``ARCHES``; arm64 would double the download and could not be run here). Each package's
description says what it was repacked from. Debian has no buildx in bookworm; trixie's builds need only
glibc 2.34, so they run on bookworm (trixie's runc needs glibc 2.38, hence bookworm's runc in both containerd.io).

Layout, below :attr:`DockerRepo.root` (serve that directory; paths are download.docker.com's)::

    linux/debian/gpg                                         the ASCII-armored public key
    linux/debian/dists/bookworm/{InRelease,Release,Release.gpg}
    linux/debian/dists/bookworm/stable/binary-amd64/{Packages,Packages.gz,Packages.bz2,Release}
    linux/debian/dists/bookworm/pool/stable/amd64/<package>_<version without epoch>_amd64.deb

(Docker keeps its pool below ``dists/<codename>/``, as its install guide's manual download path shows.) So apt's
``URIs`` is ``http://HOST:PORT/linux/debian``; :func:`serve` can also put everything below a prefix, for the mirror
layout ``<mirror>/download.docker.com/linux/debian``.

The cache is ``$PYINFRA_ILUVATAR_TEST_DOCKER_REPO`` or ``.build/test-docker-repo`` in the checkout, one directory
per recipe hash (everything that decides the content is hashed); a complete build writes ``manifest.json`` last.
The key's GNUPGHOME is kept there (``gnupg/``, no passphrase) so that tests can sign more with it.
"""

from __future__ import annotations

import bz2
import contextlib
import fcntl
import functools
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from email.utils import formatdate
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CACHE_ENV = "PYINFRA_ILUVATAR_TEST_DOCKER_REPO"
DEFAULT_CACHE = Path(__file__).resolve().parents[2] / ".build" / "test-docker-repo"
RECIPE = 1  # bump when the code below changes what is built without changing the specs that are hashed
CODENAME = "bookworm"
COMPONENT = "stable"
ARCHES = ("amd64",)
DISTRO_PATH = "linux/debian"  # download.docker.com's path of the Debian repository
KEY_NAME = "Docker Release (CE deb) test key"
KEY_EMAIL = "docker-release-test@example.invalid"
_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
_SUITES = ("bookworm", "trixie")
_DOCKER_MAINTAINER = "Docker <support@docker.com>"
_BOOKWORM_ENGINE_LIBS = "libc6 (>= 2.34), libdevmapper1.02.1 (>= 2:1.02.97), libsystemd0"
_ENGINE_DESCRIPTION = """Docker: the open-source application container engine
 Docker is a product for you to build, ship and run any application as a
 lightweight container
 .
 Docker containers are both hardware-agnostic and platform-agnostic. This means
 they can run anywhere, from your laptop to the largest cloud compute instance
 and everything in between - and they don't require you to use a particular
 language, framework or packaging system. That makes them great building blocks
 for deploying and scaling web apps, databases, and backend services without
 depending on a particular stack or provider."""
_CLI_DESCRIPTION = _ENGINE_DESCRIPTION.replace("Docker: the", "Docker CLI: the", 1)

# Docker's units (moby contrib/init/systemd, as docker-ce 23+ ships them) with /usr/bin/dockerd.
_DOCKER_SERVICE = """[Unit]
Description=Docker Application Container Engine
Documentation=https://docs.docker.com
After=network-online.target docker.socket firewalld.service containerd.service time-set.target
Wants=network-online.target containerd.service
Requires=docker.socket

[Service]
Type=notify
# the default is not to use systemd for cgroups because the delegate issues still
# exists and systemd currently does not support the cgroup feature set required
# for containers run by docker
ExecStart=/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock
ExecReload=/bin/kill -s HUP $MAINPID
TimeoutStartSec=0
RestartSec=2
Restart=always

# Note that StartLimit* options were moved from "Service" to "Unit" in systemd 229.
# Both the old, and new location are accepted by systemd 229 and up, so using the old location
# to make them work for either version of systemd.
StartLimitBurst=3

# Note that StartLimitInterval was renamed to StartLimitIntervalSec in systemd 230.
# Both the old, and new name are accepted by systemd 230 and up, so using the old name to make
# this option work for either version of systemd.
StartLimitInterval=60s

# Having non-zero Limit*s causes performance problems due to accounting overhead
# in the kernel. We recommend using cgroups to do container-local accounting.
LimitNOFILE=infinity
LimitNPROC=infinity
LimitCORE=infinity

# Comment TasksMax if your systemd version does not support it.
# Only systemd 226 and above support this option.
TasksMax=infinity

# set delegate yes so that systemd does not reset the cgroups of docker containers
Delegate=yes

# kill only the docker process, not all processes in the cgroup
KillMode=process
OOMScoreAdjust=-500

[Install]
WantedBy=multi-user.target
"""
_DOCKER_SOCKET = """[Unit]
Description=Docker Socket for the API

[Socket]
# If /var/run is not implemented as a symlink to /run, you may need to
# specify ListenStream=/var/run/docker.sock instead.
ListenStream=/run/docker.sock
SocketMode=0660
SocketUser=root
SocketGroup=docker

[Install]
WantedBy=sockets.target
"""
_DOCKER_DEFAULT = """# Docker Upstart and SysVinit configuration file

#
# THIS FILE DOES NOT APPLY TO SYSTEMD
#
#   Please see the documentation for "systemd drop-ins":
#   https://docs.docker.com/engine/articles/systemd/
#

# Customize location of Docker binary (especially for development testing).
#DOCKER="/usr/local/bin/docker"

# Use DOCKER_OPTS to modify the daemon startup options.
#DOCKER_OPTS="--dns 8.8.8.8 --dns 8.8.4.4"

# If you need Docker to use an HTTP proxy, it can also be specified here.
#export http_proxy="http://127.0.0.1:3128/"

# This is also a handy place to tweak where Docker's temporary files go.
#export TMPDIR="/mnt/bigdrive/docker-tmp"
"""
# containerd.io's /etc/containerd/config.toml (docker/containerd-packaging common/containerd.toml).
_CONTAINERD_TOML = """#   Copyright 2018-2022 Docker Inc.

#   Licensed under the Apache License, Version 2.0 (the "License");
#   you may not use this file except in compliance with the License.
#   You may obtain a copy of the License at

#       http://www.apache.org/licenses/LICENSE-2.0

#   Unless required by applicable law or agreed to in writing, software
#   distributed under the License is distributed on an "AS IS" BASIS,
#   WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
#   See the License for the specific language governing permissions and
#   limitations under the License.

disabled_plugins = ["cri"]

#root = "/var/lib/containerd"
#state = "/run/containerd"
#subreaper = true
#oom_score = 0

#[grpc]
#  address = "/run/containerd/containerd.sock"
#  uid = 0
#  gid = 0

#[debug]
#  address = "/run/containerd/debug.sock"
#  uid = 0
#  gid = 0
#  level = "info"
"""


def _unit_scripts(units: tuple[str, ...], group: bool = False) -> dict[str, str]:
    """postinst/prerm/postrm as debhelper 13 writes them for ``units`` (enable, start, restart on upgrade, stop)."""
    quoted = " ".join(f"'{unit}'" for unit in units)
    configure = " || ".join(
        f'[ "$1" = "{action}" ]' for action in ("configure", "abort-upgrade", "abort-deconfigure", "abort-remove")
    )
    postinst = "#!/bin/sh\nset -e\n\n"
    if group:  # docker-ce.postinst: the group docker.socket gives the socket to
        postinst += (
            'if [ "$1" = configure ] && [ -z "$2" ]; then\n'
            "\tif ! getent group docker > /dev/null; then\n\t\tgroupadd --system docker\n\tfi\nfi\n\n"
        )
    for unit in units:
        postinst += (
            f"if {configure} ; then\n"
            f"\tdeb-systemd-helper unmask '{unit}' >/dev/null || true\n"
            f"\tif deb-systemd-helper --quiet was-enabled '{unit}'; then\n"
            f"\t\tdeb-systemd-helper enable '{unit}' >/dev/null || true\n"
            f"\telse\n\t\tdeb-systemd-helper update-state '{unit}' >/dev/null || true\n\tfi\nfi\n"
        )
    postinst += (
        f"if {configure} ; then\n"
        "\tif [ -d /run/systemd/system ]; then\n"
        "\t\tsystemctl --system daemon-reload >/dev/null || true\n"
        '\t\tif [ -n "$2" ]; then\n\t\t\t_dh_action=restart\n\t\telse\n\t\t\t_dh_action=start\n\t\tfi\n'
        f"\t\tdeb-systemd-invoke $_dh_action {quoted} >/dev/null || true\n"
        "\tfi\nfi\n"
    )
    prerm = (
        "#!/bin/sh\nset -e\n\n"
        'if [ -z "${DPKG_ROOT:-}" ] && [ "$1" = remove ] && [ -d /run/systemd/system ] ; then\n'
        f"\tdeb-systemd-invoke stop {quoted} >/dev/null || true\nfi\n"
    )
    postrm = (
        "#!/bin/sh\nset -e\n\n"
        'if [ "$1" = remove ] && [ -d /run/systemd/system ] ; then\n'
        "\tsystemctl --system daemon-reload >/dev/null || true\nfi\n"
        'if [ "$1" = "purge" ]; then\n'
        '\tif [ -x "/usr/bin/deb-systemd-helper" ]; then\n'
        f"\t\tdeb-systemd-helper purge {quoted} >/dev/null || true\n\tfi\nfi\n"
    )
    return {"postinst": postinst, "prerm": prerm, "postrm": postrm}


@dataclass(frozen=True)
class _Take:
    """Files of a Debian package (``glob`` inside its tree) put at ``dest`` (a directory when it ends with /)."""

    source: str  # a key of _Spec.sources
    glob: str
    dest: str
    optional: bool = False  # man pages and completions some builds lack


@dataclass(frozen=True)
class _Spec:
    """One package to build: Docker's name, version and control fields, and where its files come from."""

    name: str
    version: str
    sources: Mapping[str, str]  # key -> "debian-package/suite" (the architecture is added per build)
    upstream: str  # the upstream version the main source must be, e.g. 20.10.24
    takes: tuple[_Take, ...]
    fields: Mapping[str, str]  # control fields after Package/Version/Architecture/Maintainer/Installed-Size
    generated: Mapping[str, str] = field(default_factory=dict)  # path -> text
    conffiles: tuple[str, ...] = ()
    scripts: Mapping[str, str] = field(default_factory=dict)
    maintainer: str = _DOCKER_MAINTAINER
    version_check: tuple[str, str] | None = None  # (path in the package, text its --version must print)


def _engine(version: str, upstream: str, suite: str, depends: str, containerd: str) -> tuple[_Spec, _Spec]:
    """docker-ce and docker-ce-cli ``version`` from Debian's docker.io (and trixie's docker-cli) of ``suite``."""
    bookworm = suite == "bookworm"
    engine_sources = {"engine": f"docker.io/{suite}", "tini": "tini/bookworm"}
    cli_source = "engine" if bookworm else "cli"
    cli_sources = {"engine": f"docker.io/{suite}"} if bookworm else {"cli": "docker-cli/trixie"}
    origin = f"Debian's docker.io {{engine}} ({suite})"
    conflicts = "docker (<< 1.5~), docker-engine, docker-engine-cs, docker.io, lxc-docker, lxc-docker-virtual-package"
    engine = _Spec(
        name="docker-ce",
        version=version,
        sources=engine_sources,
        upstream=upstream,
        takes=(
            _Take("engine", "usr/sbin/dockerd", "usr/bin/"),
            _Take("engine", "usr/sbin/docker-proxy", "usr/bin/"),
            _Take("tini", "usr/bin/tini-static", "usr/bin/docker-init"),
            _Take("engine", "usr/share/man/man8/dockerd.8.gz", "usr/share/man/man8/", optional=True),
            _Take("engine", "usr/share/doc/docker.io/copyright", "usr/share/doc/docker-ce/"),
        ),
        fields={
            "Pre-Depends": "init-system-helpers (>= 1.54~)",
            "Depends": f"containerd.io (>= {containerd}), docker-ce-cli, iptables, libseccomp2 (>= 2.3.0), {depends}",
            "Recommends": "apparmor, ca-certificates, docker-ce-rootless-extras, git, libltdl7, pigz, procps, xz-utils",
            "Suggests": "aufs-tools, cgroupfs-mount | cgroup-lite",
            "Conflicts": conflicts,
            "Replaces": "docker-engine",
            "Section": "admin",
            "Priority": "optional",
            "Homepage": "https://www.docker.com",
            "Description": _ENGINE_DESCRIPTION
            + f"\n .\n Test package: the engine of {origin}, repacked as Docker's docker-ce.",
        },
        generated={
            "lib/systemd/system/docker.service": _DOCKER_SERVICE,
            "lib/systemd/system/docker.socket": _DOCKER_SOCKET,
            "etc/default/docker": _DOCKER_DEFAULT,
        },
        conffiles=("/etc/default/docker",),
        scripts=_unit_scripts(("docker.socket", "docker.service"), group=True),
        version_check=("usr/bin/dockerd", f"Docker version {upstream}+dfsg1"),
    )
    cli_origin = origin if bookworm else "Debian's docker-cli {cli} (trixie)"
    cli = _Spec(
        name="docker-ce-cli",
        version=version,
        sources=cli_sources,
        upstream=upstream,
        takes=(
            _Take(cli_source, "usr/bin/docker", "usr/bin/"),
            _Take(cli_source, "usr/share/bash-completion/completions/docker", "usr/share/bash-completion/completions/"),
            _Take(
                cli_source, "usr/share/fish/vendor_completions.d/docker.fish", "usr/share/fish/vendor_completions.d/"
            ),
            _Take(cli_source, "usr/share/zsh/vendor-completions/_docker", "usr/share/zsh/vendor-completions/"),
            _Take(cli_source, "usr/share/man/man1/docker*.1.gz", "usr/share/man/man1/", optional=True),
            _Take(
                cli_source,
                f"usr/share/doc/{'docker.io' if bookworm else 'docker-cli'}/copyright",
                "usr/share/doc/docker-ce-cli/",
            ),
        ),
        fields={
            "Depends": "libc6 (>= 2.34)",
            "Recommends": "docker-buildx-plugin, docker-compose-plugin",
            "Conflicts": conflicts,
            "Breaks": "docker-ce (<< 5:0)",
            "Replaces": "docker-ce (<< 5:0)",
            "Section": "admin",
            "Priority": "optional",
            "Homepage": "https://www.docker.com",
            "Description": _CLI_DESCRIPTION
            + f"\n .\n Test package: the client of {cli_origin}, repacked as Docker's docker-ce-cli.",
        },
        version_check=("usr/bin/docker", f"Docker version {upstream}+dfsg1"),
    )
    return engine, cli


def _containerd(version: str, upstream: str, suite: str) -> _Spec:
    """containerd.io ``version``: Debian's containerd of ``suite`` with bookworm's runc, as Docker bundles them."""
    binaries = ("containerd", "containerd-shim", "containerd-shim-runc-v1", "containerd-shim-runc-v2", "ctr")
    unit = (
        "lib/systemd/system/containerd.service" if suite == "bookworm" else "usr/lib/systemd/system/containerd.service"
    )
    return _Spec(
        name="containerd.io",
        version=version,
        sources={"containerd": f"containerd/{suite}", "runc": "runc/bookworm"},
        upstream=upstream,
        takes=(
            *(_Take("containerd", f"usr/bin/{binary}", "usr/bin/") for binary in binaries),
            _Take("runc", "usr/sbin/runc", "usr/bin/"),
            _Take("containerd", unit, "lib/systemd/system/"),
            _Take("containerd", "usr/share/man/man*/*", "usr/share/man/", optional=True),
            _Take("runc", "usr/share/man/man8/runc*.8.gz", "usr/share/man/man8/", optional=True),
            _Take("containerd", "usr/share/doc/containerd/copyright", "usr/share/doc/containerd.io/"),
        ),
        fields={
            "Depends": "libc6 (>= 2.34), libseccomp2 (>= 2.5.0)",
            "Conflicts": "containerd, runc",
            "Replaces": "containerd, runc",
            "Provides": "containerd, runc",
            "Section": "devel",
            "Priority": "optional",
            "Homepage": "https://containerd.io",
            "Description": "An open and reliable container runtime\n"
            f" Test package: Debian's containerd {{containerd}} ({suite}) and runc {{runc}} (bookworm),\n"
            " repacked as Docker's containerd.io.",
        },
        generated={"etc/containerd/config.toml": _CONTAINERD_TOML},
        conffiles=("/etc/containerd/config.toml",),
        scripts=_unit_scripts(("containerd.service",)),
        maintainer="Containerd team <help@containerd.io>",
        version_check=("usr/bin/containerd", f" {upstream}~ds1"),
    )


def _plugin(name: str, debian: str, version: str, upstream: str, fields: Mapping[str, str]) -> _Spec:
    """A CLI plugin package from trixie's Debian build of it."""
    return _Spec(
        name=name,
        version=version,
        sources={"plugin": f"{debian}/trixie"},
        upstream=upstream,
        takes=(
            _Take("plugin", f"usr/libexec/docker/cli-plugins/{debian}", "usr/libexec/docker/cli-plugins/"),
            _Take("plugin", f"usr/share/doc/{debian}/copyright", f"usr/share/doc/{name}/"),
        ),
        fields={"Depends": "libc6 (>= 2.34)", **fields},
    )


def _specs() -> tuple[_Spec, ...]:
    suffix = f"-1~debian.12~{CODENAME}"
    old_engine = _engine(f"5:20.10.24{suffix}", "20.10.24", "bookworm", _BOOKWORM_ENGINE_LIBS, "1.4.1")
    new_engine = _engine(f"5:26.1.5{suffix}", "26.1.5", "trixie", "libc6 (>= 2.34), libsystemd0", "1.6.24")
    buildx = _plugin(
        "docker-buildx-plugin",
        "docker-buildx",
        f"0.13.1{suffix}",
        "0.13.1",
        {
            "Enhances": "docker-ce-cli",
            "Replaces": "docker-ce-cli",
            "Section": "admin",
            "Priority": "optional",
            "Homepage": "https://github.com/docker/buildx",
            "Description": "Docker Buildx cli plugin.\n This plugin provides the 'docker buildx' subcommand.\n .\n"
            " Test package: Debian's docker-buildx {plugin} (trixie), repacked as Docker's docker-buildx-plugin.",
        },
    )
    compose = _plugin(
        "docker-compose-plugin",
        "docker-compose",
        f"2.26.1{suffix}",
        "2.26.1",
        {
            "Enhances": "docker-ce-cli",
            "Section": "admin",
            "Priority": "optional",
            "Homepage": "https://github.com/docker/compose",
            "Description": "Docker Compose (V2) plugin for the Docker CLI.\n"
            " This plugin provides the 'docker compose' subcommand.\n .\n"
            " Test package: Debian's docker-compose {plugin} (trixie), repacked as Docker's docker-compose-plugin.",
        },
    )
    return (
        *old_engine,
        *new_engine,
        _containerd("1.6.20-1", "1.6.20", "bookworm"),
        _containerd("1.7.24-1", "1.7.24", "trixie"),
        buildx,
        compose,
    )


@dataclass(frozen=True)
class RepoPackage:
    """One .deb in the repository: ``filename`` is relative to :attr:`DockerRepo.distro_dir` (as in Packages)."""

    name: str
    version: str
    architecture: str
    filename: str
    size: int
    sha256: str
    made_from: str  # the Debian packages it was repacked from, "name version (suite)", comma-separated


@dataclass(frozen=True)
class DockerRepo:
    """The built repository. Serve :attr:`root`; apt's URI is ``<base URL>/linux/debian`` (:meth:`uri`)."""

    root: Path
    fingerprint: str  # 40 hex digits, upper case
    codename: str
    component: str
    architectures: tuple[str, ...]
    packages: tuple[RepoPackage, ...]
    keyring: Path  # the public key, binary (dearmored): for gpgv, or a signed-by= *.gpg file
    gnupg_home: Path  # the private key's GNUPGHOME (no passphrase)

    distro_path = DISTRO_PATH  # below root: download.docker.com's path
    key_path = f"{DISTRO_PATH}/gpg"
    in_release_path = f"{DISTRO_PATH}/dists/{CODENAME}/InRelease"
    release_path = f"{DISTRO_PATH}/dists/{CODENAME}/Release"
    release_gpg_path = f"{DISTRO_PATH}/dists/{CODENAME}/Release.gpg"

    @property
    def distro_dir(self) -> Path:
        """``root/linux/debian``: the directory apt's URI points at."""
        return self.root / self.distro_path

    @property
    def key_file(self) -> Path:
        """The ASCII-armored public key (``linux/debian/gpg``), what Docker's guide saves as ``docker.asc``."""
        return self.root / self.key_path

    @property
    def versions(self) -> dict[str, list[str]]:
        """Package -> its versions, oldest first."""
        versions: dict[str, list[str]] = {}
        for package in self.packages:
            if package.version not in versions.setdefault(package.name, []):
                versions[package.name].append(package.version)
        return versions

    def packages_path(self, arch: str = "amd64") -> str:
        """The Packages file of ``arch``, relative to :attr:`root`."""
        return f"{DISTRO_PATH}/dists/{self.codename}/{self.component}/binary-{arch}/Packages"

    def deb(self, name: str, version: str, arch: str = "amd64") -> Path:
        """The .deb of ``name`` at ``version``."""
        for package in self.packages:
            if (package.name, package.version, package.architecture) == (name, version, arch):
                return self.distro_dir / package.filename
        raise KeyError(f"no {name} {version} {arch} in the repository (has {self.versions})")

    def uri(self, base_url: str) -> str:
        """apt's URI for the repository served at ``base_url`` (``http://HOST:PORT``, or that plus a prefix)."""
        return f"{base_url.rstrip('/')}/{DISTRO_PATH}"

    def sources(self, base_url: str, signed_by: str = "/etc/apt/keyrings/docker.asc", arch: str = "amd64") -> str:
        """A deb822 ``docker.sources`` as Docker's install guide writes it."""
        return (
            f"Types: deb\nURIs: {self.uri(base_url)}\nSuites: {self.codename}\nComponents: {self.component}\n"
            f"Architectures: {arch}\nSigned-By: {signed_by}\n"
        )

    def list_line(
        self, base_url: str, signed_by: str = "/usr/share/keyrings/docker-archive-keyring.gpg", arch: str = "amd64"
    ) -> str:
        """The one-line ``docker.list`` entry of Docker's older guide."""
        return f"deb [arch={arch} signed-by={signed_by}] {self.uri(base_url)} {self.codename} {self.component}\n"


def build_docker_repo(cache: Path | None = None) -> DockerRepo:
    """The repository, from the cache when it holds a complete build of this recipe, else built now (a minute)."""
    base = (cache or Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)).resolve()
    base.mkdir(parents=True, exist_ok=True)
    directory = base / recipe_hash()
    with _exclusive(base / ".lock"):
        manifest = directory / "manifest.json"
        if manifest.exists():
            return _from_manifest(directory, json.loads(manifest.read_text()))
        for stale in base.iterdir():  # other recipes' builds, and this one's unfinished build
            if stale.is_dir() and re.fullmatch(r"[0-9a-f]{16}", stale.name):
                shutil.rmtree(stale)
        directory.mkdir()
        with tempfile.TemporaryDirectory(dir=directory, prefix="work.") as work:
            repo = _Builder(directory, Path(work)).build()
        data = {
            "recipe": recipe_hash(),
            "fingerprint": repo.fingerprint,
            "codename": repo.codename,
            "component": repo.component,
            "architectures": list(repo.architectures),
            "packages": [asdict(package) for package in repo.packages],
        }
        temporary = manifest.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        temporary.replace(manifest)
        return repo


@functools.cache
def recipe_hash() -> str:
    """16 hex digits over everything that decides what is built."""
    recipe = {
        "recipe": RECIPE,
        "codename": CODENAME,
        "component": COMPONENT,
        "arches": ARCHES,
        "key": [KEY_NAME, KEY_EMAIL],
        "specs": [asdict(spec) for spec in _specs()],
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _from_manifest(directory: Path, data: dict[str, Any]) -> DockerRepo:
    return DockerRepo(
        root=directory / "root",
        fingerprint=data["fingerprint"],
        codename=data["codename"],
        component=data["component"],
        architectures=tuple(data["architectures"]),
        packages=tuple(RepoPackage(**package) for package in data["packages"]),
        keyring=directory / "docker-archive-keyring.gpg",
        gnupg_home=directory / "gnupg",
    )


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(*command: str | Path, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, command))} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
        )
    return result.stdout


def _debian_archive() -> str:
    """The Debian archive the machine's apt already uses (so that no address is written here)."""
    targets = _run("apt-get", "indextargets", "--format", "$(REPO_URI) $(RELEASE)")
    for line in targets.splitlines():
        uri, _, release = line.partition(" ")
        if "-" not in release and "security" not in uri:
            return uri
    raise RuntimeError("apt has no Debian archive configured (apt-get indextargets lists none): cannot fetch .debs")


def _digests(data: bytes) -> dict[str, str]:
    return {name: hashlib.new(name, data).hexdigest() for name in ("md5", "sha1", "sha256", "sha512")}


class _Builder:
    """Downloads Debian's packages, repacks them, writes the indexes and signs them, into ``directory``."""

    def __init__(self, directory: Path, work: Path) -> None:
        self.directory = directory
        self.work = work
        self.root = directory / "root"
        self.gnupg = directory / "gnupg"
        self.trees: dict[tuple[str, str], tuple[Path, str]] = {}  # ("name/suite", arch) -> (tree, Debian version)
        self.fingerprint = ""

    def build(self) -> DockerRepo:
        specs = _specs()
        self.download(specs)
        packages: list[RepoPackage] = []
        for arch in ARCHES:
            for spec in specs:
                packages.append(self.package(spec, arch))
        fingerprint = self.generate_key()
        try:
            self.indexes(packages)
            self.sign()
        finally:
            _run("gpgconf", "--kill", "all", env={"GNUPGHOME": str(self.gnupg)})
        return _from_manifest(
            self.directory,
            {
                "fingerprint": fingerprint,
                "codename": CODENAME,
                "component": COMPONENT,
                "architectures": list(ARCHES),
                "packages": [asdict(package) for package in packages],
            },
        )

    def download(self, specs: Iterable[_Spec]) -> None:
        """Every Debian package the specs name, for every arch, with a private apt state; each unpacked."""
        apt = self.work / "apt"
        for sub in ("lists/partial", "archives/partial", "sources.list.d"):
            (apt / sub).mkdir(parents=True, exist_ok=True)
        (apt / "status").touch()
        archive = _debian_archive()
        (apt / "sources.list").write_text(
            "".join(f"deb [arch={','.join(ARCHES)} signed-by={_KEYRING}] {archive} {suite} main\n" for suite in _SUITES)
        )
        options = [
            f"-oDir::Etc::sourcelist={apt / 'sources.list'}",
            f"-oDir::Etc::sourceparts={apt / 'sources.list.d'}",
            f"-oDir::State={apt}",
            f"-oDir::State::lists={apt / 'lists'}",
            f"-oDir::State::status={apt / 'status'}",
            f"-oDir::Cache={apt}",
            f"-oDir::Cache::archives={apt / 'archives'}",
            f"-oAPT::Architecture={ARCHES[0]}",
            *(f"-oAPT::Architectures::={arch}" for arch in ARCHES),
            "-oAPT::Sandbox::User=root",
            "-oAcquire::Languages=none",
        ]
        _run("apt-get", *options, "-qq", "update")
        wanted = sorted({source for spec in specs for source in spec.sources.values()})
        for suite in _SUITES:
            names = [
                f"{source.split('/')[0]}:{arch}/{suite}"
                for source in wanted
                for arch in ARCHES
                if source.endswith(f"/{suite}")
            ]
            if names:
                (self.work / "debs" / suite).mkdir(parents=True)
                _run("apt-get", *options, "-qq", "download", *names, cwd=self.work / "debs" / suite)
        for source in wanted:
            name, suite = source.split("/")
            for arch in ARCHES:
                (deb,) = (self.work / "debs" / suite).glob(f"{name}_*_{arch}.deb")
                tree = self.work / "unpacked" / f"{name}_{suite}_{arch}"
                tree.mkdir(parents=True)
                _run("dpkg-deb", "-x", deb, tree)
                self.trees[(source, arch)] = (tree, _run("dpkg-deb", "-f", deb, "Version").strip())

    def package(self, spec: _Spec, arch: str) -> RepoPackage:
        """Repack ``spec`` for ``arch`` into the pool."""
        tree = self.work / "build" / f"{spec.name}_{spec.version.replace(':', '_')}_{arch}"
        sources = {key: self.trees[(source, arch)] for key, source in spec.sources.items()}
        main_tree, main_version = next(iter(sources.values()))
        if not re.match(rf"(\d+:)?{re.escape(spec.upstream)}[~+-]", main_version):
            raise RuntimeError(f"{spec.name} {spec.version}: Debian's {spec.sources} is {main_version}")
        for take in spec.takes:
            source_tree = sources[take.source][0]
            matches = sorted(path for path in source_tree.glob(take.glob) if path.is_file() or path.is_symlink())
            if not matches and not take.optional:
                raise RuntimeError(f"{spec.name}: {take.glob} not in {spec.sources[take.source]} {arch}")
            base = take.glob.split("*")[0].rsplit("/", 1)[0]  # the glob's fixed directory
            for path in matches:
                if take.dest.endswith("/"):  # into that directory, keeping what is below the glob's fixed part
                    target = tree / take.dest / path.relative_to(source_tree / base)
                else:
                    target = tree / take.dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path.resolve(), target)
        for relative, text in spec.generated.items():
            (tree / relative).parent.mkdir(parents=True, exist_ok=True)
            (tree / relative).write_text(text)
            (tree / relative).chmod(0o644)
        versions = {key: version for key, (_, version) in sources.items()}
        self.control(spec, arch, tree, versions)
        if spec.version_check is not None and arch == "amd64":
            binary, expected = spec.version_check
            reported = _run(tree / binary, "--version")
            if expected not in reported:
                raise RuntimeError(f"{spec.name} {spec.version}: {binary} --version says {reported!r}, not {expected}")
        upstream_version = spec.version.split(":", 1)[-1]
        pool = self.root / DISTRO_PATH / "dists" / CODENAME / "pool" / COMPONENT / arch
        pool.mkdir(parents=True, exist_ok=True)
        deb = pool / f"{spec.name}_{upstream_version}_{arch}.deb"
        epoch = str(int(max(path.stat().st_mtime for path in main_tree.rglob("*") if path.is_file())))
        _run("dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "-b", tree, deb, env={"SOURCE_DATE_EPOCH": epoch})
        made_from = ", ".join(
            f"{spec.sources[key].split('/')[0]} {version} ({spec.sources[key].split('/')[1]})"
            for key, version in versions.items()
        )
        return RepoPackage(
            spec.name,
            spec.version,
            arch,
            str(deb.relative_to(self.root / DISTRO_PATH)),
            deb.stat().st_size,
            _digests(deb.read_bytes())["sha256"],
            made_from,
        )

    def control(self, spec: _Spec, arch: str, tree: Path, versions: Mapping[str, str]) -> None:
        """DEBIAN/: control (with Installed-Size), conffiles, md5sums (conffiles excluded), maintainer scripts."""
        files = sorted(path for path in tree.rglob("*") if path.is_file() and not path.is_symlink())
        entries = sum(1 for path in tree.rglob("*") if not path.is_file() or path.is_symlink())
        installed = sum((path.stat().st_size + 1023) // 1024 for path in files) + entries
        fields = {
            "Package": spec.name,
            "Version": spec.version,
            "Architecture": arch,
            "Maintainer": spec.maintainer,
            "Installed-Size": str(installed),
            **spec.fields,
        }
        fields["Description"] = fields["Description"].format(**versions)
        debian = tree / "DEBIAN"
        debian.mkdir()
        (debian / "control").write_text("".join(f"{key}: {value}\n" for key, value in fields.items()))
        conffiles = set(spec.conffiles)
        if conffiles:
            (debian / "conffiles").write_text("".join(f"{path}\n" for path in spec.conffiles))
        md5sums = [
            f"{hashlib.md5(path.read_bytes()).hexdigest()}  {path.relative_to(tree)}\n"
            for path in files
            if f"/{path.relative_to(tree)}" not in conffiles
        ]
        (debian / "md5sums").write_text("".join(md5sums))
        for name, text in spec.scripts.items():
            (debian / name).write_text(text)
            (debian / name).chmod(0o755)
        for path in tree.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)

    def generate_key(self) -> str:
        """A new RSA 4096 signing key in a private GNUPGHOME; its fingerprint. Exports the public key."""
        self.gnupg.mkdir(mode=0o700)
        env = {"GNUPGHOME": str(self.gnupg)}
        parameters = self.work / "key-parameters"
        parameters.write_text(
            "%no-protection\nKey-Type: RSA\nKey-Length: 4096\nKey-Usage: sign\n"
            f"Name-Real: {KEY_NAME}\nName-Email: {KEY_EMAIL}\nExpire-Date: 0\n%commit\n"
        )
        _run("gpg", "--batch", "--quiet", "--gen-key", parameters, env=env)
        listing = _run("gpg", "--batch", "--with-colons", "--fingerprint", "--list-secret-keys", env=env)
        fingerprints = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
        if len(fingerprints) != 1:
            raise RuntimeError(f"expected one key in {self.gnupg}, gpg lists {fingerprints}")
        self.fingerprint = fingerprints[0].upper()
        key_file = self.root / DISTRO_PATH / "gpg"
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(_run("gpg", "--batch", "--armor", "--export", self.fingerprint, env=env))
        keyring = self.directory / "docker-archive-keyring.gpg"
        _run("gpg", "--batch", "--yes", "--output", keyring, "--export", self.fingerprint, env=env)
        return self.fingerprint

    def indexes(self, packages: list[RepoPackage]) -> None:
        """Packages (plain, .gz, .bz2) and a Release per arch, then the suite's Release."""
        dist = self.root / DISTRO_PATH / "dists" / CODENAME
        listed: dict[str, bytes] = {}
        for arch in ARCHES:
            stanzas = []
            for package in sorted(packages, key=lambda package: (package.name, package.version)):
                if package.architecture != arch:
                    continue
                deb = self.root / DISTRO_PATH / package.filename
                data = deb.read_bytes()
                digests = _digests(data)
                control = _run("dpkg-deb", "-f", deb).rstrip("\n")
                stanzas.append(
                    f"{control}\nFilename: {package.filename}\nSize: {len(data)}\nMD5sum: {digests['md5']}\n"
                    f"SHA1: {digests['sha1']}\nSHA256: {digests['sha256']}\nSHA512: {digests['sha512']}\n"
                )
            text = "\n".join(stanzas).encode()
            binary = f"{COMPONENT}/binary-{arch}"
            listed[f"{binary}/Packages"] = text
            listed[f"{binary}/Packages.gz"] = gzip.compress(text, mtime=0)
            listed[f"{binary}/Packages.bz2"] = bz2.compress(text)
            listed[f"{binary}/Release"] = (
                f"Archive: {CODENAME}\nComponent: {COMPONENT}\nOrigin: Docker\nLabel: Docker CE\nArchitecture: {arch}\n"
            ).encode()
        for path, data in listed.items():
            (dist / path).parent.mkdir(parents=True, exist_ok=True)
            (dist / path).write_bytes(data)
        release = (
            f"Origin: Docker\nLabel: Docker CE\nSuite: {CODENAME}\nCodename: {CODENAME}\n"
            f"Architectures: {' '.join(ARCHES)}\nComponents: {COMPONENT}\n"
            "Description: Docker CE packages for Debian, repacked from Debian's own builds for pyinfra-iluvatar tests\n"
            f"Date: {formatdate(time.time(), usegmt=True)}\n"
        )
        for title, algorithm in (("MD5Sum", "md5"), ("SHA1", "sha1"), ("SHA256", "sha256"), ("SHA512", "sha512")):
            release += f"{title}:\n" + "".join(
                f" {hashlib.new(algorithm, data).hexdigest()} {len(data):>16} {path}\n"
                for path, data in sorted(listed.items())
            )
        (dist / "Release").write_text(release)

    def sign(self) -> None:
        """InRelease (clear-signed) and Release.gpg (detached, armored), SHA512, with the test key."""
        dist = self.root / DISTRO_PATH / "dists" / CODENAME
        env = {"GNUPGHOME": str(self.gnupg)}
        common = ("gpg", "--batch", "--yes", "--digest-algo", "SHA512", "--local-user", self.fingerprint)
        _run(*common, "--clearsign", "--output", dist / "InRelease", dist / "Release", env=env)
        _run(*common, "--armor", "--detach-sign", "--output", dist / "Release.gpg", dist / "Release", env=env)


@dataclass
class RepoServer:
    """A running :func:`serve`: ``url`` is ``http://HOST:PORT`` plus the prefix; ``requests`` the paths asked for."""

    url: str
    requests: list[str] = field(default_factory=list)


@contextlib.contextmanager
def serve(root: Path, host: str = "127.0.0.1", port: int = 0, prefix: str = "") -> Iterator[RepoServer]:
    """Serve ``root`` read-only over HTTP on ``host:port`` (0: any free port), below ``/prefix`` when given.

    ``host`` is an IPv4 address: a sandbox gateway (``198.18.N.1``) for sandbox hosts, or loopback; never a
    wildcard address. Directory listings are refused (404), as a repository has none.
    """
    prefix = prefix.strip("/")
    server_state = RepoServer("")
    lock = threading.Lock()

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def translate_path(self, path: str) -> str:
            if prefix:
                if not (path == f"/{prefix}" or path.startswith(f"/{prefix}/")):
                    return str(root / ".no-such-file")
                path = path[len(prefix) + 1 :] or "/"
            return super().translate_path(path)

        def list_directory(self, path: str | os.PathLike[str]) -> None:
            self.send_error(404)  # no directory listings: a repository has none
            return None

        def log_message(self, fmt: str, *args: Any) -> None:
            with lock:
                server_state.requests.append(self.path)

    if host in ("", "0.0.0.0", "::"):
        raise ValueError("serve() needs a specific address (a sandbox gateway or loopback), not a wildcard")
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="docker-repo", daemon=True)
    thread.start()
    server_state.url = f"http://{host}:{server.server_port}" + (f"/{prefix}" if prefix else "")
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
