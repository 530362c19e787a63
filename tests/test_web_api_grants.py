"""POST /api/v1/grants and /api/v1/revokes: access in bulk through the same service call as
`vpn user grant|revoke NAME... --server S...` (all or nothing, one apply per server), audited.
The servers are real sing-box Shadowsocks servers, stopped after their install so that a change
is saved for their next start (the CLI tests apply to running engines)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.cli_helpers import InProcessCli
from tests.test_cli_input import install_ss, ok
from tests.test_web_api import API, auth, is_error, listeners, make_key


@pytest.fixture
def web(vpn: InProcessCli) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """Users alice, bob, carol (disabled); stopped servers s1 and s2; the API with a write key."""
    for name in ("s1", "s2"):
        install_ss(vpn, name)
        ok(vpn("server", "stop", name))
    ok(vpn("user", "add", "alice", "bob"))
    ok(vpn("user", "add", "carol", "--disabled"))
    write = auth(make_key("ops", "write"))
    with TestClient(listeners(), base_url=API) as client:
        yield client, write


def held(vpn: InProcessCli) -> dict[str, list[str]]:
    return {u["name"]: u["servers"] for u in vpn("--format", "json", "user", "list").json()}


def test_bulk_grant_and_revoke(web: tuple[TestClient, dict[str, str]], vpn: InProcessCli) -> None:
    client, write = web
    body = {"users": ["alice", "bob"], "servers": ["s1", "s2"]}
    granted = client.post("/api/v1/grants", headers=write, json=body)
    assert granted.status_code == 200, granted.text
    assert granted.json() == {
        "pairs": [
            {"name": name, "server": server, "changed": True}
            for server in ("s1", "s2")
            for name in ("alice", "bob")
        ],
        "applied": [  # one apply per server
            f"{server}: not running; the change takes effect when it starts."
            for server in ("s1", "s2")
        ],
    }
    assert held(vpn) == {"alice": ["s1", "s2"], "bob": ["s1", "s2"], "carol": []}

    # Every active user: alice and bob had access already, carol is disabled.
    again = client.post(
        "/api/v1/grants",
        headers=write,
        json={"all_users": True, "status": "active", "servers": ["s1"]},
    )
    assert again.json()["pairs"] == [
        {"name": "alice", "server": "s1", "changed": False},
        {"name": "bob", "server": "s1", "changed": False},
    ]
    revoked = client.post(
        "/api/v1/revokes", headers=write, json={"users": ["alice", "carol"], "servers": ["s2"]}
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["pairs"] == [
        {"name": "alice", "server": "s2", "changed": True},
        {"name": "carol", "server": "s2", "changed": False},
    ]
    assert held(vpn) == {"alice": ["s1"], "bob": ["s1", "s2"], "carol": []}

    entries = client.get("/api/v1/audit", headers=write).json()
    seen = [(e["action"], e["target"], e["result"]) for e in reversed(entries)]
    assert seen[-3:] == [
        ("users.grant", "alice, bob on s1, s2", "ok"),
        ("users.grant", "every user (active) on s1", "ok"),
        ("users.revoke", "alice, carol on s2", "ok"),
    ]


def test_refused_bulk_changes_change_nothing(
    web: tuple[TestClient, dict[str, str]], vpn: InProcessCli
) -> None:
    client, write = web
    before = held(vpn)
    for path, body, status, message in [
        ("grants", {"users": ["alice"], "servers": ["s1", "nowhere"]}, 404, "no server named"),
        ("grants", {"users": ["alice", "nobody"], "servers": ["s1"]}, 404, "no user named"),
        ("grants", {"users": ["alice", "alice"], "servers": ["s1"]}, 400, "more than once"),
        ("grants", {"servers": ["s1"]}, 422, "give either users or all_users"),
        ("grants", {"users": ["a"], "all_users": True, "servers": ["s1"]}, 422, "either"),
        ("grants", {"users": ["alice"], "servers": []}, 422, "servers"),
        ("grants", {"users": ["alice", "bob"], "servers": ["s1"], "password": "x"}, 400, "one"),
        ("grants", {"all_users": True, "status": "expired", "servers": ["s1"]}, 400, "no one"),
        ("revokes", {"users": ["alice", "bob"], "servers": ["s1"]}, 404, "None of these"),
    ]:
        answer = client.post(f"/api/v1/{path}", headers=write, json=body)
        assert message in is_error(answer, status), body
    assert held(vpn) == before
