"""SSH tunnels to a remote Docker host, through the system's OpenSSH client.

One master connection per (home, host) (`ssh -M`, ControlPath in the manager's run directory,
ControlPersist a short time after its last use) carries everything:
- the remote Docker socket, forwarded to a local unix socket when the master starts (`-L
  LOCAL.sock:/var/run/docker.sock`), so the Docker SDK talks plain unix:// to it;
- the engines' control API ports, which the Docker runtime publishes on the remote host's
  loopback only: each is forwarded on demand to a free port on this machine's loopback
  (`ssh -O forward -L 127.0.0.1:LOCAL:127.0.0.1:REMOTE`).
Every command that needs the tunnel finds the master by its ControlPath (`ssh -O check`) or starts
it; the forwards it added are recorded next to it (with the master's pid), so the next command
reuses them instead of adding more. ssh runs in batch mode: keys or an agent, never a prompt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import stat
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from vpn_manager.errors import EngineError, InvalidInput
from vpn_manager.fsutil import atomic_write
from vpn_manager.proc import run_sync
from vpn_manager.settings import DockerSshSettings

CONNECT_TIMEOUT_S = 10
CHECK_EVERY_S = 5.0  # how long a live master is trusted without asking again
# ssh appends 17 characters to a ControlPath while it sets it up; sun_path holds 108 bytes.
MAX_SOCKET_PATH = 90


class SshTarget:
    """`ssh://[user@]host[:port]`, as ssh's own command line takes it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "ssh" or not parts.hostname:
            raise InvalidInput(
                f"{url!r} is not an ssh:// address.", hint="Write ssh://user@host or ssh://host:22."
            )
        try:
            self.port = parts.port
        except ValueError:
            raise InvalidInput(f"{url!r} has no valid port.", hint="ssh://user@host:22") from None
        self.user = parts.username
        self.host = parts.hostname
        self.url = url

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def shown(self) -> str:
        return self.destination + (f":{self.port}" if self.port else "")


def _local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _socket_dir(run_dir: Path) -> Path:
    """Where the control and Docker sockets go: the run directory if its path is short enough
    for a unix socket, else a private directory in the system's temporary directory."""
    here = run_dir / "ssh"
    if len(str(here)) + 30 <= MAX_SOCKET_PATH:
        return here
    return Path(tempfile.gettempdir()) / f"vpn-manager-ssh-{os.getuid()}"


