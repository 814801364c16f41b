"""The data keys this package reads, with their defaults and what each accepts.

:func:`parse` validates one key on one host and raises :class:`DataError` naming the host, the key, the value
given (shortened, URL credentials hidden), where the inventory set it and what is accepted. ``preflight`` parses
every key on every host before the first operation, so bad input stops the run before any change. The README's
data-key table lists the same keys (a test keeps them equal).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pyinfra.api.host import Host

from pyinfra_iluvatar import urls
from pyinfra_iluvatar.operations import build, docker, nvidia
from pyinfra_iluvatar.operations.containerd import SNAPSHOTTERS
from pyinfra_iluvatar.operations.release import DOWNLOAD_MODES, DownloadMode
from pyinfra_iluvatar.operations.worker_config import WORKER_CONFIG, override_errors
from pyinfra_iluvatar.releases import lockfile
from pyinfra_iluvatar.releases.components import ARCHES, MACHINE_ARCH

T = TypeVar("T")


@dataclass(frozen=True)
class DataKey(Generic[T]):
    """One data key: its name, default, a parser that raises ``ValueError`` on bad input, and docs."""

    name: str
    default: T
    parse: Callable[[Any], T]
    accepted: str
    doc: str
    shows_value: bool = True
    """False for a key whose value may hold a secret (an influx token in worker config overrides): never echoed."""


class DataError(ValueError):
    """A data key's value on one host is not accepted; ``problem`` says key, value, origin and what is accepted."""

    def __init__(self, host: str, problem: str) -> None:
        super().__init__(f"{host}: {problem}")
        self.host = host
        self.problem = problem


_SHOWN_MAX = 100


def shown(value: Any) -> str:
    """``repr`` of a given value for a message: URL credentials hidden, cut short when long."""
    text = urls.redact(repr(value))
    if len(text) > _SHOWN_MAX:
        text = f"{text[: _SHOWN_MAX - 20]}… ({len(text)} characters)"
    return text


def given(host: Host) -> set[str]:
    """The names of the data keys the inventory (or ``--data``) sets for ``host``, from every layer."""
    inventory = host.inventory
    layers = [inventory.override_data, inventory.host_data.get(host.name, {}), inventory.data]
    layers += [inventory.group_data.get(group, {}) for group in host.groups]
    return {str(name) for layer in layers for name in layer}


def origin(host: Host, name: str) -> str:
    """Where the inventory set data key ``name`` for ``host``: ``--data``, host data, a group's data, or default."""
    inventory = host.inventory
    if name in inventory.override_data:
        return "--data"
    if name in inventory.host_data.get(host.name, {}):
        return "host data"
    for group in reversed(host.groups):
        if name in inventory.group_data.get(group, {}):
            return f"group {group!r} data"
    if name in inventory.data:
        return "inventory data"
    return "default"


def error(host: Host, key: DataKey[Any], problem: str) -> str:
    """``<key> = <value> (<where it was set>) <problem>; accepted: …``: one bad key on ``host``, for a message."""
    value = shown(host.data.get(key.name, key.default)) if key.shows_value else "(value not shown)"
    return f"{key.name} = {value} ({origin(host, key.name)}) {problem}; accepted: {key.accepted}"


def parse(host: Host, key: DataKey[T]) -> T:
    """The validated value of ``key`` on ``host`` (its default when unset); :class:`DataError` when not accepted."""
    try:
        return key.parse(host.data.get(key.name, key.default))
    except (TypeError, ValueError) as problem:
        raise DataError(host.name, error(host, key, f"is not valid: {problem}")) from None


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ValueError("not a boolean")


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise ValueError("not a positive integer")
    if len(str(value).strip()) > 18:
        raise ValueError("far too large")
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
        if not isinstance(value, str) or value not in accepted:
            raise ValueError("not one of the accepted values")
        return value

    return parse


def choices(accepted: tuple[str, ...]) -> str:
    """``"a", "b" or "c"``: an accepted set, as the README table and messages spell it."""
    quoted = [f'"{item}"' for item in accepted]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _optional_url(value: Any) -> str | None:
    if value in (None, ""):
        return None
    return urls.http_url(value, base=True)


