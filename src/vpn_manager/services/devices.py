"""Device limits: a user connected from more client IPs than allowed (counted over all their
servers, where the engine reports client IPs) keeps the IPs seen first; the others' connections
are cut and, where nftables can be used, those IPs are kept off the server's port for a while
(engines/bans.py). Bans that no longer stand are lifted early.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from vpn_manager import storage
from vpn_manager.engines import bans
from vpn_manager.errors import VpnError
from vpn_manager.services.servers import ServerService, owners

log = logging.getLogger("vpn_manager.accounting")


class Devices:
    """Cuts the devices of users over their device limit."""

    def __init__(self, servers: ServerService) -> None:
        self.servers = servers
        self.db = servers.db

    async def limit_devices(self, ban_seconds: int = 60) -> dict[str, list[str]]:
        """Cut the devices of users connected from more client IPs than their device limit;
        returns user → the IPs cut. The IPs seen first stay connected."""
        async with self.db.reading() as session:
            limits = await storage.accounting.device_limits(session)
            rows = [r for r, _ in await storage.servers.list_servers(session)]
            running = [r for r in rows if self.servers.is_running(r)]
            owner_of = {
                r.id: owners(await storage.servers.identities(session, r.id)) for r in running
            }
        if bans.available():
            await self._lift_bans(limits, {r.port for r in running})
        if not limits:
            return {}
        first_seen: dict[int, dict[str, float]] = defaultdict(dict)
        found: dict[int, list[tuple[str, str, str]]] = defaultdict(list)  # server, identity, ip
        specs = {}
        for row in running:
            spec = specs[row.name] = storage.servers.spec_of(row)
            try:
                reached = await self.servers.reach(spec)
                sessions = await self.servers.engine(reached).sessions(reached)
            except VpnError as exc:
                log.warning("reading %s's client IPs failed: %s", row.name, exc.message)
                continue
            for item in sessions or ():
                client = owner_of[row.id].get(item.user)
                if client is None or client.user_id not in limits:
                    continue
                ips = first_seen[client.user_id]
                ips[item.ip] = min(ips.get(item.ip, item.since), item.since)
                found[client.user_id].append((row.name, item.user, item.ip))
        report: dict[str, list[str]] = {}
        for user_id, ips in first_seen.items():
            name, limit = limits[user_id]
            if len(ips) <= limit:
                continue
            excess = set(sorted(ips, key=lambda ip: (ips[ip], ip))[limit:])
            targets: dict[tuple[str, str], set[str]] = defaultdict(set)
            for server, identity, ip in found[user_id]:
                if ip in excess:
                    targets[server, identity].add(ip)
            for (server, identity), cut in targets.items():
                spec = specs[server]
                try:
                    reached = await self.servers.reach(spec)
                    await self.servers.engine(reached).cut_ips(
                        reached, identity, cut, self.servers.files(server)
                    )
                    # nftables here keeps devices off this machine's ports only.
                    remote = self.servers.on_remote_engine(spec)
                    if ban_seconds and bans.available() and not remote:
                        owner = bans.owner(self.servers.paths.home_id, user_id, limit)
                        await bans.ban(cut, spec.port, ban_seconds, owner)
                except VpnError as exc:
                    log.warning("cutting %s's extra devices on %s: %s", name, server, exc.message)
            report[name] = sorted(excess)
            log.info(
                "%s is connected from %d devices (limit %d): cut %s",
                name,
                len(ips),
                limit,
                ", ".join(sorted(excess)),
            )
        return report

    async def _lift_bans(self, limits: dict[int, tuple[str, int]], ports: set[int]) -> None:
        """End bans early that no longer stand: their user's limit was raised or removed (or
        the user is gone or no longer active), or no running server has that port."""
        stale = []
        for item in await bans.listed():
            owner = item.user_limit(self.servers.paths.home_id)
            if owner is None:
                continue  # another home's, or not one of ours
            user_id, limit = owner
            if item.port not in ports or user_id not in limits or limits[user_id][1] > limit:
                stale.append(item)
        if stale:
            await bans.lift(stale)
            log.info("lifted %d device bans that no longer apply", len(stale))
