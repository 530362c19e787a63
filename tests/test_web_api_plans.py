"""/api/v1/plans: what `vpn plan …` does, through the same service calls, over a real home and
database (the API's own listener, as in test_web_api.py): made, listed, shown with their
holders, changed, removed (refused with 409 naming the holders unless force=true), every change
in the audit log, and hostile names and numbers refused with one sentence and nothing stored."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.cli_helpers import InProcessCli, database_file, table_rows
from tests.test_web_api import API, auth, is_error, listeners, make_key

Web = tuple[TestClient, dict[str, str], dict[str, str]]


@pytest.fixture
def web(vpn: InProcessCli) -> Iterator[Web]:
    """The API over the test's home, with a write key and a read key."""
    assert vpn("user", "list").code == 0  # the home and its database exist
    write, read = auth(make_key("ops", "write")), auth(make_key("grafana", "read"))
    with TestClient(listeners(), base_url=API) as client:
        yield client, write, read


def plans_stored(vpn: InProcessCli) -> list[tuple[Any, ...]]:
    return table_rows(database_file(vpn.home), "plans")


def test_plans_made_by_the_api_are_the_clis_plans(web: Web, vpn: InProcessCli) -> None:
    client, write, read = web
    made = client.post(
        "/api/v1/plans",
        headers=write,
        json={"name": "monthly", "quota_bytes": 50 * 10**9, "reset_period": "monthly", "days": 30},
    )
    assert made.status_code == 201, made.text
    plan = made.json()
    assert (plan["name"], plan["quota_bytes"], plan["reset_period"], plan["days"]) == (
        "monthly",
        50 * 10**9,
        "monthly",
        30,
    )
    assert (plan["device_limit"], plan["users"]) == (None, 0)
    listed = vpn("plan", "list", "-f", "json").json()
    assert [(p["name"], p["quota_bytes"]) for p in listed] == [("monthly", 50 * 10**9)]

    # The CLI's plan, and users who hold it, as the API shows them (a read key may look).
    assert vpn("plan", "add", "weekly", "--period", "weekly").code == 0
    assert vpn("user", "add", "alice", "bob", "--plan", "monthly").code == 0
    names = [(p["name"], p["users"]) for p in client.get("/api/v1/plans", headers=read).json()]
    assert names == [("monthly", 2), ("weekly", 0)]
    shown = client.get("/api/v1/plans/monthly", headers=read).json()
    assert (shown["users"], shown["holders"]) == (2, ["alice", "bob"])
    assert "no plan named 'daily'" in is_error(client.get("/api/v1/plans/daily", headers=read), 404)

    # Only the fields sent change; null makes the quota unlimited; users keep their limits.
    changed = client.patch(
        "/api/v1/plans/monthly", headers=write, json={"quota_bytes": None, "device_limit": 3}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["quota_bytes"], changed.json()["device_limit"]) == (None, 3)
    assert changed.json()["days"] == 30
    cli_plan = vpn("plan", "show", "monthly", "-f", "json").json()
    assert (cli_plan["quota_bytes"], cli_plan["device_limit"]) == (None, 3)
    alice = vpn("user", "show", "alice", "-f", "json").json()
    assert (alice["quota_bytes"], alice["plan"]) == (50 * 10**9, "monthly")
    assert "Nothing to change" in is_error(
        client.patch("/api/v1/plans/monthly", headers=write, json={}), 400
    )
    assert "reset_period cannot be null" in is_error(
        client.patch("/api/v1/plans/monthly", headers=write, json={"reset_period": None}), 422
    )
    assert "already exists" in is_error(
        client.post("/api/v1/plans", headers=write, json={"name": "weekly"}), 409
    )
    assert "may not make changes" in is_error(
        client.post("/api/v1/plans", headers=read, json={"name": "daily"}), 403
    )


