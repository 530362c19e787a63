"""Protocol Buffers wire format, by hand: the few messages our engines' gRPC APIs need are small
and stable, so we encode and decode them directly instead of shipping generated stubs tied to a
protobuf runtime version. Each engine's messages live next to the engine (xray/wire.py,
singbox/api.py) and are checked against the running engine by the end-to-end tests."""

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


def int64(field: int, value: int) -> bytes:
    return uint(field, value + (1 << 64) if value < 0 else value)


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
