"""The parts of `vpn web` that need no server: which format a request gets, the apps' import
links, the failed-lookup limiter, the user's page and its QR codes."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from vpn_manager.delivery.qr import qr_svg, qr_text
from vpn_manager.errors import InvalidInput
from vpn_manager.web.apps import APPS
from vpn_manager.web.formats import Format, choose
from vpn_manager.web.page import AppButton, ServerEntry, UserPage, render
from vpn_manager.web.ratelimit import FailureLimiter

URL = "https://vpn.example.com:8443/sub/AbC-123_xyz"
BROWSER = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36"
HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        ("v2rayNG/1.9.16", Format.LINKS),
        ("v2rayN/7.0", Format.LINKS),
        ("Shadowrocket/2070 CFNetwork/1494.0.7 Darwin/23.4.0", Format.LINKS),
        ("Streisand/1.6", Format.LINKS),
        ("NekoBox/Android/1.3.4", Format.LINKS),
        ("Happ/1.0", Format.LINKS),
        ("curl/8.5.0", Format.LINKS),
        ("", Format.LINKS),
        ("sing-box 1.14.4", Format.SINGBOX),
        ("SFA/1.11.0 (Android 14)", Format.SINGBOX),
        ("SFI/1.11.0 (iOS 17.5)", Format.SINGBOX),
        ("HiddifyNext/2.5.7 (android) like ClashMeta v2ray sing-box", Format.SINGBOX),
        ("Hiddify/2.0", Format.SINGBOX),
        ("clash-verge/v2.0.3", Format.CLASH),
        ("ClashX Pro/1.118", Format.CLASH),
        ("mihomo/1.18.5", Format.CLASH),
        ("FlClash/v0.8.60 clash-verge Platform/android", Format.CLASH),
        ("Stash/2.4.6 Clash/1.9.0", Format.CLASH),
    ],
)
def test_the_app_chooses_the_format(agent: str, expected: Format) -> None:
    assert choose(None, agent, "*/*") is expected


def test_a_browser_gets_the_page_and_the_query_wins() -> None:
    assert choose(None, BROWSER, HTML) is Format.PAGE
    assert choose(None, BROWSER, "*/*") is Format.LINKS
    assert choose("sing-box", BROWSER, HTML) is Format.SINGBOX
    assert choose("YAML", "v2rayNG/1.9", "*/*") is Format.CLASH
    assert choose("links", "clash-verge/2", "*/*") is Format.LINKS
    with pytest.raises(InvalidInput, match="Unknown format 'xml'"):
        choose("xml", "", "")


def test_every_app_link_carries_the_subscription_url() -> None:
    for app in APPS:
        link = app.link(URL, "alice")
        scheme = urlsplit(link).scheme
        assert scheme
        assert scheme not in {"http", "https"}, app.name
        if scheme == "sub":  # Shadowrocket: base64url of the URL
            encoded = link.removeprefix("sub://").split("#")[0]
            assert base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode() == URL
            continue
        query = parse_qs(urlsplit(link).query)
        carried = query["url"][0] if "url" in query else unquote(link.split("://", 1)[1])
        assert URL in carried, (app.name, link)


def test_the_limiter_refuses_after_the_limit_until_the_window_passes() -> None:
    now = [1000.0]
    limiter = FailureLimiter(limit=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("192.0.2.1") == 0
        limiter.failed("192.0.2.1")
        now[0] += 1
    assert limiter.retry_after("192.0.2.1") == pytest.approx(57)
    assert limiter.retry_after("192.0.2.2") == 0  # another address is not held back
    now[0] += 57
    assert limiter.retry_after("192.0.2.1") == 0


def test_the_limiter_tracks_a_bounded_number_of_addresses() -> None:
    limiter = FailureLimiter(limit=1, window=60, max_clients=100)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._failures) == 100
    assert limiter.retry_after("10.0.3.231") > 0  # the latest are kept


def test_qr_svg_draws_the_modules_of_the_code() -> None:
    svg = qr_svg("vless://x@h:1#a", title="<a & b>")
    rows = qr_text("vless://x@h:1#a").split("\n")
    size = int(re.search(r'viewBox="0 0 (\d+) \1"', svg).group(1))  # type: ignore[union-attr]
    assert size == len(rows[0])
    assert "<title>&lt;a &amp; b&gt;</title>" in svg
    assert svg.count("h1v1h-1z") > size  # dark modules drawn


def page(status: str = "active", **changes: object) -> UserPage:
    servers = [
        ServerEntry("reality", "vless-reality", "vless://a@h:1#alice", qr_svg("a"), "/d/1"),
        ServerEntry("wg", "wireguard", "[Interface]\nPrivateKey = k\n", qr_svg("b"), "/d/2"),
    ]
    fields: dict[str, object] = {
        "user": "alice",
        "status": status,
        "used": 150_000_000,
        "quota": 200_000_000,
        "expires": datetime(2027, 1, 31, 12, 0, tzinfo=UTC),
        "subscription_url": URL,
        "servers": servers,
        "apps": [AppButton(a.name, a.platforms, a.link(URL, "alice")) for a in APPS],
        **changes,
    }
    return UserPage(**fields)  # type: ignore[arg-type]


def test_the_page_shows_usage_expiry_and_one_qr_per_server() -> None:
    html = render(page())
    assert "Used 150MB" in html
    assert "of 200MB" in html
    assert 'aria-valuenow="75"' in html
    assert "2027-01-31" in html
    assert html.count("<svg") == 2
    assert "vless://a@h:1#alice" in html
    assert "PrivateKey = k" in html
    for app in APPS:
        assert app.name.replace("/", "") in html.replace("/", "")
    assert "<script" not in html
    assert "http" not in html.replace(URL, "").replace("http://www.w3.org/2000/svg", "").replace(
        "https%3A", ""
    )  # nothing fetched from elsewhere


@pytest.mark.parametrize("status", ["disabled", "expired", "over quota"])
def test_a_user_who_cannot_connect_gets_no_link(status: str) -> None:
    html = render(page(status))
    assert f"Status: {status}" in html
    assert "vless://" not in html
    assert "<svg" not in html
    assert URL not in html


def test_each_text_area_has_rows_for_its_whole_text_on_a_phone() -> None:
    """Where the browser cannot size a text area to its text (tests/e2e/test_web_browser.py
    checks one that can), its rows hold the text at a phone's 40 characters a line."""
    link = "vless://" + "x" * 150 + "@h:1#alice"  # 168 characters: 5 lines
    conf = "[Interface]\nPrivateKey = " + "k" * 44 + "\nAddress = 10.0.0.2/32\n"
    entries = [
        ServerEntry("long", "vless-reality", link, qr_svg("a"), "/d/1"),
        ServerEntry("wg", "wireguard", conf, qr_svg("b"), "/d/2"),
    ]
    html = render(page(servers=entries))
    areas = re.findall(r'<textarea readonly rows="(\d+)" aria-label="([^"]+)"', html)
    assert {label: int(rows) for rows, label in areas} == {
        "Subscription URL": 2,
        "Link for long": 5,
        "Link for wg": 4,
    }


def test_the_page_escapes_what_it_shows() -> None:
    html = render(page(user="a<b>", quota=None, expires=None))
    assert "a&lt;b&gt;" in html
    assert "a<b>" not in html
    assert "no limit" in html
    assert "Never expires" in html
