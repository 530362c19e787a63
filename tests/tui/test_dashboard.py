"""The dashboard: alerts from real state, and the rate now from how the users' totals grow
between refreshes (what `vpn serve` counts, written here through the accounting storage)."""

from __future__ import annotations

from datetime import timedelta

from textual.widgets import Sparkline

from tests.tui.conftest import NOW, add_users, database, make_app, screen_text, seed, settle
from vpn_manager.models import UserCreate
from vpn_manager.settings import Paths
from vpn_manager.tui.dashboard import DashboardView, alerts


async def test_alerts_name_what_needs_attention(home: Paths) -> None:
    await seed(home)
    app = make_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        text = screen_text(app)
    assert "! server edge is down (wanted running): start it or see its logs" in text
    assert "! user alice used 92% of 25GB" in text
    assert "! user carol expires in 24 h" in text
    assert "user dave" not in text  # 11.55GB of 200GB: fine
    assert "4 in all" in text
    assert "34.65GB, peak hour 2.48GB" in text


def test_no_alerts_for_users_far_from_their_limits() -> None:
    assert alerts([], [], NOW) == []


async def test_the_rate_now_follows_the_counted_traffic(home: Paths) -> None:
    from vpn_manager.storage import accounting, servers
    from vpn_manager.storage import users as user_repo

    await add_users(home, UserCreate(name="alice"))
    db = database(home)
    try:
        async with db.session() as session:
            row = await servers.insert_server(
                session,
                {
                    "name": "edge",
                    "protocol": "socks5",
                    "engine": "sing-box",
                    "runtime": "native",
                    "listen": "127.0.0.1",
                    "port": 1080,
                    "host": "127.0.0.1",
                    "desired": "stopped",
                    "settings": {},
                    "secret": {},
                },
                NOW,
            )
            server_id, alice = row.id, (await user_repo.ids_for(session, ["alice"]))["alice"]
        app = make_app(home)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            view = app.query_one(DashboardView)
            assert "Traffic now: ↑ -  ↓ -" in screen_text(app)
            for step in range(2):
                async with db.session() as session:
                    await accounting.add_usage(
                        session, server_id, {alice: (10**6, 10**7)}, NOW + timedelta(minutes=step)
                    )
                await pilot.pause(0.2)
                view.reload()
                await settle(pilot)
                assert "↑ 0bit" not in screen_text(app)
            assert len(app.query_one("#rates", Sparkline).data or []) == 2
    finally:
        await db.close()
