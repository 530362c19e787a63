"""The REST API of `vpn web` over a real home and database, through FastAPI's test client and the
same Listeners dispatcher `vpn web` runs (so the subscription and API listeners are told apart
as in production): keys and scopes on every route (the route table is walked), the failure
limiter, users changed by the API as the CLI sees them, the audit log, the error shape and
table, the docs served locally. `vpn web` itself, started as a process with its two sockets,
is at the end; with real engines, tests/e2e/test_web_api.py."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from tests.cli_helpers import InProcessCli, isolated_env, vpn_script
from vpn_manager.cli.context import AppContext
from vpn_manager.engines.tls import make_self_signed
from vpn_manager.errors import ConfigError, EngineMissing, InvalidInput, VpnError
from vpn_manager.services.root import Services
from vpn_manager.web.api.access import Api
from vpn_manager.web.api.app import api_app
from vpn_manager.web.api.errors import STATUSES, status_of
from vpn_manager.web.app import Listener, Listeners, subscription_app
from vpn_manager.web.ratelimit import FailureLimiter
from vpn_manager.web.subscriptions import WebConfig, client_address

API = "http://testserver:2097"
SUBS = "http://testserver:2096"
UNKNOWN_KEY = "vpnm_" + "A" * 43


def make_key(name: str, scope: str) -> str:
    """A real API key in the test's home (the key service, as `vpn api-key create` does)."""

    async def create() -> str:
        services = AppContext().services()
        try:
            _, secret = await services.api_keys.create(name, scope, None)
        finally:
            await services.close()
        return secret

    return asyncio.run(create())


def listeners(api_services: list[Services] | None = None, **api_options: Any) -> Listeners:
    """What `vpn web` serves (cli/web.py), over the test's home: subscriptions on :2096, the API
    on :2097 of `testserver` (the test client's host)."""
    opened: list[Services] = api_services if api_services is not None else []
    config = WebConfig()

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        opened.append(AppContext().services())
        try:
            yield
        finally:
            await opened.pop().close()

    async def lookup(token: str) -> Any:
        return await opened[0].subscriptions.find(token)

    async def authenticate(secret: str) -> Any:
        return await opened[0].api_keys.authenticate(secret)

    async def record(actor: str, action: str, target: str, result: str) -> None:
        await opened[0].audit.record(actor, action, target, result)

    options: dict[str, Any] = {
        "services": lambda: opened[0],
        "authenticate": authenticate,
        "record": record,
        "address": lambda request: client_address(request, config),
        "base_url": "http://127.0.0.1:2096",
        **api_options,
    }
    return Listeners(
        [
            Listener("testserver", 2096, subscription_app(lookup, config)),
            Listener("testserver", 2097, api_app(Api(**options))),
        ],
        lifespan,
    )


@pytest.fixture
def keys(vpn: InProcessCli) -> dict[str, str]:
    assert vpn("user", "list").code == 0  # the home and its database exist
    return {"write": make_key("ops", "write"), "read": make_key("grafana", "read")}


