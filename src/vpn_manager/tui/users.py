"""Users: a searchable, sortable table; create, edit, enable/disable and delete (with
confirmation); access to servers granted and revoked and usage reset for the marked users (or
the one under the cursor); one screen with a user's usage, limits, links and QR codes."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, DataTable, Footer, Input, Label, Select, Static

from vpn_manager.delivery.qr import qr_text
from vpn_manager.errors import NotFound, VpnError
from vpn_manager.models import User, UserFilter, UserStatus
from vpn_manager.tui.picker import PickDialog
from vpn_manager.tui.shell import Failed, Shell
from vpn_manager.tui.userform import UserForm, last_day
from vpn_manager.tui.widgets import ConfirmDialog, ContextMenu, MenuItem, MenuTable, View, start
from vpn_manager.tui.wording import in_tui_words
from vpn_manager.units import format_rate, format_size
from vpn_manager.web.urls import settings_base_url, subscription_url

if TYPE_CHECKING:
    from vpn_manager.services.servers import Access

# A table of every user would take seconds to build with tens of thousands of them; the first
# ROW_LIMIT in the chosen order are shown, and search or the status filter narrow the rest.
ROW_LIMIT = 1000
MARK = "✓"  # in the first column of a marked user's row
COLUMNS = [
    ("name", "NAME"),
    ("status", "STATUS"),
    ("usage", "USED/QUOTA"),
    ("expires", "EXPIRES"),
    ("servers", "SERVERS"),
    ("email", "EMAIL"),
]


def user_menu(user: User) -> list[MenuItem]:
    toggle = (
        MenuItem("enable", "Enable")
        if user.status is not UserStatus.ACTIVE
        else MenuItem("disable", "Disable")
    )
    return [
        MenuItem("view", "View"),
        MenuItem("edit", "Edit"),
        MenuItem("qr", "QR code"),
        MenuItem("grant", "Grant access"),
        MenuItem("revoke", "Revoke access"),
        MenuItem("reset_usage", "Reset usage"),
        toggle,
        MenuItem("delete", "Delete"),
    ]


def who(names: list[str]) -> str:
    """Users named in a sentence: a few by name, more by number."""
    return ", ".join(names) if len(names) <= 3 else f"{len(names)} users"


def sort_key(user: User, column: str) -> Any:
    return {
        "name": user.name,
        "status": user.status.value,
        "usage": user.used_bytes,
        "expires": user.expires_at.timestamp() if user.expires_at else float("inf"),
        "servers": ",".join(user.servers),
        "email": user.email or "",
    }[column]


class UsersView(View):
    DEFAULT_CSS = """
    UsersView { height: 1fr; }
    UsersView .bar Input { width: 1fr; }
    UsersView .bar Select { width: 20; }
    UsersView .bar { margin-bottom: 1; }
    UsersView MenuTable { height: 1fr; }
    UsersView #users-status { height: 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new", "New"),
        Binding("e", "edit", "Edit"),
        Binding("d", "toggle_status", "Disable/enable"),
        Binding("delete", "delete", "Delete"),
        Binding("space", "mark", "Mark"),
        Binding("g", "grant", "Grant"),
        Binding("r", "revoke", "Revoke"),
        Binding("u", "reset_usage", "Reset usage"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("s", "sort", "Sort"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.users: dict[str, User] = {}
        self.marked: set[str] = set()  # kept while a search hides them
        self.sort_column = "name"
        self.reverse = False
        self.filtered = False

    @property
    def vpn(self) -> Shell:
        return cast("Shell", self.app)

    def compose(self) -> ComposeResult:
        with Horizontal(classes="bar"):
            yield Input(placeholder="search names, e-mails, notes", id="user-search", compact=True)
            yield Select(
                [(s.value, s.value) for s in UserStatus],
                prompt="any status",
                id="user-status-filter",
                compact=True,
            )
        table = MenuTable(id="users-table")
        table.add_column(" ", key="mark", width=1)
        for key, title in COLUMNS:
            table.add_column(title, key=key)
        yield table
        yield Static("", id="users-status")

    async def read(self) -> None:
        search = self.query_one("#user-search", Input).value.strip() or None
        status = self.query_one("#user-status-filter", Select).value
        where = UserFilter(
            search=search, status=UserStatus(status) if isinstance(status, str) else None
        )
        try:
            users = await self.vpn.attempt(self.vpn.backend.users.list(where), "Listing users")
        except Failed:
            return
        self.users = {u.name: u for u in users}
        self.filtered = search is not None or isinstance(status, str)
        self._fill()

    def _fill(self) -> None:
        table = self.query_one(MenuTable)
        keep = table.selected_key()
        zone = self.vpn.backend.settings.zone
        table.clear()
        ordered = sorted(
            self.users.values(), key=lambda u: sort_key(u, self.sort_column), reverse=self.reverse
        )
        for u in ordered[:ROW_LIMIT]:
            table.add_row(
                MARK if u.name in self.marked else " ",
                u.name,
                u.status.value,
                f"{format_size(u.used_bytes)}/"
                + (format_size(u.quota_bytes) if u.quota_bytes else "∞"),
                last_day(u, zone) or "never",
                ",".join(u.servers) or "-",
                u.email or "-",
                key=u.name,
            )
        if keep in self.users:
            table.move_cursor(row=table.get_row_index(keep))
        self._note()

    def _note(self) -> None:
        arrow = "↓" if self.reverse else "↑"
        if len(self.users) > ROW_LIMIT:
            note = (
                f"{len(self.users)} users; the first {ROW_LIMIT} by {self.sort_column} {arrow} "
                "are shown: search or filter to see others"
            )
        elif self.users:
            note = f"{len(self.users)} users, sorted by {self.sort_column} {arrow}"
        elif self.filtered:
            note = "No users match."
        else:
            note = "No users yet: press n to add one."
        if self.marked:
            note = (
                f"{len(self.marked)} marked (g grant, r revoke, u reset usage act on them; "
                f"space unmarks). {note}"
            )
        self.query_one("#users-status", Static).update(note)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "user-search":
            self.reload()

    def on_select_changed(self, _event: Select.Changed) -> None:
        self.reload()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        column = str(event.column_key.value)
        if column == "mark":
            return
        self.reverse = not self.reverse if column == self.sort_column else False
        self.sort_column = column
        self._fill()

    def action_sort(self) -> None:
        keys = [key for key, _ in COLUMNS]
        self.sort_column = keys[(keys.index(self.sort_column) + 1) % len(keys)]
        self.reverse = False
        self._fill()

    def action_search(self) -> None:
        self.query_one("#user-search", Input).focus()

    def selected(self) -> User | None:
        key = self.query_one(MenuTable).selected_key()
        return self.users.get(key) if key else None

    def targets(self) -> list[str]:
        """Who grant, revoke and reset usage act on: the marked users, else the one under the
        cursor."""
        if self.marked:
            return sorted(self.marked)
        user = self.selected()
        return [user.name] if user is not None else []

    def action_mark(self) -> None:
        """Mark or unmark the user under the cursor, and go to the next row."""
        table = self.query_one(MenuTable)
        if (name := table.selected_key()) is None:
            return
        self.marked ^= {name}
        table.update_cell(name, "mark", MARK if name in self.marked else " ")
        table.action_cursor_down()
        self._note()

    # -- access and usage, for several users at once -------------------------------------------
    def action_grant(self) -> None:
        if names := self.targets():
            start(self, partial(self._pick_to_grant, names))

    async def _pick_to_grant(self, names: list[str]) -> None:
        try:
            servers = await self.vpn.attempt(self.vpn.backend.servers.all(), "Listing servers")
        except Failed:
            return
        if not servers:
            self.app.notify("No servers yet: install one on the Servers screen (3).")
            return
        choices = [(f"{s.name} ({s.protocol.value}, port {s.port})", s.name) for s in servers]

        def picked(chosen: list[str] | None) -> None:
            if chosen:
                self._run(self._grant(names, chosen))

        self.app.push_screen(
            PickDialog("Grant access", f"Give {who(names)} access to:", choices, "Grant"), picked
        )

    async def _grant(self, names: list[str], servers: list[str]) -> None:
        try:
            new = await self.vpn.attempt(self.vpn.backend.grant(names, servers), "Granting")
        except Failed:
            self.reload()
            return
        had = [server for server, added in new.items() if not added]
        note = f"{who(names)} can now use {', '.join(servers)}."
        if had:
            note += f" (Already had {', '.join(had)}.)"
        self.app.notify(note)
        self._done()

    def action_revoke(self) -> None:
        if names := self.targets():
            start(self, partial(self._pick_to_revoke, names))

    async def _pick_to_revoke(self, names: list[str]) -> None:
        """The servers any of them can use (read now: a search may hide marked users)."""
        users = self.vpn.backend.users
        try:
            held = {
                name: (await self.vpn.attempt(users.get(name), "Reading")).servers for name in names
            }
        except Failed:
            return
        servers = sorted({server for their in held.values() for server in their})
        if not servers:
            self.app.notify(f"{who(names)} can use no server.", severity="warning")
            return

        def picked(chosen: list[str] | None) -> None:
            if chosen:
                holders = {s: [n for n in names if s in held[n]] for s in chosen}
                self._run(self._revoke(holders))

        question = f"Take away the access of {who(names)} to (their open connections are cut):"
        self.app.push_screen(
            PickDialog("Revoke access", question, [(s, s) for s in servers], "Revoke"), picked
        )

    async def _revoke(self, holders: dict[str, list[str]]) -> None:
        try:
            await self.vpn.attempt(self.vpn.backend.revoke(holders), "Revoking")
        except Failed:
            self.reload()
            return
        names = sorted({name for names in holders.values() for name in names})
        self.app.notify(f"{who(names)} no longer can use {', '.join(holders)}.")
        self._done()

    def action_reset_usage(self) -> None:
        if not (names := self.targets()):
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._run(self._reset_usage(names))

        question = (
            f"Reset the usage of {who(names)}? A new quota period starts now (lifetime totals "
            "are kept) and users who were over quota can connect again."
        )
        self.app.push_screen(ConfirmDialog(question, "Reset"), answered)

    async def _reset_usage(self, names: list[str]) -> None:
        try:
            await self.vpn.attempt(self.vpn.backend.reset_usage(names), "Resetting usage")
        except Failed:
            return
        self.app.notify(f"Reset the usage of {who(names)}.")
        self._done()

    def _done(self) -> None:
        """After a change to the marked users: how it reached the servers, marks cleared."""
        self.vpn.tell_applied()
        self.marked.clear()
        self.reload()

    # -- actions (each one service call, as its `vpn user …` command) ----------------------------
    def action_new(self) -> None:
        self.app.push_screen(UserForm(), self._after_form)

    def action_edit(self) -> None:
        if (user := self.selected()) is not None:
            self.app.push_screen(UserForm(user), self._after_form)

    def _after_form(self, user: User | None) -> None:
        if user is not None:
            self.app.notify(f"Saved {user.name}.")
            self.reload()

    def action_view(self) -> None:
        if (user := self.selected()) is not None:
            self.app.push_screen(UserDetail(user))

    def action_toggle_status(self) -> None:
        if (user := self.selected()) is not None:
            self.confirm_status(user, enable=user.status is not UserStatus.ACTIVE)

    def action_delete(self) -> None:
        if (user := self.selected()) is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._run(self._delete(user.name))

        self.app.push_screen(
            ConfirmDialog(f"Delete {user.name} and their credentials on every server?", "Delete"),
            answered,
        )

    def confirm_status(self, user: User, *, enable: bool) -> None:
        verb = "Enable" if enable else "Disable"

        def answered(yes: bool | None) -> None:
            if yes:
                self._run(self._set_status(user.name, enable))

        question = (
            f"Enable {user.name}? They can connect again."
            if enable
            else f"Disable {user.name}? Their open connections are cut."
        )
        self.app.push_screen(ConfirmDialog(question, verb), answered)

    def _run(self, work: Any) -> None:
        self.run_worker(work, group="user-change", exit_on_error=False)

    async def _set_status(self, name: str, enable: bool) -> None:
        users = self.vpn.backend.users
        try:
            if enable:
                await self.vpn.attempt(users.enable([name]), "Enabling")
            else:
                await self.vpn.attempt(users.disable([name]), "Disabling")
        except Failed:
            return
        self.app.notify(f"{'Enabled' if enable else 'Disabled'} {name}.")
        self.vpn.tell_applied()
        self.reload()

    async def _delete(self, name: str) -> None:
        try:
            await self.vpn.attempt(self.vpn.backend.users.delete([name]), "Deleting")
        except Failed:
            return
        self.marked.discard(name)
        self.app.notify(f"Deleted {name}.")
        self.vpn.tell_applied()
        self.reload()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_view()

    def on_menu_table_menu_requested(self, event: MenuTable.MenuRequested) -> None:
        user = self.users.get(event.row_key)
        if user is None:
            return

        def chosen(action: str | None) -> None:
            if action in ("view", "qr"):
                self.app.push_screen(UserDetail(user, qr_first=action == "qr"))
            elif action == "edit":
                self.app.push_screen(UserForm(user), self._after_form)
            elif action in ("enable", "disable"):
                self.confirm_status(user, enable=action == "enable")
            elif action == "delete":
                self.action_delete()
            elif action in ("grant", "revoke", "reset_usage"):
                getattr(self, f"action_{action}")()

        self.app.push_screen(ContextMenu(user.name, user_menu(user), event.at), chosen)


def limits_text(user: User, zone: Any) -> str:
    used = user.period_upload_bytes + user.period_download_bytes
    quota = (
        f"{format_size(used)} of {format_size(user.quota_bytes)} this period"
        f" ({used * 100 // user.quota_bytes}%)"
        if user.quota_bytes
        else f"{format_size(used)} this period, no quota"
    )
    lines = [
        f"status      {user.status.value}",
        f"used        ↑ {format_size(user.upload_bytes)}  ↓ {format_size(user.download_bytes)}"
        " in all",
        f"quota       {quota}, resets {user.reset_period}",
        f"expires     {last_day(user, zone) or 'never'}"
        + (
            f" (or {user.expire_after_days} days after first use)" if user.expire_after_days else ""
        ),
        f"devices     {user.device_limit or 'unlimited'}",
        f"servers     {', '.join(user.servers) or '-'}",
    ]
    if user.speed_limit_bps:  # set by an earlier version, which stored what nothing enforces
        lines.append(f"speed       {format_rate(user.speed_limit_bps)} (not enforced)")
    if user.email:
        lines.append(f"e-mail      {user.email}")
    if user.note:
        lines.append(f"note        {user.note}")
    return "\n".join(lines)


class UserDetail(ModalScreen[None]):
    """Usage, limits, the subscription URL, and every link of one user with its QR code
    (`vpn user show`, `vpn user link --subscription` and `vpn user link --qr` on one screen)."""

    DEFAULT_CSS = """
    UserDetail { align: center middle; }
    UserDetail > VerticalScroll {
        width: 100%; height: 100%; border: thick $accent; background: $panel; padding: 0 1;
    }
    UserDetail .qr { width: auto; height: auto; margin: 1 0; }
    UserDetail .link { color: $text-accent; }
    UserDetail .note { color: $warning; }
    UserDetail .server { text-style: bold; margin-top: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("c", "copy", "Copy link"),
    ]

    def __init__(self, user: User, qr_first: bool = False) -> None:
        super().__init__()
        self.user = user
        self.qr_first = qr_first
        self.accesses: list[Access] = []

    @property
    def vpn(self) -> Shell:
        return cast("Shell", self.app)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail") as box:
            box.border_title = self.user.name
            yield Static(limits_text(self.user, self.vpn.backend.settings.zone), markup=False)
            yield Static("Subscription: loading …", id="subscription", classes="link", markup=False)
            yield Static("Links: loading …", id="links-title", classes="server")
            yield Button("Close", id="close")
        yield Footer()

    def on_mount(self) -> None:
        start(self, self._links)

    async def _subscription(self) -> None:
        """The user's subscription URL (served by `vpn web`): every server, in their app."""
        line = self.query_one("#subscription", Static)
        try:
            base = settings_base_url(self.vpn.backend.settings.web)
            token = await self.vpn.backend.users.subscription_token(self.user.name)
        except VpnError as exc:
            line.update(f"Subscription: {exc.message}")
            return
        line.update(f"Subscription (vpn web serves it): {subscription_url(base, token)}")

    async def _links(self) -> None:
        await self._subscription()
        title = self.query_one("#links-title", Static)
        try:
            self.accesses = await self.vpn.backend.servers.access(self.user.name)
        except NotFound as exc:
            hint = f" ({in_tui_words(exc.hint)})" if exc.hint else ""
            title.update(f"Links: {in_tui_words(exc.message)}{hint}")
            return
        except VpnError as exc:
            title.update(f"Links: {in_tui_words(exc.message)}")
            return
        title.update(f"Links ({len(self.accesses)}): c copies the first one")
        box = self.query_one("#detail", VerticalScroll)
        for access in self.accesses:
            widgets: list[Widget] = [
                Label(f"{access.server} ({access.protocol})", classes="server"),
                Static(access.link.rstrip("\n"), classes="link", markup=False),
            ]
            if access.note:
                widgets.append(Static(access.note, classes="note", markup=False))
            try:
                widgets.append(Static(qr_text(access.link), classes="qr", markup=False))
            except VpnError as exc:
                widgets.append(Static(f"No QR code: {exc.message}", markup=False))
            await box.mount_all(widgets, before=self.query_one("#close"))
        if self.qr_first and self.accesses:
            self.query(".qr").first().scroll_visible(animate=False)

    def on_button_pressed(self, _event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_copy(self) -> None:
        if self.accesses:
            self.app.copy_to_clipboard(self.accesses[0].link)
            self.app.notify(f"Copied the {self.accesses[0].server} link.")
