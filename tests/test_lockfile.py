"""The lock file model: round trip, validation messages, mirror URLs; and the spec and checksum-file parsers."""

from __future__ import annotations

import copy
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from pyinfra_iluvatar.releases import lockfile
from pyinfra_iluvatar.releases.components import ARCHES, COMPONENTS, MACHINE_ARCH, UPSTREAM_ARCH, PublishedFile, TagOnly
from pyinfra_iluvatar.releases.lockfile import MAX_SIZE, Artifact, Lock, LockedComponent, LockError
from pyinfra_iluvatar.releases.resolve import checksum_for
from pyinfra_iluvatar.releases.specs import SpecError, parse_spec

SHA = "ab" * 32
GH = "https://github.com"
PASSWORD = "hunter2"  # in URLs of refused locks: never in a message
CONTAINERD_DL = "github.com/containerd/containerd/releases/download"


def _artifact(path: str, filename: str, url: str | None = None) -> Artifact:
    return Artifact(filename, url or f"https://{path}/{filename}", SHA, f"{path}/{filename}")


def example_lock() -> Lock:
    containerd_dl = "github.com/containerd/containerd/releases/download/v1.7.24"
    plugins_dl = "github.com/containernetworking/plugins/releases/download/v1.6.0"
    return Lock(
        {
            "containerd": LockedComponent(
                "containerd",
                "1.7.24",
                "v1.7.24",
                "~=1.7",
                {
                    arch: _artifact(containerd_dl, f"containerd-1.7.24-linux-{arch}.tar.gz")
                    for arch in ("amd64", "arm64")
                },
            ),
            "cni-plugins": LockedComponent(
                "cni-plugins",
                "1.6.0",
                "v1.6.0",
                "latest",
                {"amd64": _artifact(plugins_dl, "cni-plugins-linux-amd64-v1.6.0.tgz")},
            ),
            "go": LockedComponent(
                "go", "1.23.4", "go1.23.4", "1.23.4", {"amd64": _artifact("go.dev/dl", "go1.23.4.linux-amd64.tar.gz")}
            ),
            "cnitool": LockedComponent("cnitool", "1.2.3", "v1.2.3", "latest", {}),
        }
    )


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "iluvatar.lock.json"
    lockfile.dump(example_lock(), path)
    assert lockfile.load(path) == example_lock()
    text = path.read_text()
    assert text == lockfile.to_json(lockfile.load(path))
    assert text.endswith("}\n")
    assert list(json.loads(text)) == ["components", "format"], "keys are sorted"
    assert '\n  "components": {\n    "cni-plugins": {\n      "artifacts": {' in text, "indented by 2"
    assert [p.name for p in tmp_path.iterdir()] == ["iluvatar.lock.json"], "no temporary file left behind"


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o644)], ids=oct)
def test_new_lock_file_is_readable_by_others_as_the_umask_allows(tmp_path: Path, umask: int, mode: int) -> None:
    path = tmp_path / "iluvatar.lock.json"
    previous = os.umask(umask)
    try:
        lockfile.dump(example_lock(), path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_relocked_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "iluvatar.lock.json"
    path.write_text("old")
    path.chmod(0o664)
    lockfile.dump(example_lock(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o664
    assert lockfile.load(path) == example_lock()


def test_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "iluvatar.lock.json"
    (path / "in-the-way").mkdir(parents=True)  # os.replace cannot put a file over a non-empty directory
    with pytest.raises(OSError):
        lockfile.dump(example_lock(), path)
    assert [p.name for p in tmp_path.iterdir()] == ["iluvatar.lock.json"]


def test_mirror_url_rewriting() -> None:
    lock = example_lock()
    containerd = lock.component("containerd").artifact("arm64")
    assert containerd.url_via(None) == containerd.url
    assert containerd.url_via("") == containerd.url
    assert containerd.url_via("http://198.18.0.1:8080/mirror/") == (
        "http://198.18.0.1:8080/mirror/github.com/containerd/containerd/releases/download/v1.7.24/"
        "containerd-1.7.24-linux-arm64.tar.gz"
    )
    go = lock.component("go").artifact("amd64")
    assert go.url_via("https://mirror.lab") == "https://mirror.lab/go.dev/dl/go1.23.4.linux-amd64.tar.gz"


def test_missing_arch_and_component_are_clear_errors() -> None:
    lock = example_lock()
    with pytest.raises(
        LockError, match=r"cni-plugins 1.6.0 is locked for amd64, not arm64: run `pyinfra-iluvatar lock"
    ):
        lock.component("cni-plugins").artifact("arm64")
    with pytest.raises(LockError, match=r"cnitool 1\.2\.3 is locked for none, not amd64"):
        lock.component("cnitool").artifact("amd64")
    with pytest.raises(LockError, match=r"the lock has no component 'runc' \(it has containerd, cni-plugins, go,"):
        lock.component("runc")


def test_a_lock_needs_only_the_components_a_run_uses(tmp_path: Path) -> None:
    path = tmp_path / "lock.json"
    data = json.loads(lockfile.to_json(example_lock()))
    del data["components"]["go"]
    path.write_text(json.dumps(data))
    lock = lockfile.load(path)
    assert lock.source == str(path)
    assert lock.component("containerd").version == "1.7.24"
    with pytest.raises(LockError) as raised:
        lock.component("go")
    assert str(raised.value) == (
        f"{path} has no component 'go' (it has cni-plugins, cnitool, containerd):"
        f" run `pyinfra-iluvatar lock --lock-file {path}`, which locks every component"
    )


def test_architecture_names_are_defined_once() -> None:
    assert MACHINE_ARCH == {
        "x86_64": "amd64",
        "aarch64": "arm64",
        "ppc64le": "ppc64el",
        "s390x": "s390x",
        "riscv64": "riscv64",
    }
    assert tuple(MACHINE_ARCH.values()) == ARCHES == tuple(UPSTREAM_ARCH)


@pytest.mark.parametrize(
    ("component", "filename", "download_path", "mirror_path"),
    [
        (
            "containerd",
            "containerd-2.1.0-rc.1-linux-ppc64le.tar.gz",
            "/containerd/containerd/releases/download/v2.1.0-rc.1/containerd-2.1.0-rc.1-linux-ppc64le.tar.gz",
            "github.com/containerd/containerd/releases/download/v2.1.0-rc.1/containerd-2.1.0-rc.1-linux-ppc64le.tar.gz",
        ),
        (
            "cni-plugins",
            "cni-plugins-linux-ppc64le-v2.1.0-rc.1.tgz",
            "/containernetworking/plugins/releases/download/v2.1.0-rc.1/cni-plugins-linux-ppc64le-v2.1.0-rc.1.tgz",
            "github.com/containernetworking/plugins/releases/download/v2.1.0-rc.1/cni-plugins-linux-ppc64le-v2.1.0-rc.1.tgz",
        ),
        (
            "go",
            "go2.1.0-rc.1.linux-ppc64le.tar.gz",
            "/go2.1.0-rc.1.linux-ppc64le.tar.gz",
            "go.dev/dl/go2.1.0-rc.1.linux-ppc64le.tar.gz",
        ),
    ],
)
def test_what_each_component_publishes(component: str, filename: str, download_path: str, mirror_path: str) -> None:
    downloadable = COMPONENTS[component]
    assert not isinstance(downloadable, TagOnly)
    assert downloadable.filename("2.1.0-rc.1", "ppc64el") == filename
    assert downloadable.published("2.1.0-rc.1", "ppc64el") == PublishedFile(filename, download_path, mirror_path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LockError, match=r"nope.json: no lock file; write one with `pyinfra-iluvatar lock --lock-file"):
        lockfile.load(tmp_path / "nope.json")


def test_not_json(tmp_path: Path) -> None:
    (tmp_path / "lock.json").write_text("{")
    with pytest.raises(LockError, match=r"lock.json: not JSON"):
        lockfile.load(tmp_path / "lock.json")


Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        target = data
        for key in parents:
            target = target[key]
        target[last] = value

    return edit


def _copy(source: str, target: str) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        value = data
        for key in source.split("/"):
            value = value[key]
        _set(target, copy.deepcopy(value))(data)

    return edit


def _delete(path: str) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        target = data
        for key in parents:
            target = target[key]
        del target[last]

    return edit


INVALID: list[tuple[str, Edit, str]] = [
    ("format", _set("format", 2), "format: this version reads format 1, not 2"),
    ("format true", _set("format", True), "format: this version reads format 1, not True"),
    ("format float", _set("format", 1.0), "format: this version reads format 1, not 1.0"),
    ("format string", _set("format", "1"), "format: this version reads format 1, not '1'"),
    ("top-level key", _set("comment", "x"), "top level: unknown key comment"),
    ("components type", _set("components", []), "components: expected an object, got list"),
    ("unknown component", _set("components/runc", {}), "components: unknown component runc"),
    ("component type", _set("components/go", ["go"]), "components.go: expected an object, got list"),
    ("missing key", _delete("components/containerd/tag"), "components.containerd: missing tag"),
    ("bad version", _set("components/containerd/version", "one"), "components.containerd.version: 'one' is not a"),
    (
        "tag mismatch",
        _set("components/containerd/tag", "v1.7.23"),
        "components.containerd.tag: 'v1.7.23' does not match version 1.7.24 (expected 'v1.7.24')",
    ),
    ("bad constraint", _set("components/go/constraint", "soon"), "components.go.constraint: 'soon' is not a version"),
    ("no artifacts", _set("components/go/artifacts", {}), "components.go.artifacts: no architecture locked"),
    (
        "artifacts type",
        _set("components/go/artifacts", "amd64"),
        "components.go.artifacts: expected an object, got str",
    ),
    (
        "artifact type",
        _set("components/go/artifacts/amd64", None),
        "go.artifacts.amd64: expected an object, got NoneType",
    ),
    (
        "version type",
        _set("components/go/version", 1.23),
        "components.go.version: expected a non-empty string, got 1.23",
    ),
    (
        "cnitool with artifacts",
        _set("components/cnitool/artifacts/amd64", {}),
        "components.cnitool.artifacts: cnitool is locked by its tag alone; it has no artifacts",
    ),
    ("arch", _set("components/go/artifacts/i386", {}), "components.go.artifacts: unknown architecture 'i386'"),
    (
        "sha256",
        _set("components/containerd/artifacts/arm64/sha256", "AB" * 32),
        "components.containerd.artifacts.arm64.sha256: 'ABAB",
    ),
    (
        "url",
        _set("components/go/artifacts/amd64/url", "ftp://x/go1.23.4.linux-amd64.tar.gz"),
        "components.go.artifacts.amd64.url: 'ftp://x/go1.23.4.linux-amd64.tar.gz' is not an http(s) URL",
    ),
    (
        "url with credentials",
        _set("components/go/artifacts/amd64/url", f"https://me:{PASSWORD}@go.dev/dl/go1.23.4.linux-amd64.tar.gz"),
        "components.go.artifacts.amd64.url: 'https://***@go.dev/dl/go1.23.4.linux-amd64.tar.gz' is not an http(s)"
        " URL: holds credentials",
    ),
    (
        "url with a query",
        _set("components/go/artifacts/amd64/url", "https://go.dev/dl/go1.23.4.linux-amd64.tar.gz?x=1"),
        "components.go.artifacts.amd64.url: 'https://go.dev/dl/go1.23.4.linux-amd64.tar.gz?x=1' is not an http(s)"
        " URL: has a query string",
    ),
    (
        "url disagreeing with mirror_path",
        _set(
            "components/containerd/artifacts/amd64/url",
            f"https://{CONTAINERD_DL}/v1.7.23/containerd-1.7.24-linux-amd64.tar.gz",
        ),
        "components.containerd.artifacts.amd64.url: 'https://github.com/containerd/containerd/releases/download/"
        "v1.7.23/containerd-1.7.24-linux-amd64.tar.gz' should end with '/containerd/containerd/releases/download/"
        "v1.7.24/containerd-1.7.24-linux-amd64.tar.gz' (containerd 1.7.24 on amd64)",
    ),
    (
        "url of another file",
        _set("components/go/artifacts/amd64/url", "https://go.dev/dl/go1.23.4.linux-arm64.tar.gz"),
        "components.go.artifacts.amd64.url: 'https://go.dev/dl/go1.23.4.linux-arm64.tar.gz' should end with"
        " '/go1.23.4.linux-amd64.tar.gz' (go 1.23.4 on amd64)",
    ),
    (
        "amd64 entry holding the arm64 archive",
        _copy("components/containerd/artifacts/arm64", "components/containerd/artifacts/amd64"),
        "components.containerd.artifacts.amd64.filename: 'containerd-1.7.24-linux-arm64.tar.gz' should be"
        " 'containerd-1.7.24-linux-amd64.tar.gz' (containerd 1.7.24 on amd64)",
    ),
    (
        "file name of another version",
        _set("components/go/artifacts/amd64/filename", "go1.23.3.linux-amd64.tar.gz"),
        "components.go.artifacts.amd64.filename: 'go1.23.3.linux-amd64.tar.gz' should be"
        " 'go1.23.4.linux-amd64.tar.gz' (go 1.23.4 on amd64)",
    ),
    (
        "filename",
        _set("components/go/artifacts/amd64/filename", "../go.tar.gz"),
        "components.go.artifacts.amd64.filename: '../go.tar.gz' should be 'go1.23.4.linux-amd64.tar.gz'",
    ),
    (
        "mirror path",
        _set("components/go/artifacts/amd64/mirror_path", "../../etc/go1.23.4.linux-amd64.tar.gz"),
        "components.go.artifacts.amd64.mirror_path: '../../etc/go1.23.4.linux-amd64.tar.gz' should be"
        " 'go.dev/dl/go1.23.4.linux-amd64.tar.gz'",
    ),
    (
        "mirror path with credentials",
        _set("components/go/artifacts/amd64/mirror_path", f"https://me:{PASSWORD}@mirror/go1.23.4.linux-amd64.tar.gz"),
        "components.go.artifacts.amd64.mirror_path: 'https://***@mirror/go1.23.4.linux-amd64.tar.gz' should be",
    ),
    (
        "artifact key",
        _delete("components/cni-plugins/artifacts/amd64/mirror_path"),
        "components.cni-plugins.artifacts.amd64: missing mirror_path",
    ),
    ("empty string", _set("components/cnitool/version", ""), "components.cnitool.version: expected a non-empty"),
]


@pytest.mark.parametrize(("edit", "message"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_validation_names_file_entry_and_problem(tmp_path: Path, edit: Edit, message: str) -> None:
    data = json.loads(lockfile.to_json(example_lock()))
    edited = copy.deepcopy(data)
    edit(edited)
    path = tmp_path / "lock.json"
    path.write_text(json.dumps(edited))
    with pytest.raises(LockError) as raised:
        lockfile.load(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)
    assert PASSWORD not in str(raised.value)
    with pytest.raises(LockError) as parsed:
        lockfile.from_json(json.dumps(edited), "text.json")
    assert str(parsed.value) == str(raised.value).replace(str(path), "text.json", 1)


def _huge(path: Path) -> Path:
    text = lockfile.to_json(example_lock())
    path.write_text(text + " " * (MAX_SIZE + 1 - len(text)))
    return path


def _bytes(data: bytes) -> Callable[[Path], Path]:
    def write(path: Path) -> Path:
        path.write_bytes(data)
        return path

    return write


def _fifo(path: Path) -> Path:
    """A named pipe: opening it to read would block until a writer comes, for ever."""
    os.mkfifo(path)
    return path


UNREADABLE: list[tuple[str, Callable[[Path], Path], str]] = [
    ("directory", lambda path: path.parent, ": not a regular file (a directory, a device or a pipe)"),
    ("named pipe", lambda path: _fifo(path), "lock.json: not a regular file (a directory, a device or a pipe)"),
    ("NUL in path", lambda path: path.with_name("lock\0.json"), ".json': not a usable path (it contains a NUL byte)"),
    ("not UTF-8", _bytes(b'{"format": 1, "components": {"\xff": {}}}'), "lock.json: not UTF-8 text (byte 30)"),
    ("binary file", lambda _: Path("/bin/ls"), "/bin/ls: not UTF-8 text (byte"),
    ("larger than 1 MiB", _huge, "lock.json: larger than 1 MiB; no lock file is that big"),
    ("nested 2000 deep", _bytes(b"[" * 2000 + b"]" * 2000), "lock.json: JSON nested too deeply, so not a lock file"),
    ("top level array", _bytes(b"[]"), "lock.json: top level: expected an object, got list"),
]


@pytest.mark.parametrize(("make", "message"), [case[1:] for case in UNREADABLE], ids=[case[0] for case in UNREADABLE])
def test_unreadable_files_are_clean_errors(tmp_path: Path, make: Callable[[Path], Path], message: str) -> None:
    path = make(tmp_path / "lock.json")
    with pytest.raises(LockError) as raised:
        lockfile.load(path)
    assert message in str(raised.value)


def test_a_lock_of_exactly_1_mib_is_read(tmp_path: Path) -> None:
    path = tmp_path / "lock.json"
    text = lockfile.to_json(example_lock())
    path.write_text(text + " " * (MAX_SIZE - len(text)))
    assert lockfile.load(path) == example_lock()


@pytest.mark.parametrize(
    ("text", "pin", "allowed", "refused"),
    [
        ("2.1.4", "2.1.4", ["2.1.4"], ["2.1.5"]),
        ("v2.1.4", "2.1.4", ["2.1.4"], ["2.1.3"]),
        ("go1.23.4", "1.23.4", ["1.23.4"], ["1.23.5"]),
        ("2.0.0-rc.1", "2.0.0-rc.1", ["2.0.0rc1"], ["2.0.0"]),
        ("~=2.1", None, ["2.1.0", "2.9.1"], ["3.0.0", "2.0.9", "2.2.0rc1"]),
        (">=2.1.0rc1", None, ["2.1.0rc1", "2.2.0rc1", "2.1.0"], ["2.0.9"]),
        (">=1.7,<2", None, ["1.7.0", "1.99"], ["2.0.0", "1.6.9"]),
        ("latest", None, ["0.1", "9.9.9"], ["9.9.9rc1"]),
    ],
)
def test_specs(text: str, pin: str | None, allowed: list[str], refused: list[str]) -> None:
    spec = parse_spec(text)
    assert spec.text == text
    assert spec.pin == pin
    assert all(spec.allows(Version(version)) for version in allowed)
    assert not any(spec.allows(Version(version)) for version in refused)


@pytest.mark.parametrize("text", ["newest", "~=", ">=1.7,<", "v", "1.2.3.x", ""])
def test_bad_specs(text: str) -> None:
    with pytest.raises(SpecError, match="is not a version spec; accepted: a version"):
        parse_spec(text)


def test_checksum_files() -> None:
    sha = "0123456789abcdef" * 4
    other = "f" * 64
    assert checksum_for(f"{sha}  containerd-1.7.24-linux-amd64.tar.gz\n", "containerd-1.7.24-linux-amd64.tar.gz") == sha
    assert checksum_for(f"{other}  a.tgz\n{sha.upper()} *b.tgz\n", "b.tgz") == sha
    assert checksum_for(f"{sha}  dist/b.tgz\n", "b.tgz") == sha
    assert checksum_for(f"{sha}\n", "anything.tgz") == sha
    assert checksum_for(f"{sha}  a.tgz\n", "b.tgz") is None
    assert checksum_for("not a checksum\n", "b.tgz") is None
