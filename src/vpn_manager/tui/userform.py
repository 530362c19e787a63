"""The create and edit forms for a user. Input goes through the same parsers (units) and the same
Pydantic models (UserCreate, UserUpdate) as `vpn user add/update`; each problem is shown under
its own field and nothing is saved until every field is right."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta, tzinfo
from typing import Any, ClassVar, TypeVar, cast

from pydantic import ValidationError
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static

from vpn_manager.errors import InvalidInput, VpnError
from vpn_manager.models import User, UserCreate, UserUpdate
from vpn_manager.tui.shell import Failed, Shell
from vpn_manager.tui.widgets import ErrorDialog, start
from vpn_manager.tui.wording import in_tui_words, who
from vpn_manager.units import (
    MOST_DAYS,
    format_size,
    parse_count,
    parse_expiry,
    parse_reset_period,
    parse_size,
    parse_span,
)

# (field, label, placeholder): the form's inputs, in order.
FIELDS = [
    ("name", "Name", "letters, digits, - _ ."),
    ("email", "E-mail", "optional"),
    ("note", "Note", "optional"),
    ("quota", "Quota", "50GB, 500MiB; empty = unlimited"),
    ("reset", "Quota resets", "never, daily, weekly, monthly, 30d"),
    ("expires", "Expires", "2027-01-31, 30d, 12h; empty = never"),
    ("first_use_days", "Expire after first use", "days; empty = off"),
    ("devices", "Devices at once", "empty = unlimited"),
    ("plan", "Plan", "a name from vpn plan list; fields above win"),
    ("servers", "Servers", "names, comma separated (new users only)"),
]
# Model field -> form field, to put a validation message under the right input.
MODEL_FIELDS = {
    "name": "name",
    "new_name": "name",
    "email": "email",
    "note": "note",
    "quota_bytes": "quota",
    "reset_period": "reset",
    "expires_at": "expires",
    "expire_after_days": "first_use_days",
    "device_limit": "devices",
    "plan": "plan",
}


def last_day(user: User, zone: tzinfo) -> str:
    """The last day the user still works (an expiry at midnight ends the day before), as the
    CLI shows it."""
    if user.expires_at is None:
        return ""
    return (user.expires_at.astimezone(zone) - timedelta(microseconds=1)).strftime("%Y-%m-%d")


def initial_values(user: User | None, zone: tzinfo) -> dict[str, str]:
    if user is None:
        return {field: "" for field, _, _ in FIELDS}
    return {
        "name": user.name,
        "email": user.email or "",
        "note": user.note or "",
        "quota": format_size(user.quota_bytes) if user.quota_bytes else "",
        "reset": user.reset_period,
        "expires": last_day(user, zone),
        "first_use_days": str(user.expire_after_days or ""),
        "devices": str(user.device_limit or ""),
        "plan": user.plan or "",
        "servers": ", ".join(user.servers),
    }


R = TypeVar("R")


class _SavingForm(ModalScreen[R | None]):
    """What the user forms share: Enter or Save saves once (a second Enter while it saves does
    nothing), Cancel or Esc dismisses with None unless a save is under way (the table is read
    again when it ends). Subclasses write `_save_once`."""

    def __init__(self) -> None:
        super().__init__()
        self._saving = False

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self.action_save()

    def action_cancel(self) -> None:
        if not self._saving:
            self.dismiss(None)

    def action_save(self) -> None:
        if not self._saving:
            self._saving = True
            start(self, self._save)

    async def _save(self) -> None:
        try:
            await self._save_once()
        finally:
            self._saving = False

    async def _save_once(self) -> None:
        raise NotImplementedError


class UserForm(_SavingForm[User]):
    """New user (user=None) or edit one; dismissed with the saved user, or None."""

    DEFAULT_CSS = """
    UserForm { align: center middle; }
    UserForm > VerticalScroll {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: thick $accent; background: $panel; padding: 0 1;
    }
    UserForm .row { height: auto; }
    UserForm .row Label { width: 24; padding-top: 0; }
    UserForm .row Input { width: 1fr; }
    UserForm .message { color: $error; padding-left: 24; height: auto; display: none; }
    UserForm .message.shown { display: block; }
    UserForm #buttons { height: auto; align-horizontal: right; }
    UserForm #buttons Button { margin-left: 2; }
    UserForm #form-error { color: $error; height: auto; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    def __init__(self, user: User | None = None) -> None:
        super().__init__()
        self.user = user

    @property
    def vpn(self) -> Shell:
        return cast("Shell", self.app)

    def compose(self) -> ComposeResult:
        values = initial_values(self.user, self.vpn.backend.settings.zone)
        with VerticalScroll() as box:
            box.border_title = f"Edit {self.user.name}" if self.user else "New user"
            for field, label, placeholder in FIELDS:
                if field == "servers" and self.user is not None:
                    continue  # access is granted per server (vpn user grant), not edited here
                with Horizontal(classes="row"):
                    yield Label(label)
                    yield Input(
                        values[field], placeholder=placeholder, id=f"f-{field}", compact=True
                    )
                yield Static("", id=f"m-{field}", classes="message", markup=False)
            yield Static("", id="form-error", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Save", id="save", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#f-name", Input).focus()

    def values(self) -> dict[str, str]:
        return {
            input_.id.removeprefix("f-"): input_.value.strip()
            for input_ in self.query(Input)
            if input_.id
        }

    def show_errors(self, errors: dict[str, str]) -> None:
        for field, _, _ in FIELDS:
            for message in self.query(f"#m-{field}").results(Static):
                message.update(errors.get(field, ""))
                message.set_class(field in errors, "shown")
        self.query_one("#form-error", Static).update(errors.get("", ""))

    def build(self) -> UserCreate | UserUpdate | dict[str, str]:
        """The model to save, or the problems by field. New users: every field given; edits:
        only the fields that changed, as `vpn user update` takes only the options given."""
        values = self.values()
        zone = self.vpn.backend.settings.zone
        before = initial_values(self.user, zone)
        wanted = (
            values
            if self.user is None
            else {k: v for k, v in values.items() if v != before.get(k, "")}
        )
        data: dict[str, Any] = {}
        errors: dict[str, str] = {}
        now = self.vpn.backend.clock()

        def expiry(text: str) -> Any:
            return parse_expiry(text or "never", now=now, zone=zone)

        parsers: dict[str, tuple[str, Callable[[str], Any]]] = {
            "quota": ("quota_bytes", lambda t: parse_size(t or "0")),
            "reset": ("reset_period", lambda t: parse_reset_period(t or "never")),
            "expires": ("expires_at", expiry),
            "first_use_days": (
                "expire_after_days",
                lambda t: parse_count(t or "0", "day count", MOST_DAYS),
            ),
            "devices": ("device_limit", lambda t: parse_count(t or "0", "device limit")),
        }
        for field, text in wanted.items():
            if field in parsers:
                if self.user is None and not text:
                    continue
                key, parse = parsers[field]
                try:
                    data[key] = parse(text)
                except InvalidInput as exc:
                    errors[field] = in_tui_words(exc.message + (f" {exc.hint}" if exc.hint else ""))
            elif field in ("email", "note"):
                data[field] = text or None
            elif field == "plan" and (text or self.user is not None):
                data["plan"] = text or None  # emptied: the user keeps their limits, not the plan
            elif field == "name":
                data["name" if self.user is None else "new_name"] = text
        try:
            if self.user is None:
                model: UserCreate | UserUpdate = UserCreate.model_validate(data)
            else:
                model = UserUpdate.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors():
                loc = [str(part) for part in error["loc"]]
                field = MODEL_FIELDS.get(loc[0], "") if loc else ""
                reason = str(error["msg"]).removeprefix("Value error, ")
                errors.setdefault(field, in_tui_words(reason) + ".")
        return errors or model

    async def _save_once(self) -> None:
        built = self.build()
        if isinstance(built, dict):
            self.show_errors(built)
            return
        self.show_errors({})
        users = self.vpn.backend.users
        try:
            if isinstance(built, UserCreate):
                servers = [s.strip() for s in self.values()["servers"].split(",") if s.strip()]
                saved = (await self.vpn.attempt(users.add([built], servers=servers), "Adding"))[0]
            elif not built.changes():
                self.show_errors({"": "Nothing changed."})
                return
            else:
                assert self.user is not None
                saved = await self.vpn.attempt(users.update(self.user.name, built), "Saving")
        except Failed:
            return
        self.vpn.tell_applied()
        self.dismiss(saved)


