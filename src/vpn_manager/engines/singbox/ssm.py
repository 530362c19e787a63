"""sing-box's ssm-api (Shadowsocks server management, plain HTTP/1.1 on 127.0.0.1): live users and
per-user counters for a managed Shadowsocks inbound. Its requests are documented in config.py.

Every user change is one request, and sing-box answers each POST, PUT and DELETE by handing the
inbound its whole user list again (UserManager.postUpdate → UpdateUsers): a change costs O(users
on the server), so a batch of n changes on a server of N users costs O(n·(N+n)) in sing-box.
Measured on sing-box 1.14.4, 2022-blake3-aes-128-gcm: 10,000 users added one POST at a time took
40 s over one keep-alive connection (55 s with a new connection per request).

So a batch is sent like this:
- One keep-alive connection, requests pipelined (`WINDOW` written before the answers are read):
  the client's cost per request is a few microseconds instead of a round trip.
- For 2022 ciphers, a batch of `HOLD_FROM` changes or more is *held*: first placeholder users
  (`HOLD_USERS`) with an empty key are POSTed. sing-box keeps them in its list although the
  inbound refuses them (400 "missing password"), and from then on every change still lands in
  the list but the inbound's UpdateUsers fails early, before touching anything (its first loop
  stops at the first empty key, in map order: with 16 placeholders after about 1/17 of the
  list): the inbound keeps serving its previous users, open connections included, and a change
  costs a walk over the list instead of the inbound's key setup for every user. DELETEing the
  placeholders then applies the whole list in one UpdateUsers. 10,000 users: 3.9 s with one
  placeholder instead of 40 s; 16 placeholders took a further ~20 % off. A held batch is
  checked afterwards against GET /users and whatever is missing is sent again unheld, so a
  sing-box that stops keeping refused users costs speed, not users. Two batches at
  once share the placeholders: the first to finish applies both, the other goes on unheld.
  Not for the other ciphers: their inbound (shadowaead.MultiService) empties its user table
  before checking the keys, so a refused update would lock every user out until the next one.
- Placeholders left behind (a batch interrupted by a crash) show as 400 "missing password" on
  the next change; that change then deletes them, which applies everything pending.

Idempotent: adding a user who is there already (400 "user … already exists") sets their key with
PUT; removing a user who is not there (404) is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from vpn_manager.errors import EngineError

HOST = "127.0.0.1"  # where ssm-api listens: only connect() and where() use it
PREFIX = "/server/v1"
HOLD_USERS = tuple(f"vpn-manager-hold-{i}" for i in range(16))  # never a Client.email
HOLD_FROM = 8  # changes in one batch from which a 2022 server's updates are held
WINDOW = 256  # requests written before their answers are read
READ_TIMEOUT = 5.0  # for GET /users and /stats (a batch's changes may take far longer)
MISSING_PASSWORD = "missing password"  # the refusal of a list that holds a placeholder
T = TypeVar("T")


class Interrupted(Exception):
    """The batch's caller was cancelled (Ctrl-C): no further window of requests is sent."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace").strip()


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: dict[str, str] | None = None

    def encode(self) -> bytes:
        payload = b"" if self.body is None else json.dumps(self.body).encode()
        head = (
            f"{self.method} {PREFIX}{self.path} HTTP/1.1\r\nHost: ssm-api\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        return head.encode() + payload


class Connection:
    """One keep-alive HTTP/1.1 connection to ssm-api; requests are pipelined."""

    def __init__(self, port: int, timeout: float) -> None:
        self.where = where(port)
        try:
            self.sock = connect(port, timeout)
        except OSError as exc:
            raise EngineError(
                f"sing-box's ssm-api at {self.where} is not answering: {exc}."
            ) from None
        self.reader = self.sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def exchange(
        self, requests: Sequence[Request], stop: threading.Event | None = None
    ) -> list[Answer]:
        """The answers to `requests`, in order; `stop` set ends it before the next window."""
        answers: list[Answer] = []
        try:
            for start in range(0, len(requests), WINDOW):
                if stop is not None and stop.is_set():
                    raise Interrupted
                window = requests[start : start + WINDOW]
                self.sock.sendall(b"".join(r.encode() for r in window))
                answers += [self._answer() for _ in window]
        except (OSError, ValueError) as exc:
            raise EngineError(f"sing-box's ssm-api at {self.where} failed: {exc}.") from None
        return answers

    def _answer(self) -> Answer:
        status_line = self.reader.readline()
        if not status_line:
            raise ConnectionError("it closed the connection")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := self.reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.reader.readline().split(b";")[0], 16):
                chunks.append(self.reader.read(size))
                self.reader.readline()
            while self.reader.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            body = b"".join(chunks)
        else:
            body = self.reader.read(int(headers.get("content-length", "0")))
        return Answer(status, body)


def connect(port: int, timeout: float) -> socket.socket:
    """A new connection to ssm-api: with where(), the one place that knows where it listens."""
    return socket.create_connection((HOST, port), timeout=timeout)


def where(port: int) -> str:
    """ssm-api's address, for messages."""
    return f"http://{HOST}:{port}{PREFIX}"


