"""Time an operator's onboarding, one `vpn` command per step, against doing it user by user.

The scenario (issue 17): three servers (Shadowsocks, Trojan, Hysteria2) on loopback, 30 friends
each given a 50 GB monthly quota on all three, then a fourth server (a second Trojan) granted to
everyone. It runs twice in fresh homes under a temporary directory, which it deletes:

- "one command per step": `vpn user add u01 … u30 --quota 50GB --reset monthly --server ss1
  --server tj1 --server hy1`, then `vpn user grant --all-users --server tj2`;
- "user by user": 30 x `vpn user add uNN … --server ss1 --server tj1 --server hy1`, then
  30 x `vpn user grant uNN --server tj2`.

Each step's wall time is measured around the subprocess; the installs are not timed. Afterwards it
checks that every server holds every user (`vpn server list`) and is healthy (`vpn server
status`), stops the servers and prints a table.

Usage, from the repository root:

    .venv/bin/python bench/onboarding.py [--users 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

VPN = Path(sys.executable).parent / "vpn"
SERVERS = (
    ("ss1", "shadowsocks", ()),
    ("tj1", "trojan", ("--sni", "vpn.test")),
    ("hy1", "hysteria2", ("--sni", "vpn.test")),
    ("tj2", "trojan", ("--sni", "vpn.test")),
)
LIMITS = ("--quota", "50GB", "--reset", "monthly")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Home:
    def __init__(self, root: Path, name: str) -> None:
        self.path = root / name
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("VPN_", "XDG_"))}
        self.env |= {"VPN_HOME": str(self.path), "HOME": str(self.path), "NO_COLOR": "1"}

    def run(self, *args: str) -> float:
        started = time.perf_counter()
        done = subprocess.run(
            [str(VPN), *args], env=self.env, capture_output=True, text=True, check=False
        )
        took = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(
                f"vpn {' '.join(args[:6])} … failed ({done.returncode}):\n{done.stderr}"
            )
        return took

    def json(self, *args: str) -> object:
        done = subprocess.run(
            [str(VPN), "--format", "json", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(done.stdout)

    def install(self) -> None:
        for name, protocol, extra in SERVERS:
            self.run(
                "server", "install", protocol, "--name", name, "--port", str(free_port()),
                "--listen", "127.0.0.1", "--host", "127.0.0.1", *extra,
            )  # fmt: skip

    def check(self, users: Sequence[str]) -> None:
        """Every user on every server, in the database and in each engine."""
        listed = self.json("server", "list")
        assert isinstance(listed, list)
        for server in listed:
            if server["users"] != len(users):
                raise SystemExit(f"{server['name']} has {server['users']} users, not {len(users)}")
        for name, _protocol, _extra in SERVERS:
            status = self.json("server", "status", name)
            assert isinstance(status, dict)
            if not status.get("healthy"):
                raise SystemExit(f"{name} is not healthy after the onboarding: {status}")

    def stop(self) -> None:
        for name, _protocol, _extra in SERVERS:
            subprocess.run(
                [str(VPN), "server", "stop", name], env=self.env, capture_output=True, check=False
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=30)
    options = parser.parse_args(argv)
    users = [f"u{i:02d}" for i in range(1, options.users + 1)]
    first_three = [a for name, _p, _e in SERVERS[:3] for a in ("--server", name)]
    rows: list[tuple[str, str, float]] = []
    root = Path(tempfile.mkdtemp(prefix="vpn-onboarding-"))
    try:
        steps = Home(root, "steps")
        steps.install()
        command = (
            f"vpn user add u01 … u{options.users:02d} {' '.join(LIMITS)} {' '.join(first_three)}"
        )
        rows.append(
            (
                "one command per step",
                command,
                steps.run("user", "add", *users, *LIMITS, *first_three),
            )
        )
        rows.append(
            (
                "one command per step",
                "vpn user grant --all-users --server tj2",
                steps.run("user", "grant", "--all-users", "--server", "tj2"),
            )
        )
        steps.check(users)
        steps.stop()

        each = Home(root, "each")
        each.install()
        adds = sum(each.run("user", "add", user, *LIMITS, *first_three) for user in users)
        rows.append(("user by user", f"{options.users} x vpn user add uNN … (same options)", adds))
        grants = sum(each.run("user", "grant", user, "--server", "tj2") for user in users)
        rows.append(("user by user", f"{options.users} x vpn user grant uNN --server tj2", grants))
        each.check(users)
        each.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    width = max(len(command) for _way, command, _took in rows)
    print(f"{'way':<22} {'command':<{width}} {'wall':>8}")
    for way, command, took in rows:
        print(f"{way:<22} {command:<{width}} {took:>7.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
