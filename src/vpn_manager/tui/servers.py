"""Servers: the list with each one's state; install (in a worker, with progress); start, stop,
restart and remove; a server's stats (status, per-user traffic) and its logs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from pydantic import ValidationError
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Log, ProgressBar, Select, Static

from vpn_manager.errors import VpnError
from vpn_manager.models.server import Protocol, Server, ServerCreate
from vpn_manager.tui.widgets import (
    ConfirmDialog,
    ContextMenu,
    ErrorDialog,
    MenuItem,
    MenuTable,
    View,
    start,
)
from vpn_manager.units import format_size

if TYPE_CHECKING:
    from vpn_manager.tui.app import VpnApp

COLUMNS = [
    ("name", "NAME"),
    ("protocol", "PROTOCOL"),
    ("address", "ADDRESS"),
    ("state", "STATE"),
    ("users", "USERS"),
    ("sni", "SNI/METHOD"),
]


def state_text(server: Server) -> str:
    """As `vpn server list` says it: running/stopped, and what was wanted when they differ."""
    state = "running" if server.running else "stopped"
    if server.running != (server.desired.value == "running"):
        state += f" (wanted {server.desired.value})"
    return state


def server_menu(server: Server) -> list[MenuItem]:
    return [
        MenuItem("stop", "Stop") if server.running else MenuItem("start", "Start"),
        MenuItem("restart", "Restart"),
        MenuItem("logs", "Logs"),
        MenuItem("stats", "Stats"),
        MenuItem("remove", "Remove"),
    ]


class ServersView(View):
    DEFAULT_CSS = """
    ServersView { height: 1fr; }
    ServersView MenuTable { height: 1fr; }
    ServersView #servers-status { height: 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("i", "install", "Install"),
        Binding("s", "start_stop", "Start/stop"),
        Binding("r", "restart", "Restart"),
        Binding("delete", "remove", "Remove"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.servers: dict[str, Server] = {}

    @property
    def vpn(self) -> VpnApp:
        return cast("VpnApp", self.app)

    def compose(self) -> ComposeResult:
        table = MenuTable(id="servers-table")
        for key, title in COLUMNS:
            table.add_column(title, key=key)
        yield table
        yield Static("", id="servers-status")

    async def read(self) -> None:
        from vpn_manager.tui.app import Failed

        try:
            servers = await self.vpn.attempt(self.vpn.backend.servers.all(), "Listing servers")
        except Failed:
            return
        self.servers = {s.name: s for s in servers}
        table = self.query_one(MenuTable)
        keep = table.selected_key()
        table.clear()
        for s in servers:
            table.add_row(
                s.name,
                s.protocol.value,
                f"{s.host}:{s.port}",
                state_text(s),
                str(s.users),
                str(s.settings.get("sni") or s.settings.get("method") or "-"),
                key=s.name,
            )
        if keep in self.servers:
            table.move_cursor(row=table.get_row_index(keep))
        self.query_one("#servers-status", Static).update(
            f"{len(servers)} servers"
            if servers
            else "No servers yet: press i to install one (vless-reality, shadowsocks, …)."
        )

    def selected(self) -> Server | None:
        key = self.query_one(MenuTable).selected_key()
        return self.servers.get(key) if key else None

    # -- actions: each one the service call of its `vpn server …` command ----------------------
    def action_install(self) -> None:
        self.app.push_screen(InstallForm(), lambda server: self.reload() if server else None)

    def action_start_stop(self) -> None:
        if (server := self.selected()) is not None:
            self.do(server.name, "stop" if server.running else "start")

    def action_restart(self) -> None:
        if (server := self.selected()) is not None:
            self.do(server.name, "restart")

    def action_remove(self) -> None:
        if (server := self.selected()) is not None:
            self.do(server.name, "remove")

    def do(self, name: str, action: str) -> None:
        if action == "remove":

            def answered(yes: bool | None) -> None:
                if yes:
                    self.run_worker(self._act(name, "remove"), exit_on_error=False)

            self.app.push_screen(
                ConfirmDialog(f"Remove server {name}? Its users lose access through it.", "Remove"),
                answered,
            )
        elif action == "logs":
            self.run_worker(self.vpn.show_logs(name), exit_on_error=False)
        elif action == "stats":
            self.app.push_screen(ServerDetail(name))
        else:
            self.run_worker(self._act(name, action), group=f"server-{name}", exit_on_error=False)

    async def _act(self, name: str, action: str) -> None:
        from vpn_manager.tui.app import Failed

        servers = self.vpn.backend.servers
        calls = {
            "start": (servers.start, "Starting", "{} is running."),
            "stop": (servers.stop, "Stopping", "Stopped {}."),
            "restart": (servers.restart, "Restarting", "Restarted {}."),
            "remove": (servers.remove, "Removing", "Removed {}."),
        }
        call, doing, done = calls[action]
        self.query_one("#servers-status", Static).update(f"{doing} {name} …")
        try:
            await self.vpn.attempt(call(name), f"{doing} {name}")
        except Failed:
            self.reload()
            return
        self.app.notify(done.format(name))
        self.reload()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.app.push_screen(ServerDetail(event.row_key.value))

    def on_menu_table_menu_requested(self, event: MenuTable.MenuRequested) -> None:
        server = self.servers.get(event.row_key)
        if server is None:
            return

        def chosen(action: str | None) -> None:
            if action is not None:
                self.do(server.name, action)

        self.app.push_screen(ContextMenu(server.name, server_menu(server), event.at), chosen)


NO_LOG_LINES = "(the engine has written no log lines yet)"

# (field, label, placeholder) of the install form, after the protocol.
INSTALL_FIELDS = [
    ("name", "Name", "e.g. reality1"),
    ("port", "Port", "the port clients connect to"),
    ("listen", "Listen on", "0.0.0.0"),
    ("host", "Client address", "default: this machine's"),
    ("sni", "SNI", "vless-reality: a real site; TLS: the certificate name"),
    ("dest", "Dest", "vless-reality: HOST:PORT (default SNI:443)"),
    ("method", "Cipher", "shadowsocks: default 2022-blake3-aes-128-gcm"),
]


class InstallForm(ModalScreen[Server | None]):
    """`vpn server install`: the fields are checked by ServerCreate; the install (keys, render,
    validate with the engine, start, probe) runs in a worker while a progress bar moves."""

    DEFAULT_CSS = """
    InstallForm { align: center middle; }
    InstallForm > VerticalScroll {
        width: 80; max-width: 100%; height: auto; max-height: 100%;
        border: thick $accent; background: $panel; padding: 0 1;
    }
    InstallForm .row { height: auto; }
    InstallForm .row Label { width: 16; padding-top: 0; }
    InstallForm .row Input, InstallForm .row Select { width: 1fr; }
    InstallForm .message { color: $error; padding-left: 16; height: auto; display: none; }
    InstallForm .message.shown { display: block; }
    InstallForm #progress-row { height: auto; display: none; }
    InstallForm #progress-row.busy { display: block; }
    InstallForm #buttons { height: auto; align-horizontal: right; }
    InstallForm #buttons Button { margin-left: 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "install", "Install"),
    ]

    @property
    def vpn(self) -> VpnApp:
        return cast("VpnApp", self.app)

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = "Install a server"
            with Horizontal(classes="row"):
                yield Label("Protocol")
                yield Select(
                    [(p.value, p.value) for p in Protocol],
                    value=Protocol.VLESS_REALITY.value,
                    allow_blank=False,
                    id="f-protocol",
                    compact=True,
                )
            yield Static("", id="m-protocol", classes="message", markup=False)
            for field, label, placeholder in INSTALL_FIELDS:
                with Horizontal(classes="row"):
                    yield Label(label)
                    value = "0.0.0.0" if field == "listen" else ""
                    yield Input(value, placeholder=placeholder, id=f"f-{field}", compact=True)
                yield Static("", id=f"m-{field}", classes="message", markup=False)
            with VerticalScroll(id="progress-row"):
                yield Label("", id="progress-text")
                yield ProgressBar(total=None, show_eta=False, id="progress")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Install", id="install", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#f-name", Input).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "install":
            self.submit()
        else:
            self.dismiss(None)

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self.submit()

    def action_install(self) -> None:
        self.submit()

    def action_cancel(self) -> None:
        if not self.query_one("#progress-row").has_class("busy"):
            self.dismiss(None)

    def build(self) -> ServerCreate | dict[str, str]:
        data: dict[str, Any] = {"protocol": self.query_one("#f-protocol", Select).value}
        for input_ in self.query(Input):
            if input_.id and input_.value.strip():
                data[input_.id.removeprefix("f-")] = input_.value.strip()
        try:
            return ServerCreate.model_validate(data)
        except ValidationError as exc:
            errors: dict[str, str] = {}
            for error in exc.errors():
                loc = [str(part) for part in error["loc"]]
                field = (
                    loc[0] if loc and loc[0] in {f for f, _, _ in INSTALL_FIELDS} else "protocol"
                )
                reason = str(error["msg"]).removeprefix("Value error, ")
                errors.setdefault(field, reason[:1].upper() + reason[1:] + ".")
            return errors

    def show_errors(self, errors: dict[str, str]) -> None:
        for message in self.query(".message").results(Static):
            text = errors.get((message.id or "").removeprefix("m-"), "")
            message.update(text)
            message.set_class(bool(text), "shown")

    def submit(self) -> None:
        if self.query_one("#progress-row").has_class("busy"):
            return
        built = self.build()
        if isinstance(built, dict):
            self.show_errors(built)
            return
        self.show_errors({})
        self.run_worker(self._install(built), group="install", exit_on_error=False)

    async def _install(self, create: ServerCreate) -> None:
        import time

        row = self.query_one("#progress-row")
        row.add_class("busy")
        self.query_one("#install", Button).disabled = True
        text = self.query_one("#progress-text", Label)
        began = time.monotonic()

        def tick() -> None:
            text.update(
                f"Installing {create.name}: keys, config, validation by the engine, start, probe "
                f"… {time.monotonic() - began:.0f} s"
            )

        tick()
        timer = self.set_interval(1.0, tick)
        try:
            server = await self.vpn.backend.servers.install(create)
        except VpnError as exc:
            self.app.push_screen(ErrorDialog("Install failed", exc.message, exc.hint))
            return
        except Exception as exc:
            self.app.push_screen(
                ErrorDialog("Install failed", f"Unexpected internal error: {exc!r}", None)
            )
            return
        finally:
            timer.stop()
            row.remove_class("busy")
            self.query_one("#install", Button).disabled = False
        self.app.notify(f"{server.name} is running on port {server.port}.")
        self.dismiss(server)


class ServerDetail(ModalScreen[None]):
    """`vpn server status`, `vpn server usage` and `vpn server logs` of one server."""

    DEFAULT_CSS = """
    ServerDetail { align: center middle; }
    ServerDetail > VerticalScroll {
        width: 100%; height: 100%; border: thick $accent; background: $panel; padding: 0 1;
    }
    ServerDetail #status { height: auto; }
    ServerDetail #usage { height: auto; max-height: 12; }
    ServerDetail Log { height: 1fr; min-height: 8; border: round $primary; }
    ServerDetail .title { text-style: bold; margin-top: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.server_name = name

    @property
    def vpn(self) -> VpnApp:
        return cast("VpnApp", self.app)

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = f"{self.server_name}: stats and logs"
            yield Static("reading …", id="status", markup=False)
            yield Label("Traffic by user (the engine's counters since it started)", classes="title")
            table: DataTable[str] = DataTable(id="usage", cursor_type="row")
            table.add_columns("USER", "UPLOAD", "DOWNLOAD")
            yield table
            yield Label("Logs (the end)", classes="title")
            yield Log(id="server-log", highlight=False)

    def on_mount(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        start(self, self._load)

    async def _load(self) -> None:
        from vpn_manager.tui.app import Failed

        servers = self.vpn.backend.servers
        try:
            status = await self.vpn.attempt(servers.status(self.server_name), "Reading the status")
        except Failed:
            return
        lines = [
            f"wanted      {status.desired.value}",
            f"running     {'yes, pid ' + str(status.pid) if status.running else 'no'}",
            f"healthy     {'yes' if status.healthy else 'no'} ({status.detail})",
            f"port open   {'yes' if status.port_open else 'no'}; "
            f"API {'answers' if status.api_ok else 'does not answer'}",
            f"memory      {format_size(status.rss_bytes) if status.rss_bytes else '-'}",
            f"config      {status.config_file}",
            f"log         {status.log_file}",
            *(f"warning     {warning}" for warning in status.warnings),
        ]
        self.query_one("#status", Static).update("\n".join(lines))
        table = self.query_one("#usage", DataTable)
        table.clear()
        if status.running:
            try:
                usage = await servers.usage(self.server_name)
            except VpnError as exc:
                table.add_row(exc.message, "", "")
            else:
                for user, (up, down) in sorted(usage.items()):
                    table.add_row(user, format_size(up), format_size(down))
                if not usage:
                    table.add_row("no traffic counted yet", "", "")
        else:
            table.add_row("not running", "", "")
        log = self.query_one(Log)
        log.clear()
        log.write_lines(await servers.read_logs(self.server_name, 200) or [NO_LOG_LINES])

    def action_close(self) -> None:
        self.dismiss(None)
