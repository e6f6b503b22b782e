"""The anchor service (``auditseal anchor run``): one transaction per interval, per changed state.

Each round:

1. **Reorg check.** Walk the store's confirmed anchors from the latest back while their block
   is no longer canonical (``eth_getBlockByNumber`` gives another hash, or nothing): those are
   orphaned. The nonce is re-read from the chain after one.
2. **Recovery** (on the first round after a start, and whenever step 5 finds the next seq
   occupied). Wait until no transaction of the service's key is pending (one sent before a
   crash must land before anything else is sent, or the later one would revert). Then read the
   contract's ``Anchored`` events from the last recorded anchor's block on, and for each seq
   from the store's next one on that holds a root: explain the root from the store (the intent
   row written before sending, else the current state, else a replay of the store's past
   states), record it with its receipts like a round of our own (step 7), or, if the store
   cannot explain it, report an UnexplainedAnchor carrying the evidence and move past that seq
   without touching it.
3. **Outbox.** Publish the receipts of every recorded anchor not yet marked published.
4. **State.** The latest checkpoint body of every log in the store. If it equals the bodies of
   the latest confirmed, canonical anchor, the round ends (nothing is sent).
5. **Aggregate** over the bodies (``verifier.anchor``) and the next ``seq`` (past everything
   recorded or reported); ``rootOf(seq)`` non-zero → back to step 2.
6. **Intent, then send.** The intent row (seq, root, bodies) is committed to the store, then
   ``anchor(seq, root, logs)`` is sent as an EIP-1559 transaction at the tracked nonce (read
   once with ``eth_getTransactionCount(addr, "pending")``). Not mined within
   ``rebroadcast_after`` s → ``rootOf(seq)`` is read again (written meanwhile by someone else:
   the pending transaction would revert, so it is replaced by a 0-value transfer to ourselves
   at its nonce, and the round is retried), else rebroadcast at the same nonce with tip and
   max fee raised by 12.5 % (nodes demand ≥ 10 %), within the fee cap. Then wait for
   ``confirmations``.
7. **Record** the anchor and one receipt per log in the store (one transaction, marking the
   orphans it replaces), then publish the receipts to ``audit.anchors`` if a publisher is set
   and mark them published (at least once: a crash in between publishes them again).

A crash between any two steps loses nothing: before 6 nothing was sent; between the intent and
the record, step 2 of the next start finds the anchor on chain and the intent explains it;
between the record and the outbox mark, step 3 publishes again.

**Standby.** :meth:`AnchorService.run_forever` anchors only while it holds the store's lead
``anchor`` (:meth:`~auditseal.store.blockstore.BlockStore.try_lead`: a lock that dies with its
holder's process or database session), so of several services on one store exactly one sends;
the others poll the lead every ``min(interval, 2 s)``. Becoming the leader forgets what the
process knew (nonce, recovery done), so its first round is step 2 in full: it waits for the
key's pending transactions and records from the chain what the dead leader sent but did not
record, before sending anything. The lead is checked again right before the intent (step 6):
a leader that lost its session meanwhile sends nothing (NotLeader).

Errors: exit-3 errors (RPC unreachable, not mined in time, base fee above the cap) are retried
with exponential backoff within a round; after ``retries`` attempts the round fails with that
error. Exit-2 errors (wrong chain, no contract code, key not authorised, no funds, a revert)
are never retried: one clear error. The key is never logged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from eth_typing import HexStr
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3.exceptions import BlockNotFound, TransactionNotFound, Web3RPCError
from web3.types import TxParams

from auditseal.anchor.artifact import Artifact
from auditseal.anchor.chain_client import ChainClient, ChainKey, Receipt
from auditseal.anchor.deploy import Deployment
from auditseal.anchor.errors import (
    AnchorError,
    ChainUnavailable,
    InsufficientFunds,
    TransactionReverted,
)
from auditseal.store.blockstore import BlockStore, StoredAnchor
from auditseal.store.errors import NotFoundError, StoreError
from auditseal.verifier.anchor import Aggregate, AnchorReceipt, build_aggregate, checkpoint_body
from auditseal.verifier.chain import read_anchored
from auditseal.verifier.merkle import leaf_hash
from auditseal.verifier.merkle import root as merkle_root

__all__ = [
    "LEAD",
    "AnchorService",
    "Broadcast",
    "KafkaPublisher",
    "NotAuthorised",
    "NotLeader",
    "OnChainAnchor",
    "Publisher",
    "RoundResult",
    "ServiceOptions",
    "UnexplainedAnchor",
]

log = logging.getLogger("auditseal.anchor")

ZERO_ROOT = bytes(32)
_MAX_SKIP = 1000  # occupied sequence numbers skipped in one round before giving up
_MAX_REPLAY = 200_000  # store blocks replayed to explain an anchor without an intent row
LEAD = "anchor"  # the store's lead an anchor service holds while it is the active one
STANDBY_POLL = 2.0  # s: the longest a standby waits between looks at the lead


class NotAuthorised(AnchorError):
    """The service's key may not anchor on the contract (exit 2, never retried)."""


