"""Servers: the list with each one's state; install and settings (the forms are in
serverform.py); start, stop, restart, key rotation and remove; a server's stats (status,
per-user traffic) and its logs."""

from __future__ import annotations

from typing import ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Label, Log, Static

from vpn_manager.errors import VpnError
from vpn_manager.models.server import Server
from vpn_manager.tui.serverform import InstallForm, ServerSettingsForm
from vpn_manager.tui.shell import Failed, Shell
from vpn_manager.tui.widgets import (
    ConfirmDialog,
    ContextMenu,
    MenuItem,
    MenuTable,
    View,
    start,
)
from vpn_manager.units import format_size

COLUMNS = [
    ("name", "NAME"),
    ("protocol", "PROTOCOL"),
    ("engine", "ENGINE"),
    ("address", "ADDRESS"),
    ("state", "STATE"),
    ("users", "USERS"),
    ("sni", "SNI/METHOD"),
]


# Actions that ask first: the question ({} is the server) and the button that says yes.
CONFIRM = {
    "remove": ("Remove server {}? Its users lose access through it.", "Remove"),
    "rotate": (
        "New keys for {}? Every user's link changes: each user needs the new link (or a "
        "subscription update) to connect again. A running server restarts.",
        "Rotate keys",
    ),
}


def protocol_text(server: Server) -> str:
    """The protocol and, for a server with a transport of choice (vless, trojan, vmess on
    Xray), the transport and security: `trojan+ws/tls`. A vless-reality server, and a Trojan or
    VMess one still on sing-box, has none stored and says its protocol alone."""
    network, security = server.settings.get("network"), server.settings.get("security")
    if network and security:
        return f"{server.protocol.value}+{network}/{security}"
    return server.protocol.value


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
        MenuItem("settings", "Settings"),
        MenuItem("rotate", "Rotate keys"),
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
        Binding("e", "settings", "Settings"),
        Binding("k", "rotate_keys", "Rotate keys"),
        Binding("delete", "remove", "Remove"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.servers: dict[str, Server] = {}
        self.cursor_to: str | None = None  # the row the next read puts the cursor on

    @property
    def vpn(self) -> Shell:
        return cast("Shell", self.app)

    def compose(self) -> ComposeResult:
        table = MenuTable(id="servers-table")
        for key, title in COLUMNS:
            table.add_column(title, key=key)
        yield table
        yield Static("", id="servers-status")

    async def read(self) -> None:
        try:
            servers = await self.vpn.attempt(self.vpn.backend.servers.all(), "Listing servers")
        except Failed:
            return
        self.servers = {s.name: s for s in servers}
        table = self.query_one(MenuTable)
        keep = table.selected_key()
        if self.cursor_to in self.servers:  # (a read already under way may not have it yet)
            keep, self.cursor_to = self.cursor_to, None
        table.clear()
        for s in servers:
            table.add_row(
                s.name,
                protocol_text(s),
                s.engine,
                f"{s.host}:{s.port}",
                state_text(s),
                str(s.users),
                str(s.sni or s.settings.get("method") or "-"),
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
        self.app.push_screen(InstallForm(), self._after_form)

    def _after_form(self, server: Server | None) -> None:
        """After an install or a settings change: the list again, the cursor on that server."""
        if server is not None:
            self.cursor_to = server.name
            self.reload()

    def action_settings(self) -> None:
        if (server := self.selected()) is not None:
            self.do(server.name, "settings")

    def action_rotate_keys(self) -> None:
        if (server := self.selected()) is not None:
            self.do(server.name, "rotate")

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
        if action in CONFIRM:
            question, yes = CONFIRM[action]

            def answered(answer: bool | None) -> None:
                if answer:
                    self.run_worker(self._act(name, action), exit_on_error=False)

            self.app.push_screen(ConfirmDialog(question.format(name), yes), answered)
        elif action == "settings":
            if (server := self.servers.get(name)) is not None:
                self.app.push_screen(ServerSettingsForm(server), self._after_form)
        elif action == "logs":
            self.run_worker(self.vpn.show_logs(name), exit_on_error=False)
        elif action == "stats":
            self.app.push_screen(ServerDetail(name))
        else:
            self.run_worker(self._act(name, action), group=f"server-{name}", exit_on_error=False)

    async def _act(self, name: str, action: str) -> None:
        servers = self.vpn.backend.servers
        calls = {
            "start": (servers.start, "Starting", "{} is running."),
            "stop": (servers.stop, "Stopping", "Stopped {}."),
            "restart": (servers.restart, "Restarting", "Restarted {}."),
            "remove": (servers.remove, "Removing", "Removed {}."),
            "rotate": (
                self.vpn.backend.rotate_keys,
                "Rotating the keys of",
                "New keys for {}: every user's link changed; send them the new ones.",
            ),
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
    def vpn(self) -> Shell:
        return cast("Shell", self.app)

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
        yield Footer()

    def on_mount(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        start(self, self._load)

    async def _load(self) -> None:
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
