"""The small gRPC client's failure paths (its successful calls are exercised against the real
Xray and sing-box in tests/e2e)."""

from __future__ import annotations

import asyncio
import struct

import pytest

from tests.e2e.net import free_port
from vpn_manager.engines.grpcwire import Channel, GrpcError, _messages


async def test_a_closed_port_is_unavailable() -> None:
    async with Channel("127.0.0.1", free_port(), timeout=2) as channel:
        with pytest.raises(GrpcError) as caught:
            await channel.unary("/x.Service/Method", b"")
    assert caught.value.code == "UNAVAILABLE"


async def test_a_silent_server_runs_into_the_deadline() -> None:
    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)  # take the request, never answer
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Channel("127.0.0.1", port, timeout=0.3) as channel:
            with pytest.raises(GrpcError) as caught:
                await channel.unary("/x.Service/Method", b"\x08\x01")
        assert caught.value.code == "DEADLINE_EXCEEDED"
    finally:
        server.close()


def test_messages_are_cut_from_the_stream_as_they_complete() -> None:
    def framed(payload: bytes) -> bytes:
        return b"\x00" + struct.pack(">I", len(payload)) + payload

    buffer = bytearray(framed(b"one") + framed(b"") + framed(b"three")[:6])
    assert _messages(buffer) == [b"one", b""]
    buffer += framed(b"three")[6:]
    assert _messages(buffer) == [b"three"]
    assert buffer == b""
    with pytest.raises(GrpcError, match="compressed"):
        _messages(bytearray(b"\x01" + struct.pack(">I", 1) + b"x"))
