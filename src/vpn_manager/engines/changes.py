"""What every engine's Engine.change shares: which `vpn server set` option a field of
ServerChange is, and the refusal of the fields a protocol does not have."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from vpn_manager.errors import InvalidInput

if TYPE_CHECKING:
    from vpn_manager.models.server import ServerChange

# ServerChange's fields as the options of `vpn server set` that give them.
OPTIONS = {
    "sni": "--sni",
    "dest": "--dest",
    "method": "--method",
    "cert_file": "--cert",
    "key_file": "--key",
    "dns": "--dns",
    "mtu": "--mtu",
    "client_allowed_ips": "--allowed-ips",
    "decoy": "--decoy",
    "path": "--path",
    "service_name": "--service-name",
    "host_header": "--host-header",
    "xhttp_mode": "--xhttp-mode",
}
# Fields every server has: the caller's (port, host) or every engine's settings' (allow_private).
COMMON = frozenset({"port", "host", "allow_private"})


def refuse_others(change: ServerChange, protocol: str, own: Iterable[str]) -> None:
    """InvalidInput naming the first option given that a `protocol` server does not have."""
    allowed = COMMON | set(own)
    for name in change.given():
        if name not in allowed:
            raise InvalidInput(
                f"{OPTIONS.get(name, name)} does not apply to {protocol} servers.",
                hint="See `vpn server set --help` for what applies to which protocol.",
            )
