"""Running the `vpn` CLI in tests, as a user would.

`Cli` runs `python -m vpn_manager …` in a subprocess with an isolated environment: VPN_HOME and
HOME inside the test's tmp_path, and no VPN_*, XDG_* or colour variables from the outer
environment. `InProcessCli` gives the same interface by calling `vpn_manager.cli.app.run` in this
process (much faster), for the many small cases.

Both return a `Result`; `error_line` checks the CLI's error contract: exactly one `error:` line,
at most one `hint:` line, nothing else on stderr, nothing on stdout, no traceback.

There is no conftest.py of ours: test modules import what they need from here explicitly.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

# Variables of the outer environment that would change what the CLI does or prints.
_DROPPED_PREFIXES = ("VPN_", "XDG_")
_DROPPED = {"NO_COLOR", "FORCE_COLOR", "CLICOLOR", "CLICOLOR_FORCE", "PY_COLORS", "COLUMNS"}
TIMEOUT_S = 60

EnvChanges = Mapping[str, str | None]  # a value of None removes the variable


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        assert self.code == 0, self
        return json.loads(self.stdout)


class Runner(Protocol):
    home: Path
    user_home: Path

    def __call__(self, *args: str, env: EnvChanges | None = None) -> Result: ...


def isolated_env(tmp_path: Path, changes: EnvChanges | None = None) -> dict[str, str]:
    """The outer environment minus VPN_*/XDG_*/colour settings, with VPN_HOME and HOME set inside
    tmp_path, then `changes` applied."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_DROPPED_PREFIXES) and key not in _DROPPED
    }
    env["HOME"] = str(tmp_path / "user")
    env["VPN_HOME"] = str(tmp_path / "home")
    env["PYTHONUTF8"] = "1"  # "∞" and friends, whatever the machine's locale
    for key, value in (changes or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def vpn_script() -> Path:
    """The installed `vpn` launcher next to this interpreter."""
    return Path(sys.executable).with_name("vpn")


class Cli:
    """Runs the CLI as a separate process: `cli("user", "list")`."""

    def __init__(self, tmp_path: Path, env: EnvChanges | None = None) -> None:
        self.tmp_path = tmp_path
        self.home = tmp_path / "home"
        self.user_home = tmp_path / "user"
        self.user_home.mkdir(parents=True, exist_ok=True)
        self.base_env = dict(env or {})

    def env(self, changes: EnvChanges | None = None) -> dict[str, str]:
        return isolated_env(self.tmp_path, {**self.base_env, **(changes or {})})

    def __call__(
        self,
        *args: str,
        env: EnvChanges | None = None,
        command: list[str] | None = None,
        cwd: Path | None = None,
    ) -> Result:
        """Run `vpn ARGS` (or `command ARGS`) with stdin not a terminal."""
        argv = [*(command or [sys.executable, "-m", "vpn_manager"]), *args]
        proc = subprocess.run(
            argv,
            env=self.env(env),
            cwd=cwd or self.tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=TIMEOUT_S,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)


class InProcessCli:
    """Calls `vpn_manager.cli.app.run(args)` in this process with the same isolated environment,
    capturing stdout and stderr with capsys."""

    def __init__(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        env: EnvChanges | None = None,
    ) -> None:
        self.tmp_path = tmp_path
        self.home = tmp_path / "home"
        self.user_home = tmp_path / "user"
        self.user_home.mkdir(parents=True, exist_ok=True)
        self.capsys = capsys
        for key in list(os.environ):
            if key.startswith(_DROPPED_PREFIXES) or key in _DROPPED:
                monkeypatch.delenv(key)
        for key, value in isolated_env(tmp_path, env).items():
            if os.environ.get(key) != value:
                monkeypatch.setenv(key, value)
        monkeypatch.chdir(tmp_path)

    def __call__(self, *args: str, env: EnvChanges | None = None) -> Result:
        from vpn_manager.cli.app import run

        with pytest.MonkeyPatch.context() as patch:
            for key, value in (env or {}).items():
                if value is None:
                    patch.delenv(key, raising=False)
                else:
                    patch.setenv(key, value)
            self.capsys.readouterr()
            code = run(list(args))
            captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)


def error_line(result: Result, code: int) -> str:
    """Check the error contract and return the message of the `error:` line (without `error: `)."""
    assert result.code == code, result
    assert "Traceback" not in result.output, result
    assert result.stdout == "", result
    lines = result.stderr.splitlines()
    assert 1 <= len(lines) <= 2, result
    assert lines[0].startswith("error: "), result
    if len(lines) == 2:
        assert lines[1].startswith("hint: "), result
    assert "\x1b" not in result.stderr, result
    return lines[0].removeprefix("error: ")


def write_config(home: Path, text: str) -> Path:
    """Write the config file that VPN_HOME=home uses; return its path."""
    path = home / "config" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def database_file(home: Path) -> Path:
    """Where the SQLite database lives under VPN_HOME (checked against `vpn locate` in tests)."""
    return home / "data" / "vpn.db"


def table_rows(db: Path, table: str = "users") -> list[tuple[Any, ...]]:
    """Every row of a table, in id order, read with the stdlib (every column, tokens included)."""
    if not db.exists():
        return []
    with _connect(db) as conn:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        if exists is None:
            return []
        return list(conn.execute(f'SELECT * FROM "{table}" ORDER BY id'))


@contextmanager
def _connect(db: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(db)
    try:
        yield conn
    finally:
        conn.close()


def names_in(result: Result) -> list[str]:
    """The names in a `--format json` listing."""
    return [row["name"] for row in result.json()]


def stopped_server_row(now: Any, **values: Any) -> Any:
    """A Shadowsocks server row that never runs (`desired` stopped): something for credentials
    and counters to belong to in tests that need no engine. `values` replace the defaults."""
    from vpn_manager.storage.orm import ServerRow

    fields: dict[str, Any] = {
        "name": "s",
        "protocol": "shadowsocks",
        "engine": "sing-box",
        "runtime": "native",
        "listen": "127.0.0.1",
        "port": 1,
        "host": "127.0.0.1",
        "desired": "stopped",
        "settings": {},
        "secret": {},
        "created_at": now,
        "updated_at": now,
    }
    return ServerRow(**(fields | values))


def stop_engines(runner: InProcessCli) -> None:
    """After a test that started engines: remove its servers, and kill any engine of its home
    that outlived them (one whose database a failure took away)."""
    listed = runner("--format", "json", "server", "list")
    if listed.code == 0:
        for server in listed.json():
            runner("server", "remove", server["name"], "--yes")
    for pid_file in (runner.home / "state" / "run").glob("*.pid"):
        pid = int(pid_file.read_text().strip() or 0)
        cmdline = Path(f"/proc/{pid}/cmdline")
        if pid and cmdline.exists() and str(runner.home).encode() in cmdline.read_bytes():
            os.kill(pid, signal.SIGKILL)
