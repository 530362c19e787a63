"""A small gRPC client for the engines' local control APIs: HTTP/2 over cleartext TCP or a unix
socket (prior knowledge, as Xray's and sing-box's API listeners speak it), one call at a time per
connection, messages already encoded (by the protobuf modules generated from the engines' .proto
files, engines/*/proto).

Why not grpcio: its import alone costs the long-running service about 20 MB of memory, a third of
its budget, for a handful of unary calls and one server stream on 127.0.0.1. The HTTP/2 framing
and header compression come from the `h2` package; what gRPC adds on top is small: the
five-byte message prefix, the `application/grpc` headers and the `grpc-status` trailer.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import unquote

if TYPE_CHECKING:
    from h2.connection import H2Connection

# grpc/status codes, by number (https://grpc.github.io/grpc/core/md_doc_statuscodes.html).
STATUS = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
]
_READ = 65536
# The receive window we give the server, per stream and for the connection: a stream's sender
# that finds the window full waits, and sing-box's connection events are dropped while its
# sender waits (they are queued only 64 deep). Up to this much is taken in while we are busy.
WINDOW = 16 * 1024 * 1024
_RCVBUF = 4 * 1024 * 1024  # the socket's share of that (root may go past net.core.rmem_max)


class GrpcError(Exception):
    """A call that did not end with status OK: `code` is the status name, `details` its text."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


