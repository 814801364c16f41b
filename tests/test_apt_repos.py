"""``operations/apt_repos.py``, ``operations/openpgp.py`` and ``facts/apt_repos.py`` where pyinfra-testing fixtures
cannot reach.

- :func:`openpgp.key_fingerprint` against real keys (``tests/captured/docker-debian12/keys``: generated here with
  gpg, exported from Debian's archive keyrings, Docker's release key, RFC 9580's version 6 sample; NVIDIA's key in
  ``tests/captured/nvidia-apt-debian12/keys``), compared with what gpg says of each, and a key generated with gpg
  during the test; malformed blocks refused with their reason.
- :func:`apt_repos.fetch_key` against a local HTTP server on 127.0.0.1: one download however many hosts ask, the
  wrong-fingerprint, 404 and connection-refused cases (message, nothing written).
- The apt source parsing behind ``facts.apt_repos.AptRepository``, ``$(ARCH)`` in URIs included.
- ``signed_repository`` run for real by ``pyinfra @local``, twice, against the NVIDIA-shaped flat repository of
  ``tests/support/nvidia_repo.py`` served on loopback, inside a throwaway mount namespace whose ``/etc`` is an
  overlay (this machine's own ``/etc`` and apt lists are never written), then ``apt-get update`` and ``apt-get
  download`` there: needs root.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import socket
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

from pyinfra_iluvatar.facts.apt_repos import (
    AptRepository,
    deb822_uris,
    one_line_uri,
    same_uri,
    source_names_uri,
)
from pyinfra_iluvatar.operations import apt_repos, openpgp
from pyinfra_iluvatar.operations.docker import DOCKER_KEY_FINGERPRINT
from pyinfra_iluvatar.tests.support.nvidia_repo import NvidiaRepo, build_nvidia_repo, serve

CAPTURED = Path(__file__).parent / "captured"
KEYS = CAPTURED / "docker-debian12" / "keys"
NVIDIA_KEYS = CAPTURED / "nvidia-apt-debian12" / "keys"
DOCKER_KEY = (KEYS / "docker-release.asc").read_text()
DEBIAN_12_KEY = (KEYS / "debian-12-bookworm-stable-release.asc").read_text()
DEBIAN_12_FINGERPRINT = "4D64FEC119C2029067D6E791F8D2585B8783D481"
NVIDIA_FINGERPRINT = "C95B321B61E88C1809C4F759DDCAE044F796ECB0"
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
    assert openpgp.key_fingerprint(armored) == expected
    assert openpgp.key_fingerprints(armored) == [expected]


def test_block_with_two_keys_gives_the_first_and_lists_both_in_order() -> None:
    armored = (KEYS / "debian-11-and-12-stable-release.asc").read_text()
    packets = (KEYS / "debian-11-and-12-stable-release.packets.txt").read_text().splitlines()
    in_block = [line.split()[-1] for line in packets if line.strip().startswith("keyid:")]
    found = openpgp.key_fingerprints(armored)
    assert [fingerprint[-16:] for fingerprint in found] == in_block  # gpg --list-packets: the order in the block
    assert set(found) == set(
        _gpg_primary_fingerprints((KEYS / "debian-11-and-12-stable-release.colons.txt").read_text())
    )
    assert openpgp.key_fingerprint(armored) == found[0] == DEBIAN_12_FINGERPRINT


@pytest.mark.skipif(shutil.which("gpg") is None, reason="needs gpg")
def test_fingerprint_of_a_key_generated_now_matches_gpg(tmp_path: Path) -> None:
    env = {**os.environ, "GNUPGHOME": str(tmp_path)}
    tmp_path.chmod(0o700)

    def gpg(*args: str) -> str:
        return subprocess.run(["gpg", "--batch", *args], env=env, check=True, capture_output=True, text=True).stdout

    gpg("--passphrase", "", "--quick-gen-key", "fingerprint test <fp@example.invalid>", "ed25519", "sign", "never")
    (expected,) = _gpg_primary_fingerprints(gpg("--with-colons", "--fingerprint"))
    assert openpgp.key_fingerprint(gpg("--armor", "--export")) == expected


def _armor(data: bytes, label: str = "PUBLIC KEY BLOCK", checksum: bool = True) -> str:
    body = base64.b64encode(data).decode()
    lines = [body[index : index + 64] for index in range(0, len(body), 64)]
    crc = "=" + base64.b64encode(openpgp.crc24(data).to_bytes(3, "big")).decode() if checksum else None
    return "\n".join(
        [f"-----BEGIN PGP {label}-----", "", *lines, *([crc] if crc else []), f"-----END PGP {label}-----"]
    )


def _with_version(armored: str, version: int) -> str:
    """``armored`` (a new- or old-format first packet) with its first packet's version octet changed, re-armored."""
    data = bytearray(openpgp.dearmor(armored))
    _, start, _ = openpgp._packet(bytes(data), 0)
    data[start] = version
    return _armor(bytes(data))


