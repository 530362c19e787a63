"""Cutting one client's QUIC connection (Hysteria2 on Xray): an nftables table of (client
address, client port, server port) flows whose packets are dropped, each for a while.

A QUIC server serves every client from one UDP socket, so `ss -K` cannot single one out, and
Xray checks a Hysteria2 user only when its connection authenticates: a removed user's open
connection would keep working. Dropping that connection's packets (its client's address and
source port, as the access log names them) stops it at once; other clients, the same address's
other connections included, are untouched. The client notices when its connection idles out
(QUIC's idle timeout: 30 s on both ends); a new connection comes from another port and is
checked against the users then, so a removed user is refused. The drops expire by themselves,
after the connection is gone on both ends.

The chain sits in prerouting at raw priority (as the device bans, engines/bans.py), where loopback
traffic passes too. The table is the machine's, shared by every vpn home on it: its elements name
no user and end by themselves.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
from collections.abc import Iterable

from vpn_manager.errors import EngineError
from vpn_manager.proc import run

TABLE = "vpnmanager_flowcuts"
HOLD_SECONDS = 120  # longer than QUIC's idle timeout (30 s): the connection is gone by then

_TABLE_TEXT = f"""table inet {TABLE} {{
    set cut4 {{ type ipv4_addr . inet_service . inet_service; flags timeout; }}
    set cut6 {{ type ipv6_addr . inet_service . inet_service; flags timeout; }}
    chain prerouting {{ type filter hook prerouting priority raw; policy accept; }}
}}
flush chain inet {TABLE} prerouting
add rule inet {TABLE} prerouting ip saddr . udp sport . udp dport @cut4 drop
add rule inet {TABLE} prerouting ip6 saddr . udp sport . udp dport @cut6 drop
"""


def available() -> bool:
    return shutil.which("nft") is not None


async def drop_flows(
    peers: Iterable[tuple[str, int]], port: int, seconds: int = HOLD_SECONDS
) -> int:
    """Drop the UDP packets of these client (address, port) pairs to our `port` for `seconds`;
    return how many flows that was. EngineError (with the reason) where the firewall cannot be
    changed (not root, no nftables)."""
    lines = []
    for address, peer_port in sorted(set(peers)):
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        name = "cut4" if ip.version == 4 else "cut6"
        lines.append(
            f"add element inet {TABLE} {name} "
            f"{{ {ip.compressed} . {peer_port} . {port} timeout {seconds}s }}"
        )
    if not lines:
        return 0
    if not available():
        raise EngineError(
            "Cannot cut the removed users' QUIC connections: nftables (`nft`) is not installed.",
            hint="Install nftables (apt-get install nftables) and run as root.",
        )
    done = await run(["nft", "-f", "-"], input=_TABLE_TEXT + "\n".join(lines) + "\n", check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise EngineError(
            f"Could not cut {len(lines)} QUIC connection(s): {reason}",
            hint="Cutting QUIC connections needs root or CAP_NET_ADMIN.",
        )
    return len(lines)


async def dropped(port: int) -> set[tuple[str, int]]:
    """The client (address, port) flows to our `port` whose packets are dropped now."""
    done = await run(["nft", "-j", "list", "table", "inet", TABLE], check=False)
    if done.returncode != 0:
        return set()
    found = set()
    for item in json.loads(done.stdout).get("nftables", []):
        for element in item.get("set", {}).get("elem", []) or []:
            inner = element.get("elem", {})
            value = inner.get("val", element)
            concat = value.get("concat") if isinstance(value, dict) else None
            if concat and len(concat) == 3 and int(concat[2]) == port:
                found.add((str(concat[0]), int(concat[1])))
    return found
