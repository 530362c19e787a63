"""Fixtures for the TUI tests: an isolated home with a real SQLite database, the app built the way
`vpn tui` builds it (with a fixed clock), a helper to let workers finish, and asserted SVG
snapshots.

Snapshots: `await assert_snapshot(pilot, name, paths)` compares the screen's SVG with
tests/tui/snapshots/NAME.svg. The home directory (part of paths shown on screen) is replaced by a
placeholder of the same length and the SVG's content-hash id by a constant, so a snapshot
depends only on what the screen shows. To accept a change on purpose, run the tests with
VPN_UPDATE_SNAPSHOTS=1 and review the SVG diff; a missing snapshot fails otherwise.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from rich.console import Console
from textual.pilot import Pilot

from vpn_manager.models import User, UserCreate
from vpn_manager.settings import Paths, load_settings
from vpn_manager.storage import Database
from vpn_manager.tui.app import VpnApp
from vpn_manager.tui.widgets import ContextMenu

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from vpn_manager.storage.orm import ServerRow

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SNAPSHOTS = Path(__file__).parent / "snapshots"
HOME_PLACEHOLDER = "vpntui-snapshot"
SIZES = {"small": (80, 24), "large": (160, 48)}


def fixed_clock() -> datetime:
    return NOW


@pytest.fixture(autouse=True)
def _no_vpn_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the test's home alone, not from the caller's VPN_ variables."""
    for key in list(os.environ):
        if key.upper().startswith("VPN_") and key != "VPN_UPDATE_SNAPSHOTS":
            monkeypatch.delenv(key)


@pytest.fixture
def home(tmp_path: Path) -> Paths:
    return Paths.from_env({}, home=tmp_path / "home")


