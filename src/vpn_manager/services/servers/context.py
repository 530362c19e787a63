"""What every part of the server service shares: the database, where a server's files go (its
rendered config, keys, control directory, applied record), which runtime and engine it runs on,
and its turn for changing its engine. Also the words for an engine's users (identities, owners).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from vpn_manager import storage
from vpn_manager.engines.base import Engine, Files
from vpn_manager.engines.registry import engine_for, engine_name
from vpn_manager.errors import EngineError, InvalidInput, VpnError
from vpn_manager.labels import DEFAULT_TEMPLATE
from vpn_manager.paths import Paths, entry
from vpn_manager.runtimes.base import DockerDefaults, Launch, ProcessState, Runtime, ServerFiles
from vpn_manager.runtimes.choice import Runtimes
from vpn_manager.runtimes.native import NativeRuntime
from vpn_manager.services import owed_cuts, pending_readings
from vpn_manager.services.locks import server_turn
from vpn_manager.specs import Client, ServerSpec
from vpn_manager.storage import Database

if TYPE_CHECKING:
    from vpn_manager.proc import Commands
    from vpn_manager.runtimes.docker.runtime import DockerRuntime
    from vpn_manager.services.servers.apply import Applied
    from vpn_manager.storage.orm import ServerRow

CONTROL_DIR_MAX = 88  # leaves 19 bytes of a unix socket path's 107 for "/" and the socket's name


def utcnow() -> datetime:
    return datetime.now(UTC)


def engine_identity(client: Client) -> str:
    """How an engine names a user: WireGuard by the peer's public key, the others by email."""
    return str(client.secret.get("public_key") or client.email)


def client_of(identity: str) -> Client:
    """A user an engine has and the database does not, as much of a Client as removing it
    takes (its email, or its WireGuard public key)."""
    found = re.fullmatch(r"user-(\d+)", identity)
    if found:
        return Client(int(found.group(1)), identity, {})
    return Client(0, identity, {"public_key": identity}, alias=identity)


def count_users(count: int) -> str:
    return f"{count} user" if count == 1 else f"{count} users"


def owners(clients: list[Client]) -> dict[str, Client]:
    """Engine-side identities → the client: protocol servers count by Client.email (user-<id>),
    proxies by user name, WireGuard by the peer's public key."""
    owner = {c.email: c for c in clients} | {c.name: c for c in clients}
    owner |= {c.secret["public_key"]: c for c in clients if "public_key" in c.secret}
    return owner


def short_control_root() -> Path:
    """For homes whose state directory is too deep for a unix socket path (108 bytes): a private
    directory of ours on a short path, /run/user/UID/vpn-manager (or /tmp/vpn-manager-UID), made
    0700 and refused if someone else owns it or it is a symlink."""
    import os
    import stat

    uid = os.getuid()
    runtime = Path(f"/run/user/{uid}")
    root = runtime / "vpn-manager" if runtime.is_dir() else Path(f"/tmp/vpn-manager-{uid}")
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=0o700)
    found = root.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != uid or found.st_mode & 0o077:
        raise EngineError(
            f"{root} is not a private directory of this user: engine control sockets cannot "
            "go there.",
            hint="Remove it, or use a shorter VPN_HOME (or XDG_STATE_HOME).",
        )
    return root


