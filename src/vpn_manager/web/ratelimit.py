"""Failed token lookups, counted per client address: after `limit` failures within `window`
seconds an address is refused (HTTP 429) until its oldest failure in the window ages out.
Successful lookups cost nothing, so a user's app refreshing its subscription is never slowed.

In memory, per process: a restart forgets. At most `max_clients` addresses are tracked; past
that the ones idle longest are dropped first, so a flood of addresses cannot grow memory."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


class FailureLimiter:
    def __init__(
        self,
        limit: int = 20,
        window: float = 60.0,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again; 0 when it may now."""
        failures = self._recent(client)
        if failures is None or len(failures) < self.limit:
            return 0.0
        return max(failures[0] + self.window - self.clock(), 0.0)

    def failed(self, client: str) -> None:
        """Count one failed lookup from `client`."""
        failures = self._recent(client)
        if failures is None:
            failures = self._failures[client] = deque()
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
        failures.append(self.clock())
        self._failures.move_to_end(client)
        while len(failures) > self.limit:
            failures.popleft()

    def _recent(self, client: str) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        horizon = self.clock() - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures
