"""The service's metrics over HTTP: a tiny server on 127.0.0.1 (the page itself:
services/metrics.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("vpn_manager.metrics")


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
