"""Local peers for end-to-end tests, all on 127.0.0.1: a TLS 1.3 site (the REALITY target), an HTTP
backend the tunnels fetch from, and a minimal SOCKS5 client to hold connections open through a
tunnel. Nothing here talks to any other address."""

from __future__ import annotations

import socket
import socketserver
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TARGET_PAGE = b"<html><body>the REALITY target's own page</body></html>\n"
BACKEND_PAGE = b"hello through the tunnel\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate and key for `name` (the one our TLS servers make)."""
    from vpn_manager.engines.tls import make_self_signed

    return make_self_signed(directory, name)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    page = BACKEND_PAGE

    def do_GET(self) -> None:
        if self.path.startswith("/stream"):
            self._stream()
            return
        if self.path.startswith("/bytes/"):
            self._bytes(int(self.path.rsplit("/", 1)[1]))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(self.page)))
        self.end_headers()
        self.wfile.write(self.page)

    def _bytes(self, count: int) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(count))
        self.end_headers()
        chunk = b"x" * 65536
        while count > 0:
            self.wfile.write(chunk[: min(count, len(chunk))])
            count -= len(chunk)

    def _stream(self) -> None:
        """A slow endless body: 1 KiB every 50 ms for up to two minutes."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                self.wfile.write(b"s" * 1024)
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            return

    def log_message(self, *args: Any) -> None:
        return


class _TargetHandler(_Handler):
    page = TARGET_PAGE


def end_process(process: subprocess.Popen[Any]) -> None:
    """Stop a helper process: SIGTERM, then SIGKILL after 5 s."""
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def serving(server: socketserver.TCPServer) -> Iterator[int]:
    """Run a socket server in the background; yield its port, shut it down after."""
    if isinstance(server, socketserver.ThreadingMixIn):
        server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def http_backend(address: str = "127.0.0.1") -> Iterator[int]:
    """The HTTP backend (pages, /bytes/N, /stream) listening on `address`."""
    with serving(ThreadingHTTPServer((address, 0), _Handler)) as port:
        yield port


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    context: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(30)
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            _TargetHandler(tls, client_address, self)
        except (ssl.SSLError, OSError):
            return

    def handle_error(self, request: Any, client_address: Any) -> None:
        return


@contextmanager
def tls13_site(directory: Path, name: str) -> Iterator[int]:
    """An HTTPS site that speaks only TLS 1.3, with a self-signed certificate for `name`."""
    cert, key = self_signed(directory, name)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2", "http/1.1"])
    server = _TlsServer(("127.0.0.1", 0), _TargetHandler)
    server.context = context
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def tls_get(port: int, server_name: str) -> bytes:
    """GET / over TLS 1.3 with SNI `server_name`, certificate unchecked (it is our test site's)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.set_alpn_protocols(["http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        return data


def socks_connect(socks_port: int, host: str, port: int, timeout: float = 10) -> socket.socket:
    """Open a TCP connection to host:port through a SOCKS5 proxy without authentication."""
    sock = socket.create_connection(("127.0.0.1", socks_port), timeout=timeout)
    try:
        sock.sendall(b"\x05\x01\x00")
        if sock.recv(2) != b"\x05\x00":
            raise OSError("SOCKS5 server refused the no-auth method")
        address = socket.inet_aton(host)
        sock.sendall(b"\x05\x01\x00\x01" + address + struct.pack("!H", port))
        reply = sock.recv(10)
        if len(reply) < 2 or reply[1] != 0:
            raise OSError(f"SOCKS5 connect failed: {reply!r}")
    except BaseException:
        sock.close()
        raise
    return sock


class Stream:
    """A long download through a tunnel, read in a thread; records when bytes last arrived."""

    def __init__(self, socks_port: int, backend_port: int, host: str = "127.0.0.1") -> None:
        self.sock = socks_connect(socks_port, host, backend_port)
        self.sock.sendall(b"GET /stream HTTP/1.1\r\nHost: backend\r\n\r\n")
        self.received = 0
        self.last = time.monotonic()
        self.ended: str | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        self.sock.settimeout(1.0)
        while True:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                self.ended = f"error: {exc}"
                return
            if not chunk:
                self.ended = "closed"
                return
            self.received += len(chunk)
            self.last = time.monotonic()

    def flowing(self, within: float = 2.0) -> bool:
        """Did bytes arrive recently, and does more arrive now?"""
        before = self.received
        time.sleep(within)
        return self.ended is None and self.received > before

    def close(self) -> None:
        self.sock.close()