@pytest.fixture
def client(vpn: InProcessCli, keys: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(listeners(), base_url=API) as test_client:
        yield test_client


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def is_error(response: Any, status: int) -> str:
    """The error contract: the status, JSON {"error": sentence, "hint": str|null}, nothing else."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "hint"}, body
    assert isinstance(body["error"], str)
    assert body["error"].endswith("."), body
    assert "Traceback" not in response.text
    assert body["hint"] is None or isinstance(body["hint"], str)
    return str(body["error"])


def api_routes(app: Any) -> list[tuple[str, str, str]]:
    """Every (method, path, scope) of /api/v1, from the route table of the API's app; the scope
    is the key check the route declares ("read", "write", or "" for none)."""
    api = next(listener.app for listener in app.listeners if listener.port == 2097)
    found: list[tuple[str, str, str]] = []
    for route in iter_route_contexts(api.routes):  # included routers, flattened
        path = route.path or ""
        original = route.original_route
        if isinstance(original, APIRoute) and path.startswith("/api/v1"):
            checks = {d.call.__name__ for d in original.dependant.dependencies if d.call}
            scope = "write" if "write_key" in checks else "read" if "read_key" in checks else ""
            found.extend((method, path, scope) for method in sorted(route.methods or ()))
    return found


def test_every_route_refuses_no_key_a_bad_key_and_a_read_key_on_changes(
    vpn: InProcessCli, keys: dict[str, str]
) -> None:
    """A route added without a key check fails this: the routes are read from the app."""
    roomy = FailureLimiter(limit=10_000)  # hundreds of refusals from one address, on purpose
    with TestClient(listeners(failures=roomy), base_url=API) as client:
        routes = api_routes(client.app)
        assert len(routes) >= 20
        assert ("POST", "/api/v1/users", "write") in routes
        # credentials are for write keys only, and every change needs one
        assert ("GET", "/api/v1/users/{name}/links", "write") in routes
        assert all(scope == "write" for method, _, scope in routes if method != "GET")
        writes = 0
        for method, template, scope in routes:
            path = template.replace("{name}", "alice")
            body: dict[str, Any] | None = {} if method in ("POST", "PATCH", "PUT") else None
            for headers in ({}, auth(UNKNOWN_KEY), {"X-API-Key": "not-a-key"}):
                refused = client.request(method, path, headers=headers, json=body)
                is_error(refused, 401)
                assert refused.headers["www-authenticate"] == "Bearer"
            if scope == "write":
                sentence = is_error(
                    client.request(method, path, headers=auth(keys["read"]), json=body), 403
                )
                assert "grafana" in sentence
                writes += method != "GET"  # a refused read is not a change: not audited
        assert writes >= 12
        # The refused changes are in the audit log, with the read key's name.
        entries = client.get("/api/v1/audit?limit=1000", headers=auth(keys["read"])).json()
    assert {e["actor"] for e in entries} == {"grafana"}
    assert len(entries) == writes
    assert {e["action"] for e in entries} >= {"user.add", "user.delete", "server.install"}
    assert all("may not make changes" in e["result"] for e in entries)


def test_both_headers_carry_a_key_and_failed_attempts_are_limited(
    client: TestClient, keys: dict[str, str]
) -> None:
    assert client.get("/api/v1/users", headers=auth(keys["read"])).status_code == 200
    assert client.get("/api/v1/users", headers={"X-API-Key": keys["read"]}).status_code == 200
    codes = [client.get("/api/v1/users", headers=auth(UNKNOWN_KEY)).status_code for _ in range(25)]
    assert codes == [401] * 20 + [429] * 5
    limited = client.get("/api/v1/users", headers=auth(keys["write"]))
    assert "Too many failed attempts" in is_error(limited, 429)
    assert 0 < int(limited.headers["retry-after"]) <= 60


def test_users_changed_by_the_api_are_the_clis_users(
    client: TestClient, keys: dict[str, str], vpn: InProcessCli
) -> None:
    write = auth(keys["write"])
    made = client.post(
        "/api/v1/users",
        headers=write,
        json={"name": "alice", "email": "a@example.com", "quota_bytes": 5 * 10**9},
    )
    assert made.status_code == 201, made.text
    assert made.json()["user"]["quota_bytes"] == 5 * 10**9
    assert made.json()["applied"] == []
    listed = vpn("user", "list", "--format", "json").json()
    assert [u["name"] for u in listed] == ["alice"]
    assert listed[0]["email"] == "a@example.com"

    assert vpn("user", "add", "bob").code == 0
    names = [u["name"] for u in client.get("/api/v1/users", headers=write).json()]
    assert names == ["alice", "bob"]
    found = client.get("/api/v1/users?search=a%40example", headers=write).json()
    assert [u["name"] for u in found] == ["alice"]

    changed = client.patch(
        "/api/v1/users/alice", headers=write, json={"note": "team", "reset_period": "monthly"}
    )
    assert changed.status_code == 200, changed.text
    shown = vpn("user", "show", "alice", "--format", "json").json()
    assert (shown["note"], shown["reset_period"]) == ("team", "monthly")

    disabled = client.post("/api/v1/users/alice/disable", headers=write)
    assert disabled.json()["user"]["status"] == "disabled"
    assert vpn("user", "show", "alice", "--format", "json").json()["status"] == "disabled"
    inactive = client.get("/api/v1/users?status=disabled", headers=write).json()
    assert [u["name"] for u in inactive] == ["alice"]
    assert client.post("/api/v1/users/alice/enable", headers=write).json()["user"]["status"] == (
        "active"
    )
    renamed = client.patch("/api/v1/users/bob", headers=write, json={"new_name": "carol"})
    assert renamed.json()["user"]["name"] == "carol"
    assert client.delete("/api/v1/users/carol", headers=write).json()["done"] == "Deleted carol."
    assert [u["name"] for u in vpn("user", "list", "--format", "json").json()] == ["alice"]

    reset = client.post("/api/v1/users/alice/reset-usage", headers=write)
    assert reset.status_code == 200, reset.text
    usage = client.get("/api/v1/users/alice/usage", headers=write).json()
    assert usage["used_bytes"] == 0
    assert usage["quota_bytes"] == 5 * 10**9
    assert usage["hours"] == []


def test_the_api_extends_gives_plans_and_expires_like_the_cli(
    client: TestClient, keys: dict[str, str], vpn: InProcessCli
) -> None:
    write = auth(keys["write"])
    assert vpn("plan", "add", "monthly", "--quota", "50GB", "--days", "30").code == 0
    assert vpn("user", "add", "alice", "--expires", "10d").code == 0
    expiry = datetime.fromisoformat(
        vpn("user", "show", "alice", "-f", "json").json()["expires_at"].replace("Z", "+00:00")
    )
    extended = client.patch("/api/v1/users/alice", headers=write, json={"extend": "2w"})
    assert extended.status_code == 200, extended.text
    user = extended.json()["user"]
    assert user["expires_at"] == (expiry + timedelta(weeks=2)).isoformat().replace("+00:00", "Z")
    planned = client.patch("/api/v1/users/alice", headers=write, json={"plan": "monthly"})
    assert planned.status_code == 200, planned.text
    assert (planned.json()["user"]["plan"], planned.json()["user"]["quota_bytes"]) == (
        "monthly",
        50 * 10**9,
    )
    assert "no plan named 'weekly'" in is_error(
        client.patch("/api/v1/users/alice", headers=write, json={"plan": "weekly"}), 404
    )
    assert "not both" in is_error(
        client.patch(
            "/api/v1/users/alice",
            headers=write,
            json={"extend": "1d", "expires_at": "2090-01-01T00:00:00Z"},
        ),
        422,
    )
    assert "longer than 36500 days" in is_error(
        client.patch("/api/v1/users/alice", headers=write, json={"extend": "99999d"}), 422
    )
    past = {"expires_at": "2020-01-01T00:00:00Z"}
    assert "in the past" in is_error(
        client.patch("/api/v1/users/alice", headers=write, json=past), 400
    )
    forced = client.patch("/api/v1/users/alice?force=true", headers=write, json=past)
    assert forced.json()["user"]["status"] == "expired"
    assert vpn("user", "show", "alice", "-f", "json").json()["status"] == "expired"


def test_tokens_and_links(client: TestClient, keys: dict[str, str], vpn: InProcessCli) -> None:
    write = auth(keys["write"])
    assert client.post("/api/v1/users", headers=write, json={"name": "alice"}).status_code == 201
    is_error(client.get("/api/v1/users/alice/links", headers=auth(keys["read"])), 403)
    links = client.get("/api/v1/users/alice/links", headers=write).json()
    assert links["links"] == []
    assert links["subscription_url"].startswith("http://127.0.0.1:2096/sub/")
    rotated = client.post("/api/v1/users/alice/rotate-token", headers=write).json()
    token = rotated["subscription_token"]
    assert rotated["subscription_url"] == f"http://127.0.0.1:2096/sub/{token}"
    assert token != links["subscription_url"].rsplit("/", 1)[1]
    shown = vpn("user", "show", "alice", "--secrets", "--format", "json").json()
    assert shown["subscription_token"] == token
    # The token works on the subscription listener, and only there.
    page = client.get(f"{SUBS}/sub/{token}", headers={"user-agent": "v2rayNG/1.9"})
    assert page.text == "No configs: alice has no server.\n"  # known, and no server yet
    assert client.get(f"/sub/{token}").status_code == 404
    # Nothing else carries the token: not the user, not the list, not the audit log.
    for path in ("/api/v1/users", "/api/v1/users/alice", "/api/v1/audit"):
        assert token not in client.get(path, headers=write).text
    is_error(client.get("/api/v1/users/nobody/links", headers=write), 404)


def test_errors_are_json_with_the_statuses_of_the_table(
    client: TestClient, keys: dict[str, str]
) -> None:
    write = auth(keys["write"])
    assert client.post("/api/v1/users", headers=write, json={"name": "alice"}).status_code == 201
    assert "already exists" in is_error(
        client.post("/api/v1/users", headers=write, json={"name": "alice"}), 409
    )
    assert "no user named 'nobody'" in is_error(
        client.get("/api/v1/users/nobody", headers=write), 404
    )
    invalid = is_error(client.post("/api/v1/users", headers=write, json={"name": "a b"}), 422)
    assert invalid.startswith("Invalid body.name 'a b': ")
    assert "body.quota_bytes" in is_error(
        client.post("/api/v1/users", headers=write, json={"name": "x", "quota_bytes": -1}), 422
    )
    for field in ("new_name", "reset_period", "extend"):  # the fuzzer found the first two
        assert f"{field} cannot be null" in is_error(
            client.patch("/api/v1/users/alice", headers=write, json={field: None}), 422
        )
    assert "Nothing to change" in is_error(
        client.patch("/api/v1/users/alice", headers=write, json={}), 400
    )
    assert "no server named 'nowhere'" in is_error(
        client.post("/api/v1/users/alice/grant", headers=write, json={"server": "nowhere"}), 404
    )
    refused = is_error(
        client.post(
            "/api/v1/users/alice/grant",
            headers=write,
            json={"server": "edge", "password": "hunter2\x1b[2J"},
        ),
        422,
    )
    assert refused.startswith("Invalid body.password: ")
    assert "hunter2" not in refused  # a password is never echoed (nor written to the audit)
    is_error(client.get("/api/v1/servers/nowhere/status", headers=write), 404)
    is_error(client.get("/api/v1/no/such/path", headers=write), 404)
    is_error(client.get("/nothing"), 404)
    is_error(client.put("/api/v1/users", headers=write), 405)
    is_error(client.post("/api/v1/users", headers=write, content=b"{not json"), 422)
    # The table: the most specific class wins, everything has a status.
    assert status_of(EngineMissing("x")) == 503
    assert status_of(ConfigError("x")) == 500
    assert status_of(InvalidInput("x")) == 400
    assert all(400 <= status <= 599 for status, _ in STATUSES.values())
    assert status_of(VpnError("x")) == 500


def test_the_audit_log_has_every_change_and_its_result(
    client: TestClient, keys: dict[str, str]
) -> None:
    write = auth(keys["write"])
    client.post("/api/v1/users", headers=write, json={"name": "alice"})
    client.post("/api/v1/users", headers=write, json={"name": "alice"})  # taken
    client.post("/api/v1/users", headers=write, json={"name": "a b"})  # invalid
    client.post("/api/v1/users/alice/disable", headers=write)
    client.delete("/api/v1/users/nobody", headers=write)
    client.get("/api/v1/users/alice", headers=write)  # a read: not recorded
    entries = client.get("/api/v1/audit", headers=auth(keys["read"])).json()
    seen = [(e["actor"], e["action"], e["target"], e["result"]) for e in reversed(entries)]
    assert seen[0] == ("ops", "user.add", "alice", "ok")
    assert seen[1][:3] == ("ops", "user.add", "alice")
    assert "already exists" in seen[1][3]
    assert seen[2][:2] == ("ops", "user.add")
    assert seen[2][3].startswith("Invalid body.name")
    assert seen[3] == ("ops", "user.disable", "alice", "ok")
    assert seen[4][:3] == ("ops", "user.delete", "nobody")
    assert "no user named 'nobody'" in seen[4][3]
    assert len(seen) == 5
    only = client.get("/api/v1/audit?actor=nobody", headers=write).json()
    assert only == []
    assert len(client.get("/api/v1/audit?limit=2", headers=write).json()) == 2
    assert is_error(client.get("/api/v1/audit?limit=0", headers=write), 422).startswith(
        "Invalid query.limit"
    )


def test_an_unexpected_failure_is_a_bare_500(vpn: InProcessCli, keys: dict[str, str]) -> None:
    async def broken(_secret: str) -> Any:
        raise RuntimeError("the private detail /etc/secret")

    # (Starlette sends the 500, then raises the error again for the server to log.)
    app = listeners(authenticate=broken)
    with TestClient(app, base_url=API, raise_server_exceptions=False) as test_client:
        response = test_client.get("/api/v1/users", headers=auth(keys["read"]))
    assert response.status_code == 500
    assert response.json() == {"error": "Internal error.", "hint": None}


def test_stats_and_servers(client: TestClient, keys: dict[str, str]) -> None:
    read = auth(keys["read"])
    client.post("/api/v1/users", headers=auth(keys["write"]), json={"name": "alice"})
    stats = client.get("/api/v1/stats?since=2026-01-01T00:00:00Z", headers=read).json()
    assert stats == {"users": {"active": 1}, "servers": 0, "running": 0, "hours": []}
    assert "timezone" in is_error(
        client.get("/api/v1/stats?since=2026-01-01T00:00:00", headers=read), 422
    )
    assert client.get("/api/v1/servers", headers=read).json() == []
    bad = client.post(
        "/api/v1/servers",
        headers=auth(keys["write"]),
        json={"name": "r", "protocol": "vless-reality", "port": 8443},
    )
    assert "vless-reality needs --sni" in is_error(bad, 422)


def test_docs_load_from_this_server_only(client: TestClient) -> None:
    page = client.get("/api/docs")
    assert page.status_code == 200
    assert "http" not in page.text.lower().replace("http-equiv", "")
    assert "<script>" not in page.text  # no inline script: the CSP allows 'self' only
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'none'" in policy
    referenced = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(referenced) == 4
    for url in referenced:
        assert url.startswith("/api/docs/static/")
        assert client.get(url).status_code == 200, url
    start = client.get("/api/docs/static/start.js").text
    assert '"/api/docs/openapi.json"' in start
    schema = client.get("/api/openapi.json").json()
    assert schema["openapi"].startswith("3.1")
    assert "/api/v1/users/{name}/rotate-token" in schema["paths"]
    # What swagger-ui 4 reads: the same document in OpenAPI 3.0.
    older = client.get("/api/docs/openapi.json").json()
    assert older["openapi"] == "3.0.3"
    assert older["paths"].keys() == schema["paths"].keys()
    text = json.dumps(older)
    assert '"type": "null"' not in text
    assert '"const"' not in text
    assert '"nullable": true' in text
    # The subscription listener keeps its own, stricter policy and serves none of this.
    other = client.get(f"{SUBS}/api/docs")
    assert other.status_code == 404
    assert other.text == "Not found.\n"
    assert "script-src" not in other.headers["content-security-policy"]


def test_a_listener_nobody_bound_gets_404(client: TestClient) -> None:
    assert client.get("http://testserver:9999/api/openapi.json").status_code == 404
    app = client.app
    assert isinstance(app, Listeners)
    assert app.app_for(("127.0.0.1", 2097)) is None
    assert app.app_for(None) is None
    api = app.app_for(("testserver", 2097))
    assert api is not None
    wildcard = Listeners([Listener("0.0.0.0", 2097, api), Listener("::", 2096, api)])
    assert wildcard.app_for(("192.0.2.7", 2097)) is api
    assert wildcard.app_for(("::ffff:127.0.0.1", 2096)) is api
    assert wildcard.app_for(("192.0.2.7", 2098)) is None
    named = Listeners([Listener("127.0.0.1", 2097, api), Listener("[::1]", 2097, api)])
    assert named.app_for(("::1", 2097)) is api
    assert named.app_for(("127.0.0.2", 2097)) is None


# --- `vpn web` as a process: two sockets, the API on its own


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def http(url: str, key: str | None = None, data: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read().decode()
        return error.code, json.loads(text) if error.headers.get_content_type().endswith(
            "json"
        ) else text


def start_web(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(vpn_script()), "web", *args],
        env=isolated_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    try:
        _, err = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return err


def test_vpn_web_serves_the_api_on_its_own_socket(
    vpn: InProcessCli, keys: dict[str, str], tmp_path: Path
) -> None:
    sub_port, api_port = free_port(), free_port()
    process = start_web(tmp_path, "--port", str(sub_port), "--api-port", str(api_port))
    try:
        wait_for(api_port, process)
        wait_for(sub_port, process)
        base = f"http://127.0.0.1:{api_port}/api/v1"
        status, made = http(f"{base}/users", keys["write"], {"name": "alice"})
        assert status == 201, made
        assert [u["name"] for u in vpn("user", "list", "--format", "json").json()] == ["alice"]
        assert http(f"{base}/users")[0] == 401
        assert http(f"http://127.0.0.1:{sub_port}/api/v1/users", keys["write"]) == (
            404,
            "Not found.\n",
        )
        status, body = http(f"{base}/users/alice/links", keys["write"])
        assert body["subscription_url"].startswith(f"http://127.0.0.1:{sub_port}/sub/")
    finally:
        err = stop(process)
    assert f"Serving the REST API on http://127.0.0.1:{api_port}/api/v1" in err
    assert "Warning" not in err
    assert "Traceback" not in err


def test_vpn_web_without_the_api_and_with_a_public_one(vpn: InProcessCli, tmp_path: Path) -> None:
    assert vpn("user", "list").code == 0
    sub_port, api_port = free_port(), free_port()
    process = start_web(tmp_path, "--port", str(sub_port), "--api-port", str(api_port), "--no-api")
    try:
        wait_for(sub_port, process)
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", api_port)) != 0
    finally:
        err = stop(process)
    assert "REST API" not in err
    process = start_web(
        tmp_path, "--port", str(sub_port), "--api-port", str(api_port), "--api-listen", "0.0.0.0"
    )
    try:
        wait_for(api_port, process)
    finally:
        err = stop(process)
    assert "reachable from the network" in err
    # The API's port taken: one sentence naming the API's option.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = vpn("web", "--port", str(sub_port), "--api-port", str(port))
    assert refused.code == 3
    assert "the port is taken" in refused.stderr
    assert "--api-port" in refused.stderr


def test_the_docs_document_in_openapi_30() -> None:
    from vpn_manager.web.api.docs import openapi_30

    document = {
        "openapi": "3.1.0",
        "components": {
            "schemas": {
                "A": {
                    "properties": {
                        "email": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                        "user": {"anyOf": [{"$ref": "#/components/schemas/B"}, {"type": "null"}]},
                        "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                        "kind": {"const": "read"},
                        "count": {"type": "integer", "exclusiveMinimum": 0},
                        "note": {"type": "string", "examples": ["hello"]},
                    }
                }
            }
        },
    }
    properties = openapi_30(document)["components"]["schemas"]["A"]["properties"]
    assert properties == {
        "email": {"type": "string", "nullable": True},
        "user": {"allOf": [{"$ref": "#/components/schemas/B"}], "nullable": True},
        "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        "kind": {"enum": ["read"]},
        "count": {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
        "note": {"type": "string", "example": "hello"},
    }
    assert openapi_30(document)["openapi"] == "3.0.3"
    assert document["openapi"] == "3.1.0"  # the original is left as it was


def test_tls_covers_both_listeners(vpn: InProcessCli, tmp_path: Path) -> None:
    import ssl

    assert vpn("user", "list").code == 0
    cert_file, key_file = make_self_signed(tmp_path, "127.0.0.1")
    sub_port, api_port = free_port(), free_port()
    process = start_web(
        tmp_path,
        *("--port", str(sub_port), "--api-port", str(api_port)),
        *("--cert", str(cert_file), "--key", str(key_file)),
    )
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    try:
        wait_for(api_port, process)
        for port, path, status in ((api_port, "/api/v1/users", 401), (sub_port, "/sub/x", 404)):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(
                    f"https://127.0.0.1:{port}{path}", timeout=10, context=unverified
                )
            assert refused.value.code == status
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP: no answer
            urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/v1/users", timeout=10)
    finally:
        err = stop(process)
    assert f"Serving the REST API on https://127.0.0.1:{api_port}/api/v1" in err


def test_the_api_app_is_built_on_its_first_request() -> None:
    from vpn_manager.web.app import OnFirstRequest

    built: list[int] = []

    def build() -> Any:
        built.append(1)
        return subscription_app(lambda _token: asyncio.sleep(0, None), WebConfig())

    app = OnFirstRequest(build)
    assert built == []
    with TestClient(Listeners([Listener("testserver", 80, app)])) as client:
        assert client.get("/sub/x").status_code == 404
        assert client.get("/sub/y").status_code == 404
    assert built == [1]
