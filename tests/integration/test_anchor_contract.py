"""AuditAnchor on the session's real Anvil: access control, write-once roots, events, gas.

Every test deploys its own contract from the committed artifact (through anchor.deploy), so
tests share no contract state. Transactions are signed locally with Anvil's well-known dev keys
and sent as raw EIP-1559 transactions, exactly as the deploy command and the anchor service do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from web3.contract import Contract

from auditseal.anchor.artifact import Artifact, load_artifact
from auditseal.anchor.chain_client import ChainClient, ChainKey, Receipt
from auditseal.anchor.deploy import deploy
from auditseal.anchor.errors import TransactionReverted

pytestmark = pytest.mark.chain

# Anvil's default dev accounts 0-2 (public test keys of the "test test ... junk" mnemonic).
OWNER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ALICE_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
BOB_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"

GAS_BUDGET = 50_000  # total gas of one anchor transaction, the 21,000 base included


def root(n: int) -> bytes:
    """A 32-byte root with no zero byte (so every root costs the same calldata gas)."""
    assert 1 <= n <= 255
    return bytes([n]) * 32


@dataclass
class Anchor:
    """A freshly deployed AuditAnchor and helpers to drive it."""

    client: ChainClient
    artifact: Artifact
    contract: Contract

    @property
    def address(self) -> str:
        return str(self.contract.address)

    def send(self, key: ChainKey, function: str, *args: Any, gas: int | None = None) -> Receipt:
        data = self.contract.encode_abi(function, args=list(args))
        return self.client.transact(
            key,
            {"to": self.contract.address, "data": data},
            what=function,
            abi=self.artifact.abi,
            gas=gas,
            timeout=30,
            poll=0.05,
        )

    def view(self, function: str, *args: Any) -> Any:
        return self.client.call(self.contract, function, *args, abi=self.artifact.abi)

    def events(self, name: str, receipt: Receipt) -> list[dict[str, Any]]:
        event = getattr(self.contract.events, name)()
        return [dict(e["args"]) for e in event.process_receipt(receipt.raw)]


@pytest.fixture(scope="module")
def client(anvil_rpc: str) -> ChainClient:
    return ChainClient.connect(anvil_rpc, expected_chain_id=31337)


@pytest.fixture
def owner() -> ChainKey:
    return ChainKey.from_hex(OWNER_KEY, "owner")


@pytest.fixture
def alice() -> ChainKey:
    return ChainKey.from_hex(ALICE_KEY, "alice")


@pytest.fixture
def bob() -> ChainKey:
    return ChainKey.from_hex(BOB_KEY, "bob")


@pytest.fixture
def fresh(client: ChainClient, owner: ChainKey) -> Callable[[], Anchor]:
    """Factory: deploy a new AuditAnchor owned by (and anchorable by) ``owner``."""
    artifact = load_artifact()

    def make() -> Anchor:
        record = deploy(client, owner, artifact, timeout=30)
        return Anchor(client, artifact, client.contract(record.address, artifact.abi))

    return make


@pytest.fixture
def anchor(fresh: Callable[[], Anchor]) -> Anchor:
    return fresh()


def reverts(name: str, **args: Any) -> Callable[[TransactionReverted], bool]:
    def check(exc: TransactionReverted) -> bool:
        return exc.error_name == name and exc.error_args == args

    return check


# --- access control --------------------------------------------------------------------------


def test_the_deployer_is_owner_and_anchorer_and_nobody_else_is(anchor, owner, alice):
    assert anchor.view("owner") == owner.address
    assert anchor.view("isAnchorer", owner.address) is True
    assert anchor.view("isAnchorer", alice.address) is False


def test_a_non_anchorer_cannot_anchor(anchor, alice):
    # Refused in gas estimation: nothing is sent.
    with pytest.raises(TransactionReverted) as caught:
        anchor.send(alice, "anchor", 1, root(1), 1)
    assert reverts("NotAnchorer")(caught.value) and caught.value.tx_hash is None
    # Sent anyway with a fixed gas limit: mined, reverted, nothing stored.
    with pytest.raises(TransactionReverted) as mined:
        anchor.send(alice, "anchor", 1, root(1), 1, gas=100_000)
    assert mined.value.tx_hash is not None and "reverted in block" in str(mined.value)
    assert anchor.view("rootOf", 1) == bytes(32)


def test_the_owner_authorises_and_revokes_anchorers(anchor, owner, alice):
    receipt = anchor.send(owner, "authorise", alice.address)
    assert anchor.events("AnchorerAuthorised", receipt) == [{"account": alice.address}]
    assert anchor.view("isAnchorer", alice.address) is True
    anchor.send(alice, "anchor", 7, root(7), 3)

    receipt = anchor.send(owner, "revoke", alice.address)
    assert anchor.events("AnchorerRevoked", receipt) == [{"account": alice.address}]
    assert anchor.view("isAnchorer", alice.address) is False
    with pytest.raises(TransactionReverted) as caught:
        anchor.send(alice, "anchor", 8, root(8), 3)
    assert reverts("NotAnchorer")(caught.value)
    assert anchor.view("rootOf", 7) == root(7)  # a revoked anchorer's past anchors stay


def test_only_the_owner_authorises_or_revokes(anchor, owner, alice, bob):
    anchor.send(owner, "authorise", alice.address)
    for function, account in (("authorise", bob.address), ("revoke", owner.address)):
        with pytest.raises(TransactionReverted) as caught:
            anchor.send(alice, function, account)  # an anchorer is not an owner
        assert reverts("NotOwner")(caught.value)
    assert anchor.view("isAnchorer", bob.address) is False
    assert anchor.view("isAnchorer", owner.address) is True


# --- write-once roots ------------------------------------------------------------------------


def test_a_root_is_never_overwritten(anchor, owner):
    anchor.send(owner, "anchor", 5, root(5), 2)
    for other in (root(6), root(5)):  # neither another root nor the same one again
        with pytest.raises(TransactionReverted) as caught:
            anchor.send(owner, "anchor", 5, other, 2)
        assert reverts("AlreadyAnchored", seq=5)(caught.value)
        assert "AlreadyAnchored(seq=5)" in str(caught.value)
    assert anchor.view("rootOf", 5) == root(5)


def test_a_zero_root_is_refused(anchor, owner):
    with pytest.raises(TransactionReverted) as caught:
        anchor.send(owner, "anchor", 1, bytes(32), 1)
    assert reverts("ZeroRoot")(caught.value)
    assert anchor.view("rootOf", 1) == bytes(32)
    anchor.send(owner, "anchor", 1, root(1), 1)  # the seq is still free


def test_roots_read_back_by_seq_and_unanchored_seqs_read_zero(anchor, owner):
    top = 2**64 - 1
    for seq, n in ((0, 10), (1, 11), (top, 12)):  # the caller picks seq: any uint64
        anchor.send(owner, "anchor", seq, root(n), 1)
    assert anchor.view("rootOf", 0) == root(10)
    assert anchor.view("rootOf", 1) == root(11)
    assert anchor.view("rootOf", top) == root(12)
    assert anchor.view("rootOf", 2) == bytes(32)  # gaps are allowed; contiguity is the service's


# --- events ----------------------------------------------------------------------------------


def test_the_anchored_event_carries_seq_root_and_log_count(anchor, owner, client):
    receipt = anchor.send(owner, "anchor", 42, root(42), 300)
    assert anchor.events("Anchored", receipt) == [{"seq": 42, "root": root(42), "logs": 300}]
    (log,) = receipt.raw["logs"]
    assert log["address"] == anchor.address
    # seq is the one indexed argument: topic 1, so eth_getLogs can find one anchor by seq.
    assert len(log["topics"]) == 2 and int.from_bytes(bytes(log["topics"][1]), "big") == 42
    found = anchor.contract.events.Anchored().get_logs(
        from_block=receipt.block_number, argument_filters={"seq": 42}
    )
    assert [e["transactionHash"].to_0x_hex() for e in found] == [receipt.tx_hash]


# --- gas -------------------------------------------------------------------------------------


def test_anchor_gas_is_within_budget_and_independent_of_the_log_count(fresh, owner):
    """The product owner's budget: <= 50,000 gas per anchor transaction, whatever the logs."""
    anchor = fresh()
    gas = {
        (seq, logs): anchor.send(owner, "anchor", seq, root(seq), logs).gas_used
        for seq, logs in ((1, 1), (2, 16), (3, 256), (4, 1), (5, 16), (6, 256))
    }
    print(f"\nanchor gas (seq, logs) -> gas: {gas}")
    # The first anchor of a contract costs what every later one costs: one new slot each.
    assert len(set(gas.values())) == 1, gas
    assert gas[(1, 1)] <= GAS_BUDGET

    # Worst case for calldata: every byte of seq, root and logs non-zero (16 gas instead of 4).
    worst = anchor.send(owner, "anchor", 2**64 - 1, b"\xff" * 32, 2**32 - 1).gas_used
    print(f"anchor gas, all-non-zero calldata: {worst}")
    assert gas[(1, 1)] < worst <= GAS_BUDGET
    assert worst - gas[(1, 1)] == 12 * (7 + 3)  # 7 more non-zero bytes in seq, 3 in logs
