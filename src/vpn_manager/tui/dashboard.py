"""Dashboard: the servers and their state, users by status, traffic (the last 24 hours from the
usage history and the rate now) and what needs attention."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, cast

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Label, Sparkline, Static

from vpn_manager.models import User, UserStatus
from vpn_manager.tui.servers import protocol_text
from vpn_manager.tui.shell import Failed, Shell
from vpn_manager.tui.widgets import View
from vpn_manager.units import format_rate, format_size

if TYPE_CHECKING:
    from vpn_manager.models.server import Server

MIN_REFRESH_S = 2.0
RATE_WINDOW_S = 3600.0  # the live chart keeps the last hour of samples
QUOTA_WARN = 0.8
EXPIRY_WARN = timedelta(days=3)


@dataclass
class Snapshot:
    servers: list[Server]
    counts: dict[str, int]
    users: list[User]
    hourly: list[int]  # bytes per hour, oldest first, the last 24 hours


def alerts(servers: list[Server], users: list[User], now: datetime) -> list[str]:
    """What needs attention: servers wanted running that are not, users near their quota or
    their expiry (and those already cut off by either)."""
    out = [
        f"server {s.name} is down (wanted running): start it or see its logs"
        for s in servers
        if s.desired.value == "running" and not s.running
    ]
    for user in users:
        used = user.period_upload_bytes + user.period_download_bytes
        if user.status is UserStatus.OVER_QUOTA:
            out.append(f"user {user.name} is over quota")
        elif user.status is UserStatus.EXPIRED:
            out.append(f"user {user.name} has expired")
        elif user.quota_bytes and used >= QUOTA_WARN * user.quota_bytes:
            out.append(
                f"user {user.name} used {used * 100 // user.quota_bytes}% of "
                f"{format_size(user.quota_bytes)}"
            )
        elif user.expires_at and user.status is UserStatus.ACTIVE:
            left = user.expires_at - now
            if left <= EXPIRY_WARN:
                hours = max(0, int(left.total_seconds() // 3600))
                out.append(f"user {user.name} expires in {hours} h")
    return out


class DashboardView(View):
    DEFAULT_CSS = """
    DashboardView { height: 1fr; }
    DashboardView #top { height: auto; max-height: 50%; }
    DashboardView #servers-box { width: 1fr; height: auto; }
    DashboardView #counts-box { width: 18; height: auto; margin-left: 1; }
    DashboardView #servers-state { width: 100%; height: auto; max-height: 8; }
    DashboardView Sparkline { height: 2; }
    DashboardView .title { text-style: bold; }
    DashboardView #alerts-box { height: 1fr; }
    DashboardView #alerts { height: auto; color: $warning; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._totals: tuple[int, int, float] | None = None
        self._rates: deque[float] = deque()
        self._times: deque[float] = deque()

    @property
    def vpn(self) -> Shell:
        return cast("Shell", self.app)

    def compose(self) -> ComposeResult:
        with Horizontal(id="top"):
            with Vertical(id="servers-box"):
                yield Label("Servers", classes="title")
                table: DataTable[str] = DataTable(id="servers-state", cursor_type="none")
                table.add_columns("NAME", "PROTOCOL", "PORT", "STATE", "USERS")
                yield table
            with Vertical(id="counts-box"):
                yield Label("Users", classes="title")
                yield Static("", id="counts")
        yield Static("Traffic, last 24 hours", id="history-title", classes="title")
        yield Sparkline([], id="history")
        yield Static("Traffic now", id="rate-title", classes="title")
        yield Sparkline([], id="rates")
        yield Label("Alerts", classes="title")
        with VerticalScroll(id="alerts-box"):
            yield Static("", id="alerts", markup=False)

    def on_mount(self) -> None:
        # The totals change only when `vpn serve` polls the engines: refresh at its pace.
        every = max(MIN_REFRESH_S, self.vpn.backend.settings.service.poll_interval_s)
        self.set_interval(every, self._tick)

    def _tick(self) -> None:
        if self.is_showing():
            self.reload()

    async def _snapshot(self) -> Snapshot:
        backend = self.vpn.backend
        now = backend.clock()
        servers = await backend.servers.all()
        counts = await backend.users.counts()
        users = await backend.users.list()
        hourly = await backend.history.last_day(now)  # what `vpn stats` reads
        return Snapshot(servers, counts, users, hourly)

    async def read(self) -> None:
        try:
            snap = await self.vpn.attempt(self._snapshot(), "Reading the dashboard")
        except Failed:
            return
        self._show(snap)

    def _show(self, snap: Snapshot) -> None:
        table = self.query_one("#servers-state", DataTable)
        table.clear()
        for s in snap.servers:
            state = "running" if s.running else "stopped"
            if s.running != (s.desired.value == "running"):
                state += f" (wanted {s.desired.value})"
            table.add_row(s.name, protocol_text(s), str(s.port), state, str(s.users), key=s.name)
        if not snap.servers:
            table.add_row("no servers yet", "press 3, then i", "", "", "")
        total = sum(snap.counts.values())
        lines = [f"{total} in all"] + [
            f"{status.value:<11} {snap.counts.get(status.value, 0)}" for status in UserStatus
        ]
        self.query_one("#counts", Static).update("\n".join(lines))
        self.query_one("#history", Sparkline).data = snap.hourly
        self.query_one("#history-title", Static).update(
            f"Traffic, last 24 hours (usage history): {format_size(sum(snap.hourly))}, "
            f"peak hour {format_size(max(snap.hourly))}"
        )
        self._sample(snap.users)
        found = alerts(snap.servers, snap.users, self.vpn.backend.clock())
        self.query_one("#alerts", Static).update(
            "\n".join(f"! {a}" for a in found) or "nothing needs attention"
        )

    def _sample(self, users: list[User]) -> None:
        """Rates from how the users' totals grew since the last refresh (what `vpn serve`
        counted), kept for an hour for the live chart."""
        up = sum(u.upload_bytes for u in users)
        down = sum(u.download_bytes for u in users)
        now = time.monotonic()
        text = "Traffic now: ↑ -  ↓ -  (from the second refresh on)"
        if self._totals is not None:
            up0, down0, then = self._totals
            span = now - then
            if span > 0:
                up_bps = max(0, int((up - up0) * 8 / span))
                down_bps = max(0, int((down - down0) * 8 / span))
                self._rates.append(float(up_bps + down_bps))
                self._times.append(now)
                while self._times and now - self._times[0] > RATE_WINDOW_S:
                    self._times.popleft()
                    self._rates.popleft()
                text = f"Traffic now: ↑ {format_rate(up_bps)}  ↓ {format_rate(down_bps)}"
        self._totals = (up, down, now)
        # One sample is no chart (Sparkline would draw it as a full bar).
        self.query_one("#rates", Sparkline).data = list(self._rates) if len(self._rates) > 1 else []
        self.query_one("#rate-title", Static).update(text)
