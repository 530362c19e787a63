"""The decoy of Xray TLS servers, without an engine: the rendered configs (golden files), what
install and `server set` store and refuse, and the local page served on a real unix socket."""

from __future__ import annotations

import dataclasses
import http.client
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.golden_files import GOLDEN_DIR, assert_golden
from tests.test_xray_render import CERT, FILES, STREAM_CLIENTS
from vpn_manager.engines.xray import decoy
from vpn_manager.engines.xray.config import render_text
from vpn_manager.engines.xray.engine import XrayEngine
from vpn_manager.errors import InvalidInput
from vpn_manager.models.server import ServerChange, ServerCreate
from vpn_manager.specs import ServerSpec

GOLDEN = GOLDEN_DIR / "xray"
CONTROL = "/state/run/edge"
# (protocol, the settings beyond api_port and tls), one golden file each.
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "vless-raw-local": ("vless", {"network": "raw", "decoy": "local"}),
    "trojan-raw-site": ("trojan", {"network": "raw", "decoy": "www.example.net:80"}),
    "trojan-ws-local": ("trojan", {"network": "ws", "path": "/ws", "decoy": "local"}),
    "vmess-grpc-site": (
        "vmess",
        {"network": "grpc", "service_name": "Tunnel", "decoy": "127.0.0.1:8080"},
    ),
    "vless-xhttp-local": ("vless", {"network": "xhttp", "path": "/x", "decoy": "local"}),
    "vmess-raw-none": ("vmess", {"network": "raw", "decoy": "none"}),
}


def spec(case: str, **changes: Any) -> ServerSpec:
    protocol, stored = CASES[case]
    settings = {"api_port": 10085, "security": "tls", "tls": CERT, **stored}
    found = ServerSpec("edge", protocol, "0.0.0.0", 443, "vpn.example.org", settings, {})
    return dataclasses.replace(found, control_dir=CONTROL, **changes)


def rendered(server: ServerSpec) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(render_text(server, STREAM_CLIENTS, FILES))
    return data


@pytest.mark.parametrize("case", sorted(CASES))
def test_decoy_config_matches_golden(case: str) -> None:
    assert_golden(GOLDEN / f"decoy-{case}.json", render_text(spec(case), STREAM_CLIENTS, FILES))


def test_raw_tcp_falls_back_on_its_own_inbound() -> None:
    inbound = rendered(spec("vless-raw-local"))["inbounds"][0]
    assert (inbound["tag"], inbound["port"]) == ("vless-in", 443)
    assert inbound["settings"]["fallbacks"] == [{"dest": f"{CONTROL}/decoy.sock", "xver": 0}]
    assert inbound["streamSettings"]["tlsSettings"]["alpn"] == ["http/1.1"]
    site = rendered(spec("trojan-raw-site"))["inbounds"][0]
    assert site["settings"]["fallbacks"] == [{"dest": "www.example.net:80", "xver": 0}]


def test_a_front_passes_the_transport_on_to_the_real_inbound() -> None:
    front, real, api = rendered(spec("trojan-ws-local"))["inbounds"]
    assert (front["tag"], front["protocol"], front["port"]) == ("front-in", "vless", 443)
    assert front["settings"]["clients"] == []
    assert front["settings"]["fallbacks"] == [
        {"path": "/ws", "dest": f"{CONTROL}/inbound.sock", "xver": 2},
        {"dest": f"{CONTROL}/decoy.sock", "xver": 0},
    ]
    assert front["streamSettings"]["security"] == "tls"
    # The real inbound keeps its tag (the API changes its users), without TLS, on a socket.
    assert real["tag"] == "trojan-in"
    assert real["listen"] == f"{CONTROL}/inbound.sock,0600"
    assert "port" not in real
    assert real["streamSettings"]["security"] == "none"
    assert real["streamSettings"]["sockopt"] == {"acceptProxyProtocol": True}
    assert real["streamSettings"]["wsSettings"] == {"path": "/ws"}
    assert [c["email"] for c in real["settings"]["clients"]] == ["user-1", "user-7"]
    assert api["tag"] == "api-in"
    grpc = rendered(spec("vmess-grpc-site"))["inbounds"][0]
    assert grpc["settings"]["fallbacks"] == [
        {"alpn": "h2", "dest": f"{CONTROL}/inbound.sock", "xver": 2},
        {"dest": "127.0.0.1:8080", "xver": 0},
    ]
    assert grpc["streamSettings"]["tlsSettings"]["alpn"] == ["h2", "http/1.1"]
    # XHTTP: HTTP/2 only; its path has no rule (its clients ask for PATH/SESSION/…, which no
    # exact path matches), so a plain GET of the path gets the decoy.
    xhttp = rendered(spec("vless-xhttp-local"))["inbounds"][0]
    assert xhttp["settings"]["fallbacks"] == [
        {"alpn": "h2", "dest": f"{CONTROL}/inbound.sock", "xver": 2},
        {"dest": f"{CONTROL}/decoy.sock", "xver": 0},
    ]


def test_no_decoy_on_vmess_raw_reality_or_without_a_private_directory() -> None:
    (inbound, _api) = rendered(spec("vmess-raw-none"))["inbounds"]
    assert "fallbacks" not in inbound["settings"]
    assert "alpn" not in inbound["streamSettings"]["tlsSettings"]
    # A server stored before decoys (no `decoy`): the local page.
    old = spec("trojan-ws-local")
    old = dataclasses.replace(old, settings={k: v for k, v in old.settings.items() if k != "decoy"})
    assert rendered(old)["inbounds"][0]["tag"] == "front-in"
    # In a container only a site: nothing there serves the local page.
    docker = rendered(spec("trojan-ws-local", runtime="docker"))["inbounds"]
    assert [i["tag"] for i in docker] == ["trojan-in", "api-in"]
    docker_site = rendered(spec("vmess-grpc-site", runtime="docker"))["inbounds"]
    assert docker_site[1]["listen"] == f"{CONTROL}/inbound.sock,0666"


