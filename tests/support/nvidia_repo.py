"""A signed apt repository shaped like NVIDIA's container toolkit repository, for tests.

nvidia.github.io cannot be reached here, and the toolkit's binaries need an NVIDIA driver anyway. This module builds
stand-ins with ``dpkg-deb``: NVIDIA's four package names, two versions each (:data:`VERSIONS`), NVIDIA's relations
between them, and small files where NVIDIA's binaries go, then writes a *flat* repository (``Packages`` and
``Release`` beside the .debs, no ``dists/``) and signs it with an OpenPGP key generated for the purpose:

==============================  ===============================================  ================================
package                         Depends (as NVIDIA's, per version)               installs (stand-ins)
==============================  ===============================================  ================================
nvidia-container-toolkit        ``nvidia-container-toolkit-base (= V)``,         ``/usr/bin/nvidia-container-
                                ``libnvidia-container-tools (>= V)``,            runtime-hook``
                                ``(<< 2.0.0)`` (1.17.8-1); both ``(= V)``
                                (1.18.0-1)
nvidia-container-toolkit-base   (nothing)                                        ``/usr/bin/nvidia-ctk``,
                                                                                 ``nvidia-container-runtime``
libnvidia-container-tools       ``libc6 (>= 2.14)``, ``libcap2 (>= 1:2.10)``,    ``/usr/bin/nvidia-container-
                                ``libnvidia-container1 (>= <upstream>)``         cli``
libnvidia-container1            ``libc6 (>= 2.14)``                              ``libnvidia-container.so.1``
                                                                                 (a text placeholder) in the
                                                                                 multiarch library directory
==============================  ===============================================  ================================

The toolkit's relations are those of NVIDIA's own ``Packages`` (1.17.8-1 and 1.18.0-1, with ``Breaks``/``Replaces``
of ``nvidia-container-runtime``); ``libnvidia-container-tools``' too; ``libnvidia-container1`` and the base package
are simplified. Each program is a shell script answering ``--version`` the way NVIDIA's does on its first line
(``nvidia-ctk --version``: ``NVIDIA Container Toolkit CLI version 1.17.8``); every description says the package is
a test stand-in. Only amd64 is built (:data:`ARCHES`).

Layout, below :attr:`NvidiaRepo.root` (serve that directory; paths are nvidia.github.io's)::

    libnvidia-container/gpgkey                                the ASCII-armored public key
    libnvidia-container/stable/deb/amd64/{InRelease,Release,Release.gpg,Packages,Packages.gz}
    libnvidia-container/stable/deb/amd64/<package>_<version>_amd64.deb

So apt's source is ``deb [signed-by=…] http://HOST:PORT/libnvidia-container/stable/deb/amd64 /`` (a flat
repository: suite ``/``, no components; NVIDIA's guide writes ``…/stable/deb/$(ARCH) /``, see
:meth:`NvidiaRepo.list_text`), and the key is at ``http://HOST:PORT/libnvidia-container/gpgkey``.

The cache is ``$PYINFRA_ILUVATAR_TEST_NVIDIA_REPO`` or ``.build/test-nvidia-repo`` in the checkout, one directory
per recipe hash (everything that decides the content is hashed); a complete build writes ``manifest.json`` last.
The key's GNUPGHOME is kept there (``gnupg/``, no passphrase) so that tests can sign more with it.
"""

from __future__ import annotations

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
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any

from pyinfra_iluvatar.tests.support.docker_repo import serve as serve

CACHE_ENV = "PYINFRA_ILUVATAR_TEST_NVIDIA_REPO"
DEFAULT_CACHE = Path(__file__).resolve().parents[2] / ".build" / "test-nvidia-repo"
RECIPE = 1  # bump when the code below changes what is built without changing the specs that are hashed
ARCHES = ("amd64",)
VERSIONS = ("1.17.8-1", "1.18.0-1")
REPO_PATH = "libnvidia-container"  # nvidia.github.io's path of the repository
CHANNEL = "stable"
KEY_PATH = f"{REPO_PATH}/gpgkey"
KEY_NAME = "NVIDIA CORPORATION (Open Source Projects) test key"
KEY_EMAIL = "cudatools-test@example.invalid"
GUIDE_KEYRING = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"
"""Where NVIDIA's install guide puts the key (``gpg --dearmor``) and points its ``signed-by=`` at."""
_MAINTAINER = "NVIDIA CORPORATION <cudatools@nvidia.com>"
_MULTIARCH = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
_STAND_IN = " .\n Test stand-in built by pyinfra-iluvatar's tests: {what}, not NVIDIA's software."
_LIBRARY_DESCRIPTION = """NVIDIA container runtime library{part}
 The nvidia-container library provides an interface to configure GNU/Linux
 containers leveraging NVIDIA hardware. The implementation relies on several
 kernel subsystems and is designed to be agnostic of the container runtime."""


