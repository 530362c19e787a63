"""The small gRPC client's failure paths (its successful calls are exercised against the real
Xray and sing-box in tests/e2e)."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from pathlib import Path

import pytest

from tests.e2e.net import free_port
from vpn_manager.engines.grpcwire import Channel, GrpcError, _messages


async def test_a_closed_port_is_unavailable() -> None:
    async with Channel("127.0.0.1", free_port(), timeout=2) as channel:
        with pytest.raises(GrpcError) as caught:
            await channel.unary("/x.Service/Method", b"")
    assert caught.value.code == "UNAVAILABLE"


async def test_a_missing_unix_socket_is_unavailable(tmp_path: Path) -> None:
    """A unix socket that is not there fails like a closed port (calls over a real socket are
    exercised against Xray in tests/e2e)."""
    async with Channel("127.0.0.1", 0, timeout=2, unix=str(tmp_path / "none.sock")) as channel:
        with pytest.raises(GrpcError) as caught:
            await channel.unary("/x.Service/Method", b"")
    assert caught.value.code == "UNAVAILABLE"
    assert "cannot connect" in caught.value.details


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


def framed(payload: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(payload)) + payload


async def test_a_stream_yields_each_message_as_it_comes() -> None:
    """A server stream over a real HTTP/2 exchange (h2's server side): three messages, then
    status OK. The server sends the second only once the client has the first: messages come
    through while the call is open, not when it ends."""
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import RequestReceived

    first_seen = asyncio.Event()
    waited: list[bool] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        stream = None
        while stream is None:
            for event in conn.receive_data(await reader.read(1 << 16)):
                if isinstance(event, RequestReceived):
                    stream = event.stream_id
            writer.write(conn.data_to_send())
        conn.send_headers(stream, [(":status", "200"), ("content-type", "application/grpc")])
        for payload in (b"one", b"two", b"three"):
            conn.send_data(stream, framed(payload))
            writer.write(conn.data_to_send())
            await writer.drain()
            if not waited:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(first_seen.wait(), 5)
                waited.append(first_seen.is_set())
        conn.send_headers(stream, [("grpc-status", "0")], end_stream=True)
        writer.write(conn.data_to_send())
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        got: list[bytes] = []
        async with Channel("127.0.0.1", port, timeout=2) as channel:
            async for message in channel.stream("/x.Service/Watch", b""):
                got.append(message)
                first_seen.set()
        assert got == [b"one", b"two", b"three"]
        assert waited == [True], "the first message came only with the rest"
    finally:
        server.close()
