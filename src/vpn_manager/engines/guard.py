"""Keeping the engines' TCP control APIs to ourselves: an nftables table per server that refuses
connections to its control ports on 127.0.0.0/8 from every local user but us.

Control APIs change users and read their keys; on 127.0.0.1 any local account could call them.
Where the engine can listen on a unix socket (Xray), it does, in a 0700 directory of ours and no
rule is needed (engines/xray/config.py). sing-box's services listen on TCP only and ssm-api has
no authentication (its api service checks a secret): their ports (Engine.control_ports) get this
table, made before the engine starts and deleted when it stops. The rule sits in the output hook
at raw priority, before Docker's DNAT of a published port, so it also covers control ports that
the Docker runtime publishes on the host's 127.0.0.1 (docker-proxy or DNAT alike); a refused
connection gets a TCP reset (connect() fails with "Connection refused" at once). For a server on
a remote Docker engine the table holds the local ends of its ssh tunnel instead (made when the
server is first reached; the ports on the remote host's loopback are beyond this machine).

Without nftables (not root, no `nft`) nothing is set up, and warning() says plainly that the API
is reachable by the other local users of the machine (`vpn server status`, install, start).
"""

from __future__ import annotations

import os
import shutil

from vpn_manager.errors import VpnError
from vpn_manager.paths import home_id
from vpn_manager.proc import run

PREFIX = "vpnmanager_api_"


def table(home: str, server: str) -> str:
    """The server's table: named by its home too (tables are the machine's, shared by homes).
    Server names are letters, digits, '-', '_' and '.', all valid in an nft name after the
    prefix."""
    return f"{PREFIX}{home_id(home)}_{server}"


def rules(name: str, ports: list[int], uid: int) -> str:
    """An nft script that (re)makes the table `name` in one transaction."""
    listed = ", ".join(str(p) for p in sorted(set(ports)))
    return (
        f"table inet {name} {{}}\n"
        f"delete table inet {name}\n"
        f"table inet {name} {{\n"
        "    chain output {\n"
        "        type filter hook output priority raw; policy accept;\n"
        f"        ip daddr 127.0.0.0/8 tcp dport {{ {listed} }} meta skuid != {uid} "
        "reject with tcp reset\n"
        "    }\n"
        "}\n"
    )


def available() -> bool:
    return shutil.which("nft") is not None


async def protect(home: str, server: str, ports: list[int]) -> str | None:
    """Keep these loopback ports to our uid. Returns None when done, else a warning() that says
    why it could not be (no nft, not allowed to change the firewall); nothing is raised."""
    if not ports:
        await release(home, server)
        return None
    if not available():
        return exposed(ports, "nft is not installed")
    try:
        done = await run(
            ["nft", "-f", "-"], input=rules(table(home, server), ports, os.geteuid()), check=False
        )
    except VpnError as exc:
        return exposed(ports, exc.message.rstrip("."))
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return exposed(ports, lines[0] if lines else f"nft exited with {done.returncode}")
    return None


async def release(home: str, server: str) -> None:
    """Delete the server's table (none there is no error)."""
    if available():
        await run(["nft", "delete", "table", "inet", table(home, server)], check=False)


async def tables() -> set[str] | None:
    """The names of every inet table on the machine (None: nft cannot be asked)."""
    if not available():
        return None
    done = await run(["nft", "list", "tables", "inet"], check=False)
    if done.returncode != 0:
        return None
    return {line.split()[-1] for line in done.stdout.splitlines() if line.startswith("table ")}


async def protected(home: str, server: str, ports: list[int]) -> bool:
    """Whether the server's table is there and names every one of these ports."""
    if not ports:
        return True
    if not available():
        return False
    done = await run(["nft", "list", "table", "inet", table(home, server)], check=False)
    if done.returncode != 0:
        return False
    text = done.stdout.replace(",", " ").replace("{", " ").replace("}", " ").split()
    return all(str(port) in text for port in ports)


async def warning(home: str, server: str, ports: list[int]) -> str | None:
    """What a person must be told about these control ports of a running server on this
    machine: None when they are kept to us (or there are none)."""
    if await protected(home, server, ports):
        return None
    if not available():
        reason = "nft is not installed"
    elif os.geteuid() != 0:
        reason = "not root"
    else:
        reason = f"its table is missing: `vpn server restart {server}` or `vpn serve` makes it"
    return exposed(ports, reason)


def exposed(ports: list[int], reason: str) -> str:
    listed = ", ".join(str(p) for p in ports)
    return (
        f"the control API (127.0.0.1 port {listed}) is reachable by every local user of this "
        f"machine: the firewall rule that keeps it to us could not be set ({reason}). An API "
        "without a secret of its own (sing-box's ssm-api) lets them list and change users."
    )


def remote(ports: list[int]) -> str:
    """The warning for control ports published on a remote Docker host's loopback."""
    listed = ", ".join(str(p) for p in ports)
    return (
        f"the control API (container port {listed}) is published on the Docker host's "
        "127.0.0.1, where every local user of that machine can reach it; this machine's "
        "firewall cannot keep it to us."
    )
