"""Xray's gRPC API (HandlerService, StatsService) on the server's private unix socket (or, where
it cannot have one, its 127.0.0.1 port).

The messages are generated from Xray's .proto files (xray/proto, see its README) and sent over our
small HTTP/2 client (grpcwire.py). They load protobuf, so this module is imported only where an
Xray API is called (engine.py's `_api`): no other command pays for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.message import Message

from vpn_manager.engines.grpcwire import Channel, GrpcError
from vpn_manager.engines.xray.proto.app.proxyman.command import command_pb2 as handler
from vpn_manager.engines.xray.proto.app.stats.command import command_pb2 as stats
from vpn_manager.engines.xray.proto.common.protocol.user_pb2 import User
from vpn_manager.engines.xray.proto.common.serial.typed_message_pb2 import TypedMessage
from vpn_manager.engines.xray.proto.proxy.hysteria.account.config_pb2 import (
    Account as HysteriaAccount,
)
from vpn_manager.engines.xray.proto.proxy.trojan.config_pb2 import Account as TrojanAccount
from vpn_manager.engines.xray.proto.proxy.vless.account_pb2 import Account
from vpn_manager.engines.xray.proto.proxy.vmess.account_pb2 import Account as VmessAccount
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

    async def _call(self, method: str, request: Message) -> bytes:
        try:
            return await self._channel.unary(method, request.SerializeToString())
        except GrpcError as exc:
            raise EngineError(
                f"Xray's API at {self.address} answered {method.rsplit('/', 1)[-1]} with "
                f"{exc.code}: {exc.details}."
            ) from None

    async def ping(self) -> tuple[bool, str]:
        try:
            await self._call(STATS + "GetSysStats", stats.SysStatsRequest())
        except EngineError as exc:
            return False, exc.message
        return True, "answering"

    async def add_users(
        self, tag: str, clients: Sequence[dict[str, Any]], protocol: str = "vless"
    ) -> None:
        """Make these users (inbound `clients` entries of `protocol`: vless, vmess, trojan or
        hysteria)
        present with these keys: one the engine has already with the same key is done; one it
        has with another key (revoked and granted again while the revoke had not reached it) is
        removed and added again with the key given."""
        there = []
        for client in clients:
            try:
                await self._add(tag, client, protocol)
            except EngineError as exc:
                if "already exists" not in exc.message.lower():
                    raise
                there.append(client)
        if not there:
            return
        keys = await self.user_keys(tag)
        for client in there:
            if keys.get(client["email"]) != key_of(client):
                await self.remove_users(tag, [client["email"]])
                await self._add(tag, client, protocol)

    async def _add(self, tag: str, client: dict[str, Any], protocol: str) -> None:
        await self._call(HANDLER + "AlterInbound", add_user(tag, protocol, client))

    async def _inbound_users(self, tag: str) -> list[User]:
        """The inbound's users now (a request without an email asks for all of them)."""
        request = handler.GetInboundUserRequest(tag=tag)
        reply = await self._call(HANDLER + "GetInboundUsers", request)
        return list(handler.GetInboundUserResponse.FromString(reply).users)

    async def users(self, tag: str) -> set[str]:
        """The emails of the inbound's users now."""
        return {user.email for user in await self._inbound_users(tag)}

    async def user_keys(self, tag: str) -> dict[str, str]:
        """email → key (the id, a uuid, of a VLESS or VMess account; a Trojan account's
        password; a Hysteria account's auth) of the inbound's users now."""
        return {user.email: account_key(user.account) for user in await self._inbound_users(tag)}

    async def remove_users(self, tag: str, emails: Sequence[str]) -> None:
        for email in emails:
            try:
                await self._call(HANDLER + "AlterInbound", remove_user(tag, email))
            except EngineError as exc:
                if "not found" not in exc.message.lower():
                    raise  # a user the engine no longer has is already where we want it

    async def stats(self, pattern: str = "") -> dict[str, int]:
        """Counters by name, read without resetting them."""
        reply = await self._call(STATS + "QueryStats", stats.QueryStatsRequest(pattern=pattern))
        return counters(reply)

    async def online(self) -> dict[str, dict[str, int]]:
        """email → {client IP: Unix seconds} for users with open connections (needs the policy
        `statsUserOnline`; Xray leaves 127.0.0.1 out of these lists)."""
        reply = await self._call(STATS + "GetUsersStats", stats.GetUsersStatsRequest())
        return online_users(reply)

    async def user_traffic(self) -> dict[str, tuple[int, int]]:
        """email → (uplink, downlink) bytes since the engine started."""
        traffic: dict[str, list[int]] = {}
        for name, value in (await self.stats("user>>>")).items():
            parts = name.split(">>>")
            if len(parts) == 4 and parts[2] == "traffic":
                pair = traffic.setdefault(parts[1], [0, 0])
                pair[0 if parts[3] == "uplink" else 1] = value
        return {email: (up, down) for email, (up, down) in traffic.items()}