def _script(first_line: str) -> str:
    """A stand-in program: ``--version`` prints ``first_line`` (then a commit line, as NVIDIA's do); else a note."""
    return (
        "#!/bin/sh\n"
        "# Test stand-in built by pyinfra-iluvatar's tests; not NVIDIA's program.\n"
        'case "${1:-}" in\n'
        f"--version|-v|version) printf '%s\\n' '{first_line}' 'commit: test-stand-in' ;;\n"
        f'*) echo "$(basename "$0"): test stand-in ({first_line})" ;;\n'
        "esac\n"
    )


@dataclass(frozen=True)
class _Spec:
    """One package to build: its name, version, control fields and files (path -> (text, mode) or a symlink)."""

    name: str
    version: str
    fields: Mapping[str, str]  # control fields after Package/Version/Architecture/Maintainer/Installed-Size
    files: Mapping[str, tuple[str, int]]  # path below / (may hold {multiarch}) -> (content, mode)
    links: Mapping[str, str]  # path below / -> link target
    version_check: tuple[str, str] | None = None  # (program, what its --version must print first)


def _specs_of(version: str) -> tuple[_Spec, ...]:
    upstream = version.split("-", 1)[0]
    toolkit_depends = (
        f"nvidia-container-toolkit-base (= {version}), libnvidia-container-tools (>= {version}), "
        "libnvidia-container-tools (<< 2.0.0)"
        if upstream.startswith("1.17.")
        else f"nvidia-container-toolkit-base (= {version}), libnvidia-container-tools (= {version})"
    )
    ctk = f"NVIDIA Container Toolkit CLI version {upstream}"
    runtime = f"NVIDIA Container Runtime version {upstream}"
    hook = f"NVIDIA Container Runtime Hook version {upstream}"
    library = f"usr/lib/{{multiarch}}/libnvidia-container.so.{upstream}"
    return (
        _Spec(
            name="nvidia-container-toolkit",
            version=version,
            fields={
                "Priority": "optional",
                "Section": "utils",
                "Depends": toolkit_depends,
                "Breaks": "nvidia-container-runtime (<= 3.5.0-1), nvidia-container-runtime-hook",
                "Replaces": "nvidia-container-runtime (<= 3.5.0-1), nvidia-container-runtime-hook",
                "Homepage": "https://github.com/NVIDIA/nvidia-container-toolkit",
                "Description": "NVIDIA Container toolkit\n"
                " Provides tools and utilities to enable GPU support in containers.\n"
                + _STAND_IN.format(what=f"the toolkit {upstream}'s name, version and relations"),
            },
            files={"usr/bin/nvidia-container-runtime-hook": (_script(hook), 0o755)},
            links={},
            version_check=("usr/bin/nvidia-container-runtime-hook", hook),
        ),
        _Spec(
            name="nvidia-container-toolkit-base",
            version=version,
            fields={
                "Priority": "optional",
                "Section": "utils",
                "Homepage": "https://github.com/NVIDIA/nvidia-container-toolkit",
                "Description": "NVIDIA Container Toolkit Base\n"
                " Provides tools such as the NVIDIA Container Runtime and NVIDIA Container Toolkit CLI\n"
                " to enable GPU support in containers.\n"
                + _STAND_IN.format(what=f"nvidia-ctk and nvidia-container-runtime {upstream} as scripts"),
            },
            files={
                "usr/bin/nvidia-ctk": (_script(ctk), 0o755),
                "usr/bin/nvidia-container-runtime": (_script(runtime), 0o755),
            },
            links={},
            version_check=("usr/bin/nvidia-ctk", ctk),
        ),
        _Spec(
            name="libnvidia-container-tools",
            version=version,
            fields={
                "Priority": "optional",
                "Section": "utils",
                "Source": "libnvidia-container",
                "Depends": f"libc6 (>= 2.14), libcap2 (>= 1:2.10), libnvidia-container1 (>= {upstream})",
                "Homepage": "https://github.com/NVIDIA/libnvidia-container",
                "Description": _LIBRARY_DESCRIPTION.format(part=" (command-line tools)")
                + "\n .\n This package contains command-line tools that facilitate using the library.\n"
                + _STAND_IN.format(what=f"nvidia-container-cli {upstream} as a script"),
            },
            files={
                "usr/bin/nvidia-container-cli": (_script(f"cli-version: {upstream}"), 0o755),
            },
            links={},
            version_check=("usr/bin/nvidia-container-cli", f"cli-version: {upstream}"),
        ),
        _Spec(
            name="libnvidia-container1",
            version=version,
            fields={
                "Multi-Arch": "same",
                "Priority": "optional",
                "Section": "libs",
                "Source": "libnvidia-container",
                "Depends": "libc6 (>= 2.14)",
                "Homepage": "https://github.com/NVIDIA/libnvidia-container",
                "Description": _LIBRARY_DESCRIPTION.format(part="")
                + "\n .\n This package contains the shared library.\n"
                + _STAND_IN.format(what=f"a text placeholder where libnvidia-container.so.{upstream} goes"),
            },
            files={library: (f"test stand-in for libnvidia-container {upstream}: not a library\n", 0o644)},
            links={"usr/lib/{multiarch}/libnvidia-container.so.1": f"libnvidia-container.so.{upstream}"},
        ),
    )


