"""Client delivery: share links, QR codes, client configs.

The link and both client configs of one fixed example are compared whole with the golden files in
tests/golden/delivery/. After a deliberate change, regenerate them and review the diff:

    VPN_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_delivery.py

The QR tests decode the codes with `zbarimg` (Debian package zbar-tools); without it they fail.
"""

from __future__ import annotations

import json
import shutil
import stat
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import ValidationError

from tests.golden_files import GOLDEN_DIR, assert_golden
from vpn_manager.delivery import qr_png, qr_text
from vpn_manager.delivery.qr import QUIET_ZONE, TEXT_CHARACTERS
from vpn_manager.errors import InvalidInput
from vpn_manager.links import (
    PARAMETER_ORDER,
    VlessRealityLink,
    singbox_client_config,
    xray_client_config,
)

GOLDEN = GOLDEN_DIR / "delivery"
ZBAR_MISSING = (
    "zbarimg is missing: the QR tests decode codes with it. Install zbar-tools "
    "(apt-get install -y --no-install-recommends zbar-tools)."
)
UUID = "fcbd9ac6-d945-4570-bc1a-e24ba7ed478c"
PUBLIC_KEY = "KjjZSyjx_U0f8eq8AQtAat9aeKafjBf-JGJnH0Twxgk"
EXAMPLE = VlessRealityLink(
    uuid=UUID,
    host="vpn.example.com",
    port=443,
    sni="www.example.org",
    public_key=PUBLIC_KEY,
    short_id="cf376e400f313d26",
    spider_x="/search?q=1",
    name="alice",
)
SOCKS_PORT = 10808


def link(**changes: Any) -> VlessRealityLink:
    """The example with some fields changed, validated."""
    return VlessRealityLink.model_validate({**EXAMPLE.model_dump(), **changes})


def as_json(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2, ensure_ascii=False) + "\n"


def query_of(uri: str) -> list[tuple[str, str]]:
    query = uri.partition("?")[2].partition("#")[0]
    return [(key, value) for key, _, value in (pair.partition("=") for pair in query.split("&"))]


