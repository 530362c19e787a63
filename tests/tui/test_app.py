"""The app as a whole: it starts on a fresh home (in-process and as the real `vpn tui`), every
screen opens, the theme choice survives a restart, `?` shows the keys, and `vpn --help` stays
free of Textual."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from textual.widgets import TabbedContent

from tests.tui.conftest import make_app, open_screen, screen_text, settle
from vpn_manager.settings import Paths
from vpn_manager.tui.state import LIGHT, state_file
from vpn_manager.tui.widgets import HelpScreen

VPN = Path(sys.executable).parent / "vpn"


async def test_every_screen_opens_on_a_fresh_home(home: Paths) -> None:
    app = make_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "no servers yet" in screen_text(app)
        assert "nothing needs attention" in screen_text(app)
        expected = {
            "2": "No users yet: press n to add one.",
            "3": "No servers yet: press i to install one",
            "4": "No logs in",
            "5": "timezone",
            "1": "Traffic, last 24 hours",
        }
        for key, text in expected.items():
            await open_screen(pilot, key)
            assert text in screen_text(app), key
        assert app.query_one(TabbedContent).active == "dashboard"
    assert app.return_code in (None, 0)


def test_vpn_tui_starts_on_a_fresh_home(tmp_path: Path) -> None:
    """The real command, with Textual's headless driver: it opens each screen and quits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VPN_", "XDG_"))}
    env |= {
        "VPN_HOME": str(tmp_path / "home"),
        "HOME": str(tmp_path),
        "TEXTUAL_DRIVER": "textual.drivers.headless_driver:HeadlessDriver",
        "TEXTUAL_PRESS": "2,3,2,4,3,5,4,1,q",  # quick keys, screens built on the way
    }
    done = subprocess.run(
        [str(VPN), "tui"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert (tmp_path / "home" / "data" / "vpn.db").exists()


async def test_the_theme_is_remembered(home: Paths) -> None:
    app = make_app(home)
    assert app.theme == "textual-dark"
    async with app.run_test() as pilot:
        await settle(pilot)
        await pilot.press("t")
        await pilot.pause()
        assert app.theme == LIGHT
    assert json.loads(state_file(home).read_text()) == {"theme": LIGHT}
    again = make_app(home)
    async with again.run_test() as pilot:
        await settle(pilot)
        assert again.theme == LIGHT
        await pilot.press("t")
        await pilot.pause()
    assert make_app(home).theme == "textual-dark"


def test_a_damaged_state_file_means_the_default_theme(home: Paths) -> None:
    state_file(home).parent.mkdir(parents=True)
    state_file(home).write_text("{not json")
    assert make_app(home).theme == "textual-dark"


async def test_question_mark_shows_the_keys(home: Paths) -> None:
    app = make_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert "F10 or right-click" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


def test_vpn_help_lists_tui_without_loading_textual() -> None:
    code = (
        "import sys; sys.argv = ['vpn', '--help']\n"
        "from vpn_manager.cli.entry import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('textual' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VPN_")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert " tui " in done.stdout
    assert done.stdout.rstrip().endswith("False")


async def test_failures_become_a_notification_or_a_dialog(home: Paths) -> None:
    """Our own errors are a notification with the hint (in the TUI's words); anything else is a
    dialog. The app runs on either way."""
    import pytest

    from vpn_manager.errors import NotFound
    from vpn_manager.tui.shell import Failed
    from vpn_manager.tui.widgets import ErrorDialog

    async def not_found() -> None:
        raise NotFound("No user 'zed'.", hint="See `vpn user list`.")

    async def broken() -> None:
        raise RuntimeError("boom")

    app = make_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        with pytest.raises(Failed):
            await app.attempt(not_found(), "Reading")
        await pilot.pause()
        assert [str(n.message) for n in app._notifications] == [
            "No user 'zed'.\nhint: See the Users screen (2)."  # the TUI's words, not the CLI's
        ]
        with pytest.raises(Failed):
            await app.attempt(broken(), "Reading")
        await pilot.pause()
        assert isinstance(app.screen, ErrorDialog)
        assert "Unexpected internal error: RuntimeError: boom" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ErrorDialog)
    assert app.return_code in (None, 0)
