"""The Logs screen over real files in the logs directory: level filter, search, follow, export,
and the line menu (copy, save, filter by this, clear) by F10 and right-click."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, Select, Switch

from tests.tui.conftest import choose, make_app, open_screen, screen_text, settle
from vpn_manager.settings import Paths
from vpn_manager.tui.logs import ExportDialog, LogsView, level_of, topic_of
from vpn_manager.tui.widgets import ContextMenu, MenuTable

LINES = [
    "+0000 2026-11-20 12:00:00 INFO router: updated default interface eth0",
    "+0000 2026-11-20 12:00:01 WARN inbound/shadowsocks[in]: handshake timed out",
    "+0000 2026-11-20 12:00:02 ERROR inbound/shadowsocks[in]: bad key from 192.0.2.7",
    "+0000 2026-11-20 12:00:03 DEBUG dns: cache hit",
    "2026/11/20 12:00:04 [Warning] core: Xray 1.8 started",
]


def write_log(paths: Paths, name: str, lines: list[str]) -> Path:
    paths.logs_dir.mkdir(parents=True, exist_ok=True)
    path = paths.logs_dir / f"{name}.log"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def shown(view: LogsView) -> list[str]:
    return list(view.shown)


def test_levels_and_topics_as_the_engines_write_them() -> None:
    assert [level_of(line) for line in LINES] == ["info", "warning", "error", "debug", "warning"]
    assert level_of("a line without a level") == "info"
    assert topic_of(LINES[2]) == "inbound/shadowsocks[in]"
    assert topic_of("no level and no colon") == "no level and no colon"


async def test_level_search_and_the_line_menu(home: Paths, tmp_path: Path) -> None:  # noqa: PLR0915
    write_log(home, "edge", LINES)
    write_log(home, "other", ["INFO other: hello"])
    app = make_app(home)
    async with app.run_test(size=(120, 30)) as pilot:
        await open_screen(pilot, "4")
        view = app.query_one(LogsView)
        assert view.source() == "edge"
        assert shown(view) == LINES
        await pilot.press("l", "l")  # info+, then warning+
        await settle(pilot)
        assert shown(view) == [LINES[1], LINES[2], LINES[4]]
        app.query_one("#log-level", Select).clear()
        await pilot.press("slash", *"bad key")
        await settle(pilot)
        assert shown(view) == [LINES[2]]
        app.query_one("#log-search", Input).value = ""
        await settle(pilot)

        # F10 on the second line → "Filter by this": its component becomes the search.
        table = app.query_one("#log-table", MenuTable)
        table.focus()
        await pilot.press("down", "f10")
        await pilot.pause()
        assert isinstance(app.screen, ContextMenu)
        await choose(pilot, "Filter by this")
        assert app.query_one("#log-search", Input).value == "inbound/shadowsocks[in]"
        assert shown(view) == [LINES[1], LINES[2]]

        # Right-click → Save writes that line to a file.
        saved = tmp_path / "line.log"
        await pilot.click("#log-table", offset=(10, 2), button=3)
        await pilot.pause()
        await choose(pilot, "Save")
        assert isinstance(app.screen, ExportDialog)
        app.screen.query_one(Input).value = str(saved)
        await pilot.press("enter")
        await settle(pilot)
        assert saved.read_text() == LINES[2] + "\n"
        assert saved.stat().st_mode & 0o777 == 0o600

        # Right-click → Copy puts the line on the clipboard.
        await pilot.click("#log-table", offset=(10, 1), button=3)
        await pilot.pause()
        await choose(pilot, "Copy")
        assert app.clipboard == LINES[1]

        # x exports what is shown.
        app.query_one("#log-search", Input).value = ""
        await settle(pilot)
        exported = tmp_path / "all.log"
        table.focus()
        await pilot.press("x")
        await pilot.pause()
        app.screen.query_one(Input).value = str(exported)
        await pilot.press("enter")
        await settle(pilot)
        assert exported.read_text().splitlines() == LINES

        # The other source.
        app.query_one("#log-source", Select).value = "other"
        await settle(pilot)
        assert shown(view) == ["INFO other: hello"]


async def test_clear_then_follow_shows_only_new_lines(home: Paths) -> None:
    path = write_log(home, "edge", LINES)
    app = make_app(home)
    async with app.run_test(size=(120, 30)) as pilot:
        await open_screen(pilot, "4")
        view = app.query_one(LogsView)
        await pilot.press("f10")
        await pilot.pause()
        await choose(pilot, "Clear")
        assert shown(view) == []
        assert "0 of 0 lines (since the clear)" in screen_text(app)
        await pilot.press("f")
        await pilot.pause()
        assert app.query_one("#log-follow", Switch).value is True
        with path.open("a") as handle:
            handle.write("+0000 2026-11-20 12:01:00 ERROR router: new trouble\n")
        await pilot.pause(1.5)  # the follow timer reads the grown file
        await settle(pilot)
        assert shown(view) == ["+0000 2026-11-20 12:01:00 ERROR router: new trouble"]
        assert "following" in screen_text(app)


async def test_a_long_line_wraps_in_its_row(home: Paths) -> None:
    words = " ".join(f"w{i:03d}" for i in range(100))  # 499 characters
    long = f"+0000 2026-11-20 12:00:05 WARN {words} END"
    assert len(long) > 500
    write_log(home, "edge", [long, LINES[2]])
    app = make_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_screen(pilot, "4")
        text = screen_text(app)
        # Every word is on the screen, none cut off at the edge, and the next line follows.
        assert all(f"w{i:03d}" in text for i in range(100))
        assert "END" in text
        assert "bad key from 192.0.2.7" in text
        table = app.query_one("#log-table", MenuTable)
        assert table.rows[next(iter(table.rows))].height >= 500 // 100
        # Narrower: it wraps again, at the new width.
        await pilot.resize_terminal(60, 40)
        await settle(pilot)
        text = screen_text(app)
        assert all(f"w{i:03d}" in text for i in range(100))
        assert max(len(line.rstrip()) for line in text.splitlines()) <= 60