def test_a_plan_users_hold_is_removed_only_with_force(web: Web, vpn: InProcessCli) -> None:
    client, write, _ = web
    assert vpn("plan", "add", "monthly", "--quota", "50GB").code == 0
    assert vpn("plan", "add", "unused").code == 0
    assert vpn("user", "add", "alice", "bob", "--plan", "monthly").code == 0
    before = plans_stored(vpn)

    refused = client.delete("/api/v1/plans/monthly", headers=write)
    assert "held by 2 users: alice, bob" in is_error(refused, 409)
    assert "force=true" in refused.json()["hint"]  # the API's word, not the CLI's --force
    assert plans_stored(vpn) == before

    removed = client.delete("/api/v1/plans/monthly?force=true", headers=write)
    assert removed.status_code == 200, removed.text
    assert removed.json() == {
        "name": "monthly",
        "done": "Removed plan monthly. 2 users kept their limits.",
        "holders": ["alice", "bob"],
    }
    alice = vpn("user", "show", "alice", "-f", "json").json()
    assert (alice["plan"], alice["quota_bytes"]) == (None, 50 * 10**9)
    unused = client.delete("/api/v1/plans/unused", headers=write)
    assert unused.json() == {"name": "unused", "done": "Removed plan unused.", "holders": []}
    assert vpn("plan", "list", "-f", "json").json() == []
    assert "no plan named" in is_error(client.delete("/api/v1/plans/unused", headers=write), 404)

    # Every change is audited, refused or not, with the key's name.
    entries = client.get("/api/v1/audit", headers=write).json()
    seen = [(e["actor"], e["action"], e["target"], e["result"]) for e in reversed(entries)]
    assert seen == [
        ("ops", "plan.remove", "monthly", "Plan 'monthly' is held by 2 users: alice, bob."),
        ("ops", "plan.remove", "monthly", "ok"),
        ("ops", "plan.remove", "unused", "ok"),
        ("ops", "plan.remove", "unused", "There is no plan named 'unused'."),
    ]


def test_plan_changes_are_audited(web: Web) -> None:
    client, write, _ = web
    assert client.post("/api/v1/plans", headers=write, json={"name": "gold"}).status_code == 201
    patched = client.patch("/api/v1/plans/gold", headers=write, json={"days": 7})
    assert patched.status_code == 200, patched.text
    entries = client.get("/api/v1/audit", headers=write).json()
    assert [(e["action"], e["target"], e["result"]) for e in reversed(entries)] == [
        ("plan.add", "gold", "ok"),
        ("plan.update", "gold", "ok"),
    ]


HOSTILE_NAMES = ["..", ".", "a/b", "a\x00b", "bad\x1b[31m", "tab\there", "new\nline", "x" * 10_000]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_plan_names_are_refused(web: Web, vpn: InProcessCli, name: str) -> None:
    client, write, _ = web
    sentence = is_error(client.post("/api/v1/plans", headers=write, json={"name": name}), 422)
    assert "name" in sentence
    assert "\x1b" not in sentence
    assert "\x00" not in sentence
    assert len(sentence) < 400
    assert plans_stored(vpn) == []


@pytest.mark.parametrize(
    "field",
    [
        {"quota_bytes": 10**30},
        {"quota_bytes": -1},
        {"days": 99_999_999},
        {"days": 10**30},
        {"device_limit": 10**30},
        {"reset_period": "hourly"},
        {"reset_period": "99999999d"},
        {"quota_bytes": "lots"},
    ],
)
def test_hostile_plan_numbers_are_refused(
    web: Web, vpn: InProcessCli, field: dict[str, Any]
) -> None:
    client, write, _ = web
    made = client.post("/api/v1/plans", headers=write, json={"name": "p", **field})
    key = next(iter(field))
    assert key in is_error(made, 422)
    assert plans_stored(vpn) == []
    assert vpn("plan", "add", "q", "--quota", "1GB").code == 0
    before = plans_stored(vpn)
    assert key in is_error(client.patch("/api/v1/plans/q", headers=write, json=field), 422)
    assert plans_stored(vpn) == before


# (percent-encoded: an HTTP client resolves a bare "." or ".." before sending)
@pytest.mark.parametrize("path", ["%2E%2E", "%2E", "a%2Fb", "%00", "%1B%5B31m", "x" * 10_000])
def test_hostile_plan_paths_find_nothing(web: Web, vpn: InProcessCli, path: str) -> None:
    client, write, _ = web
    assert vpn("plan", "add", "q").code == 0
    before = plans_stored(vpn)
    for method in ("GET", "PATCH", "DELETE"):
        body = {"days": 3} if method == "PATCH" else None
        answer = client.request(method, f"/api/v1/plans/{path}", headers=write, json=body)
        assert answer.status_code in (404, 405), (method, path, answer.text)
        is_error(answer, answer.status_code)
    assert plans_stored(vpn) == before
