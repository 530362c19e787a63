"""Asserted SVG snapshots of the main screens at 80x24 and 160x48, over fixed data (see
conftest.seed) and a fixed clock. Update on purpose with VPN_UPDATE_SNAPSHOTS=1."""

from __future__ import annotations

import pytest
from textual.widgets import Select

from tests.tui.conftest import SIZES, assert_snapshot, make_app, open_screen, settle
from vpn_manager.settings import Paths
from vpn_manager.tui.serverform import InstallForm
from vpn_manager.tui.userform import UserForm

SCREENS = {"dashboard": "1", "users": "2", "servers": "3", "logs": "4", "settings": "5"}
LOG_LINES = [
    "+0000 2026-11-20 11:58:00 INFO sing-box started (1.2s)",
    "+0000 2026-11-20 11:59:10 WARN inbound/shadowsocks[in]: handshake timed out",
    "+0000 2026-11-20 11:59:42 ERROR inbound/shadowsocks[in]: bad key from 192.0.2.7",
]


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("screen", list(SCREENS))
async def test_screen(seeded_home: Paths, screen: str, size: str) -> None:
    snap_home = seeded_home
    snap_home.logs_dir.mkdir(parents=True, exist_ok=True)
    (snap_home.logs_dir / "edge.log").write_text("".join(line + "\n" for line in LOG_LINES))
    app = make_app(snap_home)
    async with app.run_test(size=SIZES[size]) as pilot:
        await settle(pilot)
        await open_screen(pilot, SCREENS[screen])
        await assert_snapshot(pilot, f"{screen}-{size}", snap_home)


@pytest.mark.parametrize("size", list(SIZES))
async def test_user_form_with_messages(snap_home: Paths, size: str) -> None:
    app = make_app(snap_home)
    async with app.run_test(size=SIZES[size]) as pilot:
        await open_screen(pilot, "2")
        await pilot.press("n")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, UserForm)
        await pilot.press(*"x y", "tab", *"nope", "enter")
        await settle(pilot)
        await assert_snapshot(pilot, f"user-form-{size}", snap_home)


async def test_light_theme(seeded_home: Paths) -> None:
    app = make_app(seeded_home)
    async with app.run_test(size=SIZES["small"]) as pilot:
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        await assert_snapshot(pilot, "dashboard-light-small", seeded_home)


async def test_help(snap_home: Paths) -> None:
    app = make_app(snap_home)
    async with app.run_test(size=SIZES["large"]) as pilot:
        await settle(pilot)
        # Over the Settings screen: the dashboard's rate line changes at its second refresh
        # (2 s), which a loaded machine reached before the snapshot.
        await open_screen(pilot, "5")
        await pilot.press("question_mark")
        await settle(pilot)
        await assert_snapshot(pilot, "help-large", snap_home)


async def test_install_form_trojan_over_websocket(snap_home: Paths) -> None:
    """The install form with Trojan over WebSocket chosen: Transport, Security and the rows
    ws needs (Path, Host header), and Decoy (TLS); REALITY's Dest and the cipher are not
    offered."""
    app = make_app(snap_home)
    async with app.run_test(size=SIZES["large"]) as pilot:
        await open_screen(pilot, "3")
        await pilot.press("i")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, InstallForm)
        form.query_one("#f-protocol", Select).value = "trojan"
        await pilot.pause()
        form.query_one("#f-transport", Select).value = "ws"
        await settle(pilot)
        await assert_snapshot(pilot, "install-form-trojan-ws-large", snap_home)
