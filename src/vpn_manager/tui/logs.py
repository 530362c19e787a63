"""Logs: the engines' logs and any other log in the logs directory (`vpn locate` shows where),
with search, a level filter, follow, and export to a file. Each line has a context menu: copy,
save, filter by this, clear."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, cast

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Select, Static, Switch
from textual.widgets.data_table import ColumnKey

from vpn_manager.errors import VpnError
from vpn_manager.fsutil import atomic_write
from vpn_manager.services.logfiles import log_files, read_log
from vpn_manager.tui.shell import Shell
from vpn_manager.tui.widgets import ContextMenu, MenuItem, MenuTable, View

FOLLOW_S = 1.0
LEVEL_WIDTH = 7
MIN_LINE_WIDTH = 20
LEVELS = ("debug", "info", "warning", "error")
# Level words as the engines write them: sing-box "INFO", Xray "[Warning]", wireguard-go
# "DEBUG:", Python logging "WARNING".
_LEVEL = re.compile(
    r"\b(?P<word>TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL|PANIC|CRITICAL)\b", re.IGNORECASE
)
_RANK = {"trace": 0, "debug": 0, "info": 1, "warn": 2, "warning": 2, "error": 3, "fatal": 3}
_RANK |= {"panic": 3, "critical": 3}
LOG_MENU = [
    MenuItem("copy", "Copy"),
    MenuItem("save", "Save"),
    MenuItem("filter", "Filter by this"),
    MenuItem("clear", "Clear"),
]


def level_of(line: str) -> str:
    """The line's level as one of LEVELS (a line without one counts as info)."""
    match = _LEVEL.search(line[:80])
    rank = _RANK[match.group("word").lower()] if match else 1
    return LEVELS[rank]


def topic_of(line: str) -> str:
    """What "filter by this" searches for: the part of the message before its first ': ' (the
    component, e.g. `inbound/vless[in]`), else the whole message, without time and level."""
    match = _LEVEL.search(line[:80])
    rest = line[match.end() :] if match else line
    rest = rest.lstrip(" ]:")
    head, sep, _ = rest.partition(": ")
    return (head if sep and head else rest).strip()


