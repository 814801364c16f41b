"""The sandbox's HTTP/CONNECT proxy: the hosts' only way out, to an allowlist of package registries.

It listens on the gateway address. ``http://`` requests are forwarded (apt uses them; keep-alive and pipelining
work), ``https://`` goes through ``CONNECT`` tunnels (pip, curl, apt over TLS). Anything not on the allowlist gets
``403`` naming the host and the allowlist. Only the standard library is used; it runs as a daemon with
``main()`` (``--sandbox STATE_DIR --listen ADDRESS:PORT --allow HOST ...``), one log line per request.
"""

from __future__ import annotations

import argparse
import http.client
import re
import selectors
import socket
import socketserver
import sys
import time
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pyinfra_iluvatar.sandbox import network
from pyinfra_iluvatar.sandbox.errors import SandboxError
from pyinfra_iluvatar.sandbox.processes import ProcessRef, command_line, start_daemon, wait_for

MODULE = "pyinfra_iluvatar.sandbox.proxy"
PORT = 3128
DEFAULT_PORTS = (80, 443)
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
CHUNK = 65536
TIMEOUT = 60.0


# What an allowlist entry may be, as messages about a bad one say.
ENTRY_ACCEPTED = "HOST (a host name or IPv4 address), .DOMAIN (its subdomains), or either with :PORT (1 to 65535)"
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOST_OR_DOMAIN = re.compile(rf"\.?{_LABEL}(?:\.{_LABEL})*")


def parse_entry(entry: str) -> tuple[str, tuple[int, ...]]:
    """``entry`` as (host or ``.domain``, lower case without a trailing dot; the ports it allows).

    Raises ``ValueError`` saying what is wrong: anything else (``*``, a URL, a path, a port outside 1 to 65535)
    would never match a request, so the proxy would refuse what the entry was meant to allow.
    """
    if not entry.strip():
        raise ValueError("empty")
    if any(character.isspace() for character in entry):
        raise ValueError("contains whitespace")
    if "://" in entry:
        raise ValueError("a URL: give its host name only")
    host, colon, port = entry.partition(":")
    host = host.removesuffix(".")
    if colon and not (re.fullmatch(r"[0-9]{1,5}", port) and 1 <= int(port) <= 65535):
        raise ValueError("the port is not a number from 1 to 65535")
    if not _HOST_OR_DOMAIN.fullmatch(host):
        raise ValueError("not a host name, IPv4 address or .DOMAIN")
    return host.lower(), (int(port),) if colon else DEFAULT_PORTS


class Allowlist:
    """Which ``host:port`` pairs the proxy connects to.

    An entry is a host name (ports 80 and 443), ``.domain`` (every subdomain of it, ports 80 and 443), or either
    with ``:PORT`` (that port only). Matching ignores case and a trailing dot. A bad entry is a ``ValueError``
    naming it (:func:`parse_entry`).
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self.entries = tuple(entries)
        self._rules: list[tuple[str, tuple[int, ...]]] = []
        for entry in self.entries:
            try:
                self._rules.append(parse_entry(entry))
            except ValueError as error:
                raise ValueError(f"bad allowlist entry {entry!r}: {error}") from None

    def allows(self, host: str, port: int) -> bool:
        """Whether the proxy may connect to ``host`` on ``port``."""
        host = host.lower().rstrip(".")
        for pattern, ports in self._rules:
            matches = host.endswith(pattern) if pattern.startswith(".") else host == pattern
            if matches and port in ports:
                return True
        return False


class ProxyServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its allowlist."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], allowlist: Allowlist) -> None:
        self.allowlist = allowlist
        super().__init__(address, ProxyHandler)

    def server_bind(self) -> None:
        """Bind; the server's name is its address (``HTTPServer`` would look it up in DNS, slow offline)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line, not a traceback, for a client that went away."""
        error = sys.exc_info()[1]
        sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {client_address[0]} connection error: {error!r}\n")


