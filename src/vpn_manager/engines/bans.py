"""Keeping a user's extra devices out for a while: an nftables table of (client IP, server port)
pairs that expire by themselves.

A device over its user's limit is first cut (the engine closes its connections), but a client
app reconnects at once; the ban drops its packets to that server's port until the ban times out,
so the devices that were there first keep the account. The rule sits in prerouting at raw
priority, before Docker's DNAT, so it covers engines in containers too. The ban is by IP: other
users behind the same address (one NAT) are kept off that port as well, for the same time.
"""

from __future__ import annotations

import ipaddress
import shutil

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


def available() -> bool:
    return shutil.which("nft") is not None


async def ban(ips: set[str], port: int, seconds: int) -> None:
    """Drop packets from these IPs to `port` for `seconds` (a repeated ban restarts the clock).
    Raises EngineError (nft's reason) where the firewall cannot be changed (not root)."""
    v4 = sorted(ip for ip in ips if ipaddress.ip_address(ip).version == 4)
    v6 = sorted(ip for ip in ips if ipaddress.ip_address(ip).version == 6)
    script = _TABLE_TEXT  # declaring an existing table or set again keeps its elements
    for name, group in (("banned4", v4), ("banned6", v6)):
        if group:
            items = ", ".join(f"{ip} . {port}" for ip in group)
            # delete-then-add restarts a running timeout; the add alone would keep the old one.
            script += f"add element inet {TABLE} {name} {{ {items} }}\n"
            script += f"delete element inet {TABLE} {name} {{ {items} }}\n"
            script += f"add element inet {TABLE} {name} {{ {_timed(group, port, seconds)} }}\n"
    await run(["nft", "-f", "-"], input=script)


async def banned(port: int) -> set[str]:
    """The IPs banned from `port` right now."""
    done = await run(["nft", "-j", "list", "table", "inet", TABLE], check=False)
    if done.returncode != 0:
        return set()
    import json

    found = set()
    for item in json.loads(done.stdout).get("nftables", []):
        for element in item.get("set", {}).get("elem", []) or []:
            value = element.get("elem", {}).get("val", element)
            concat = value.get("concat") if isinstance(value, dict) else None
            if concat and len(concat) == 2 and concat[1] == port:
                found.add(str(concat[0]))
    return found


async def unban_port(port: int) -> None:
    """Lift every ban on `port` (the server was removed, or a device limit raised)."""
    ips = await banned(port)
    if ips:
        v4 = [ip for ip in ips if ipaddress.ip_address(ip).version == 4]
        v6 = [ip for ip in ips if ipaddress.ip_address(ip).version == 6]
        script = ""
        for name, group in (("banned4", v4), ("banned6", v6)):
            if group:
                items = ", ".join(f"{ip} . {port}" for ip in group)
                script += f"delete element inet {TABLE} {name} {{ {items} }}\n"
        await run(["nft", "-f", "-"], input=script, check=False)


def _timed(ips: list[str], port: int, seconds: int) -> str:
    return ", ".join(f"{ip} . {port} timeout {seconds}s" for ip in ips)
