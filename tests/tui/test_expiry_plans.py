"""What the TUI does that `vpn user update NAME… --extend SPAN|--plan PLAN`, `vpn user add --plan`
and `vpn server set` (its y/N before every user's link changes) do, checked in the database
through the services: the same service calls with the same inputs, bad input refused with one
sentence and nothing changed, a cancel changing nothing, and the keys back on the table."""

from __future__ import annotations

from datetime import timedelta

from textual.widgets import Input, OptionList, Static

from tests.tui.conftest import (
    NOW,
    add_users,
    database,
    free_port,
    make_app,
    open_screen,
    screen_text,
    settle,
    users_in,
)
from vpn_manager.models import PlanCreate, UserCreate
from vpn_manager.models.server import Server
from vpn_manager.settings import Paths
from vpn_manager.tui.app import VpnApp
from vpn_manager.tui.picker import ChooseDialog
from vpn_manager.tui.serverform import ServerSettingsForm
from vpn_manager.tui.userform import ExtendForm, UserForm
from vpn_manager.tui.widgets import ConfirmDialog, MenuTable

GB = 1000**3
DAY = timedelta(days=1)


def notes(app: VpnApp) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


async def add_plan(paths: Paths, create: PlanCreate) -> None:
    from vpn_manager.services.plans import PlanService

    db = database(paths)
    try:
        await PlanService(db).add(create)
    finally:
        await db.close()


async def server(paths: Paths, name: str) -> Server:
    from vpn_manager.services.servers import ServerService

    db = database(paths)
    try:
        return await ServerService(db, paths).get(name)
    finally:
        await db.close()


async def link(paths: Paths, user: str, server: str) -> str:
    from vpn_manager.services.servers import ServerService

    db = database(paths)
    try:
        return (await ServerService(db, paths).access(user, server))[0].link
    finally:
        await db.close()


async def test_extend_moves_the_marked_users_expiry_on(home: Paths) -> None:
    await add_users(
        home,
        UserCreate(name="alice", expires_at=NOW + 10 * DAY),
        UserCreate(name="bob"),
        UserCreate(name="carol", expires_at=NOW + 5 * DAY),
    )
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, "2")
        assert "Extend" in screen_text(app).splitlines()[-1]  # the key is in the footer
        await pilot.press("space", "space", "x")  # alice and bob marked
        await settle(pilot)
        form = app.screen
        assert isinstance(form, ExtendForm)
        assert "Move the expiry of alice, bob on" in screen_text(app)
        assert "expiry, by:" in screen_text(app)  # the question wraps, not cut

        # Bad input: one sentence under the field, the form stays, nothing changes.
        for typed, sentence in [
            ("", "Give a length of time, such as 30d."),
            ("a month", "'a month' is not a length of time."),
            ("0d", "'0d' is no time at all."),
            ("36500d", "36500d more would take alice's expiry past 2099-12-31."),
        ]:
            form.query_one("#f-extend", Input).value = typed
            await pilot.press("enter")
            await settle(pilot)
            assert app.screen is form
            assert str(form.query_one("#m-extend", Static).render()) == sentence, typed
        users = await users_in(home)
        assert (users["alice"].expires_at, users["bob"].expires_at) == (NOW + 10 * DAY, None)

        form.query_one("#f-extend", Input).value = "30d"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, ExtendForm)
        assert isinstance(app.focused, MenuTable)
        table = app.query_one("#users-table", MenuTable)
        # The table shows the new last days at once (an expiry at midnight ends the day before).
        assert [str(table.get_row(name)[4]) for name in ("alice", "bob", "carol")] == [
            "2026-12-30",
            "2026-12-20",
            "2026-11-25",
        ]
        assert "marked" not in screen_text(app)
    users = await users_in(home)
    # From the later of now and the current expiry, as `--extend` counts it.
    assert users["alice"].expires_at == NOW + 40 * DAY
    assert users["bob"].expires_at == NOW + 30 * DAY
    assert users["carol"].expires_at == NOW + 5 * DAY  # neither marked nor under the cursor


