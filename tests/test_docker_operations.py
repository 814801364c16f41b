"""``operations/docker.py`` where pyinfra-testing fixtures cannot reach.

- :func:`key_fingerprint` against real keys (``tests/captured/docker-debian12/keys``: generated here with gpg,
  exported from Debian's archive keyrings, Docker's release key, RFC 9580's version 6 sample), compared with what
  gpg says of each, and a key generated with gpg during the test; malformed blocks refused with their reason.
- :func:`fetch_key` against a local HTTP server on 127.0.0.1: one download however many hosts ask, the
  wrong-fingerprint, 404 and connection-refused cases (message, nothing written).
- The apt source parsing behind ``facts.docker.DockerAptSources``.
- :func:`ready`'s script run in ``sh`` against stand-in ``docker`` commands that answer as the real 20.10 and 28
  CLIs do (``tests/captured/docker-debian12/11-ready.txt``).
- ``apt_repository``, ``daemon_json`` and ``unit_limits`` run for real by ``pyinfra @local``, twice, inside a
  throwaway mount namespace whose ``/etc`` is an overlay (this machine's own ``/etc`` is never written): needs root.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api.config import Config
from pyinfra.api.host import Host
from pyinfra.api.inventory import Inventory
from pyinfra.api.state import State
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host

from pyinfra_iluvatar.facts.docker import DockerAptSources, deb822_uris, one_line_uri, source_names_uri
from pyinfra_iluvatar.operations import docker

CAPTURED = Path(__file__).parent / "captured" / "docker-debian12"
KEYS = CAPTURED / "keys"
DOCKER_KEY = (KEYS / "docker-release.asc").read_text()
DEBIAN_12_KEY = (KEYS / "debian-12-bookworm-stable-release.asc").read_text()
DEBIAN_12_FINGERPRINT = "4D64FEC119C2029067D6E791F8D2585B8783D481"
BIN = Path(sys.executable).parent


# --- key_fingerprint ---------------------------------------------------------------------------------------------


def _gpg_primary_fingerprints(colons: str) -> list[str]:
    """The ``fpr`` line following each ``pub`` line of ``gpg --with-colons --fingerprint``."""
    lines = colons.splitlines()
    return [lines[index + 1].split(":")[9] for index, line in enumerate(lines) if line.startswith("pub:")]


SINGLE_KEYS = [
    "gpg-generated-rsa3072",
    "gpg-generated-ed25519",
    "debian-12-bookworm-stable-release",
    "debian-11-bullseye-stable-release",
    "docker-release",
]


@pytest.mark.parametrize("name", SINGLE_KEYS)
def test_fingerprint_matches_gpg(name: str) -> None:
    (expected,) = _gpg_primary_fingerprints((KEYS / f"{name}.colons.txt").read_text())
    armored = (KEYS / f"{name}.asc").read_text()
    assert docker.key_fingerprint(armored) == expected
    assert docker.key_fingerprints(armored) == [expected]


def test_docker_release_key_is_the_constant() -> None:
    assert docker.key_fingerprint(DOCKER_KEY) == docker.DOCKER_KEY_FINGERPRINT


def test_block_with_two_keys_gives_the_first_and_lists_both_in_order() -> None:
    armored = (KEYS / "debian-11-and-12-stable-release.asc").read_text()
    packets = (KEYS / "debian-11-and-12-stable-release.packets.txt").read_text().splitlines()
    in_block = [line.split()[-1] for line in packets if line.strip().startswith("keyid:")]
    found = docker.key_fingerprints(armored)
    assert [fingerprint[-16:] for fingerprint in found] == in_block  # gpg --list-packets: the order in the block
    assert set(found) == set(
        _gpg_primary_fingerprints((KEYS / "debian-11-and-12-stable-release.colons.txt").read_text())
    )
    assert docker.key_fingerprint(armored) == found[0] == DEBIAN_12_FINGERPRINT


@pytest.mark.skipif(shutil.which("gpg") is None, reason="needs gpg")
def test_fingerprint_of_a_key_generated_now_matches_gpg(tmp_path: Path) -> None:
    env = {**os.environ, "GNUPGHOME": str(tmp_path)}
    tmp_path.chmod(0o700)

    def gpg(*args: str) -> str:
        return subprocess.run(["gpg", "--batch", *args], env=env, check=True, capture_output=True, text=True).stdout

    gpg("--passphrase", "", "--quick-gen-key", "fingerprint test <fp@example.invalid>", "ed25519", "sign", "never")
    (expected,) = _gpg_primary_fingerprints(gpg("--with-colons", "--fingerprint"))
    assert docker.key_fingerprint(gpg("--armor", "--export")) == expected


def _armor(data: bytes, label: str = "PUBLIC KEY BLOCK", checksum: bool = True) -> str:
    body = base64.b64encode(data).decode()
    lines = [body[index : index + 64] for index in range(0, len(body), 64)]
    crc = "=" + base64.b64encode(docker.crc24(data).to_bytes(3, "big")).decode() if checksum else None
    return "\n".join(
        [f"-----BEGIN PGP {label}-----", "", *lines, *([crc] if crc else []), f"-----END PGP {label}-----"]
    )


def _with_version(armored: str, version: int) -> str:
    """``armored`` (a new- or old-format first packet) with its first packet's version octet changed, re-armored."""
    data = bytearray(docker.dearmor(armored))
    _, start, _ = docker._packet(bytes(data), 0)
    data[start] = version
    return _armor(bytes(data))


