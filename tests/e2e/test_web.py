"""`vpn web` end to end: the real subscription server over a real home, with real servers (VLESS+
REALITY on Xray, Trojan and Shadowsocks on sing-box), fetched over HTTP on 127.0.0.1 and used by
real clients built from what it serves alone."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import (
    VPN,
    Vpn,
    _wait_for_port,
    curl_fails,
    curl_via,
    install,
    install_singbox,
    singbox_client,
    ss_local,
    xray_client,
)
from tests.e2e.net import BACKEND_PAGE, end_process, free_port

PAGE = BACKEND_PAGE.decode()
V2RAYNG = "v2rayNG/1.9.16"


@dataclass
class Fetched:
    status: int
    headers: dict[str, str]
    body: str


def fetch(url: str, *, agent: str = V2RAYNG, accept: str = "*/*") -> Fetched:
    request = urllib.request.Request(url, headers={"User-Agent": agent, "Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Fetched(
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read().decode(),
            )
    except urllib.error.HTTPError as error:
        return Fetched(
            error.code, {k.lower(): v for k, v in error.headers.items()}, error.read().decode()
        )


@contextmanager
def web_server(vpn: Vpn) -> Iterator[int]:
    """`vpn web` on a free loopback port (web.port, so `vpn user link --subscription` prints
    URLs to it) and its API on another (api.port, unless the test chose one), stopped with
    SIGTERM at the end."""
    port = free_port()
    vpn.env["VPN_WEB__PORT"] = str(port)
    # The REST API's listener on a free port too: tests run side by side.
    vpn.env.setdefault("VPN_API__PORT", str(free_port()))
    process = subprocess.Popen(
        [str(VPN), "web"],
        env=vpn.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_port(port, process)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        finally:
            end_process(process)


def subscription_of(vpn: Vpn, user: str, port: int) -> str:
    url = vpn.ok("user", "link", user, "--subscription").stdout.strip()
    assert url.startswith(f"http://127.0.0.1:{port}/sub/"), url
    return url


@pytest.fixture
def servers(vpn: Vpn, reality_site: int) -> list[str]:
    install(vpn, reality_site, name="reality")
    install_singbox(vpn, "trojan", "trojan")
    install_singbox(vpn, "shadowsocks", "ss", "--method", "chacha20-ietf-poly1305")
    vpn.ok("user", "add", "alice", "--server", "reality", "--server", "trojan", "--server", "ss")
    return ["reality", "trojan", "ss"]


def connects(link: str, workdir: Path, backend: int) -> bool:
    """Whether an independent client built from `link` alone reaches the backend: Xray for
    VLESS+REALITY, Debian's ss-local for Shadowsocks, sing-box for the rest."""
    scheme = link.split("://", 1)[0]
    if scheme == "vless":
        client = xray_client(link, workdir)
    elif scheme == "ss":
        client = ss_local(link)
    else:
        client = singbox_client(link, workdir)
    with client as socks:
        try:
            return curl_via(socks, f"http://127.0.0.1:{backend}/", attempts_for=12) == PAGE
        except AssertionError:
            return False


def test_every_link_of_the_base64_subscription_connects(
    vpn: Vpn, servers: list[str], backend: int, tmp_path: Path
) -> None:
    with web_server(vpn) as port:
        url = subscription_of(vpn, "alice", port)
        got = fetch(url)
    assert got.status == 200
    links = base64.b64decode(got.body).decode().split("\n")
    assert sorted(link.split("://")[0] for link in links) == ["ss", "trojan", "vless"]
    for index, link in enumerate(links):
        assert connects(link, tmp_path / f"client-{index}", backend), link


def runnable(profile: dict[str, Any], tag: str, mixed_port: int) -> dict[str, Any]:
    """The served sing-box profile made runnable here, changing only the client side: no TUN
    inbound (it would take this machine's routes), the mixed inbound on a free port, the
    server `tag` chosen, and loopback (the test's backend) not sent around the VPN."""
    profile = json.loads(json.dumps(profile))
    profile["inbounds"] = [i for i in profile["inbounds"] if i["type"] == "mixed"]
    profile["inbounds"][0]["listen_port"] = mixed_port
    chooser = profile["outbounds"][0]
    assert chooser["type"] == "selector"
    chooser["default"] = tag
    profile["route"]["rules"] = [r for r in profile["route"]["rules"] if "ip_is_private" not in r]
    return profile


