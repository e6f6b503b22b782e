"""The anchor service (``auditseal anchor run``): one transaction per interval, per changed state.

Each round:

1. **Reorg check.** Walk the store's confirmed anchors from the latest back while their block
   is no longer canonical (``eth_getBlockByNumber`` gives another hash, or nothing): those are
   orphaned. The nonce is re-read from the chain after one.
2. **State.** The latest checkpoint body of every log in the store. If it equals the bodies of
   the latest confirmed, canonical anchor, the round ends (nothing is sent).
3. **Aggregate** over the bodies (``verifier.anchor``), and the next ``seq`` (the store's
   highest, orphaned ones included, + 1).
4. **Idempotence.** ``rootOf(seq)`` on chain: the aggregate root already there (a crash between
   sending and recording) → recorded from its ``Anchored`` event, nothing sent; another root
   there (a number occupied by someone else's anchor) → skip to the next number, with a warning.
5. **Send** ``anchor(seq, root, logs)`` as an EIP-1559 transaction at the tracked nonce (read
   once with ``eth_getTransactionCount(addr, "pending")``). Not mined within
   ``rebroadcast_after`` s → rebroadcast at the same nonce with tip and max fee raised by
   12.5 % (nodes demand ≥ 10 %), within the fee cap. Then wait for ``confirmations``.
6. **Record** the anchor and one receipt per log in the store (one transaction, marking the
   orphans it replaces), then publish the receipts to ``audit.anchors`` if a publisher is set.

Errors: exit-3 errors (RPC unreachable, not mined in time, base fee above the cap) are retried
with exponential backoff within a round; after ``retries`` attempts the round fails with that
error. Exit-2 errors (wrong chain, no contract code, key not authorised, no funds, a revert)
are never retried: one clear error. The key is never logged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from eth_typing import HexStr
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3.exceptions import BlockNotFound, TransactionNotFound, Web3RPCError
from web3.types import TxParams

from anchor.artifact import Artifact
from anchor.chain_client import ChainClient, ChainKey, Receipt
from anchor.deploy import Deployment
from anchor.errors import AnchorError, ChainUnavailable, InsufficientFunds, TransactionReverted
from sealer.errors import NotFoundError
from sealer.store import BlockStore, StoredAnchor
from verifier.anchor import Aggregate, AnchorReceipt, build_aggregate, checkpoint_body

if TYPE_CHECKING:
    from anchor.metrics import AnchorMetrics

__all__ = [
    "AnchorService",
    "Broadcast",
    "KafkaPublisher",
    "NotAuthorised",
    "Publisher",
    "RoundResult",
    "ServiceOptions",
]

log = logging.getLogger("auditseal.anchor")

ANCHORED_TOPIC0 = "0x" + keccak(text="Anchored(uint64,bytes32,uint32)").hex()
ZERO_ROOT = bytes(32)
_MAX_SKIP = 1000  # occupied sequence numbers skipped in one round before giving up


class NotAuthorised(AnchorError):
    """The service's key may not anchor on the contract (exit 2, never retried)."""


class Publisher(Protocol):
    def publish(self, receipts: Sequence[AnchorReceipt]) -> None: ...


@dataclass(frozen=True)
class Broadcast:
    """One signed transaction the service sent (a rebroadcast is another one, same nonce)."""

    tx_hash: str
    nonce: int
    max_priority_fee_per_gas: int
    max_fee_per_gas: int


@dataclass(frozen=True)
class ServiceOptions:
    confirmations: int = 1
    max_fee_cap: int | None = None  # wei
    rebroadcast_after: float = 60.0  # s without a receipt before a fee bump
    timeout: float = 600.0  # s for one transaction, rebroadcasts included
    retries: int = 5  # attempts of a round on exit-3 errors
    backoff: float = 1.0  # first pause between attempts, doubled each time
    backoff_max: float = 30.0
    poll: float = 0.5  # s between receipt look-ups
    rpc_timeout: float = 10.0  # s per RPC request
    bump_percent: int = 125  # new fees = old x bump / 100 (+1 wei), at least +10 %


