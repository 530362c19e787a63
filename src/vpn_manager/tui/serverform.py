"""The server forms: install (`vpn server install`: the fields are checked by ServerCreate as the
CLI's are, and the install runs in a worker while a progress bar moves) and settings
(`vpn server set`)."""

from __future__ import annotations

import time
from typing import Any, ClassVar, cast

from pydantic import ValidationError
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, ProgressBar, Select, Static

from vpn_manager.errors import VpnError
from vpn_manager.kinds import (
    HTTP_NETWORKS,
    STREAM_PROTOCOLS,
    TRANSPORT_OPTIONS,
    XHTTP_MODES,
    Network,
    Security,
    default_security,
    transport_misfit,
)
from vpn_manager.models.server import (
    TLS_PROTOCOLS,
    Protocol,
    Server,
    ServerChange,
    ServerCreate,
)
from vpn_manager.tui.shell import Failed, Shell
from vpn_manager.tui.widgets import ConfirmDialog, ErrorDialog
from vpn_manager.tui.wording import in_tui_words

# (field, label, placeholder) of the install form's rows after the protocol: inputs, and selects
# for the fields in SELECTS. Each row shows only where it applies (`applies`).
INSTALL_FIELDS = [
    ("name", "Name", "e.g. reality1"),
    ("port", "Port", "the port clients connect to"),
    ("listen", "Listen on", "0.0.0.0"),
    ("host", "Client address", "default: this machine's"),
    ("transport", "Transport", ""),
    ("security", "Security", ""),
    ("sni", "SNI", ""),
    ("dest", "Dest", "HOST:PORT (default SNI:443)"),
    ("cert_file", "Certificate", "a PEM file of yours (default: self-signed)"),
    ("key_file", "Key", "its private key (PEM file)"),
    ("path", "Path", "e.g. /ws (default: a random one)"),
    ("service_name", "gRPC service", "default: a random one"),
    ("host_header", "Host header", "a CDN's name (default: the client address)"),
    ("xhttp_mode", "XHTTP mode", ""),
    ("decoy", "Decoy", "local (a small page; the default) or a site's HOST:PORT"),
    ("method", "Cipher", "default 2022-blake3-aes-128-gcm"),
]
# The install form's selects: field -> its choices, the first the default.
SELECTS: dict[str, list[str]] = {
    "transport": [n.value for n in Network],
    "security": [s.value for s in Security],
    "xhttp_mode": list(XHTTP_MODES),
}
SNI_HINTS = {
    "reality": "a real site that speaks TLS 1.3 (REALITY)",
    "tls": "the name in the certificate (default: the client address)",
}


def applies(field: str, protocol: Protocol, transport: Network, security: Security) -> bool:
    """Does the install form show `field` for this protocol, transport and security? The rows
    `vpn server install` takes options for with them; whether the values fit (REALITY over ws,
    a path without /) is ServerCreate's to say, as for the CLI."""
    stream = protocol in STREAM_PROTOCOLS
    reality = protocol is Protocol.VLESS_REALITY or (stream and security is Security.REALITY)
    shown = {
        "transport": stream,
        "security": stream,
        "sni": protocol is Protocol.VLESS_REALITY or protocol in TLS_PROTOCOLS | STREAM_PROTOCOLS,
        "dest": reality,
        "cert_file": not reality and (stream or protocol in TLS_PROTOCOLS),
        "key_file": not reality and (stream or protocol in TLS_PROTOCOLS),
        "path": stream and transport in HTTP_NETWORKS,
        "host_header": stream and transport in HTTP_NETWORKS,
        "service_name": stream and transport is Network.GRPC,
        "xhttp_mode": stream and transport is Network.XHTTP,
        "decoy": stream and not reality,
        "method": protocol is Protocol.SHADOWSOCKS,
    }
    return shown.get(field, True)