def test_armor_headers_crlf_and_a_missing_checksum_are_accepted() -> None:
    lines = DOCKER_KEY.splitlines()
    with_headers = "\r\n".join([lines[0], "Version: GnuPG v1", "Comment: from a test", *lines[1:]])
    assert docker.key_fingerprint(with_headers) == docker.DOCKER_KEY_FINGERPRINT
    without_checksum = "\n".join(line for line in lines if not line.startswith("="))
    assert docker.key_fingerprint(without_checksum) == docker.DOCKER_KEY_FINGERPRINT
    assert docker.key_fingerprint("text before the block\n" + DOCKER_KEY) == docker.DOCKER_KEY_FINGERPRINT


def test_crc24_of_nothing_is_its_initial_value() -> None:
    assert docker.crc24(b"") == 0xB704CE  # RFC 4880 6.1: CRC24_INIT


def _corrupted_body() -> str:
    lines = DOCKER_KEY.splitlines()
    line = lines[5]
    lines[5] = ("B" if line[10] != "B" else "C").join((line[:10], line[11:]))
    return "\n".join(lines)


def _signature_as_public_block() -> str:
    signature = (KEYS / "gpg-detached-signature.asc").read_text().replace("SIGNATURE", "PUBLIC KEY BLOCK")
    return _armor(docker.dearmor(signature))


