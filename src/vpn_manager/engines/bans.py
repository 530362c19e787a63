"""Keeping a user's extra devices out for a while: an nftables table of (client IP, server port)
pairs that expire by themselves.

A device over its user's limit is first cut (the engine closes its connections), but a client
app reconnects at once; the ban drops its packets to that server's port until the ban times out,
so the devices that were there first keep the account. The rule sits in prerouting at raw
priority, before Docker's DNAT, so it covers engines in containers too. The ban is by IP: other
users behind the same address (one NAT) are kept off that port as well, for the same time.

Each ban carries a comment naming whom it was for and under which limit ("home 1a2b3c4d user 7
limit 1": the table is the machine's, shared by every vpn home on it), so that the service of
that home can lift it early when that limit is raised or removed.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass

from vpn_manager.proc import run

TABLE = "vpnmanager_devices"

_TABLE_TEXT = f"""table inet {TABLE} {{
    set banned4 {{ type ipv4_addr . inet_service; flags timeout; }}
    set banned6 {{ type ipv6_addr . inet_service; flags timeout; }}
    chain prerouting {{ type filter hook prerouting priority raw; policy accept; }}
}}
flush chain inet {TABLE} prerouting
add rule inet {TABLE} prerouting ip saddr . tcp dport @banned4 drop
add rule inet {TABLE} prerouting ip saddr . udp dport @banned4 drop
add rule inet {TABLE} prerouting ip6 saddr . tcp dport @banned6 drop
add rule inet {TABLE} prerouting ip6 saddr . udp dport @banned6 drop
"""


_OWNER = re.compile(r"home (\w+) user (\d+) limit (\d+)")


@dataclass(frozen=True)
class Ban:
    ip: str
    port: int
    owner: str = ""  # the element's comment

    def user_limit(self, home: str) -> tuple[int, int] | None:
        """(user id, device limit) of the user of `home` the ban was for (None: not one of
        that home's bans)."""
        found = _OWNER.fullmatch(self.owner)
        return (int(found[2]), int(found[3])) if found and found[1] == home else None

    @property
    def set_name(self) -> str:
        return "banned4" if ipaddress.ip_address(self.ip).version == 4 else "banned6"


def available() -> bool:
    return shutil.which("nft") is not None


def owner(home: str, user_id: int, limit: int) -> str:
    return f"home {home} user {user_id} limit {limit}"


async def ban(ips: set[str], port: int, seconds: int, comment: str = "") -> None:
    """Drop packets from these IPs to `port` for `seconds` (a repeated ban restarts the clock).
    Raises EngineError (nft's reason) where the firewall cannot be changed (not root)."""
    script = _TABLE_TEXT  # declaring an existing table or set again keeps its elements
    note = f' comment "{comment}"' if comment else ""
    for name, group in _by_set(Ban(ip, port) for ip in sorted(ips)).items():
        keys = ", ".join(f"{b.ip} . {port}" for b in group)
        timed = ", ".join(f"{b.ip} . {port} timeout {seconds}s{note}" for b in group)
        # delete-then-add restarts a running timeout; the add alone would keep the old one.
        script += f"add element inet {TABLE} {name} {{ {keys} }}\n"
        script += f"delete element inet {TABLE} {name} {{ {keys} }}\n"
        script += f"add element inet {TABLE} {name} {{ {timed} }}\n"
    await run(["nft", "-f", "-"], input=script)


async def listed() -> list[Ban]:
    """Every ban in force (none if the table is not there)."""
    done = await run(["nft", "-j", "list", "table", "inet", TABLE], check=False)
    if done.returncode != 0:
        return []
    found = []
    for item in json.loads(done.stdout).get("nftables", []):
        for element in item.get("set", {}).get("elem", []) or []:
            inner = element.get("elem", {})
            value = inner.get("val", element)
            concat = value.get("concat") if isinstance(value, dict) else None
            if concat and len(concat) == 2:
                found.append(Ban(str(concat[0]), int(concat[1]), str(inner.get("comment", ""))))
    return found


async def banned(port: int) -> set[str]:
    """The IPs banned from `port` right now."""
    return {b.ip for b in await listed() if b.port == port}


async def lift(items: Iterable[Ban]) -> None:
    """End these bans now (one that ended meanwhile is no error)."""
    lines = [
        f"delete element inet {TABLE} {name} {{ {b.ip} . {b.port} }}"
        for name, group in _by_set(items).items()
        for b in group
    ]
    if not lines:
        return
    done = await run(["nft", "-f", "-"], input="\n".join(lines) + "\n", check=False)
    if done.returncode != 0:  # all or nothing: one that timed out meanwhile fails the batch
        for line in lines:
            await run(["nft", "-f", "-"], input=line + "\n", check=False)


async def unban_port(port: int) -> None:
    """Lift every ban on `port`."""
    await lift(b for b in await listed() if b.port == port)


def _by_set(items: Iterable[Ban]) -> dict[str, list[Ban]]:
    groups: dict[str, list[Ban]] = {}
    for item in items:
        groups.setdefault(item.set_name, []).append(item)
    return groups
