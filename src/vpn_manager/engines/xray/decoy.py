"""The decoy page of a TLS server: what a browser, curl or an active probe that is not a client
gets from the server's port (Xray's fallbacks pass such connections here). A small "It works"
page with a web server's ordinary headers, on a unix socket in the server's private directory
(0600), served by a thread of the engine's own process (engines/xray/child.py). Standard library
only: it is imported by the engine's process before Xray starts."""

from __future__ import annotations

import contextlib
import json
import os
import socketserver
import threading
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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return "nginx"  # not "BaseHTTP/0.6 Python/3.x"

    def _page(self, body: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        if body:
            self.wfile.write(PAGE)

    def do_GET(self) -> None:
        self._page(body=True)

    def do_HEAD(self) -> None:
        self._page(body=False)

    def _not_allowed(self) -> None:
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

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
