"""What every command gets: paths, settings (built once, lazily), the output, and a way to run a
service call against the database."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from vpn_manager.cli.output import Output

if TYPE_CHECKING:
    from vpn_manager.services.root import Services
    from vpn_manager.services.servers import ServerService
    from vpn_manager.services.users import UserService
    from vpn_manager.settings import Paths, Settings

    LoadSettings = Callable[[Paths, Mapping[str, Any]], Settings]

T = TypeVar("T")


def _core() -> tuple[type[Paths], LoadSettings, type[Services]]:
    """The settings (pydantic) and the services, imported on first use: `vpn --help` loads
    this module and must load neither. This module's one lazy import (asyncio waits in `run`)."""
    from vpn_manager.services.root import Services
    from vpn_manager.settings import Paths, load_settings

    return Paths, load_settings, Services


@dataclass
class AppContext:
    home: Path | None = None
    config_file: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    debug: bool = False
    _paths: Paths | None = None
    _settings: Settings | None = None

    @property
    def paths(self) -> Paths:
        if self._paths is None:
            paths, _, _ = _core()
            self._paths = paths.from_env(os.environ, home=self.home, config_file=self.config_file)
        return self._paths

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            _, load_settings, _ = _core()
            self._settings = load_settings(self.paths, self.overrides)
        return self._settings

    def output(self, fmt: str | None = None) -> Output:
        """The output for a command: a per-command --format beats the global one and settings."""
        return Output(fmt or self.overrides.get("output.format") or self.settings.output.format)

    def services(self) -> Services:
        """The services of one command over one database (services/root.py)."""
        _, _, services = _core()
        return services.from_settings(self.settings, self.paths)

    def run(self, work: Callable[[Services], Awaitable[T]]) -> T:
        """Open the database, run `work` with the services, close the database, then say how
        user changes reached each server (live, reloaded, or saved for later)."""
        import asyncio

        if not self.debug:
            _quiet_libraries()

        async def main() -> T:
            services = self.services()  # opened lazily: list reads may never need SQLAlchemy
            try:
                result = await work(services)
            finally:
                await services.close()
            out = self.output()
            for note in services.take_applied():
                out.note(note)
            return result

        return asyncio.run(main())

    def users(self, work: Callable[[UserService], Awaitable[T]]) -> T:
        return self.run(lambda services: work(services.users))

    def servers(self, work: Callable[[ServerService], Awaitable[T]]) -> T:
        return self.run(lambda services: work(services.servers))


def _quiet_libraries() -> None:
    """Without --debug, what asyncio and SQLAlchemy log while a command winds down after Ctrl-C
    (a database connection that could not be closed, with its traceback; a child process
    reaped elsewhere) stays off stderr: "Interrupted." says what happened. (Loaded already:
    asyncio imports logging.)"""
    import logging

    for name in ("asyncio", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def app_context(ctx: typer.Context) -> AppContext:
    root = ctx.find_root()
    if not isinstance(root.obj, AppContext):
        root.obj = AppContext()
    return root.obj
