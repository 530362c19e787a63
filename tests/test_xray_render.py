"""The Xray server config and the hand-written gRPC messages, compared whole. The rendered config
is proven by tests/e2e (real server, real clients); the messages by the live add/remove there."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from vpn_manager.engines import protowire
from vpn_manager.engines.base import Client, Files, ServerSpec
from vpn_manager.engines.xray import keys, wire
from vpn_manager.engines.xray.config import render_text
from vpn_manager.engines.xray.engine import XrayEngine
from vpn_manager.errors import EngineError

GOLDEN = Path(__file__).parent / "golden" / "xray"
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
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text()
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


def decode(data: int | bytes) -> dict[int, int | bytes]:
    assert isinstance(data, bytes)
    return dict(protowire.fields(data))


def test_add_user_message_bytes() -> None:
    request = decode(wire.add_vless_user("in", "user-1", "u", "xtls-rprx-vision", 0))
    assert request[1] == b"in"
    operation = decode(request[2])
    assert operation[1] == b"xray.app.proxyman.command.AddUserOperation"
    user = decode(decode(operation[2])[1])
    assert user[2] == b"user-1"
    account = decode(user[3])
    assert account[1] == b"xray.proxy.vless.Account"
    assert decode(account[2]) == {1: b"u", 2: b"xtls-rprx-vision"}


def test_stats_response_parsing() -> None:
    def stat(name: str, value: int) -> bytes:
        return protowire.message(1, protowire.string(1, name) + protowire.uint(2, value))

    data = stat("user>>>user-1>>>traffic>>>uplink", 300) + stat(
        "user>>>user-1>>>traffic>>>downlink", 2**40
    )
    assert wire.parse_stats(data) == {
        "user>>>user-1>>>traffic>>>uplink": 300,
        "user>>>user-1>>>traffic>>>downlink": 2**40,
    }
    assert protowire.signed64(2**64 - 1) == -1


def test_online_ip_lists_are_parsed_per_user() -> None:
    # A GetUsersStatsResponse as Xray 26.10 sent it for user-1 connected from 127.0.0.2.
    captured = b"\n\x1b\n\x06user-1\x12\x11\n\t127.0.0.2\x10\xc9\xc7\x9e\xd8\x06"
    assert wire.parse_users_stats(captured) == {"user-1": {"127.0.0.2": 1795662793}}
    entry = protowire.string(1, "2001:db8::1") + protowire.int64(2, 7)
    both = protowire.message(
        1, protowire.string(1, "user-2") + protowire.message(2, entry)
    ) + protowire.message(1, protowire.string(1, "user-3"))  # no IPs: not online
    assert wire.parse_users_stats(both) == {"user-2": {"2001:db8::1": 7}}


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
