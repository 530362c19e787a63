"""The few protobuf messages of Xray's gRPC API we use.

Field numbers follow Xray-core's .proto files (app/proxyman/command, app/stats/command,
common/protocol/user.proto, common/serial/typed_message.proto, proxy/vless/account.proto); tests
check every one against a running Xray.
"""

from __future__ import annotations

from vpn_manager.engines.protowire import boolean, fields, message, signed64, string, uint


def typed(type_name: str, payload: bytes) -> bytes:
    """A xray.common.serial.TypedMessage's body: the message's full name and its bytes."""
    return string(1, type_name) + message(2, payload)


# -- the requests ---------------------------------------------------------------------------------
def add_vless_user(tag: str, email: str, uuid: str, flow: str, level: int = 0) -> bytes:
    account = typed("xray.proxy.vless.Account", string(1, uuid) + string(2, flow))
    user = uint(1, level) + string(2, email) + message(3, account)
    operation = typed("xray.app.proxyman.command.AddUserOperation", message(1, user))
    return string(1, tag) + message(2, operation)


def remove_user(tag: str, email: str) -> bytes:
    operation = typed("xray.app.proxyman.command.RemoveUserOperation", string(1, email))
    return string(1, tag) + message(2, operation)


def inbound_users(tag: str) -> bytes:
    """A GetInboundUserRequest {string tag = 1; string email = 2}: no email means all users."""
    return string(1, tag)


def parse_inbound_users(data: bytes) -> set[str]:
    """A GetInboundUserResponse: repeated xray.common.protocol.User users = 1, each with its
    email in field 2."""
    emails = set()
    for field, user in fields(data):
        if field != 1 or not isinstance(user, bytes):
            continue
        for sub, item in fields(user):
            if sub == 2 and isinstance(item, bytes):
                emails.add(item.decode())
    return emails


def parse_inbound_user_keys(data: bytes) -> dict[str, str]:
    """A GetInboundUserResponse: email → the id (uuid) of each user's account (field 3, a
    TypedMessage whose value, field 2, is a xray.proxy.vless.Account with its id in field 1)."""
    keys = {}
    for field, user in fields(data):
        if field != 1 or not isinstance(user, bytes):
            continue
        email = key = ""
        for sub, item in fields(user):
            if sub == 2 and isinstance(item, bytes):
                email = item.decode()
            elif sub == 3 and isinstance(item, bytes):
                for part, account in fields(item):
                    if part == 2 and isinstance(account, bytes):
                        key = next(
                            (
                                v.decode()
                                for f, v in fields(account)
                                if f == 1 and isinstance(v, bytes)
                            ),
                            "",
                        )
        keys[email] = key
    return keys


def query_stats(pattern: str, reset: bool = False) -> bytes:
    return string(1, pattern) + boolean(2, reset)


def parse_stats(data: bytes) -> dict[str, int]:
    """A QueryStatsResponse: repeated Stat {name = 1; int64 value = 2}."""
    stats: dict[str, int] = {}
    for field, stat in fields(data):
        if field != 1 or not isinstance(stat, bytes):
            continue
        name, value = "", 0
        for sub, item in fields(stat):
            if sub == 1 and isinstance(item, bytes):
                name = item.decode()
            elif sub == 2 and isinstance(item, int):
                value = signed64(item)
        stats[name] = value
    return stats


def parse_users_stats(data: bytes) -> dict[str, dict[str, int]]:
    """A GetUsersStatsResponse: repeated UserStat {string email = 1; repeated OnlineIPEntry ips
    = 2}, OnlineIPEntry {string ip = 1; int64 last_seen = 2}: email → {ip: Unix seconds}."""
    users: dict[str, dict[str, int]] = {}
    for field, stat in fields(data):
        if field != 1 or not isinstance(stat, bytes):
            continue
        email, ips = "", {}
        for sub, item in fields(stat):
            if sub == 1 and isinstance(item, bytes):
                email = item.decode()
            elif sub == 2 and isinstance(item, bytes):
                entry = dict(fields(item))
                ip, seen = entry.get(1, b""), entry.get(2, 0)
                if isinstance(ip, bytes) and isinstance(seen, int):
                    ips[ip.decode()] = signed64(seen)
        if email and ips:
            users[email] = ips
    return users