def scan(image: Path) -> str:
    """What zbarimg reads in `image`; the test fails if zbarimg is missing or reads nothing."""
    zbarimg = shutil.which("zbarimg")
    if zbarimg is None:
        pytest.fail(ZBAR_MISSING)
    result = subprocess.run(
        [zbarimg, "--raw", "-q", str(image)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"zbarimg read no code (exit {result.returncode}): {result}"
    return result.stdout.removesuffix("\n")


# --- golden files ---------------------------------------------------------------------------


def test_golden_uri() -> None:
    assert_golden(GOLDEN / "example.uri", EXAMPLE.to_uri() + "\n")


def test_golden_xray_client() -> None:
    assert_golden(GOLDEN / "example.xray.json", as_json(xray_client_config(EXAMPLE, SOCKS_PORT)))


def test_golden_singbox_client() -> None:
    assert_golden(
        GOLDEN / "example.sing-box.json", as_json(singbox_client_config(EXAMPLE, SOCKS_PORT))
    )


def test_golden_uri_parses_to_the_example() -> None:
    text = (GOLDEN / "example.uri").read_text(encoding="utf-8")
    assert VlessRealityLink.parse(text) == EXAMPLE


# --- links ----------------------------------------------------------------------------------


def test_uri_has_the_documented_parameter_order() -> None:
    assert [key for key, _ in query_of(EXAMPLE.to_uri())] == list(PARAMETER_ORDER)
    plain = link(spider_x=None, flow="")
    assert [key for key, _ in query_of(plain.to_uri())] == [
        key for key in PARAMETER_ORDER if key not in ("flow", "spx")
    ]


def test_every_value_is_percent_encoded() -> None:
    assert dict(query_of(EXAMPLE.to_uri()))["spx"] == "%2Fsearch%3Fq%3D1"
    assert link(spider_x="/").to_uri().endswith("&spx=%2F#alice")


def test_defaults() -> None:
    minimal = VlessRealityLink(
        uuid=UUID,
        host="vpn.example.com",
        port=443,
        sni="www.example.org",
        public_key=PUBLIC_KEY,
        short_id="",
        name="bob",
    )
    assert (minimal.fingerprint, minimal.flow, minimal.transport.network, minimal.spider_x) == (
        "chrome",
        "xtls-rprx-vision",
        "raw",
        None,
    )
    assert minimal.to_uri() == (
        f"vless://{UUID}@vpn.example.com:443?encryption=none&security=reality"
        f"&sni=www.example.org&fp=chrome&pbk={PUBLIC_KEY}&sid=&type=tcp&flow=xtls-rprx-vision#bob"
    )


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"spider_x": None},
        {"spider_x": "/"},
        {"flow": ""},
        {"short_id": ""},
        {"short_id": "ab"},
        {"fingerprint": "firefox"},
        {"fingerprint": "360"},
        {"host": "203.0.113.7", "port": 8443},
        {"host": "2001:db8::1"},
        {"host": "localhost", "port": 1},
        {"port": 65535, "sni": "a-b.example.co.uk"},
    ],
)
def test_round_trip(changes: dict[str, Any]) -> None:
    original = link(**changes)
    uri = original.to_uri()
    parsed = VlessRealityLink.parse(uri)
    assert parsed == original
    assert parsed.to_uri() == uri


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("alice smith", "alice%20smith"),
        ("a#b", "a%23b"),
        ("a&b=c", "a%26b%3Dc"),
        ("a+b", "a%2Bb"),
        ("50% off/on?", "50%25%20off%2Fon%3F"),
        ("Алиса", "%D0%90%D0%BB%D0%B8%D1%81%D0%B0"),
        ("名前 🚀", "%E5%90%8D%E5%89%8D%20%F0%9F%9A%80"),
        ("a.b-c_d", "a.b-c_d"),
        ("tilde~", "tilde~"),
    ],
)
def test_odd_names_are_percent_encoded(name: str, fragment: str) -> None:
    uri = link(name=name).to_uri()
    assert uri.endswith("#" + fragment)
    assert fragment == quote(name, safe="")
    assert uri.count("#") == 1
    assert uri.isascii()
    assert not any(char.isspace() for char in uri)
    assert len(query_of(uri)) == len(PARAMETER_ORDER)  # no '&' or '=' leaked from the name
    assert VlessRealityLink.parse(uri).name == name


def test_ipv6_host_gets_brackets() -> None:
    ipv6 = link(host="2001:DB8:0:0::1")
    assert ipv6.host == "2001:db8::1"
    uri = ipv6.to_uri()
    assert uri.startswith(f"vless://{UUID}@[2001:db8::1]:443?")
    assert VlessRealityLink.parse(uri) == ipv6
    assert link(host="[2001:db8::1]") == ipv6
    # the configs take the bare address
    assert xray_client_config(ipv6, SOCKS_PORT)["outbounds"][0]["settings"]["vnext"][0][
        "address"
    ] == ("2001:db8::1")
    assert singbox_client_config(ipv6, SOCKS_PORT)["outbounds"][0]["server"] == "2001:db8::1"


def test_values_are_normalised() -> None:
    shouting = link(uuid=UUID.upper(), host="VPN.Example.COM", sni="WWW.example.org", short_id="AB")
    assert (shouting.uuid, shouting.host, shouting.sni, shouting.short_id) == (
        UUID,
        "vpn.example.com",
        "www.example.org",
        "ab",
    )


def test_parse_accepts_any_order_and_common_variants() -> None:
    pairs = query_of(EXAMPLE.to_uri())
    shuffled = "&".join(f"{key}={value}" for key, value in reversed(pairs))
    assert VlessRealityLink.parse(f"vless://{UUID}@vpn.example.com:443?{shuffled}#alice") == EXAMPLE
    # what other panels write: no encryption, type=raw, headerType=none, "/?", upper case
    variant = (
        f"  VLESS://{UUID.upper()}@vpn.example.com:443/?type=raw&headerType=none&security=reality"
        f"&pbk={PUBLIC_KEY}&fp=chrome&sni=www.example.org&sid=CF376E400F313D26"
        "&spx=%2Fsearch%3Fq%3D1&flow=xtls-rprx-vision#alice\n"
    )
    assert VlessRealityLink.parse(variant) == EXAMPLE


