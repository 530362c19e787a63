"""Pieces every screen uses: the table with a context menu, the menu itself, and the
confirmation, error and help dialogs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.geometry import Offset
from textual.message import Message
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, DataTable, Label, OptionList, Static, TabbedContent
from textual.widgets.option_list import Option


def start(
    node: Widget | ModalScreen[Any], work: Callable[[], Awaitable[None]], **options: Any
) -> None:
    """Run `work` in a worker; the coroutine is made only when the worker starts, so nothing
    is left un-awaited if the app quits first. Failures never end the app (exit_on_error)."""
    node.run_worker(cast(Any, work), exit_on_error=False, **options)


class View(Widget):
    """One of the app's screens (a tab). Its data is read when it is shown, not before: the
    first frame paints without waiting for the database.

    Reads are never cancelled half-way (a task cancelled inside a database call leaves
    SQLAlchemy a connection it cannot reset): a reload asked for while one runs makes that one
    read again when it ends."""

    _reading = False
    _again = False

    async def read(self) -> None:
        """Read the data and show it (views that read the database)."""

    def reload(self) -> None:
        if self._reading:
            self._again = True
            return
        self._reading = True
        start(self, self._read_until_current)

    async def _read_until_current(self) -> None:
        try:
            while True:
                self._again = False
                await self.read()
                if not self._again:
                    return
        finally:
            self._reading = False

    def on_mount(self) -> None:
        # Built when its screen was first shown: read the data now. (Textual calls this as well
        # as a subclass's own on_mount.)
        if getattr(self.app, "ready", False) and self.is_showing():
            self.reload()

    def is_showing(self) -> bool:
        pane = self.app.query_one(TabbedContent).active_pane
        return pane is not None and self in pane.query(View)


@dataclass(frozen=True)
class MenuItem:
    action: str
    label: str


class MenuTable(DataTable[str | Text]):
    """A DataTable whose rows have a context menu: right-click on a row, or F10 on the selected
    row. Either way the screen gets one MenuRequested message and shows the same menu. Cells
    are strings, or Text where a string could be taken for markup (log lines)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("f10", "menu", "Menu")]

    class MenuRequested(Message):
        def __init__(self, table: MenuTable, row_key: str, at: Offset | None) -> None:
            super().__init__()
            self.table = table
            self.row_key = row_key
            self.at = at

        @property
        def control(self) -> MenuTable:
            return self.table

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)

    def selected_key(self) -> str | None:
        if self.row_count == 0:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return row_key.value

    def action_menu(self) -> None:
        key = self.selected_key()
        if key is not None:
            region = self.content_region
            row = self.cursor_row - int(self.scroll_y) + (1 if self.show_header else 0)
            self.post_message(self.MenuRequested(self, key, Offset(region.x + 2, region.y + row)))

    async def _on_click(self, event: events.Click) -> None:
        if event.button != 3:
            return  # DataTable's own handler selects the row
        event.prevent_default()
        event.stop()
        meta = event.style.meta
        row = meta.get("row")
        if not isinstance(row, int) or row < 0 or row >= self.row_count:
            return
        self.move_cursor(row=row)
        key = self.selected_key()
        if key is not None:
            self.post_message(self.MenuRequested(self, key, event.screen_offset))


class ContextMenu(ModalScreen[str | None]):
    """A small list of actions next to the row it belongs to; dismissed with the chosen action
    (or None on Escape or a click outside)."""

    DEFAULT_CSS = """
    ContextMenu { background: $background 0%; align: left top; }
    ContextMenu > OptionList {
        width: auto; min-width: 18; max-width: 40; height: auto;
        border: round $accent; background: $panel;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss_menu", "Close", show=False)]

    def __init__(self, title: str, items: list[MenuItem], at: Offset | None = None) -> None:
        super().__init__()
        self.menu_title = title
        self.items = items
        self.at = at

    def compose(self) -> ComposeResult:
        menu = OptionList(*[Option(item.label, id=item.action) for item in self.items])
        menu.border_title = self.menu_title
        yield menu

    def on_mount(self) -> None:
        menu = self.query_one(OptionList)
        if self.at is not None:
            width, height = self.app.size
            x = max(0, min(self.at.x, width - 24))
            y = max(0, min(self.at.y, height - len(self.items) - 2))
            menu.styles.offset = (x, y)
        menu.highlighted = 0
        menu.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def on_click(self, event: events.Click) -> None:
        if self.get_widget_at(event.screen_x, event.screen_y)[0] is self:
            self.dismiss(None)

    def action_dismiss_menu(self) -> None:
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    """Yes or no, for anything that cannot be undone (delete, remove)."""

    DEFAULT_CSS = """
    ConfirmDialog { align: center middle; }
    ConfirmDialog > Vertical {
        width: 60; height: auto; border: thick $warning; background: $panel; padding: 1 2;
    }
    ConfirmDialog Label { width: 100%; }
    ConfirmDialog Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    ConfirmDialog Button { margin-left: 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "answer(False)", "No", show=False),
        Binding("y", "answer(True)", "Yes", show=False),
        Binding("n", "answer(False)", "No", show=False),
    ]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            with Horizontal():
                yield Button("Cancel", id="no")
                yield Button(self.yes, id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class ErrorDialog(ModalScreen[None]):
    """An error the user must read (an unexpected one, or a failed install): the message, the
    hint, and a button to close it. The app keeps running."""

    DEFAULT_CSS = """
    ErrorDialog { align: center middle; }
    ErrorDialog > Vertical {
        width: 70; height: auto; border: thick $error; background: $panel; padding: 1 2;
    }
    ErrorDialog #hint { color: $text-muted; margin-top: 1; }
    ErrorDialog Button { margin-top: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close", show=False)]

    def __init__(self, title: str, message: str, hint: str | None = None) -> None:
        super().__init__()
        self.error_title = title
        self.message = message
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.error_title
            yield Static(self.message, id="message", markup=False)
            if self.hint:
                yield Static(f"hint: {self.hint}", id="hint", markup=False)
            yield Button("Close", id="close", variant="primary")

    def on_button_pressed(self, _event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)


HELP_TEXT = """\
Screens     1 dashboard  2 users  3 servers  4 logs  5 settings
Everywhere  t light/dark theme (remembered)   ? this help   Esc leave a field   q quit
Tables      F10 or right-click: the row's menu   Enter: open the row
Users       n new   e edit   Enter view (links, QR)   d disable/enable   Del delete
            space mark   g grant   r revoke   u reset usage   x extend   p plan:
            the marked users, else this row
            / search   s sort by the next column (or click a header)
Servers     i install   Enter stats and logs   s start/stop   r restart   Del remove
            e settings (port, address, SNI, cipher)   k rotate keys
            (a new port, SNI, cipher or keys change every user's link: asked first)
Logs        / search   l level   f follow   x export to a file   c clear
Settings    change a value, then ctrl+s: checked before config.toml is written
Forms       ctrl+s or Enter saves, Esc cancels (the footer shows a form's keys)

Every action calls the same service method as its `vpn` command: changes to users
reach running servers live, as `vpn user …` does.
"""


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: 92; max-width: 100%; height: auto; max-height: 100%;
        border: thick $accent; background: $panel; padding: 1 2;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Keys"
            yield Static(HELP_TEXT, markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
