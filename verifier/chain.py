"""The web3 implementation of :class:`~auditseal.verifier.anchoring.AnchorReader`.

The one module of ``verifier`` that talks to a chain (tests/unit/test_architecture.py). It
reads only: ``eth_chainId``, ``eth_call`` of ``rootOf`` and ``isAnchorer``, ``eth_getLogs`` of
the ``Anchored`` events (one seq, or all of them), the block and transaction of an event, and
block hashes and the height (for the monitor's reorg checks). The ABI entries it needs are in
``verifier/anchor_abi.json`` (a copy of the contract's, so verifier needs no anchor/).
Every failure to reach or query the endpoint becomes :class:`ChainUnavailableError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any

from web3 import HTTPProvider, Web3
from web3.exceptions import BlockNotFound, Web3Exception

from auditseal.verifier.anchoring import AnchorFact, ChainAnchor, ChainUnavailableError
from auditseal.verifier.errors import FormatError
from auditseal.verifier.urls import public_url, scrub

__all__ = ["ANCHORED_TOPIC0", "LOG_RANGE", "Web3AnchorReader", "load_abi", "read_anchored"]

_ZERO_ROOT = bytes(32)
ANCHORED_TOPIC0 = Web3.to_hex(Web3.keccak(text="Anchored(uint64,bytes32,uint32)"))
"""The first log topic of the contract's ``Anchored(uint64 indexed seq, bytes32, uint32)``."""
LOG_RANGE = 5000
"""Blocks per ``eth_getLogs`` request: providers cap the range of one request."""


def read_anchored(w3: Web3, contract: str, from_block: int, head: int) -> list[ChainAnchor]:
    """Every ``Anchored`` event of ``contract`` in blocks ``[from_block, head]``, in chain
    order, read :data:`LOG_RANGE` blocks per request. A log under the event's topic that does
    not have the event's shape is skipped. Raises whatever web3 raises: each caller converts
    it into its own error vocabulary.
    """
    found: list[ChainAnchor] = []
    address = Web3.to_checksum_address(contract)
    for first in range(from_block, head + 1, LOG_RANGE):
        entries = w3.eth.get_logs(
            {
                "address": address,
                "fromBlock": first,
                "toBlock": min(first + LOG_RANGE - 1, head),
                "topics": [ANCHORED_TOPIC0],
            }
        )
        for entry in entries:
            data = bytes(entry["data"])
            if len(entry["topics"]) != 2 or len(data) != 64:
                continue
            number = int(entry["blockNumber"])
            found.append(
                ChainAnchor(
                    seq=int.from_bytes(bytes(entry["topics"][1]), "big"),
                    root=data[:32],
                    block_number=number,
                    block_hash=Web3.to_hex(entry["blockHash"]),
                    tx_hash=Web3.to_hex(entry["transactionHash"]),
                    confirmations=max(0, head - number + 1),
                    logs=int.from_bytes(data[32:], "big"),
                )
            )
    return found


def load_abi() -> list[dict[str, Any]]:
    """The ABI entries of AuditAnchor the verifier uses (rootOf, isAnchorer, Anchored)."""
    text = resources.files("auditseal.verifier").joinpath("anchor_abi.json").read_text("utf-8")
    abi: list[dict[str, Any]] = json.loads(text)
    return abi