def test_parse_reads_missing_flow_as_no_flow_and_missing_sid_as_empty() -> None:
    uri = (
        f"vless://{UUID}@vpn.example.com:443?security=reality&sni=www.example.org&fp=chrome"
        f"&pbk={PUBLIC_KEY}#alice"
    )
    parsed = VlessRealityLink.parse(uri)
    assert (parsed.flow, parsed.short_id, parsed.spider_x) == ("", "", None)


def _without(key: str) -> str:
    return EXAMPLE.to_uri().replace(f"&{key}={dict(query_of(EXAMPLE.to_uri()))[key]}", "")


def _replaced(key: str, value: str) -> str:
    old = dict(query_of(EXAMPLE.to_uri()))[key]
    return EXAMPLE.to_uri().replace(f"{key}={old}", f"{key}={value}")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("vmess://eyJ2IjoiMiJ9", r"^Not a VLESS link: it must start with vless://\.$"),
        ("https://example.com/", r"^Not a VLESS link"),
        ("trojan://secret@example.com:443#x", r"^Not a VLESS link"),
        ("", r"^Not a VLESS link"),
        (EXAMPLE.to_uri().removeprefix("vless://"), r"^Not a VLESS link"),
        (_without("pbk"), r"^VLESS link: the REALITY parameter 'pbk' is missing\.$"),
        (_without("sni"), r"'sni' is missing"),
        (_without("fp"), r"'fp' is missing"),
        (_replaced("pbk", ""), r"'pbk' is missing"),
        (_replaced("security", "tls"), r"unsupported parameter\(s\) pbk, sid, spx\."),
        (_replaced("security", "none"), r"security=none"),
        (_without("security"), r"it has no security parameter"),
        (_replaced("encryption", "mlkem768x25519plus.native.1rtt.x"), r"only encryption=none"),
        (_replaced("type", "ws"), r"Xray has no REALITY over ws; use raw, grpc or xhttp"),
        (_replaced("flow", "xtls-rprx-direct"), r"^VLESS link: invalid flow 'xtls-rprx-direct'"),
        (_replaced("fp", "unsafe"), r"^VLESS link: invalid fp 'unsafe'"),
        (_replaced("pbk", PUBLIC_KEY[:-1]), r"^VLESS link: invalid pbk"),
        (_replaced("pbk", PUBLIC_KEY[:-1] + "h"), r"invalid pbk"),  # not canonical base64
        (_replaced("sid", "abc"), r"^VLESS link: invalid sid 'abc'"),
        (_replaced("sid", "0123456789abcdef01"), r"invalid sid"),
        (_replaced("spx", "search"), r"^VLESS link: invalid spx 'search'"),
        (_replaced("sni", "1.2.3.4"), r"^VLESS link: invalid sni"),
        (EXAMPLE.to_uri().replace("#", "&alpn=h2#"), r"unsupported parameter\(s\) alpn"),
        (EXAMPLE.to_uri().replace("#", "&pqv=x&x=1#"), r"unsupported parameter\(s\) pqv, x\."),
        (EXAMPLE.to_uri().replace("#", "&sni=a.example#"), r"'sni' appears twice"),
        (EXAMPLE.to_uri().removesuffix("#alice"), r"has no name: it must end with #NAME"),
        (EXAMPLE.to_uri().removesuffix("alice"), r"has no name"),
        (EXAMPLE.to_uri().replace(":443", ":70000"), r"^VLESS link: invalid port 70000"),
        (EXAMPLE.to_uri().replace(":443", ":0"), r"invalid port 0"),
        (EXAMPLE.to_uri().replace(":443", ""), r"^Not a valid VLESS link"),
        (EXAMPLE.to_uri().replace(UUID, "not-a-uuid"), r"^VLESS link: invalid user id: use a UUID"),
        (EXAMPLE.to_uri().replace(f"{UUID}@", ""), r"^Not a valid VLESS link"),
        (EXAMPLE.to_uri().replace("vpn.example.com", "2001:db8::1"), r"^Not a valid VLESS link"),
        (EXAMPLE.to_uri().replace("vpn.example.com", "[vpn.example.com]"), r"invalid host"),
        (EXAMPLE.to_uri().replace("vpn.example.com", "[203.0.113.7]"), r"only an IPv6 address"),
        (EXAMPLE.to_uri().replace("vpn.example.com", "bad_host"), r"invalid host 'bad_host'"),
        (EXAMPLE.to_uri().replace("#alice", "#%FF"), r"the name is not percent-encoded UTF-8"),
        (EXAMPLE.to_uri().replace("#alice", "#a%0Ab"), r"invalid name \(#…\)"),
    ],
)
def test_parse_errors(uri: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        VlessRealityLink.parse(uri)
    assert caught.value.exit_code == 3


@pytest.mark.parametrize(
    "changes",
    [
        {"uuid": "fcbd9ac6d9454570bc1ae24ba7ed478c"},
        {"host": ""},
        {"host": "exa mple.com"},
        {"host": "пример.рф"},
        {"host": "-a.example.com"},
        {"host": "1.2.3.256"},
        {"host": "fe80::1%eth0"},
        {"port": 0},
        {"port": "443"},
        {"sni": "203.0.113.7"},
        {"public_key": PUBLIC_KEY + "="},
        {"short_id": "xyz0"},
        {"fingerprint": "hellogolang"},
        {"transport": "ws"},
        {"spider_x": "/a b"},
        {"name": ""},
        {"name": "   "},
        {"name": "a\tb"},
        {"name": "x" * 201},
        {"extra": 1},
    ],
)
def test_model_rejects(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        VlessRealityLink.model_validate({**EXAMPLE.model_dump(), **changes})


def test_repr_hides_the_user_id() -> None:
    assert UUID not in repr(EXAMPLE)


# --- client configs -------------------------------------------------------------------------


def test_xray_config_follows_the_link() -> None:
    other = link(spider_x=None, flow="", short_id="", fingerprint="safari")
    config = xray_client_config(other, 1080, listen="::1")
    assert config["inbounds"] == [
        {
            "tag": "socks-in",
            "listen": "::1",
            "port": 1080,
            "protocol": "socks",
            "settings": {"udp": True},
        }
    ]
    (outbound,) = config["outbounds"]
    assert outbound["settings"]["vnext"][0]["users"] == [
        {"id": UUID, "encryption": "none", "flow": ""}
    ]
    assert outbound["streamSettings"]["realitySettings"] == {
        "serverName": "www.example.org",
        "fingerprint": "safari",
        "publicKey": PUBLIC_KEY,
        "shortId": "",
        "spiderX": "/",
    }


def test_singbox_config_follows_the_link() -> None:
    config = singbox_client_config(link(fingerprint="ios", short_id="ab"), 2080, listen="0.0.0.0")
    assert config["inbounds"] == [
        {"type": "mixed", "tag": "mixed-in", "listen": "0.0.0.0", "listen_port": 2080}
    ]
    (outbound,) = config["outbounds"]
    assert outbound["tls"]["utls"] == {"enabled": True, "fingerprint": "ios"}
    assert outbound["tls"]["reality"] == {
        "enabled": True,
        "public_key": PUBLIC_KEY,
        "short_id": "ab",
    }


@pytest.mark.parametrize("build", [xray_client_config, singbox_client_config])
@pytest.mark.parametrize(
    ("port", "listen", "message"),
    [
        (0, "127.0.0.1", "port 0 is out of range"),
        (65536, "127.0.0.1", "port 65536 is out of range"),
        (1080, "localhost", "'localhost' is not an IP address"),
        (1080, "", "'' is not an IP address"),
    ],
)
def test_configs_reject_bad_local_proxy(build: Any, port: int, listen: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        build(EXAMPLE, port, listen=listen)


# --- QR codes -------------------------------------------------------------------------------


def light_pixels(text: str) -> list[list[bool]]:
    """The module grid a dark terminal shows for `qr_text` output: True where a glyph is drawn."""
    rows: list[list[bool]] = []
    for line in text.split("\n"):
        rows.append([char in "█▀" for char in line])
        rows.append([char in "█▄" for char in line])
    assert not any(rows[-1]), "the half row below the code must be blank"
    return rows[:-1]


def write_pgm(path: Path, light: list[list[bool]], *, scale: int = 4, margin: int = 6) -> None:
    """An image of what a dark terminal shows: light pixels drawn, a dark margin around."""
    width = (len(light[0]) + 2 * margin) * scale
    dark_row = bytes(width)
    pixels = bytearray()
    for row in [[False] * len(light[0])] * margin + light + [[False] * len(light[0])] * margin:
        line = bytes(
            255 if on else 0
            for on in [False] * margin + row + [False] * margin
            for _ in range(scale)
        )
        assert len(line) == width
        pixels += line * scale
    height = len(pixels) // len(dark_row)
    path.write_bytes(f"P5 {width} {height} 255\n".encode() + bytes(pixels))


def test_qr_text_uses_only_half_blocks() -> None:
    text = qr_text(EXAMPLE.to_uri())
    assert {"█", "▀", "▄", " "} == TEXT_CHARACTERS
    assert set(text) <= TEXT_CHARACTERS | {"\n"}
    assert not text.endswith("\n")
    lines = text.split("\n")
    assert len({len(line) for line in lines}) == 1


def test_qr_text_has_a_quiet_zone() -> None:
    text = qr_text(EXAMPLE.to_uri())
    light = light_pixels(text)
    size = len(light)
    assert all(len(row) == size for row in light), "the code must be square"
    assert (size - 2 * QUIET_ZONE - 21) % 4 == 0, "not the size of a QR version"
    assert QUIET_ZONE == 4
    for row in light[:QUIET_ZONE] + light[-QUIET_ZONE:]:
        assert all(row)
    for row in light:
        assert all(row[:QUIET_ZONE])
        assert all(row[-QUIET_ZONE:])
    lines = text.split("\n")
    assert lines[0] == lines[1] == "█" * size
    assert lines[-1] == "▀" * size
    # a finder pattern's dark ring starts right inside the quiet zone
    assert not any(light[QUIET_ZONE][QUIET_ZONE : QUIET_ZONE + 7])


def test_qr_text_scans_on_a_dark_terminal(tmp_path: Path) -> None:
    uri = link(name="Алиса & Bob").to_uri()
    image = tmp_path / "terminal.pgm"
    write_pgm(image, light_pixels(qr_text(uri)))
    assert scan(image) == uri


def test_qr_png_scans_to_the_link_and_is_private(tmp_path: Path) -> None:
    uri = EXAMPLE.to_uri()
    path = tmp_path / "new-dir" / "alice.png"
    qr_png(uri, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert scan(path) == uri
    assert [p.name for p in path.parent.iterdir()] == ["alice.png"]  # no temp file left


def test_qr_png_replaces_a_file_and_makes_it_private(tmp_path: Path) -> None:
    path = tmp_path / "link.png"
    path.write_text("old")
    path.chmod(0o644)
    uri = link(host="2001:db8::1", name="a.b-c_d").to_uri()
    qr_png(uri, path, scale=3)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert scan(path) == uri


@pytest.mark.parametrize("scale", [1, 3, 8])
def test_qr_png_scale(tmp_path: Path, scale: int) -> None:
    uri = EXAMPLE.to_uri()
    path = tmp_path / "code.png"
    qr_png(uri, path, scale=scale)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    modules = len(qr_text(uri).split("\n")[0])
    assert width == height == modules * scale


@pytest.mark.parametrize("scale", [0, -1, 65])
def test_qr_png_rejects_a_bad_scale(tmp_path: Path, scale: int) -> None:
    with pytest.raises(InvalidInput, match="scale"):
        qr_png("x", tmp_path / "code.png", scale=scale)
    assert not (tmp_path / "code.png").exists()


def test_qr_rejects_too_much_data(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="too long for a QR code"):
        qr_text("x" * 3000)
    with pytest.raises(InvalidInput, match="too long for a QR code"):
        qr_png("x" * 3000, tmp_path / "code.png")


def test_qrcode_loads_on_use_and_never_pillow(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import vpn_manager.delivery as d\n"
        "before = sorted(m for m in sys.modules if m.split('.')[0] in {'qrcode', 'png', 'PIL'})\n"
        f"d.qr_png('hello', Path({str(tmp_path / 'x.png')!r}))\n"
        "after = sorted({m.split('.')[0] for m in sys.modules} & {'qrcode', 'png', 'PIL'})\n"
        "print(before, after)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[] ['png', 'qrcode']\n"