def test_armor_headers_crlf_and_a_missing_checksum_are_accepted() -> None:
    lines = DOCKER_KEY.splitlines()
    with_headers = "\r\n".join([lines[0], "Version: GnuPG v1", "Comment: from a test", *lines[1:]])
    assert openpgp.key_fingerprint(with_headers) == DOCKER_KEY_FINGERPRINT
    without_checksum = "\n".join(line for line in lines if not line.startswith("="))
    assert openpgp.key_fingerprint(without_checksum) == DOCKER_KEY_FINGERPRINT
    assert openpgp.key_fingerprint("text before the block\n" + DOCKER_KEY) == DOCKER_KEY_FINGERPRINT


def test_crc24_of_nothing_is_its_initial_value() -> None:
    assert openpgp.crc24(b"") == 0xB704CE  # RFC 4880 6.1: CRC24_INIT


def _corrupted_body() -> str:
    lines = DOCKER_KEY.splitlines()
    line = lines[5]
    lines[5] = ("B" if line[10] != "B" else "C").join((line[:10], line[11:]))
    return "\n".join(lines)


def _signature_as_public_block() -> str:
    signature = (KEYS / "gpg-detached-signature.asc").read_text().replace("SIGNATURE", "PUBLIC KEY BLOCK")
    return _armor(openpgp.dearmor(signature))


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
    ("truncated packet", _armor(openpgp.dearmor(DEBIAN_12_KEY)[:40]), "truncated"),
    ("partial body length", _armor(bytes([0xC6, 0xE1, 4, 0, 0])), "partial body length"),
    ("empty", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n", "holds no data"),
]


