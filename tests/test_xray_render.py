"""The Xray server config and the gRPC messages, compared whole. The rendered config is proven by
tests/e2e (real server, real clients); the messages by the live add/remove there. The recorded
bytes are what the hand-written encoder we had before the generated messages produced (and Xray
took): the generated ones must give and read the same."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from tests.golden_files import GOLDEN_DIR, assert_golden
from vpn_manager.engines.base import Files
from vpn_manager.engines.xray import api, keys
from vpn_manager.engines.xray.config import render_text
from vpn_manager.engines.xray.engine import XrayEngine
from vpn_manager.engines.xray.proto.app.proxyman.command import command_pb2 as handler
from vpn_manager.engines.xray.proto.app.stats.command import command_pb2 as stats
from vpn_manager.engines.xray.proto.proxy.vless.account_pb2 import Account
from vpn_manager.errors import EngineError
from vpn_manager.specs import Client, ServerSpec

GOLDEN = GOLDEN_DIR / "xray"
PRIVATE = "4FntWLkKlvSV44OGaN0WmHJeH5r5B1XTdNUUp5yKfHU"


def spec(allow_private: bool) -> ServerSpec:
    return ServerSpec(
        name="edge",
        protocol="vless-reality",
        listen="0.0.0.0",
        port=443,
        host="vpn.example.org",
        settings={
            "sni": "www.example.com",
            "dest": "www.example.com:443",
            "public_key": keys.public_key(PRIVATE),
            "short_ids": ["0123456789abcdef", "fedcba9876543210"],
            "fingerprint": "chrome",
            "api_port": 10085,
            "allow_private": allow_private,
        },
        secret={"private_key": PRIVATE},
    )


CLIENTS = [
    Client(1, "alice", {"uuid": "62a1d88e-a71f-41a9-b2a2-f017b87cc93c"}),
    Client(7, "bob", {"uuid": "0b7d5b3c-3f1e-4a47-9d7b-2a7f0f4f1c11"}),
]
FILES = Files(Path("/state/rendered/edge/config.json"), Path("/logs/a.log"), Path("/logs/e.log"))


@pytest.mark.parametrize("allow_private", [False, True], ids=["default", "allow-private"])
def test_server_config_matches_golden(allow_private: bool) -> None:
    text = render_text(spec(allow_private), CLIENTS, FILES)
    golden = GOLDEN / f"server-{'allow-private' if allow_private else 'default'}.json"
    assert_golden(golden, text)
    data = json.loads(text)
    clients = data["inbounds"][0]["settings"]["clients"]
    assert [c["email"] for c in clients] == ["user-1", "user-7"]  # names never reach the engine
    assert "alice" not in text


def test_keys_are_xray_encoded() -> None:
    private, public = keys.new_key_pair()
    assert len(private) == len(public) == 43
    assert "=" not in private + public
    assert keys.public_key(private) == public
    assert keys.public_key(PRIVATE) == "jeZKrivJYDf1vz6p1lIZ97WbSGyBufFbIKRy4Ah_WQw"
    with pytest.raises(ValueError, match="32 bytes"):
        keys.public_key("abcd")
    ids = keys.new_short_ids()
    assert len(set(ids)) == 3
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


def test_add_user_message_bytes() -> None:
    message = api.add_vless_user("in", "user-1", "u", "xtls-rprx-vision", 0)
    assert message.SerializeToString() == (
        b"\n\x02in\x12k\n*xray.app.proxyman.command.AddUserOperation\x12=\n;\x12\x06user-1"
        b"\x1a1\n\x18xray.proxy.vless.Account\x12\x15\n\x01u\x12\x10xtls-rprx-vision"
    )
    assert message.tag == "in"
    operation = message.operation
    assert operation.type == "xray.app.proxyman.command.AddUserOperation"
    user = handler.AddUserOperation.FromString(operation.value).user
    assert user.email == "user-1"
    assert user.account.type == "xray.proxy.vless.Account"
    account = Account.FromString(user.account.value)
    assert (account.id, account.flow) == ("u", "xtls-rprx-vision")
    level = api.add_vless_user("vless-in", "user-7", "u", "xtls-rprx-vision", 3)
    assert handler.AddUserOperation.FromString(level.operation.value).user.level == 3


def test_remove_user_message_bytes() -> None:
    assert api.remove_user("vless-in", "user-1").SerializeToString() == (
        b"\n\x08vless-in\x129\n-xray.app.proxyman.command.RemoveUserOperation\x12\x08\n\x06user-1"
    )


def test_inbound_users_response_parsing() -> None:
    data = (
        b"\n^\x12\x06user-1\x1aT\n\x18xray.proxy.vless.Account\x128\n$"
        b"62a1d88e-a71f-41a9-b2a2-f017b87cc93c\x12\x10xtls-rprx-vision"
        b"\n^\x12\x06user-7\x1aT\n\x18xray.proxy.vless.Account\x128\n$"
        b"0b7d5b3c-3f1e-4a47-9d7b-2a7f0f4f1c11\x12\x10xtls-rprx-vision"
    )
    users = handler.GetInboundUserResponse.FromString(data).users
    assert {u.email: Account.FromString(u.account.value).id for u in users} == {
        "user-1": "62a1d88e-a71f-41a9-b2a2-f017b87cc93c",
        "user-7": "0b7d5b3c-3f1e-4a47-9d7b-2a7f0f4f1c11",
    }


def test_stats_response_parsing() -> None:
    data = (
        b"\n%\n user>>>user-1>>>traffic>>>uplink\x10\xac\x02"
        b'\n+\n"user>>>user-1>>>traffic>>>downlink\x10\x80\x80\x80\x80\x80 '
        b"\n-\n inbound>>>api>>>traffic>>>uplink\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"
    )
    assert api.counters(data) == {
        "user>>>user-1>>>traffic>>>uplink": 300,
        "user>>>user-1>>>traffic>>>downlink": 2**40,
        "inbound>>>api>>>traffic>>>uplink": -1,  # an int64, signed
    }
    request = stats.QueryStatsRequest(pattern="user>>>")
    assert request.SerializeToString() == b"\n\x07user>>>"


def test_online_ip_lists_are_parsed_per_user() -> None:
    # A GetUsersStatsResponse as Xray 26.10 sent it for user-1 connected from 127.0.0.2.
    captured = b"\n\x1b\n\x06user-1\x12\x11\n\t127.0.0.2\x10\xc9\xc7\x9e\xd8\x06"
    assert api.online_users(captured) == {"user-1": {"127.0.0.2": 1795662793}}
    both = (  # user-2 from 2001:db8::1 seen at 7; user-3 without IPs: not online
        b"\n\x19\n\x06user-2\x12\x0f\n\x0b2001:db8::1\x10\x07\n\x08\n\x06user-3"
    )
    assert api.online_users(both) == {"user-2": {"2001:db8::1": 7}}


def test_api_on_a_unix_socket() -> None:
    """With a private control directory the API is a 0600 unix socket served through the `api`
    outbound (api.listen is TCP only); without one (a remote Docker engine) it stays on TCP."""
    private = dataclasses.replace(spec(False), control_dir="/state/run/api/edge")
    data = json.loads(render_text(private, CLIENTS, FILES))
    assert data["api"] == {"tag": "api", "services": ["HandlerService", "StatsService"]}
    assert data["inbounds"][0]["tag"] == "vless-in"
    assert data["inbounds"][1] == {
        "tag": "api-in",
        "listen": "/state/run/api/edge/xray-api.sock,0600",
        "protocol": "dokodemo-door",
        "settings": {"address": "127.0.0.1"},
    }
    assert data["routing"] == {"rules": [{"inboundTag": ["api-in"], "outboundTag": "api"}]}
    assert XrayEngine().control_ports(private) == []
    assert XrayEngine().control_ports(spec(False)) == [10085]
    too_long = dataclasses.replace(spec(False), control_dir="/" + "d" * 100)
    with pytest.raises(EngineError, match="longer than a unix socket allows"):
        render_text(too_long, CLIENTS, FILES)


# -- vless, trojan and vmess over a transport ---------------------------------------------------
CERT = {
    "server_name": "vpn.example.org",
    "cert_file": "/keys/edge/cert.pem",
    "key_file": "/keys/edge/key.pem",
    "self_signed": True,
    "cert_sha256": "ab" * 32,
}
REALITY = {
    "sni": "www.example.com",
    "dest": "www.example.com:443",
    "public_key": keys.public_key(PRIVATE),
    "short_ids": ["0123456789abcdef"],
    "fingerprint": "chrome",
}
# (protocol, the settings beyond api_port that install stores), one golden file each.
STREAMS: dict[str, tuple[str, dict[str, Any]]] = {
    "vless-raw-tls": ("vless", {"network": "raw", "security": "tls", "tls": CERT}),
    "vless-xhttp-reality": (
        "vless",
        {"network": "xhttp", "security": "reality", "path": "/x", **REALITY},
    ),
    "trojan-ws-tls": (
        "trojan",
        {"network": "ws", "security": "tls", "path": "/ws", "host_header": "cdn.example.net"},
    ),
    "trojan-httpupgrade-tls": (
        "trojan",
        {"network": "httpupgrade", "security": "tls", "path": "/up", "tls": CERT},
    ),
    "vmess-grpc-tls": (
        "vmess",
        {"network": "grpc", "security": "tls", "service_name": "Tunnel", "tls": CERT},
    ),
    "vmess-xhttp-tls": (
        "vmess",
        {
            "network": "xhttp",
            "security": "tls",
            "path": "/x",
            "host_header": "cdn.example.net",
            "xhttp_mode": "packet-up",
            "tls": CERT,
        },
    ),
    # REALITY is VLESS's only (install refuses Trojan and VMess over it: test_server_streams.py).
    "vless-grpc-reality": (
        "vless",
        {"network": "grpc", "security": "reality", "service_name": "g", **REALITY},
    ),
}
STREAM_CLIENTS = [
    Client(1, "alice", {"uuid": "62a1d88e-a71f-41a9-b2a2-f017b87cc93c", "password": "pw-alice"}),
    Client(7, "bob", {"uuid": "0b7d5b3c-3f1e-4a47-9d7b-2a7f0f4f1c11", "password": "pw-bob"}),
]


def stream_spec(case: str) -> ServerSpec:
    protocol, stored = STREAMS[case]
    settings: dict[str, Any] = {"api_port": 10085, **stored}
    if settings["security"] == "tls":
        settings.setdefault("tls", CERT)
    secret = {"private_key": PRIVATE} if settings["security"] == "reality" else {}
    return ServerSpec("edge", protocol, "0.0.0.0", 443, "vpn.example.org", settings, secret)


@pytest.mark.parametrize("case", sorted(STREAMS))
def test_stream_server_config_matches_golden(case: str) -> None:
    text = render_text(stream_spec(case), STREAM_CLIENTS, FILES)
    assert_golden(GOLDEN / f"stream-{case}.json", text)
    inbound = json.loads(text)["inbounds"][0]
    protocol = STREAMS[case][0]
    assert inbound["protocol"] == protocol
    assert inbound["tag"] == f"{protocol}-in"
    clients = inbound["settings"]["clients"]
    assert [c["email"] for c in clients] == ["user-1", "user-7"]
    key = "password" if protocol == "trojan" else "id"
    assert all(
        set(c) == {key, "email", "level"} | ({"flow"} if protocol == "vless" else set())
        for c in clients
    )
    # XTLS Vision on VLESS over raw TCP only: Xray refuses it on the other transports.
    flows = {c.get("flow") for c in clients}
    assert flows == (
        {"xtls-rprx-vision"} if case == "vless-raw-tls" else {None} if protocol != "vless" else {""}
    )


def test_account_messages_of_every_protocol() -> None:
    """AddUser carries the protocol's own account type; the key read back (GetInboundUsers) is
    the one sent, whichever it is."""
    from vpn_manager.engines.xray.proto.common.protocol.user_pb2 import User

    entries = {
        "vless": {"id": "u-1", "flow": "", "email": "user-1", "level": 0},
        "vmess": {"id": "u-2", "email": "user-2", "level": 0},
        "trojan": {"password": "pw", "email": "user-3", "level": 0},
        "hysteria": {"auth": "hy-pw", "email": "user-4", "level": 0},
    }
    types = {
        "vless": "xray.proxy.vless.Account",
        "vmess": "xray.proxy.vmess.Account",
        "trojan": "xray.proxy.trojan.Account",
        "hysteria": "xray.proxy.hysteria.account.Account",
    }
    for protocol, entry in entries.items():
        message = api.add_user("in", protocol, entry)
        user = handler.AddUserOperation.FromString(message.operation.value).user
        assert user.account.type == types[protocol]
        back = User.FromString(user.SerializeToString())
        assert api.account_key(back.account) == api.key_of(entry)


def test_link_data_of_a_stream_server() -> None:
    from vpn_manager.engines.linkdata import Stream, Tls

    data = XrayEngine().link_data(stream_spec("vmess-xhttp-tls"), STREAM_CLIENTS[0])
    assert data.format == "vmess"
    assert data.stream == Stream("xhttp", "/x", "cdn.example.net", "", "packet-up")
    assert data.tls == Tls("vpn.example.org", True, "ab" * 32)
    assert data.reality is None
    assert data.credential.uuid == "62a1d88e-a71f-41a9-b2a2-f017b87cc93c"
    grpc = XrayEngine().link_data(stream_spec("vless-grpc-reality"), STREAM_CLIENTS[1])
    assert (grpc.format, grpc.credential.uuid) == ("vless", STREAM_CLIENTS[1].secret["uuid"])
    assert grpc.stream == Stream("grpc", "", "", "g", "")
    assert grpc.reality is not None
    assert grpc.tls is None
    old = XrayEngine().link_data(spec(False), CLIENTS[0])  # vless-reality, stored as before
    assert (old.format, old.stream, old.tls) == ("vless", Stream(), None)


def test_new_stream_server_its_keys_and_changes(tmp_path: Path) -> None:
    """What install stores for a Trojan+WS+TLS and a VLESS+gRPC+REALITY server; rotate-keys
    and `server set` on a TLS one (a new self-signed certificate; REALITY options refused)."""
    from vpn_manager.errors import InvalidInput
    from vpn_manager.models.server import ServerChange, ServerCreate

    engine = XrayEngine()
    create = ServerCreate.model_validate(
        {"name": "tw", "protocol": "trojan", "port": 8443, "transport": "ws", "sni": "vpn.test"}
    )
    settings, secret = engine.new_server(create, lambda: 10085, tmp_path / "tw")
    assert secret == {}
    assert (settings["network"], settings["security"]) == ("ws", "tls")
    assert settings["path"].startswith("/")
    assert len(settings["path"]) == 17  # a random one: nothing guesses it
    assert settings["tls"]["self_signed"] is True
    assert settings["tls"]["server_name"] == "vpn.test"
    assert "sni" not in settings
    assert "short_ids" not in settings
    tw = ServerSpec("tw", "trojan", "0.0.0.0", 8443, "cdn.test", settings, secret)
    assert engine.advice(tw) == []
    assert set(engine.new_credential(tw)) == {"password"}
    with pytest.raises(InvalidInput, match="--password is for proxies"):
        engine.new_credential(tw, password="x")
    rotated, _ = engine.rotate_keys(tw)
    assert rotated["tls"]["cert_sha256"] != settings["tls"]["cert_sha256"]
    changed = engine.change(tw, ServerChange(sni="new.test"), tmp_path / "tw")
    assert changed.settings["tls"]["server_name"] == "new.test"
    assert changed.settings["tls"]["cert_file"] != settings["tls"]["cert_file"]
    with pytest.raises(InvalidInput, match="--dest does not apply"):
        engine.change(tw, ServerChange(dest="a.test:443"), tmp_path / "tw")

    grpc = ServerCreate.model_validate(
        {
            "name": "vg",
            "protocol": "vless",
            "port": 443,
            "transport": "grpc",
            "security": "reality",
            "sni": "www.example.com",
        }
    )
    settings, secret = engine.new_server(grpc, lambda: 10086, tmp_path / "vg")
    assert set(secret) == {"private_key"}
    assert settings["dest"] == "www.example.com:443"
    assert len(settings["service_name"]) == 16
    assert "tls" not in settings
    assert "path" not in settings
    vg = ServerSpec("vg", "vless", "0.0.0.0", 443, "vpn.test", settings, secret)
    assert set(engine.new_credential(vg)) == {"uuid"}
    assert config_flow(vg) == ""  # no XTLS Vision over gRPC


def config_flow(spec: ServerSpec) -> str:
    from vpn_manager.engines.xray.config import flow

    return flow(spec)


def hysteria2_spec(cert: dict[str, Any] = CERT) -> ServerSpec:
    """A Hysteria2 server as install stores it on Xray."""
    settings = {"api_port": 10085, "network": "hysteria", "security": "tls", "tls": cert}
    return ServerSpec(
        "hy", "hysteria2", "0.0.0.0", 8443, "vpn.example.org", settings | {"decoy": "none"}, {}
    )


def test_hysteria2_server_config_matches_golden() -> None:
    """Xray's hysteria inbound (version 2), each user's password as its `auth`; QUIC with TLS
    (h3), no fallbacks (a QUIC server has none)."""
    text = render_text(hysteria2_spec(), STREAM_CLIENTS, FILES)
    assert_golden(GOLDEN / "hysteria2-tls.json", text)
    inbound = json.loads(text)["inbounds"][0]
    assert (inbound["protocol"], inbound["tag"]) == ("hysteria", "hysteria-in")
    assert inbound["settings"]["clients"] == [
        {"auth": "pw-alice", "email": "user-1", "level": 0},
        {"auth": "pw-bob", "email": "user-7", "level": 0},
    ]
    stream = inbound["streamSettings"]
    assert stream["network"] == "hysteria"
    assert stream["tlsSettings"]["alpn"] == ["h3"]
    assert "fallbacks" not in inbound["settings"]


def test_hysteria2_links_are_the_sing_box_servers_links() -> None:
    """The same hysteria2:// link as a sing-box server writes: the certificate pinned only where
    it is self-signed."""
    from vpn_manager.engines.linkdata import Tls
    from vpn_manager.links import link_of

    engine = XrayEngine()
    data = engine.link_data(hysteria2_spec(), STREAM_CLIENTS[0])
    assert (data.format, data.credential.password) == ("hysteria2", "pw-alice")
    assert data.tls == Tls("vpn.example.org", True, "ab" * 32)
    assert link_of(data).to_uri() == (
        f"hysteria2://pw-alice@vpn.example.org:8443/?sni=vpn.example.org&insecure=1"
        f"&pinSHA256={'ab' * 32}#alice"
    )
    owned = engine.link_data(hysteria2_spec(CERT | {"self_signed": False}), STREAM_CLIENTS[0])
    assert link_of(owned).to_uri() == (
        "hysteria2://pw-alice@vpn.example.org:8443/?sni=vpn.example.org#alice"
    )
    assert engine.transports(hysteria2_spec()) == ("udp",)
    assert engine.live_users(hysteria2_spec())


def test_new_hysteria2_server_and_its_changes(tmp_path: Path) -> None:
    """What install stores for a Hysteria2 server on Xray; `server set` takes --sni and a
    certificate, not a decoy (a QUIC server has no fallbacks)."""
    from vpn_manager.errors import InvalidInput
    from vpn_manager.models.server import ServerChange, ServerCreate

    engine = XrayEngine()
    create = ServerCreate.model_validate(
        {"name": "hy", "protocol": "hysteria2", "port": 8443, "sni": "vpn.example.org"}
    )
    settings, secret = engine.new_server(create, lambda: 10085, tmp_path)
    assert secret == {}
    assert (settings["network"], settings["security"], settings["decoy"]) == (
        "hysteria",
        "tls",
        "none",
    )
    assert settings["tls"]["self_signed"] is True
    assert settings["tls"]["server_name"] == "vpn.example.org"
    stored = ServerSpec("hy", "hysteria2", "0.0.0.0", 8443, "vpn.example.org", settings, secret)
    credential = engine.new_credential(stored)
    assert set(credential) == {"password"}
    assert len(credential["password"]) == 24
    renamed = engine.change(stored, ServerChange(sni="other.example.org"), tmp_path)
    assert renamed.settings["tls"]["server_name"] == "other.example.org"
    with pytest.raises(InvalidInput):
        engine.change(stored, ServerChange(decoy="local"), tmp_path)