# -- the messages that are more than one constructor ----------------------------------------
def typed(message: Message) -> TypedMessage:
    """A xray.common.serial.TypedMessage: the message's full name and its bytes."""
    return TypedMessage(type=message.DESCRIPTOR.full_name, value=message.SerializeToString())


def key_of(client: dict[str, Any]) -> str:
    """The key of an inbound `clients` entry: its id (VLESS, VMess), password (Trojan) or auth
    (Hysteria)."""
    for field in ("password", "auth"):
        if field in client:
            return str(client[field])
    return str(client["id"])


def account(protocol: str, client: dict[str, Any]) -> Message:
    """The account message of an inbound `clients` entry of `protocol`."""
    if protocol == "trojan":
        return TrojanAccount(password=client["password"])
    if protocol == "hysteria":
        return HysteriaAccount(auth=client["auth"])
    if protocol == "vmess":
        return VmessAccount(id=client["id"])
    return Account(id=client["id"], flow=client.get("flow", ""))


def account_key(message: TypedMessage) -> str:
    """The key in an account the API returns (GetInboundUsers), whichever protocol's it is."""
    if message.type == TrojanAccount.DESCRIPTOR.full_name:
        return TrojanAccount.FromString(message.value).password
    if message.type == VmessAccount.DESCRIPTOR.full_name:
        return VmessAccount.FromString(message.value).id
    if message.type == HysteriaAccount.DESCRIPTOR.full_name:
        return HysteriaAccount.FromString(message.value).auth
    return Account.FromString(message.value).id


def add_user(tag: str, protocol: str, client: dict[str, Any]) -> handler.AlterInboundRequest:
    user = User(
        level=client.get("level", 0),
        email=client["email"],
        account=typed(account(protocol, client)),
    )
    operation = typed(handler.AddUserOperation(user=user))
    return handler.AlterInboundRequest(tag=tag, operation=operation)


def add_vless_user(
    tag: str, email: str, uuid: str, flow: str, level: int = 0
) -> handler.AlterInboundRequest:
    user = User(level=level, email=email, account=typed(Account(id=uuid, flow=flow)))
    operation = typed(handler.AddUserOperation(user=user))
    return handler.AlterInboundRequest(tag=tag, operation=operation)


def remove_user(tag: str, email: str) -> handler.AlterInboundRequest:
    operation = typed(handler.RemoveUserOperation(email=email))
    return handler.AlterInboundRequest(tag=tag, operation=operation)


def counters(reply: bytes) -> dict[str, int]:
    """A QueryStatsResponse: counter name → value."""
    return {stat.name: stat.value for stat in stats.QueryStatsResponse.FromString(reply).stat}


def online_users(reply: bytes) -> dict[str, dict[str, int]]:
    """A GetUsersStatsResponse: email → {ip: Unix seconds} of the users with an IP online."""
    return {
        user.email: {entry.ip: entry.last_seen for entry in user.ips}
        for user in stats.GetUsersStatsResponse.FromString(reply).users
        if user.email and user.ips
    }
