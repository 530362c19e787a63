"""Dialogs to pick from a list: several entries (the servers to grant users access to, or to
take it away from), or one (the plan to give users); dismissed with what was picked, or None."""

from __future__ import annotations

from typing import ClassVar, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, OptionList, SelectionList, Static
from textual.widgets.option_list import Option

T = TypeVar("T")


class _ListDialog(ModalScreen[T | None]):
    """What the list dialogs share: a title, a question, (label, name) choices and the verb on
    the action's button; Esc or Cancel dismisses with None, ctrl+s or the button applies."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "done", "Apply"),
    ]

    def __init__(self, title: str, question: str, choices: list[tuple[str, str]], verb: str):
        """`choices` are (label, name) pairs; `verb` is the button's word (Grant, Revoke, …)."""
        super().__init__()
        self.dialog_title = title
        self.question = question
        self.choices = choices
        self.verb = verb

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "done":
            self.action_done()
        else:
            self.dismiss(None)

    def action_done(self) -> None:
        raise NotImplementedError

    def action_cancel(self) -> None:
        self.dismiss(None)


class PickDialog(_ListDialog[list[str]]):
    """Space (or a click) ticks an entry; ctrl+s or the button does the action with the ticked
    ones. Nothing ticked is a message, not an empty action."""

    DEFAULT_CSS = """
    PickDialog { align: center middle; }
    PickDialog > Vertical {
        width: 70; max-width: 100%; height: auto; max-height: 100%;
        border: thick $accent; background: $panel; padding: 0 1;
    }
    PickDialog Label { width: 100%; }
    PickDialog SelectionList { height: auto; max-height: 16; margin: 1 0 0 0; }
    PickDialog #pick-message { color: $error; height: auto; }
    PickDialog Horizontal { height: auto; align-horizontal: right; }
    PickDialog Button { margin-left: 2; }
    """

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.dialog_title
            yield Label(self.question)
            yield SelectionList[str](*self.choices, id="pick-list")
            yield Static("", id="pick-message", markup=False)
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button(self.verb, id="done", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(SelectionList).focus()

    def action_done(self) -> None:
        picked = list(self.query_one(SelectionList[str]).selected)
        if not picked:
            self.query_one("#pick-message", Static).update(
                "Tick one or more with space first (or Esc to cancel)."
            )
            return
        self.dismiss(picked)


class ChooseDialog(_ListDialog[str]):
    """One entry of a list (the plan to give users): Enter (or a click) on an entry chooses it;
    dismissed with its name, or None."""

    DEFAULT_CSS = """
    ChooseDialog { align: center middle; }
    ChooseDialog > Vertical {
        width: 70; max-width: 100%; height: auto; max-height: 100%;
        border: thick $accent; background: $panel; padding: 0 1;
    }
    ChooseDialog Label { width: 100%; }
    ChooseDialog OptionList { height: auto; max-height: 16; margin: 1 0; }
    ChooseDialog Horizontal { height: auto; align-horizontal: right; }
    ChooseDialog Button { margin-left: 2; }
    """

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.dialog_title
            yield Label(self.question)
            yield OptionList(*[Option(label, id=name) for label, name in self.choices])
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button(self.verb, id="done", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        menu = self.query_one(OptionList)
        menu.highlighted = 0
        menu.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_done(self) -> None:
        menu = self.query_one(OptionList)
        if menu.highlighted is not None:
            self.dismiss(menu.get_option_at_index(menu.highlighted).id)
