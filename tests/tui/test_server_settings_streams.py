"""The settings form's transport rows (issue 18): an Xray VLESS, Trojan or VMess server shows the
Path, Host header, gRPC service or XHTTP mode its transport has (filled in with its values) and
no other; a bad value is ServerChange's refusal (`vpn server set`'s, install's) under its row,
with nothing saved; a new path asks first, as every user's link changes, and a yes saves it. A
real Trojan+WebSocket+TLS server installed (Xray checked and started it), then stopped."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from textual.widgets import Input, Static

from tests.tui.conftest import add_users, database, free_port, make_app, open_screen, settle
from tests.tui.test_expiry_plans import link, server
from vpn_manager.models import UserCreate
from vpn_manager.settings import Paths
from vpn_manager.tui.serverform import ServerSettingsForm
from vpn_manager.tui.widgets import ConfirmDialog


async def install_trojan_ws(home: Paths) -> None:
    from vpn_manager.models.server import Network, Protocol, ServerCreate
    from vpn_manager.services.servers import ServerService

    db = database(home)
    try:
        service = ServerService(db, home)
        create = ServerCreate(
            name="tw",
            protocol=Protocol.TROJAN,
            port=free_port(),
            listen="127.0.0.1",
            host="127.0.0.1",
            sni="vpn.example.org",
            transport=Network.WS,
            path="/leaked",
        )
        await service.install(create)
        await service.stop("tw")
    finally:
        await db.close()


def path_of(text: str) -> list[str]:
    return parse_qs(urlsplit(text).query)["path"]


async def test_a_new_path_through_the_settings_form(home: Paths) -> None:
    await install_trojan_ws(home)
    await add_users(home, UserCreate(name="alice"))
    app = make_app(home)
    async with app.run_test(size=(120, 45)) as pilot:
        await app.backend.grant(["alice"], ["tw"])
        before = await link(home, "alice", "tw")
        assert path_of(before) == ["/leaked"]
        await open_screen(pilot, "3")
        await pilot.press("e")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, ServerSettingsForm)
        fields = [field for field, _, _ in form.fields()]
        assert fields == ["port", "host", "sni", "decoy", "path", "host_header"]
        path = form.query_one("#f-path", Input)
        assert path.value == "/leaked"
        assert form.query_one("#f-host_header", Input).value == ""  # the default: none

        # Install's check, under the row; nothing asked, nothing saved.
        path.value = "/a/../b"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen_stack[-1] is form
        message = str(form.query_one("#m-path", Static).render())
        assert message == "Give a path without . or .. segments (a proxy in front removes them)."
        assert await link(home, "alice", "tw") == before

        # A new path: asked first; no keeps everything, yes saves it.
        path.value = "/rotated"
        await pilot.press("ctrl+s")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        assert dialog.question.startswith("With a new path, the link of every user of tw (1)")
        await pilot.press("n")
        await settle(pilot)
        assert app.screen_stack[-1] is form
        assert await link(home, "alice", "tw") == before
        await pilot.press("ctrl+s", "y")
        await settle(pilot)
        assert not isinstance(app.screen, (ServerSettingsForm, ConfirmDialog))
    assert (await server(home, "tw")).settings["path"] == "/rotated"
    assert path_of(await link(home, "alice", "tw")) == ["/rotated"]