class Channel:
    """One HTTP/2 connection to host:port, or to the unix socket at `unix` (host and port then
    only name the peer in :authority); use as `async with Channel(...) as channel`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 3.0,
        metadata: tuple[tuple[str, str], ...] = (),
        unix: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.unix = unix
        self.timeout = timeout
        self.metadata = metadata
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._h2: H2Connection | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        writer, self._writer, self._reader, h2 = self._writer, None, None, self._h2
        self._h2 = None
        if writer is None:
            return
        if h2 is not None:
            h2.close_connection()
            writer.write(h2.data_to_send())
        writer.close()
        with contextlib.suppress(OSError):  # the peer went first
            await writer.wait_closed()

    async def unary(self, path: str, request: bytes) -> bytes:
        """Call a unary method; return the response message."""
        messages = await self._call(path, request, first_only=False)
        if not messages:
            raise GrpcError("INTERNAL", f"{path} answered OK without a message")
        return messages[0]

    async def first(self, path: str, request: bytes) -> bytes | None:
        """Call a server-streaming method, return its first message and cancel the stream (None
        if it ended without one)."""
        messages = await self._call(path, request, first_only=True)
        return messages[0] if messages else None

    async def stream(self, path: str, request: bytes) -> AsyncGenerator[bytes, None]:
        """Call a server-streaming method and yield its messages as they come, for as long as
        the server sends them (the channel's timeout applies to connecting only). Ends when the
        server ends the call with OK; raises GrpcError otherwise. Leaving the loop early cancels
        the call."""
        async with self._lock:
            try:
                if self._h2 is None:
                    async with asyncio.timeout(self.timeout):
                        await self._connect()
            except TimeoutError:
                await self.close()
                raise GrpcError("DEADLINE_EXCEEDED", "no connection") from None
            responses = self._responses(path, request)
            try:
                async for message in responses:
                    yield message
            except OSError as exc:
                await self.close()
                raise GrpcError("UNAVAILABLE", f"connection lost: {exc}") from None
            except GrpcError:
                await self.close()
                raise
            finally:
                await responses.aclose()

    # -- the exchange --------------------------------------------------------------------------
    async def _connect(self) -> None:
        from h2.config import H2Configuration
        from h2.connection import H2Connection
        from h2.settings import SettingCodes

        try:
            if self.unix is not None:
                reader, writer = await asyncio.open_unix_connection(self.unix)
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise GrpcError("UNAVAILABLE", f"cannot connect: {exc.strerror or exc}") from None
        sock = writer.get_extra_info("socket")
        if sock is not None and self.unix is None:  # no delayed ACKs (40 ms) for small requests
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if sock is not None:
            _big_receive_buffer(sock)
        h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        h2.initiate_connection()
        h2.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: WINDOW})
        h2.increment_flow_control_window(WINDOW - h2.inbound_flow_control_window)
        writer.write(h2.data_to_send())
        self._reader, self._writer, self._h2 = reader, writer, h2

    async def _call(self, path: str, request: bytes, *, first_only: bool) -> list[bytes]:
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    if self._h2 is None:
                        await self._connect()
                    return await self._exchange(path, request, first_only)
            except TimeoutError:
                await self.close()
                raise GrpcError(
                    "DEADLINE_EXCEEDED", f"no answer within {self.timeout:g} s"
                ) from None
            except GrpcError as exc:
                if exc.code in ("UNAVAILABLE", "INTERNAL"):
                    await self.close()  # the connection itself is in doubt
                raise
            except OSError as exc:
                await self.close()
                raise GrpcError("UNAVAILABLE", f"connection lost: {exc}") from None

    async def _exchange(self, path: str, request: bytes, first_only: bool) -> list[bytes]:
        messages: list[bytes] = []
        responses = self._responses(path, request)
        try:
            async for message in responses:
                messages.append(message)
                if first_only:
                    break
        finally:
            await responses.aclose()  # cancels the call if it is still open
        return messages

    async def _responses(self, path: str, request: bytes) -> AsyncGenerator[bytes, None]:
        """Send one request, then yield the response messages until the call ends; a call
        left before its end is cancelled (RST_STREAM CANCEL)."""
        from h2 import events
        from h2.errors import ErrorCodes

        h2, reader, writer = self._parts()
        stream = h2.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", f"{self.host}:{self.port}"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            *self.metadata,
        ]
        h2.send_headers(stream, headers)
        body = b"\x00" + struct.pack(">I", len(request)) + request
        await self._send_body(stream, body)
        buffer = bytearray()
        status: str | None = None
        details = ""
        ended = False
        try:
            while True:
                data = await reader.read(_READ)
                if not data:
                    raise GrpcError("UNAVAILABLE", "the server closed the connection")
                for event in h2.receive_data(data):
                    if getattr(event, "stream_id", stream) != stream:
                        continue
                    if isinstance(event, events.ResponseReceived | events.TrailersReceived):
                        status, details = _status(event.headers or [], status, details)
                    elif isinstance(event, events.DataReceived):
                        buffer += event.data
                        h2.acknowledge_received_data(event.flow_controlled_length, stream)
                        writer.write(h2.data_to_send())
                        for message in _messages(buffer):
                            yield message
                    elif isinstance(event, events.StreamReset):
                        ended = True
                        raise GrpcError(
                            "UNAVAILABLE", f"the server reset the call ({event.error_code})"
                        )
                    elif isinstance(event, events.StreamEnded):
                        ended = True
                        writer.write(h2.data_to_send())
                        if status not in (None, "OK"):
                            raise GrpcError(str(status), details)
                        if status is None:
                            raise GrpcError("UNKNOWN", "no status received")
                        return
                    elif isinstance(event, events.ConnectionTerminated):
                        ended = True
                        raise GrpcError("UNAVAILABLE", "the server ended the connection")
                writer.write(h2.data_to_send())
                await writer.drain()
        finally:
            if not ended and self._h2 is h2:  # left early: cancel the call, keep the connection
                with contextlib.suppress(Exception):
                    h2.reset_stream(stream, ErrorCodes.CANCEL)
                    writer.write(h2.data_to_send())

    def _parts(self) -> tuple[H2Connection, asyncio.StreamReader, asyncio.StreamWriter]:
        if self._h2 is None or self._reader is None or self._writer is None:
            raise GrpcError("UNAVAILABLE", "not connected")
        return self._h2, self._reader, self._writer

    async def _send_body(self, stream: int, body: bytes) -> None:
        """Send the request within the peer's flow-control window (tiny requests fit at once)."""
        h2, reader, writer = self._parts()
        while body:
            window = min(h2.local_flow_control_window(stream), h2.max_outbound_frame_size)
            if window <= 0:  # wait for a WINDOW_UPDATE
                data = await reader.read(_READ)
                if not data:
                    raise GrpcError("UNAVAILABLE", "the server closed the connection")
                h2.receive_data(data)
                continue
            chunk, body = body[:window], body[window:]
            h2.send_data(stream, chunk, end_stream=not body)
            writer.write(h2.data_to_send())
        await writer.drain()


def _big_receive_buffer(sock: socket.socket) -> None:
    """Let the kernel hold up to _RCVBUF of what the server sends while we are busy; as root
    past net.core.rmem_max (SO_RCVBUFFORCE), else up to it."""
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, _RCVBUF)
            return
        except OSError:
            continue


def _status(
    headers: list[tuple[bytes, bytes]], status: str | None, details: str
) -> tuple[str | None, str]:
    """The gRPC status in response headers or trailers (else the one known so far)."""
    found = {bytes(k).decode(): bytes(v).decode("utf-8", "replace") for k, v in headers}
    if found.get(":status", "200") != "200":
        raise GrpcError("UNAVAILABLE", f"HTTP status {found[':status']}")
    if "grpc-status" not in found:
        return status, details
    code = int(found["grpc-status"])
    name = STATUS[code] if code < len(STATUS) else f"CODE_{code}"
    return name, unquote(found.get("grpc-message", ""))


def _messages(buffer: bytearray) -> list[bytes]:
    """Take every complete length-prefixed gRPC message off the front of `buffer`."""
    found = []
    while len(buffer) >= 5:
        compressed, size = buffer[0], struct.unpack(">I", buffer[1:5])[0]
        if len(buffer) < 5 + size:
            break
        if compressed:
            raise GrpcError("UNIMPLEMENTED", "the server sent a compressed message")
        found.append(bytes(buffer[5 : 5 + size]))
        del buffer[: 5 + size]
    return found
