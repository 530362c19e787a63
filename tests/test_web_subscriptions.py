"""The subscription routes over HTTP (FastAPI's test client), with subscribers given directly:
formats, headers, the page, Outline keys, config downloads, refusals and the limiter. The real
`vpn web` over a real database and engines is tested in tests/e2e."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.test_profiles import AEAD_SS, SERVERS
from vpn_manager.links import share_link
from vpn_manager.services.subscriptions import Subscriber, Way
from vpn_manager.web.app import SECURITY_HEADERS, subscription_app
from vpn_manager.web.ratelimit import FailureLimiter
from vpn_manager.web.subscriptions import WebConfig, router

TOKEN = "tok_" + "A" * 40
EXPIRES = datetime(2027, 1, 31, tzinfo=UTC)
ALICE = Subscriber(
    name="alice",
    status="active",
    upload=1000,
    download=2000,
    quota=10**9,
    expires=EXPIRES,
    ways=[Way(d.server, d.format, d) for d in SERVERS],
)
BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126", "accept": "text/html"}


def client(subscriber: Subscriber = ALICE, **config: object) -> TestClient:
    async def lookup(token: str) -> Subscriber | None:
        return subscriber if token == TOKEN else None

    app = FastAPI()
    app.include_router(router(lookup, WebConfig(**config)))  # type: ignore[arg-type]
    return TestClient(app)


def test_the_default_is_the_base64_list_with_the_usage_headers() -> None:
    response = client().get(f"/sub/{TOKEN}", headers={"user-agent": "v2rayNG/1.9"})
    assert response.status_code == 200
    lines = base64.b64decode(response.text).decode().split("\n")
    assert lines == [share_link(d) for d in SERVERS if d.format != "wireguard"]
    headers = response.headers
    assert headers["subscription-userinfo"] == (
        f"upload=1000; download=2000; total=1000000000; expire={int(EXPIRES.timestamp())}"
    )
    assert headers["profile-update-interval"] == "12"
    assert base64.b64decode(headers["profile-title"].removeprefix("base64:")) == b"VPN: alice"
    assert headers["profile-web-page-url"] == f"http://testserver/sub/{TOKEN}"
    assert "alice.txt" in headers["content-disposition"]


@pytest.mark.parametrize(
    ("asked", "agent", "check"),
    [
        ("sing-box", "", lambda r: json.loads(r.text)["route"]["final"]),
        (None, "SFA/1.11.0", lambda r: json.loads(r.text)["outbounds"]),
        ("clash", "", lambda r: yaml.safe_load(r.text)["proxies"]),
        (None, "clash-verge/v2.0", lambda r: yaml.safe_load(r.text)["proxy-groups"]),
    ],
)
def test_the_format_follows_the_query_or_the_app(asked, agent, check) -> None:  # type: ignore[no-untyped-def]
    params = {"format": asked} if asked else {}
    response = client().get(f"/sub/{TOKEN}", params=params, headers={"user-agent": agent})
    assert response.status_code == 200
    assert check(response)


def test_a_browser_gets_the_page() -> None:
    response = client().get(f"/sub/{TOKEN}", headers=BROWSER)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.count("<svg") == len(SERVERS)
    assert "Used 3.00KB" in response.text or "Used 3KB" in response.text


def test_unknown_and_malformed_tokens_get_the_same_404() -> None:
    app = client()
    wrong = app.get("/sub/" + "B" * 44)
    malformed = app.get("/sub/a%20b%3Cc")
    assert wrong.status_code == malformed.status_code == 404
    assert wrong.text == malformed.text
    assert wrong.headers.keys() == malformed.headers.keys()
    assert "subscription-userinfo" not in wrong.headers


def test_wrong_tokens_from_one_address_are_rate_limited() -> None:
    app = client(failures=FailureLimiter(limit=100, window=600))
    codes = [app.get("/sub/" + f"{i:044d}").status_code for i in range(100)]
    assert set(codes) == {404}
    refused = app.get(f"/sub/{TOKEN}")  # even the right token, from this address, for now
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0


@pytest.mark.parametrize("status", ["disabled", "expired", "over-quota"])
def test_a_user_who_cannot_connect_gets_no_config(status: str) -> None:
    app = client(replace(ALICE, status=status))
    for asked in ("links", "sing-box", "clash"):
        response = app.get(f"/sub/{TOKEN}", params={"format": asked})
        assert response.status_code == 403
        assert status.replace("-", " ") in response.text
        assert "subscription-userinfo" in response.headers
        assert "vless://" not in response.text
    page = app.get(f"/sub/{TOKEN}", headers=BROWSER)
    assert f"Status: {status.replace('-', ' ')}" in page.text
    assert "<svg" not in page.text
    for path in ("outline/ss", "config/wg", "wireguard/wg"):
        assert app.get(f"/sub/{TOKEN}/{path}").status_code == 403


def test_outline_key_and_config_downloads() -> None:
    app = client(replace(ALICE, ways=[*ALICE.ways, Way("ol", "shadowsocks", AEAD_SS)]))
    outline = app.get(f"/sub/{TOKEN}/outline/ol")
    assert outline.status_code == 200
    assert outline.json()["method"] == "chacha20-ietf-poly1305"
    # Outline's apps have no 2022 cipher: the sentence saying so, not a key they cannot use.
    refused = app.get(f"/sub/{TOKEN}/outline/ss")
    assert refused.status_code == 409
    assert refused.text.startswith("ss uses 2022-blake3-aes-128-gcm, a Shadowsocks 2022 cipher")
    assert "vpn server install shadowsocks --outline" in refused.text
    assert refused.text.count("\n") == 1
    assert app.get(f"/sub/{TOKEN}/outline/trojan").status_code == 404  # not Shadowsocks
    wg = app.get(f"/sub/{TOKEN}/config/wg")
    assert wg.text.startswith("[Interface]")
    assert "alice-wg.conf" in wg.headers["content-disposition"]
    trojan = app.get(f"/sub/{TOKEN}/config/trojan")
    assert trojan.json()["outbounds"][0]["type"] == "trojan"
    assert app.get(f"/sub/{TOKEN}/config/nosuch").status_code == 404
    conf = app.get(f"/sub/{TOKEN}/wireguard/wg")
    assert conf.text == wg.text
    assert "alice-wg.conf" in conf.headers["content-disposition"]
    assert app.get(f"/sub/{TOKEN}/wireguard/trojan").status_code == 404  # not WireGuard


def test_the_prefix_and_a_trusted_proxy() -> None:
    app = client(prefix="/p/q", trusted_proxies=["127.0.0.0/8"])
    assert app.get(f"/sub/{TOKEN}").status_code == 404
    response = app.get(
        f"/p/q/sub/{TOKEN}",
        headers={"x-forwarded-proto": "https", "host": "vpn.example.com"},
    )
    assert response.status_code == 200
    # the test client's peer ("testclient") is no address, so its forwarded headers are ignored
    assert response.headers["profile-web-page-url"] == f"http://vpn.example.com/p/q/sub/{TOKEN}"


def test_the_public_url_is_what_links_carry() -> None:
    app = client(public_url="https://sub.example.com:8443/x/")
    response = app.get(f"/sub/{TOKEN}", headers=BROWSER)
    assert f"https://sub.example.com:8443/x/sub/{TOKEN}" in response.text


def test_every_response_of_the_app_has_the_security_headers() -> None:
    async def lookup(token: str) -> Subscriber | None:
        return ALICE if token == TOKEN else None

    app = subscription_app(lookup, WebConfig())
    with TestClient(app) as http:
        responses = [
            http.get(f"/sub/{TOKEN}", headers={"user-agent": "v2rayNG/1.9"}),
            http.get(f"/sub/{TOKEN}", headers=BROWSER),
            http.get("/sub/" + "B" * 43),
            http.get("/anything/else"),
        ]
    assert [r.status_code for r in responses] == [200, 200, 404, 404]
    for response in responses:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value
        assert response.headers.get_list("server") == ["vpn-manager"]
