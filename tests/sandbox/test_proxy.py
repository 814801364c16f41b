"""The sandbox proxy: its allowlist, and the real server forwarding to local servers on 127.0.0.1 (no root)."""

from __future__ import annotations

import http.client
import re
import socket
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pyinfra_iluvatar.sandbox.proxy import Allowlist, ProxyServer, parse_entry


@pytest.mark.parametrize(
    ("host", "port", "allowed"),
    [
        ("deb.debian.org", 80, True),
        ("deb.debian.org", 443, True),
        ("DEB.Debian.org.", 80, True),
        ("deb.debian.org", 8080, False),
        ("evil-deb.debian.org", 80, False),
        ("debian.org", 80, False),
        ("pypi.org", 443, True),
        ("files.pythonhosted.org", 443, True),
        ("mirror.example.net", 80, True),
        ("example.net", 80, False),
        ("cache.local", 3142, True),
        ("cache.local", 80, False),
        ("github.com", 443, False),
        ("198.18.0.1", 80, False),
    ],
)
def test_allowlist(host: str, port: int, allowed: bool) -> None:
    allowlist = Allowlist(["deb.debian.org", "pypi.org", "files.pythonhosted.org", ".example.net", "cache.local:3142"])
    assert allowlist.allows(host, port) is allowed


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("", "empty"),
        (" ", "empty"),
        (" pypi.org", "contains whitespace"),
        ("pypi .org", "contains whitespace"),
        ("*", "not a host name"),
        ("*.debian.org", "not a host name"),
        ("..debian.org", "not a host name"),
        ("-bad.org", "not a host name"),
        ("deb.debian.org/debian", "not a host name"),
        ("user@pypi.org", "not a host name"),
        (":80", "not a host name"),
        ("http://deb.debian.org", "a URL"),
        ("https://pypi.org:443", "a URL"),
        ("host:http", "the port is not a number from 1 to 65535"),
        ("host:", "the port is not a number from 1 to 65535"),
        ("host:0", "the port is not a number from 1 to 65535"),
        ("host:99999", "the port is not a number from 1 to 65535"),
        ("host:80:81", "the port is not a number from 1 to 65535"),
        ("host:\u00b2", "the port is not a number from 1 to 65535"),
    ],
)
def test_bad_allowlist_entries(entry: str, reason: str) -> None:
    with pytest.raises(ValueError, match=f"^bad allowlist entry {re.escape(repr(entry))}: {reason}"):
        Allowlist(["pypi.org", entry])


@pytest.mark.parametrize(
    ("entry", "rule"),
    [
        ("Deb.Debian.org.", ("deb.debian.org", (80, 443))),
        (".example.net", (".example.net", (80, 443))),
        ("cache.local:3142", ("cache.local", (3142,))),
        ("127.0.0.1:65535", ("127.0.0.1", (65535,))),
    ],
)
def test_good_allowlist_entries(entry: str, rule: tuple[str, tuple[int, ...]]) -> None:
    assert parse_entry(entry) == rule


def test_binding_asks_no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(name: str = "") -> str:
        raise AssertionError(f"DNS lookup of {name!r}")

    monkeypatch.setattr(socket, "getfqdn", no_dns)
    server = ProxyServer(("127.0.0.1", 0), Allowlist(["deb.debian.org"]))
    server.server_close()
    assert server.server_name == "127.0.0.1"


class Origin(BaseHTTPRequestHandler):
    """A registry stand-in: /fixed answers with Content-Length, /chunked without (chunked upstream)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = f"{self.path} via {self.headers.get('Host')} proxy-header={self.headers.get('Proxy-Connection')}"
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (body.encode(), b"-second-part"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "12345")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class Echo(socketserver.BaseRequestHandler):
    """A TLS-server stand-in for CONNECT tunnels: echoes what it gets, upper-cased."""

    def handle(self) -> None:
        while data := self.request.recv(1024):
            self.request.sendall(data.upper())


def serve(server: socketserver.BaseServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = server.server_address
        assert isinstance(address, tuple)
        yield int(address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def origin() -> Iterator[int]:
    yield from serve(ThreadingHTTPServer(("127.0.0.1", 0), Origin))


@pytest.fixture
def echo() -> Iterator[int]:
    socketserver.ThreadingTCPServer.daemon_threads = True
    yield from serve(socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo))


@pytest.fixture
def proxy(origin: int, echo: int) -> Iterator[int]:
    yield from serve(ProxyServer(("127.0.0.1", 0), Allowlist([f"127.0.0.1:{origin}", f"127.0.0.1:{echo}"])))


def test_forwards_keep_alive_requests_on_one_connection(proxy: int, origin: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", proxy, timeout=10)
    answers = []
    for path in ("/fixed", "/chunked", "/fixed?again=1"):
        connection.request("GET", f"http://127.0.0.1:{origin}{path}", headers={"Proxy-Connection": "keep-alive"})
        response = connection.getresponse()
        answers.append((response.status, response.read().decode()))
    connection.request("HEAD", f"http://127.0.0.1:{origin}/head")
    head = connection.getresponse()
    assert (head.status, head.getheader("Content-Length"), head.read()) == (200, "12345", b"")
    connection.close()
    host = f"127.0.0.1:{origin}"
    assert answers == [
        (200, f"/fixed via {host} proxy-header=None"),
        (200, f"/chunked via {host} proxy-header=None-second-part"),
        (200, f"/fixed?again=1 via {host} proxy-header=None"),
    ]


def test_the_host_header_comes_from_the_checked_url(proxy: int, origin: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", proxy, timeout=10)
    connection.request("GET", f"http://127.0.0.1:{origin}/fixed", headers={"Host": "github.com"})
    response = connection.getresponse()
    assert response.read().decode() == f"/fixed via 127.0.0.1:{origin} proxy-header=None"


def test_refuses_hosts_not_on_the_allowlist_without_connecting(proxy: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", proxy, timeout=10)
    connection.request("GET", "http://github.com/COS-IN/iluvatar-faas")
    response = connection.getresponse()
    assert response.status == 403
    assert "github.com:80 is not on the allowlist" in response.read().decode()


def test_a_refused_request_body_is_not_taken_for_a_request(proxy: int, origin: int) -> None:
    hidden = f"GET http://127.0.0.1:{origin}/fixed HTTP/1.1\r\nHost: 127.0.0.1:{origin}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", proxy), timeout=10) as client:
        client.sendall(b"POST http://github.com/ HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(hidden), hidden))
        answer = b""
        while data := client.recv(65536):
            answer += data
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert b"Connection: close\r\n" in answer
    assert b"/fixed via" not in answer and answer.count(b"HTTP/1.1 ") == 1


def test_connect_tunnel_to_an_allowed_port(proxy: int, echo: int) -> None:
    with socket.create_connection(("127.0.0.1", proxy), timeout=10) as client:
        client.sendall(f"CONNECT 127.0.0.1:{echo} HTTP/1.1\r\nHost: 127.0.0.1:{echo}\r\n\r\n".encode())
        assert client.recv(1024).startswith(b"HTTP/1.1 200 Connection established\r\n")
        client.sendall(b"client hello")
        assert client.recv(1024) == b"CLIENT HELLO"


def test_connect_refused_for_other_hosts_and_ports(proxy: int, origin: int) -> None:
    for target in ("pypi.org:443", f"127.0.0.1:{origin + 1 if origin < 65535 else 1}"):
        with socket.create_connection(("127.0.0.1", proxy), timeout=10) as client:
            client.sendall(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
            assert client.recv(1024).startswith(b"HTTP/1.1 403 ")
