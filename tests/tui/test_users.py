"""The Users screen: the form creates and edits users in the database (checked through the
service), bad input shows its message and creates nothing, and the row menu (F10 or right-click)
disables, enables and deletes for real."""

from __future__ import annotations

from textual.widgets import Input, OptionList, Static

from tests.tui.conftest import (
    add_users,
    choose,
    database,
    fixed_clock,
    insert_server,
    make_app,
    open_screen,
    screen_text,
    settle,
    users_in,
)
from vpn_manager.models import UserCreate, UserStatus
from vpn_manager.settings import Paths
from vpn_manager.tui.userdetail import UserDetail
from vpn_manager.tui.userform import UserForm
from vpn_manager.tui.users import ROW_LIMIT
from vpn_manager.tui.widgets import ConfirmDialog, ContextMenu, MenuTable

GB = 1000**3


async def test_the_form_creates_a_user(home: Paths) -> None:
    app = make_app(home)
    async with app.run_test(size=(100, 40)) as pilot:
        await open_screen(pilot, "2")
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, UserForm)
        await pilot.press(*"alice", "tab", *"a@b.io")  # typed; the rest filled in
        form = app.screen
        form.query_one("#f-quota", Input).value = "50GB"
        form.query_one("#f-reset", Input).value = "monthly"
        form.query_one("#f-expires", Input).value = "2027-01-31"
        await pilot.press("enter")
        await settle(pilot)
        assert not isinstance(app.screen, UserForm)
        assert "a@b.io" in screen_text(app)
    alice = (await users_in(home))["alice"]
    assert (alice.email, alice.quota_bytes, alice.reset_period) == (
        "a@b.io",
        50 * GB,
        "monthly",
    )
    assert alice.expires_at is not None
    assert alice.expires_at.isoformat() == "2027-02-01T00:00:00+00:00"  # through 31 January


async def test_bad_input_shows_the_messages_and_creates_nothing(home: Paths) -> None:
    app = make_app(home)
    async with app.run_test(size=(100, 40)) as pilot:
        await open_screen(pilot, "2")
        await pilot.press("n")
        await pilot.pause()
        await pilot.press(*"bad name", "tab", *"x@", "tab", "tab", *"50 parsecs", "enter")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, UserForm)
        messages = {m.id: str(m.render()) for m in form.query(".message.shown").results(Static)}
        assert messages == {
            "m-name": "Use 1 to 64 letters, digits, '-', '_' or '.'.",
            "m-email": "Not an e-mail address.",
            "m-quota": "'50 parsecs' is not a data size. Write it like 50GB, 500MiB or 1.5TB.",
        }
        # Fixing the fields clears their messages.
        form.query_one("#f-name", Input).value = "bob"
        form.query_one("#f-email", Input).value = ""
        form.query_one("#f-quota", Input).value = "1GB"
        form.query_one("#f-servers", Input).value = "nowhere"
        await pilot.press("ctrl+s")
        await settle(pilot)
        # An unknown server: the service refuses, the form stays open, nothing is created.
        assert isinstance(app.screen, UserForm)
        assert not list(form.query(".message.shown"))
        assert any("nowhere" in str(n.message) for n in app._notifications)
    assert await users_in(home) == {}


async def test_a_taken_name_is_refused_and_nothing_changes(home: Paths) -> None:
    await add_users(home, UserCreate(name="alice"))
    app = make_app(home)
    async with app.run_test(size=(100, 40)) as pilot:
        await open_screen(pilot, "2")
        await pilot.press("n")
        await pilot.pause()
        await pilot.press(*"alice", "enter")
        await settle(pilot)
        assert isinstance(app.screen, UserForm)
        assert any("alice" in str(n.message) for n in app._notifications)
    assert list(await users_in(home)) == ["alice"]


async def test_the_form_edits_only_what_changed(home: Paths) -> None:
    await add_users(home, UserCreate(name="alice", note="phone", quota_bytes=10 * GB))
    app = make_app(home)
    async with app.run_test(size=(100, 40)) as pilot:
        await open_screen(pilot, "2")
        await pilot.press("e")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, UserForm)
        assert form.query_one("#f-quota", Input).value == "10GB"
        form.query_one("#f-quota", Input).value = "20GB"
        form.query_one("#f-name", Input).value = "alice2"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, UserForm)
    users = await users_in(home)
    assert list(users) == ["alice2"]
    assert (users["alice2"].quota_bytes, users["alice2"].note) == (20 * GB, "phone")


