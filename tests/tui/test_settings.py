"""The Settings screen: values are checked by the Settings model before anything is written; a
good change is written to config.toml (atomically, 0600) and is what `vpn` loads next."""

from __future__ import annotations

import tomllib

from textual.widgets import Input, Static

from tests.tui.conftest import make_app, open_screen, screen_text, settle
from vpn_manager.settings import Paths, load_settings
from vpn_manager.tui.settings_view import SettingsView, dump_toml


def field(app: object, key: str) -> Input:
    from textual.app import App

    assert isinstance(app, App)
    return app.query_one(f"#s-{key.replace('.', '-')}", Input)


async def test_invalid_values_show_messages_and_write_nothing(home: Paths) -> None:
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, "5")
        assert field(app, "timezone").value == "UTC"
        field(app, "timezone").focus()  # as when typing in it
        field(app, "timezone").value = "Mars/Olympus"
        field(app, "service.metrics_port").value = "70000"
        await pilot.press("ctrl+s")
        await settle(pilot)
        view = app.query_one(SettingsView)
        messages = {m.id: str(m.render()) for m in view.query(".message.shown").results(Static)}
        assert messages == {
            "e-timezone": "Unknown time zone 'Mars/Olympus'.",
            "e-service-metrics_port": "Input should be less than or equal to 65535.",
        }
    assert not home.config_file.exists()


async def test_a_good_change_is_saved_and_loaded(home: Paths) -> None:
    home.config_file.parent.mkdir(parents=True)
    home.config_file.write_text('[database]\nurl = "sqlite:///' + str(home.database_file) + '"\n')
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, "5")
        field(app, "timezone").focus()
        field(app, "timezone").value = "Europe/Berlin"
        field(app, "service.poll_interval_s").value = "30"
        await pilot.press("ctrl+s")
        await settle(pilot)
        notes = [str(n.message) for n in app._notifications]
        assert f"Saved timezone, service.poll_interval_s to {home.config_file}." in notes
        assert app.backend.settings.timezone == "Europe/Berlin"
        assert "Europe/Berlin" in screen_text(app)
    data = tomllib.loads(home.config_file.read_text())
    assert data["timezone"] == "Europe/Berlin"
    assert data["service"] == {"poll_interval_s": 30}
    assert data["database"]["url"].startswith("sqlite:///")  # kept
    assert home.config_file.stat().st_mode & 0o777 == 0o600
    loaded = load_settings(home)
    assert (loaded.timezone, loaded.service.poll_interval_s) == ("Europe/Berlin", 30.0)


def test_dump_toml_reads_back() -> None:
    data = {"timezone": "Asia/Tokyo", "log_level": "debug", "service": {"metrics_port": 0}}
    assert tomllib.loads(dump_toml(data)) == data
    quoted = {"database": {"url": 'postgresql://u:p"w@h/db'}}
    assert tomllib.loads(dump_toml(quoted)) == quoted