class SsmApi:
    def __init__(self, port: int, *, hold: bool = False, timeout: float = 30.0) -> None:
        """`hold`: the server's cipher lets a batch be held (2022 ciphers; see above)."""
        self.port = port
        self.hold = hold
        self.timeout = timeout

    # -- what the engine calls -----------------------------------------------------------------
    async def add(self, users: list[dict[str, str]]) -> None:
        """Make these users ({"username", "uPSK"}) present with these keys."""
        if users:
            await self._batch(functools.partial(self._change, users, []))

    async def remove(self, usernames: list[str]) -> None:
        """Make these users absent (and their counters: read them first)."""
        if usernames:
            await self._batch(functools.partial(self._change, [], usernames))

    async def _batch(self, work: Callable[[threading.Event], None]) -> None:
        """Run a batch in a thread. If the caller is cancelled (Ctrl-C), the thread sends no
        further window of requests and the caller waits for it to end before going on to undo
        what it did: no request of the batch can reach the engine after the undo."""
        stop = threading.Event()
        future = asyncio.get_running_loop().run_in_executor(None, work, stop)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            stop.set()
            with contextlib.suppress(Exception):
                await future
            raise

    async def sync(self, users: list[dict[str, str]]) -> None:
        """Make ssm-api hold exactly these users with these keys (after a start: whatever it
        loaded from its cache file, or nothing, becomes the list given)."""
        await asyncio.to_thread(self._sync, users)

    async def users(self) -> dict[str, str]:
        """username → key, as ssm-api holds them."""
        return await asyncio.to_thread(self._users)

    async def traffic(self) -> dict[str, tuple[int, int]]:
        stats = await asyncio.to_thread(self._get, "/stats")
        return {
            u["username"]: (int(u.get("uplinkBytes", 0)), int(u.get("downlinkBytes", 0)))
            for u in stats.get("users", [])
        }

    # -- the work, in a thread -----------------------------------------------------------------
    def _open(self, timeout: float | None = None) -> Connection:
        return Connection(self.port, timeout or self.timeout)

    def _get(self, path: str) -> Any:
        conn = self._open(READ_TIMEOUT)  # a read answers at once, or the engine is stuck
        try:
            (answer,) = conn.exchange([Request("GET", path)])
        finally:
            conn.close()
        if answer.status != 200:
            raise refused("GET", path, answer)
        return json.loads(answer.body)

    def _users(self) -> dict[str, str]:
        return {u["username"]: u.get("uPSK", "") for u in self._get("/users").get("users", [])}

    def _sync(self, users: list[dict[str, str]]) -> None:
        present = self._users()
        wanted = {u["username"] for u in users}
        self._change(
            [u for u in users if present.get(u["username"]) != u["uPSK"]],
            [name for name in present if name not in wanted],
        )

    def _change(
        self, adds: list[dict[str, str]], removes: list[str], stop: threading.Event | None = None
    ) -> None:
        if not (adds or removes):
            return
        held = self.hold and len(adds) + len(removes) >= HOLD_FROM
        conn = self._open()
        try:
            self._send(conn, adds, removes, held, stop)
        finally:
            conn.close()
        if held:
            self._check(adds, removes)

    def _send(
        self,
        conn: Connection,
        adds: list[dict[str, str]],
        removes: list[str],
        held: bool,
        stop: threading.Event | None = None,
    ) -> None:
        requests = [Request("POST", "/users", u) for u in adds]
        requests += [Request("DELETE", f"/users/{name}") for name in removes]
        holds = [Request("POST", "/users", {"username": n, "uPSK": ""}) for n in HOLD_USERS]
        if held:
            requests = holds + requests
        answers = conn.exchange(requests, stop)
        if held:  # the placeholders' own refusals (or "already exists": another batch's)
            requests, answers = requests[len(holds) :], answers[len(holds) :]
        pending = False  # a placeholder is in the list: ours, or one left behind
        again: list[Request] = []
        for request, answer in zip(requests, answers, strict=True):
            if answer.status in (201, 204) or (request.method == "DELETE" and answer.status == 404):
                continue
            if answer.status == 400 and answer.text == MISSING_PASSWORD:
                pending = True  # in the list, applied when the placeholder goes
            elif answer.status == 400 and answer.text.endswith(" already exists"):
                assert request.body is not None
                again.append(Request("PUT", f"/users/{request.body['username']}", request.body))
            else:
                raise refused(request.method, request.path, answer)
        for request, answer in zip(again, conn.exchange(again), strict=True):
            if answer.status == 400 and answer.text == MISSING_PASSWORD:
                pending = True
            elif answer.status != 204:
                raise refused(request.method, request.path, answer)
        if held or pending:  # the last DELETE applies the list (404: another batch did)
            unhold = [Request("DELETE", f"/users/{name}") for name in HOLD_USERS]
            for request, answer in zip(unhold, conn.exchange(unhold), strict=True):
                if answer.status not in (204, 404) and answer.text != MISSING_PASSWORD:
                    raise refused(request.method, request.path, answer)

    def _check(self, adds: list[dict[str, str]], removes: list[str]) -> None:
        """After a held batch: send again, unheld, whatever is not in ssm-api's list."""
        present = self._users()
        missing = [u for u in adds if present.get(u["username"]) != u["uPSK"]]
        left = [name for name in removes if name in present]
        if missing or left:
            conn = self._open()
            try:
                self._send(conn, missing, left, held=False)
            finally:
                conn.close()


def refused(method: str, path: str, answer: Answer) -> EngineError:
    detail = f"{answer.status} {answer.text}".rstrip()
    return EngineError(f"sing-box's ssm-api refused {method} {PREFIX}{path}: {detail}.")
