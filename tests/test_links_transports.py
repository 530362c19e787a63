"""VLESS, Trojan and VMess links over every Xray transport (raw, ws, grpc, httpupgrade, xhttp) with
TLS or REALITY: what each link and client config says (golden files in tests/golden/transports/,
one per case: the link, the Xray outbound, the sing-box outbound and the Mihomo proxy, or the
sentence that refuses one), that every link reads back to itself, and what is refused.
tests/e2e/test_transports.py proves the same links move bytes through real Xray and sing-box."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.golden_files import GOLDEN_DIR, assert_golden
from tests.test_delivery_share import singbox_check
from vpn_manager.engines.linkdata import Credential, LinkData, Reality, Stream, Tls
from vpn_manager.errors import InvalidInput
from vpn_manager.links import (
    TrojanLink,
    VlessLink,
    VmessLink,
    client_config,
    link_of,
    parse_link,
    share_link,
    singbox_client_config,
    trust_note,
    xray_client_config,
)
from vpn_manager.links.profiles import base64_list, clash_profile, singbox_profile
from vpn_manager.links.transport import Transport

GOLDEN = GOLDEN_DIR / "transports"
UUID = "fcbd9ac6-d945-4570-bc1a-e24ba7ed478c"
PASSWORD = "tR0jan-Pass_word1"
PIN = "5f" * 32
PUBLIC_KEY = "KjjZSyjx_U0f8eq8AQtAat9aeKafjBf-JGJnH0Twxgk"
NETWORKS = ("raw", "ws", "grpc", "httpupgrade", "xhttp")


@dataclass(frozen=True)
class Case:
    format: str
    network: str
    security: str

    @property
    def id(self) -> str:
        return f"{self.format}-{self.network}-{self.security}"


CASES = [
    *(Case(f, n, "tls") for f in ("vless", "trojan", "vmess") for n in NETWORKS),
    *(Case("vless", n, "reality") for n in ("raw", "grpc", "xhttp")),
]


def stream_of(network: str) -> Stream:
    if network == "grpc":
        return Stream("grpc", service_name="tunnel")
    if network == "raw":
        return Stream()
    mode = "stream-up" if network == "xhttp" else ""
    return Stream(network, path="/t/a~b?x=1", host="cdn.example.com", mode=mode)  # type: ignore[arg-type]


def data_of(case: Case, *, insecure: bool = True) -> LinkData:
    """What an Xray engine says of a server of `case` (a self-signed certificate by default)."""
    reality = case.security == "reality"
    stream = stream_of(case.network)
    if reality and case.network != "raw":
        stream = replace(stream, host="")
    return LinkData(
        format=case.format,  # type: ignore[arg-type]
        server="edge",
        name="alice@edge",
        host="vpn.example.com",
        port=443,
        credential=Credential(uuid=UUID, password=PASSWORD),
        tls=None if reality else Tls("vpn.example.com", insecure, PIN if insecure else None),
        reality=Reality("www.example.org", PUBLIC_KEY, "cf376e40") if reality else None,
        stream=stream,
    )


def _or_refusal(make: Any) -> str:
    try:
        return json.dumps(make(), indent=2, ensure_ascii=False)
    except InvalidInput as refused:
        return f"refused: {refused}"


def rendered(case: Case) -> str:
    link = link_of(data_of(case))
    assert isinstance(link, VlessLink | TrojanLink | VmessLink)
    clash = _or_refusal(lambda: link.clash_proxy("alice@edge"))
    if not clash.startswith("refused"):
        clash = yaml.safe_dump(json.loads(clash), sort_keys=False, allow_unicode=True).rstrip()
    return (
        "\n\n".join(
            [
                f"# link\n{link.to_uri()}",
                f"# xray outbound\n{_or_refusal(link.xray_outbound)}",
                f"# sing-box outbound\n{_or_refusal(link.singbox_outbound)}",
                f"# mihomo proxy\n{clash}",
            ]
        )
        + "\n"
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_golden(case: Case) -> None:
    assert_golden(GOLDEN / f"{case.id}.txt", rendered(case))


@pytest.mark.parametrize(
    ("case", "insecure"),
    [(c, True) for c in CASES] + [(c, False) for c in CASES if c.security == "tls"],
    ids=lambda v: v.id if isinstance(v, Case) else ("self-signed" if v else "ca"),
)
def test_round_trip(case: Case, insecure: bool) -> None:
    link = link_of(data_of(case, insecure=insecure))
    text = link.to_uri()
    assert text.isascii()
    assert parse_link(text) == link
    assert parse_link(text).to_uri() == text
    assert share_link(data_of(case, insecure=insecure)) == text


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_link_says_the_stream(case: Case) -> None:
    link = link_of(data_of(case))
    assert isinstance(link, VlessLink | TrojanLink | VmessLink)
    stream = data_of(case).stream
    assert link.transport == Transport(
        network=stream.network,
        path=stream.path,
        host=stream.host,
        service_name=stream.service_name,
        mode=stream.mode,
    )
    # The pin travels on every link of a self-signed server, whatever the transport.
    pinned = case.security == "tls"
    assert (getattr(link, "pin_sha256", None) == PIN) is pinned
    # XTLS Vision only on raw TCP.
    if isinstance(link, VlessLink):
        assert link.flow == ("xtls-rprx-vision" if case.network == "raw" else "")


def test_vless_ws_link_is_the_proposals_form() -> None:
    text = share_link(data_of(Case("vless", "ws", "tls")))
    assert text == (
        f"vless://{UUID}@vpn.example.com:443?encryption=none&security=tls&sni=vpn.example.com"
        f"&allowInsecure=1&pcs={PIN}&type=ws&path=%2Ft%2Fa~b%3Fx%3D1"
        "&host=cdn.example.com#alice@edge"
    )


def test_raw_trojan_and_vmess_links_only_gain_the_pin() -> None:
    """The links sing-box servers have always given (tests/golden/delivery), with the
    self-signed certificate's pin added at the end, where clients that do not know it skip it."""
    golden = GOLDEN_DIR / "delivery" / "share"
    trojan = replace(data_of(Case("trojan", "raw", "tls")), name="alice")
    expected = (golden / "trojan.uri").read_text().strip()
    before = re.sub(r"&pcs=[0-9a-f]{64}#", "#", expected).replace("tR0jan-Pass_word1", PASSWORD)
    assert share_link(trojan) == before.replace("#alice", f"&pcs={PIN}#alice")
    vmess = replace(data_of(Case("vmess", "raw", "tls")), name="alice")
    document = json.loads(base64.b64decode(share_link(vmess).removeprefix("vmess://")))
    old = json.loads(
        base64.b64decode((golden / "vmess.uri").read_text().strip().removeprefix("vmess://"))
    )
    assert "pcs" not in old  # the golden VMess server has a real certificate
    assert list(document) == [*old, "pcs"]
    assert document["pcs"] == PIN
    assert document["insecure"] == "1"
    assert {k: v for k, v in document.items() if k not in ("id", "insecure", "pcs")} == {
        k: v for k, v in old.items() if k not in ("id", "insecure")
    }


