"""A server container's logs: kept in the server's log file before the container goes (a start
always makes a new one), read back with the live container's output, and followed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from vpn_manager.runtimes.native import tail

if TYPE_CHECKING:
    from docker.models.containers import Container


def keep_logs(log_file: Path, container: Container) -> None:
    """Append a container's logs to the server's log file (0600) before the container goes."""
    from docker.errors import APIError

    try:
        data: bytes = container.logs(stdout=True, stderr=True, timestamps=False)
    except APIError:
        return
    if data:
        log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data if data.endswith(b"\n") else data + b"\n")
        finally:
            os.close(fd)


def last_lines(log_file: Path, container: Container | None, lines: int) -> list[str]:
    """The last `lines` of the kept logs followed by the container's output."""
    kept = tail(log_file, lines)
    if container is None:
        return kept
    data: bytes = container.logs(stdout=True, stderr=True, tail=max(lines, 1))
    live = data.decode("utf-8", "replace").splitlines()
    return (kept + live)[-lines:] if lines else []


def follow_lines(container: Container, lines: int) -> Iterator[str]:
    """The container's last `lines` lines of output, then each new one as it comes."""
    stream = container.logs(stdout=True, stderr=True, stream=True, follow=True, tail=max(lines, 0))
    pending = b""
    for chunk in stream:
        *complete, pending = (pending + chunk).split(b"\n")
        for line in complete:
            yield line.decode("utf-8", "replace")
