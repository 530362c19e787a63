"""Settings: the effective settings and where things live; the safe ones editable. A change is
validated by the same Settings model `vpn` loads, then config.toml is written atomically.

Not editable here: the database URL (changing it under a running app would point it at another
database, and it may hold a password) and the paths (they come from flags and the environment).
"""

from __future__ import annotations

import json
import os
from typing import Any, ClassVar, cast

from pydantic import ValidationError
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, Static

from vpn_manager.errors import VpnError
from vpn_manager.fsutil import atomic_write
from vpn_manager.settings import Settings, effective_settings, load_settings, read_config_file
from vpn_manager.tui.shell import Shell
from vpn_manager.tui.widgets import View

# Dotted key → what it means. The order is the form's.
EDITABLE = {
    "timezone": "zone for typed dates and calendar resets",
    "log_level": "debug, info, warning or error",
    "output.format": "the CLI's default: table, json, yaml or plain",
    "service.poll_interval_s": "seconds between `vpn serve` polls",
    "service.metrics_port": "Prometheus on 127.0.0.1 (0: off)",
    "database.busy_timeout_ms": "how long SQLite waits on a lock",
    "database.connect_timeout_s": "how long to wait for PostgreSQL",
}


def get_dotted(data: dict[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def typed(text: str) -> Any:
    """A form value as TOML would hold it: a number when it reads as one, else the string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


def dump_toml(data: dict[str, Any]) -> str:
    """The settings file: top-level keys first, then one table per section."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for key, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{key}]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


def env_name(key: str) -> str:
    return "VPN_" + key.replace(".", "__").upper()


class SettingsView(View):
    DEFAULT_CSS = """
    SettingsView { height: 1fr; }
    SettingsView .row { height: auto; }
    SettingsView .row Label { width: 28; padding-top: 0; }
    SettingsView .row Input { width: 24; }
    SettingsView .row .hint { width: 1fr; padding-left: 1; color: $text-muted; }
    SettingsView .message { color: $error; padding-left: 28; height: auto; display: none; }
    SettingsView .message.shown { display: block; }
    SettingsView #settings-buttons { height: auto; margin-top: 1; }
    SettingsView #settings-buttons Button { margin-right: 2; }
    SettingsView #fixed { margin-top: 1; height: auto; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+s", "save", "Save")]

    @property
    def vpn(self) -> Shell:
        return cast("Shell", self.app)

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("", id="settings-source", classes="muted", markup=False)
            for key, hint in EDITABLE.items():
                with Horizontal(classes="row"):
                    yield Label(key)
                    yield Input(id=f"s-{key.replace('.', '-')}", compact=True)
                    yield Static(hint, classes="hint", markup=False)
                yield Static("", id=f"e-{key.replace('.', '-')}", classes="message", markup=False)
            with Horizontal(id="settings-buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Revert", id="revert")
            yield Static("", id="fixed", markup=False)

    def effective(self) -> dict[str, Any]:
        return effective_settings(self.vpn.backend.settings)

    def reload(self) -> None:
        data = self.effective()
        for key in EDITABLE:
            value = get_dotted(data, key)
            self.query_one(f"#s-{key.replace('.', '-')}", Input).value = (
                "" if value is None else str(value)
            )
        paths = self.vpn.backend.paths
        overridden = [env_name(key) for key in EDITABLE if env_name(key) in os.environ]
        source = f"Saved to {paths.config_file}; the environment and flags win over it."
        if overridden:
            source += f" Set in the environment now: {', '.join(overridden)}."
        self.query_one("#settings-source", Static).update(source)
        fixed = [f"{'database.url':<28}{data['database']['url'] or 'SQLite in the data dir'}"]
        fixed += [f"{name:<28}{where}" for name, where in paths.as_dict().items()]
        self.query_one("#fixed", Static).update("\n".join(fixed))
        self.show_errors({})

    def show_errors(self, errors: dict[str, str]) -> None:
        for key in EDITABLE:
            message = self.query_one(f"#e-{key.replace('.', '-')}", Static)
            message.update(errors.get(key, ""))
            message.set_class(key in errors, "shown")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.action_save()
        else:
            self.reload()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def action_save(self) -> None:
        """Only the values that differ from the effective ones go into the file; the whole file
        is validated before anything is written."""
        paths = self.vpn.backend.paths
        try:
            data = read_config_file(paths.config_file)
        except VpnError as exc:
            self.app.notify(exc.message, title="Not saved", severity="error")
            return
        effective = self.effective()
        changed = []
        for key in EDITABLE:
            text = self.query_one(f"#s-{key.replace('.', '-')}", Input).value.strip()
            if text != str(get_dotted(effective, key)):
                set_dotted(data, key, typed(text))
                changed.append(key)
        if not changed:
            self.app.notify("Nothing changed.")
            return
        try:
            Settings.model_validate(data)
        except ValidationError as exc:
            errors: dict[str, str] = {}
            for error in exc.errors():
                key = ".".join(str(part) for part in error["loc"])
                reason = str(error["msg"]).removeprefix("Value error, ")
                errors.setdefault(key, reason[:1].upper() + reason[1:] + ".")
            self.show_errors(errors)
            return
        try:
            atomic_write(paths.config_file, dump_toml(data))
            self.vpn.backend.settings = load_settings(paths)
        except VpnError as exc:
            self.app.notify(exc.message, title="Not saved", severity="error")
            return
        self.app.notify(f"Saved {', '.join(changed)} to {paths.config_file}.")
        self.reload()