class Web3AnchorReader:
    """Read the AuditAnchor contract at ``contract_address`` through ``rpc_url``."""

    def __init__(
        self,
        rpc_url: str,
        contract_address: str,
        abi: Sequence[Mapping[str, Any]] | None = None,
        *,
        timeout: float = 10.0,
    ) -> None:
        if not Web3.is_address(contract_address):
            raise FormatError(f"contract address {contract_address!r} is not an address")
        self._url = rpc_url  # never shown: providers put API keys in the path or query
        self._label = public_url(rpc_url)
        provider = HTTPProvider(
            rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None
        )
        self._w3 = Web3(provider)
        self.address = Web3.to_checksum_address(contract_address)
        self._contract = self._w3.eth.contract(
            address=self.address, abi=list(abi) if abi is not None else load_abi()
        )
        self._has_code: bool | None = None

    @contextmanager
    def _rpc(self, what: str) -> Iterator[None]:
        try:
            yield
        except (Web3Exception, OSError, ValueError) as exc:
            # web3 and requests quote the URL (its path and query) in their messages.
            detail = scrub(f"{type(exc).__name__}: {exc}", self._url)
            raise ChainUnavailableError(f"chain at {self._label}: {what} failed: {detail}") from exc

    def chain_id(self) -> int:
        with self._rpc("eth_chainId"):
            return int(self._w3.eth.chain_id)

    def has_code(self) -> bool:
        """Whether the pinned address holds a contract (asked once, then remembered)."""
        return self._code()

    def block_hash(self, number: int) -> str | None:
        """The canonical hash of block ``number`` (0x-hex); None if the chain has no such block."""
        try:
            with self._rpc(f"eth_getBlockByNumber({number})"):
                block = self._w3.eth.get_block(number)
        except ChainUnavailableError as exc:
            if isinstance(exc.__cause__, BlockNotFound):
                return None
            raise
        return Web3.to_hex(block["hash"])

    def latest_block(self) -> int:
        with self._rpc("eth_blockNumber"):
            return int(self._w3.eth.block_number)

    def _code(self) -> bool:
        if self._has_code is None:
            with self._rpc("eth_getCode"):
                self._has_code = len(bytes(self._w3.eth.get_code(self.address))) > 0
        return self._has_code

    def root_of(self, seq: int) -> bytes | None:
        if not self._code():
            return None
        with self._rpc(f"rootOf({seq})"):
            value = bytes(self._contract.functions.rootOf(seq).call())
        return None if value == _ZERO_ROOT else value

    def is_anchorer(self, address: str, block: int | None = None) -> bool:
        if not self._code() or not Web3.is_address(address):
            return False
        call = self._contract.functions.isAnchorer(Web3.to_checksum_address(address))
        with self._rpc(f"isAnchorer({address})"):
            return bool(call.call(block_identifier="latest" if block is None else block))

    def anchored_at(self, seq: int) -> AnchorFact | None:
        if not self._code():
            return None
        with self._rpc(f"eth_getLogs(Anchored, seq {seq})"):
            logs = self._contract.events.Anchored.get_logs(
                argument_filters={"seq": seq}, from_block=0, to_block="latest"
            )
            if not logs:
                return None
            log = logs[-1]
            number = int(log["blockNumber"])
            block = self._w3.eth.get_block(number)
            tx = self._w3.eth.get_transaction(log["transactionHash"])
            latest = int(self._w3.eth.block_number)
        return AnchorFact(
            seq=seq,
            root=bytes(log["args"]["root"]),
            block_number=number,
            block_hash=Web3.to_hex(log["blockHash"]),
            timestamp=int(block["timestamp"]),
            anchorer=str(tx["from"]),
            tx_hash=Web3.to_hex(log["transactionHash"]),
            confirmations=max(0, latest - number + 1),
            logs=int(log["args"]["logs"]),
        )

    def anchors(self, from_block: int = 0) -> tuple[ChainAnchor, ...]:
        """Every ``Anchored`` event of the contract from ``from_block`` on, by seq.

        The contract refuses a second root for a seq, so a seq appears at most once on the
        canonical chain; should an endpoint return it twice, the later event is kept, as
        :meth:`anchored_at` does.
        """
        if not self._code():
            return ()
        with self._rpc("eth_getLogs(Anchored)"):
            head = int(self._w3.eth.block_number)
            events = read_anchored(self._w3, self.address, from_block, head)
        by_seq = {event.seq: event for event in events}
        return tuple(by_seq[seq] for seq in sorted(by_seq))
