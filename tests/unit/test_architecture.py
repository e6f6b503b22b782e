"""The layout rules of docs/ARCHITECTURE.md, checked on the source: which room may import which,
no import circles, one installed namespace."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIRS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
    "setuptools"
]["package-dir"]
ROOMS = {package.split(".")[1]: folder for package, folder in PACKAGE_DIRS.items()}

# Which rooms each room may import (itself always). `cli` is the shared options and output
# (cli.options, cli.output) for the rooms' commands; its root, cli.main, nobody imports.
ALLOWED = {
    "verifier": set(),
    "transport": set(),
    "store": {"verifier"},
    "sealer": {"verifier", "store", "ingest", "cli", "infra", "transport"},
    "anchor": {"verifier", "store", "cli", "infra", "transport"},
    "ingest": {"verifier", "cli", "infra", "transport"},
    "readapi": {"verifier", "store", "cli", "transport"},
    "monitor": {"verifier", "store", "ingest", "cli", "infra", "transport"},
    "dashboard": {"verifier", "store", "cli", "infra", "transport"},
    "infra": {"verifier", "store", "sealer", "anchor", "ingest", "cli", "transport"},
    "cli": set(ROOMS),
}
# Outside infra, a room may use infra only for the dev stack's addresses in its commands.
INFRA_FOR_DEFAULTS = {"auditseal.infra.state", "auditseal.infra.errors"}
CLI_SHARED = {"auditseal.cli.options", "auditseal.cli.output"}
PIPELINE_CLIENTS = {"faust", "mode", "confluent_kafka", "aiokafka", "kafka"}
BANNED_IN_VERIFIER = PIPELINE_CLIENTS | {"sqlite3"}
CHAIN_MODULES = {"verifier/chain.py"}  # the one module allowed to talk to web3


def sources(room: str) -> list[Path]:
    return sorted((ROOT / ROOMS[room]).rglob("*.py"))


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    folder, *rest = rel.parts
    room = next(r for r, f in ROOMS.items() if f == folder)
    return ".".join(["auditseal", room, *rest]).removesuffix(".__init__")


def imported(path: Path, top_level_only: bool = False) -> set[str]:
    """Modules ``path`` imports (``from auditseal.x import y`` gives auditseal.x and, if it is
    a module, auditseal.x.y); with ``top_level_only``, not those inside functions."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = (
        [n for stmt in tree.body for n in ast.walk(stmt) if not isinstance(stmt, ast.FunctionDef)]
        if top_level_only
        else list(ast.walk(tree))
    )
    if top_level_only:  # drop imports nested in top-level functions and methods
        nested = {
            id(n)
            for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
            for n in ast.walk(f)
        }
        nodes = [n for n in nodes if id(n) not in nested]
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for room in ROOMS for p in sources(room)}


def test_every_room_is_installed_under_auditseal():
    assert all(p.startswith("auditseal.") and p.count(".") == 1 for p in PACKAGE_DIRS)
    assert set(ROOMS) == set(ALLOWED), "a room without import rules"
    for folder in ROOMS.values():
        assert (ROOT / folder / "__init__.py").is_file(), f"{folder}/ is not a package"


def test_first_party_imports_name_the_auditseal_namespace():
    # The repository's folders are importable by their bare names from its root; installed,
    # only `auditseal.<room>` exists, so a bare `import sealer` works here and nowhere else.
    for path in [*all_modules().values(), *ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/*.py")]:
        bare = {n.split(".")[0] for n in imported(path)} & set(ROOMS.values())
        assert not bare, f"{path.relative_to(ROOT)} imports {bare} instead of auditseal.*"


def test_rooms_import_only_what_the_layout_allows():
    problems = []
    for room in ROOMS:
        for path in sources(room):
            for name in imported(path):
                parts = name.split(".")
                if parts[0] != "auditseal" or len(parts) < 2 or parts[1] == room:
                    continue
                other = parts[1]
                module = ".".join(parts[:3])
                if other not in ALLOWED[room]:
                    problems.append(f"{path.relative_to(ROOT)} imports {name}")
                elif other == "infra" and room != "cli" and module not in INFRA_FOR_DEFAULTS:
                    problems.append(f"{path.relative_to(ROOT)} uses infra beyond its defaults")
                elif other == "cli" and module not in CLI_SHARED:
                    problems.append(f"{path.relative_to(ROOT)} imports {name} of the CLI")
    assert not problems, "\n".join(problems)


def test_nothing_imports_the_cli_root():
    for module, path in all_modules().items():
        if module != "auditseal.cli.main":
            assert "auditseal.cli.main" not in imported(path), path


def test_no_import_circles_between_modules():
    modules = all_modules()
    graph = {
        m: {n for n in imported(p, top_level_only=True) if n in modules and n != m}
        for m, p in modules.items()
    }
    # Importing a submodule imports its package's __init__ too: count it as an edge.
    for m in modules:
        parent = m.rpartition(".")[0]
        if parent in modules and parent != m:
            graph[m].add(parent)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = [*stack[stack.index(n) :], n]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_circle_check_sees_a_circle(tmp_path):
    a = tmp_path / "a.py"
    a.write_text("from auditseal.x import b\n\ndef f():\n    from auditseal.y import z\n")
    assert imported(a, top_level_only=True) == {"auditseal.x", "auditseal.x.b"}
    assert "auditseal.y.z" in imported(a)


def test_verifier_imports_only_its_allowed_dependencies():
    for path in sources("verifier"):
        rel = path.relative_to(ROOT).as_posix()
        found = {n.split(".")[0] for n in imported(path)}
        assert not found & BANNED_IN_VERIFIER, f"{rel} imports {found & BANNED_IN_VERIFIER}"
        if rel not in CHAIN_MODULES:
            assert "web3" not in found and "eth_abi" not in found, f"{rel} imports web3"


def loaded_after(*modules: str) -> set[str]:
    """Top-level packages in sys.modules after importing ``modules`` in a fresh interpreter."""
    code = (
        f"import sys, importlib; [importlib.import_module(m) for m in {list(modules)!r}];"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_importing_verifier_loads_no_pipeline_client_store_or_chain():
    pure = [
        module_name(p)
        for p in sources("verifier")
        if p.stem != "__init__" and p.relative_to(ROOT).as_posix() not in CHAIN_MODULES
    ]
    assert "auditseal.verifier.bundle" in pure and "auditseal.verifier.remote" in pure
    bad = loaded_after(*pure) & (PIPELINE_CLIENTS | {"sqlite3", "web3"})
    assert not bad, f"importing {pure} loads {bad}"


def test_the_verify_command_loads_no_pipeline_client():
    loaded = loaded_after("auditseal.cli.main", "auditseal.cli.verify", "auditseal.verifier.chain")
    assert "web3" in loaded  # the check would see a client if one were imported
    assert not loaded & (PIPELINE_CLIENTS | {"prometheus_client"})
