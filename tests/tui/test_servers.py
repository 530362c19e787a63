"""The Servers screen with a real sing-box engine on loopback: the install form (checked by the
same model as `vpn server install`, run in a worker), the row menu's start/stop, restart, stats
and logs, remove with confirmation, and a user's link and QR code from that server."""

from __future__ import annotations

import socket

from textual.widgets import Input, Log, Select, Static

from tests.tui.conftest import (
    choose,
    database,
    free_port,
    insert_server,
    make_app,
    open_screen,
    screen_text,
    settle,
)
from vpn_manager.models import UserCreate
from vpn_manager.settings import Paths
from vpn_manager.tui.app import VpnApp
from vpn_manager.tui.logs import LogsView
from vpn_manager.tui.serverform import InstallForm
from vpn_manager.tui.servers import NO_LOG_LINES, ServerDetail
from vpn_manager.tui.userdetail import UserDetail
from vpn_manager.tui.widgets import ConfirmDialog, ContextMenu, ErrorDialog, MenuTable


async def server_state(paths: Paths) -> dict[str, bool]:
    """Server name → running, as `vpn server list` sees it."""
    from vpn_manager.services.servers import ServerService

    db = database(paths)
    try:
        return {s.name: s.running for s in await ServerService(db, paths).all()}
    finally:
        await db.close()


async def install(app: VpnApp, pilot: object, name: str, port: str) -> InstallForm:
    from textual.pilot import Pilot

    assert isinstance(pilot, Pilot)
    await open_screen(pilot, "3")
    await pilot.press("i")
    await pilot.pause()
    form = app.screen
    assert isinstance(form, InstallForm)
    form.query_one("#f-protocol", Select).value = "shadowsocks"
    form.query_one("#f-name", Input).value = name
    form.query_one("#f-port", Input).value = port
    form.query_one("#f-listen", Input).value = "127.0.0.1"
    form.query_one("#f-host", Input).value = "127.0.0.1"
    await pilot.press("ctrl+s")
    await settle(pilot)
    return form


async def test_bad_install_input_shows_messages_and_installs_nothing(home: Paths) -> None:
    app = make_app(home)
    async with app.run_test(size=(100, 40)) as pilot:
        form = await install(app, pilot, "no good", "99999")
        assert app.screen is form
        shown = {m.id: str(m.render()) for m in form.query(".message.shown").results(Static)}
        assert shown == {
            "m-name": "Use 1 to 64 letters, digits, '-', '_' or '.'.",
            "m-port": "Input should be less than or equal to 65535.",
        }
        form.query_one("#f-name", Input).value = "ss1"
        form.query_one("#f-port", Input).value = "8388"
        form.query_one("#f-protocol", Select).value = "vless-reality"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await settle(pilot)
        shown = {m.id: str(m.render()) for m in form.query(".message.shown").results(Static)}
        assert shown == {
            "m-protocol": 'Vless-reality needs "SNI", the TLS name clients present.'
        }  # the field, not --sni
    assert await server_state(home) == {}


async def test_install_run_and_remove_a_real_server(stopped_after: Paths) -> None:  # noqa: PLR0915
    home = stopped_after
    port = free_port()
    app = make_app(home)
    async with app.run_test(size=(120, 45)) as pilot:
        await install(app, pilot, "ss1", str(port))
        assert not isinstance(app.screen, (InstallForm, ErrorDialog)), screen_text(app)
        assert await server_state(home) == {"ss1": True}
        assert f"127.0.0.1:{port}" in screen_text(app)

        # A user with access to it: the detail screen shows the ss:// link and its QR code.
        await app.backend.users.add([UserCreate(name="alice")], servers=["ss1"])
        await open_screen(pilot, "2")
        await pilot.press("f10")
        await pilot.pause()
        await choose(pilot, "QR code")
        assert isinstance(app.screen, UserDetail)
        text = screen_text(app)
        assert "ss1 (shadowsocks)" in text
        assert "ss://" in text
        assert "█" in text  # the QR code's half blocks
        await pilot.press("escape")
        await open_screen(pilot, "3")

        # F10 → Stop stops the engine.
        await pilot.press("f10")
        await pilot.pause()
        menu = app.screen
        assert isinstance(menu, ContextMenu)
        assert [i.label for i in menu.items] == [
            "Stop",
            "Restart",
            "Logs",
            "Stats",
            "Settings",
            "Rotate keys",
            "Remove",
        ]
        await choose(pilot, "Stop")
        assert await server_state(home) == {"ss1": False}
        assert "stopped" in screen_text(app)

        # Right-click → Start starts it again; Stats shows status, usage and logs.
        await pilot.click("#servers-table", offset=(3, 1), button=3)
        await pilot.pause()
        await choose(pilot, "Start")
        assert await server_state(home) == {"ss1": True}
        await pilot.click("#servers-table", offset=(3, 1), button=3)
        await pilot.pause()
        await choose(pilot, "Stats")
        assert isinstance(app.screen, ServerDetail)
        text = screen_text(app)
        assert "running     yes, pid" in text
        assert "alice" in text
        shown = app.screen.query_one(Log).lines
        assert shown == (app.backend.servers.logs("ss1", 200) or [NO_LOG_LINES])
        await pilot.press("escape")
        await pilot.pause()

        # Logs: the Logs screen with this server's log.
        await pilot.press("f10")
        await pilot.pause()
        await choose(pilot, "Logs")
        assert app.query_one("#tabs").active == "logs"  # type: ignore[attr-defined]
        assert app.query_one(LogsView).source() == "ss1"

        # Remove asks first, then removes the server and stops its engine.
        await open_screen(pilot, "3")
        await pilot.press("delete")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await settle(pilot)
        assert "No servers yet" in screen_text(app)
    assert await server_state(home) == {}


async def test_a_failed_install_is_a_dialog_not_a_crash(stopped_after: Paths) -> None:
    home = stopped_after
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        app = make_app(home)
        async with app.run_test(size=(100, 40)) as pilot:
            form = await install(app, pilot, "ss1", str(taken.getsockname()[1]))
            assert isinstance(app.screen, ErrorDialog)
            assert "is taken by another program" in screen_text(app)
            assert 'Pick another "Port"' in screen_text(app)  # the form's field, not --port
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen_stack[-1] is form  # the form stays for another try
    finally:
        taken.close()
    assert await server_state(home) == {}


async def test_after_an_install_the_cursor_is_on_the_new_server(
    two_servers: Paths, stopped_after: Paths
) -> None:
    app = make_app(two_servers)
    async with app.run_test(size=(120, 40)) as pilot:
        await install(app, pilot, "s15", str(free_port()))
        assert not isinstance(app.screen, (InstallForm, ErrorDialog)), screen_text(app)
        table = app.query_one("#servers-table", MenuTable)
        assert table.row_count == 3
        assert table.selected_key() == "s15"
        assert isinstance(app.focused, MenuTable)


async def test_the_sni_column_shows_a_tls_servers_certificate_name(home: Paths) -> None:
    """SNI/METHOD reads REALITY's target or, for Trojan and the other TLS protocols, the name
    of their certificate (it was empty for them), as `vpn server list` does."""
    from datetime import UTC, datetime

    db = database(home)
    try:
        async with db.session() as session:
            await insert_server(
                session,
                datetime.now(UTC),
                name="tj",
                protocol="trojan",
                port=free_port(),
                settings={"tls": {"server_name": "vpn.example.org"}},
            )
    finally:
        await db.close()
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, "3")
        text = screen_text(app)
    assert "vpn.example.org" in text, text
