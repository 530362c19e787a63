"""Running an ASGI app with uvicorn on one or more listening sockets (the subscriptions' and the
API's: web.app.Listeners tells them apart): the sockets are bound here, so a taken port or a
missing certificate is one sentence, not a traceback; access logs are off (a request path holds a
user's token) and the server does not name itself."""

from __future__ import annotations

import errno
import socket
import ssl
from pathlib import Path
from typing import Any

from vpn_manager.errors import ConfigError, InvalidInput
from vpn_manager.fsutil import read_pem


def bind(host: str, port: int, setting: str = "web") -> socket.socket:
    """A listening TCP socket on host:port (IPv6 too); InvalidInput if it cannot be had.
    `setting`: the settings section the address comes from, for the hint."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6 and host in ("::", "[::]"):
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        taken = exc.errno == errno.EADDRINUSE
        raise InvalidInput(
            f"Cannot listen on {host}:{port}: "
            + ("the port is taken." if taken else f"{exc.strerror or exc}."),
            hint=f"Choose another with {'--api-port' if setting == 'api' else '--port'} "
            f"(or the {setting}.port setting)."
            if taken
            else f"Check the address ({setting}.listen): it must be one of this machine's.",
        ) from None
    sock.set_inheritable(True)
    return sock


def check_tls(cert_file: str | None, key_file: str | None) -> None:
    """Both or neither, and a pair ssl can load."""
    if not cert_file and not key_file:
        return
    if not (cert_file and key_file):
        raise InvalidInput(
            "HTTPS needs both a certificate and its key.", hint="Give --cert and --key together."
        )
    # Read as `server install --cert` reads: a regular file of at most 1 MiB, so a FIFO or
    # /dev/zero is refused at once instead of blocking or filling memory in ssl.
    read_pem(Path(cert_file), "certificate")
    read_pem(Path(key_file), "key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(
            f"Cannot use {cert_file} with {key_file}: {getattr(exc, 'reason', None) or exc}.",
            hint="Give a PEM certificate and the private key that belongs to it.",
        ) from None


def serve(
    app: Any,
    socks: list[socket.socket],
    *,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> None:
    """Serve `app` on `socks` until SIGINT or SIGTERM (then KeyboardInterrupt for SIGINT)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        ssl_certfile=cert_file,
        ssl_keyfile=key_file,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        log_config=None,
        lifespan="on",
        timeout_keep_alive=30,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run(sockets=socks)
