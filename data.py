"""The data keys this package reads, with their defaults and what each accepts.

Every key is read through :func:`get`, which validates it and raises ``OperationValueError`` naming the host,
the key, the value given and what is accepted. Deploys read all their keys first, so bad input stops the run
before the first change on any host. The README's data-key table lists the same keys (a test keeps them equal).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pyinfra.api.exceptions import OperationValueError
from pyinfra.api.host import Host

from pyinfra_iluvatar.releases import lockfile

T = TypeVar("T")


@dataclass(frozen=True)
class DataKey(Generic[T]):
    """One data key: its name, default, a parser that raises ``ValueError`` on bad input, and docs."""

    name: str
    default: T
    parse: Callable[[Any], T]
    accepted: str
    doc: str


def _shown(value: Any) -> str:
    """``repr`` of a given value for an error message, with any URL credentials (``user:pass@``) hidden."""
    return re.sub(r"(?<=://)[^/@\s]+@", "***@", repr(value))


def get(host: Host, key: DataKey[T]) -> T:
    """The validated value of ``key`` on ``host`` (its default when unset)."""
    value = host.data.get(key.name, key.default)
    try:
        return key.parse(value)
    except (TypeError, ValueError) as error:
        raise OperationValueError(
            f"{host.name}: data key {key.name} = {_shown(value)} is not valid ({error}); accepted: {key.accepted}"
        ) from None


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ValueError("not a boolean")


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise ValueError("not a positive integer")
    number = int(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


# The kernel's default fs.nr_open: no process, root included, can have a nofile limit above it. A PAM limit
# that setrlimit refuses can refuse the login itself (pam_limits), so it is refused here instead.
NR_OPEN = 1048576


def _nofile(value: Any) -> int:
    number = _positive_int(value)
    if number > NR_OPEN:
        raise ValueError(f"above the kernel's limit of {NR_OPEN} open files")
    return number


def _limit(value: Any) -> int | str:
    if value == "unlimited":
        return "unlimited"
    return _positive_int(value)


_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")


def _packages(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.split(",") if value.strip() else []
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise ValueError("not a list of package names")
    names = [item.strip() for item in value]
    if bad := [name for name in names if not _PACKAGE.fullmatch(name)]:
        raise ValueError(f"not Debian package names: {', '.join(repr(name) for name in bad)}")
    return names


EXTRA_PACKAGES: DataKey[list[str]] = DataKey(
    "iluvatar_extra_packages",
    [],
    _packages,
    "a list of Debian package names (or one comma-separated string), without versions or architectures",
    "Packages installed on every worker in addition to the ones the setup page lists.",
)
ENERGY_TOOLS: DataKey[bool] = DataKey(
    "iluvatar_energy_tools",
    False,
    _boolean,
    "true or false",
    "Install the optional energy-monitoring tools: ipmitool and perf for the running kernel.",
)
NOFILE_LIMIT: DataKey[int] = DataKey(
    "iluvatar_nofile_limit",
    1000000,
    _nofile,
    f"a positive integer up to {NR_OPEN}",
    "Soft and hard `nofile` limit for root and all users (PAM drop-in; services get it from their units).",
)
NPROC_LIMIT: DataKey[int | str] = DataKey(
    "iluvatar_nproc_limit",
    1000000,
    _limit,
    'a positive integer or "unlimited"',
    "Soft and hard `nproc` limit for root and all users (PAM drop-in).",
)


def _one_of(*accepted: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in accepted:
            raise ValueError("not one of the accepted values")
        return str(value)

    return parse


def _optional_url(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError("not an http(s) URL")
    if "@" in value.split("/")[2]:
        raise ValueError("credentials in the URL would be printed in logs; put them in ~/.netrc instead")
    return value.rstrip("/")


def _path(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("not a path")
    return value


def _absolute_path(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"(/[A-Za-z0-9._+-]+)+/?", value):
        raise ValueError("not an absolute path of letters, digits and ._+- (not / itself)")
    return value.rstrip("/")


LOCK_FILE: DataKey[str] = DataKey(
    "iluvatar_lock_file",
    "iluvatar.lock.json",
    _path,
    "a path on the controller (relative to the directory pyinfra runs in)",
    "The lock file written by `pyinfra-iluvatar lock`: versions, URLs and sha256 of every release artifact.",
)
MIRROR: DataKey[str | None] = DataKey(
    "iluvatar_mirror",
    None,
    _optional_url,
    "an http(s) base URL without credentials, or empty",
    "Fetch release artifacts from `<mirror>/github.com/…` and `<mirror>/go.dev/dl/…` instead of upstream.",
)


def _download_mode(value: Any) -> Literal["host", "controller"]:
    if value == "host" or value == "controller":
        return value  # type: ignore[no-any-return]
    raise ValueError("not one of the accepted values")


DOWNLOAD: DataKey[Literal["host", "controller"]] = DataKey(
    "iluvatar_download",
    "host",
    _download_mode,
    '"host" or "controller"',
    "Who downloads artifacts: each host, or the controller once per artifact (then uploads to every host).",
)
DOWNLOAD_CACHE: DataKey[str] = DataKey(
    "iluvatar_download_cache",
    "~/.cache/pyinfra-iluvatar/artifacts",
    _path,
    "a directory on the controller",
    'The controller\'s verified artifact cache, for `iluvatar_download: "controller"`.',
)
CONTAINERD_REPLACE_PACKAGE: DataKey[bool] = DataKey(
    "iluvatar_containerd_replace_package",
    False,
    _boolean,
    "true or false",
    "Remove a distribution `containerd`/`containerd.io` package instead of stopping with an error.",
)
SNAPSHOTTER: DataKey[str] = DataKey(
    "iluvatar_snapshotter",
    "zfs",
    _one_of("zfs", "overlayfs", "native"),
    '"zfs", "overlayfs" or "native"',
    "containerd's default snapshotter, and the worker's `container_resources.snapshotter`.",
)
CNI_BIN_DIR: DataKey[str] = DataKey(
    "iluvatar_cni_bin_dir",
    "/opt/cni/bin",
    _absolute_path,
    "an absolute path",
    "Where the CNI plugins and cnitool go (the worker's `cni_plugin_bin`).",
)


def _prebuilt(value: Any) -> dict[str, lockfile.Artifact] | None:
    if value in (None, {}):
        return None
    if not isinstance(value, dict):
        raise ValueError("not a mapping")
    artifacts = {}
    for arch, entry in value.items():
        if not isinstance(entry, dict) or set(entry) != {"url", "sha256"}:
            raise ValueError(f"{arch}: expected exactly url and sha256")
        url = _optional_url(entry["url"])
        sha256 = str(entry["sha256"]).lower()
        if not url or not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError(f"{arch}: expected an http(s) url and a 64-hex-digit sha256")
        filename = url.rsplit("/", 1)[-1]
        if not re.fullmatch(r"[A-Za-z0-9._+-]+", filename):
            raise ValueError(f"{arch}: the URL must end in a plain file name (no query string)")
        artifacts[str(arch)] = lockfile.Artifact(filename, url, sha256, mirror_path="")
    if len({artifact.filename.endswith((".tgz", ".tar.gz")) for artifact in artifacts.values()}) > 1:
        raise ValueError("either every architecture's file is a .tgz/.tar.gz archive or none is")
    return artifacts


CNITOOL_PREBUILT: DataKey[dict[str, lockfile.Artifact] | None] = DataKey(
    "iluvatar_cnitool_prebuilt",
    None,
    _prebuilt,
    'a mapping of architecture to {"url": ..., "sha256": ...}, or empty',
    "Install this prebuilt cnitool (e.g. from your mirror) instead of building it with `go install`.",
)
GO_ROOT: DataKey[str] = DataKey(
    "iluvatar_go_root",
    "/usr/local/lib/pyinfra-iluvatar/go",
    _absolute_path,
    "an absolute path",
    "Where the locked Go toolchain that builds cnitool goes (never `/usr/local/go`, which may be the admin's).",
)
GO_REMOVE_AFTER_BUILD: DataKey[bool] = DataKey(
    "iluvatar_go_remove_after_build",
    False,
    _boolean,
    "true or false",
    "Remove the Go toolchain once cnitool is built.",
)

ALL_KEYS: tuple[DataKey[Any], ...] = (
    EXTRA_PACKAGES,
    ENERGY_TOOLS,
    NOFILE_LIMIT,
    NPROC_LIMIT,
    LOCK_FILE,
    MIRROR,
    DOWNLOAD,
    DOWNLOAD_CACHE,
    CONTAINERD_REPLACE_PACKAGE,
    SNAPSHOTTER,
    CNI_BIN_DIR,
    CNITOOL_PREBUILT,
    GO_ROOT,
    GO_REMOVE_AFTER_BUILD,
)


_locks: dict[str, lockfile.Lock] = {}


def lock(host: Host) -> lockfile.Lock:
    """The lock file named by ``iluvatar_lock_file`` on ``host``, read once per run and path."""
    path = get(host, LOCK_FILE)
    if path not in _locks:
        try:
            _locks[path] = lockfile.load(Path(path))
        except lockfile.LockError as error:
            raise OperationValueError(f"{host.name}: data key {LOCK_FILE.name}: {error}") from None
    return _locks[path]
