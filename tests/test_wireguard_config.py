"""WireGuard's text pieces: peer addresses, the `wg setconf` file, the client .conf, validation.
Proven end to end by tests/e2e/test_wireguard.py (real wireguard-go and wg-quick)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from vpn_manager.engines.wireguard import config, keys
from vpn_manager.engines.wireguard.engine import WireGuardEngine
from vpn_manager.engines.wireguard.settings import WireGuardSettings
from vpn_manager.errors import EngineError, InvalidInput
from vpn_manager.links import share_link
from vpn_manager.specs import Client, ServerSpec

SETTINGS = {
    "interface": "wgabc123",
    "subnet": "10.13.13.0/29",
    "subnet6": "fd13::/125",
    "dns": "1.1.1.1",
    "mtu": 1420,
    "client_allowed_ips": "0.0.0.0/0, ::/0",
    "keepalive": 25,
    "public_key": keys.key_pair()[1],
}


def spec() -> ServerSpec:
    return ServerSpec(
        "wg",
        "wireguard",
        "0.0.0.0",
        51820,
        "vpn.example.org",
        SETTINGS,
        {"private_key": keys.key_pair()[0]},
    )


def test_addresses_are_the_lowest_free_and_never_the_servers() -> None:
    first = config.next_addresses(WireGuardSettings.of_dict(SETTINGS), [])
    assert first == {"address": "10.13.13.2", "address6": "fd13::2"}
    second = config.next_addresses(WireGuardSettings.of_dict(SETTINGS), [first])
    assert second == {"address": "10.13.13.3", "address6": "fd13::3"}
    # A revoked peer's address is free again; one still assigned never is.
    third = config.next_addresses(WireGuardSettings.of_dict(SETTINGS), [second])
    assert third == first
    taken = [{"address": f"10.13.13.{i}", "address6": f"fd13::{i}"} for i in range(2, 7)]
    with pytest.raises(InvalidInput, match="no free address"):
        config.next_addresses(WireGuardSettings.of_dict(SETTINGS), taken)


def test_credentials_get_keys_and_stable_addresses() -> None:
    engine = WireGuardEngine()
    one = engine.new_credential(spec())
    two = engine.new_credential(spec(), taken=[one])
    assert keys.public_key(one["private_key"]) == one["public_key"]
    assert one["address"] != two["address"]
    assert len(one["preshared_key"]) == 44
    with pytest.raises(InvalidInput, match="password"):
        engine.new_credential(spec(), password="x")


def test_server_config_and_client_conf() -> None:
    server = spec()
    alice = Client(3, "alice", WireGuardEngine().new_credential(server))
    text = config.render(server, [alice])
    assert text.startswith("[Interface]\nPrivateKey = ")
    assert "ListenPort = 51820" in text
    assert f"PublicKey = {alice.secret['public_key']}" in text
    assert "AllowedIPs = 10.13.13.2/32, fd13::2/128" in text
    assert "# user-3" in text
    assert "alice" not in text
    conf = share_link(WireGuardEngine().link_data(server, alice))
    assert conf.splitlines() == [
        "[Interface]",
        f"PrivateKey = {alice.secret['private_key']}",
        "Address = 10.13.13.2/32, fd13::2/128",
        "DNS = 1.1.1.1",
        "MTU = 1420",
        "",
        "[Peer]",
        f"PublicKey = {SETTINGS['public_key']}",
        f"PresharedKey = {alice.secret['preshared_key']}",
        "Endpoint = vpn.example.org:51820",
        "AllowedIPs = 0.0.0.0/0, ::/0",
        "PersistentKeepalive = 25",
    ]
    asyncio.run(WireGuardEngine().validate(text, Path("/tmp")))


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("PublicKey = bm90LWEta2V5", "PublicKey"),
        ("AllowedIPs = 10.0.0.300/32", "AllowedIPs"),
        ("ListenPort = 70000", "ListenPort"),
        ("garbage", "malformed"),
    ],
)
def test_validation_names_the_bad_line(line: str, why: str) -> None:
    text = config.render(spec(), []) + "\n[Peer]\n" + line + "\n"
    with pytest.raises(EngineError, match=why):
        asyncio.run(WireGuardEngine().validate(text, Path("/tmp")))