class NotLeader(AnchorError):
    """Another anchor service holds the store's lead, or this one lost it (exit 3: retry
    later; within a round it is not retried, the service stands by instead)."""

    exit_code = 3


@dataclass(frozen=True)
class OnChainAnchor:
    """An ``Anchored`` event as the chain holds it, with the sender of its transaction."""

    seq: int
    root: bytes
    logs: int
    tx_hash: str
    block_number: int
    block_hash: str
    sender: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "root": self.root.hex(),
            "logs": self.logs,
            "tx_hash": self.tx_hash,
            "block_number": self.block_number,
            "block_hash": self.block_hash,
            "sender": self.sender,
        }


class UnexplainedAnchor(AnchorError):
    """An anchor on chain that the store cannot explain: no intent row, no past state of the
    store aggregates to its root (another anchorer, or a lost intent). Carries the evidence;
    the service reports it and moves past the seq without overwriting it (DESIGN: the chain
    is the authority, so ``verify --all`` fails on it until an operator acts, ANCHORING.md)."""

    def __init__(self, anchor: OnChainAnchor, reason: str) -> None:
        super().__init__(
            f"anchor {anchor.seq} on chain is not explained by the store ({reason}): root "
            f"{anchor.root.hex()}, tx {anchor.tx_hash}, block {anchor.block_number} "
            f"({anchor.block_hash}), sent by {anchor.sender or 'unknown'}; left as it is, "
            "the service continues after it"
        )
        self.anchor = anchor
        self.reason = reason

    def to_json(self) -> dict[str, Any]:
        return {**self.anchor.to_json(), "reason": self.reason}


class Publisher(Protocol):
    def publish(self, receipts: Sequence[AnchorReceipt]) -> None: ...


class RoundObserver(Protocol):
    """Told how each round of :meth:`AnchorService.run_forever` went (the Prometheus metrics of
    :mod:`auditseal.anchor.metrics`)."""

    def observe(self, result: RoundResult, now: float) -> None: ...

    def failed(self) -> None:
        """A round failed after its retries (the chain unavailable)."""

    def leading(self, active: bool) -> None:
        """The service became the active one (True) or a standby (False)."""


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
    # Test-only (crash tests, via $AUDITSEAL_TEST_PAUSE_AFTER_BROADCAST): sleep this long
    # right after a broadcast, widening the window between sending and recording.
    pause_after_broadcast: float = 0.0


