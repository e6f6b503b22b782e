"""Who may anchor: the contract owner's ``authorise(address)`` and ``revoke(address)``.

Rotating the anchorer (docs/ANCHORING.md, "Rotating the anchorer") is: authorise the new
account, move the anchor service to its key, revoke the old one. Anchors the old key wrote
stay valid: verifiers check ``isAnchorer`` as of each anchor's block, and ``revoke`` never
touches a root already written. The deployment record keeps the initial anchorers; the
contract's ``AnchorerAuthorised``/``AnchorerRevoked`` events are the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address

from auditseal.anchor.artifact import Artifact
from auditseal.anchor.chain_client import ChainClient, ChainKey
from auditseal.anchor.deploy import Deployment
from auditseal.anchor.errors import AnchorError, InputError

__all__ = ["Change", "set_anchorer"]


@dataclass(frozen=True)
class Change:
    """The outcome of one ``set_anchorer``: ``tx_hash`` None when nothing had to change."""

    anchorer: str
    authorised: bool
    contract: str
    chain_id: int
    tx_hash: str | None = None
    block_number: int | None = None
    gas_used: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "anchorer": self.anchorer,
            "authorised": self.authorised,
            "changed": self.tx_hash is not None,
            "contract": self.contract,
            "chain_id": self.chain_id,
            "tx_hash": self.tx_hash,
            "block_number": self.block_number,
            "gas_used": self.gas_used,
        }


def set_anchorer(
    client: ChainClient,
    key: ChainKey,
    record: Deployment,
    artifact: Artifact,
    anchorer: str,
    *,
    authorise: bool,
    max_fee_cap: int | None = None,
    timeout: float = 120.0,
    confirmations: int = 1,
) -> Change:
    """Authorise (``authorise=True``) or revoke ``anchorer`` on the recorded contract.

    Steps: (1) the contract has code on ``client``'s chain; (2) ``key`` is its ``owner()``
    (else InputError: the contract would revert NotOwner; checked first so nothing is spent);
    (3) already in the wanted state: nothing is sent; (4) send ``authorise``/``revoke`` and wait
    for ``confirmations``; (5) ``isAnchorer`` reads as wanted, else AnchorError.
    """
    address = to_checksum_address(anchorer)
    if client.code(record.address) in ("0x", ""):
        raise AnchorError(
            f"no contract code at {record.address} on chain {client.chain_id}: the deployment "
            "record is for another chain or the chain was reset"
        )
    contract = client.contract(record.address, artifact.abi)
    owner = to_checksum_address(client.call(contract, "owner", abi=artifact.abi))
    if owner != key.address:
        raise InputError(
            f"account {key.address} is not the owner of {record.address} (the owner is "
            f"{owner}): give the owner's key with --key"
        )
    change = Change(address, authorise, record.address, client.chain_id)
    if client.call(contract, "isAnchorer", address, abi=artifact.abi) is authorise:
        return change
    function = "authorise" if authorise else "revoke"
    data = getattr(contract.functions, function)(address)._encode_transaction_data()
    receipt = client.transact(
        key,
        {"to": record.address, "data": data},
        what=f"{function} {address}",
        abi=artifact.abi,
        max_fee_cap=max_fee_cap,
        timeout=timeout,
        confirmations=confirmations,
    )
    if client.call(contract, "isAnchorer", address, abi=artifact.abi) is not authorise:
        raise AnchorError(
            f"{record.address}: isAnchorer({address}) is still {not authorise} after "
            f"transaction {receipt.tx_hash}"
        )
    return Change(
        address,
        authorise,
        record.address,
        client.chain_id,
        receipt.tx_hash,
        receipt.block_number,
        receipt.gas_used,
    )