def test_vmess_json_keys_per_transport() -> None:
    def keys(network: str) -> dict[str, str]:
        text = share_link(data_of(Case("vmess", network, "tls")))
        document = json.loads(base64.b64decode(text.removeprefix("vmess://")))
        return {k: document[k] for k in ("net", "type", "host", "path")} | {
            "pcs": document.get("pcs", "")
        }

    assert keys("grpc") == {"net": "grpc", "type": "gun", "host": "", "path": "tunnel", "pcs": PIN}
    assert keys("xhttp")["type"] == "stream-up"
    assert keys("ws") == {
        "net": "ws",
        "type": "none",
        "host": "cdn.example.com",
        "path": "/t/a~b?x=1",
        "pcs": PIN,
    }
    assert keys("raw") == {"net": "tcp", "type": "none", "host": "", "path": "", "pcs": PIN}


# --- other writers' links -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "network", "fields"),
    [
        (
            f"vless://{UUID}@h.example:443?type=ws&security=tls&path=%2Fws&host=cdn.example"
            "&sni=h.example&fp=chrome&alpn=http%2F1.1#x",
            "ws",
            {"path": "/ws", "host": "cdn.example"},
        ),
        (
            f"vless://{UUID}@h.example:443?type=grpc&security=reality&serviceName=svc&mode=gun"
            f"&sni=www.example.org&fp=chrome&pbk={PUBLIC_KEY}&sid=ab#x",
            "grpc",
            {"service_name": "svc"},
        ),
        (
            f"vless://{UUID}@h.example:443?type=xhttp&security=reality&path=%2Fx&mode=auto"
            f"&sni=www.example.org&fp=chrome&pbk={PUBLIC_KEY}#x",
            "xhttp",
            {"path": "/x", "mode": ""},
        ),
        (
            f"trojan://{PASSWORD}@h.example:443?type=httpupgrade&path=%2Fu&host=cdn.example#x",
            "httpupgrade",
            {"path": "/u", "host": "cdn.example"},
        ),
        (
            f"vless://{UUID}@h.example:443?type=raw&headerType=none&security=tls&sni=h.example"
            "&flow=xtls-rprx-vision#x",
            "raw",
            {},
        ),
    ],
)
def test_reads_other_writers_links(text: str, network: str, fields: dict[str, str]) -> None:
    link = parse_link(text)
    assert isinstance(link, VlessLink | TrojanLink)
    assert link.transport.network == network
    for key, value in fields.items():
        assert getattr(link.transport, key) == value
    assert parse_link(link.to_uri()) == link


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            f"vless://{UUID}@h.example:443?type=ws&security=reality&sni=a.example&fp=chrome"
            f"&pbk={PUBLIC_KEY}#x",
            r"Xray has no REALITY over ws; use raw, grpc or xhttp",
        ),
        (
            f"vless://{UUID}@h.example:443?type=httpupgrade&security=reality&sni=a.example"
            f"&fp=chrome&pbk={PUBLIC_KEY}#x",
            r"no REALITY over httpupgrade",
        ),
        (
            f"vless://{UUID}@h.example:443?type=ws&security=tls&sni=h.example"
            "&flow=xtls-rprx-vision#x",
            r"flow \(XTLS Vision\) goes only with the raw TCP transport",
        ),
        (
            f"vless://{UUID}@h.example:443?type=grpc&security=tls&sni=h.example#x",
            r"grpc transport needs its service name",
        ),
        (
            f"vless://{UUID}@h.example:443?type=grpc&security=tls&sni=h.example&serviceName=s"
            "&mode=multi#x",
            r"gRPC mode=multi is not supported",
        ),
        (
            f"vless://{UUID}@h.example:443?type=xhttp&security=tls&sni=h.example&mode=fast#x",
            r"invalid XHTTP mode: use auto, packet-up",
        ),
        (
            f"vless://{UUID}@h.example:443?type=ws&security=tls&sni=h.example&path=ws#x",
            r"invalid path: use a path that starts with '/'",
        ),
        (
            f"vless://{UUID}@h.example:443?type=ws&security=tls&sni=h.example&serviceName=s#x",
            r"unsupported parameter\(s\) serviceName",
        ),
        (
            f"vless://{UUID}@h.example:443?type=kcp&security=tls&sni=h.example#x",
            r"type=kcp is not supported; use tcp, ws, grpc, httpupgrade or xhttp",
        ),
        (
            f"vless://{UUID}@h.example:443?type=ws&security=tls&sni=h.example&pcs={PIN}#x",
            r"a certificate pin \(pcs\) goes with allowInsecure=1",
        ),
        (
            f"vless://{UUID}@h.example:443?type=ws&security=tls&sni=h.example&pbk={PUBLIC_KEY}#x",
            r"unsupported parameter\(s\) pbk",
        ),
        (
            f"vless://{UUID}@h.example:443?type=ws&security=none#x",
            r"security=none; only security=reality and security=tls",
        ),
        (
            f"vless://{UUID}@h.example:443?type=ws&security=tls#x",
            r"the TLS server name \(sni\) is missing",
        ),
        (
            f"trojan://{PASSWORD}@h.example:443?type=ws&host=bad_host#x",
            r"invalid Host header \(host\): use a DNS name",
        ),
    ],
)
def test_refuses_what_cannot_be_honoured(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_link(text)


# --- client configs -------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_client_config_for_each_client(case: Case, tmp_path: Path) -> None:
    data = data_of(case)
    link = link_of(data)
    assert isinstance(link, VlessLink | TrojanLink | VmessLink)
    xray = json.loads(client_config(data, "xray", 2080))
    assert xray == xray_client_config(link, 2080)
    assert xray["outbounds"] == [link.xray_outbound()]
    if case.security == "tls":  # self-signed: Xray trusts it by the link's pin
        tls = xray["outbounds"][0]["streamSettings"]["tlsSettings"]
        assert tls["pinnedPeerCertSha256"] == PIN
    if case.network == "xhttp":
        with pytest.raises(InvalidInput, match=r"^sing-box has no XHTTP transport") as caught:
            client_config(data, "sing-box")
        assert caught.value.hint is not None
        assert "--client xray" in caught.value.hint
        return
    singbox = json.loads(client_config(data, "sing-box", 2080))
    assert singbox == singbox_client_config(link, 2080)
    if case.security == "tls":  # the shipped sing-box build has no REALITY or uTLS to check
        singbox_check(singbox, tmp_path)


def test_a_real_certificate_needs_no_pin() -> None:
    link = link_of(data_of(Case("trojan", "raw", "tls"), insecure=False))
    assert isinstance(link, TrojanLink)
    tls = link.xray_outbound()["streamSettings"]["tlsSettings"]
    assert tls == {"serverName": "vpn.example.com"}


def test_profiles_leave_out_what_their_client_cannot_reach() -> None:
    datas = [data_of(case) for case in CASES]
    ids = [case.id for case in CASES]
    for i, data in enumerate(datas):
        datas[i] = replace(data, name=ids[i])
    singbox = singbox_profile(datas)
    tags = {o["tag"] for o in singbox["outbounds"]}
    assert {i for i in ids if "xhttp" not in i} <= tags
    assert not {i for i in ids if "xhttp" in i} & tags
    clash = yaml.safe_load(clash_profile(datas))
    names = {p["name"] for p in clash["proxies"]}
    assert names == {i for i in ids if "xhttp" not in i or i.startswith("vless")}
    # The base64 list holds every link.
    lines = base64.b64decode(base64_list(datas)).decode().splitlines()
    assert len(lines) == len(CASES)
    # A profile with nothing its client can reach says why.
    only_xhttp = [datas[ids.index("trojan-xhttp-tls")]]
    with pytest.raises(InvalidInput, match="sing-box has no XHTTP"):
        singbox_profile(only_xhttp)
    with pytest.raises(InvalidInput, match="Mihomo reads XHTTP only for VLESS"):
        clash_profile(only_xhttp)


def test_mihomo_httpupgrade_is_ws_with_upgrade() -> None:
    proxy = link_of(data_of(Case("trojan", "httpupgrade", "tls"))).clash_proxy("p")
    assert proxy["network"] == "ws"
    assert proxy["ws-opts"] == {
        "path": "/t/a~b?x=1",
        "headers": {"Host": "cdn.example.com"},
        "v2ray-http-upgrade": True,
    }


def test_the_trust_note_says_where_the_link_pins() -> None:
    assert "pins it (pcs)" in trust_note(data_of(Case("trojan", "ws", "tls")))
    assert "pins it (pcs)" in trust_note(data_of(Case("vless", "raw", "tls")))
    vmess = trust_note(data_of(Case("vmess", "raw", "tls")))
    assert "pins it (pcs)" in vmess
    assert "says insecure=1 for those" in vmess  # the flag's name in the VMess JSON
    trojan = trust_note(data_of(Case("trojan", "raw", "tls")))
    assert "pins it (pcs)" in trojan
    assert "says allowInsecure=1 for those" in trojan
    assert trust_note(data_of(Case("vless", "grpc", "reality"))) == ""
