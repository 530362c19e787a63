"""The rule every command that takes several users keeps (add, update, enable, disable, delete,
grant, revoke, import): at least one, each once. Its own module, so that the user and server
services can share it without importing each other."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from vpn_manager.errors import InvalidInput


def reject_repeats(names: Sequence[str]) -> None:
    """A batch must name at least one user and each user once."""
    if not names:
        raise InvalidInput("Give at least one user name.")
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        raise InvalidInput(f"{repeated[0]!r} is named more than once.")
