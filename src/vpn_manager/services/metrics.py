"""Prometheus metrics of the running service, in the text exposition format (served by
`vpn serve` on 127.0.0.1 only, daemon/metrics_http.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vpn_manager import storage
from vpn_manager.errors import VpnError
from vpn_manager.services.rounds import Rounds

if TYPE_CHECKING:
    from vpn_manager.storage.accounting import UserTotals
    from vpn_manager.storage.orm import ServerRow


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsPage:
    """The page, read fresh from the database and the runtime on every scrape. While the
    database cannot be used (the service's last round found it so, or this scrape), the users
    and servers last read are shown and vpn_database_up says 0; scrapes do not ask a database
    the service found down (its rounds do, with a backoff)."""

    def __init__(self, rounds: Rounds) -> None:
        self.rounds = rounds
        self.users: list[UserTotals] = []
        self.servers: list[ServerRow] = []

    async def __call__(self) -> str:
        readable = self.rounds.database_error is None
        if readable:
            try:
                async with self.rounds.db.reading() as session:  # plain rows, no models
                    self.users = list(await storage.accounting.user_totals(session))
                    self.servers = [row for row, _ in await storage.servers.list_servers(session)]
            except VpnError:
                readable = False
        return render(self.rounds, self.users, self.servers, readable)


def render(
    rounds: Rounds, users: list[UserTotals], servers: list[ServerRow], readable: bool
) -> str:
    """Every metric, from these rows and what the service holds."""
    lines: list[str] = []

    def family(name: str, kind: str, text: str) -> None:
        lines.extend([f"# HELP {name} {text}", f"# TYPE {name} {kind}"])

    up = int(readable and rounds.database_error is None)
    family(
        "vpn_database_up",
        "gauge",
        "Whether the service's last round and this scrape could use the database (1) or not (0).",
    )
    lines.append(f"vpn_database_up {up}")
    family(
        "vpn_last_good_round_timestamp_seconds",
        "gauge",
        "When the service last did a whole round with the database (Unix time; 0: not yet).",
    )
    lines.append(f"vpn_last_good_round_timestamp_seconds {rounds.good_round_at or 0:.3f}")

    family("vpn_user_upload_bytes_total", "counter", "Bytes each user sent, all servers.")
    lines += [
        f'vpn_user_upload_bytes_total{{user="{_label(u.name)}"}} {u.upload_bytes}' for u in users
    ]
    family("vpn_user_download_bytes_total", "counter", "Bytes each user received, all servers.")
    lines += [
        f'vpn_user_download_bytes_total{{user="{_label(u.name)}"}} {u.download_bytes}'
        for u in users
    ]
    family("vpn_users", "gauge", "Users by status.")
    counts: dict[str, int] = {}
    for user in users:
        counts[user.status] = counts.get(user.status, 0) + 1
    lines += [f'vpn_users{{status="{status}"}} {n}' for status, n in sorted(counts.items())]
    family("vpn_server_up", "gauge", "1 if the server's engine process is running.")
    family_rows = []
    for row in servers:
        running = 1 if rounds.servers.is_running(row) else 0
        family_rows.append(f'vpn_server_up{{server="{_label(row.name)}"}} {running}')
    lines += family_rows
    family(
        "vpn_server_repairs_total",
        "counter",
        "Things the service found out of step on each server and fixed (an engine that lost "
        "users, a container restarted or changed behind its back), since it started.",
    )
    lines += [
        f'vpn_server_repairs_total{{server="{_label(row.name)}"}} '
        f"{rounds.restarts.repairs.get(row.name, 0)}"
        for row in servers
    ]
    for direction, index in (("upload", 0), ("download", 1)):
        family(
            f"vpn_server_{direction}_bytes_total",
            "counter",
            f"Bytes users {'sent' if index == 0 else 'received'} through each server since the "
            "service started.",
        )
        lines += [
            f'vpn_server_{direction}_bytes_total{{server="{_label(row.name)}"}} '
            f"{rounds.traffic.server_bytes.get(row.id, [0, 0])[index]}"
            for row in servers
        ]
    family(
        "vpn_users_online", "gauge", "Users who moved bytes through each server in the last poll."
    )
    online = rounds.traffic.online
    lines += [
        f'vpn_users_online{{server="{_label(row.name)}"}} {len(online.get(row.id, ()))}'
        for row in servers
    ]
    return "\n".join(lines) + "\n"
