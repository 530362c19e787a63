"""The runtime contract: start, stop and inspect one engine process for one server."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Launch:
    """What to run for a server: the engine's argv and where its log goes."""

    server: str
    argv: list[str]
    log_file: Path
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProcessState:
    running: bool
    pid: int | None = None
    started_at: datetime | None = None
    rss_bytes: int | None = None
    exit_detail: str = ""

    @property
    def epoch(self) -> str:
        """Names this engine process: its counters only grow while it lives."""
        return f"{self.pid}@{self.started_at.timestamp() if self.started_at else 0:.0f}"


class Runtime(Protocol):
    """Where engines run. Implementations: runtimes.native.NativeRuntime."""

    async def start(self, launch: Launch) -> int:
        """Start the server's engine unless it runs already; return its pid. Never two."""
        ...

    async def stop(self, server: str, timeout: float = 5.0) -> bool:
        """Stop the engine; True if one was running."""
        ...

    def state(self, server: str) -> ProcessState: ...

    def logs(self, server: str, lines: int = 100) -> list[str]: ...

    def exited(self, server: str) -> int | None:
        """The exit code of an engine this process started and that has ended, else None."""
        ...