class ExportDialog(ModalScreen[Path | None]):
    """Where to write the lines (mode 0600, written atomically)."""

    DEFAULT_CSS = """
    ExportDialog { align: center middle; }
    ExportDialog > Vertical {
        width: 80; max-width: 100%; height: auto; border: thick $accent; background: $panel;
        padding: 1 2;
    }
    ExportDialog Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    ExportDialog Button { margin-left: 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, default: Path) -> None:
        super().__init__()
        self.dialog_title = title
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.dialog_title
            yield Label("Write to file:")
            yield Input(str(self.default), id="export-path")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Write", id="write", variant="primary")
        yield Footer()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "write":
            self._write()
        else:
            self.dismiss(None)

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self._write()

    def _write(self) -> None:
        text = self.query_one("#export-path", Input).value.strip()
        self.dismiss(Path(text).expanduser() if text else None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class LogsView(View):
    DEFAULT_CSS = """
    LogsView { height: 1fr; }
    LogsView .bar { height: auto; }
    LogsView #log-source { width: 30; }
    LogsView #log-level { width: 16; }
    LogsView #log-search { width: 1fr; }
    LogsView .bar { margin-bottom: 1; }
    LogsView .bar Label { padding: 0 1; }
    LogsView #log-follow { border: none; height: 1; padding: 0; }
    LogsView MenuTable { height: 1fr; }
    LogsView #logs-status { height: 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search", key_display="/"),
        Binding("l", "level", "Level"),
        Binding("f", "follow", "Follow"),
        Binding("x", "export", "Export"),
        Binding("c", "clear", "Clear"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []  # all lines of the source (after a clear: since then)
        self.shown: list[str] = []
        self.cleared: dict[str, int] = {}  # source → file size at the clear
        self._log_size: int | None = None

    @property
    def vpn(self) -> Shell:
        return cast("Shell", self.app)

    def compose(self) -> ComposeResult:
        with Horizontal(classes="bar"):
            yield Select[str]([], prompt="no logs yet", id="log-source", compact=True)
            yield Select(
                [(f"{level}+", level) for level in LEVELS],
                prompt="any level",
                id="log-level",
                compact=True,
            )
            yield Input(placeholder="search", id="log-search", compact=True)
            yield Label("follow")
            yield Switch(value=False, id="log-follow")
        table = MenuTable(id="log-table")
        table.add_column("LEVEL", key="level", width=LEVEL_WIDTH)
        table.add_column("LINE", key="line", width=MIN_LINE_WIDTH)
        yield table
        yield Static("", id="logs-status")

    def on_mount(self) -> None:
        self.set_interval(FOLLOW_S, self._follow)

    # -- sources and lines ---------------------------------------------------------------------
    def sources(self) -> dict[str, Path]:
        return log_files(self.vpn.backend.paths.logs_dir)

    def source(self) -> str | None:
        value = self.query_one("#log-source", Select).value
        return value if isinstance(value, str) else None

    def reload(self) -> None:
        sources = self.sources()
        select = self.query_one("#log-source", Select)
        current = self.source()
        with select.prevent(Select.Changed):
            select.set_options([(name, name) for name in sources])
            if current in sources:
                select.value = current
            elif sources:
                select.value = next(iter(sources))
        self.read_source()

    def show_source(self, name: str) -> None:
        """Show a server's log (from the servers' menu)."""
        sources = self.sources()
        self.reload()
        if name in sources:
            self.query_one("#log-source", Select).value = name
            self.read_source()
        else:
            self.app.notify(f"{name} has written no log yet.", severity="warning")

    def read_source(self) -> None:
        name = self.source()
        path = self.sources().get(name) if name else None
        if path is None:
            self.lines, self._log_size = [], None
        else:
            self.lines = read_log(path, self.cleared.get(path.stem))
            self._log_size = path.stat().st_size if path.exists() else None
        self.apply_filter()

    def apply_filter(self) -> None:
        search = self.query_one("#log-search", Input).value.strip().lower()
        level = self.query_one("#log-level", Select).value
        floor = LEVELS.index(level) if isinstance(level, str) else 0
        self.shown = [
            line
            for line in self.lines
            if (not search or search in line.lower()) and LEVELS.index(level_of(line)) >= floor
        ]
        table = self.query_one(MenuTable)
        table.clear()
        width = self.fit_line_column(table)
        console = self.app.console
        for index, line in enumerate(self.shown):
            # A long line wraps in its row (the row as high as its wrapped text): the whole line
            # stays readable without scrolling sideways. Text, not str: a line's "[Warning]"
            # is the engine's, not markup.
            text = Text(line)
            height = len(text.wrap(console, width)) if cell_len(line) > width else 1
            table.add_row(level_of(line), text, key=str(index), height=height)
        if self.following and self.shown:
            table.move_cursor(row=len(self.shown) - 1, animate=False)
        name = self.source()
        if name is None:
            status = f"No logs in {self.vpn.backend.paths.logs_dir} yet."
        else:
            status = f"{name}: {len(self.shown)} of {len(self.lines)} lines"
            if name in self.cleared:
                status += " (since the clear)"
            if self.following:
                status += ", following"
        self.query_one("#logs-status", Static).update(status)

    def fit_line_column(self, table: MenuTable) -> int:
        """Make the LINE column as wide as the table leaves it (past the level column, the cells'
        padding and the scrollbar), so that long lines wrap there; returns that width."""
        spare = table.size.width - LEVEL_WIDTH - 4 * table.cell_padding
        width = max(MIN_LINE_WIDTH, spare - table.styles.scrollbar_size_vertical)
        column = table.columns[ColumnKey("line")]
        column.width, column.auto_width = width, False
        return width

    def on_resize(self) -> None:
        self.apply_filter()

    @property
    def following(self) -> bool:
        return self.query_one("#log-follow", Switch).value

    def _follow(self) -> None:
        """While follow is on, re-read the source when it grew (or was rotated)."""
        if not self.following or (name := self.source()) is None:
            return
        path = self.sources().get(name)
        size = path.stat().st_size if path is not None and path.exists() else None
        if size != self._log_size:
            self.read_source()

    # -- events --------------------------------------------------------------------------------
    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "log-source":
            self.read_source()
        else:
            self.apply_filter()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "log-search":
            self.apply_filter()

    def on_switch_changed(self, _event: Switch.Changed) -> None:
        self.read_source()

    def on_menu_table_menu_requested(self, event: MenuTable.MenuRequested) -> None:
        index = int(event.row_key)
        if index >= len(self.shown):
            return
        line = self.shown[index]

        def chosen(action: str | None) -> None:
            if action == "copy":
                self.app.copy_to_clipboard(line)
                self.app.notify("Copied the line.")
            elif action == "save":
                self.export([line], "Save this line")
            elif action == "filter":
                self.query_one("#log-search", Input).value = topic_of(line)
            elif action == "clear":
                self.action_clear()

        self.app.push_screen(ContextMenu("Log line", LOG_MENU, event.at), chosen)

    # -- actions -------------------------------------------------------------------------------
    def action_search(self) -> None:
        self.query_one("#log-search", Input).focus()

    def action_level(self) -> None:
        select = self.query_one("#log-level", Select)
        current = select.value
        # any → info+ → warning+ → error+ → any (debug+ is the same as any)
        index = LEVELS.index(current) + 1 if isinstance(current, str) else 1
        if index >= len(LEVELS):
            select.clear()
        else:
            select.value = LEVELS[index]

    def action_follow(self) -> None:
        switch = self.query_one("#log-follow", Switch)
        switch.value = not switch.value

    def action_clear(self) -> None:
        """Hide what the source holds now; lines written from here on show."""
        name = self.source()
        path = self.sources().get(name) if name else None
        if path is not None:
            self.cleared[path.stem] = path.stat().st_size
            self.read_source()

    def action_export(self) -> None:
        self.export(self.shown, "Export the lines shown")

    def export(self, lines: list[str], title: str) -> None:
        name = self.source() or "log"
        default = Path.cwd() / f"{name}-export.log"

        def chosen(path: Path | None) -> None:
            if path is None:
                return
            try:
                atomic_write(path, "".join(line + "\n" for line in lines))
            except VpnError as exc:
                self.app.notify(exc.message, title="Not written", severity="error")
                return
            self.app.notify(f"Wrote {len(lines)} lines to {path}.")

        self.app.push_screen(ExportDialog(title, default), chosen)
