"""Database URLs as people write them for libpq (`?sslmode=…`, `?options=-c …`): accepted and
carried to the driver, or refused in one sentence (exit 6) when malformed or unknown; and what a
user sees when the server refuses TLS or is shutting down. Against the tests' real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest

from tests.cli_helpers import Cli, InProcessCli, error_line, names_in
from tests.conftest import PostgresCluster, create_postgres_database

SECRET = "secretpw"


def plain(url: str) -> str:
    """The URL as a user types it (postgresql://), without SQLAlchemy's driver name."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


# -- refused before anything connects: exit 6, one sentence, the password never shown -------
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (
            f"postgresql://u:{SECRET}@127.0.0.1:54x2/vpn",
            "the port '54x2' is not a number from 1 to 65535",
        ),
        (
            f"postgresql://u:{SECRET}@127.0.0.1:99999/vpn",
            "the port '99999' is not a number from 1 to 65535",
        ),
        (
            f"postgresql://u:{SECRET}@127.0.0.1/vpn?sslmod=require",
            "it has the parameter 'sslmod', which is not one vpn-manager knows (it takes "
            "application_name, connect_timeout, dbname, gsslib, host, krbsrvname, options, "
            "passfile, password, port, ssl_max_protocol_version, ssl_min_protocol_version, "
            "sslcert, sslcrl, sslkey, sslmode, sslpassword, sslrootcert, target_session_attrs, "
            "user)",
        ),
        (
            f"postgresql://u:{SECRET}@127.0.0.1/vpn?sslmode=always",
            "sslmode 'always' is not one of disable, allow, prefer, require, verify-ca, "
            "verify-full",
        ),
        (
            f"postgresql://u:{SECRET}@127.0.0.1/vpn?connect_timeout=soon",
            "connect_timeout 'soon' is not a number of seconds",
        ),
        (
            f"postgresql://u:{SECRET}@127.0.0.1/vpn?sslmode",
            "its query 'sslmode' is not name=value pairs joined by '&'",
        ),
    ],
)
def test_malformed_or_unknown_url_is_exit_6(vpn: InProcessCli, url: str, reason: str) -> None:
    for args in (["user", "list"], ["user", "add", "alice"]):
        result = vpn(*args, env={"VPN_DATABASE__URL": url})
        assert error_line(result, 6) == (
            "Invalid setting database.url from the environment variable VPN_DATABASE__URL: "
            f"{reason}."
        )
        assert SECRET not in result.output


def test_sslpassword_is_masked(vpn: InProcessCli) -> None:
    url = f"postgresql://u@db.example/vpn?sslmode=verify-full&sslpassword={SECRET}"
    shown = vpn("config", "show", "-f", "json", env={"VPN_DATABASE__URL": url})
    assert shown.json()["database"]["url"] == (
        "postgresql+asyncpg://u@db.example/vpn?sslmode=verify-full&sslpassword=***"
    )


# -- accepted and in effect, on the real server ---------------------------------------------
@pytest.fixture
async def pg_url(postgres_url: str) -> str:
    """A new, empty database on the session's server, as a user would type its URL."""
    return plain(await create_postgres_database(postgres_url))


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
def test_sslmode_that_allows_plain_connections_works(
    vpn: InProcessCli, pg_url: str, mode: str
) -> None:
    env = {"VPN_DATABASE__URL": f"{pg_url}?sslmode={mode}&application_name=vpn&connect_timeout=5"}
    assert vpn("user", "add", "alice", env=env).code == 0
    assert names_in(vpn("user", "list", "-f", "json", env=env)) == ["alice"]


@pytest.mark.postgres
def test_sslmode_require_on_a_server_without_tls_is_one_sentence(
    vpn: InProcessCli, pg_url: str
) -> None:
    result = vpn("user", "list", env={"VPN_DATABASE__URL": f"{pg_url}?sslmode=require"})
    message = error_line(result, 7)
    assert message.startswith("Cannot use the database postgresql+asyncpg://"), message
    assert message.endswith(": the server does not offer TLS, which sslmode=require requires.")
    assert "sslmode=prefer" in result.stderr
    # verify-full wants a root certificate to check the server's against, as libpq does: by
    # default ~/.postgresql/root.crt, or the sslrootcert given.
    result = vpn("user", "list", env={"VPN_DATABASE__URL": f"{pg_url}?sslmode=verify-full"})
    assert "root certificate file" in error_line(result, 7)
    ca = vpn.tmp_path / "our-ca.crt"
    url = f"{pg_url}?sslmode=verify-ca&sslrootcert={ca}"
    assert error_line(vpn("user", "list", env={"VPN_DATABASE__URL": url}), 7).endswith(
        f": the sslrootcert file {ca} does not exist."
    )


@pytest.mark.postgres
def test_options_search_path_takes_effect(vpn: InProcessCli, pg_url: str) -> None:
    async def query(sql: str) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(pg_url)
        try:
            rows: list[asyncpg.Record] = await conn.fetch(sql)
            return rows
        finally:
            await conn.close()

    asyncio.run(query("CREATE SCHEMA vpnapp"))
    url = f"{pg_url}?options={quote('-c search_path=vpnapp')}"
    assert vpn("user", "add", "alice", env={"VPN_DATABASE__URL": url}).code == 0
    tables = asyncio.run(
        query("SELECT table_schema FROM information_schema.tables WHERE table_name = 'users'")
    )
    assert [row["table_schema"] for row in tables] == ["vpnapp"]
    assert [row["name"] for row in asyncio.run(query("SELECT name FROM vpnapp.users"))] == ["alice"]


# -- a server that is shutting down ---------------------------------------------------------
@pytest.mark.postgres
async def test_a_server_shutting_down_gets_a_hint(
    tmp_path: Path, own_postgres: PostgresCluster
) -> None:
    cli = Cli(tmp_path)
    url = plain(own_postgres.url("postgres"))
    env = {"VPN_DATABASE__URL": url}
    assert cli("user", "add", "alice", env=env).code == 0
    # A smart shutdown waits for the open session to end and refuses new ones meanwhile.
    held = await asyncpg.connect(url)
    try:
        own_postgres.halt("smart", wait=False)
        deadline = time.monotonic() + 20
        while True:
            result = cli("user", "list", env=env)
            if result.code != 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        message = error_line(result, 7)
        assert "shutting down" in message, message
        hint = result.stderr.splitlines()[1]
        assert hint == (
            "hint: The database server is shutting down or restarting: "
            "run the command again once it is back."
        ), hint
    finally:
        await held.close()
        # The smart shutdown ends once the held session has: wait for it, so that the fixture
        # does not race the server's own exit.
        pid_file = own_postgres.data / "postmaster.pid"
        deadline = time.monotonic() + 30
        while pid_file.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
