"""The app as its views see it: the Backend, `attempt` for a service call whose failure is shown
to the user (then Failed is raised), the way to the Logs screen, and the notes on how user changes
were applied. The views import this module, never tui/app.py, which imports them."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from vpn_manager.tui.backend import Backend

T = TypeVar("T")


class Failed(Exception):
    """Raised by VpnApp.attempt after the failure was shown; callers just stop."""


class Shell(Protocol):
    """What VpnApp (tui/app.py) offers its views, besides being a Textual App."""

    backend: Backend

    async def attempt(self, work: Awaitable[T], what: str) -> T: ...

    async def show_logs(self, source: str) -> None: ...

    def tell_applied(self) -> None: ...