@dataclass(frozen=True)
class RoundResult:
    """What one round did: ``unchanged``, ``anchored`` or ``recovered`` (found on chain)."""

    action: str
    seq: int | None = None
    root: bytes | None = None
    logs: int = 0
    tx_hash: str | None = None
    block_number: int | None = None
    gas_used: int | None = None
    broadcasts: int = 0
    orphaned: tuple[int, ...] = ()
    skipped: tuple[int, ...] = ()
    receipts: tuple[AnchorReceipt, ...] = field(default=(), repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "seq": self.seq,
            "root": self.root.hex() if self.root else None,
            "logs": self.logs,
            "tx_hash": self.tx_hash,
            "block_number": self.block_number,
            "gas_used": self.gas_used,
            "broadcasts": self.broadcasts,
            "orphaned": list(self.orphaned),
            "skipped": list(self.skipped),
        }


class AnchorService:
    """Anchors the store's logs on the deployment's contract. Not thread-safe."""

    def __init__(
        self,
        store: BlockStore,
        key: ChainKey,
        deployment: Deployment,
        artifact: Artifact,
        rpc_url: str,
        options: ServiceOptions | None = None,
        *,
        publisher: Publisher | None = None,
        metrics: AnchorMetrics | None = None,
        clock_ms: Callable[[], int] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.key = key
        self.deployment = deployment
        self.artifact = artifact
        self.rpc_url = rpc_url
        self.options = options or ServiceOptions()
        self.publisher = publisher
        self.metrics = metrics
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._sleep = sleep
        self._client: ChainClient | None = None
        self._nonce: int | None = None
        self.broadcasts: list[Broadcast] = []  # every transaction sent, for tests and logs

    # --- connection and checks -----------------------------------------------------------

    def client(self) -> ChainClient:
        """Connect once and check, before anything is sent, that this is the deployment's
        chain, that the contract has code, and that the key may anchor."""
        if self._client is not None:
            return self._client
        d = self.deployment
        client = ChainClient.connect(
            self.rpc_url, timeout=self.options.rpc_timeout, expected_chain_id=d.chain_id
        )
        if client.code(d.address) in ("0x", ""):
            raise AnchorError(
                f"no contract code at {d.address} on chain {d.chain_id}: the deployment record "
                "is for another chain or the chain was reset; deploy again"
            )
        contract = client.contract(d.address, self.artifact.abi)
        if client.call(contract, "isAnchorer", self.key.address, abi=self.artifact.abi) is not True:
            raise NotAuthorised(
                f"account {self.key.address} is not an anchorer of {d.address} on chain "
                f"{d.chain_id}: the owner {d.owner} must authorise it first"
            )
        self._client = client
        return client

    # --- rounds --------------------------------------------------------------------------

    def run_once(self) -> RoundResult:
        """One round, retrying exit-3 errors with backoff; raises the last one after
        ``retries`` attempts, and exit-2 errors at once."""
        pause = self.options.backoff
        attempt = 1
        while True:
            try:
                return self._round()
            except AnchorError as exc:
                if exc.exit_code != 3 or attempt >= self.options.retries:
                    raise
                log.warning(
                    "anchor round failed (attempt %d of %d), retrying in %.1f s: %s",
                    attempt,
                    self.options.retries,
                    pause,
                    exc,
                )
                # Reconnect (the endpoint may have restarted); keep the tracked nonce, so a
                # transaction that timed out is replaced at its nonce rather than doubled.
                self._client = None
                self._sleep(pause)
                pause = min(pause * 2, self.options.backoff_max)
                attempt += 1

    def run_forever(self, interval: float, stop: threading.Event | None = None) -> None:
        """Rounds every ``interval`` s until ``stop`` is set (checked between rounds); a round
        that fails with an exit-3 error after its retries is logged and the next interval
        tries again (catching up); exit-2 errors end the service."""
        stop = stop or threading.Event()
        log.info(
            "anchoring %s on chain %d every %g s as %s",
            self.deployment.address,
            self.deployment.chain_id,
            interval,
            self.key.address,
        )
        while not stop.is_set():
            started = time.monotonic()
            try:
                result = self.run_once()
                if self.metrics is not None:
                    self.metrics.observe(result, time.time())
                if result.action != "unchanged":
                    log.info("anchor round: %s", json.dumps(result.to_json()))
            except AnchorError as exc:
                if exc.exit_code != 3:
                    raise
                if self.metrics is not None:
                    self.metrics.failures.inc()
                log.error("anchor round failed, next attempt in %.1f s: %s", interval, exc)
            stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def current_bodies(self) -> dict[str, str]:
        """The latest checkpoint body of every log that has one."""
        bodies: dict[str, str] = {}
        for origin in self.store.logs():
            try:
                bodies[origin] = checkpoint_body(self.store.latest_checkpoint(origin))
            except NotFoundError:
                continue
        return bodies

    def _round(self) -> RoundResult:
        client = self.client()
        orphans = self._orphaned(client)
        if orphans:
            log.warning("anchors %s left the canonical chain: anchoring again", orphans)
            self._nonce = None
        current = self.current_bodies()
        last = next(
            (a for a in reversed(self.store.anchors("confirmed")) if a.seq not in orphans),
            None,
        )
        anchored = (
            {r.origin: r.checkpoint for r in self.store.anchor_receipts(last.seq)}
            if last is not None
            else {}
        )
        if not current or current == anchored:
            for seq in orphans:  # the state is anchored elsewhere: just mark them
                self.store.mark_anchor_orphaned(seq)
            return RoundResult("unchanged", orphaned=tuple(orphans))
        aggregate = build_aggregate(list(current.values()))
        contract = client.contract(self.deployment.address, self.artifact.abi)
        seq = self.store.next_anchor_seq()
        skipped: list[int] = []
        while True:
            on_chain = bytes(client.call(contract, "rootOf", seq, abi=self.artifact.abi))
            if on_chain == aggregate.root:
                receipt = self._find_anchor_event(client, seq)
                if receipt is not None:
                    return self._record(
                        "recovered", seq, aggregate, receipt, 0, orphans, skipped, None
                    )
            if on_chain == ZERO_ROOT:
                break
            log.warning("anchor seq %d is occupied on chain by another root: skipping it", seq)
            skipped.append(seq)
            seq += 1
            if len(skipped) > _MAX_SKIP:
                raise AnchorError(f"more than {_MAX_SKIP} anchor numbers occupied after {seq}")
        data = contract.encode_abi("anchor", args=[seq, aggregate.root, aggregate.size])
        try:
            receipt, broadcasts = self._send(client, data, what=f"anchor {seq}")
        except TransactionReverted as exc:
            # Mined but reverted: another transaction (ours from before a restart, or another
            # anchorer's) wrote rootOf(seq) first. The same root is our anchor; another root
            # is an occupied number that the retried round skips.
            if exc.tx_hash is None:
                raise
            on_chain = bytes(client.call(contract, "rootOf", seq, abi=self.artifact.abi))
            if on_chain == ZERO_ROOT:
                raise
            self._nonce = None
            found = self._find_anchor_event(client, seq) if on_chain == aggregate.root else None
            if found is None:
                raise AnchorError(
                    f"{exc}; rootOf({seq}) was written meanwhile: retrying", 3
                ) from None
            return self._record("recovered", seq, aggregate, found, 0, orphans, skipped, None)
        return self._record(
            "anchored", seq, aggregate, receipt, broadcasts, orphans, skipped, receipt.gas_used
        )

    def _orphaned(self, client: ChainClient) -> list[int]:
        orphans: list[int] = []
        for anchor in reversed(self.store.anchors("confirmed")):
            with client._rpc("eth_getBlockByNumber"):
                try:
                    block = client.w3.eth.get_block(anchor.block_number)
                    canonical: str | None = "0x" + bytes(block["hash"]).hex()
                except BlockNotFound:  # the chain is shorter now
                    canonical = None
            if canonical == anchor.block_hash:
                break
            orphans.append(anchor.seq)
        return orphans

    def _find_anchor_event(self, client: ChainClient, seq: int) -> Receipt | None:
        """The mined ``Anchored(seq, ...)`` transaction, from its event (after a crash)."""
        with client._rpc("eth_getLogs"):
            logs = client.w3.eth.get_logs(
                {
                    "address": to_checksum_address(self.deployment.address),
                    "fromBlock": self.deployment.block_number,
                    "toBlock": "latest",
                    "topics": [HexStr(ANCHORED_TOPIC0), HexStr("0x" + seq.to_bytes(32).hex())],
                }
            )
        if not logs:
            return None
        tx_hash = "0x" + bytes(logs[-1]["transactionHash"]).hex()
        return client.wait(
            tx_hash,
            what=f"anchor {seq}",
            timeout=self.options.timeout,
            confirmations=self.options.confirmations,
            poll=self.options.poll,
        )

    def _record(
        self,
        action: str,
        seq: int,
        aggregate: Aggregate,
        receipt: Receipt,
        broadcasts: int,
        orphans: Sequence[int],
        skipped: Sequence[int],
        gas_used: int | None,
    ) -> RoundResult:
        d = self.deployment
        receipts = tuple(
            AnchorReceipt(
                seq=seq,
                origin=origin,
                checkpoint=body,
                index=i,
                size=aggregate.size,
                proof=tuple(aggregate.proof(i)),
                root=aggregate.root,
                tx_hash=receipt.tx_hash,
                block_number=receipt.block_number,
                block_hash=receipt.block_hash,
                chain_id=d.chain_id,
                contract=d.address,
            )
            for i, (origin, body) in enumerate(
                zip(aggregate.origins, aggregate.bodies, strict=True)
            )
        )
        self.store.record_anchor(
            StoredAnchor(
                seq=seq,
                root=aggregate.root,
                tx_hash=receipt.tx_hash,
                block_number=receipt.block_number,
                block_hash=receipt.block_hash,
                chain_id=d.chain_id,
                contract=d.address,
                anchored_at_ms=self._clock_ms(),
            ),
            receipts,
            replaces=orphans,
        )
        if self.publisher is not None:
            self.publisher.publish(receipts)
        return RoundResult(
            action,
            seq,
            aggregate.root,
            aggregate.size,
            receipt.tx_hash,
            receipt.block_number,
            gas_used,
            broadcasts,
            tuple(orphans),
            tuple(skipped),
            receipts,
        )

    # --- sending -------------------------------------------------------------------------

    def _send(self, client: ChainClient, data: str, *, what: str) -> tuple[Receipt, int]:
        """Send ``data`` to the contract at the tracked nonce, rebroadcasting with bumped fees
        until one of the broadcasts is mined; returns its receipt and the broadcast count."""
        o = self.options
        sender = self.key.address
        tx: dict[str, Any] = {"from": sender, "to": self.deployment.address, "data": data}
        with client._rpc("eth_estimateGas"), client._reverts(what, self.artifact.abi, None):
            gas = int(int(client.w3.eth.estimate_gas(cast(TxParams, tx))) * 1.2)
        fees = client.fees(o.max_fee_cap)
        tip, max_fee = fees.max_priority_fee_per_gas, fees.max_fee_per_gas
        balance = client.balance(sender)
        if balance < gas * max_fee:
            raise InsufficientFunds(
                f"account {sender} holds {balance} wei on chain {client.chain_id}; {what} may "
                f"cost up to {gas * max_fee} wei (gas {gas} x max fee {max_fee}): fund it"
            )
        if self._nonce is None:
            with client._rpc("eth_getTransactionCount"):
                self._nonce = int(
                    client.w3.eth.get_transaction_count(to_checksum_address(sender), "pending")
                )
        nonce = self._nonce
        last = self.broadcasts[-1] if self.broadcasts else None
        if last is not None and last.nonce == nonce:
            # A transaction of ours at this nonce may still be pending (a round that timed
            # out): replace it, which needs fees above its own.
            tip = max(tip, last.max_priority_fee_per_gas * o.bump_percent // 100 + 1)
            max_fee = max(max_fee, last.max_fee_per_gas * o.bump_percent // 100 + 1)
            if o.max_fee_cap is not None:
                max_fee = min(max_fee, o.max_fee_cap)
            tip = min(tip, max_fee)
        hashes: list[str] = []
        deadline = time.monotonic() + o.timeout
        send = True
        while True:
            raw = self.key.sign(
                cast(
                    TxParams,
                    {
                        **tx,
                        "type": 2,
                        "chainId": client.chain_id,
                        "nonce": nonce,
                        "gas": gas,
                        "maxFeePerGas": max_fee,
                        "maxPriorityFeePerGas": tip,
                        "value": 0,
                    },
                )
            )
            tx_hash = "0x" + keccak(raw).hex()
            if send and self._broadcast(client, raw, what, bool(hashes)):
                hashes.append(tx_hash)
                self.broadcasts.append(Broadcast(tx_hash, nonce, tip, max_fee))
                log.info(
                    "%s: sent %s (nonce %d, tip %d wei, max fee %d wei)",
                    what,
                    tx_hash,
                    nonce,
                    tip,
                    max_fee,
                )
            bump_at = time.monotonic() + o.rebroadcast_after
            while time.monotonic() < bump_at:
                mined = self._mined(client, hashes)
                if mined is not None:
                    receipt = client.wait(
                        mined,
                        what=what,
                        timeout=max(deadline - time.monotonic(), o.poll),
                        confirmations=o.confirmations,
                        poll=o.poll,
                    )
                    self._nonce = nonce + 1
                    return receipt, len(hashes)
                if time.monotonic() > deadline:
                    raise ChainUnavailable(
                        f"{what}: not mined within {o.timeout:g} s after {len(hashes)} "
                        f"broadcast(s) at nonce {nonce} (last {hashes[-1] if hashes else '-'}); "
                        "it may still be: the next round checks rootOf before sending"
                    )
                self._sleep(o.poll)
            new_tip = tip * o.bump_percent // 100 + 1
            new_max = max(max_fee * o.bump_percent // 100 + 1, 2 * client.fees().base_fee_per_gas)
            if o.max_fee_cap is not None and new_max > o.max_fee_cap:
                new_max = o.max_fee_cap
            if new_max * 10 < max_fee * 11 or new_tip > new_max:
                log.warning("%s: not mined, but the fee cap leaves no room to bump: waiting", what)
                send = False
                continue
            send = True
            tip, max_fee = new_tip, new_max
            log.warning("%s: not mined after %g s: rebroadcasting", what, o.rebroadcast_after)

    def _broadcast(self, client: ChainClient, raw: bytes, what: str, replacing: bool) -> bool:
        """Send a signed transaction; False if the node already has it."""
        with client._rpc("eth_sendRawTransaction"):
            try:
                client.w3.eth.send_raw_transaction(raw)
            except Web3RPCError as exc:
                message = str(exc.message or exc).splitlines()[0] if str(exc) else ""
                lowered = message.lower()
                if "already known" in lowered or "already imported" in lowered:
                    return True
                if "nonce too low" in lowered:
                    self._nonce = None
                    if replacing:  # an earlier broadcast of ours was mined meanwhile
                        return False
                    raise AnchorError(
                        f"{what}: nonce taken by another transaction of {self.key.address} "
                        f"({message}); retrying with a fresh nonce",
                        3,
                    ) from None
                if "insufficient funds" in lowered:
                    raise InsufficientFunds(
                        f"{what}: account {self.key.address} cannot pay for the gas: {message}"
                    ) from None
                if "underpriced" in lowered:
                    if replacing:
                        log.warning("%s: the node refused the fee bump (%s)", what, message)
                        return False
                    raise AnchorError(
                        f"{what}: the node refused the fees ({message}); retrying", 3
                    ) from None
                raise AnchorError(f"{what}: the node refused the transaction: {message}") from None
        return True

    @staticmethod
    def _mined(client: ChainClient, hashes: Sequence[str]) -> str | None:
        for tx_hash in hashes:
            with client._rpc("eth_getTransactionReceipt"):
                try:
                    client.w3.eth.get_transaction_receipt(HexStr(tx_hash))
                except TransactionNotFound:
                    continue
            return tx_hash
        return None


class KafkaPublisher:
    """Publishes receipts as JSON to a topic (key: the log's origin), acks=all, idempotent."""

    def __init__(self, bootstrap: str, topic: str = "audit.anchors", timeout: float = 30.0) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.timeout = timeout
        self._producer = Producer(
            {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True}
        )

    def publish(self, receipts: Sequence[AnchorReceipt]) -> None:
        errors: list[str] = []

        def report(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        for r in receipts:
            self._producer.produce(
                self.topic,
                key=r.origin.encode(),
                value=json.dumps(r.to_json(), sort_keys=True).encode(),
                on_delivery=report,
            )
        left = self._producer.flush(self.timeout)
        if left or errors:
            raise AnchorError(
                f"publishing to {self.topic}: {left} receipt(s) undelivered "
                f"{errors[:1]}; they are in the store",
                3,
            )
