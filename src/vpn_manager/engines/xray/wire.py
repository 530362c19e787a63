"""The few protobuf messages of Xray's gRPC API we use, encoded and decoded by hand.

Field numbers follow Xray-core's .proto files (app/proxyman/command, app/stats/command,
common/protocol/user.proto, common/serial/typed_message.proto, proxy/vless/account.proto). Writing
the wire format directly keeps us free of generated stubs and of protobuf runtime versions: the
messages are small and stable, and tests check every one against a running Xray.
"""

from __future__ import annotations

from collections.abc import Iterator

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def string(field: int, value: str) -> bytes:
    return message(field, value.encode())


def message(field: int, payload: bytes) -> bytes:
    return _key(field, _LEN) + _varint(len(payload)) + payload


def uint(field: int, value: int) -> bytes:
    return _key(field, _VARINT) + _varint(value) if value else b""


def boolean(field: int, value: bool) -> bytes:
    return uint(field, 1 if value else 0)


def typed(type_name: str, payload: bytes) -> bytes:
    """A xray.common.serial.TypedMessage's body: the message's full name and its bytes."""
    return string(1, type_name) + message(2, payload)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) for each field: ints for varints, bytes for everything else."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _read_varint(data, pos)
            yield field, value
        elif wire == _LEN:
            length, pos = _read_varint(data, pos)
            yield field, data[pos : pos + length]
            pos += length
        elif wire == _I64:
            yield field, data[pos : pos + 8]
            pos += 8
        elif wire == _I32:
            yield field, data[pos : pos + 4]
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def signed64(value: int) -> int:
    """An int64 read as an unsigned varint back to its signed value."""
    return value - (1 << 64) if value >= 1 << 63 else value


# -- the requests ---------------------------------------------------------------------------------
def add_vless_user(tag: str, email: str, uuid: str, flow: str, level: int = 0) -> bytes:
    account = typed("xray.proxy.vless.Account", string(1, uuid) + string(2, flow))
    user = uint(1, level) + string(2, email) + message(3, account)
    operation = typed("xray.app.proxyman.command.AddUserOperation", message(1, user))
    return string(1, tag) + message(2, operation)


def remove_user(tag: str, email: str) -> bytes:
    operation = typed("xray.app.proxyman.command.RemoveUserOperation", string(1, email))
    return string(1, tag) + message(2, operation)


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
