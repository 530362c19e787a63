"""The core (everything but the CLI) never loads a front-end library, and `vpn --version` loads
nothing heavy. Each import runs in a fresh interpreter, so nothing this test process has already
imported can hide a problem."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys

import pytest

import vpn_manager

FRONT_ENDS = ["typer", "click", "rich", "textual", "fastapi"]
HEAVY = ["typer", "click", "rich", "sqlalchemy", "pydantic", "google"]  # google: protobuf
# Not core: the front ends (the CLI, TUI and web packages), and `python -m vpn_manager`, which
# runs the CLI when imported.
FRONT_END_MODULES = (
    "vpn_manager.cli",
    "vpn_manager.tui",
    "vpn_manager.web",
    "vpn_manager.__main__",
)


def core_modules() -> list[str]:
    names = ["vpn_manager"]
    for info in pkgutil.walk_packages(vpn_manager.__path__, "vpn_manager."):
        if info.name in FRONT_END_MODULES or info.name.startswith(
            tuple(f"{name}." for name in FRONT_END_MODULES)
        ):
            continue
        names.append(info.name)
    return sorted(names)


CORE = core_modules()


def python(code: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("VPN_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_the_walk_finds_the_core() -> None:
    expected = {
        "vpn_manager",
        "vpn_manager.errors",
        "vpn_manager.settings",
        "vpn_manager.units",
        "vpn_manager.models",
        "vpn_manager.models.user",
        "vpn_manager.services.users",
        "vpn_manager.services.transfer",
        "vpn_manager.storage",
        "vpn_manager.storage.users",
    }
    assert expected <= set(CORE)
    assert not [name for name in CORE if name.startswith(FRONT_END_MODULES)]


@pytest.mark.parametrize("module", CORE)
def test_core_module_loads_no_front_end(module: str) -> None:
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FRONT_ENDS!r})))\n"
    )
    result = python(code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []


def test_version_loads_nothing_heavy() -> None:
    code = (
        "import sys; sys.argv = ['vpn', '--version']\n"
        "from vpn_manager.cli.entry import main\n"
        "main()\n"
        "import sys\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {set(HEAVY)!r}))\n"
    )
    result = python(code)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"vpn-manager {vpn_manager.__version__}\n[]\n",
        "",
    )


def test_protobuf_loads_only_for_an_engine_api() -> None:
    """`vpn --help` and the engine modules (loaded to render, link or install a server) leave
    protobuf out: only the API modules' messages load it, when an engine's API is called."""
    code = (
        "import contextlib, sys; sys.argv = ['vpn', '--help']\n"
        "from vpn_manager.cli.entry import main\n"
        "with contextlib.redirect_stdout(None), contextlib.suppress(SystemExit):\n"
        "    main()\n"
        "import vpn_manager.engines.singbox.engine, vpn_manager.engines.xray.engine\n"
        "print('google.protobuf' in sys.modules)\n"
        "from vpn_manager.engines.singbox.api import subscribe_request\n"
        "subscribe_request(1)\n"
        "print('google.protobuf' in sys.modules)\n"
    )
    result = python(code)
    assert (result.returncode, result.stdout.split()) == (0, ["False", "True"]), result.stderr
