"""The committed build of AuditAnchor.sol: ABI, bytecode and how they were made.

``anchor/contracts/AuditAnchor.json`` is written by ``python -m auditseal.anchor.build`` and
shipped as package data, so product code needs neither node nor solc: it loads the artifact
here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from auditseal.anchor.errors import ArtifactError

__all__ = ["ARTIFACT_NAME", "CONTRACT_NAME", "SOURCE_NAME", "Artifact", "load_artifact"]

CONTRACT_NAME = "AuditAnchor"
SOURCE_NAME = "AuditAnchor.sol"
ARTIFACT_NAME = "AuditAnchor.json"


@dataclass(frozen=True)
class Artifact:
    """One compiled contract. ``sha256`` is the hash of the artifact file's bytes."""

    contract_name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler_version: str
    settings: dict[str, Any]
    sha256: str

    @classmethod
    def from_bytes(cls, raw: bytes, where: str = ARTIFACT_NAME) -> Artifact:
        """Parse an artifact file; raises ArtifactError if a field is missing or malformed."""
        try:
            data = json.loads(raw)
            artifact = cls(
                contract_name=data["contractName"],
                abi=data["abi"],
                bytecode=data["bytecode"],
                deployed_bytecode=data["deployedBytecode"],
                compiler_version=data["compiler"]["version"],
                settings=data["compiler"]["settings"],
                sha256=hashlib.sha256(raw).hexdigest(),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{where}: not a contract artifact: {exc!r}") from exc
        for name in ("bytecode", "deployed_bytecode"):
            code: object = getattr(artifact, name)
            if not (isinstance(code, str) and code.startswith("0x") and len(code) > 2):
                raise ArtifactError(f"{where}: {name} is not 0x-prefixed hex")
        if not isinstance(artifact.abi, list):
            raise ArtifactError(f"{where}: abi is not a list")
        return artifact


def load_artifact() -> Artifact:
    """The artifact shipped in the ``anchor`` package (``contracts/AuditAnchor.json``)."""
    path = resources.files("auditseal.anchor") / "contracts" / ARTIFACT_NAME
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(
            f"{path}: cannot read the contract artifact ({exc.strerror or exc}); "
            "run python -m auditseal.anchor.build"
        ) from exc
    return Artifact.from_bytes(raw, str(path))
