"""Xray's gRPC API (HandlerService, StatsService) on the server's private unix socket (or, where
it cannot have one, its 127.0.0.1 port)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vpn_manager.engines.grpcwire import Channel, GrpcError
from vpn_manager.engines.xray import wire
from vpn_manager.errors import EngineError

HANDLER = "/xray.app.proxyman.command.HandlerService/"
STATS = "/xray.app.stats.command.StatsService/"


class XrayApi:
    """One gRPC connection to one Xray; use as `async with XrayApi(port) as api`, or
    `XrayApi(0, unix=PATH)` for an API on a unix socket."""

    def __init__(self, port: int, timeout: float = 3.0, *, unix: str | None = None) -> None:
        self.address = unix or f"127.0.0.1:{port}"
        self._channel = Channel("127.0.0.1", port, timeout=timeout, unix=unix)

    async def __aenter__(self) -> XrayApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._channel.close()

    async def _call(self, method: str, request: bytes) -> bytes:
        try:
            return await self._channel.unary(method, request)
        except GrpcError as exc:
            raise EngineError(
                f"Xray's API at {self.address} answered {method.rsplit('/', 1)[-1]} with "
                f"{exc.code}: {exc.details}."
            ) from None

    async def ping(self) -> tuple[bool, str]:
        try:
            await self._call(STATS + "GetSysStats", b"")
        except EngineError as exc:
            return False, exc.message
        return True, "answering"

    async def add_users(self, tag: str, clients: Sequence[dict[str, Any]]) -> None:
        """Make these users present with these keys: one the engine has already with the same
        key is done; one it has with another key (revoked and granted again while the revoke
        had not reached it) is removed and added again with the key given."""
        there = []
        for client in clients:
            try:
                await self._add(tag, client)
            except EngineError as exc:
                if "already exists" not in exc.message.lower():
                    raise
                there.append(client)
        if not there:
            return
        keys = await self.user_keys(tag)
        for client in there:
            if keys.get(client["email"]) != client["id"]:
                await self.remove_users(tag, [client["email"]])
                await self._add(tag, client)

    async def _add(self, tag: str, client: dict[str, Any]) -> None:
        await self._call(
            HANDLER + "AlterInbound",
            wire.add_vless_user(
                tag, client["email"], client["id"], client.get("flow", ""), client["level"]
            ),
        )

    async def users(self, tag: str) -> set[str]:
        """The emails of the inbound's users now."""
        return wire.parse_inbound_users(
            await self._call(HANDLER + "GetInboundUsers", wire.inbound_users(tag))
        )

    async def user_keys(self, tag: str) -> dict[str, str]:
        """email → key (the account's uuid) of the inbound's users now."""
        return wire.parse_inbound_user_keys(
            await self._call(HANDLER + "GetInboundUsers", wire.inbound_users(tag))
        )

    async def remove_users(self, tag: str, emails: Sequence[str]) -> None:
        for email in emails:
            try:
                await self._call(HANDLER + "AlterInbound", wire.remove_user(tag, email))
            except EngineError as exc:
                if "not found" not in exc.message.lower():
                    raise  # a user the engine no longer has is already where we want it

    async def stats(self, pattern: str = "") -> dict[str, int]:
        """Counters by name, read without resetting them."""
        return wire.parse_stats(await self._call(STATS + "QueryStats", wire.query_stats(pattern)))

    async def online(self) -> dict[str, dict[str, int]]:
        """email → {client IP: Unix seconds} for users with open connections (needs the policy
        `statsUserOnline`; Xray leaves 127.0.0.1 out of these lists)."""
        return wire.parse_users_stats(await self._call(STATS + "GetUsersStats", b""))

    async def user_traffic(self) -> dict[str, tuple[int, int]]:
        """email → (uplink, downlink) bytes since the engine started."""
        traffic: dict[str, list[int]] = {}
        for name, value in (await self.stats("user>>>")).items():
            parts = name.split(">>>")
            if len(parts) == 4 and parts[2] == "traffic":
                pair = traffic.setdefault(parts[1], [0, 0])
                pair[0 if parts[3] == "uplink" else 1] = value
        return {email: (up, down) for email, (up, down) in traffic.items()}
