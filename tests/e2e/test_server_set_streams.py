"""`vpn server set --path` on a running Trojan+WebSocket+TLS server (issue 18): a user whose path
leaked rotates it. After the change a real Xray client run from the link `vpn user link` prints
now gets through, one run from the link it printed before does not, and the decoy front follows:
a probe still gets the local page, the old path is just another path to it (nginx's 404), and
the new one reaches the WebSocket transport. All on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.conftest import Vpn, curl_fails, curl_via, link_of, xray_client
from tests.e2e.net import BACKEND_PAGE, free_port
from tests.e2e.test_xray_decoy import https_get
from vpn_manager.engines.xray.decoy import NOT_FOUND, PAGE

pytestmark = pytest.mark.usefixtures("need_root")


def test_a_new_path_lets_the_new_link_in_and_keeps_the_old_one_out(
    vpn: Vpn, backend: int, tmp_path: Path
) -> None:
    port = free_port()
    vpn.ok(
        "server", "install", "trojan", "--name", "tw", "--port", str(port),
        "--listen", "127.0.0.1", "--host", "127.0.0.1", "--allow-private",
        "--transport", "ws", "--sni", "vpn.test", "--path", "/leaked",
    )  # fmt: skip
    vpn.ok("user", "add", "alice", "--server", "tw")
    old = link_of(vpn, "alice", "tw")
    page = f"http://127.0.0.1:{backend}/"
    with xray_client(old, tmp_path / "before") as socks:
        assert curl_via(socks, page) == BACKEND_PAGE.decode()

    changed = vpn.ok("server", "set", "tw", "--path", "/rotated", "--yes")
    assert "The link to tw changed for 1 user: alice." in changed.stderr
    new = link_of(vpn, "alice", "tw")
    assert parse_qs(urlsplit(new).query)["path"] == ["/rotated"]
    assert new.replace("%2Frotated", "%2Fleaked").replace("/rotated", "/leaked") == old

    with xray_client(new, tmp_path / "new") as socks:
        assert curl_via(socks, page) == BACKEND_PAGE.decode()
        assert curl_via(socks, f"http://127.0.0.1:{backend}/bytes/50000") == "x" * 50_000
    with xray_client(old, tmp_path / "old") as socks:
        assert curl_fails(socks, page)

    # The decoy front routes by the new path: probes get the page, the old path is any path.
    assert https_get(port) == (200, PAGE)
    assert https_get(port, "/leaked") == (404, NOT_FOUND)
    assert https_get(port, "/rotated") == (400, b"Bad Request\n")  # the ws transport's own
    status = vpn.json("server", "status", "tw")
    assert isinstance(status, dict)
    assert status["healthy"], status
