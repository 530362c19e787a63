"""Users: a searchable, sortable table; create, edit, enable/disable and delete (with
confirmation); access to servers granted and revoked, usage reset, expiry extended and a plan
given for the marked users (or the one under the cursor); a user's usage, limits, links and QR
codes (userdetail.py)."""

from __future__ import annotations

from functools import partial
from typing import Any, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Select, Static

from vpn_manager.models import Plan, User, UserFilter, UserStatus
from vpn_manager.tui.picker import ChooseDialog, PickDialog
from vpn_manager.tui.shell import Failed, Shell
from vpn_manager.tui.userdetail import UserDetail
from vpn_manager.tui.userform import ExtendForm, UserForm, last_day
from vpn_manager.tui.widgets import ConfirmDialog, ContextMenu, MenuItem, MenuTable, View, start
from vpn_manager.tui.wording import who
from vpn_manager.units import format_size

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
        MenuItem("extend", "Extend"),
        MenuItem("plan", "Give a plan"),
        toggle,
        MenuItem("delete", "Delete"),
    ]


def plan_label(plan: Plan) -> str:
    """A plan in the picker: its name and the limits it gives, as `vpn plan list` shows them."""
    quota = format_size(plan.quota_bytes) if plan.quota_bytes else "unlimited"
    every = plan.reset_period
    period = (
        "" if every == "never" else f" (resets {every if every.isalpha() else 'every ' + every})"
    )
    days = f"{plan.days} days" if plan.days else "no expiry"
    devices = f"{plan.device_limit} devices" if plan.device_limit else "any devices"
    return f"{plan.name}: {quota}{period}, {days}, {devices}"


def sort_key(user: User, column: str) -> Any:
    return {
        "name": user.name,
        "status": user.status.value,
        "usage": user.period_used_bytes,
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
        Binding("d", "toggle_status", "En/disable"),
        Binding("delete", "delete", "Delete"),
        Binding("space", "mark", "Mark"),
        Binding("g", "grant", "Grant"),
        Binding("r", "revoke", "Revoke"),
        Binding("u", "reset_usage", "Reset"),
        Binding("x", "extend", "Extend"),
        Binding("p", "plan", "Plan"),
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
                f"{format_size(u.period_used_bytes)}/"
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
                f"{len(self.marked)} marked (g grant, r revoke, u reset usage, x extend, p plan "
                f"act on them; space unmarks). {note}"
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
        """Who grant, revoke, reset usage, extend and plan act on: the marked users, else the one
        under the cursor."""
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
            self.vpn.tell_applied()  # the servers done before the one that failed
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
            self.vpn.tell_applied()  # the servers done before the one that failed
            self.reload()
            return
        names = sorted({name for names in holders.values() for name in names})
        self.app.notify(f"{who(names)} can no longer use {', '.join(holders)}.")
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

    def action_extend(self) -> None:
        if not (names := self.targets()):
            return

        def extended(users: list[User] | None) -> None:
            if users:
                zone = self.vpn.backend.settings.zone
                days = {last_day(u, zone) for u in users}
                note = f"Extended the expiry of {who(names)}"
                self.app.notify(
                    f"{note}: the last day is now {days.pop()}." if len(days) == 1 else f"{note}."
                )
                self._done()

        self.app.push_screen(ExtendForm(names), extended)

    def action_plan(self) -> None:
        if names := self.targets():
            start(self, partial(self._pick_plan, names))

    async def _pick_plan(self, names: list[str]) -> None:
        try:
            plans = await self.vpn.attempt(self.vpn.backend.plans(), "Listing plans")
        except Failed:
            return
        if not plans:
            self.app.notify(
                "No plans yet: make one with `vpn plan add` (a quota, period, days, devices).",
                severity="warning",
            )
            return

        def picked(plan: str | None) -> None:
            if plan:
                self._run(self._give_plan(names, plan))

        question = (
            f"Give {who(names)} the plan (its quota, reset period, days and device limit; the "
            "days count from the later of now and their expiry):"
        )
        choices = [(plan_label(plan), plan.name) for plan in plans]
        self.app.push_screen(ChooseDialog("Give a plan", question, choices, "Give"), picked)

    async def _give_plan(self, names: list[str], plan: str) -> None:
        try:
            await self.vpn.attempt(self.vpn.backend.give_plan(names, plan), "Giving the plan")
        except Failed:
            return
        self.app.notify(f"Gave {who(names)} the plan {plan}.")
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
            elif action in ("grant", "revoke", "reset_usage", "extend", "plan"):
                getattr(self, f"action_{action}")()

        self.app.push_screen(ContextMenu(user.name, user_menu(user), event.at), chosen)
