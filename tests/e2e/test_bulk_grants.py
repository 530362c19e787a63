"""Access in bulk on real engines: `vpn user grant NAME... --server S...` is one apply per server
(one reload of a sing-box TUIC server, one live call to a Shadowsocks one, neither restarted),
and every user then connects through every server with a client built from their printed link."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import Vpn, curl_via, install_singbox, singbox_client
from tests.e2e.net import BACKEND_PAGE

USERS = ("alice", "bob", "carol")


def pid(vpn: Vpn, server: str) -> int:
    """The engine's process, as the runtime recorded it (read without a `vpn` run)."""
    return int((vpn.home / "state" / "run" / f"{server}.pid").read_text())


def test_three_users_on_two_servers_is_one_apply_per_server(
    vpn: Vpn, backend: int, tmp_path: Path
) -> None:
    names = [
        install_singbox(vpn, "tuic", "hy").name,
        install_singbox(vpn, "shadowsocks", "ss").name,
    ]
    vpn.ok("user", "add", *USERS)
    before = {name: pid(vpn, name) for name in names}

    granted = vpn.ok("user", "grant", *USERS, "--server", names[0], "--server", names[1])

    applied = [line for line in granted.stderr.splitlines() if line.startswith(("hy:", "ss:"))]
    assert sorted(applied) == [
        "hy: reloaded: open connections were reset.",
        "ss: applied live.",
    ], granted.stderr  # one each, not one per user
    assert {name: pid(vpn, name) for name in names} == before  # reloaded in place, not restarted
    for user in USERS:
        links = vpn.json("user", "link", user)
        assert isinstance(links, list)
        assert sorted(link["server"] for link in links) == sorted(names)
        for found in links:
            server, link = found["server"], found["link"]
            with singbox_client(link, tmp_path / f"{user}-{server}") as socks:
                page = curl_via(socks, f"http://127.0.0.1:{backend}/", attempts_for=5)
                assert page == BACKEND_PAGE.decode(), (user, server)
