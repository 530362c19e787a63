"""Commands run inside a server's container (Docker exec through the SDK): how an engine whose
work does not end with its own process (WireGuard: `ip`, `wg`, `nft` after wireguard-go starts)
acts in the container's network namespace instead of this machine's. Same contract as
proc.run(): argv only (no shell), the exact command logged, input on stdin (keys never in argv),
the stderr tail in the error."""

from __future__ import annotations

import asyncio
import logging
import shlex
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vpn_manager.errors import EngineError
from vpn_manager.proc import Completed, failed
from vpn_manager.runtimes.docker.hosts import reason

if TYPE_CHECKING:
    from docker import DockerClient

log = logging.getLogger("vpn_manager.proc")


class ContainerCommands:
    """Runs commands in the container of one server (proc.Commands). `client`: the engine's
    SDK client, connected when asked (runtimes/docker/containers.py); `container`: the
    container's name."""

    local = False

    def __init__(self, client: Callable[[], DockerClient], container: str, server: str) -> None:
        self.client = client
        self.container = container
        self.server = server

    async def __call__(
        self,
        argv: list[str],
        *,
        timeout: float = 10.0,
        check: bool = True,
        input: str | None = None,
    ) -> Completed:
        name = self.container
        log.debug("run in %s: %s", name, shlex.join(argv))
        # A deadline passed is an error; the SDK call it abandons ends with its own timeout.
        done = await asyncio.wait_for(asyncio.to_thread(self._exec, name, argv, input), timeout)
        if check and done.returncode != 0:
            raise failed(done, f" in container {name}")
        return done

    def _exec(self, name: str, argv: list[str], input: str | None) -> Completed:
        from docker.errors import DockerException

        api = self.client().api
        try:
            created = api.exec_create(name, argv, stdin=input is not None, stdout=True, stderr=True)
            if input is None:
                out, err = api.exec_start(created["Id"], demux=True)
            else:
                out, err = _with_input(api, created["Id"], input.encode())
            code = api.exec_inspect(created["Id"])["ExitCode"]
        except (DockerException, OSError) as exc:  # OSError: the exec's own socket broke
            raise EngineError(
                f"Cannot run `{shlex.join(argv)}` in container {name}: {reason(exc)}.",
                hint=f"Is it running? See `vpn server status {self.server}`.",
            ) from None
        return Completed(
            argv,
            127 if code is None else int(code),
            (out or b"").decode(errors="replace"),
            (err or b"").decode(errors="replace"),
        )


def _with_input(api: Any, exec_id: str, data: bytes) -> tuple[bytes, bytes]:
    """Start an exec attached to a socket, write `data` to its stdin and close that side (the
    command sees end of file), then read its stdout and stderr frames until it ends."""
    from docker.utils import socket as docker_socket

    frames_iter: Any = docker_socket.frames_iter  # untyped in the SDK
    stream = api.exec_start(exec_id, socket=True)
    raw: socket.socket = getattr(stream, "_sock", stream)
    try:
        raw.sendall(data)
        raw.shutdown(socket.SHUT_WR)
        out, err = bytearray(), bytearray()
        for kind, chunk in frames_iter(stream, False):
            (err if kind == 2 else out).extend(chunk)
        return bytes(out), bytes(err)
    finally:
        stream.close()
