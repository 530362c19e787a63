"""What the TUI does that `vpn user grant|revoke|reset-usage` and `vpn server rotate-keys|set` do,
checked in the database through the services: marked users granted and revoked on chosen
servers, usage reset, keys rotated (after a confirmation), server settings changed; and the
keys after a dialog closes, the forms' footers, errors in the TUI's words."""

from __future__ import annotations

from textual.widgets import Input, SelectionList, Static

from tests.tui.conftest import (
    add_users,
    database,
    fixed_clock,
    insert_server,
    make_app,
    open_screen,
    screen_text,
    settle,
    users_in,
)
from vpn_manager.models import UserCreate
from vpn_manager.settings import Paths
from vpn_manager.tui.picker import PickDialog
from vpn_manager.tui.serverform import ServerSettingsForm
from vpn_manager.tui.userform import UserForm
from vpn_manager.tui.widgets import ConfirmDialog, MenuTable

GB = 1000**3


def servers_of(users: dict[str, object]) -> dict[str, list[str]]:
    return {name: sorted(user.servers) for name, user in users.items()}  # type: ignore[attr-defined]


async def link(paths: Paths, user: str, server: str) -> str:
    from vpn_manager.services.servers import ServerService

    db = database(paths)
    try:
        return (await ServerService(db, paths).access(user, server))[0].link
    finally:
        await db.close()


async def test_marked_users_are_granted_and_revoked_on_the_servers_picked(
    two_servers: Paths,
) -> None:
    home = two_servers
    await add_users(
        home, UserCreate(name="alice"), UserCreate(name="bob"), UserCreate(name="carol")
    )
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, "2")
        table = app.query_one("#users-table", MenuTable)
        await pilot.press("space", "space")  # alice, then bob (space moves down)
        await pilot.pause()
        assert [str(table.get_row_at(i)[0]) for i in range(3)] == ["✓", "✓", " "]
        assert "2 marked" in screen_text(app)

        await pilot.press("g")
        await settle(pilot)
        picker = app.screen
        assert isinstance(picker, PickDialog)
        assert "Give alice, bob access to:" in screen_text(app)
        await pilot.press("ctrl+s")  # nothing ticked: a message, nothing done
        await pilot.pause()
        assert app.screen is picker
        assert "Tick one or more" in screen_text(app)
        await pilot.press("space", "down", "space", "ctrl+s")  # s1 and s2
        await settle(pilot)
        assert not isinstance(app.screen, PickDialog)
        assert servers_of(await users_in(home)) == {
            "alice": ["s1", "s2"],
            "bob": ["s1", "s2"],
            "carol": [],
        }
        assert "marked" not in screen_text(app)  # done: the marks are cleared

        # No marks: r acts on the user under the cursor (bob), from the servers they hold.
        table.move_cursor(row=1)
        await pilot.press("r")
        await settle(pilot)
        picker = app.screen
        assert isinstance(picker, PickDialog)
        assert picker.query_one(SelectionList).option_count == 2
        await pilot.press("space", "ctrl+s")  # s1
        await settle(pilot)
    assert servers_of(await users_in(home)) == {
        "alice": ["s1", "s2"],
        "bob": ["s2"],
        "carol": [],
    }


async def test_revoke_offers_only_servers_the_users_hold(two_servers: Paths) -> None:
    home = two_servers
    await add_users(home, UserCreate(name="alice"))
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, "2")
        await pilot.press("r")
        await settle(pilot)
        assert not isinstance(app.screen, PickDialog)
        assert any("alice can use no server" in str(n.message) for n in app._notifications)


