"""Servers: install, run, change and remove them, and keep their users in the running engine.

Every change is a transaction across the database, the rendered config and the running engine:
- user-level changes (grant, revoke, enable, disable, delete) are written into the rendered config
  and applied live through the engine's API; if the live call fails, the file and the database
  are put back;
- everything else goes render → validate with the real engine → atomic write → restart → health
  probe; on failure the last good config is restored and restarted, and the command fails with
  the reason.

ServerService is the one object the front ends and the other services hold; its work is done by
one part per job:
- context.py: what the parts share (database, file layout, runtimes and engines, turns);
- apply.py: the apply transaction (render, validate, write, apply live or restart, probe, roll
  back) and the record of what the engine runs;
- catalog.py: install, list, change settings or keys, remove;
- lifecycle.py: start, stop, restart, status, usage, logs, the control-port guard;
- access.py: users on servers (grant, revoke, user changes brought to the engines, links);
- convergence.py: engines brought back in line with the database, orphans and strays removed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from vpn_manager.engines.base import Engine
from vpn_manager.engines.registry import engine_for
from vpn_manager.labels import DEFAULT_TEMPLATE
from vpn_manager.paths import Paths
from vpn_manager.runtimes.base import DockerDefaults
from vpn_manager.runtimes.choice import Runtimes
from vpn_manager.runtimes.native import NativeRuntime
from vpn_manager.services.servers.access import Access, Pair, Pending, ServerUsers, pending_of
from vpn_manager.services.servers.apply import Applied, Apply
from vpn_manager.services.servers.catalog import Catalog, check_port_free, default_host
from vpn_manager.services.servers.context import (
    ServerContext,
    client_of,
    engine_identity,
    owners,
    utcnow,
)
from vpn_manager.services.servers.convergence import Convergence
from vpn_manager.services.servers.lifecycle import Lifecycle
from vpn_manager.storage import Database

if TYPE_CHECKING:
    from vpn_manager.proc import Commands

__all__ = [
    "Access",
    "Applied",
    "Pair",
    "Pending",
    "ServerService",
    "check_port_free",
    "client_of",
    "default_host",
    "engine_identity",
    "owners",
    "pending_of",
    "utcnow",
]


class ServerService(ServerContext):
    """A home's servers, for the front ends and the other services: what the parts share (the
    database, where files go, runtimes and engines, turns) and each part's methods (see the
    module's docstring)."""

    def __init__(
        self,
        db: Database,
        paths: Paths,
        clock: Callable[[], datetime] = utcnow,
        runtime: NativeRuntime | None = None,
        docker: DockerDefaults | None = None,
        engines: Callable[[str, Commands | None], Engine] = engine_for,
        runtimes: Runtimes | None = None,
        link_label: str = DEFAULT_TEMPLATE,
    ) -> None:
        runtime = runtime or NativeRuntime(paths.run_dir, paths.logs_dir)
        if docker is None:  # the built-in defaults (the service always passes its own)
            from vpn_manager.settings import DockerSettings

            docker = DockerSettings()
        # `engines` (engine name -> engine) and `runtimes` (which runtime a server has): the real
        # ones unless a test hands in its own.
        runtimes = runtimes or Runtimes(
            runtime, str(paths.data_dir), paths.logs_dir, paths.run_dir, docker
        )
        super().__init__(
            db, paths, clock, runtime, docker, runtimes, engine_for=engines, link_label=link_label
        )
        apply = Apply(self)
        convergence = Convergence(self, apply)
        lifecycle = Lifecycle(self, apply)
        catalog = Catalog(self, apply, lifecycle, convergence)
        users = ServerUsers(self, apply, convergence)
        self.render = apply.render  # a server's config as it would be written now

        # the servers a home has
        self.all = catalog.all
        self.get = catalog.get
        self.install = catalog.install
        self.remove = catalog.remove
        self.rotate_keys = catalog.rotate_keys
        self.update = catalog.update
        self.check_update = catalog.check_update
        self.export_compose = catalog.export_compose

        # running them
        self.start = lifecycle.start
        self.restart = lifecycle.restart
        self.stop = lifecycle.stop
        self.status = lifecycle.status
        self.usage = lifecycle.usage
        self.read_logs = lifecycle.read_logs
        self.logs = lifecycle.logs
        self.follow = lifecycle.follow
        self.guard_running = lifecycle.guard_running
        self.warnings = lifecycle.warnings
        self.advice = lifecycle.advice
        self.control_warnings = lifecycle.control_warnings

        # users on them
        self.grant = users.grant
        self.grant_many = users.grant_many
        self.grant_in = users.grant_in
        self.access = users.access
        self.outline_access = users.outline_access
        self.ways = users.ways
        self.client_config = users.client_config
        self.revoke = users.revoke
        self.revoke_many = users.revoke_many
        self.clients_before = users.clients_before
        self.resync = users.resync
        self.commit_then_apply = users.commit_then_apply
        self.settle = users.settle

        # bringing them back in line
        self.converge = convergence.converge
        self.reconcile = convergence.reconcile
        self.stop_orphans = convergence.stop_orphans
