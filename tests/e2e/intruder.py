"""A standalone client of the engines' control APIs, run by the tests as another local user (uid
65534) to prove they refuse it: it imports only the standard library and `h2` (copied next to it
by the test), never vpn_manager. Prints one JSON object: {"reached": bool, ...}; `reached` means
the API answered at all (any gRPC status, any HTTP status).

    python3 intruder.py grpc ADDRESS PATH HEX_BODY [SECRET]   ADDRESS: host:port or /unix/path
    python3 intruder.py http METHOD URL [JSON_BODY]
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import urllib.error
import urllib.request
from typing import Any


def connect(address: str) -> socket.socket:
    if address.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(address)
        return sock
    host, _, port = address.rpartition(":")
    return socket.create_connection((host, int(port)), timeout=5)


def grpc(address: str, path: str, body: bytes, secret: str = "") -> dict[str, Any]:
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import DataReceived, ResponseReceived, StreamEnded, TrailersReceived

    try:
        sock = connect(address)
    except OSError as exc:
        return {"reached": False, "error": f"{type(exc).__name__}: {exc}"}
    h2 = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
    h2.initiate_connection()
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    if secret:
        headers.append(("authorization", f"Bearer {secret}"))
    h2.send_headers(1, headers)
    h2.send_data(1, b"\x00" + struct.pack(">I", len(body)) + body, end_stream=True)
    status: dict[str, str] = {}
    data = b""
    try:
        sock.sendall(h2.data_to_send())
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return {"reached": True, "closed": True, **status}
            for event in h2.receive_data(chunk):
                if isinstance(event, ResponseReceived | TrailersReceived):
                    status.update({str(k): str(v) for k, v in event.headers or []})
                elif isinstance(event, DataReceived):
                    data += event.data
                    h2.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, StreamEnded):
                    return {"reached": True, "data": data.hex(), **status}
            sock.sendall(h2.data_to_send())
    except OSError as exc:
        return {"reached": bool(status), "error": f"{type(exc).__name__}: {exc}", **status}
    finally:
        sock.close()


def http(method: str, url: str, body: str | None = None) -> dict[str, Any]:
    data = None if body is None else body.encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return {"reached": True, "status": response.status, "body": response.read().decode()}
    except urllib.error.HTTPError as exc:
        return {"reached": True, "status": exc.code, "body": exc.read().decode()}
    except OSError as exc:
        return {"reached": False, "error": f"{type(exc).__name__}: {exc}"}


def main(args: list[str]) -> None:
    if args[0] == "grpc":
        result = grpc(args[1], args[2], bytes.fromhex(args[3]), *args[4:5])
    else:
        result = http(args[1], args[2], *args[3:4])
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
