"""The install form (`vpn server install` in the TUI): the fields are checked by ServerCreate as
the CLI's are, and the install runs in a worker while a progress bar moves."""

from __future__ import annotations

import time
from typing import Any, ClassVar, cast

from pydantic import ValidationError
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, ProgressBar, Select, Static

from vpn_manager.errors import VpnError
from vpn_manager.models.server import Protocol, Server, ServerCreate
from vpn_manager.tui.shell import Shell
from vpn_manager.tui.widgets import ErrorDialog

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
    def vpn(self) -> Shell:
        return cast("Shell", self.app)

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