@dataclass(frozen=True)
class RoundResult:
    """What one round did: ``unchanged``, ``anchored`` or ``recovered`` (found on chain).

    ``recovered`` lists the seqs recorded from the chain in this round, ``unexplained`` the
    on-chain anchors the store could not explain (evidence, see UnexplainedAnchor)."""

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
    recovered: tuple[int, ...] = ()
    unexplained: tuple[UnexplainedAnchor, ...] = field(default=(), repr=False)

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
            "recovered": list(self.recovered),
            "unexplained": [u.to_json() for u in self.unexplained],
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
        metrics: RoundObserver | None = None,
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
        self._must_recover = True  # on the first round after a start
        self._await_pending = False  # wait for the key's pending transactions, whatever we sent
        self._leading = False  # holds the store's lead (take_lead); checked before each send
        self._next_seq = 1  # past every seq recovered or reported on chain
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
                if exc.exit_code != 3 or isinstance(exc, NotLeader):
                    raise
                if attempt >= self.options.retries:
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

    def take_lead(self) -> bool:
        """Hold the store's lead ``anchor``, or learn that another service does (True if
        this one is the active service now). Becoming the leader, the service forgets its
        nonce and runs the full recovery (step 2, pending transactions awaited) before it
        sends anything: the previous leader may have died between sending and recording."""
        held = self.store.try_lead(LEAD)
        if held and not self._leading:
            self._nonce = None
            self._must_recover = True
            self._await_pending = True
        self._leading = held
        return held

    def _check_lead(self, what: str) -> None:
        """Right before a send: a leader whose lock was lost (its database session ended)
        must not send; NotLeader. Nothing to check for a service run without the lead."""
        if not self._leading:
            return
        try:
            held = self.store.try_lead(LEAD)
        except StoreError as exc:
            held, why = False, f": {exc}"
        else:
            why = ""
        if not held:
            self._leading = False
            raise NotLeader(f"{what}: lost the store's anchor lead{why}; nothing sent")

    def run_forever(self, interval: float, stop: threading.Event | None = None) -> None:
        """Rounds every ``interval`` s until ``stop`` is set (checked between rounds), while
        this service holds the store's lead; a standby looks again every ``min(interval,
        2 s)``. A round that fails with an exit-3 error after its retries is logged and the
        next interval tries again (catching up); exit-2 errors end the service. The lead is
        released when it ends."""
        stop = stop or threading.Event()
        log.info(
            "anchoring %s on chain %d every %g s as %s",
            self.deployment.address,
            self.deployment.chain_id,
            interval,
            self.key.address,
        )
        announced: bool | None = None
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    leading = self.take_lead()
                except StoreError as exc:  # the database unreachable: nobody may send
                    self._leading = leading = False
                    log.error("cannot look at the store's anchor lead: %s", exc)
                if leading != announced:
                    announced = leading
                    if leading:
                        log.info("active: took over anchoring")
                    else:
                        log.info("standby: another anchor service is active")
                    if self.metrics is not None:
                        self.metrics.leading(leading)
                if not leading:
                    stop.wait(min(interval, STANDBY_POLL))
                    continue
                try:
                    result = self.run_once()
                    if self.metrics is not None:
                        self.metrics.observe(result, time.time())
                    if result.action != "unchanged":
                        log.info("anchor round: %s", json.dumps(result.to_json()))
                except NotLeader as exc:
                    log.warning("%s", exc)
                    continue  # stands by from the next look on
                except AnchorError as exc:
                    if exc.exit_code != 3:
                        raise
                    if self.metrics is not None:
                        self.metrics.failed()
                    log.error("anchor round failed, next attempt in %.1f s: %s", interval, exc)
                stop.wait(max(0.0, interval - (time.monotonic() - started)))
        finally:
            if self._leading:
                self._leading = False
                self.store.release_lead(LEAD)

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
        recovered: list[RoundResult] = []
        unexplained: list[UnexplainedAnchor] = []
        skipped: list[int] = []
        while True:
            if self._must_recover:
                got, bad = self._recover(client, orphans if not recovered else ())
                if got and orphans:  # the first recovered anchor replaces them
                    orphans = []
                recovered += got
                unexplained += bad
                self._must_recover = False
            self._publish_outbox()
            result = self._attempt(client, orphans, skipped)
            if result is not None:
                break
            # The next seq is occupied: recover what is there (ours or not), then go on.
            self._must_recover = True
            if len(skipped) > _MAX_SKIP:
                raise AnchorError(f"more than {_MAX_SKIP} anchor numbers occupied")
        if recovered and result.action == "unchanged":
            last = recovered[-1]
            result = dataclasses.replace(last, orphaned=result.orphaned)
        return dataclasses.replace(
            result,
            recovered=tuple(r.seq for r in recovered if r.seq is not None),
            unexplained=tuple(unexplained),
            skipped=tuple(skipped),
        )

    def _attempt(
        self, client: ChainClient, orphans: Sequence[int], skipped: list[int]
    ) -> RoundResult | None:
        """Steps 4 to 7 of a round; None when the next seq is found occupied on chain."""
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
        seq = max(self.store.next_anchor_seq(), self._next_seq)
        if self._root_of(client, seq) != ZERO_ROOT:
            log.warning("anchor seq %d is occupied on chain: recovering it from its event", seq)
            skipped.append(seq)
            return None
        self._check_lead(f"anchor {seq}")
        # The intent is durable before anything can reach the chain: after a crash it is what
        # explains the anchor (the store has grown meanwhile, its current state would not).
        self.store.record_anchor_intent(seq, aggregate.root, aggregate.bodies)
        data = contract.encode_abi("anchor", args=[seq, aggregate.root, aggregate.size])
        try:
            receipt, broadcasts = self._send(client, data, what=f"anchor {seq}", seq=seq)
        except TransactionReverted as exc:
            if exc.tx_hash is None and exc.error_name == "AlreadyAnchored":
                # The gas estimate saw the seq taken since our rootOf: nothing was sent.
                skipped.append(seq)
                return None
            if exc.tx_hash is None and exc.error_name == "NotAnchorer":
                # Revoked since the start-up check: the contract refuses, nothing was sent.
                d = self.deployment
                raise NotAuthorised(
                    f"account {self.key.address} is no longer an anchorer of {d.address} on "
                    f"chain {d.chain_id} (revoked by the owner {d.owner}?): the contract "
                    f"refuses anchor {seq}; nothing was sent"
                ) from None
            # Mined but reverted: rootOf(seq) was written between our last check and the
            # inclusion. Recover it at the next attempt (it may be ours, sent earlier).
            if exc.tx_hash is None:
                raise
            self._nonce = None
            self._must_recover = True
            raise AnchorError(f"{exc}; rootOf({seq}) was written meanwhile: retrying", 3) from None
        result = self._record(
            "anchored", seq, aggregate, receipt, broadcasts, orphans, receipt.gas_used
        )
        self._next_seq = seq + 1
        return result

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

    def _root_of(self, client: ChainClient, seq: int) -> bytes:
        contract = client.contract(self.deployment.address, self.artifact.abi)
        return bytes(client.call(contract, "rootOf", seq, abi=self.artifact.abi))

    # --- recovery from the chain ---------------------------------------------------------

    def recover(self) -> tuple[list[RoundResult], list[UnexplainedAnchor]]:
        """Step 2 on its own: record the anchors on chain that the store lacks (see the
        module docstring); returns what was recorded and what could not be explained."""
        client = self.client()
        found = self._recover(client, ())
        self._must_recover = False
        self._publish_outbox()
        return found

    def _recover(
        self, client: ChainClient, orphans: Sequence[int]
    ) -> tuple[list[RoundResult], list[UnexplainedAnchor]]:
        if self._await_pending or (self._nonce is None and not self.broadcasts):
            self._wait_for_own_pending(client)
            self._await_pending = False
        recorded = self.store.anchors()
        confirmed = [a for a in recorded if a.status == "confirmed"]
        from_block = confirmed[-1].block_number if confirmed else self.deployment.block_number
        events = self._anchored_events(client, from_block)
        got: list[RoundResult] = []
        bad: list[UnexplainedAnchor] = []
        if confirmed and confirmed[-1].seq in events:
            last, on_chain = confirmed[-1], events[confirmed[-1].seq]
            if on_chain.root != last.root:
                bad.append(UnexplainedAnchor(on_chain, f"the store records root {last.root.hex()}"))
        seq = max(self.store.next_anchor_seq(), self._next_seq)
        while True:
            event = events.get(seq)
            if event is None:
                if self._root_of(client, seq) == ZERO_ROOT:
                    break
                # Written, but its event is not in our range (pruned logs, a node that lags):
                # report what rootOf shows and move past it.
                event = OnChainAnchor(seq, self._root_of(client, seq), 0, "unknown", 0, "", None)
            aggregate = self._explain(event) if event.tx_hash != "unknown" else None
            if aggregate is None:
                reason = "no intent row and no past state of the store has this root"
                if event.tx_hash == "unknown":
                    reason = "rootOf is set but no Anchored event was found for it"
                error = UnexplainedAnchor(event, reason)
                log.error("%s", error)
                bad.append(error)
            else:
                receipt = client.wait(
                    event.tx_hash,
                    what=f"anchor {seq}",
                    timeout=self.options.timeout,
                    confirmations=self.options.confirmations,
                    poll=self.options.poll,
                )
                got.append(
                    self._record(
                        "recovered", seq, aggregate, receipt, 0, orphans if not got else (), None
                    )
                )
                log.warning(
                    "anchor %d was on chain (tx %s, sent by %s) but not in the store: recorded",
                    seq,
                    event.tx_hash,
                    event.sender,
                )
            seq += 1
        self._next_seq = seq
        ahead = sorted(s for s in events if s > seq)
        if ahead:
            log.warning("anchors %s are on chain ahead of the next seq %d", ahead, seq)
        return got, bad

    def _wait_for_own_pending(self, client: ChainClient) -> None:
        """Wait until every transaction of our key is mined: one sent before a crash would
        make a new anchor at the same seq revert (or take the seq we are about to use)."""
        address = to_checksum_address(self.key.address)
        deadline = time.monotonic() + self.options.timeout
        while True:
            with client._rpc("eth_getTransactionCount"):
                mined = int(client.w3.eth.get_transaction_count(address, "latest"))
                pending = int(client.w3.eth.get_transaction_count(address, "pending"))
            if pending <= mined:
                return
            if time.monotonic() > deadline:
                raise ChainUnavailable(
                    f"{pending - mined} transaction(s) of {address} still pending after "
                    f"{self.options.timeout:g} s (nonces {mined} to {pending - 1}): nothing "
                    "is sent until they are mined or replaced"
                )
            log.info("waiting for %d pending transaction(s) of %s", pending - mined, address)
            self._sleep(self.options.poll)

    def _anchored_events(self, client: ChainClient, from_block: int) -> dict[int, OnChainAnchor]:
        """Every canonical ``Anchored`` event of the contract from ``from_block`` on, by seq,
        with the sender of each transaction (the evidence of an anchor nobody explains)."""
        with client._rpc("eth_blockNumber"):
            head = int(client.w3.eth.block_number)
        with client._rpc("eth_getLogs"):
            events = read_anchored(client.w3, self.deployment.address, from_block, head)
        found: dict[int, OnChainAnchor] = {}
        senders: dict[str, str | None] = {}
        for event in events:
            tx_hash = event.tx_hash
            if tx_hash not in senders:
                with client._rpc("eth_getTransactionByHash"):
                    try:
                        tx = client.w3.eth.get_transaction(HexStr(tx_hash))
                        senders[tx_hash] = str(tx["from"])
                    except TransactionNotFound:
                        senders[tx_hash] = None
            found[event.seq] = OnChainAnchor(
                seq=event.seq,
                root=event.root,
                logs=event.logs,
                tx_hash=tx_hash,
                block_number=event.block_number,
                block_hash=event.block_hash,
                sender=senders[tx_hash],
            )
        return found

    def _explain(self, event: OnChainAnchor) -> Aggregate | None:
        """The aggregate the store can show for an on-chain root: the intent written before
        sending, else the current state, else one of the store's past states (a replay of
        its blocks in commit order, for anchors sent before intents were recorded)."""
        bodies = self.store.anchor_intents(event.seq).get(event.root)
        if bodies is not None:
            aggregate = build_aggregate(bodies)
            if aggregate.root == event.root:
                return aggregate
            log.error("anchor intent %d: its bodies do not aggregate to its root", event.seq)
        current = self.current_bodies()
        if current:
            aggregate = build_aggregate(list(current.values()))
            if aggregate.root == event.root:
                return aggregate
        state: dict[str, bytes] = {}
        texts: dict[str, str] = {}
        for n, (origin, checkpoint) in enumerate(self.store.checkpoint_history()):
            if n >= _MAX_REPLAY:
                log.warning("anchor %d: replayed %d blocks without finding it", event.seq, n)
                break
            texts[origin] = checkpoint_body(checkpoint)
            state[origin] = leaf_hash(texts[origin].encode("utf-8"))
            if merkle_root([state[o] for o in sorted(state)]) == event.root:
                return build_aggregate(list(texts.values()))
        return None

    def _publish_outbox(self) -> None:
        """Publish the receipts of every recorded anchor not yet marked published."""
        if self.publisher is None:
            return
        for seq in self.store.unpublished_anchors():
            self.publisher.publish(self.store.anchor_receipts(seq))
            self.store.mark_anchor_published(seq)

    def _record(
        self,
        action: str,
        seq: int,
        aggregate: Aggregate,
        receipt: Receipt,
        broadcasts: int,
        orphans: Sequence[int],
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
        self._publish_outbox()
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
            (),
            receipts,
        )

    # --- sending -------------------------------------------------------------------------

    def _send(self, client: ChainClient, data: str, *, what: str, seq: int) -> tuple[Receipt, int]:
        """Send ``data`` (an anchor of ``seq``) to the contract at the tracked nonce,
        rebroadcasting with bumped fees until one of the broadcasts is mined; returns its
        receipt and the broadcast count. Before each rebroadcast ``rootOf(seq)`` is read: a
        seq written by another transaction meanwhile would make ours revert, so ours is
        cancelled instead (a 0-value transfer to ourselves at its nonce) and the round retried.
        """
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
                if o.pause_after_broadcast:
                    time.sleep(o.pause_after_broadcast)  # test-only: widen the crash window
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
            if self._root_of(client, seq) != ZERO_ROOT and self._mined(client, hashes) is None:
                self._cancel(client, nonce, tip, max_fee, what)
                raise AnchorError(
                    f"{what}: rootOf({seq}) was written by another transaction while ours was "
                    f"pending; ours is cancelled at nonce {nonce}, retrying",
                    3,
                )
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

    def _cancel(self, client: ChainClient, nonce: int, tip: int, max_fee: int, what: str) -> None:
        """Replace our pending transaction at ``nonce`` by a 0-value transfer to ourselves, with
        fees bumped enough for nodes to accept the replacement; the nonce is re-read later."""
        o = self.options
        tip = tip * o.bump_percent // 100 + 1
        max_fee = max(max_fee * o.bump_percent // 100 + 1, tip)
        raw = self.key.sign(
            cast(
                TxParams,
                {
                    "from": self.key.address,
                    "to": self.key.address,
                    "data": "0x",
                    "type": 2,
                    "chainId": client.chain_id,
                    "nonce": nonce,
                    "gas": 21_000,
                    "maxFeePerGas": max_fee,
                    "maxPriorityFeePerGas": tip,
                    "value": 0,
                },
            )
        )
        self._broadcast(client, raw, f"{what} (cancel)", True)
        self.broadcasts.append(Broadcast("0x" + keccak(raw).hex(), nonce, tip, max_fee))
        self._nonce = None
        self._must_recover = True
        log.warning("%s: cancelled at nonce %d (the seq was taken meanwhile)", what, nonce)

    def _broadcast(self, client: ChainClient, raw: bytes, what: str, replacing: bool) -> bool:
        """Send a signed transaction; False if the node already has it."""
        with client._rpc("eth_sendRawTransaction"):
            try:
                client.w3.eth.send_raw_transaction(raw)
            except Web3RPCError as exc:
                message = str(exc.message or exc).splitlines()[0] if str(exc) else ""
                message = client._clean(message)
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

    def __init__(
        self,
        bootstrap: str,
        topic: str = "audit.anchors",
        timeout: float = 30.0,
        kafka_config: Mapping[str, str] | None = None,
    ) -> None:
        """``kafka_config``: librdkafka security properties (--kafka-config)."""
        from confluent_kafka import Producer

        self.topic = topic
        self.timeout = timeout
        self._producer = Producer(
            {
                **(kafka_config or {}),
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
            }
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