async def test_extend_cancelled_changes_nothing(home: Paths) -> None:
    await add_users(home, UserCreate(name="alice", expires_at=NOW + DAY))
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, "2")
        await pilot.press("f10")  # the row menu has it too
        await settle(pilot)
        menu = app.screen.query_one(OptionList)
        labels = [str(menu.get_option_at_index(i).prompt) for i in range(menu.option_count)]
        await pilot.press(*["down"] * labels.index("Extend"), "enter")
        await settle(pilot)
        assert isinstance(app.screen, ExtendForm)
        await pilot.press(*"30d", "escape")
        await settle(pilot)
        assert not isinstance(app.screen, ExtendForm)
        assert isinstance(app.focused, MenuTable)
    assert (await users_in(home))["alice"].expires_at == NOW + DAY


async def test_extend_lets_an_expired_user_back_in(home: Paths) -> None:
    from vpn_manager.models import UserStatus, UserUpdate
    from vpn_manager.services.users import UserService

    await add_users(home, UserCreate(name="alice", expires_at=NOW + DAY))
    db = database(home)
    try:  # expired by `vpn user update alice --expires <past> --force`, on the app's clock
        users = UserService(db, clock=lambda: NOW)
        await users.update("alice", UserUpdate(expires_at=NOW - DAY), force=True)
    finally:
        await db.close()
    assert (await users_in(home))["alice"].status is UserStatus.EXPIRED
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, "2")
        await pilot.press("x", *"2w", "enter")
        await settle(pilot)
        assert "Extended the expiry of alice: the last day is now 2026-12-04." in notes(app)
    alice = (await users_in(home))["alice"]
    assert alice.expires_at == NOW + 14 * DAY  # from now: the old expiry is past
    assert alice.status is UserStatus.ACTIVE


async def test_a_plan_is_given_to_the_marked_users(home: Paths) -> None:
    await add_users(
        home,
        UserCreate(name="alice", expires_at=NOW + 10 * DAY),
        UserCreate(name="bob", quota_bytes=GB),
        UserCreate(name="carol"),
    )
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, "2")
        assert "Plan" in screen_text(app).splitlines()[-1]
        await pilot.press("p")  # no plans yet: says how to make one
        await settle(pilot)
        assert not isinstance(app.screen, ChooseDialog)
        assert "No plans yet: make one with `vpn plan add`" in notes(app)

        await add_plan(home, PlanCreate(name="basic", quota_bytes=10 * GB))
        await add_plan(
            home,
            PlanCreate(
                name="monthly",
                quota_bytes=50 * GB,
                reset_period="monthly",
                days=30,
                device_limit=2,
            ),
        )
        await pilot.press("space", "space", "p")
        await settle(pilot)
        picker = app.screen
        assert isinstance(picker, ChooseDialog)
        text = screen_text(app)
        assert "basic: 10GB, no expiry, any devices" in text
        assert "monthly: 50GB (resets monthly), 30 days, 2 devices" in text
        await pilot.press("escape")  # cancelled: nothing changes
        await settle(pilot)
        assert isinstance(app.focused, MenuTable)
        assert (await users_in(home))["bob"].quota_bytes == GB

        await pilot.press("p", "down", "enter")  # monthly, for the users still marked
        await settle(pilot)
        assert not isinstance(app.screen, ChooseDialog)
        assert isinstance(app.focused, MenuTable)
        assert "Gave alice, bob the plan monthly." in notes(app)
        assert "50GB" in str(app.query_one(MenuTable).get_row("bob")[3])
    users = await users_in(home)
    for name in ("alice", "bob"):
        user = users[name]
        assert (user.plan, user.quota_bytes, user.reset_period, user.device_limit) == (
            "monthly",
            50 * GB,
            "monthly",
            2,
        ), name
    # The plan's days count from the later of now and the current expiry, as `--plan` does.
    assert users["alice"].expires_at == NOW + 40 * DAY
    assert users["bob"].expires_at == NOW + 30 * DAY
    assert (users["carol"].plan, users["carol"].quota_bytes) == (None, None)


async def test_the_user_form_takes_a_plan(home: Paths) -> None:
    await add_plan(
        home, PlanCreate(name="monthly", quota_bytes=50 * GB, reset_period="monthly", days=30)
    )
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, "2")
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, UserForm)
        form.query_one("#f-name", Input).value = "alice"
        form.query_one("#f-plan", Input).value = "nosuch"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is form  # an unknown plan: refused, nobody added
        assert "nosuch" in notes(app)
        assert await users_in(home) == {}
        form.query_one("#f-plan", Input).value = "monthly"
        form.query_one("#f-quota", Input).value = "1GB"  # a field given wins over the plan
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, UserForm)
        alice = (await users_in(home))["alice"]
        assert (alice.plan, alice.quota_bytes, alice.reset_period) == ("monthly", GB, "monthly")
        assert alice.expires_at == NOW + 30 * DAY

        await pilot.press("e")  # the edit form shows the plan; emptied, the reference goes
        await settle(pilot)
        form = app.screen
        assert isinstance(form, UserForm)
        assert form.query_one("#f-plan", Input).value == "monthly"
        form.query_one("#f-plan", Input).value = ""
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, UserForm)
    alice = (await users_in(home))["alice"]
    assert (alice.plan, alice.quota_bytes, alice.reset_period) == (None, GB, "monthly")


