"""The typed models of what the database keeps per server (engines/stored.py and each engine's
settings.py): parsed in one place, written back unchanged (keys this version does not know
kept), the control ports declared by the model and moved only there; the engine registry as a
table; and the sing-box protocol table agreeing with the protocol kinds the models validate."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from vpn_manager.engines.base import Files
from vpn_manager.engines.registry import (
    ENGINES,
    NEW_SERVERS,
    control_ports_of,
    engine_for,
    engine_name,
    engine_of_new,
    settings_of,
)
from vpn_manager.engines.singbox.protocols import PROTOCOLS, ROWS, protocol_row
from vpn_manager.engines.singbox.settings import SingBoxCredential, SingBoxSecret, SingBoxSettings
from vpn_manager.engines.wireguard.settings import Peer, WireGuardSettings
from vpn_manager.engines.xray.settings import XraySecret, XraySettings
from vpn_manager.errors import InvalidInput, StorageError
from vpn_manager.kinds import PROXY_PROTOCOLS, TLS_PROTOCOLS, UDP_PROTOCOLS, Protocol
from vpn_manager.runtimes.base import ServerFiles
from vpn_manager.runtimes.docker.runtime import DockerRuntime
from vpn_manager.specs import Client, ServerSpec

XRAY = {
    "sni": "www.example.com",
    "dest": "www.example.com:443",
    "public_key": "pub",
    "short_ids": ["0123456789abcdef"],
    "fingerprint": "chrome",
    "api_port": 10085,
    "allow_private": False,
}
SHADOWSOCKS = {
    "api_port": 10085,
    "allow_private": False,
    "method": "aes-256-gcm",
    "ssm_port": 10086,
}
TLS = {"server_name": "vpn.example.org", "cert_file": "c", "key_file": "k"}
WIREGUARD = {"interface": "wgabc123", "subnet": "10.13.13.0/24", "subnet6": None, "public_key": "k"}


def spec(
    protocol: str, settings: dict[str, Any], secret: dict[str, Any] | None = None
) -> ServerSpec:
    return ServerSpec("edge", protocol, "0.0.0.0", 8443, "vpn.example.org", settings, secret or {})


@pytest.mark.parametrize(
    ("model", "stored"),
    [(XraySettings, XRAY), (SingBoxSettings, SHADOWSOCKS), (WireGuardSettings, WIREGUARD)],
)
def test_a_stored_dict_round_trips_unchanged_with_keys_this_version_does_not_know(
    model: type[XraySettings | SingBoxSettings | WireGuardSettings], stored: dict[str, Any]
) -> None:
    older = stored | {"legacy_port": 1234, "from_a_newer_version": {"nested": [1, 2]}}
    assert model.of_dict(older).to_dict() == older
    assert model.of_dict(stored).to_dict() == stored


def test_a_field_the_stored_dict_left_out_stays_out_unless_it_changes() -> None:
    minimal = {k: v for k, v in XRAY.items() if k not in ("fingerprint", "allow_private")}
    settings = XraySettings.of_dict(minimal)
    assert (settings.fingerprint, settings.allow_private) == (None, False)  # links: chrome
    rotated = dataclasses.replace(settings, public_key="new")
    assert rotated.to_dict() == minimal | {"public_key": "new"}
    assert dataclasses.replace(settings, allow_private=True).to_dict()["allow_private"] is True


def test_a_new_model_writes_its_fields_but_those_a_protocol_has_not() -> None:
    trojan = SingBoxSettings(api_port=1, allow_private=False)
    assert trojan.to_dict() == {"api_port": 1, "allow_private": False}
    assert SingBoxSecret(api_secret="s").to_dict() == {"api_secret": "s"}
    assert SingBoxCredential(uuid="u").to_dict() == {"uuid": "u"}


def test_a_missing_or_mistyped_value_is_one_sentence_naming_the_server_and_the_key() -> None:
    broken = {k: v for k, v in XRAY.items() if k != "dest"}
    with pytest.raises(StorageError, match="settings of server 'edge' lack 'dest'"):
        XraySettings.of(spec("vless-reality", broken))
    with pytest.raises(StorageError, match="'api_port' of type list; it must be int"):
        XraySettings.of_dict(XRAY | {"api_port": [1]})
    with pytest.raises(StorageError) as refused:
        XraySecret.of(spec("vless-reality", XRAY, {"private_key": 12345}))
    assert "12345" not in str(refused.value)  # a key is never shown
    assert XraySettings.of_dict(XRAY | {"api_port": "10085"}).api_port == 10085


def test_secrets_are_never_shown_in_a_repr() -> None:
    secret = SingBoxSecret(api_secret="very-secret", psk="psk-too")
    peer = Peer("private", "public", "preshared", "10.13.13.2")
    assert "very-secret" not in repr(secret)
    assert "psk-too" not in repr(secret)
    assert "private" not in repr(peer)


def test_the_control_ports_are_declared_by_the_model_and_moved_only_there() -> None:
    shadowsocks = SingBoxSettings.of_dict(SHADOWSOCKS | {"legacy_port": 10087})
    assert shadowsocks.control_ports() == [10085, 10086]
    moved = shadowsocks.with_control_ports({10085: 50001, 10086: 50002}).to_dict()
    assert (moved["api_port"], moved["ssm_port"], moved["legacy_port"]) == (50001, 50002, 10087)
    trojan = SingBoxSettings.of_dict({"api_port": 10085})
    assert trojan.control_ports() == [10085]
    assert trojan.with_control_ports({10085: 50001}).to_dict() == {"api_port": 50001}
    assert WireGuardSettings.of_dict(WIREGUARD).control_ports() == []
    assert XraySettings.of_dict(XRAY).control_ports() == [10085]
    # Read without the rest of the row (an old or partial one).
    assert control_ports_of("sing-box", "shadowsocks", {"api_port": 1, "ssm_port": 2}) == [1, 2]
    assert control_ports_of("sing-box", "socks5", {"api_port": "3"}) == [3]
    assert control_ports_of("wireguard-go", "wireguard", {}) == []
    assert control_ports_of("xray", "trojan", {"api_port": 4}) == [4]
    # A row naming an engine this version does not know: its protocol's engine for new servers.
    assert control_ports_of("wireguard", "wireguard", {}) == []


class _Tunnel:
    """Stands in for the ssh tunnel: the engine is remote."""


class RemoteRuntime(DockerRuntime):
    """A DockerRuntime on a remote engine without Docker: the tunnel forwards port P to P+1000."""

    @property
    def client(self) -> Any:
        return None

    def tunnelled(self, server: str, ports: list[int]) -> dict[int, int]:
        return {port: port + 1000 for port in ports}

    def address(self) -> str | None:
        return "203.0.113.7"


def test_a_remote_servers_control_ports_are_swapped_for_the_tunnels_ends(tmp_path: Path) -> None:
    runtime = RemoteRuntime("home", tmp_path / "logs")
    runtime.tunnel = _Tunnel()  # type: ignore[assignment]
    files = Files(tmp_path / "c.json", tmp_path / "a.log", tmp_path / "e.log")
    where = ServerFiles(files, tmp_path / "keys", lambda: tmp_path / "control")
    stored = SHADOWSOCKS | {"legacy_port": 4242}
    reached = runtime._reached(spec("shadowsocks", stored, {"api_secret": "s"}), where)
    # Only the ports the model declares move; a key that merely ends in _port does not.
    assert reached.settings == stored | {"api_port": 11085, "ssm_port": 11086}
    assert reached.listen == "203.0.113.7"
    wireguard = runtime._reached(spec("wireguard", WIREGUARD), where)
    assert wireguard.settings == WIREGUARD


def test_the_registry_has_every_protocol_and_refuses_others() -> None:
    """Engines by the name a server row keeps; a new server's engine by its protocol: Trojan,
    VMess and Hysteria2 now on Xray (Hysteria2 in a container still on sing-box), the other
    sing-box protocols still on sing-box."""
    assert set(NEW_SERVERS) == set(Protocol)
    assert {name: engine_for(name).name for name in ENGINES} == {n: n for n in ENGINES}
    assert engine_of_new("vless-reality") == engine_of_new("vless") == "xray"
    assert engine_of_new("trojan") == engine_of_new("vmess") == engine_of_new("hysteria2") == "xray"
    assert engine_of_new("hysteria2", "docker") == "sing-box"
    assert engine_of_new("trojan", "docker") == "xray"
    assert engine_of_new("wireguard") == "wireguard-go"
    moved = {"trojan", "vmess", "hysteria2"}
    assert {engine_of_new(p) for p in set(PROTOCOLS) - moved} == {"sing-box"}
    # A row naming an engine this version does not know: a new server's engine in its runtime.
    unknown = dataclasses.replace(spec("hysteria2", {"api_port": 1}), engine="v9")
    assert engine_name(unknown) == "xray"
    assert engine_name(dataclasses.replace(unknown, runtime="docker")) == "sing-box"
    # A Trojan server stored with engine sing-box (installed by an older version) keeps it.
    old = dataclasses.replace(spec("trojan", {"api_port": 1}), engine="sing-box")
    assert isinstance(settings_of(old), SingBoxSettings)
    new = dataclasses.replace(old, engine="xray", settings={"api_port": 1, "tls": TLS})
    assert isinstance(settings_of(new), XraySettings)
    with pytest.raises(InvalidInput, match="Unknown protocol 'ftp'"):
        engine_of_new("ftp")
    with pytest.raises(InvalidInput, match="Unknown engine 'v2ray'"):
        engine_for("v2ray")


def test_the_singbox_table_agrees_with_the_protocol_kinds() -> None:
    """models/ validates options by the kinds' sets (no engine imports there); they must say
    what the table says."""
    assert {row.name for row in ROWS if row.proxy} == {p.value for p in PROXY_PROTOCOLS}
    assert {row.name for row in ROWS if row.tls} == {p.value for p in TLS_PROTOCOLS}
    singbox_udp = {p.value for p in UDP_PROTOCOLS} & set(PROTOCOLS)
    assert {row.name for row in ROWS if row.quic} == singbox_udp
    with pytest.raises(InvalidInput, match="sing-box does not serve"):
        protocol_row("vless-reality")


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.name)
def test_each_rows_credential_has_its_shape(row: Any) -> None:
    """What the secret generator makes is what the inbound lists and the link carries."""
    engine = engine_for("sing-box")
    stored = {"api_port": 1, "method": "aes-256-gcm", "ssm_port": 2} if row.managed else {}
    if row.tls:
        stored["tls"] = TLS
    server = spec(row.name, {"api_port": 1} | stored, {"api_secret": "s"})
    server = dataclasses.replace(server, engine="sing-box")
    credential = engine.new_credential(server)
    expected = {
        "password": {"password"},
        "uuid": {"uuid"},
        "uuid+password": {"uuid", "password"},
        "user+password": {"password"},
    }[row.credential]
    assert set(credential) == expected
    link = engine.link_data(server, Client(7, "alice", credential))
    assert link.format == row.link
    assert bool(link.tls) == row.tls
    assert (link.credential.username == "alice") == row.proxy