def create(**fields: Any) -> ServerCreate:
    base = {"name": "e", "protocol": "trojan", "port": 443, "sni": "vpn.test"}
    return ServerCreate.model_validate(base | fields)


def test_install_stores_the_decoy(tmp_path: Path) -> None:
    engine = XrayEngine()

    def decoy_of(**fields: Any) -> Any:
        return engine.new_server(create(**fields), lambda: 10085, tmp_path)[0]["decoy"]

    assert decoy_of(transport="ws") == "local"
    assert decoy_of(transport="ws", decoy="Site.Example:8080") == "site.example:8080"
    assert decoy_of(protocol="vmess") == "none"
    assert decoy_of(transport="grpc", runtime="docker") == "none"
    assert decoy_of(transport="grpc", runtime="docker", decoy="10.0.0.2:80") == "10.0.0.2:80"
    with pytest.raises(InvalidInput, match="cannot serve the local decoy page"):
        decoy_of(transport="grpc", runtime="docker", decoy="local")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"protocol": "vmess", "decoy": "a.test:80"}, "VMess over raw TCP cannot have a decoy"),
        ({"protocol": "vless", "decoy": "a.test:80"}, "--decoy applies to --security tls"),
        ({"protocol": "shadowsocks", "sni": None, "decoy": "a.test:80"}, "vless, trojan and vmess"),
        (
            {"transport": "ws", "decoy": "a.test"},
            r"give local \(a small page .*\) or the HOST:PORT",
        ),
        ({"transport": "ws", "decoy": "a.test:0"}, "or the HOST:PORT of an http:// site"),
    ],
)
def test_install_refuses_a_decoy_that_cannot_be(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        create(**fields)


def test_server_set_changes_the_decoy(tmp_path: Path) -> None:
    engine = XrayEngine()
    ws = spec("trojan-ws-local")
    changed = engine.change(ws, ServerChange(decoy="127.0.0.1:81"), tmp_path)
    assert changed.settings["decoy"] == "127.0.0.1:81"
    back = engine.change(ws, ServerChange(decoy="LOCAL"), tmp_path)
    assert back.settings["decoy"] == "local"
    with pytest.raises(InvalidInput, match="VMess over raw TCP cannot have a decoy"):
        engine.change(spec("vmess-raw-none"), ServerChange(decoy="a.test:80"), tmp_path)
    with pytest.raises(InvalidInput, match="cannot serve the local decoy page"):
        engine.change(
            spec("vmess-grpc-site", runtime="docker"), ServerChange(decoy="local"), tmp_path
        )


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def test_the_local_page_is_served_on_the_configs_socket(tmp_path: Path) -> None:
    server_spec = spec("trojan-ws-local")
    server_spec = dataclasses.replace(server_spec, control_dir=str(tmp_path))
    text = render_text(server_spec, STREAM_CLIENTS, FILES)
    path = tmp_path / "decoy.sock"
    path.write_text("stale")  # left by an earlier run: replaced
    assert decoy.sockets_in(json.loads(text)) == [str(path)]
    servers = decoy.serve_from_config(text)
    try:
        assert path.stat().st_mode & 0o777 == 0o600
        connection = UnixHTTPConnection(str(path))
        for page in ("/", "/index.html?x=1"):
            connection.request("GET", page)
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, decoy.PAGE)
            assert response.getheader("Server") == "nginx"
            assert response.getheader("Content-Type") == "text/html"
            assert response.getheader("ETag") == f'"{decoy.SINCE:x}-{len(decoy.PAGE):x}"'
        # Any other path (the transport's too): nginx's own 404 page, on the same connection.
        connection.request("GET", "/ws")
        response = connection.getresponse()
        assert (response.status, response.reason) == (404, "Not Found")
        assert response.read() == decoy.NOT_FOUND
        assert b"<center>nginx</center>" in decoy.NOT_FOUND
        connection.request("HEAD", "/")
        response = connection.getresponse()
        assert (response.status, response.getheader("Content-Length")) == (200, "256")
        assert response.read() == b""
        connection.request("POST", "/")
        response = connection.getresponse()
        assert (response.status, response.reason) == (405, "Not Allowed")
        assert response.read() == decoy.NOT_ALLOWED
        connection.close()
        # Bytes that are no HTTP request (a probe's): nginx's 400 page, then a close.
        with socket.socket(socket.AF_UNIX) as raw:
            raw.connect(str(path))
            raw.sendall(bytes(range(1, 200)) + b"\r\n\r\n")
            answer = b""
            while chunk := raw.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n")
        assert answer.endswith(b"\r\n\r\n" + decoy.error_page("400 Bad Request"))
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_a_tls_server_without_a_decoy_says_so() -> None:
    """Install and `server set` print the engine's advice: a TLS server that answers probes with
    no web page says why and what gives it one; one with a decoy (or REALITY) says nothing."""
    engine = XrayEngine()
    (vmess,) = engine.advice(spec("vmess-raw-none"))
    assert vmess.startswith("edge has no decoy: VMess over raw TCP cannot tell its streams")
    assert "--transport ws" in vmess
    (docker,) = engine.advice(spec("trojan-ws-local", runtime="docker"))
    assert docker.startswith("edge has no decoy: nothing in the engine's container serves")
    assert "`vpn server set edge --decoy HOST:PORT`" in docker
    assert engine.advice(spec("vmess-grpc-site", runtime="docker")) == []
    assert engine.advice(spec("trojan-ws-local")) == []
    assert engine.advice(spec("vless-xhttp-local")) == []
