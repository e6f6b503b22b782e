"""Layering rules of docs/ARCHITECTURE.md, checked on the source."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BANNED_IN_VERIFIER = {
    "faust",
    "confluent_kafka",
    "aiokafka",
    "kafka",
    "sqlite3",
    "sealer",
    "anchor",
    "ingest",
    "infra",
}
CHAIN_MODULES = {"verifier/chain.py"}  # the one module allowed to talk to web3


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_verifier_imports_only_its_allowed_dependencies():
    for path in sorted((ROOT / "verifier").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        found = imports(path)
        assert not found & BANNED_IN_VERIFIER, f"{rel} imports {found & BANNED_IN_VERIFIER}"
        if rel not in CHAIN_MODULES:
            assert "web3" not in found and "eth_abi" not in found, f"{rel} imports web3"


PIPELINE_CLIENTS = {"faust", "mode", "confluent_kafka", "aiokafka", "kafka"}


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
        f"verifier.{p.stem}"
        for p in sorted((ROOT / "verifier").glob("*.py"))
        if p.stem != "__init__" and f"verifier/{p.name}" not in CHAIN_MODULES
    ]
    assert "verifier.bundle" in pure and "verifier.remote" in pure
    bad = loaded_after(*pure) & (PIPELINE_CLIENTS | {"sqlite3", "web3"})
    assert not bad, f"importing {pure} loads {bad}"


def test_the_verify_command_loads_no_pipeline_client():
    loaded = loaded_after("sealer.cli", "sealer.verify_cli", "verifier.chain")
    assert "web3" in loaded  # the check would see a client if one were imported
    assert not loaded & (PIPELINE_CLIENTS | {"prometheus_client"})