class ServerForm(ModalScreen[Server | None]):
    """What the server forms share: labelled fields with a message under each, buttons, and a
    footer with the form's keys. Dismissed with the server saved, or None."""

    DEFAULT_CSS = """
    ServerForm { align: center middle; }
    ServerForm > VerticalScroll {
        width: 80; max-width: 100%; height: auto; max-height: 100%;
        border: thick $accent; background: $panel; padding: 0 1;
    }
    ServerForm .row { height: auto; }
    ServerForm .row Label { width: 16; padding-top: 0; }
    ServerForm .row Input, ServerForm .row Select { width: 1fr; }
    ServerForm .message { color: $error; padding-left: 16; height: auto; display: none; }
    ServerForm .message.shown { display: block; }
    ServerForm #progress-row { height: auto; display: none; }
    ServerForm #progress-row.busy { display: block; }
    ServerForm #buttons { height: auto; align-horizontal: right; }
    ServerForm #buttons Button { margin-left: 2; }
    """

    @property
    def vpn(self) -> Shell:
        return cast("Shell", self.app)

    def field(self, field: str, label: str, value: str, placeholder: str) -> ComposeResult:
        with Horizontal(classes="row", id=f"r-{field}"):
            yield Label(label)
            yield Input(value, placeholder=placeholder, id=f"f-{field}", compact=True)
        yield Static("", id=f"m-{field}", classes="message", markup=False)

    def show_errors(self, errors: dict[str, str]) -> None:
        for message in self.query(".message").results(Static):
            text = errors.get((message.id or "").removeprefix("m-"), "")
            message.update(text)
            message.set_class(bool(text), "shown")

    def busy(self) -> bool:
        return self.query_one("#progress-row").has_class("busy")


