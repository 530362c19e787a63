"""The `vpn tui` application: five screens in tabs over one Backend, a theme that is remembered,
and the one place where errors become notifications or dialogs instead of crashes."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import ClassVar, TypeVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Header, TabbedContent, TabPane

from vpn_manager.errors import VpnError
from vpn_manager.settings import Paths, Settings
from vpn_manager.tui.backend import Backend, Clock, utcnow
from vpn_manager.tui.dashboard import DashboardView
from vpn_manager.tui.logs import LogsView
from vpn_manager.tui.servers import ServersView
from vpn_manager.tui.settings_view import SettingsView
from vpn_manager.tui.state import DARK, LIGHT, load_theme, save_theme
from vpn_manager.tui.users import UsersView
from vpn_manager.tui.widgets import ErrorDialog, HelpScreen

T = TypeVar("T")
TABS = ("dashboard", "users", "servers", "logs", "settings")


class Failed(Exception):
    """Raised by VpnApp.attempt after the failure was shown; callers just stop."""


class VpnApp(App[None]):
    TITLE = "vpn-manager"
    CSS = """
    TabPane { padding: 0 1; }
    .bar { height: auto; }
    .bar > * { margin-right: 1; }
    .muted { color: $text-muted; }
    .error { color: $error; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "show('dashboard')", "Dashboard"),
        Binding("2", "show('users')", "Users"),
        Binding("3", "show('servers')", "Servers"),
        Binding("4", "show('logs')", "Logs"),
        Binding("5", "show('settings')", "Settings"),
        Binding("t", "toggle_theme", "Theme"),
        Binding("escape", "leave_field", "Leave field", show=False),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, paths: Paths, settings: Settings, clock: Clock = utcnow) -> None:
        super().__init__()
        self.backend = Backend(paths, settings, clock)
        self.paths = paths
        self.theme = load_theme(paths)

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial="dashboard", id="tabs"):
            with TabPane("Dashboard", id="dashboard"):
                yield DashboardView()
            with TabPane("Users", id="users"):
                yield UsersView()
            with TabPane("Servers", id="servers"):
                yield ServersView()
            with TabPane("Logs", id="logs"):
                yield LogsView()
            with TabPane("Settings", id="settings"):
                yield SettingsView()
        yield Footer()

    async def on_unmount(self) -> None:
        await self.backend.close()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane
        for view in pane.query("DashboardView, UsersView, ServersView, LogsView, SettingsView"):
            reload = getattr(view, "reload", None)
            if reload is not None:
                reload()
        # Keys act on the screen just opened: focus its table (where it has one; the digits
        # that switch screens would type into a field).
        tables = list(pane.query("MenuTable"))
        if tables:
            self.call_after_refresh(tables[0].focus)

    def action_show(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_leave_field(self) -> None:
        """Escape in a field gives the keys back to the screen (digits switch screens again)."""
        self.query_one("#tabs ContentTabs").focus()

    def show_logs(self, source: str) -> None:
        """The Logs screen with one server's log (from the servers' menu)."""
        self.action_show("logs")
        self.query_one(LogsView).show_source(source)

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT if self.theme == DARK else DARK
        try:
            save_theme(self.paths, self.theme)
        except VpnError as exc:
            self.notify(exc.message, title="Theme not saved", severity="warning")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def attempt(self, work: Awaitable[T], what: str) -> T:
        """Await a service call; show its failure (a notification for our own errors, a dialog for
        anything unexpected) and raise Failed so the caller stops, instead of crashing the app."""
        try:
            return await work
        except VpnError as exc:
            text = exc.message + (f"\nhint: {exc.hint}" if exc.hint else "")
            self.notify(text, title=f"{what} failed", severity="error", timeout=8)
            raise Failed from None
        except Exception as exc:
            self.push_screen(
                ErrorDialog(
                    f"{what} failed",
                    f"Unexpected internal error: {type(exc).__name__}: {exc}",
                    "Please report it, with what you did.",
                )
            )
            raise Failed from None

    def tell_applied(self) -> None:
        """Say how user changes reached each server, as the CLI does after `vpn user …`."""
        for note in self.backend.applied():
            self.notify(note, timeout=4)