class Tunnel:
    """The tunnel to one remote Docker host for one home."""

    def __init__(self, url: str, home: str, run_dir: Path, settings: DockerSshSettings) -> None:
        self.target = SshTarget(url)
        self.settings = settings
        key = hashlib.sha256(f"{home}\0{url}".encode()).hexdigest()[:12]
        self.dir = _socket_dir(run_dir)
        self.control = self.dir / f"{key}.ctl"
        self.docker_socket = self.dir / f"{key}.docker.sock"
        self.forwards_file = self.dir / f"{key}.forwards.json"
        self._checked: tuple[float, int] | None = None  # (when, the master's pid)
        self._address: str | None = None

    @property
    def docker_url(self) -> str:
        return f"unix://{self.docker_socket}"

    def _options(self) -> list[str]:
        s = self.settings
        options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}"]
        if s.config_file:
            options += ["-F", s.config_file]
        if s.identity_file:
            options += ["-i", s.identity_file, "-o", "IdentitiesOnly=yes"]
        if s.known_hosts_file:
            options += ["-o", f"UserKnownHostsFile={s.known_hosts_file}"]
        if self.target.port:
            options += ["-p", str(self.target.port)]
        return options

    def _ssh(self, *args: str, timeout: float = 10.0, check: bool = False) -> tuple[int, str]:
        argv = ["ssh", "-S", str(self.control), *self._options(), *args, self.target.destination]
        done = run_sync(argv, timeout=timeout, check=check)
        return done.returncode, (done.stdout + done.stderr).strip()

    def master_pid(self) -> int | None:
        """The pid of the live master connection, or None."""
        if not self.control.exists():
            return None
        code, text = self._ssh("-O", "check")
        found = re.search(r"pid=(\d+)", text)
        return int(found.group(1)) if code == 0 and found else None

    def open(self) -> int:
        """Make sure the master runs (start it if not); return its pid."""
        now = time.monotonic()
        if self._checked and now - self._checked[0] < CHECK_EVERY_S:
            return self._checked[1]
        pid = self.master_pid()
        if pid is None:
            pid = self._start()
        self._checked = (time.monotonic(), pid)
        return pid

    def recheck(self) -> None:
        """Ask ssh again on the next open() (a request through the tunnel just failed: the
        master may be gone)."""
        self._checked = None

    def _private_dir(self) -> None:
        """Make the sockets' directory, ours alone (it may be in the shared temporary
        directory, where someone else could have made it first)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        found = os.lstat(self.dir)
        if stat.S_ISLNK(found.st_mode) or found.st_uid != os.getuid():
            raise EngineError(
                f"{self.dir} is not a directory of this user's, so the ssh tunnel's sockets "
                "cannot go there.",
                hint=f"Remove it, or use a shorter VPN_HOME: rm -r {self.dir}",
            )
        os.chmod(self.dir, 0o700)

    def _start(self) -> int:
        self._private_dir()
        for stale in (self.forwards_file, self.control):  # they went with the master before
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        code, text = self._ssh(
            "-M",
            "-f",
            "-N",
            "-o",
            f"ControlPersist={self.settings.persist_s}",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "StreamLocalBindUnlink=yes",
            "-o",
            "ServerAliveInterval=15",
            "-L",
            f"{self.docker_socket}:{self.settings.remote_socket}",
            timeout=CONNECT_TIMEOUT_S + 20,
        )
        pid = self.master_pid() if code == 0 else None
        if pid is None:
            port = f" -p {self.target.port}" if self.target.port else ""
            reason = _last_line(text) or f"ssh exited with code {code}"
            raise EngineError(
                f"Cannot reach the Docker host {self.target.shown} over ssh: {reason}.",
                hint=f"Check that `ssh{port} {self.target.destination} true` works without a "
                "password (a key or an agent), or set docker.ssh.identity_file, "
                "docker.ssh.known_hosts_file or docker.ssh.config_file.",
            )
        return pid

    def forward(self, remote_port: int) -> int:
        """A port on this machine's loopback that reaches `remote_port` on the remote host's
        loopback."""
        pid = self.open()
        recorded = self._recorded(pid)
        if remote_port in recorded:
            return recorded[remote_port]
        reason = ""
        for _ in range(3):  # a free port may be taken between the check and ssh's bind
            local = _local_port()
            code, text = self._ssh(
                "-O", "forward", "-L", f"127.0.0.1:{local}:127.0.0.1:{remote_port}"
            )
            if code == 0:
                recorded[remote_port] = local
                atomic_write(
                    self.forwards_file,
                    json.dumps({"pid": pid, "ports": {str(k): v for k, v in recorded.items()}}),
                )
                return local
            reason = _last_line(text)
            self._checked = None  # the master may have gone since it was last seen
            pid = self.open()
            recorded = self._recorded(pid)
        raise EngineError(
            f"Cannot forward port {remote_port} of {self.target.shown} over ssh: {reason}.",
            hint="Is AllowTcpForwarding on in the remote sshd_config?",
        )

    def _recorded(self, pid: int) -> dict[int, int]:
        try:
            data = json.loads(self.forwards_file.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("pid") != pid:
            return {}
        return {int(k): int(v) for k, v in (data.get("ports") or {}).items()}

    def address(self) -> str:
        """The remote host's address as ssh resolves it (its config may map an alias)."""
        if self._address is None:
            argv = ["ssh", "-G", *self._options(), self.target.destination]
            text = run_sync(argv, check=False).stdout
            found = re.search(r"^hostname (\S+)$", text, re.MULTILINE)
            self._address = found.group(1) if found else self.target.host
        return self._address

    def close(self) -> None:
        """End the master connection and every forward it carries."""
        if self.master_pid() is not None:
            self._ssh("-O", "exit")
        self._checked = None
        for path in (self.forwards_file, self.docker_socket):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _last_line(text: str) -> str:
    lines = [line.strip().rstrip(".") for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