@pytest.fixture
def snap_home() -> Iterator[Paths]:
    """A home whose path has the same length on every machine (paths show on screen)."""
    root = Path("/tmp") / f"vpntui-{uuid.uuid4().hex[:8]}"
    try:
        yield Paths.from_env({}, home=root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home holding the snapshot data, made once per session (see `seed`)."""
    import asyncio

    root = tmp_path_factory.mktemp("seeded") / "home"
    asyncio.run(seed(Paths.from_env({}, home=root)))
    return root


@pytest.fixture
def seeded_home(snap_home: Paths, seeded_template: Path) -> Paths:
    """A fixed-length home with a copy of the snapshot data."""
    shutil.copytree(seeded_template, snap_home.config_dir.parent, dirs_exist_ok=True)
    return snap_home


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def two_servers(home: Paths) -> Paths:
    """A home with two real Shadowsocks servers, s1 and s2: installed (sing-box checked and
    started them), then stopped, so that the test runs no engine and changes to them are saved
    for their next start."""
    from vpn_manager.models.server import Protocol, ServerCreate
    from vpn_manager.services.servers import ServerService

    db = database(home)
    try:
        service = ServerService(db, home)
        for name in ("s1", "s2"):
            create = ServerCreate(
                name=name,
                protocol=Protocol.SHADOWSOCKS,
                port=free_port(),
                listen="127.0.0.1",
                host="127.0.0.1",
            )
            await service.install(create)
            await service.stop(name)
    finally:
        await db.close()
    return home


def make_app(paths: Paths) -> VpnApp:
    return VpnApp(paths, load_settings(paths), clock=fixed_clock)


async def settle(pilot: Pilot[None]) -> None:
    """Let messages, workers and the refresh after them run: a worker may start another (a save,
    then the table's reload), so wait until a round starts none (on a loaded machine the chain
    outlasts a fixed number of rounds)."""
    for _ in range(20):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if all(worker.is_finished for worker in pilot.app.workers):
            break


async def open_screen(pilot: Pilot[None], key: str) -> None:
    await pilot.press("escape", key)
    await settle(pilot)


async def choose(pilot: Pilot[None], label: str) -> None:
    """Pick an entry of the open context menu with the keyboard."""
    menu = pilot.app.screen
    assert isinstance(menu, ContextMenu)
    labels = [item.label for item in menu.items]
    for _ in range(labels.index(label)):
        await pilot.press("down")
    await pilot.press("enter")
    await settle(pilot)


@pytest.fixture
async def stopped_after(home: Paths) -> AsyncIterator[Paths]:
    """The home; every server in it is stopped when the test ends, whatever happened."""
    yield home
    from vpn_manager.services.servers import ServerService

    db = database(home)
    try:
        service = ServerService(db, home)
        for server in await service.all():
            await service.stop(server.name)
    finally:
        await db.close()


def database(paths: Paths) -> Database:
    return Database.from_settings(load_settings(paths), paths)


async def users_in(paths: Paths) -> dict[str, User]:
    """What the database holds, read through the same service the CLI uses."""
    from vpn_manager.services.users import UserService

    db = database(paths)
    try:
        return {user.name: user for user in await UserService(db).list()}
    finally:
        await db.close()


async def add_users(paths: Paths, *creates: UserCreate) -> None:
    from vpn_manager.services.users import UserService

    db = database(paths)
    try:
        await UserService(db, clock=fixed_clock).add(list(creates))
    finally:
        await db.close()


async def seed(paths: Paths) -> None:
    """Fixed data for the snapshots: four users (one near its quota, one disabled, one about to
    expire), a server that should run but does not, and 24 hours of traffic history, written
    through the services and the accounting storage."""
    from vpn_manager.services.users import UserService
    from vpn_manager.storage import accounting
    from vpn_manager.storage import users as user_repo

    gb = 1000**3
    await add_users(
        paths,
        UserCreate(name="alice", email="alice@example.com", quota_bytes=25 * gb),
        UserCreate(name="bob", note="laptop"),
        UserCreate(name="carol", expires_at=NOW + timedelta(days=1)),
        UserCreate(name="dave", quota_bytes=200 * gb, reset_period="monthly"),
    )
    db = database(paths)
    try:
        await UserService(db, clock=fixed_clock).disable(["bob"])
        async with db.session() as session:
            row = await insert_server(session, NOW, desired="running")
            ids = await user_repo.ids_for(session, ["alice", "dave"])
            for hours_ago in range(24):
                moved = (hours_ago % 6 + 1) * gb // 4
                await accounting.add_usage(
                    session,
                    row.id,
                    {ids["alice"]: (moved // 10, moved), ids["dave"]: (moved // 20, moved // 2)},
                    NOW - timedelta(hours=hours_ago),
                )
    finally:
        await db.close()


async def insert_server(session: AsyncSession, now: datetime, **values: Any) -> ServerRow:
    """A server row written straight to the database (no engine): by default a stopped
    Shadowsocks server `edge` on 8388; `values` replace the defaults."""
    from vpn_manager.storage import servers

    fields: dict[str, Any] = {
        "name": "edge",
        "protocol": "shadowsocks",
        "engine": "sing-box",
        "runtime": "native",
        "listen": "127.0.0.1",
        "port": 8388,
        "host": "127.0.0.1",
        "desired": "stopped",
        "settings": {"method": "2022-blake3-aes-128-gcm"},
        "secret": {},
    }
    return await servers.insert_server(session, fields | values, now)


def screen_text(app: VpnApp) -> str:
    """The screen as plain text (for failure messages and text assertions)."""
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), record=True, color_system=None
    )
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


def normalized_svg(app: VpnApp, paths: Paths) -> str:
    svg = app.export_screenshot(title="vpn tui")
    home = str(paths.config_dir.parent)
    assert len(home) == len("/tmp/") + len(HOME_PLACEHOLDER), home
    svg = svg.replace(home, "/tmp/" + HOME_PLACEHOLDER)
    return re.sub(r"terminal-\d+", "terminal-0", svg)


async def assert_snapshot(pilot: Pilot[None], name: str, paths: Paths) -> None:
    """The screen must look exactly like the committed snapshot, once it has settled: a
    DataTable sizes its columns to their cells on a later refresh than the one that adds the
    rows, so on a loaded machine the first picture can still have the headers' widths. A screen
    that never comes to match fails with what it showed last."""
    app = pilot.app
    assert isinstance(app, VpnApp)
    expected_file = SNAPSHOTS / f"{name}.svg"
    for _ in range(10):
        if not expected_file.exists() or os.environ.get("VPN_UPDATE_SNAPSHOTS") == "1":
            break
        if normalized_svg(app, paths) == expected_file.read_text(encoding="utf-8"):
            return
        await pilot.pause(0.3)
    actual = normalized_svg(app, paths)
    if os.environ.get("VPN_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOTS.mkdir(exist_ok=True)
        expected_file.write_text(actual, encoding="utf-8")
        return
    assert expected_file.exists(), (
        f"No snapshot {expected_file.name}; make it with VPN_UPDATE_SNAPSHOTS=1 and review it."
    )
    expected = expected_file.read_text(encoding="utf-8")
    if actual != expected:
        failed = Path("/tmp") / f"vpn-tui-{name}.actual.svg"
        failed.write_text(actual, encoding="utf-8")
        pytest.fail(
            f"The screen differs from snapshots/{name}.svg (this run's SVG: {failed}).\n"
            f"It shows:\n{screen_text(app)}\n{tables_state(app)}",
            pytrace=False,
        )


def tables_state(app: VpnApp) -> str:
    """What the screen's tables hold and how they measured it: a snapshot that keeps the
    headers' widths (seen twice on a loaded machine, never here) says which step was missed."""
    from textual.widgets import DataTable

    lines = []
    for table in app.screen.query(DataTable):
        widths = [(str(c.label), c.content_width) for c in table.ordered_columns]
        lines.append(
            f"#{table.id}: {table.row_count} rows, pending measure "
            f"{table._require_update_dimensions}, new rows {len(table._new_rows)}, "
            f"column widths {widths}"
        )
    return "\n".join(lines)