class ProxyHandler(BaseHTTPRequestHandler):
    """One client connection: CONNECT tunnels and forwarded ``http://`` requests."""

    protocol_version = "HTTP/1.1"
    timeout = TIMEOUT * 5  # an idle client connection is closed after this many seconds
    server: ProxyServer
    _upstream: http.client.HTTPConnection | None = None
    _upstream_key: tuple[str, int] | None = None

    def _refuse(self, code: int, message: str) -> None:
        """Answer ``code`` and close: a request body left unread must not be taken for the next request."""
        body = f"pyinfra-iluvatar sandbox proxy: {message}\n".encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _allowed(self, host: str, port: int) -> bool:
        if self.server.allowlist.allows(host, port):
            return True
        allowed = ", ".join(self.server.allowlist.entries)
        self._refuse(403, f"{host}:{port} is not on the allowlist ({allowed})")
        return False

    def do_CONNECT(self) -> None:
        """Open a tunnel to an allowed ``host:port``."""
        host, _, port_text = self.path.rpartition(":")
        if not host or not port_text.isdigit():
            self._refuse(400, f"CONNECT needs HOST:PORT, got {self.path!r}")
            return
        if not self._allowed(host.strip("[]"), int(port_text)):
            return
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port_text)), timeout=TIMEOUT)
        except OSError as error:
            self._refuse(502, f"cannot connect to {self.path}: {error}")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        with upstream:
            _relay(self.connection, upstream)

    def _forward(self) -> None:
        url = urlsplit(self.path)
        if url.scheme != "http" or not url.hostname:
            self._refuse(400, f"expected an absolute http:// URL, got {self.path!r}")
            return
        port = url.port or 80
        if not self._allowed(url.hostname, port):
            return
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._refuse(411, "chunked request bodies are not supported: send Content-Length")
            return
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        dropped = HOP_BY_HOP | {h.strip().lower() for h in self.headers.get("Connection", "").split(",")}
        # Host comes from the URL, the one the allowlist checked: a client's own would pick another virtual host.
        dropped.add("host")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
        try:
            connection = self._connection(url.hostname, port)
            connection.request(self.command, target, body=body, headers=headers)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            self._drop_upstream()
            self._refuse(502, f"{url.hostname}:{port} did not answer: {error}")
            return
        self._relay_response(response)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _forward

    def _connection(self, host: str, port: int) -> http.client.HTTPConnection:
        if self._upstream_key != (host, port) or self._upstream is None:
            self._drop_upstream()
            self._upstream = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
            self._upstream_key = (host, port)
        return self._upstream

    def _drop_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
        self._upstream, self._upstream_key = None, None

    def _relay_response(self, response: http.client.HTTPResponse) -> None:
        self.log_request(response.status)
        self.send_response_only(response.status, response.reason)
        dropped = HOP_BY_HOP | {h.strip().lower() for h in (response.getheader("Connection") or "").split(",")}
        for key, value in response.getheaders():
            if key.lower() not in dropped:
                self.send_header(key, value)
        bodiless = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
        length = response.getheader("Content-Length")
        chunked = not bodiless and length is None
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if bodiless:
            response.read()
        else:
            while data := response.read(CHUNK):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        if response.will_close:
            self._drop_upstream()

    def log_message(self, format: str, *args: object) -> None:
        """One line per request on stderr (the daemon's log file)."""
        sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {self.client_address[0]} {format % args}\n")


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes, is idle for ``5 * TIMEOUT`` or stalls a send for ``TIMEOUT``."""
    peers = {client: upstream, upstream: client}
    with selectors.DefaultSelector() as selector:
        for sock in peers:
            sock.settimeout(TIMEOUT)  # a peer that stops reading fails sendall (OSError) instead of hanging it
            selector.register(sock, selectors.EVENT_READ)
        while True:
            events = selector.select(timeout=TIMEOUT * 5)
            if not events:
                return
            for key, _ in events:
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = source.recv(CHUNK)
                    if not data:
                        return
                    peers[source].sendall(data)
                except OSError:
                    return


def start(address: str, port: int, allow: Sequence[str], owner: str, log: Path) -> ProcessRef:
    """Start the proxy daemon for the sandbox ``owner`` on ``address:port``; wait until it accepts connections."""
    Allowlist(allow)  # a bad entry fails here, with its message, rather than in the daemon's log
    argv = [
        sys.executable,
        "-c",
        f"from {MODULE} import main; main()",
        "--sandbox",
        owner,
        "--listen",
        f"{address}:{port}",
    ]
    for entry in allow:
        argv += ["--allow", entry]
    process = start_daemon(argv, log)
    ready = wait_for(lambda: not process.alive() or network.answers(address, port), timeout=10)
    if not process.alive():
        raise SandboxError(f"the sandbox proxy did not start: {log.read_text()[-2000:]}")
    if not ready:
        process.stop()
        raise SandboxError(f"the sandbox proxy did not accept connections on {address}:{port} within 10 s; log {log}")
    return process


def is_proxy_of(pid: int, owner: str) -> bool:
    """Whether process ``pid`` is the proxy daemon of the sandbox ``owner``."""
    argv = command_line(pid)
    return (
        any(MODULE in arg for arg in argv[:3])
        and "--sandbox" in argv
        and argv[argv.index("--sandbox") + 1 :][:1] == [owner]
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the proxy in the foreground until killed."""
    parser = argparse.ArgumentParser(prog=MODULE, description=__doc__)
    parser.add_argument("--sandbox", required=True, help="state directory of the sandbox served (names it)")
    parser.add_argument("--listen", required=True, help="ADDRESS:PORT to listen on")
    parser.add_argument("--allow", action="append", required=True, help="allowlist entry (repeat)")
    options = parser.parse_args(argv)
    address, _, port = options.listen.rpartition(":")
    server = ProxyServer((address, int(port)), Allowlist(options.allow))
    sys.stderr.write(f"listening on {options.listen}, allowing {', '.join(options.allow)}\n")
    sys.stderr.flush()
    server.serve_forever()