PATH_MAX = 4096
NAME_MAX = 255


def _controller_path(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("not a path")
    if "\0" in value or "\n" in value:
        raise ValueError("contains a NUL or newline character")
    if len(value.encode()) >= PATH_MAX:
        raise ValueError(f"longer than {PATH_MAX - 1} bytes")
    return value


_PATH_COMPONENT = re.compile(r"[A-Za-z0-9._+-]+")


def _absolute_path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError("not an absolute path")
    if len(value.encode()) >= PATH_MAX:
        raise ValueError(f"longer than {PATH_MAX - 1} bytes")
    parts = [part for part in value.split("/") if part]
    if not parts:
        raise ValueError("is the root directory")
    for part in parts:
        if part in (".", ".."):
            raise ValueError(f"has a {part!r} component")
        if not _PATH_COMPONENT.fullmatch(part):
            raise ValueError(f"component {shown(part)} is not made of letters, digits and ._+-")
        if len(part) > NAME_MAX:
            raise ValueError(f"a component is longer than {NAME_MAX} characters")
    return "/" + "/".join(parts)


LOCK_FILE: DataKey[str] = DataKey(
    "iluvatar_lock_file",
    "iluvatar.lock.json",
    _controller_path,
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


def _download_mode(value: Any) -> DownloadMode:
    if value == "host" or value == "controller":
        return value  # type: ignore[no-any-return]
    raise ValueError("not one of the accepted values")


DOWNLOAD: DataKey[DownloadMode] = DataKey(
    "iluvatar_download",
    "host",
    _download_mode,
    choices(DOWNLOAD_MODES),
    "Who downloads artifacts: each host, or the controller once per artifact (then uploads to every host).",
)
DOWNLOAD_CACHE: DataKey[str] = DataKey(
    "iluvatar_download_cache",
    "~/.cache/pyinfra-iluvatar/artifacts",
    _controller_path,
    "a directory on the controller (or one it can create)",
    'The controller\'s verified artifact cache, for `iluvatar_download: "controller"`.',
)
VERIFY_INSTALLED: DataKey[bool] = DataKey(
    "iluvatar_verify_installed",
    False,
    _boolean,
    "true or false",
    "Hash every installed release binary against its receipt on each run; false: a converged run trusts each file's"
    " size, ctime and inode as installed (`check` always hashes).",
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
    _one_of(*SNAPSHOTTERS),
    choices(SNAPSHOTTERS),
    "containerd's default snapshotter, and the worker's `container_resources.snapshotter`.",
)
CNI_BIN_DIR: DataKey[str] = DataKey(
    "iluvatar_cni_bin_dir",
    "/opt/cni/bin",
    _absolute_path,
    "an absolute path (no . or .. components) of letters, digits and ._+-",
    "Where the CNI plugins and cnitool go (the worker's `cni_plugin_bin`).",
)


_MACHINE_NAMES = {machine: arch for machine, arch in MACHINE_ARCH.items() if machine != arch}
_PLAIN_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def _prebuilt(value: Any) -> dict[str, lockfile.Artifact] | None:
    if value in (None, {}):
        return None
    if not isinstance(value, dict):
        raise ValueError("not a mapping")
    artifacts = {}
    for arch, entry in value.items():
        if arch not in ARCHES:
            hint = f" (write {_MACHINE_NAMES[arch]!r})" if arch in _MACHINE_NAMES else ""
            raise ValueError(f"{shown(arch)} is not a Debian architecture name{hint}; known: {', '.join(ARCHES)}")
        if not isinstance(entry, dict) or set(entry) != {"url", "sha256"}:
            raise ValueError(f"{arch}: expected exactly url and sha256")
        try:
            url = urls.http_url(entry["url"])
        except ValueError as error:
            raise ValueError(f"{arch}: url {error}") from None
        sha256 = entry["sha256"]
        if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
            raise ValueError(f"{arch}: sha256 is not 64 hex digits")
        filename = url.rsplit("/", 1)[-1]
        if not _PLAIN_FILE.fullmatch(filename):
            raise ValueError(f"{arch}: the URL must end in a plain file name")
        artifacts[arch] = lockfile.Artifact(filename, url, sha256.lower(), mirror_path="")
    if len({artifact.filename.endswith((".tgz", ".tar.gz")) for artifact in artifacts.values()}) > 1:
        raise ValueError("either every architecture's file is a .tgz/.tar.gz archive or none is")
    return artifacts


CNITOOL_PREBUILT: DataKey[dict[str, lockfile.Artifact] | None] = DataKey(
    "iluvatar_cnitool_prebuilt",
    None,
    _prebuilt,
    'a mapping of Debian architecture (amd64, arm64, …) to {"url": ..., "sha256": ...}, or empty',
    "Install this prebuilt cnitool (e.g. from your mirror) instead of building it with `go install`.",
)
GO_ROOT: DataKey[str] = DataKey(
    "iluvatar_go_root",
    "/usr/local/lib/pyinfra-iluvatar/go",
    _absolute_path,
    "an absolute path (no . or .. components) of letters, digits and ._+-",
    "Where the locked Go toolchain that builds cnitool goes (never `/usr/local/go`, which may be the admin's).",
)
GO_REMOVE_AFTER_BUILD: DataKey[bool] = DataKey(
    "iluvatar_go_remove_after_build",
    False,
    _boolean,
    "true or false",
    "Remove the Go toolchain once cnitool is built.",
)

ISOLATIONS = ("containerd", "docker")
"""The container isolations the worker deploy sets up (Ilúvatar uses each one that answers)."""


def _isolation(value: Any) -> tuple[str, ...]:
    names = [part.strip() for part in value.split(",")] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(name, str) for name in names):
        raise ValueError("not an isolation name or a list of them")
    if bad := [name for name in names if name not in ISOLATIONS]:
        raise ValueError(f"not an isolation: {', '.join(shown(name) for name in bad)}")
    return tuple(dict.fromkeys(names))


ISOLATION: DataKey[tuple[str, ...]] = DataKey(
    "iluvatar_isolation",
    ("containerd",),
    _isolation,
    f"one of {choices(ISOLATIONS)}, or a list of them",
    "The container isolations the worker gets; with both, Docker's containerd package serves the worker too.",
)

DOCKER_SOURCES = ("docker", "distribution")
"""Where Docker comes from: Docker's apt repository (its install guide's way), or the distribution's docker.io."""
DOCKER_SOURCE: DataKey[str] = DataKey(
    "iluvatar_docker_source",
    "docker",
    _one_of(*DOCKER_SOURCES),
    choices(DOCKER_SOURCES),
    "Docker's apt repository (`docker-ce`, `containerd.io`, …) or the distribution's `docker.io`.",
)


def _url(value: Any) -> str:
    return urls.http_url(value, base=True)


DOCKER_REPOSITORY: DataKey[str] = DataKey(
    "iluvatar_docker_repository",
    docker.DOCKER_REPOSITORY,
    _url,
    "an http(s) base URL without credentials (its `<distribution>/` holds the repository and `gpg`)",
    "Docker's apt repository, or your mirror of it.",
)


def _fingerprint(value: Any) -> str:
    text = value.replace(" ", "") if isinstance(value, str) else ""
    if not re.fullmatch(r"[0-9A-Fa-f]{40}", text):
        raise ValueError("not 40 hex digits")
    return text.upper()


DOCKER_KEY_FINGERPRINT: DataKey[str] = DataKey(
    "iluvatar_docker_key_fingerprint",
    docker.DOCKER_KEY_FINGERPRINT,
    _fingerprint,
    "an OpenPGP key fingerprint: 40 hex digits (spaces allowed)",
    "The fingerprint the repository's signing key must have (Docker's release key by default).",
)


def _optional_version(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not re.fullmatch(r"(\d+:)?[0-9][A-Za-z0-9.+~-]*", value):
        raise ValueError("not a Debian package version")
    return value


DOCKER_VERSION: DataKey[str | None] = DataKey(
    "iluvatar_docker_version",
    None,
    _optional_version,
    "a package version as `apt-cache madison docker-ce` lists it (`5:28.2.2-1~debian.12~bookworm`), or empty",
    "Pin `docker-ce` and `docker-ce-cli` to this version (Docker's repository only); empty: the newest.",
)


def _daemon(value: Any) -> Mapping[str, Any]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise ValueError("not a mapping of daemon.json keys")
    return value


DOCKER_DAEMON: DataKey[Mapping[str, Any]] = DataKey(
    "iluvatar_docker_daemon",
    {"exec-opts": ["native.cgroupdriver=systemd"]},
    _daemon,
    "a mapping of `/etc/docker/daemon.json` keys",
    "Merged key by key into daemon.json (keys already there and not named here are kept).",
)


def _users(value: Any) -> tuple[str, ...]:
    if value in (None, "", [], ()):
        return ()
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
        raise ValueError("not a list of user names")
    if bad := [name for name in names if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}\$?", name.strip())]:
        raise ValueError(f"not user names: {', '.join(shown(name) for name in bad)}")
    return tuple(name.strip() for name in names)


DOCKER_USERS: DataKey[tuple[str, ...]] = DataKey(
    "iluvatar_docker_users",
    (),
    _users,
    "a list of existing user names (or one comma-separated string)",
    "Users added to the `docker` group (it lets them run containers as root: add only who should).",
)

GPU_MODES = ("auto", "true", "false")
"""``auto``: GPU work where the host has an NVIDIA GPU; ``true``: the host must have one, driver loaded; ``false``."""


def _gpu_mode(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.lower() in ("auto", "true", "yes", "1", "false", "no", "0"):
        lowered = value.lower()
        return "auto" if lowered == "auto" else "true" if lowered in ("true", "yes", "1") else "false"
    raise ValueError("not auto, true or false")


GPU: DataKey[str] = DataKey(
    "iluvatar_gpu",
    "auto",
    _gpu_mode,
    '"auto", true or false',
    "NVIDIA GPU support (toolkit, runtimes, nvidia-persistenced): `auto` where the host has an NVIDIA GPU; `true` "
    "requires one with its driver loaded.",
)


def _optional_package(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > 100 or not _PACKAGE.fullmatch(value):
        raise ValueError("not a Debian package name")
    return value


NVIDIA_DRIVER_PACKAGE: DataKey[str | None] = DataKey(
    "iluvatar_nvidia_driver_package",
    None,
    _optional_package,
    "a Debian package name (`nvidia-driver-470-server`, `nvidia-driver`), or empty",
    "Install this NVIDIA driver package on GPU hosts; empty: the driver is a prerequisite (its absence an error).",
)
NVIDIA_REPOSITORY: DataKey[str] = DataKey(
    "iluvatar_nvidia_repository",
    nvidia.NVIDIA_REPOSITORY,
    _url,
    "an http(s) base URL without credentials (its `stable/deb/<arch>/` holds the repository and `gpgkey` the key)",
    "NVIDIA's container toolkit apt repository, or your mirror of it.",
)
NVIDIA_KEY_FINGERPRINT: DataKey[str] = DataKey(
    "iluvatar_nvidia_key_fingerprint",
    nvidia.NVIDIA_KEY_FINGERPRINT,
    _fingerprint,
    "an OpenPGP key fingerprint: 40 hex digits (spaces allowed)",
    "The fingerprint the toolkit repository's signing key must have (NVIDIA's by default).",
)


def _version(value: Any) -> str:
    version = _optional_version(value)
    if version is None:
        raise ValueError("empty")
    return version


NVIDIA_TOOLKIT_VERSION: DataKey[str] = DataKey(
    "iluvatar_nvidia_toolkit_version",
    nvidia.TOOLKIT_VERSION,
    _version,
    "a package version as `apt-cache madison nvidia-container-toolkit` lists it (`1.17.8-1`)",
    "The one version the four NVIDIA container toolkit packages are installed at and pinned to.",
)
GPU_MPS: DataKey[bool] = DataKey(
    "iluvatar_gpu_mps",
    False,
    _boolean,
    "true or false (true needs Docker isolation)",
    "The host runs the worker's GPUs in MPS mode: pre-pull the image its MPS daemon container runs.",
)


def _image(value: Any) -> str:
    if not nvidia.valid_image_reference(value):
        raise ValueError("not a Docker image reference ([registry[:port]/]name[:tag][@sha256:digest])")
    return str(value)


GPU_MPS_IMAGE: DataKey[str] = DataKey(
    "iluvatar_gpu_mps_image",
    nvidia.MPS_IMAGE,
    _image,
    "a Docker image reference (`[registry[:port]/]name[:tag][@sha256:digest]`, lower-case name)",
    "The image the worker's MPS daemon runs, pulled on MPS hosts (the worker never pulls it).",
)

ZFS: DataKey[bool] = DataKey(
    "iluvatar_zfs",
    True,
    _boolean,
    "true or false (false needs iluvatar_snapshotter overlayfs or native)",
    "Set up the ZFS pool and the dataset containerd's zfs snapshotter uses.",
)
ZFS_IMPLEMENTATIONS = ("auto", "openzfs", "zfs-fuse")
"""``auto``: the zfs-fuse a host already runs, else OpenZFS (kernel module: Ubuntu ships it, Debian builds it)."""
ZFS_IMPLEMENTATION: DataKey[str] = DataKey(
    "iluvatar_zfs_implementation",
    "auto",
    _one_of(*ZFS_IMPLEMENTATIONS),
    choices(ZFS_IMPLEMENTATIONS),
    "Which ZFS: OpenZFS (`zfsutils-linux`; Debian adds `zfs-dkms` from contrib) or zfs-fuse; `auto` keeps an"
    " installed zfs-fuse, else OpenZFS.",
)

_POOL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
# zpool refuses these (OpenZFS's pool_namecheck): names beginning so, "log", and disk-like names (c0…).
_RESERVED_POOL_NAMES = re.compile(r"(mirror|raidz|draid|spare).*|log|c[0-9].*")


def _pool_name(value: Any) -> str:
    if not isinstance(value, str) or not _POOL_NAME.fullmatch(value):
        raise ValueError("not a pool name")
    if _RESERVED_POOL_NAMES.fullmatch(value):
        raise ValueError("zpool reserves it (names beginning mirror, raidz, draid, spare or c<digit>, and log)")
    return value


ZFS_POOL: DataKey[str] = DataKey(
    "iluvatar_zfs_pool",
    "ilu-pool",
    _pool_name,
    "a letter, then up to 63 letters, digits, _ or -",
    "The ZFS pool (created only when absent, imported when exported, never destroyed or changed).",
)
ZFS_VDEV_FILE: DataKey[str] = DataKey(
    "iluvatar_zfs_vdev_file",
    "/var/lib/iluvatar/zfs/ilu-pool",
    _absolute_path,
    "an absolute path (no . or .. components) of letters, digits and ._+-",
    "The pool's file vdev, when `iluvatar_zfs_devices` is empty: created with `fallocate`, never resized or replaced.",
)

_SIZE = re.compile(r"(\d{1,15})([KMGT])")
_SIZE_FACTOR = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _size(value: Any) -> str:
    match = _SIZE.fullmatch(value.strip().upper()) if isinstance(value, str) else None
    if match is None:
        raise ValueError("not a size")
    if int(match[1]) * _SIZE_FACTOR[match[2]] < 64 << 20:
        raise ValueError("smaller than ZFS's smallest vdev (64M)")
    return match[0]


ZFS_VDEV_SIZE: DataKey[str] = DataKey(
    "iluvatar_zfs_vdev_size",
    "100G",
    _size,
    "a size of at least 64M: digits and K, M, G or T",
    "The file vdev's size when it is created.",
)


def _devices(value: Any) -> tuple[str, ...]:
    if value in (None, "", [], ()):
        return ()
    if not isinstance(value, (list, tuple)):
        raise ValueError("not a list of device paths")
    devices = tuple(_absolute_path(device) for device in value)
    if bad := [device for device in devices if not device.startswith("/dev/")]:
        raise ValueError(f"not under /dev: {', '.join(shown(device) for device in bad)}")
    if len(set(devices)) != len(devices):
        raise ValueError("a device is listed twice")
    return devices


ZFS_DEVICES: DataKey[tuple[str, ...]] = DataKey(
    "iluvatar_zfs_devices",
    (),
    _devices,
    "a list of device paths under /dev (best /dev/disk/by-id/…), or empty",
    "Make the pool from these whole devices instead of a file vdev.",
)
ZFS_FORCE: DataKey[bool] = DataKey(
    "iluvatar_zfs_force",
    False,
    _boolean,
    "true or false",
    "Let `zpool create -f` take devices that hold a filesystem, a partition table or another pool's label.",
)

WORKER_CONFIG_PATH: DataKey[str] = DataKey(
    "iluvatar_worker_config_path",
    WORKER_CONFIG,
    _absolute_path,
    "an absolute path (no . or .. components) of letters, digits and ._+-",
    "Where the worker's `worker.json` goes (the worker's `-c FILE`).",
)


def _optional_name(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > 253 or not re.fullmatch(r"[A-Za-z0-9@._-]+", value):
        raise ValueError("not a name of letters, digits and @._-")
    return value


WORKER_NAME: DataKey[str | None] = DataKey(
    "iluvatar_worker_name",
    None,
    _optional_name,
    "letters, digits and @._- (at most 253), or empty",
    "The worker's `name`; empty: the host's inventory name.",
)


def _optional_address(value: Any) -> str | None:
    if value in (None, ""):
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError("not an IP address") from None


WORKER_ADDRESS: DataKey[str | None] = DataKey(
    "iluvatar_worker_address",
    None,
    _optional_address,
    "an IPv4 or IPv6 address, or empty",
    "The worker's `address`; empty: the first IPv4 address of its hardware interface.",
)


def _port(value: Any) -> int:
    number = _positive_int(value)
    if number > 65535:
        raise ValueError("above 65535")
    return number


WORKER_PORT: DataKey[int] = DataKey(
    "iluvatar_worker_port",
    8079,
    _port,
    "a port number from 1 to 65535",
    "The worker's `port`.",
)


def _optional_interface(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or value in (".", "..") or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,15}", value):
        raise ValueError("not a network interface name")
    return value


HARDWARE_INTERFACE: DataKey[str | None] = DataKey(
    "iluvatar_hardware_interface",
    None,
    _optional_interface,
    "an interface name (1 to 15 of letters, digits and _.:-), or empty",
    "The worker's `networking.hardware_interface`; empty: the default route's interface.",
)


def _count(value: Any) -> int:
    if isinstance(value, (int, str)) and str(value).strip() == "0":
        return 0
    return _positive_int(value)


MEMORY_RESERVE_MB: DataKey[int] = DataKey(
    "iluvatar_memory_reserve_mb",
    1024,
    _count,
    "a whole number of MiB (0 or more)",
    "Memory kept for the host: the worker's `container_resources.memory_mb` is the host's memory less this.",
)
CPU_RESERVE: DataKey[int] = DataKey(
    "iluvatar_cpu_reserve",
    1,
    _count,
    "a whole number of CPUs (0 or more)",
    "CPUs kept for the host: the worker's `cpu_resource.count` is the host's CPUs less this (at least 1).",
)
LOAD_BALANCER_URL: DataKey[str | None] = DataKey(
    "iluvatar_load_balancer_url",
    None,
    _optional_url,
    "an http(s) URL without credentials, or empty",
    "The worker's `load_balancer_url`; empty: port 8078 of the inventory's `controller` host, else localhost.",
)


def _overrides(value: Any) -> Mapping[str, Any]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise ValueError("not a mapping")
    if problems := override_errors(value):
        raise ValueError("; ".join(problems))
    return value


WORKER_CONFIG_OVERRIDES: DataKey[Mapping[str, Any]] = DataKey(
    "iluvatar_worker_config",
    {},
    _overrides,
    "a mapping merged key by key into worker.json, each known key of the type Ilúvatar's template has",
    "Your own worker.json values (logging, influx, limits, …), merged over what the deploy writes.",
    shows_value=False,
)


ROLES = ("worker", "build")


def _roles(value: Any) -> tuple[str, ...]:
    names = [part.strip() for part in value.split(",")] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(name, str) for name in names):
        raise ValueError("not a role or a list of them")
    if bad := [name for name in names if name not in ROLES]:
        raise ValueError(f"not a role: {', '.join(shown(name) for name in bad)}")
    return tuple(dict.fromkeys(names))


ROLE: DataKey[tuple[str, ...]] = DataKey(
    "iluvatar_role",
    ("worker",),
    _roles,
    f"one of {choices(ROLES)}, or a list of them",
    "What `check` checks the host for: an Ilúvatar worker (`deploys/worker.py`), a build host (`deploys/build.py`).",
)


def _user(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value):
        raise ValueError("not a user name")
    return value


BUILD_USER: DataKey[str] = DataKey(
    "iluvatar_build_user",
    "root",
    _user,
    "an existing user's name (lower-case letters, digits, _ and -)",
    "The user who builds Ilúvatar on a build host: its `cross`, its container engine, its dev configs.",
)
BUILD_ENGINES = ("docker", "podman")
BUILD_ENGINE: DataKey[str] = DataKey(
    "iluvatar_build_engine",
    "docker",
    _one_of(*BUILD_ENGINES),
    choices(BUILD_ENGINES),
    "The container engine `cross` builds in: Docker (the `iluvatar_docker_*` keys apply) or Podman.",
)
RUST_SOURCES = ("rustup", "distribution")
RUST_SOURCE: DataKey[str] = DataKey(
    "iluvatar_rust_source",
    "rustup",
    _one_of(*RUST_SOURCES),
    choices(RUST_SOURCES),
    "Rust for the build user from rustup (`rustup-init` from the lock: `lock --rustup latest`) or the distribution's"
    " `rustc`/`cargo`.",
)


def _toolchain(value: Any) -> str:
    if not isinstance(value, str) or not build.TOOLCHAIN.fullmatch(value):
        raise ValueError("not a toolchain: stable, beta, nightly or a version, with an optional -YYYY-MM-DD")
    return value


RUST_TOOLCHAIN: DataKey[str] = DataKey(
    "iluvatar_rust_toolchain",
    build.RUST_TOOLCHAIN,
    _toolchain,
    "`stable`, `beta`, `nightly` or a version (`1.85.0`), each with an optional `-YYYY-MM-DD`",
    "The build user's default Rust toolchain (rustup only).",
)
CROSS_VERSION: DataKey[str | None] = DataKey(
    "iluvatar_cross_version",
    build.CROSS_VERSION,
    _optional_version,
    "a `cross` release on crates.io (`0.2.5`), or empty for no `cross`",
    "The `cross` the build user gets (`cargo install --locked`).",
)
ANSIBLE_VERSION: DataKey[str | None] = DataKey(
    "iluvatar_ansible_version",
    build.ANSIBLE_VERSION,
    _optional_version,
    "an `ansible` release on the package index (`10.7.0`), or empty for no ansible",
    "The ansible installed in its own virtualenv (never the system Python).",
)
ANSIBLE_VENV: DataKey[str] = DataKey(
    "iluvatar_ansible_venv",
    build.ANSIBLE_VENV,
    _absolute_path,
    "an absolute path (no . or .. components) of letters, digits and ._+-",
    "The ansible virtualenv; its programs are linked into `/usr/local/bin`.",
)


def _optional_path(value: Any) -> str | None:
    return None if value in (None, "") else _absolute_path(value)


BUILD_CHECKOUT: DataKey[str | None] = DataKey(
    "iluvatar_build_checkout",
    None,
    _optional_path,
    "the absolute path of an Ilúvatar checkout, or empty",
    "Write `worker.dev.json` and `controller.dev.json` for a single-machine setup into this checkout.",
)


BUILD_REPOSITORY: DataKey[str | None] = DataKey(
    "iluvatar_build_repository",
    None,
    _optional_url,
    "an http(s) URL without credentials (`https://github.com/COS-IN/iluvatar-faas.git`), or empty",
    "Clone Ilúvatar from here into `iluvatar_build_checkout` (as the build user); empty: no clone.",
)


def _git_ref(value: Any) -> str:
    if not isinstance(value, str) or not build.GIT_REF.fullmatch(value):
        raise ValueError("not a branch, tag or commit name")
    return value


BUILD_REF: DataKey[str] = DataKey(
    "iluvatar_build_ref",
    "master",
    _git_ref,
    "a branch, tag or commit of the repository",
    "What the checkout follows: checked out again (and rebuilt) only when it names another commit upstream.",
)


def _optional_target(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not build.MAKE_TARGET.fullmatch(value):
        raise ValueError("not a make target name")
    return value


BUILD_TARGET: DataKey[str | None] = DataKey(
    "iluvatar_build_target",
    None,
    _optional_target,
    "a target of Ilúvatar's Makefile (`release`, `debug`, `relwdebug`, …), or empty",
    "Build this target in the checkout (`make TARGET_PLAT=… <target>`, as the build user); empty: no build.",
)
BUILD_PLATFORM: DataKey[str] = DataKey(
    "iluvatar_build_platform",
    build.TARGET_PLATFORMS[0],
    _one_of(*build.TARGET_PLATFORMS),
    choices(build.TARGET_PLATFORMS),
    "The `TARGET_PLAT` the build is for (`aarch64-unknown-linux-gnu`: Jetsons).",
)


def _network(value: Any) -> str:
    try:
        network = ipaddress.IPv4Network(value)
    except (ValueError, TypeError):
        raise ValueError("not an IPv4 network in CIDR form (its host bits zero)") from None
    if not 8 <= network.prefixlen <= 30:
        raise ValueError("its prefix must be /8 to /30")
    return str(network)


SMOKE_SUBNET: DataKey[str] = DataKey(
    "iluvatar_smoke_subnet",
    "10.10.0.0/16",
    _network,
    "an IPv4 network in CIDR form, /8 to /30",
    "The subnet of the network `check --smoke` builds the way the worker does (Ilúvatar's own by default).",
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
    VERIFY_INSTALLED,
    CONTAINERD_REPLACE_PACKAGE,
    SNAPSHOTTER,
    CNI_BIN_DIR,
    CNITOOL_PREBUILT,
    GO_ROOT,
    GO_REMOVE_AFTER_BUILD,
    ISOLATION,
    DOCKER_SOURCE,
    DOCKER_REPOSITORY,
    DOCKER_KEY_FINGERPRINT,
    DOCKER_VERSION,
    DOCKER_DAEMON,
    DOCKER_USERS,
    GPU,
    NVIDIA_DRIVER_PACKAGE,
    NVIDIA_REPOSITORY,
    NVIDIA_KEY_FINGERPRINT,
    NVIDIA_TOOLKIT_VERSION,
    GPU_MPS,
    GPU_MPS_IMAGE,
    ZFS,
    ZFS_IMPLEMENTATION,
    ZFS_POOL,
    ZFS_VDEV_FILE,
    ZFS_VDEV_SIZE,
    ZFS_DEVICES,
    ZFS_FORCE,
    WORKER_CONFIG_PATH,
    WORKER_NAME,
    WORKER_ADDRESS,
    WORKER_PORT,
    HARDWARE_INTERFACE,
    MEMORY_RESERVE_MB,
    CPU_RESERVE,
    LOAD_BALANCER_URL,
    WORKER_CONFIG_OVERRIDES,
    SMOKE_SUBNET,
    ROLE,
    BUILD_USER,
    BUILD_ENGINE,
    RUST_SOURCE,
    RUST_TOOLCHAIN,
    CROSS_VERSION,
    ANSIBLE_VERSION,
    ANSIBLE_VENV,
    BUILD_CHECKOUT,
    BUILD_REPOSITORY,
    BUILD_REF,
    BUILD_TARGET,
    BUILD_PLATFORM,
)
