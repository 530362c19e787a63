"""Prometheus metrics of the running service, in the text exposition format (served by
`vpn serve` on 127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from vpn_manager.services.accounting import Accountant

log = logging.getLogger("vpn_manager.metrics")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def render(accountant: Accountant) -> str:
    """Every metric, read fresh from the database and the runtime."""
    from vpn_manager.storage import accounting as store
    from vpn_manager.storage import servers as server_repo

    async with accountant.db.reading() as session:  # plain rows: no models in the service
        users = await store.user_totals(session)
        servers = [row for row, _ in await server_repo.list_servers(session)]
    lines: list[str] = []

    def family(name: str, kind: str, text: str) -> None:
        lines.extend([f"# HELP {name} {text}", f"# TYPE {name} {kind}"])

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
        up = 1 if accountant.servers.state_of(row).running else 0
        family_rows.append(f'vpn_server_up{{server="{_label(row.name)}"}} {up}')
    lines += family_rows
    family(
        "vpn_server_repairs_total",
        "counter",
        "Things the service found out of step on each server and fixed (an engine that lost "
        "users, a container restarted or changed behind its back), since it started.",
    )
    lines += [
        f'vpn_server_repairs_total{{server="{_label(row.name)}"}} '
        f"{accountant.repairs.get(row.name, 0)}"
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
            f"{accountant.server_bytes.get(row.id, [0, 0])[index]}"
            for row in servers
        ]
    family(
        "vpn_users_online", "gauge", "Users who moved bytes through each server in the last poll."
    )
    lines += [
        f'vpn_users_online{{server="{_label(row.name)}"}} {len(accountant.online.get(row.id, ()))}'
        for row in servers
    ]
    return "\n".join(lines) + "\n"


async def serve_metrics(host: str, port: int, page: Callable[[], Awaitable[str]]) -> asyncio.Server:
    """A tiny HTTP server: GET /metrics → the page; anything else → 404."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)).strip():
                pass  # headers
            parts = request.decode("latin-1").split()
            if len(parts) >= 2 and parts[0] == "GET" and parts[1].split("?")[0] == "/metrics":
                body = (await page()).encode()
                head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
            else:
                body = b"not found\n"
                head = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
            writer.write(f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
            writer.write(body)
            await writer.drain()
        except Exception as exc:  # a bad scrape must never take the service down
            log.warning("metrics request failed: %s", exc)
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
