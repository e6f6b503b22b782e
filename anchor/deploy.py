"""Deploy AuditAnchor from the committed artifact and record where it went.

The deployment record (``.auditseal/anchor/deployment.json`` by default) is what the anchor
service, the verifier's chain look-ups and operators read to find the contract: chain id,
address, deploying transaction and block, the owner, the initial anchorers, and the compiler
and artifact hash that produced the deployed code. It holds nothing secret.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_utils.address import is_address, to_checksum_address

from auditseal.anchor.artifact import Artifact
from auditseal.anchor.chain_client import ChainClient, ChainKey
from auditseal.anchor.errors import AnchorError, ArtifactError, InputError
from auditseal.store.files import write_atomic
from auditseal.verifier.pins import DEFAULT_RECORD, ENV_RECORD

__all__ = [
    "DEFAULT_RECORD",
    "ENV_RECORD",
    "RECORD_FORMAT",
    "Deployment",
    "check_writable",
    "checksummed",
    "deploy",
    "read_record",
    "write_record",
]

RECORD_FORMAT = "auditseal-anchor-deployment-1"


@dataclass(frozen=True)
class Deployment:
    """Where one AuditAnchor lives. Addresses are EIP-55 checksummed, hashes 0x-hex."""

    chain_id: int
    address: str
    tx_hash: str
    block_number: int
    block_hash: str
    owner: str
    anchorers: tuple[str, ...]
    contract: str
    compiler_version: str
    artifact_sha256: str
    gas_used: int

    def to_json(self) -> dict[str, Any]:
        return {"format": RECORD_FORMAT, **asdict(self), "anchorers": list(self.anchorers)}

    @classmethod
    def from_json(cls, data: object, where: str) -> Deployment:
        """Parse a record; raises InputError naming ``where`` if it is not one."""
        if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
            raise InputError(f"{where}: not an auditseal deployment record ({RECORD_FORMAT})")
        try:
            record = cls(
                chain_id=int(data["chain_id"]),
                address=to_checksum_address(data["address"]),
                tx_hash=str(data["tx_hash"]),
                block_number=int(data["block_number"]),
                block_hash=str(data["block_hash"]),
                owner=to_checksum_address(data["owner"]),
                anchorers=tuple(to_checksum_address(a) for a in data["anchorers"]),
                contract=str(data["contract"]),
                compiler_version=str(data["compiler_version"]),
                artifact_sha256=str(data["artifact_sha256"]),
                gas_used=int(data["gas_used"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: malformed deployment record: {exc!r}") from exc
        return record


def read_record(path: str | os.PathLike[str]) -> Deployment:
    p = Path(path)
    try:
        data = json.loads(p.read_bytes())
    except OSError as exc:
        raise InputError(f"{p}: cannot read deployment record: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise InputError(f"{p}: deployment record is not JSON: {exc}") from exc
    return Deployment.from_json(data, str(p))


def check_writable(path: str | os.PathLike[str], *, overwrite: bool) -> None:
    """Refuse, before anything is spent, to replace an existing record (unless ``overwrite``):
    losing the address of a live contract is worse than a failed command."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p}: is a directory")
    if p.exists() and not overwrite:
        try:
            old = read_record(p)
            what = f"contract {old.address} on chain {old.chain_id}"
        except InputError:
            what = "a file that is not a deployment record"
        raise InputError(f"{p}: already records {what}; pass --force or choose another --out")


def write_record(deployment: Deployment, path: str | os.PathLike[str]) -> None:
    """Write the record atomically (temporary file, then rename), creating parent folders."""
    p = Path(path)
    text = json.dumps(deployment.to_json(), indent=2, sort_keys=True) + "\n"
    try:
        write_atomic(p, text.encode("utf-8"))
    except OSError as exc:
        raise InputError(f"{p}: cannot write deployment record: {exc.strerror or exc}") from exc


def checksummed(addresses: Sequence[str]) -> tuple[str, ...]:
    """EIP-55 forms of ``addresses``, in order, without duplicates; InputError if one is bad."""
    out: dict[str, None] = {}
    for a in addresses:
        if not is_address(a):
            raise InputError(f"{a!r} is not an Ethereum address")
        out[to_checksum_address(a)] = None
    return tuple(out)


def deploy(
    client: ChainClient,
    key: ChainKey,
    artifact: Artifact,
    anchorers: Sequence[str] = (),
    *,
    max_fee_cap: int | None = None,
    timeout: float = 120.0,
    confirmations: int = 1,
) -> Deployment:
    """Deploy the artifact's contract from ``key``'s account and check the result.

    The deployer becomes the owner and, with ``anchorers``, an anchorer, all in the one
    creation transaction (the constructor authorises them). After the receipt the deployed
    runtime code MUST equal the artifact's ``deployedBytecode``, ``owner()`` the deployer and
    ``isAnchorer`` true for each anchorer; otherwise AnchorError (the contract is not the one
    built here). Raises the errors of ``ChainClient.transact``.
    """
    everyone = checksummed([key.address, *anchorers])
    factory = client.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    data = factory.constructor(list(everyone)).data_in_transaction
    receipt = client.transact(
        key,
        {"data": data},
        what=f"deploying {artifact.contract_name}",
        abi=artifact.abi,
        max_fee_cap=max_fee_cap,
        timeout=timeout,
        confirmations=confirmations,
    )
    address = receipt.contract_address
    if address is None:
        raise AnchorError(f"transaction {receipt.tx_hash} created no contract")

    # The code at the address is the artifact's, byte for byte (no immutables to mask).
    if client.code(address) != artifact.deployed_bytecode:
        raise ArtifactError(
            f"the code at {address} differs from the artifact's deployedBytecode "
            f"(transaction {receipt.tx_hash})"
        )
    contract = client.contract(address, artifact.abi)
    owner = to_checksum_address(client.call(contract, "owner", abi=artifact.abi))
    if owner != key.address:
        raise AnchorError(f"{address}: owner() is {owner}, expected the deployer {key.address}")
    for account in everyone:
        if client.call(contract, "isAnchorer", account, abi=artifact.abi) is not True:
            raise AnchorError(f"{address}: {account} is not an anchorer after deployment")
    return Deployment(
        chain_id=client.chain_id,
        address=address,
        tx_hash=receipt.tx_hash,
        block_number=receipt.block_number,
        block_hash=receipt.block_hash,
        owner=owner,
        anchorers=everyone,
        contract=artifact.contract_name,
        compiler_version=artifact.compiler_version,
        artifact_sha256=artifact.sha256,
        gas_used=receipt.gas_used,
    )