def _specs() -> tuple[_Spec, ...]:
    return tuple(spec for version in VERSIONS for spec in _specs_of(version))


@dataclass(frozen=True)
class NvidiaPackage:
    """One .deb in the repository: ``filename`` as ``Packages`` gives it (``./<name>_<version>_<arch>.deb``)."""

    name: str
    version: str
    architecture: str
    filename: str
    size: int
    sha256: str


@dataclass(frozen=True)
class NvidiaRepo:
    """The built repository. Serve :attr:`root`; apt's URI is :meth:`uri`, the key's URL :meth:`key_url`."""

    root: Path
    fingerprint: str  # 40 hex digits, upper case
    architectures: tuple[str, ...]
    packages: tuple[NvidiaPackage, ...]
    keyring: Path  # the public key, binary (dearmored): for gpgv, or a signed-by= *.gpg file
    gnupg_home: Path  # the private key's GNUPGHOME (no passphrase)

    key_path = KEY_PATH

    @property
    def key_file(self) -> Path:
        """The ASCII-armored public key (``libnvidia-container/gpgkey``)."""
        return self.root / self.key_path

    @property
    def versions(self) -> dict[str, list[str]]:
        """Package -> its versions, oldest first."""
        versions: dict[str, list[str]] = {}
        for package in self.packages:
            if package.version not in versions.setdefault(package.name, []):
                versions[package.name].append(package.version)
        return versions

    def arch_path(self, arch: str = "amd64") -> str:
        """The flat repository of ``arch``, relative to :attr:`root`: ``libnvidia-container/stable/deb/<arch>``."""
        return f"{REPO_PATH}/{CHANNEL}/deb/{arch}"

    def arch_dir(self, arch: str = "amd64") -> Path:
        return self.root / self.arch_path(arch)

    def deb(self, name: str, version: str, arch: str = "amd64") -> Path:
        """The .deb of ``name`` at ``version``."""
        for package in self.packages:
            if (package.name, package.version, package.architecture) == (name, version, arch):
                return self.arch_dir(arch) / package.filename
        raise KeyError(f"no {name} {version} {arch} in the repository (has {self.versions})")

    def uri(self, base_url: str, arch: str = "amd64") -> str:
        """apt's URI of ``arch``'s flat repository served at ``base_url`` (``http://HOST:PORT``, or that plus a
        prefix)."""
        return f"{base_url.rstrip('/')}/{self.arch_path(arch)}"

    def key_url(self, base_url: str) -> str:
        """Where the armored key is served, as ``https://nvidia.github.io/libnvidia-container/gpgkey``."""
        return f"{base_url.rstrip('/')}/{KEY_PATH}"

    def sources(self, base_url: str, signed_by: str, arch: str = "amd64") -> str:
        """A deb822 source for the flat repository (``Suites: /``, no ``Components``)."""
        return (
            f"Types: deb\nURIs: {self.uri(base_url, arch)}\nSuites: /\nArchitectures: {arch}\nSigned-By: {signed_by}\n"
        )

    def list_text(self, base_url: str, signed_by: str = GUIDE_KEYRING) -> str:
        """``nvidia-container-toolkit.list`` as NVIDIA's install guide writes it: ``$(ARCH)`` in the URI (apt puts
        the host's architecture there), the experimental channel commented out."""
        base = f"{base_url.rstrip('/')}/{REPO_PATH}"
        return (
            f"deb [signed-by={signed_by}] {base}/stable/deb/$(ARCH) /\n"
            f"#deb [signed-by={signed_by}] {base}/experimental/deb/$(ARCH) /\n"
        )


