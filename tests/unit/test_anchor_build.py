"""The committed contract artifact is exactly what the pinned solc builds from the source.

This runs node and the npm solc (about a second per build), so it needs node_modules
(`make install`); a missing tool fails the test rather than skipping it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from auditseal.anchor import build
from auditseal.anchor.artifact import Artifact, load_artifact

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "anchor" / "contracts" / "AuditAnchor.json"


@pytest.fixture(scope="module")
def rebuilt() -> bytes:
    return build.build_artifact()


def test_the_committed_artifact_equals_a_rebuild(rebuilt):
    assert ARTIFACT.read_bytes() == rebuilt, (
        "run python -m auditseal.anchor.build and commit the result"
    )


def test_the_artifact_is_stable_json_with_pinned_settings(rebuilt):
    data = json.loads(rebuilt)
    assert rebuilt == (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    assert data["compiler"]["version"].startswith("0.8.37+commit.")
    assert data["compiler"]["settings"] == {
        "evmVersion": "cancun",
        "metadata": {"bytecodeHash": "ipfs"},
        "optimizer": {"enabled": True, "runs": 200},
    }
    assert "__$" not in data["bytecode"]  # no unlinked libraries
    metadata = json.loads(data["metadata"])
    assert metadata["settings"]["optimizer"] == {"enabled": True, "runs": 200}
    assert metadata["settings"]["evmVersion"] == "cancun"


def test_the_packaged_artifact_loads_with_the_interface_others_call():
    artifact = load_artifact()
    assert isinstance(artifact, Artifact)
    assert artifact.contract_name == "AuditAnchor"
    assert artifact.deployed_bytecode[2:] in artifact.bytecode  # creation code embeds runtime
    by_kind: dict[str, set[str]] = {}
    for item in artifact.abi:
        if "name" in item:
            by_kind.setdefault(item["type"], set()).add(item["name"])
    assert by_kind == {
        "function": {"anchor", "rootOf", "authorise", "revoke", "owner", "isAnchorer"},
        "event": {"Anchored", "AnchorerAuthorised", "AnchorerRevoked"},
        "error": {"NotOwner", "NotAnchorer", "AlreadyAnchored", "ZeroRoot"},
    }
    (anchored,) = [i for i in artifact.abi if i.get("name") == "Anchored"]
    assert [(i["name"], i["type"], i["indexed"]) for i in anchored["inputs"]] == [
        ("seq", "uint64", True),
        ("root", "bytes32", False),
        ("logs", "uint32", False),
    ]


def test_check_exits_0_when_current_and_1_when_stale(tmp_path, monkeypatch, capsys):
    ok = subprocess.run(
        [sys.executable, "-m", "auditseal.anchor.build", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr

    # A copy of the contracts folder whose artifact is stale, so the repository is untouched.
    contracts = tmp_path / "contracts"
    shutil.copytree(ROOT / "anchor" / "contracts", contracts)
    stale = json.loads((contracts / "AuditAnchor.json").read_text())
    stale["bytecode"] = stale["bytecode"][:-2] + "00"
    (contracts / "AuditAnchor.json").write_text(json.dumps(stale, indent=2, sort_keys=True))
    monkeypatch.setattr(build, "CONTRACTS_DIR", contracts)
    monkeypatch.setenv("NODE_PATH", str(ROOT / "node_modules"))  # solc for the copied script
    assert build.main(["--check"]) == 1
    assert "differs from a rebuild" in capsys.readouterr().err
    assert build.main([]) == 0  # regenerating fixes it
    assert build.main(["--check"]) == 0
    assert (contracts / "AuditAnchor.json").read_bytes() == ARTIFACT.read_bytes()