def test_the_singbox_profile_runs_in_a_real_singbox(
    vpn: Vpn, servers: list[str], backend: int, tmp_path: Path
) -> None:
    """Each server of the profile carries bytes through a real sing-box. The REALITY server is
    in the profile too, but this machine's sing-box build has no uTLS, which a REALITY client
    needs: its outbound is the one a link makes (tests/test_profiles.py), and the VLESS link
    connects through Xray above."""
    from vpn_manager.engines.singbox.engine import binary

    with web_server(vpn) as port:
        url = subscription_of(vpn, "alice", port)
        got = fetch(url + "?format=sing-box")
        by_agent = fetch(url, agent="SFA/1.11.0 (Android 14)")
    assert got.status == 200
    assert json.loads(by_agent.body)["outbounds"] == json.loads(got.body)["outbounds"]
    profile = json.loads(got.body)
    tags = {o["tag"] for o in profile["outbounds"]}
    assert {f"alice@{server}" for server in servers} <= tags  # each under its link's label
    for tag in ("alice@trojan", "alice@ss"):
        mixed = free_port()
        without_reality = runnable(profile, tag, mixed)
        without_reality["outbounds"] = [
            o for o in without_reality["outbounds"] if o.get("type") != "vless"
        ]
        for group in without_reality["outbounds"][:2]:
            group["outbounds"] = [t for t in group["outbounds"] if t != "alice@reality"]
        path = tmp_path / f"profile-{tag}.json"
        path.write_text(json.dumps(without_reality))
        process = subprocess.Popen(
            [binary(), "run", "-c", str(path), "--disable-color"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_for_port(mixed, process)
            assert curl_via(mixed, f"http://127.0.0.1:{backend}/", attempts_for=12) == PAGE
        finally:
            end_process(process)


def test_clash_headers_and_page(vpn: Vpn, servers: list[str]) -> None:
    vpn.ok("user", "update", "alice", "--quota", "5GB", "--expires", "2031-01-31")
    with web_server(vpn) as port:
        url = subscription_of(vpn, "alice", port)
        clash = fetch(url, agent="clash-verge/v2.0.3")
        page = fetch(url, agent="Mozilla/5.0 Chrome/126", accept="text/html")
        outline = fetch(f"{url}/outline/ss")
        not_ss = fetch(f"{url}/outline/trojan")
    proxies = yaml.safe_load(clash.body)["proxies"]
    assert sorted(p["name"] for p in proxies) == sorted(f"alice@{s}" for s in servers)
    shown = vpn.json("user", "show", "alice")
    assert isinstance(shown, dict)
    expire = int(datetime.fromisoformat(shown["expires_at"]).timestamp())
    assert clash.headers["subscription-userinfo"] == (
        f"upload=0; download=0; total=5000000000; expire={expire}"
    )
    assert clash.headers["profile-update-interval"] == "12"
    assert page.headers["content-type"].startswith("text/html")
    assert page.body.count("<svg") == len(servers)
    assert "of 5GB" in page.body
    assert outline.status == 200
    assert json.loads(outline.body)["method"] == "chacha20-ietf-poly1305"
    assert not_ss.status == 404


def test_rotation_disabling_and_wrong_tokens(
    vpn: Vpn, servers: list[str], backend: int, tmp_path: Path
) -> None:
    with web_server(vpn) as port:
        url = subscription_of(vpn, "alice", port)
        before = base64.b64decode(fetch(url).body).decode().split("\n")
        old_link = next(link for link in before if link.startswith("vless://"))

        # Rotating a server's keys changes its link (REALITY: the public key): the old one
        # stops working, and the subscription fetched again works.
        vpn.ok("server", "rotate-keys", "reality", "--yes")
        after = base64.b64decode(fetch(url).body).decode().split("\n")
        new_link = next(link for link in after if link.startswith("vless://"))
        assert new_link != old_link
        assert connects(new_link, tmp_path / "new", backend)
        with xray_client(old_link, tmp_path / "old") as socks:
            assert curl_fails(socks, f"http://127.0.0.1:{backend}/")

        # A rotated token: the old URL is gone at once, the new one works.
        vpn.ok("user", "rotate-token", "alice")
        assert fetch(url).status == 404
        url = subscription_of(vpn, "alice", port)
        assert fetch(url).status == 200

        # A disabled user gets their status, never a config.
        vpn.ok("user", "disable", "alice")
        refused = fetch(url)
        assert refused.status == 403
        assert "disabled" in refused.body
        assert "subscription-userinfo" in refused.headers
        page = fetch(url, agent="Mozilla/5.0", accept="text/html")
        assert "Status: disabled" in page.body
        assert "trojan://" not in page.body

        # Wrong tokens get 404 (as a malformed one does), then 429 for that address.
        base = url.rsplit("/", 1)[0]
        # The rotated token above was this address's first failure; the limit is 20 a minute.
        codes = [fetch(f"{base}/{i:043d}").status for i in range(25)]
        assert codes[:19] == [404] * 19
        assert codes[19:] == [429] * 6
        assert fetch(f"{base}/not%20a%20token").status == 429
