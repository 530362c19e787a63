"""sing-box's ssm-api (Shadowsocks server management, plain HTTP on 127.0.0.1): live users and
per-user counters for a managed Shadowsocks inbound. Requests are documented in config.py."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

from vpn_manager.errors import EngineError


class SsmApi:
    def __init__(self, port: int, timeout: float = 3.0) -> None:
        self.base = f"http://127.0.0.1:{port}/server/v1"
        self.timeout = timeout

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()
            raise EngineError(
                f"sing-box's ssm-api refused {method} {path}: {exc.code} {detail}".rstrip() + "."
            ) from None
        except OSError as exc:
            raise EngineError(
                f"sing-box's ssm-api at {self.base} is not answering: {exc}."
            ) from None
        return json.loads(raw) if raw.strip() else None

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return await asyncio.to_thread(self._request, method, path, body)

    async def add(self, users: list[dict[str, str]]) -> None:
        for user in users:
            try:
                await self.call("POST", "/users", user)
            except EngineError as exc:
                if "already exists" not in exc.message:
                    raise  # a user the engine already has is where we want it

    async def remove(self, usernames: list[str]) -> None:
        for name in usernames:
            try:
                await self.call("DELETE", f"/users/{name}")
            except EngineError as exc:
                if ": 404" not in exc.message:
                    raise  # an unknown user is already gone

    async def usernames(self) -> set[str]:
        listed = await self.call("GET", "/users")
        return {u["username"] for u in (listed or {}).get("users") or []}

    async def traffic(self) -> dict[str, tuple[int, int]]:
        stats = await self.call("GET", "/stats")
        return {
            u["username"]: (int(u.get("uplinkBytes", 0)), int(u.get("downlinkBytes", 0)))
            for u in stats.get("users", [])
        }