@dataclass(eq=False, repr=False)
class ServerContext:
    """A home's servers as the parts of the service reach them: database, paths, runtimes."""

    db: Database
    paths: Paths
    now: Callable[[], datetime]
    runtime: NativeRuntime
    docker_settings: DockerDefaults
    runtimes: Runtimes
    applied: list[Applied] = field(default_factory=list)  # what user changes did, to tell
    # a server's engine name -> the engine (its helper commands run where given): the real ones
    # unless a test hands in its own
    engine_for: Callable[[str, Commands | None], Engine] = engine_for
    # How links name themselves in client apps (the settings' links.label, vpn_manager.labels).
    link_label: str = DEFAULT_TEMPLATE

    # -- runtimes ------------------------------------------------------------------------------
    def docker(self, host: str | None = None) -> DockerRuntime:
        """The Docker runtime for one engine (None: settings' docker.host, else the default);
        the SDK is imported and the engine reached only now."""
        return self.runtimes.docker(host)

    def runtime_of(self, spec: ServerSpec) -> Runtime:
        return self.runtimes.runtime_of(spec)

    def on_remote_engine(self, spec: ServerSpec) -> bool:
        """Whether the server runs on another machine (decided from its address alone, without
        reaching it)."""
        return self.runtime_of(spec).is_remote()

    async def reach(self, spec: ServerSpec) -> ServerSpec:
        """The server as this machine reaches its engine's APIs and port (the same spec with
        its private control directory, unless it runs on a remote Docker engine)."""
        return await self.runtime_of(spec).reach(spec, self.where(spec.name))

    def engine(self, spec: ServerSpec) -> Engine:
        """The server's engine, running its helper commands (WireGuard's `ip`, `wg`, `nft`)
        where the server runs: on this machine, or inside its container."""
        return self.engine_for(engine_name(spec), self.runtime_of(spec).commands(spec.name))

    def state_of(self, row: ServerRow) -> ProcessState:
        """Is a server's engine running, wherever it runs (for the service and metrics)."""
        return self.runtime_of(storage.servers.spec_of(row)).state(row.name)

    def is_running(self, row: ServerRow) -> bool:
        """state_of(row).running, with a Docker engine that cannot be reached counted as not."""
        try:
            return self.state_of(row).running
        except VpnError:
            return False

    def placed(self, spec: ServerSpec) -> tuple[ServerSpec, Files]:
        """The server as its engine sees it where it runs (Runtime.placed)."""
        return self.runtime_of(spec).placed(spec, self.where(spec.name))

    def where(self, name: str) -> ServerFiles:
        """Where a server's files are, for its runtime."""
        return ServerFiles(self.files(name), self.keys_dir(name), lambda: self.control_dir(name))

    # -- files ---------------------------------------------------------------------------------
    def keys_dir(self, name: str) -> Path:
        return entry(self.paths.keys_dir, name)

    def control_dir(self, name: str) -> Path:
        """The server's private directory (0700) for its engine's unix-socket control APIs. A name
        that would make the socket path too long for a unix socket (108 bytes) is replaced by a
        short hash of it."""
        found = entry(self.paths.run_dir / "api", name)
        short = hashlib.sha256(name.encode()).hexdigest()[:12]
        if len(str(found).encode()) > CONTROL_DIR_MAX:
            found = self.paths.run_dir / "api" / short
        if len(str(found).encode()) > CONTROL_DIR_MAX:  # a home deep in the file system
            found = short_control_root() / self.paths.home_id / short
        return found

    def files(self, name: str) -> Files:
        return Files(
            config=entry(self.paths.rendered_dir, name) / "config.json",
            access_log=entry(self.paths.logs_dir, name, ".access.log"),
            error_log=entry(self.paths.logs_dir, name, ".error.log"),
        )

    def turn(self, name: str) -> contextlib.AbstractAsyncContextManager[None]:
        """This server's turn for changing its engine (see services/locks.py)."""
        return server_turn(self.paths.run_dir, name)

    def applied_file(self, name: str) -> Path:
        """Where the record of what the engine was last (re)started or reloaded with is kept."""
        return entry(self.paths.run_dir, name, ".applied")

    def forget_record(self, name: str) -> None:
        self.applied_file(name).unlink(missing_ok=True)

    def launch(self, engine: Engine, spec: ServerSpec) -> Launch:
        return self.runtime_of(spec).launch(engine, spec, self.where(spec.name))

    async def spec(self, name: str) -> ServerSpec:
        async with self.db.reading() as session:
            return storage.servers.spec_of(await storage.servers.server_row(session, name))

    def forget_files(self, name: str) -> None:
        try:
            files, keys_dir = self.files(name), self.keys_dir(name)
        except InvalidInput:  # a name from before names were checked: nothing of ours is there
            return
        # The rendered directory holds the config and what the engine keeps beside it (sing-box's
        # Shadowsocks user list and cache).
        shutil.rmtree(files.config.parent, ignore_errors=True)
        shutil.rmtree(keys_dir, ignore_errors=True)
        shutil.rmtree(self.control_dir(name), ignore_errors=True)
        pending_readings.done(self.paths.run_dir, name)  # a last reading of a server that is gone
        owed_cuts.forget(self.paths.run_dir, name)
        self.forget_record(name)

    def forget_logs(self, name: str) -> None:
        """Delete a server's log files: its engine's output (a removed container's too) and its
        error and access logs. Access logs hold client IPs, so they go with the server."""
        try:
            files, output = self.files(name), self.runtime.log_file(name)
        except InvalidInput:  # a name from before names were checked: nothing of ours is there
            return
        for path in (output, files.error_log, files.access_log):
            path.unlink(missing_ok=True)