class ExtendForm(_SavingForm[list[User]]):
    """`vpn user update NAME… --extend SPAN`: the span is checked as `--extend` checks it, then
    given to the same service call; a refusal (a bad span, an expiry past the last day) is one
    sentence under the field and nothing changes. Dismissed with the users as they are now, or
    None."""

    DEFAULT_CSS = """
    ExtendForm { align: center middle; }
    ExtendForm > Vertical {
        width: 70; max-width: 100%; height: auto; max-height: 100%;
        border: thick $accent; background: $panel; padding: 0 1;
    }
    ExtendForm > Vertical > Label { width: 100%; }
    ExtendForm .row { height: auto; margin-top: 1; }
    ExtendForm .row Label { width: 12; }
    ExtendForm .row Input { width: 1fr; }
    ExtendForm #m-extend { color: $error; height: auto; }
    ExtendForm #buttons { height: auto; align-horizontal: right; }
    ExtendForm #buttons Button { margin-left: 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Extend"),
    ]

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names

    @property
    def vpn(self) -> Shell:
        return cast("Shell", self.app)

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Extend"
            yield Label(
                f"Move the expiry of {who(self.names)} on, from the later of now and their "
                "expiry, by:"
            )
            with Horizontal(classes="row"):
                yield Label("Extend by")
                yield Input(placeholder="30d, 2w, 12h", id="f-extend", compact=True)
            yield Static("", id="m-extend", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Extend", id="save", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#f-extend", Input).focus()

    async def _save_once(self) -> None:
        message = self.query_one("#m-extend", Static)
        span = self.query_one("#f-extend", Input).value.strip()
        try:
            if not span:
                raise InvalidInput("Give a length of time, such as 30d.")
            parse_span(span)  # its own sentence if it is no span, as `--extend` says it
            users = await self.vpn.backend.extend(self.names, span)
        except VpnError as exc:
            message.update(in_tui_words(exc.message))
            return
        except Exception as exc:
            self.app.push_screen(
                ErrorDialog("Extending failed", f"Unexpected internal error: {exc!r}", None)
            )
            return
        self.dismiss(users)