async def test_server_settings_ask_before_every_link_changes(two_servers: Paths) -> None:
    home = two_servers
    await add_users(home, UserCreate(name="alice"))
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.backend.grant(["alice"], ["s1"])
        port = (await server(home, "s1")).port
        await open_screen(pilot, "3")
        await pilot.press("e")  # s1, under the cursor
        await settle(pilot)
        form = app.screen
        assert isinstance(form, ServerSettingsForm)

        # A new address keeps the links working: no question.
        form.query_one("#f-host", Input).value = "vpn.example.org"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, (ServerSettingsForm, ConfirmDialog))
        assert (await server(home, "s1")).host == "vpn.example.org"
        before = await link(home, "alice", "s1")
        assert "@vpn.example.org:" in before

        # A new port and cipher: asked first, naming that every user's link changes.
        await pilot.press("e")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, ServerSettingsForm)
        form.query_one("#f-port", Input).value = "18388"
        form.query_one("#f-method", Input).value = "aes-256-gcm"
        await pilot.press("ctrl+s")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        assert dialog.question.startswith(
            "With a new port and a new cipher, the link of every user of s1 (1) changes: the old "
            "ones stop working"
        )
        assert "Go ahead?" in screen_text(app)  # the whole question shows (it wraps)
        await pilot.press("n")  # No: everything stays as it was, the form open
        await settle(pilot)
        assert app.screen_stack[-1] is form
        assert str(form.query_one("#m-form", Static).render()) == "Nothing was changed."
        assert await link(home, "alice", "s1") == before
        assert (await server(home, "s1")).port == port

        await pilot.press("ctrl+s", "y")
        await settle(pilot)
        assert not isinstance(app.screen, (ServerSettingsForm, ConfirmDialog))
        assert isinstance(app.focused, MenuTable)
    s1 = await server(home, "s1")
    assert (s1.port, s1.settings["method"]) == (18388, "aes-256-gcm")
    after = await link(home, "alice", "s1")
    assert after != before
    assert ":18388" in after


async def test_no_question_for_a_server_without_users(two_servers: Paths) -> None:
    home = two_servers
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, "3")
        await pilot.press("e")
        await settle(pilot)
        app.screen.query_one("#f-port", Input).value = "18389"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, (ServerSettingsForm, ConfirmDialog))
    assert (await server(home, "s1")).port == 18389


async def test_a_tls_server_s_sni_is_asked_about_and_changed(home: Paths) -> None:
    """Trojan: the SNI (its certificate's name) is a setting too, and a new one changes every
    user's link, as `vpn server set tj --sni` asks."""
    from vpn_manager.models.server import Protocol, ServerCreate
    from vpn_manager.services.servers import ServerService

    db = database(home)
    try:
        service = ServerService(db, home)
        create = ServerCreate(
            name="tj",
            protocol=Protocol.TROJAN,
            port=free_port(),
            listen="127.0.0.1",
            host="127.0.0.1",
            sni="vpn.example.org",
        )
        await service.install(create)
        await service.stop("tj")
    finally:
        await db.close()
    await add_users(home, UserCreate(name="alice"))
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.backend.grant(["alice"], ["tj"])
        await open_screen(pilot, "3")
        await pilot.press("e")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, ServerSettingsForm)
        assert not form.query("#f-dest")
        assert not form.query("#f-method")
        sni = form.query_one("#f-sni", Input)
        assert sni.value == "vpn.example.org"
        sni.value = "new.example.org"
        await pilot.press("ctrl+s")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        assert dialog.question.startswith("With a new SNI, the link of every user of tj (1)")
        await pilot.press("y")
        await settle(pilot)
        assert not isinstance(app.screen, (ServerSettingsForm, ConfirmDialog))
    assert (await server(home, "tj")).sni == "new.example.org"
    assert "sni=new.example.org" in await link(home, "alice", "tj")
