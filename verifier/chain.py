"""The web3 implementation of :class:`~verifier.anchoring.AnchorReader`.

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
from urllib.parse import urlsplit

from web3 import HTTPProvider, Web3
from web3.exceptions import BlockNotFound, Web3Exception

from verifier.anchoring import AnchorFact, ChainAnchor, ChainUnavailableError
from verifier.errors import FormatError

__all__ = ["Web3AnchorReader", "load_abi"]

_ZERO_ROOT = bytes(32)


def load_abi() -> list[dict[str, Any]]:
    """The ABI entries of AuditAnchor the verifier uses (rootOf, isAnchorer, Anchored)."""
    text = resources.files("verifier").joinpath("anchor_abi.json").read_text("utf-8")
    abi: list[dict[str, Any]] = json.loads(text)
    return abi


def _label(url: str) -> str:
    """The endpoint without credentials or path, for messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}" if parts.hostname else "endpoint"


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
        self._label = _label(rpc_url)
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
            raise ChainUnavailableError(
                f"chain at {self._label}: {what} failed: {type(exc).__name__}: {exc}"
            ) from exc

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

    def anchors(self) -> tuple[ChainAnchor, ...]:
        """Every ``Anchored`` event of the contract, by seq (one ``eth_getLogs`` over the chain).

        The contract refuses a second root for a seq, so a seq appears at most once on the
        canonical chain; should an endpoint return it twice, the later event is kept, as
        :meth:`anchored_at` does.
        """
        if not self._code():
            return ()
        with self._rpc("eth_getLogs(Anchored)"):
            logs = self._contract.events.Anchored.get_logs(from_block=0, to_block="latest")
            latest = int(self._w3.eth.block_number)
        by_seq: dict[int, ChainAnchor] = {}
        for log in logs:
            number = int(log["blockNumber"])
            seq = int(log["args"]["seq"])
            by_seq[seq] = ChainAnchor(
                seq=seq,
                root=bytes(log["args"]["root"]),
                block_number=number,
                block_hash=Web3.to_hex(log["blockHash"]),
                tx_hash=Web3.to_hex(log["transactionHash"]),
                confirmations=max(0, latest - number + 1),
            )
        return tuple(by_seq[s] for s in sorted(by_seq))
