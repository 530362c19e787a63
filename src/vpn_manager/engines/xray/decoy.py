"""The decoy page of a TLS server: what a browser, curl or an active probe that is not a client
gets from the server's port (Xray's fallbacks pass such connections here). A small "It works"
page at / (and /index.html) and nginx's own 404 page for any other path, with nginx's ordinary
headers, as a freshly installed web server answers; on a unix socket in the server's private
directory (0600), served by a thread of the engine's own process (engines/xray/child.py).
Standard library only: it is imported by the engine's process before Xray starts."""

from __future__ import annotations

import contextlib
import email.utils
import json
import os
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

SOCKET_NAME = "decoy.sock"  # config.DECOY_SOCKET (not imported: this module stays light)
PAGE = b"""<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>Welcome</title>
</head>
<body>
<h1>It works!</h1>
<p>This is the default web page for this server.</p>
<p>The web server software is running but no content has been added yet.</p>
</body>
</html>
"""
PAGE_PATHS = ("/", "/index.html")


def error_page(status: str) -> bytes:
    """nginx's built-in error page for `status` ("404 Not Found"), as nginx sends it (CRLF)."""
    lines = ["<html>", f"<head><title>{status}</title></head>", "<body>"]
    lines += [f"<center><h1>{status}</h1></center>", "<hr><center>nginx</center>", "</body>"]
    return "\r\n".join([*lines, "</html>", ""]).encode()


NOT_FOUND = error_page("404 Not Found")
NOT_ALLOWED = error_page("405 Not Allowed")
# The page was "written" when the engine started: Last-Modified and an nginx-style ETag.
SINCE = int(time.time())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 75  # nginx's keepalive_timeout: an idle or stalled connection is closed

    def version_string(self) -> str:
        return "nginx"  # not "BaseHTTP/0.6 Python/3.x"

    def _page(self, body: bool) -> None:
        if self.path.split("?", 1)[0] not in PAGE_PATHS:
            self._answer(404, "Not Found", NOT_FOUND, body)
            return
        self._answer(200, "OK", PAGE, body, page=True)

    def _answer(
        self, code: int, reason: str, content: bytes, body: bool, *, page: bool = False
    ) -> None:
        self.send_response(code, reason)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(content)))
        if page:
            self.send_header("Last-Modified", email.utils.formatdate(SINCE, usegmt=True))
            self.send_header("ETag", f'"{SINCE:x}-{len(content):x}"')
        self.send_header("Connection", "close" if self.close_connection else "keep-alive")
        if page:
            self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if body:
            self.wfile.write(content)

    def do_GET(self) -> None:
        self._page(body=True)

    def do_HEAD(self) -> None:
        self._page(body=False)

    def _not_allowed(self) -> None:
        self.close_connection = True  # its body (if any) is not read
        self._answer(405, "Not Allowed", NOT_ALLOWED, body=True)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A request the handler cannot parse (random bytes, a bad request line): nginx's error
        page and a close, not Python's "Error response" page."""
        reason = self.responses.get(code, ("Error",))[0]
        self.close_connection = True
        self.request_version = "HTTP/1.1"  # a status line and headers, whatever was sent
        content = error_page(f"{code} {reason}")
        self.send_response(code, reason)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(content)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def address_string(self) -> str:
        return "-"  # a unix socket's peer has no address

    def log_message(self, format: str, *args: Any) -> None:
        return  # Xray's access log already has the connection


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a probe that hangs up is not an error


def sockets_in(config: dict[str, Any]) -> list[str]:
    """The decoy sockets a rendered config's fallbacks point to."""
    found = []
    for inbound in config.get("inbounds", []):
        for rule in (inbound.get("settings") or {}).get("fallbacks", []):
            dest = rule.get("dest")
            if isinstance(dest, str) and dest.endswith("/" + SOCKET_NAME) and dest not in found:
                found.append(dest)
    return found


def serve(path: str) -> Server:
    """Serve the page on the unix socket `path` (a stale one from an earlier run is replaced)
    from a daemon thread."""
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()
    old = os.umask(0o177)  # the socket is 0600 from the start
    try:
        server = Server(path, Handler)
    finally:
        os.umask(old)
    threading.Thread(target=server.serve_forever, name="decoy", daemon=True).start()
    return server


def serve_from_config(text: str) -> list[Server]:
    return [serve(path) for path in sockets_in(json.loads(text))]
