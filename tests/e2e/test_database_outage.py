"""The service against a PostgreSQL database that goes away: a real server stopped and started
again (`pg_ctl stop -m fast`), and one that turns read-only, while real traffic goes through a
real sing-box server (a mixed proxy: Trojan servers are Xray's now), whose closed connections
only the service's follower sees."""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import PostgresCluster, create_postgres_database
from tests.e2e.conftest import Vpn, install_singbox, link_of, singbox_client
from tests.e2e.net import free_port
from tests.e2e.test_accounting import downloaded, fetch_closed, rounds_seen, serve_in_background

pytestmark = pytest.mark.postgres

DOWN = "\nvpn_database_up 0\n"
UP = "\nvpn_database_up 1\n"


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            text: str = page.read().decode()
            return text
    except OSError as exc:
        return f"scrape failed: {exc}"


def wait_for(check: Callable[[], bool], within: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {within} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.25)


def home_on(url: str, vpn: Vpn) -> Vpn:
    """The test's home (the `vpn` fixture, which ends its engines afterwards) on `url`."""
    vpn.env["VPN_DATABASE__URL"] = url
    return vpn


def stopped(service: subprocess.Popen[bytes]) -> None:
    service.terminate()
    assert service.wait(15) == 0


def test_the_service_rides_out_a_database_outage(
    own_postgres: PostgresCluster, vpn: Vpn, backend: int, tmp_path: Path
) -> None:
    """Down when the service starts, then stopped for 12 s while 300 short connections go
    through: the service keeps running, its metrics say the database is down, its log says so
    once (not every round), and every byte is counted once the database is back."""
    home_on(asyncio.run(create_postgres_database(own_postgres.url("postgres"))), vpn)
    install_singbox(vpn, "mixed", "tj")  # sing-box, on TCP
    vpn.ok("user", "add", "alice", "--server", "tj")
    log = tmp_path / "serve.log"
    metrics = free_port()
    own_postgres.halt()
    service = serve_in_background(vpn, log, metrics, interval=1)
    try:
        wait_for(lambda: DOWN in scrape(metrics), 15, "no vpn_database_up 0", log)
        time.sleep(3)
        assert service.poll() is None, log.read_text()
        own_postgres.resume()
        wait_for(lambda: UP in scrape(metrics), 40, "the service never found it back", log)
        with singbox_client(link_of(vpn, "alice", "tj"), tmp_path / "alice") as socks:
            rounds_seen(metrics, "tj", 2)  # the service follows the server from then on
            before = downloaded(vpn, "alice")
            own_postgres.halt()
            outage = time.monotonic()
            # More closed connections than sing-box's own list keeps: only the follower has them.
            moved = sum(fetch_closed(socks, backend, 1000) for _ in range(300))
            wait_for(lambda: DOWN in scrape(metrics), 15, "no vpn_database_up 0", log)
            time.sleep(max(0.0, 12 - (time.monotonic() - outage)))
            assert service.poll() is None, log.read_text()
            page = scrape(metrics)
            assert 'vpn_server_up{server="tj"} 1' in page  # the servers last seen, still shown
            own_postgres.resume()
            wait_for(lambda: UP in scrape(metrics), 45, "the service never found it back", log)
            wait_for(
                lambda: downloaded(vpn, "alice") - before >= moved, 15, "bytes not counted", log
            )
        counted = downloaded(vpn, "alice") - before
        assert moved <= counted <= moved + 1000, (moved, counted)
    finally:
        stopped(service)
    text = log.read_text()
    assert "Traceback" not in text
    # One line when it goes, one when it is back: twice, however many rounds it was down.
    assert text.count("The service keeps running") == 2, text
    assert text.count("the database is back after") == 2, text
    assert text.count(" ERROR ") <= 6, text


def test_followed_traffic_the_database_refused_is_counted_later(
    postgres_url: str, vpn: Vpn, backend: int, tmp_path: Path
) -> None:
    """The database reads but refuses writes (read-only) while 300 short connections go
    through: what the follower handed over could not be saved, and is kept (spooled) until a
    round can save it."""
    url = asyncio.run(create_postgres_database(postgres_url))
    home_on(url, vpn)
    install_singbox(vpn, "mixed", "tj")  # sing-box, on TCP
    vpn.ok("user", "add", "alice", "--server", "tj")
    log = tmp_path / "serve.log"
    metrics = free_port()
    service = serve_in_background(vpn, log, metrics, interval=1)
    try:
        wait_for(lambda: UP in scrape(metrics), 20, "no vpn_database_up 1", log)
        with singbox_client(link_of(vpn, "alice", "tj"), tmp_path / "alice") as socks:
            rounds_seen(metrics, "tj", 2)  # the service follows the server from then on
            before = downloaded(vpn, "alice")
            asyncio.run(read_only(postgres_url, url, True))
            moved = sum(fetch_closed(socks, backend, 1000) for _ in range(300))
            wait_for(lambda: DOWN in scrape(metrics), 15, "no vpn_database_up 0", log)
            time.sleep(3)  # a few rounds that take what the follower saw and cannot save it
            assert downloaded(vpn, "alice") == before
            asyncio.run(read_only(postgres_url, url, False))
            wait_for(lambda: UP in scrape(metrics), 45, "the service never found it back", log)
            wait_for(
                lambda: downloaded(vpn, "alice") - before >= moved, 15, "bytes not counted", log
            )
        counted = downloaded(vpn, "alice") - before
        assert moved <= counted <= moved + 1000, (moved, counted)
    finally:
        stopped(service)


async def read_only(server_url: str, url: str, on: bool) -> None:
    """Make the database at `url` refuse writes (or take them again), for new sessions and,
    by ending them, for the ones open now."""
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(server_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(
            f'ALTER DATABASE "{name}" SET default_transaction_read_only = {"on" if on else "off"}'
        )
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await conn.close()