def build_nvidia_repo(cache: Path | None = None) -> NvidiaRepo:
    """The repository, from the cache when it holds a complete build of this recipe, else built now (seconds)."""
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
            data = _Builder(directory, Path(work)).build()
        temporary = manifest.with_suffix(".tmp")
        temporary.write_text(json.dumps({"recipe": recipe_hash(), **data}, indent=2, sort_keys=True) + "\n")
        temporary.replace(manifest)
        return _from_manifest(directory, data)


@functools.cache
def recipe_hash() -> str:
    """16 hex digits over everything that decides what is built."""
    recipe = {
        "recipe": RECIPE,
        "arches": ARCHES,
        "path": [REPO_PATH, CHANNEL, KEY_PATH],
        "key": [KEY_NAME, KEY_EMAIL],
        "specs": [asdict(spec) for spec in _specs()],
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _from_manifest(directory: Path, data: Mapping[str, Any]) -> NvidiaRepo:
    return NvidiaRepo(
        root=directory / "root",
        fingerprint=data["fingerprint"],
        architectures=tuple(data["architectures"]),
        packages=tuple(NvidiaPackage(**package) for package in data["packages"]),
        keyring=directory / "nvidia-container-toolkit-keyring.gpg",
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


def _digests(data: bytes) -> dict[str, str]:
    return {name: hashlib.new(name, data).hexdigest() for name in ("md5", "sha1", "sha256", "sha512")}


class _Builder:
    """Builds the stand-in packages, writes the flat indexes and signs them, into ``directory``."""

    def __init__(self, directory: Path, work: Path) -> None:
        self.directory = directory
        self.work = work
        self.root = directory / "root"
        self.gnupg = directory / "gnupg"
        self.fingerprint = ""

    def build(self) -> dict[str, Any]:
        packages = [self.package(spec, arch) for arch in ARCHES for spec in _specs()]
        self.generate_key()
        try:
            for arch in ARCHES:
                self.indexes(arch, [package for package in packages if package.architecture == arch])
                self.sign(arch)
        finally:
            _run("gpgconf", "--kill", "all", env={"GNUPGHOME": str(self.gnupg)})
        return {
            "fingerprint": self.fingerprint,
            "architectures": list(ARCHES),
            "packages": [asdict(package) for package in packages],
        }

    def package(self, spec: _Spec, arch: str) -> NvidiaPackage:
        """Build ``spec`` for ``arch`` into the architecture's directory."""
        tree = self.work / f"{spec.name}_{spec.version}_{arch}"
        for relative, (text, mode) in spec.files.items():
            path = tree / relative.format(multiarch=_MULTIARCH[arch])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(mode)
        for relative, link in spec.links.items():
            path = tree / relative.format(multiarch=_MULTIARCH[arch])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.symlink_to(link)
        doc = tree / "usr/share/doc" / spec.name / "README.test-stand-in"
        doc.parent.mkdir(parents=True)
        doc.write_text(f"{spec.name} {spec.version}: a test stand-in built by pyinfra-iluvatar's tests.\n")
        if spec.version_check is not None:
            program, expected = spec.version_check
            reported = _run(tree / program, "--version").splitlines()
            if reported[:1] != [expected]:
                raise RuntimeError(f"{spec.name} {spec.version}: {program} --version says {reported}, not {expected}")
        self.control(spec, arch, tree)
        target = self.root / REPO_PATH / CHANNEL / "deb" / arch
        target.mkdir(parents=True, exist_ok=True)
        deb = target / f"{spec.name}_{spec.version}_{arch}.deb"
        epoch = {"SOURCE_DATE_EPOCH": "1735689600"}  # 2025-01-01: the same .deb bytes on every build
        _run("dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "-b", tree, deb, env=epoch)
        return NvidiaPackage(
            spec.name, spec.version, arch, f"./{deb.name}", deb.stat().st_size, _digests(deb.read_bytes())["sha256"]
        )

    def control(self, spec: _Spec, arch: str, tree: Path) -> None:
        """DEBIAN/control (with Installed-Size) and md5sums."""
        files = sorted(path for path in tree.rglob("*") if path.is_file() and not path.is_symlink())
        entries = sum(1 for path in tree.rglob("*") if not path.is_file() or path.is_symlink())
        installed = sum((path.stat().st_size + 1023) // 1024 for path in files) + entries
        fields = {
            "Package": spec.name,
            "Version": spec.version,
            "Architecture": arch,
            "Maintainer": _MAINTAINER,
            "Installed-Size": str(installed),
            **spec.fields,
        }
        debian = tree / "DEBIAN"
        debian.mkdir()
        (debian / "control").write_text("".join(f"{key}: {value.rstrip()}\n" for key, value in fields.items()))
        (debian / "md5sums").write_text(
            "".join(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {path.relative_to(tree)}\n" for path in files)
        )
        for path in tree.rglob("*"):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)

    def generate_key(self) -> None:
        """A new RSA 4096 signing key (NVIDIA's is one) in a private GNUPGHOME; exports the public key."""
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
        key_file = self.root / KEY_PATH
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(_run("gpg", "--batch", "--armor", "--export", self.fingerprint, env=env))
        keyring = self.directory / "nvidia-container-toolkit-keyring.gpg"
        _run("gpg", "--batch", "--yes", "--output", keyring, "--export", self.fingerprint, env=env)

    def indexes(self, arch: str, packages: list[NvidiaPackage]) -> None:
        """Packages (plain and .gz) and Release, beside the .debs, as NVIDIA's flat repository has them."""
        directory = self.root / REPO_PATH / CHANNEL / "deb" / arch
        stanzas = []
        for package in sorted(packages, key=lambda package: (package.name, package.version)):
            data = (directory / package.filename).read_bytes()
            digests = _digests(data)
            control = _run("dpkg-deb", "-f", directory / package.filename).rstrip("\n")
            stanzas.append(
                f"{control}\nFilename: {package.filename}\nSize: {len(data)}\nMD5sum: {digests['md5']}\n"
                f"SHA1: {digests['sha1']}\nSHA256: {digests['sha256']}\nSHA512: {digests['sha512']}\n"
            )
        text = "\n".join(stanzas).encode()
        listed = {"Packages": text, "Packages.gz": gzip.compress(text, mtime=0)}
        for name, data in listed.items():
            (directory / name).write_bytes(data)
        release = (
            f"Architectures: {arch}\nCodename: {CHANNEL}\nComponents: main\n"
            f"Date: {formatdate(time.time(), usegmt=True)}\n"
            "Description: NVIDIA container runtime library repository (test stand-ins for pyinfra-iluvatar)\n"
            "Label: NVIDIA CORPORATION <cudatools@nvidia.com>\n"
            f"Origin: https://nvidia.github.io/{REPO_PATH}/{CHANNEL}\nVersion: 1.0\n"
        )
        for title, algorithm in (("SHA256", "sha256"), ("SHA512", "sha512")):
            release += f"{title}:\n" + "".join(
                f" {hashlib.new(algorithm, data).hexdigest()} {len(data):>16} {name}\n"
                for name, data in sorted(listed.items())
            )
        (directory / "Release").write_text(release)

    def sign(self, arch: str) -> None:
        """InRelease (clear-signed) and Release.gpg (detached, armored), SHA512, with the test key."""
        directory = self.root / REPO_PATH / CHANNEL / "deb" / arch
        env = {"GNUPGHOME": str(self.gnupg)}
        common = ("gpg", "--batch", "--yes", "--digest-algo", "SHA512", "--local-user", self.fingerprint)
        _run(*common, "--clearsign", "--output", directory / "InRelease", directory / "Release", env=env)
        _run(*common, "--armor", "--detach-sign", "--output", directory / "Release.gpg", directory / "Release", env=env)
