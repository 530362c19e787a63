"""The `vpn tui` application: five screens in tabs over one Backend, a theme that is remembered,
and the one place where errors become notifications or dialogs instead of crashes."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import Awaitable
from typing import TYPE_CHECKING, ClassVar, TypeVar, cast

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Header, TabbedContent, TabPane

from vpn_manager.errors import VpnError
from vpn_manager.settings import Paths, Settings
from vpn_manager.tui.backend import Backend, Clock, utcnow
from vpn_manager.tui.dashboard import DashboardView
from vpn_manager.tui.shell import Failed, Shell
from vpn_manager.tui.state import DARK, LIGHT, load_theme, save_theme
from vpn_manager.tui.widgets import ErrorDialog, HelpScreen, MenuTable, View
from vpn_manager.tui.wording import in_tui_words

if TYPE_CHECKING:
    from vpn_manager.tui.logs import LogsView

T = TypeVar("T")
QUIT_WAIT_S = 15.0
SCREENS = {
    "dashboard": "Dashboard",
    "users": "Users",
    "servers": "Servers",
    "logs": "Logs",
    "settings": "Settings",
}
# The view of every screen but the dashboard: (module, class), imported when the screen is first
# shown, so the first frame waits for none of them (the start-up budget of `vpn tui`).
VIEWS = {
    "users": ("vpn_manager.tui.users", "UsersView"),
    "servers": ("vpn_manager.tui.servers", "ServersView"),
    "logs": ("vpn_manager.tui.logs", "LogsView"),
    "settings": ("vpn_manager.tui.settings_view", "SettingsView"),
}


class MainScreen(Screen[None]):
    """The screen with the tabs. Whenever a dialog or form over it closes, the keys go back to
    the table of the screen shown (not to wherever Textual's saved focus was)."""

    def on_screen_resume(self) -> None:
        self.app.call_after_refresh(cast("VpnApp", self.app).focus_table)


class VpnApp(App[None]):
    TITLE = "vpn-manager"
    CSS = """
    TabPane { padding: 0 1; }
    .bar { height: auto; }
    .bar > * { margin-right: 1; }
    .muted { color: $text-muted; }
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
        self.ready = False  # set after the first frame
        self._views: dict[str, View] = {}

    def get_default_screen(self) -> Screen[None]:
        return MainScreen(id="_default")

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial="dashboard", id="tabs"):
            with TabPane("Dashboard", id="dashboard"):
                self._views["dashboard"] = DashboardView()
                yield self._views["dashboard"]
            # The other screens are built (and their modules imported) when first shown: the
            # first frame does not wait for them.
            for tab, title in list(SCREENS.items())[1:]:
                yield TabPane(title, id=tab)
        yield Footer()

    def on_ready(self) -> None:
        """Data is read after the first frame: the screen shows at once, then fills in."""
        self.ready = True
        self.reload_active()

    def make_view(self, tab: str) -> View:
        module, name = VIEWS[tab]
        view: View = getattr(importlib.import_module(module), name)()
        return view

    async def view(self, tab: str) -> View:
        """The view of a screen, built and mounted the first time it is needed (it reads its data
        when mounted while shown). Remembered at once, so quick keys never build it twice."""
        view = self._views.get(tab)
        if view is None:
            view = self._views[tab] = self.make_view(tab)
            await self.query_one(f"#{tab}", TabPane).mount(view)
        return view

    def reload_active(self) -> None:
        pane = self.query_one(TabbedContent).active_pane
        if pane is not None and pane.id in self._views:
            self._views[pane.id].reload()

    async def action_quit(self) -> None:
        """Let running work end first (up to QUIT_WAIT_S): cancelling a task in the middle of a
        database call or an install leaves cleanup noise or half-done work behind."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.workers.wait_for_complete(), QUIT_WAIT_S)
        self.exit()

    async def on_unmount(self) -> None:
        await self.backend.close()

    async def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = event.pane.id
        if not self.ready or tab is None:
            return
        view = self._views.get(tab)
        if view is None:
            await self.view(tab)
        elif view.is_mounted:
            view.reload()
        # Keys act on the screen just opened: focus its table (where it has one; the digits
        # that switch screens would type into a field).
        self.call_after_refresh(self.focus_table)

    def focus_table(self) -> None:
        """Focus the table of the screen shown, where it has one (the keys n, e, d … are its)."""
        pane = self.query_one(TabbedContent).active_pane
        tables = list(pane.query(MenuTable)) if pane is not None else []
        if tables and self.screen is self.screen_stack[0]:
            tables[0].focus()

    def action_show(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_leave_field(self) -> None:
        """Escape in a field gives the keys back to the screen (digits switch screens again):
        to its table where it has one, so that an extra Escape (after closing a dialog, say)
        never leaves n, e, d … without a table to act on."""
        pane = self.query_one(TabbedContent).active_pane
        if pane is not None and list(pane.query(MenuTable)):
            self.focus_table()
        else:
            self.query_one("#tabs ContentTabs").focus()

    async def show_logs(self, source: str) -> None:
        """The Logs screen with one server's log (from the servers' menu)."""
        self.action_show("logs")
        view = cast("LogsView", await self.view("logs"))
        view.show_source(source)

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
            text = in_tui_words(exc.message)
            text += f"\nhint: {in_tui_words(exc.hint)}" if exc.hint else ""
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


if TYPE_CHECKING:
    _: type[Shell] = VpnApp  # mypy checks that the app offers what its views expect of it