class InstallForm(ServerForm):
    """`vpn server install`: the fields are checked by ServerCreate; the install (keys, render,
    validate with the engine, start, probe) runs in a worker while a progress bar moves."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "install", "Install"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = "Install a server"
            yield from self.choice("protocol", "Protocol", [p.value for p in Protocol])
            for field, label, placeholder in INSTALL_FIELDS:
                if field in SELECTS:
                    yield from self.choice(field, label, SELECTS[field])
                else:
                    value = "0.0.0.0" if field == "listen" else ""
                    yield from self.field(field, label, value, placeholder)
            with VerticalScroll(id="progress-row"):
                yield Label("", id="progress-text")
                yield ProgressBar(total=None, show_eta=False, id="progress")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Install", id="install", variant="primary")
        yield Footer()

    def choice(self, field: str, label: str, choices: list[str]) -> ComposeResult:
        with Horizontal(classes="row", id=f"r-{field}"):
            yield Label(label)
            yield Select(
                [(c, c) for c in choices],
                value=choices[0],
                allow_blank=False,
                id=f"f-{field}",
                compact=True,
            )
        yield Static("", id=f"m-{field}", classes="message", markup=False)

    def chosen(self) -> tuple[Protocol, Network, Security]:
        def value(field: str) -> str:
            return str(self.query_one(f"#f-{field}", Select).value)

        return Protocol(value("protocol")), Network(value("transport")), Security(value("security"))

    def shown(self) -> list[str]:
        """The fields that apply to the protocol, transport and security chosen."""
        chosen = self.chosen()
        return [field for field, _, _ in INSTALL_FIELDS if applies(field, *chosen)]

    def on_select_changed(self, event: Select.Changed) -> None:
        """A new protocol or transport sets Security to its default (REALITY for vless over
        raw, else TLS; choose it after them); then the rows that apply are shown, the others
        hidden (and not sent)."""
        if event.select.id in {"f-protocol", "f-transport"}:
            protocol, network, _ = self.chosen()
            security = self.query_one("#f-security", Select)
            default = default_security(protocol, network).value
            if security.value != default:
                security.value = default
        self.show_rows()

    def show_rows(self) -> None:
        """Show the rows that apply to what is chosen, hide the others (and their messages)."""
        protocol, network, security = self.chosen()
        for field, _, _ in INSTALL_FIELDS:
            shown = applies(field, protocol, network, security)
            self.query_one(f"#r-{field}").display = shown
            if not shown:
                self.query_one(f"#m-{field}", Static).set_class(False, "shown")
        reality = applies("dest", protocol, network, security)  # Dest: REALITY's alone
        self.query_one("#f-sni", Input).placeholder = SNI_HINTS["reality" if reality else "tls"]

    def on_mount(self) -> None:
        self.show_rows()
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
        if not self.busy():
            self.dismiss(None)

    def build(self) -> ServerCreate | dict[str, str]:
        """What the rows shown hold, checked by ServerCreate as `vpn server install`'s options
        are; or the problems by field (what is not one field's goes under Protocol)."""
        shown = self.shown()
        data: dict[str, Any] = {"protocol": self.query_one("#f-protocol", Select).value}
        for field in shown:
            if field in SELECTS:
                value = str(self.query_one(f"#f-{field}", Select).value)
                if field != "xhttp_mode" or value != "auto":  # auto: as without --xhttp-mode
                    data[field] = value
            elif text := self.query_one(f"#f-{field}", Input).value.strip():
                data[field] = text
        try:
            return ServerCreate.model_validate(data)
        except ValidationError as exc:
            errors: dict[str, str] = {}
            for error in exc.errors():
                loc = [str(part) for part in error["loc"]]
                field = loc[0] if loc and loc[0] in shown else "protocol"
                reason = str(error["msg"]).removeprefix("Value error, ")
                errors.setdefault(field, in_tui_words(reason) + ".")
            return errors

    def submit(self) -> None:
        if self.busy():
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
            self.app.push_screen(
                ErrorDialog(
                    "Install failed",
                    in_tui_words(exc.message),
                    in_tui_words(exc.hint) if exc.hint else None,
                )
            )
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


# (field, label, placeholder) of the settings form: what `vpn server set` changes.
SETTINGS_FIELDS = [
    ("port", "Port", "the port clients connect to"),
    ("host", "Client address", "the address in users' links"),
    ("sni", "SNI", "a real site that speaks TLS 1.3"),
    ("dest", "Dest", "HOST:PORT (default SNI:443)"),
    ("method", "Cipher", "2022-blake3-aes-128-gcm, aes-256-gcm, chacha20-ietf-poly1305, …"),
    ("decoy", "Decoy", "local (a small page) or an http:// site's HOST:PORT"),
    ("path", "Path", "e.g. /ws (every user's link changes)"),
    ("service_name", "gRPC service", "every user's link changes"),
    ("host_header", "Host header", "a CDN's name (every user's link changes)"),
    ("xhttp_mode", "XHTTP mode", "auto, packet-up, stream-up or stream-one"),
]
TLS_SNI = "the name in the certificate"


def is_reality(server: Server) -> bool:
    """vless-reality, or vless/trojan/vmess on Xray with REALITY."""
    return server.protocol is Protocol.VLESS_REALITY or server.settings.get("security") == (
        Security.REALITY.value
    )


def has_setting(server: Server, field: str) -> bool:
    """Does `vpn server set` take `field` for this server? SNI: REALITY's target or a TLS
    server's certificate name; Dest: REALITY's; Cipher: Shadowsocks'; Decoy: an Xray server's
    with TLS (which values it takes is the engine's to say)."""
    protocol = server.protocol
    if field == "sni":
        return protocol is Protocol.VLESS_REALITY or protocol in TLS_PROTOCOLS | STREAM_PROTOCOLS
    if field == "dest":
        return is_reality(server)
    if field == "method":
        return protocol is Protocol.SHADOWSOCKS
    if field == "decoy":  # Xray's TLS servers (a Trojan server on sing-box has no security)
        return server.settings.get("security") == Security.TLS.value
    if field in TRANSPORT_OPTIONS:  # an Xray vless, trojan or vmess server's transport's own
        network = str(server.settings.get("network"))
        networks = {n.value for n in Network}
        return network in networks and transport_misfit(field, Network(network)) is None
    return True


def setting_values(server: Server) -> dict[str, str]:
    return {
        "port": str(server.port),
        "host": server.host,
        "sni": server.sni or "",
        "dest": str(server.settings.get("dest") or ""),
        "method": str(server.settings.get("method") or ""),
        # Empty for a server stored before decoys (what it answers is the engine's to say).
        "decoy": str(server.settings.get("decoy") or ""),
        # Empty where the server has the default (the client address; XHTTP's auto).
        **{field: str(server.settings.get(field) or "") for field in TRANSPORT_OPTIONS},
    }


class ServerSettingsForm(ServerForm):
    """`vpn server set`: port, client address, SNI (REALITY's target site or a TLS server's
    certificate name), target (REALITY), cipher (shadowsocks), decoy (Xray with TLS), and the
    transport's path, Host header, gRPC service name or XHTTP mode (Xray's vless, trojan and
    vmess, where the transport has them). Only what was changed is sent; a change that gives
    every user a new link (a port, cipher, SNI or transport value, as `vpn server set` asks
    y/N) is confirmed first; the service validates it, restarts
    a running server on it and rolls back if the engine refuses it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    def __init__(self, server: Server) -> None:
        super().__init__()
        self.server = server
        self._asking = False  # from a save until the question (if any) is answered

    def fields(self) -> list[tuple[str, str, str]]:
        tls = not is_reality(self.server)
        return [
            (field, label, TLS_SNI if field == "sni" and tls else hint)
            for field, label, hint in SETTINGS_FIELDS
            if has_setting(self.server, field)
        ]

    def compose(self) -> ComposeResult:
        values = setting_values(self.server)
        with VerticalScroll() as box:
            box.border_title = f"Settings of {self.server.name} ({self.server.protocol.value})"
            for field, label, placeholder in self.fields():
                yield from self.field(field, label, values[field], placeholder)
            yield Static("", id="m-form", classes="message", markup=False)
            with VerticalScroll(id="progress-row"):
                yield Label("", id="progress-text")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Save", id="save", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#f-port", Input).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self.action_save()

    def action_cancel(self) -> None:
        if not self.busy():
            self.dismiss(None)

    def build(self) -> ServerChange | dict[str, str]:
        """The change (the fields that differ from the server's values), or the problems by
        field."""
        before = setting_values(self.server)
        data = {
            field: text
            for field, _, _ in self.fields()
            if (text := self.query_one(f"#f-{field}", Input).value.strip()) != before[field]
        }
        if not data:
            return {"form": "Nothing changed."}
        try:
            return ServerChange.model_validate(data)
        except ValidationError as exc:
            errors: dict[str, str] = {}
            for error in exc.errors():
                loc = [str(part) for part in error["loc"]]
                field = loc[0] if loc and loc[0] in data else "form"
                reason = str(error["msg"]).removeprefix("Value error, ")
                errors.setdefault(field, in_tui_words(reason) + ".")
            return errors

    def action_save(self) -> None:
        if self.busy() or self._asking:
            return
        built = self.build()
        if isinstance(built, dict):
            self.show_errors(built)
            return
        self.show_errors({})
        self._asking = True
        self.run_worker(self._ask_then_save(built), group="server-settings", exit_on_error=False)

    async def _ask_then_save(self, change: ServerChange) -> None:
        """Save, after a yes to the question when every user's link would change (as `vpn
        server set` asks y/N); a no changes nothing and leaves the form open."""
        try:
            question = await self._new_links_question(change)
        except Failed:
            self._asking = False
            return
        if question is None:
            self._asking = False
            await self._save(change)
            return

        def answered(yes: bool | None) -> None:
            self._asking = False
            if yes:
                self.run_worker(self._save(change), group="server-settings", exit_on_error=False)
            else:
                self.show_errors({"form": "Nothing was changed."})

        self.app.push_screen(ConfirmDialog(question, "Change links"), answered)

    async def _new_links_question(self, change: ServerChange) -> str | None:
        """The question to ask before the change gives every user of the server a new link;
        None when it gives none (or the server has no users)."""
        what = change.new_links()
        if not what:
            return None
        name = self.server.name
        server = await self.vpn.attempt(self.vpn.backend.servers.get(name), "Reading")
        if server.users == 0:
            return None
        return (
            f"With {' and '.join(what)}, the link of every user of {name} ({server.users}) "
            "changes: the old ones stop working and each user needs the new one (or a "
            "subscription update). Go ahead?"
        )

    async def _save(self, change: ServerChange) -> None:
        row = self.query_one("#progress-row")
        row.add_class("busy")
        self.query_one("#save", Button).disabled = True
        self.query_one("#progress-text", Label).update(
            f"Applying to {self.server.name}: validated by the engine, then a restart if it runs …"
        )
        try:
            server = await self.vpn.attempt(
                self.vpn.backend.change_server(self.server.name, change),
                f"Changing {self.server.name}",
            )
        except Failed:
            return
        finally:
            row.remove_class("busy")
            self.query_one("#save", Button).disabled = False
        self.app.notify(f"Saved the settings of {server.name}.")
        self.dismiss(server)
