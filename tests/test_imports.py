"""How the project's own modules import each other, read from the source with ast.

- No cycles: no module reaches itself through imports, neither through the imports at the modules'
  tops nor through those inside functions (a lazy import must not hide a cycle). Imports under
  `if TYPE_CHECKING:` never run and do not count.
- Own modules are imported at the top. An import of a vpn_manager module inside a function is
  allowed only where LAZY below names it, with the heavy library (or start-up cost) it keeps off a
  path the start-up budget covers: `vpn --help`/`--version`, `vpn user list|add`, and the service
  process (which never loads pydantic). Each module's lazy imports sit in one visible place.
- The lazy doors that import by name at run time are named in DYNAMIC: cli.app mounts only the
  command group named on the command line, the storage package hands out its SQLAlchemy query
  modules on first use, and the TUI imports a screen's module when it is first shown.

The generated protobuf modules (engines/*/proto) are left out: scripts/gen-protos writes them.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import vpn_manager

SRC = Path(vpn_manager.__file__).parent
ROOT = "vpn_manager"
HEAVY = ("sqlalchemy", "pydantic", "textual", "docker", "cryptography", "h2", "google", "qrcode")

_PYDANTIC_OFF_THE_SERVICE = "pydantic: the service process never loads it (test_service_process)"
_ENGINE_ON_FIRST_USE = (
    "an engine's code loads when its first engine is made: storage reads control ports through "
    "the table, and `vpn serve` stays within its idle memory (bench serve-rss, 60 MB)"
)

# (importing module, imported module) -> why the import waits for the function that needs it.
LAZY: dict[tuple[str, str], str] = {
    # --- the CLI: `vpn --version`, `vpn --help`, and the commands of the `user` group
    ("vpn_manager.cli.entry", "vpn_manager.cli.app"): "Typer: `vpn --version` answers without it",
    ("vpn_manager.cli.context", "vpn_manager.settings"): (
        "pydantic: `vpn --help` loads cli.context (the one place: _core)"
    ),
    ("vpn_manager.cli.context", "vpn_manager.services.root"): (
        "the services: `vpn --help` loads cli.context (the one place: _core)"
    ),
    ("vpn_manager.cli.tui", "vpn_manager.tui.app"): (
        "Textual: shell completion loads every command module"
    ),
    ("vpn_manager.cli.web", "vpn_manager.web.app"): (
        "FastAPI (some 250 ms): shell completion loads every command module"
    ),
    ("vpn_manager.cli.web", "vpn_manager.web.subscriptions"): "FastAPI, as web.app",
    ("vpn_manager.cli.web", "vpn_manager.web.api.access"): "FastAPI, as web.app",
    ("vpn_manager.cli.web", "vpn_manager.web.api.app"): "FastAPI, as web.app",
    ("vpn_manager.cli.users.transfer", "vpn_manager.services.transfer"): (
        "the export/import file models (pydantic), some 7 ms off every `vpn user` command"
    ),
    # --- the services: `vpn user list|add` and the service process
    ("vpn_manager.services.root", "vpn_manager.services.servers"): (
        "the services that reach servers bring the engines and runtimes (some 35 modules), "
        "which `vpn user list|add` never need"
    ),
    ("vpn_manager.services.root", "vpn_manager.services.limits"): "as services.servers",
    ("vpn_manager.services.root", "vpn_manager.services.traffic"): "as services.servers",
    ("vpn_manager.services.root", "vpn_manager.services.rounds"): "as services.servers",
    ("vpn_manager.services.root", "vpn_manager.services.subscriptions"): "as services.servers",
    ("vpn_manager.services.limits", "vpn_manager.services.servers"): (
        "as services.servers: services.users imports limits.check_limits for `vpn user update`"
    ),
    ("vpn_manager.services.root", "vpn_manager.settings"): _PYDANTIC_OFF_THE_SERVICE,
    ("vpn_manager.services.apikeys", "vpn_manager.models.user"): _PYDANTIC_OFF_THE_SERVICE,
    **{
        ("vpn_manager.runtimes.choice", f"vpn_manager.runtimes.docker.{module}"): (
            "the Docker runtime's ten modules, some 30 ms and their memory, off a home of "
            "native servers (and off vpn serve over one)"
        )
        for module in ("census", "hosts", "options", "runtime")
    },
    ("vpn_manager.daemon.main", "vpn_manager.settings"): _PYDANTIC_OFF_THE_SERVICE,
    ("vpn_manager.services.servers", "vpn_manager.settings"): _PYDANTIC_OFF_THE_SERVICE,
    ("vpn_manager.services.servers.access", "vpn_manager.links"): _PYDANTIC_OFF_THE_SERVICE,
    ("vpn_manager.services.servers.catalog", "vpn_manager.models.server"): (
        _PYDANTIC_OFF_THE_SERVICE
    ),
    ("vpn_manager.services.servers.lifecycle", "vpn_manager.models.server"): (
        _PYDANTIC_OFF_THE_SERVICE
    ),
    ("vpn_manager.storage.servers", "vpn_manager.models.server"): _PYDANTIC_OFF_THE_SERVICE,
    ("vpn_manager.storage.db", "vpn_manager.storage.sqlite_read"): _PYDANTIC_OFF_THE_SERVICE,
    ("vpn_manager.storage.db", "vpn_manager.storage.sql"): (
        "SQLAlchemy: loaded with the first transaction, never by a listing sqlite3 serves"
    ),
    ("vpn_manager.storage.sql", "vpn_manager.storage.migrate"): (
        "Alembic: loaded only when the schema is behind"
    ),
    # --- engines and Docker runtime
    ("vpn_manager.engines.registry", "vpn_manager.engines.xray.engine"): _ENGINE_ON_FIRST_USE,
    ("vpn_manager.engines.registry", "vpn_manager.engines.wireguard.engine"): _ENGINE_ON_FIRST_USE,
    ("vpn_manager.engines.registry", "vpn_manager.engines.singbox.engine"): _ENGINE_ON_FIRST_USE,
    ("vpn_manager.engines.singbox.api", "vpn_manager.engines.singbox.proto.daemon"): (
        "protobuf: loaded only when an engine's API is called"
    ),
    ("vpn_manager.engines.xray.engine", "vpn_manager.engines.xray.api"): (
        "protobuf and gRPC: loaded only when an engine's API is called"
    ),
    ("vpn_manager.runtimes.docker.containers", "vpn_manager.runtimes.docker.ssh"): (
        _PYDANTIC_OFF_THE_SERVICE + "; the ssh tunnel's module reads vpn_manager.settings"
    ),
    ("vpn_manager.runtimes.docker.containers", "vpn_manager.settings"): _PYDANTIC_OFF_THE_SERVICE,
    ("vpn_manager.runtimes.docker.runtime", "vpn_manager.settings"): _PYDANTIC_OFF_THE_SERVICE,
}

# Modules that import by name at run time (importlib), each with why.
DYNAMIC = {
    "vpn_manager.cli.app": "mounts only the command group named on the command line",
    "vpn_manager.storage": "hands out its SQLAlchemy query modules on first use",
    "vpn_manager.tui.app": "imports a screen's module when it is first shown (a fast first frame)",
}


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    top: set[str] = field(default_factory=set)  # imported at the top (run at import)
    lazy: dict[str, list[int]] = field(default_factory=dict)  # imported in functions: lines
    dynamic: list[int] = field(default_factory=list)  # importlib.import_module calls: lines


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Reader:
    def __init__(self, module: Module, names: set[str]) -> None:
        self.module = module
        self.names = names

    def targets(self, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
        """The own modules an import statement imports (a name imported from a module is that
        module; a submodule imported from a package is the submodule)."""
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == ROOT:
                    yield alias.name
            return
        base = node.module or ""
        if node.level:
            package = self.module.name.split(".")
            if not self.module.is_package:
                package = package[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([base] if base else []))
        if base.split(".")[0] != ROOT:
            return
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            yield sub if sub in self.names else base

    def walk(self, nodes: list[ast.stmt] | list[ast.AST], in_function: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                self.walk(node.orelse, in_function)
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in self.targets(node):
                    if in_function:
                        self.module.lazy.setdefault(target, []).append(node.lineno)
                    else:
                        self.module.top.add(target)
                continue
            if isinstance(node, ast.Call) and _is_dynamic_import(node.func):
                self.module.dynamic.append(node.lineno)
            inner = in_function or isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            )
            self.walk(list(ast.iter_child_nodes(node)), inner)


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id in ("import_module", "__import__")


def read_modules() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in sorted(SRC.rglob("*.py")):
        if "proto" in path.relative_to(SRC).parts:
            continue
        name, is_package = _module_name(path)
        modules[name] = Module(name, path, is_package)
    for module in modules.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"), str(module.path))
        _Reader(module, set(modules)).walk(tree.body, in_function=False)
    return modules


MODULES = read_modules()


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each set of modules that reach each other (strongly connected, more than one module, or
    one that imports itself), as one cycle through them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:  # Tarjan's algorithm, iterative
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1 or node in edges[node]:
                    found.append(_a_cycle(sorted(group), edges))

    for name in sorted(edges):
        if name not in index:
            visit(name)
    return found


def _a_cycle(group: list[str], edges: dict[str, set[str]]) -> list[str]:
    """One path from the group's first module back to itself, inside the group."""
    members = set(group)
    start = group[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(edges[node] & members):
            if child == start:
                return [*paths[node], start]
            if child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    return group  # pragma: no cover - a strongly connected group always has a cycle


def test_no_import_cycles() -> None:
    edges = {
        name: {t for t in (*module.top, *module.lazy) if t in MODULES and t != name}
        | ({name} if name in module.top else set())
        for name, module in MODULES.items()
    }
    cycles = _cycles(edges)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_own_modules_are_imported_at_the_top() -> None:
    unlisted = [
        f"{module.path.relative_to(SRC.parent)}:{line}: {name} imports {target} in a function"
        for name, module in sorted(MODULES.items())
        for target, lines in sorted(module.lazy.items())
        if (name, target) not in LAZY
        for line in lines
    ]
    assert not unlisted, (
        f"{len(unlisted)} imports of the project's own modules inside functions; import them at "
        "the top (break a cycle by moving the shared piece down a layer, or use TYPE_CHECKING "
        "for annotations), or name the heavy library they keep off a start-up path in LAZY:\n"
        + "\n".join(unlisted)
    )


def test_every_lazy_exception_is_still_needed() -> None:
    used = {(name, target) for name, module in MODULES.items() for target in module.lazy}
    assert sorted(set(LAZY) - used) == []


def test_dynamic_imports_only_where_named() -> None:
    found = {name for name, module in MODULES.items() if module.dynamic}
    assert found == set(DYNAMIC)


def test_the_walk_reads_the_package() -> None:
    """The reader sees the modules and their imports (a broken walk would pass everything)."""
    assert {"vpn_manager.cli.app", "vpn_manager.storage.db", "vpn_manager.services.root"} <= set(
        MODULES
    )
    assert "vpn_manager.storage.db" in MODULES["vpn_manager.storage"].top
    assert "vpn_manager.storage.sql" in MODULES["vpn_manager.storage.db"].lazy
    assert "vpn_manager.storage.users" not in MODULES["vpn_manager.storage"].top  # TYPE_CHECKING
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def _loaded_after(code: str) -> list[str]:
    """The heavy libraries loaded in a fresh interpreter after running `code`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("VPN_")}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{code}\nimport sys, json\n"
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout.splitlines()[-1])
    return loaded


def test_the_services_load_no_heavy_library_on_import() -> None:
    """The services import storage at their top; SQLAlchemy still waits for the first query
    (the storage package hands out its query modules), and pydantic for the front ends."""
    assert _loaded_after("import vpn_manager.services.root, vpn_manager.services.users") == []
    assert _loaded_after("import vpn_manager.daemon.main, vpn_manager.services.servers") == []


def test_help_loads_no_heavy_library() -> None:
    code = (
        "import contextlib, sys; sys.argv = ['vpn', '--help']\n"
        "from vpn_manager.cli.entry import main\n"
        "with contextlib.redirect_stdout(None), contextlib.suppress(SystemExit):\n"
        "    main()"
    )
    assert _loaded_after(code) == []
