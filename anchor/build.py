"""Compile AuditAnchor.sol with the pinned npm ``solc`` and write the committed artifact.

``python -m auditseal.anchor.build`` rewrites ``anchor/contracts/AuditAnchor.json``;
``python -m auditseal.anchor.build --check`` rebuilds in memory and exits 1 if the committed
file differs.

Reproducibility: the standard-JSON input is fixed here (source unit name, optimizer on with 200
runs, EVM version cancun, the default IPFS metadata hash), the compiler is the exact version
pinned in package.json (solcjs, run by node), and the artifact is JSON with sorted keys and
two-space indents, so the same inputs give the same bytes. The metadata hash at the end of the
bytecode commits to the source text, comments included, and to these settings; it is kept so
that the deployed code can be matched in full against the source (e.g. by Sourcify). Native
solc of the same version produces the same bytecode from the same input.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from auditseal.anchor.artifact import ARTIFACT_NAME, CONTRACT_NAME, SOURCE_NAME
from auditseal.anchor.errors import AnchorError, BuildError

__all__ = ["CONTRACTS_DIR", "SETTINGS", "SOLC_VERSION", "build_artifact", "compile_input", "main"]

CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"
SOLC_VERSION = "0.8.37"  # package.json pins the npm package; the pragma pins the language
SETTINGS: dict[str, Any] = {
    "evmVersion": "cancun",
    "metadata": {"bytecodeHash": "ipfs"},
    "optimizer": {"enabled": True, "runs": 200},
}
_OUTPUTS = ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "metadata"]
_TIMEOUT = 120.0


def compile_input(source: str) -> dict[str, Any]:
    """The solc standard-JSON input for ``source`` (AuditAnchor.sol's text)."""
    return {
        "language": "Solidity",
        "sources": {SOURCE_NAME: {"content": source}},
        "settings": {**SETTINGS, "outputSelection": {SOURCE_NAME: {CONTRACT_NAME: _OUTPUTS}}},
    }


def _run_solc(standard_input: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(solc long version, standard-JSON output), compiled by node with the npm solc."""
    node = shutil.which("node")
    if node is None:
        raise BuildError("node not found on PATH: the contract is compiled with the npm solc")
    try:
        proc = subprocess.run(
            [node, str(CONTRACTS_DIR / "compile.js")],
            input=json.dumps(standard_input),
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            cwd=CONTRACTS_DIR,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"solc did not finish within {_TIMEOUT:.0f} s") from exc
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        hint = " (run npm ci)" if "Cannot find module" in proc.stderr else ""
        raise BuildError(f"node compile.js failed with status {proc.returncode}{hint}: {last}")
    try:
        answer = json.loads(proc.stdout)
        version, output = answer["version"], answer["output"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BuildError(f"compile.js printed something other than solc output: {exc!r}") from exc
    return str(version), output


def build_artifact() -> bytes:
    """Compile the contract and return the artifact file's exact bytes.

    Raises BuildError if node or the pinned solc is missing or the compiler reports an error
    (warnings are errors too: a clean contract compiles without any).
    """
    try:
        source = (CONTRACTS_DIR / SOURCE_NAME).read_text(encoding="utf-8")
    except OSError as exc:
        raise BuildError(f"{CONTRACTS_DIR / SOURCE_NAME}: {exc.strerror or exc}") from exc
    standard_input = compile_input(source)
    version, output = _run_solc(standard_input)
    if not version.startswith(SOLC_VERSION + "+"):
        raise BuildError(f"solc {version} found, {SOLC_VERSION} pinned: run npm ci")
    problems = [e for e in output.get("errors", []) if e.get("severity") != "info"]
    if problems:
        text = str(problems[0].get("formattedMessage") or problems[0].get("message"))
        first = " ".join(line.strip() for line in text.splitlines()[:2])  # message, location
        raise BuildError(f"{SOURCE_NAME}: {len(problems)} compiler diagnostics; first: {first}")
    try:
        contract = output["contracts"][SOURCE_NAME][CONTRACT_NAME]
        artifact = {
            "_format": "auditseal-contract-artifact-1",
            "abi": contract["abi"],
            "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
            # The settings that shape the code; outputSelection only picks what solc prints.
            "compiler": {"settings": SETTINGS, "version": version},
            "contractName": CONTRACT_NAME,
            "deployedBytecode": "0x" + contract["evm"]["deployedBytecode"]["object"],
            "metadata": contract["metadata"],
            "sourceName": SOURCE_NAME,
        }
    except (KeyError, TypeError) as exc:
        raise BuildError(f"solc output lacks {exc!r} for {CONTRACT_NAME}") from exc
    return (json.dumps(artifact, indent=2, sort_keys=True) + "\n").encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    """``python -m auditseal.anchor.build [--check]``: 0 ok, 1 the committed artifact is stale,
    2 error."""
    parser = argparse.ArgumentParser(prog="python -m auditseal.anchor.build", description=__doc__)
    parser.add_argument(
        "--check",
        action="store_true",
        help="rebuild in memory; exit 1 if the committed artifact differs",
    )
    args = parser.parse_args(argv)
    target = CONTRACTS_DIR / ARTIFACT_NAME
    try:
        fresh = build_artifact()
    except AnchorError as exc:
        print(f"auditseal.anchor.build: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.check:
        committed = target.read_bytes() if target.exists() else b""
        if committed != fresh:
            print(
                f"auditseal.anchor.build: {target} differs from a rebuild: "
                "run python -m auditseal.anchor.build",
                file=sys.stderr,
            )
            return 1
        print(f"{target}: up to date")
        return 0
    target.write_bytes(fresh)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
