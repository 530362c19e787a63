"""sing-box's `api` service (gRPC, `daemon.StartedService`) on the server's private 127.0.0.1 port:
per-user traffic from the connection list (open and closed connections, with the user each one
authenticated as) and closing a user's open connections.

The messages are generated from sing-box's daemon/started_service.proto (singbox/proto, see its
README) and sent over our small HTTP/2 client (grpcwire.py). The engine module imports this one
for every sing-box server, so protobuf is imported in the three functions below that build and
read messages, on the first call: commands that only render or link a server never load it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from vpn_manager.engines.base import Counter
from vpn_manager.engines.grpcwire import Channel, GrpcError
from vpn_manager.errors import EngineError

SERVICE = "/daemon.StartedService/"
UPDATE_INTERVAL_NS = 1_000_000_000  # the stream's update interval (closes come at once)
RETRY_S = 1.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Connection:
    id: str
    user: str
    closed: bool
    uplink: int
    downlink: int
    source: str = ""  # the client's address, "IP:port" ("[IPv6]:port")
    created_ms: int = 0

    @property
    def client_ip(self) -> str:
        return self.source.rpartition(":")[0].strip("[]")


# -- the messages (protobuf is imported here, see above) ---------------------------------------
def subscribe_request(interval_ns: int) -> bytes:
    """A SubscribeConnectionsRequest: updates every `interval_ns` (closes come at once)."""
    from vpn_manager.engines.singbox.proto.daemon import started_service_pb2 as daemon

    return daemon.SubscribeConnectionsRequest(interval=interval_ns).SerializeToString()


def close_request(conn_id: str) -> bytes:
    """A CloseConnectionRequest for one connection."""
    from vpn_manager.engines.singbox.proto.daemon import started_service_pb2 as daemon

    return daemon.CloseConnectionRequest(id=conn_id).SerializeToString()


def parse_events(data: bytes) -> list[Connection]:
    """The connections in one ConnectionEvents message (the first one is the full snapshot);
    events without a connection (updates that carry only deltas) are left out."""
    from vpn_manager.engines.singbox.proto.daemon import started_service_pb2 as daemon

    found = []
    for event in daemon.ConnectionEvents.FromString(data).events:
        if not event.HasField("connection"):
            continue
        c = event.connection
        found.append(
            Connection(
                id=c.id,
                user=c.user,
                closed=bool(c.closedAt),
                uplink=c.uplinkTotal,
                downlink=c.downlinkTotal,
                source=c.source,
                created_ms=c.createdAt,
            )
        )
    return found


class SingBoxApi:
    """sing-box's api service. Each method opens its own connection: one opened before a SIGHUP
    reload cannot stream afterwards."""

    def __init__(self, port: int, secret: str, timeout: float = 3.0) -> None:
        self.address = f"127.0.0.1:{port}"
        self.port = port
        self.metadata = (("authorization", f"Bearer {secret}"),)
        self.timeout = timeout

    def _channel(self) -> Channel:
        return Channel("127.0.0.1", self.port, timeout=self.timeout, metadata=self.metadata)

    def _error(self, method: str, exc: GrpcError) -> EngineError:
        return EngineError(
            f"sing-box's API at {self.address} answered {method} with {exc.code}: {exc.details}."
        )

    async def ping(self) -> tuple[bool, str]:
        async with self._channel() as channel:
            try:
                await channel.unary(SERVICE + "GetStartedAt", b"")  # google.protobuf.Empty
            except GrpcError as exc:
                return False, self._error("GetStartedAt", exc).message
        return True, "answering"

    async def connections(self) -> list[Connection]:
        """Every connection sing-box remembers, open and closed, from the first snapshot."""
        async with self._channel() as channel:
            try:
                first = await channel.first(
                    SERVICE + "SubscribeConnections", subscribe_request(1_000_000_000)
                )
            except GrpcError as exc:
                raise self._error("SubscribeConnections", exc) from None
        return [] if first is None else parse_events(first)

    async def close_users(self, users: set[str], ips: set[str] | None = None) -> int:
        """Close the open connections of these users (only those from `ips` if given); return
        how many were closed."""
        doomed = [
            c.id
            for c in await self.connections()
            if c.user in users and not c.closed and (ips is None or c.client_ip in ips)
        ]
        async with self._channel() as channel:
            for conn_id in doomed:
                try:
                    await channel.unary(SERVICE + "CloseConnection", close_request(conn_id))
                except GrpcError as exc:
                    raise self._error("CloseConnection", exc) from None
        return len(doomed)


class ConnectionFollower:
    """Follows a sing-box server's connection events (SubscribeConnections, kept open) so that
    no closed connection is missed: sing-box's snapshot keeps only the last handful of closed
    connections, and a busy server closes hundreds between two polls. Every connection that
    closes is kept with its final totals (a CLOSED event, or the closed list a new stream starts
    with) until the next poll takes it. Open connections are left to the poll's snapshot, whose
    totals are sing-box's own: a total pieced together from update deltas could come out higher
    than sing-box's, which the accounting would take for a reset. A stream that breaks (a
    reload, a restart) is opened again every RETRY_S."""

    def __init__(self, api: SingBoxApi) -> None:
        self.api = api
        self._closed: dict[str, Connection] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def take(self) -> list[Counter]:
        closed, self._closed = self._closed, {}
        return [Counter(f"conn:{c.id}", c.user, c.uplink, c.downlink) for c in closed.values()]

    async def _run(self) -> None:
        request = subscribe_request(UPDATE_INTERVAL_NS)
        while True:
            try:
                async with self.api._channel() as channel:
                    async for message in channel.stream(SERVICE + "SubscribeConnections", request):
                        self.apply(message)
            except GrpcError as exc:
                log.debug("following %s: %s", self.api.address, exc)
            await asyncio.sleep(RETRY_S)

    def apply(self, message: bytes) -> None:
        """Keep the closed connections one ConnectionEvents message names."""
        for conn in parse_events(message):
            if conn.closed and conn.user and conn.id:
                self._closed[conn.id] = conn
