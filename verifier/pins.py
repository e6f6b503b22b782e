"""What a verifier pins about the anchor: the contract's address and its chain.

They come from flags, or from the anchor's deployment record (``auditseal anchor deploy`` and
``auditseal dev up`` write it; :mod:`auditseal.anchor.deploy` owns its full format). Only the two
fields a verifier needs are read here, so the verifying commands need neither web3 nor the anchor
package.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from auditseal.verifier.errors import FormatError

__all__ = ["DEFAULT_RECORD", "ENV_RECORD", "ContractPin", "read_pins"]

DEFAULT_RECORD = Path(".auditseal") / "anchor" / "deployment.json"
ENV_RECORD = "AUDITSEAL_ANCHOR_DEPLOYMENT"
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


@dataclass(frozen=True)
class ContractPin:
    address: str | None = None
    chain_id: int | None = None


def read_pins(path: str | os.PathLike[str]) -> ContractPin:
    """The contract and chain a deployment record names; empty if there is no record.

    FormatError, naming the file and the field, for a record that cannot be read or holds a
    malformed address or chain id: a verifier must not fall back to no pin silently.
    """
    file = Path(path)
    if not file.is_file():
        return ContractPin()
    try:
        data = json.loads(file.read_bytes())
    except (OSError, ValueError) as exc:
        raise FormatError(f"{file}: unreadable deployment record: {exc}") from exc
    if not isinstance(data, dict):
        raise FormatError(f"{file}: not a deployment record (want a JSON object)")
    address, chain_id = data.get("address"), data.get("chain_id")
    if address is not None and not (isinstance(address, str) and _ADDRESS.fullmatch(address)):
        raise FormatError(f"{file}: address: want 0x and 40 hex digits, got {address!r}")
    if chain_id is not None and (
        not isinstance(chain_id, int) or isinstance(chain_id, bool) or chain_id < 1
    ):
        raise FormatError(f"{file}: chain_id: want a positive integer, got {chain_id!r}")
    return ContractPin(address, chain_id)