REFUSED = [
    ("plain text", "Docker's key, honest", "not an ASCII-armored OpenPGP block"),
    ("binary key", base64.b64decode("mQINBFit2ioBEADh").decode("latin-1"), "not an ASCII-armored"),
    ("corrupted body", _corrupted_body(), "bad armor checksum"),
    ("malformed checksum", DOCKER_KEY.replace("=0YYh", "=0Y"), "checksum line =0Y is malformed"),
    ("not base64", DOCKER_KEY.replace("mQINBFit", "mQINBF!t"), "not valid base64"),
    ("no end line", DOCKER_KEY.split("-----END")[0], "no -----END PGP PUBLIC KEY BLOCK----- line"),
    ("signature block", (KEYS / "gpg-detached-signature.asc").read_text(), "an armored SIGNATURE, not a PUBLIC KEY"),
    ("private key block", DEBIAN_12_KEY.replace("PUBLIC", "PRIVATE"), "an armored PRIVATE KEY BLOCK, not"),
    ("signature packet first", _signature_as_public_block(), "starts with a signature packet"),
    ("secret key packet first", _armor(bytes([0xC5, 3, 4, 0, 0])), "starts with a secret key packet"),
    ("version 3", _with_version(DEBIAN_12_KEY, 3), "a version 3 key"),
    ("version 5", _with_version(DOCKER_KEY, 5), "a version 5 key"),
    ("version 6, RFC 9580 A.3", (KEYS / "rfc9580-a3-v6-certificate.asc").read_text(), "a version 6 key"),
    ("truncated packet", _armor(docker.dearmor(DEBIAN_12_KEY)[:40]), "truncated"),
    ("partial body length", _armor(bytes([0xC6, 0xE1, 4, 0, 0])), "partial body length"),
    ("empty", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n", "holds no data"),
]


@pytest.mark.parametrize(("armored", "reason"), [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_fingerprint_refuses_with_its_reason(armored: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        docker.key_fingerprint(armored)


def test_real_v6_sample_is_what_rfc_9580_says() -> None:
    """The V6 sample is RFC 9580's own: its SHA-256 fingerprint (computed here) is the one the RFC prints."""
    import hashlib

    body = docker._first_public_key(docker.dearmor((KEYS / "rfc9580-a3-v6-certificate.asc").read_text()))
    assert hashlib.sha256(b"\x9b" + len(body).to_bytes(4, "big") + body).hexdigest().upper() == (
        "CB186C4F0609A697E4D52DFA6C722B0C1F1E27C18A56708F6525EC27BAD9ACC9"
    )


# --- fetch_key -----------------------------------------------------------------------------------------------------


class _Server:
    """An HTTP server on 127.0.0.1 answering each path from ``routes`` (status, body), counting requests."""

    def __init__(self, routes: dict[str, tuple[int, bytes]]) -> None:
        self.routes = routes
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                status, body = server.routes.get(self.path, (404, b"not found\n"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    served = _Server(
        {
            "/linux/debian/gpg": (200, DOCKER_KEY.encode()),
            "/wrong/debian/gpg": (200, DEBIAN_12_KEY.encode()),
            "/two/debian/gpg": (200, (KEYS / "debian-11-and-12-stable-release.asc").read_bytes()),
            "/html/debian/gpg": (200, b"<html><body>Moved</body></html>\n"),
        }
    )
    yield served
    served.close()


@pytest.fixture
def real_host() -> Iterator[Host]:
    inventory = Inventory((["worker-1"], {}))
    state = State(inventory=inventory, config=Config())
    host = inventory.get_host("worker-1")
    with ctx_state.use(state), ctx_host.use(host):
        yield host


@pytest.fixture(autouse=True)
def _fresh_downloads() -> Iterator[None]:
    docker._fetched.clear()
    yield
    docker._fetched.clear()


def _fetch(host: Host, url: str, path: Path, fingerprint: str = docker.DOCKER_KEY_FINGERPRINT) -> bool:
    return docker.fetch_key(host.state, host, url, fingerprint, str(path))


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def test_fetch_key_downloads_once_for_every_host(server: _Server, real_host: Host, tmp_path: Path) -> None:
    path = tmp_path / "keys" / "docker.asc"
    url = f"{server.url}/linux/debian/gpg"
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(_fetch(real_host, url, path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 8
    assert server.requests == ["/linux/debian/gpg"]
    assert path.read_text() == DOCKER_KEY
    assert sorted(p.name for p in path.parent.iterdir()) == ["docker.asc"]  # no partial file left


def test_fetch_key_downloads_again_when_the_file_went_away(server: _Server, real_host: Host, tmp_path: Path) -> None:
    path = tmp_path / "docker.asc"
    url = f"{server.url}/linux/debian/gpg"
    assert _fetch(real_host, url, path)
    path.unlink()
    assert _fetch(real_host, url, path)
    assert server.requests == ["/linux/debian/gpg"] * 2


WRONG = [
    (
        "/wrong/debian/gpg",
        f"fingerprint mismatch: expected {docker.DOCKER_KEY_FINGERPRINT}, got {DEBIAN_12_FINGERPRINT}",
    ),
    ("/two/debian/gpg", "fingerprint mismatch: expected 9DC8", "got 2 keys: 4D64FEC1"),
    ("/html/debian/gpg", "the answer is not a usable OpenPGP key (not an ASCII-armored OpenPGP block"),
    ("/missing/debian/gpg", "download failed: HTTP 404 Not Found"),
]


@pytest.mark.parametrize("case", WRONG, ids=[case[0].split("/")[1] for case in WRONG])
def test_fetch_key_refuses_and_writes_nothing(
    case: tuple[str, ...], server: _Server, real_host: Host, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, *expected = case
    target = tmp_path / "keys" / "docker.asc"
    url = f"{server.url}{path}"
    assert not _fetch(real_host, url, target)
    assert not _fetch(real_host, url, target)  # a second host: refused again, without a second download
    assert server.requests == [path]
    assert not target.parent.exists()  # nothing written, not even the cache directory
    (message, again) = _errors(caplog)
    assert message == again
    assert f"Docker's apt key from {url} was not accepted: " in message and message.endswith("; nothing was written")
    assert "worker-1" in message
    for part in expected:
        assert part in message


def test_fetch_key_keeps_the_file_there_when_the_download_is_wrong(
    server: _Server, real_host: Host, tmp_path: Path
) -> None:
    target = tmp_path / "docker.asc"
    target.write_text("an older file\n")
    assert not _fetch(real_host, f"{server.url}/wrong/debian/gpg", target)
    assert target.read_text() == "an older file\n"
    assert [p.name for p in tmp_path.iterdir()] == ["docker.asc"]


def test_fetch_key_connection_refused_masks_credentials(
    real_host: Host, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:  # a port nothing listens on: bound, then closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://user:s3cret@127.0.0.1:{port}/linux/debian/gpg"
    assert not _fetch(real_host, url, tmp_path / "docker.asc")
    (message,) = _errors(caplog)
    assert (
        f"from http://***@127.0.0.1:{port}/linux/debian/gpg was not accepted: download failed: connection refused"
        in (message)
    )
    assert "s3cret" not in message
    assert not any(tmp_path.iterdir())


def test_fetch_key_cannot_write(
    server: _Server, real_host: Host, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert not _fetch(real_host, f"{server.url}/linux/debian/gpg", blocker / "docker.asc")
    (message,) = _errors(caplog)
    assert f"cannot write {blocker / 'docker.asc'}" in message


# --- the apt source parsing behind DockerAptSources -----------------------------------------------------------------

URI = "https://download.docker.com/linux/debian"


@pytest.mark.parametrize(
    ("line", "uri"),
    [
        (f"deb {URI} bookworm stable", URI),
        (f"deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.gpg] {URI}/ bookworm stable", f"{URI}/"),
        (f"deb [ arch=amd64 ] {URI} bookworm stable", URI),
        (f"deb-src {URI} bookworm stable # a comment", URI),
        (f"  # deb {URI} bookworm stable", None),
        (f"#deb {URI} bookworm stable", None),
        (f"rpm {URI} bookworm", None),
        ("deb [arch=amd64]", None),
        ("", None),
    ],
)
def test_one_line_uri(line: str, uri: str | None) -> None:
    assert one_line_uri(line) == uri


def test_deb822_uris() -> None:
    lines = [
        "# Docker",
        "Types: deb deb-src",
        f"URIs: {URI}",
        "  https://mirror.example/docker/linux/debian",
        "Suites: bookworm",
        "",
        "Enabled: false",
        "Types: deb",
        "URIs: https://disabled.example/debian",
        "",
        "types: deb-src",
        "uris: https://lowercase.example/debian",
        "",
        "Types: rpm",
        "URIs: https://not-apt.example/debian",
    ]
    assert deb822_uris(lines) == [URI, "https://mirror.example/docker/linux/debian", "https://lowercase.example/debian"]


def test_source_names_uri_ignores_a_trailing_slash_and_longer_uris() -> None:
    assert source_names_uri("/x/docker.list", [f"deb {URI}/ bookworm stable"], URI)
    assert not source_names_uri("/x/docker.list", [f"deb {URI}-archive bookworm stable"], URI)
    assert source_names_uri("/x/docker.sources", ["Types: deb", f"URIs: {URI}"], f"{URI}/")


# --- ready's script --------------------------------------------------------------------------------------------------

DOWN_20 = (
    'echo; echo \'template: :1:2: executing "" at <.ServerVersion>: reflect: indirection through nil pointer to '
    "embedded struct field Info' >&2; exit 1"
)
DOWN_28 = (
    "echo; echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' "
    ">&2; exit 1"
)


def _ready_command(timeout: int) -> str:
    state = FakeState()
    with ctx_state.use(state), ctx_host.use(create_host(state, facts={})):
        (command,) = list(docker.ready._inner(timeout=timeout))
    assert isinstance(command, str)
    return command


def _run_ready(tmp_path: Path, docker_script: str, timeout: int) -> subprocess.CompletedProcess[str]:
    stand_in = tmp_path / "docker"
    stand_in.write_text(f"#!/bin/sh\n{docker_script}\n")
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    return subprocess.run(["sh", "-c", _ready_command(timeout)], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("down", [DOWN_20, DOWN_28], ids=["docker-20.10-cli", "docker-28-cli"])
def test_ready_fails_after_its_timeout_when_the_daemon_never_answers(tmp_path: Path, down: str) -> None:
    result = _run_ready(tmp_path, down, timeout=2)
    assert result.returncode == 1
    assert result.stderr == "pyinfra-iluvatar: the Docker daemon did not answer docker info within 2s\n"


@pytest.mark.parametrize("down", [DOWN_20, DOWN_28], ids=["docker-20.10-cli", "docker-28-cli"])
def test_ready_returns_once_the_daemon_answers(tmp_path: Path, down: str) -> None:
    calls = tmp_path / "calls"
    script = f'echo x >> {calls}; if [ "$(wc -l < {calls})" -lt 3 ]; then {down}; fi; echo 20.10.24+dfsg1'
    result = _run_ready(tmp_path, script, timeout=10)
    assert (result.returncode, result.stderr) == (0, "")
    assert len(calls.read_text().splitlines()) == 3


# --- merge_settings --------------------------------------------------------------------------------------------------


def test_merge_settings_keeps_order_and_inputs() -> None:
    existing = {"debug": True, "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}, "bip": "x"}
    settings = {
        "runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}, "crun": {"path": "crun"}},
        "bip": {"a": 1},
        "new": 1,
    }
    before = json.dumps([existing, settings])
    merged = docker.merge_settings(existing, settings)
    assert json.dumps([existing, settings]) == before
    assert list(merged) == ["debug", "runtimes", "bip", "new"]
    assert merged["runtimes"] == {
        "nvidia": {"args": [], "path": "/usr/bin/nvidia-container-runtime"},
        "crun": {"path": "crun"},
    }
    assert merged["bip"] == {"a": 1}
    merged["runtimes"]["crun"]["path"] = "changed"
    assert settings["runtimes"]["crun"]["path"] == "crun"  # type: ignore[index]


# --- for real: pyinfra @local in a private mount namespace ----------------------------------------------------------


def _can_overlay_etc() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as scratch:
        probe = subprocess.run(
            [
                "unshare",
                "-m",
                "sh",
                "-c",
                f"mount -t tmpfs tmpfs {scratch} && mkdir {scratch}/u {scratch}/w && mount -t overlay overlay -o "
                f"lowerdir=/etc,upperdir={scratch}/u,workdir={scratch}/w /etc",
            ],
            capture_output=True,
            check=False,
        )
    return probe.returncode == 0


DEPLOY = """
from pyinfra_iluvatar.operations import docker, limits

docker.apt_repository(
    name="Docker's apt repository",
    repository="{url}/linux",
    distribution="debian",
    codename="bookworm",
    arch="amd64",
    cache_dir="{cache}",
)
docker.daemon_json(
    name="daemon.json",
    settings={{"exec-opts": ["native.cgroupdriver=systemd"], "log-opts": {{"max-size": "20m"}}}},
)
limits.unit_limits(name="docker.service file limit", unit="docker.service", limit_nofile=1048576)
"""

NAMESPACE = """
set -eu
scratch=$(mktemp -d)
mount -t tmpfs tmpfs "$scratch"; mkdir "$scratch/u" "$scratch/w"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$scratch/u,workdir=$scratch/w" /etc
mount -t tmpfs tmpfs /var/cache/apt; mkdir -p /var/cache/apt/archives/partial
rm -f /etc/apt/keyrings/docker.asc /etc/apt/sources.list.d/docker.sources /etc/docker/daemon.json
printf 'deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.gpg] {url}/linux/debian bookworm stable\\n' \\
    > /etc/apt/sources.list.d/docker.list
mkdir -p /etc/docker
printf '{{"debug": true, "log-opts": {{"max-file": "3"}}}}\\n' > /etc/docker/daemon.json
cd {out}
for run in 1 2; do {pyinfra} -y @local deploy.py > run$run.log 2>&1 || echo "run $run failed" >> failures; done
{pyinfra} --json @local fact pyinfra_iluvatar.facts.docker.DockerAptSources uri={url}/linux/debian > fact.json
cp /etc/apt/keyrings/docker.asc /etc/apt/sources.list.d/docker.sources /etc/docker/daemon.json \\
    /etc/systemd/system/docker.service.d/pyinfra-iluvatar.conf .
stat -c '%a %U %G %n' /etc/apt/keyrings/docker.asc /etc/apt/sources.list.d/docker.sources > modes
ls /etc/apt/sources.list.d > sources.d
apt-cache policy > policy 2>&1 || echo "apt-cache policy failed" >> failures
"""


def _grand_total(log: Path) -> list[str]:
    """The counts of pyinfra's ``Grand total`` result line: hosts, success, error, no change."""
    (line,) = [line for line in log.read_text().splitlines() if line.strip().startswith("Grand total")]
    return line.split()[2:]


def test_operations_for_real_twice(tmp_path: Path) -> None:
    if not _can_overlay_etc():
        pytest.skip("needs root, unshare and an overlay over /etc in a private mount namespace")
    served = _Server({"/linux/debian/gpg": (200, DOCKER_KEY.encode())})
    try:
        (tmp_path / "deploy.py").write_text(DEPLOY.format(url=served.url, cache=tmp_path / "cache"))
        script = NAMESPACE.format(url=served.url, out=tmp_path, pyinfra=BIN / "pyinfra")
        result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    finally:
        served.close()
    logs = "\n".join(f"{p.name}:\n{p.read_text()}" for p in sorted(tmp_path.glob("run*.log")))
    assert result.returncode == 0, result.stderr + logs
    assert not (tmp_path / "failures").exists(), (tmp_path / "failures").read_text() + logs
    assert served.requests == ["/linux/debian/gpg"]  # the second run downloads nothing
    assert _grand_total(tmp_path / "run1.log") == ["3", "3", "-", "-"]  # hosts, success, error, no change
    assert _grand_total(tmp_path / "run2.log") == ["3", "-", "-", "3"]

    assert (tmp_path / "docker.asc").read_text() == DOCKER_KEY
    assert (tmp_path / "docker.sources").read_text() == docker.render_sources(
        f"{served.url}/linux/debian", "bookworm", "amd64"
    )
    assert (tmp_path / "modes").read_text().split("\n")[:2] == [
        "644 root root /etc/apt/keyrings/docker.asc",
        "644 root root /etc/apt/sources.list.d/docker.sources",
    ]
    listed = (tmp_path / "sources.d").read_text().split()
    assert "docker.list" not in listed and "docker.list.disabled-by-pyinfra-iluvatar" in listed
    assert json.loads((tmp_path / "daemon.json").read_text()) == {
        "debug": True,
        "log-opts": {"max-file": "3", "max-size": "20m"},
        "exec-opts": ["native.cgroupdriver=systemd"],
    }
    assert "LimitNOFILE=1048576\n" in (tmp_path / "pyinfra-iluvatar.conf").read_text()
    policy = (tmp_path / "policy").read_text()
    assert not [line for line in policy.splitlines() if line.startswith(("E:", "W:"))], policy

    (fact,) = json.loads((tmp_path / "fact.json").read_text()).values()
    value = fact["@local"]
    assert [source["path"] for source in value["files"]] == ["/etc/apt/sources.list.d/docker.sources"]
    assert value["disabled"] == ["/etc/apt/sources.list.d/docker.list.disabled-by-pyinfra-iluvatar"]
    assert value["keyring"]["content"] == DOCKER_KEY
    assert DockerAptSources().command(f"{served.url}/linux/debian").startswith(f"uri={served.url}/linux/debian;")