async def test_reset_usage_asks_then_starts_a_new_period(home: Paths) -> None:
    from vpn_manager.storage import accounting
    from vpn_manager.storage import users as user_repo

    await add_users(home, UserCreate(name="alice", quota_bytes=GB), UserCreate(name="bob"))
    db = database(home)
    try:
        async with db.session() as session:
            row = await insert_server(session, fixed_clock())
            ids = await user_repo.ids_for(session, ["alice", "bob"])
            moved = {ids["alice"]: (GB // 10, GB), ids["bob"]: (1000, 2000)}
            await accounting.add_usage(session, row.id, moved, fixed_clock())
    finally:
        await db.close()
    assert (await users_in(home))["alice"].period_download_bytes == GB
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, "2")
        await pilot.press("u")  # alice, under the cursor
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")  # declined: nothing changes
        await settle(pilot)
        assert (await users_in(home))["alice"].period_download_bytes == GB
        await pilot.press("u", "y")
        await settle(pilot)
    users = await users_in(home)
    alice = users["alice"]
    assert (alice.period_upload_bytes, alice.period_download_bytes) == (0, 0)
    assert alice.download_bytes == GB  # the lifetime total is kept
    assert users["bob"].period_download_bytes == 2000  # not marked, not under the cursor


async def test_rotate_keys_asks_then_every_link_changes(two_servers: Paths) -> None:
    home = two_servers
    await add_users(home, UserCreate(name="alice"))
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.backend.grant(["alice"], ["s1"])
        before = await link(home, "alice", "s1")
        await open_screen(pilot, "3")
        await pilot.press("k")  # s1, under the cursor
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        assert "Every user's link changes" in screen_text(app)
        await pilot.press("n")
        await settle(pilot)
        assert await link(home, "alice", "s1") == before
        await pilot.press("k", "y")
        await settle(pilot)
        assert any("every user's link changed" in str(n.message) for n in app._notifications)
    after = await link(home, "alice", "s1")
    assert after.startswith("ss://")
    assert after != before


async def test_server_settings_change_only_what_was_changed(two_servers: Paths) -> None:
    from vpn_manager.services.servers import ServerService

    home = two_servers
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, "3")
        await pilot.press("e")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, ServerSettingsForm)
        assert not form.query("#f-sni")  # SNI and dest are vless-reality's
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "Nothing changed." in screen_text(app)
        form.query_one("#f-port", Input).value = "99999"
        await pilot.press("ctrl+s")
        await settle(pilot)
        shown = {m.id: str(m.render()) for m in form.query(".message.shown").results(Static)}
        assert shown == {"m-port": "Input should be less than or equal to 65535."}
        form.query_one("#f-port", Input).value = "18388"
        form.query_one("#f-host", Input).value = "vpn.example.org"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, ServerSettingsForm)
        assert "vpn.example.org:18388" in screen_text(app)
    db = database(home)
    try:
        servers = {s.name: s for s in await ServerService(db, home).all()}
    finally:
        await db.close()
    assert (servers["s1"].port, servers["s1"].host) == (18388, "vpn.example.org")
    assert servers["s2"].host == "127.0.0.1"


async def test_keys_act_on_the_table_after_a_dialog_closes(home: Paths) -> None:
    await add_users(home, UserCreate(name="alice"))
    app = make_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_screen(pilot, "2")
        for opened in (["question_mark"], ["d"], ["f10"], ["e"]):
            await pilot.press(*opened)
            await settle(pilot)
            # Escape closes it; an extra Escape (said twice, to be sure) leaves the table focused.
            await pilot.press("escape", "escape")
            await settle(pilot)
            assert isinstance(app.focused, MenuTable), opened
            await pilot.press("n")
            await pilot.pause()
            assert isinstance(app.screen, UserForm), opened
            await pilot.press("escape")
            await settle(pilot)


async def test_a_form_footer_shows_the_form_keys(home: Paths) -> None:
    app = make_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_screen(pilot, "2")
        await pilot.press("n")
        await settle(pilot)
        footer = screen_text(app).splitlines()[-1]
        assert "Cancel" in footer
        assert "Save" in footer
        assert "Dashboard" not in footer  # the screens' keys are not the form's


async def test_errors_name_the_tui_fields_not_cli_flags(home: Paths) -> None:
    await add_users(home, UserCreate(name="alice"))
    app = make_app(home)
    async with app.run_test(size=(100, 40)) as pilot:
        await open_screen(pilot, "2")
        await pilot.press("enter")
        await settle(pilot)
        # The service's hint says `vpn user grant alice SERVER`; here it says the key.
        text = screen_text(app)
        assert "User 'alice' has no server yet. (Grant one: g (grant) on the Users screen)" in text
        await pilot.press("escape")
        await open_screen(pilot, "3")
        await pilot.press("i")
        await pilot.pause()
        form = app.screen
        form.query_one("#f-name", Input).value = "r1"
        form.query_one("#f-port", Input).value = "8443"
        await pilot.press("ctrl+s")
        await settle(pilot)
        message = str(form.query_one("#m-protocol", Static).render())
        assert message == 'Vless-reality needs "SNI", the TLS name clients present.'