async def test_f10_opens_the_menu_and_disable_disables(home: Paths) -> None:
    await add_users(home, UserCreate(name="alice"), UserCreate(name="bob"))
    app = make_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_screen(pilot, "2")
        await pilot.press("down", "f10")  # bob
        await pilot.pause()
        menu = app.screen
        assert isinstance(menu, ContextMenu)
        assert menu.menu_title == "bob"
        assert [i.label for i in menu.items] == [
            "View",
            "Edit",
            "QR code",
            "Grant access",
            "Revoke access",
            "Reset usage",
            "Extend",
            "Give a plan",
            "Disable",
            "Delete",
        ]
        await choose(pilot, "Disable")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await settle(pilot)
        assert (await users_in(home))["bob"].status is UserStatus.DISABLED
        assert (await users_in(home))["alice"].status is UserStatus.ACTIVE
        # The same menu now offers Enable, and it works.
        await pilot.press("f10")
        await pilot.pause()
        await choose(pilot, "Enable")
        await pilot.press("y")
        await settle(pilot)
    assert (await users_in(home))["bob"].status is UserStatus.ACTIVE


async def test_right_click_opens_the_same_menu_and_delete_deletes(home: Paths) -> None:
    await add_users(home, UserCreate(name="alice"), UserCreate(name="bob"))
    app = make_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_screen(pilot, "2")
        await pilot.click("#users-table", offset=(3, 2), button=3)  # the second row: bob
        await pilot.pause()
        menu = app.screen
        assert isinstance(menu, ContextMenu)
        assert menu.menu_title == "bob"
        assert menu.query_one(OptionList).option_count == 10
        await choose(pilot, "Delete")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")  # declined: nothing happens
        await settle(pilot)
        assert sorted(await users_in(home)) == ["alice", "bob"]
        await pilot.click("#users-table", offset=(3, 2), button=3)
        await pilot.pause()
        await choose(pilot, "Delete")
        await pilot.press("y")
        await settle(pilot)
        assert "bob" not in screen_text(app)
    assert sorted(await users_in(home)) == ["alice"]


async def test_search_and_sort(home: Paths) -> None:
    await add_users(
        home,
        UserCreate(name="alice", quota_bytes=GB),
        UserCreate(name="bob", email="bob@example.com"),
        UserCreate(name="carol"),
    )
    app = make_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_screen(pilot, "2")
        await pilot.press("slash", *"example")
        await settle(pilot)
        table = app.query_one("#users-table", MenuTable)
        assert [table.get_row_at(i)[1] for i in range(table.row_count)] == ["bob"]
        app.query_one("#user-search", Input).value = ""
        await settle(pilot)
        assert table.row_count == 3
        await pilot.click(
            "#users-table", offset=(5, 0)
        )  # the NAME header (after the mark column): reversed
        await pilot.pause()
        assert [table.get_row_at(i)[1] for i in range(3)] == ["carol", "bob", "alice"]


async def test_view_shows_limits_and_says_when_there_is_no_link(home: Paths) -> None:
    await add_users(home, UserCreate(name="alice", quota_bytes=GB, device_limit=2))
    app = make_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_screen(pilot, "2")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, UserDetail)
        text = screen_text(app)
        assert "0B of 1GB this period (0%)" in text
        assert "devices     2" in text
        assert "User 'alice' has no server yet." in text
        subscription = str(app.screen.query_one("#subscription", Static).content)
        assert subscription.startswith(
            "Subscription (vpn web serves it): http://127.0.0.1:2096/sub/"
        )
        assert "Subscription (vpn web serves it):" in text


async def test_many_users_show_the_first_thousand_and_search_finds_the_rest(home: Paths) -> None:
    await add_users(home, *[UserCreate(name=f"user{i:04d}") for i in range(1200)])
    app = make_app(home)
    async with app.run_test(size=(120, 30)) as pilot:
        await open_screen(pilot, "2")
        table = app.query_one("#users-table", MenuTable)
        assert table.row_count == ROW_LIMIT
        assert "1200 users; the first 1000 by name ↑ are shown" in screen_text(app)
        await pilot.press("slash", *"user119")
        await settle(pilot)
        assert [table.get_row_at(i)[1] for i in range(table.row_count)] == [
            f"user119{i}" for i in range(10)
        ]


async def test_used_quota_is_this_periods_usage(home: Paths) -> None:
    """USED/QUOTA reads the current period against the period's quota, as `vpn user list`
    does: after a reset it starts again from 0, while the lifetime total stays in the details."""
    from vpn_manager.storage import accounting
    from vpn_manager.storage import users as user_repo
    from vpn_manager.units import format_size

    await add_users(home, UserCreate(name="alice", quota_bytes=5 * GB, reset_period="monthly"))
    db = database(home)
    try:
        async with db.session() as session:
            row = await insert_server(session, fixed_clock())
            alice = (await user_repo.ids_for(session, ["alice"]))["alice"]
            await accounting.add_usage(session, row.id, {alice: (0, 3 * GB)}, fixed_clock())
            await accounting.start_period(session, alice, fixed_clock())
            await accounting.add_usage(session, row.id, {alice: (0, GB)}, fixed_clock())
    finally:
        await db.close()
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, "2")
        await settle(pilot)
        text = screen_text(app)
    assert f"{format_size(GB)}/{format_size(5 * GB)}" in text, text
    assert f"{format_size(4 * GB)}/" not in text, text