@pytest.mark.parametrize(("armored", "reason"), [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_fingerprint_refuses_with_its_reason(armored: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        openpgp.key_fingerprint(armored)


def test_real_v6_sample_is_what_rfc_9580_says() -> None:
    """The V6 sample is RFC 9580's own: its SHA-256 fingerprint (computed here) is the one the RFC prints."""
    import hashlib

    body = openpgp._first_public_key(openpgp.dearmor((KEYS / "rfc9580-a3-v6-certificate.asc").read_text()))
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
            "/appended/debian/gpg": (200, (DOCKER_KEY + DEBIAN_12_KEY).encode()),
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
    apt_repos._fetched.clear()
    yield
    apt_repos._fetched.clear()


def _fetch(host: Host, url: str, path: Path, fingerprint: str = DOCKER_KEY_FINGERPRINT) -> bool:
    return apt_repos.fetch_key(host.state, host, url, fingerprint, str(path))


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
        f"fingerprint mismatch: expected {DOCKER_KEY_FINGERPRINT}, got {DEBIAN_12_FINGERPRINT}",
    ),
    ("/two/debian/gpg", "fingerprint mismatch: expected 9DC8", "got 2 keys: 4D64FEC1"),
    ("/appended/debian/gpg", f"got 2 keys: {DOCKER_KEY_FINGERPRINT}, {DEBIAN_12_FINGERPRINT}"),
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
    assert f"the apt key from {url} was not accepted: " in message and message.endswith("; nothing was written")
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


# --- the apt source parsing behind AptRepository --------------------------------------------------------------------

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


def test_nvidia_key_matches_gpg() -> None:
    """NVIDIA's key as its repository's ``gpgkey`` serves it (an export with two expired signing subkeys)."""
    (expected,) = _gpg_primary_fingerprints((NVIDIA_KEYS / "nvidia-container-toolkit.colons.txt").read_text())
    armored = (NVIDIA_KEYS / "nvidia-container-toolkit.asc").read_text()
    assert openpgp.key_fingerprint(armored) == openpgp.key_fingerprints(armored)[0] == expected == NVIDIA_FINGERPRINT
    assert openpgp.holds_only(armored, NVIDIA_FINGERPRINT)
    assert not openpgp.holds_only(armored, DOCKER_KEY_FINGERPRINT)
    assert not openpgp.holds_only(armored + DOCKER_KEY, NVIDIA_FINGERPRINT)  # a second primary key: refused


def test_every_armored_block_counts() -> None:
    appended = DOCKER_KEY + DEBIAN_12_KEY
    assert openpgp.key_fingerprint(appended) == DOCKER_KEY_FINGERPRINT  # the first block's primary key
    assert openpgp.key_fingerprints(appended) == [DOCKER_KEY_FINGERPRINT, DEBIAN_12_FINGERPRINT]
    assert not openpgp.holds_only(appended, DOCKER_KEY_FINGERPRINT)
    signed = DOCKER_KEY + (KEYS / "gpg-detached-signature.asc").read_text()
    with pytest.raises(ValueError, match="an armored SIGNATURE, not a PUBLIC KEY BLOCK"):
        openpgp.key_fingerprints(signed)
    assert not openpgp.holds_only(signed, DOCKER_KEY_FINGERPRINT)
    assert openpgp.key_fingerprints(DOCKER_KEY + "trailing text, no block\n") == [DOCKER_KEY_FINGERPRINT]


NVIDIA_URI = "https://nvidia.github.io/libnvidia-container/stable/deb/amd64"
GUIDE_LINE = (
    "deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] "
    "https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /"
)


def test_arch_variable_is_read_as_apt_reads_it() -> None:
    """apt replaces ``$(ARCH)`` in a URI with the host's architecture (see the captures'
    ``Conflicting values set for option Signed-By regarding source …/stable/deb/amd64/``)."""
    guide_uri = one_line_uri(GUIDE_LINE)
    assert guide_uri == "https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH)"
    assert same_uri(guide_uri, NVIDIA_URI, "amd64")
    assert same_uri(guide_uri, f"{NVIDIA_URI}/", "amd64")
    assert not same_uri(guide_uri, NVIDIA_URI, "arm64")
    assert not same_uri(guide_uri.replace("stable", "experimental"), NVIDIA_URI, "amd64")
    assert source_names_uri("/x/nvidia-container-toolkit.list", [GUIDE_LINE], NVIDIA_URI, "amd64")
    assert not source_names_uri("/x/nvidia-container-toolkit.list", [f"#{GUIDE_LINE}"], NVIDIA_URI, "amd64")
    assert not source_names_uri("/x/nvidia-container-toolkit.list", [GUIDE_LINE], NVIDIA_URI)  # no arch: no match
    deb822 = ["Types: deb", "URIs: https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH)", "Suites: /"]
    assert source_names_uri("/x/nvidia.sources", deb822, NVIDIA_URI, "amd64")


def test_fact_command_quotes_what_it_is_given() -> None:
    command = AptRepository().command("https://example.org/a b", "amd64", "/etc/apt/keyrings/x.asc", "/x/y z.sources")
    assert command.startswith("uri='https://example.org/a b'; arch=amd64; ")
    assert "[ \"$f\" = '/x/y z.sources' ]" in command
    assert 'grep -qsF -e "$uri" -e \'$(ARCH)\' "$f"' in command


def test_render_sources_flat_and_with_components() -> None:
    flat = apt_repos.render_sources(NVIDIA_URI, ["/"], [], "amd64", "/etc/apt/keyrings/n.asc", "the n apt repository")
    assert flat == (
        "# Managed by pyinfra-iluvatar: the n apt repository; edits here are overwritten on the next deploy.\n"
        f"Types: deb\nURIs: {NVIDIA_URI}\nSuites: /\nArchitectures: amd64\nSigned-By: /etc/apt/keyrings/n.asc\n"
    )
    named = apt_repos.render_sources(
        "https://x.example/debian",
        ["bookworm", "bookworm-updates"],
        ["main", "contrib"],
        "arm64",
        "/etc/apt/keyrings/x.asc",
        "X",
    )
    assert "Suites: bookworm bookworm-updates\nComponents: main contrib\nArchitectures: arm64\n" in named


@pytest.mark.skipif(os.geteuid() != 0, reason="apt-get update with a private state runs as root here")
def test_apt_trusts_every_armored_block_of_an_asc_keyring(tmp_path: Path) -> None:
    """Why every block counts: a keyring holding Docker's key block, then the test repository's, lets apt accept the
    repository signed by the second; so such a keyring is not "Docker's key alone"."""
    repo = build_nvidia_repo()
    keyring = tmp_path / "two-blocks.asc"
    keyring.write_text(DOCKER_KEY + repo.key_file.read_text())
    assert openpgp.key_fingerprint(keyring.read_text()) == DOCKER_KEY_FINGERPRINT  # the first block's primary key
    assert openpgp.key_fingerprints(keyring.read_text()) == [DOCKER_KEY_FINGERPRINT, repo.fingerprint]
    assert not openpgp.holds_only(keyring.read_text(), DOCKER_KEY_FINGERPRINT)
    state = tmp_path / "apt"
    for sub in ("lists/partial", "archives/partial", "sources.list.d"):
        (state / sub).mkdir(parents=True)
    (state / "status").touch()
    (state / "sources.list").write_text("")
    options = [
        f"-oDir::Etc::sourcelist={state / 'sources.list'}",
        f"-oDir::Etc::sourceparts={state / 'sources.list.d'}",
        f"-oDir::State={state}",
        f"-oDir::State::status={state / 'status'}",
        f"-oDir::Cache={state}",
        "-oAPT::Sandbox::User=root",
        "-oAcquire::http::Proxy=DIRECT",
    ]
    with serve(repo.root) as served:
        (state / "sources.list.d/n.sources").write_text(repo.sources(served.url, signed_by=str(keyring)))
        update = subprocess.run(["apt-get", *options, "update"], capture_output=True, text=True, check=False)
    assert update.returncode == 0, update.stdout + update.stderr
    assert f"{repo.uri(served.url)}  InRelease" in update.stdout


# --- for real: pyinfra @local in a private mount namespace, against the NVIDIA-shaped repository --------------------


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


def _grand_total(log: Path) -> list[str]:
    """The counts of pyinfra's ``Grand total`` result line: hosts, success, error, no change."""
    (line,) = [line for line in log.read_text().splitlines() if line.strip().startswith("Grand total")]
    return line.split()[2:]


KEYRING = "/etc/apt/keyrings/nvidia-container-toolkit.asc"
SOURCES = "/etc/apt/sources.list.d/nvidia-container-toolkit.sources"

NVIDIA_DEPLOY = """
from pyinfra_iluvatar.operations import apt_repos

apt_repos.signed_repository(
    name="NVIDIA container toolkit apt repository",
    uri="{uri}",
    suites=["/"],
    components=[],
    arch="amd64",
    keyring="{keyring}",
    sources="{sources}",
    key_url="{key_url}",
    fingerprint="{fingerprint}",
    cache_dir="{cache}",
)
"""

NVIDIA_NAMESPACE = """
set -eu
scratch=$(mktemp -d)
mount -t tmpfs tmpfs "$scratch"; mkdir "$scratch/u" "$scratch/w"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$scratch/u,workdir=$scratch/w" /etc
mount -t tmpfs tmpfs /var/cache/apt; mkdir -p /var/cache/apt/archives/partial
mount -t tmpfs tmpfs /var/lib/apt/lists; mkdir -p /var/lib/apt/lists/partial
# only the repository under test (no Debian archive to reach), as NVIDIA's install guide left it
rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources {keyring}
mkdir -p /etc/apt/keyrings
cat > /etc/apt/sources.list.d/nvidia-container-toolkit.list <<'LIST'
{guide_list}LIST
cd {out}
for run in 1 2; do {pyinfra} -y @local deploy.py > run$run.log 2>&1 || echo "run $run failed" >> failures; done
{pyinfra} --json @local fact pyinfra_iluvatar.facts.apt_repos.AptRepository uri={uri} arch=amd64 \\
    keyring={keyring} sources={sources} > fact.json
cp {keyring} {sources} .
stat -c '%a %U %G %n' {keyring} {sources} > modes
ls /etc/apt/sources.list.d > sources.d
apt="-oAcquire::http::Proxy=DIRECT -oAPT::Sandbox::User=root"
apt-get $apt update > update.log 2>&1 || echo "apt-get update failed" >> failures
apt-get $apt download nvidia-container-toolkit=1.17.8-1 > download.log 2>&1 || echo "download failed" >> failures
"""


def test_signed_repository_for_real_twice(tmp_path: Path) -> None:
    if not _can_overlay_etc():
        pytest.skip("needs root, unshare and an overlay over /etc in a private mount namespace")
    if subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip() != "amd64":
        pytest.skip("the NVIDIA-shaped test repository is built for amd64 only")
    repo: NvidiaRepo = build_nvidia_repo()
    with serve(repo.root) as served:
        uri = repo.uri(served.url)
        (tmp_path / "deploy.py").write_text(
            NVIDIA_DEPLOY.format(
                uri=uri,
                keyring=KEYRING,
                sources=SOURCES,
                key_url=repo.key_url(served.url),
                fingerprint=repo.fingerprint,
                cache=tmp_path / "cache",
            )
        )
        script = NVIDIA_NAMESPACE.format(
            uri=uri,
            keyring=KEYRING,
            sources=SOURCES,
            guide_list=repo.list_text(served.url),
            out=tmp_path,
            pyinfra=BIN / "pyinfra",
        )
        result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    logs = "\n".join(f"{p.name}:\n{p.read_text()}" for p in sorted(tmp_path.glob("*.log")))
    assert result.returncode == 0, result.stderr + logs
    assert not (tmp_path / "failures").exists(), (tmp_path / "failures").read_text() + logs
    assert [path for path in served.requests if path.endswith("/gpgkey")] == ["/libnvidia-container/gpgkey"]
    assert _grand_total(tmp_path / "run1.log") == ["1", "1", "-", "-"]  # hosts, success, error, no change
    assert _grand_total(tmp_path / "run2.log") == ["1", "-", "-", "1"]  # converged: nothing fetched or written

    assert (tmp_path / "nvidia-container-toolkit.asc").read_text() == repo.key_file.read_text()
    label = "the nvidia-container-toolkit apt repository"
    assert (tmp_path / "nvidia-container-toolkit.sources").read_text() == apt_repos.render_sources(
        uri, ["/"], [], "amd64", KEYRING, label
    )
    assert (tmp_path / "modes").read_text().splitlines() == [f"644 root root {KEYRING}", f"644 root root {SOURCES}"]
    assert [name for name in (tmp_path / "sources.d").read_text().split() if name.startswith("nvidia")] == [
        "nvidia-container-toolkit.list.disabled-by-pyinfra-iluvatar",  # NVIDIA's guide's file: kept, not read
        "nvidia-container-toolkit.sources",
    ]
    update = (tmp_path / "update.log").read_text()
    assert f"{uri}  InRelease" in update and not [line for line in update.splitlines() if line[:2] in ("W:", "E:")]
    (deb,) = tmp_path.glob("nvidia-container-toolkit_*.deb")
    assert deb.read_bytes() == repo.deb("nvidia-container-toolkit", "1.17.8-1").read_bytes()

    (fact,) = json.loads((tmp_path / "fact.json").read_text()).values()
    value = fact["@local"]
    assert [source["path"] for source in value["files"]] == [SOURCES]
    assert value["disabled"] == ["/etc/apt/sources.list.d/nvidia-container-toolkit.list.disabled-by-pyinfra-iluvatar"]
    assert value["keyring"]["content"] == repo.key_file.read_text()
