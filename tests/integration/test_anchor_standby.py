"""Two `auditseal anchor run` on one store (PostgreSQL, and SQLite on one host): exactly one
anchors; SIGKILLed between a broadcast and its record, the active one's standby takes over
within the documented bound, records the dead one's anchor from the chain instead of sending
it again, and goes on. Real processes, a real Anvil, a real PostgreSQL.

The store location reaches the services through $AUDITSEAL_STORE only, so a URL's password
never appears on a command line.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from auditseal.anchor.chain_client import ChainClient
from auditseal.anchor.deploy import Deployment, write_record
from auditseal.anchor.service import STANDBY_POLL
from auditseal.infra.processes import free_port
from auditseal.verifier.anchor import checkpoint_body, verify_anchor_inclusion
from auditseal.verifier.chain import ANCHORED_TOPIC0
from tests.integration.test_anchor_recovery import statuses_of
from tests.integration.test_anchor_service import DEV_KEY, ROOT, Logs, artifact, deployed

pytestmark = pytest.mark.chain

__all__ = ["artifact"]  # the fixture, re-used

INTERVAL = 0.3  # s between rounds; a standby looks at the lead every min(INTERVAL, 2 s)
# Takeover after the active one's death: its lock goes with its process at once, the standby
# sees it at its next look (<= INTERVAL here), then recovers from the chain. Allowance for a
# loaded 2-core machine on top.
TAKEOVER_BOUND = min(INTERVAL, STANDBY_POLL) + 5.0


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def logs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Logs]:
    location: Path | str = (
        tmp_path / "store.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    )
    made = Logs(location)  # type: ignore[arg-type]
    made.location = location  # type: ignore[attr-defined]
    yield made
    made.store.close()


class Service:
    """One `auditseal anchor run` process, its stderr in a file."""

    def __init__(self, name: str, tmp_path: Path, env: dict[str, str], *extra: str) -> None:
        self.err = tmp_path / f"{name}.log"
        self.metrics_port = free_port()
        argv = [
            *(
                sys.executable,
                "-X",
                "faulthandler",
                "-c",
                "from auditseal.cli.main import main; main()",
            ),
            *("anchor", "run", "--deployment", str(tmp_path / "deployment.json")),
            *("--interval", str(INTERVAL), "--backoff", "0.2"),
            *("--metrics-listen", f"127.0.0.1:{self.metrics_port}", *extra),
        ]
        with self.err.open("w") as sink:
            self.proc = subprocess.Popen(
                argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=sink, env=env
            )

    def text(self) -> str:
        return self.err.read_text()

    def wait_for(self, what: Callable[[str], bool], timeout: float = 30) -> float:
        """Seconds until ``what(stderr)`` holds; fails if the process exits first."""
        started = time.monotonic()
        while not what(self.text()):
            assert self.proc.poll() is None, self.text()
            if time.monotonic() - started > timeout:  # its stacks into its log (faulthandler)
                self.proc.send_signal(signal.SIGABRT)
                time.sleep(1)
            assert time.monotonic() - started < timeout, self.text()
            time.sleep(0.02)
        return time.monotonic() - started

    def active_gauge(self) -> float:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            text = r.read().decode()
        (value,) = re.findall(r"^auditseal_anchor_active (\S+)$", text, re.M)
        return float(value)

    def sent(self) -> list[str]:
        return re.findall(r": sent (0x[0-9a-f]{64})", self.text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def anchored_events(rpc: str, record: Deployment) -> list[tuple[int, bytes, str]]:
    """Every Anchored event of the contract as (seq, root, tx hash), duplicates kept."""
    client = ChainClient.connect(rpc)
    return [
        (
            int.from_bytes(bytes(e["topics"][1]), "big"),
            bytes(e["data"])[:32],
            "0x" + bytes(e["transactionHash"]).hex(),
        )
        for e in client.w3.eth.get_logs(
            {
                "address": record.address,  # type: ignore[typeddict-item]
                "fromBlock": record.block_number,
                "toBlock": "latest",
                "topics": [ANCHORED_TOPIC0],  # type: ignore[list-item]
            }
        )
    ]


def current_state(logs: Logs) -> dict[str, str]:
    return {o: checkpoint_body(logs.store.latest_checkpoint(o)) for o in logs.store.logs()}


def anchored_state(logs: Logs) -> dict[str, str]:
    last = logs.store.last_anchor()
    if last is None:
        return {}
    return {r.origin: r.checkpoint for r in logs.store.anchor_receipts(last.seq)}


def test_standby_takes_over_when_the_active_one_dies_mid_round(logs, anvil_rpc, artifact, tmp_path):
    record = deployed(anvil_rpc, artifact)
    write_record(record, tmp_path / "deployment.json")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AUDITSEAL_", "PG"))}
    env = {
        **base,
        "PYTHONPATH": str(ROOT),
        "AUDITSEAL_CHAIN_KEY": DEV_KEY,  # one anchorer key for both: see ANCHORING.md, Standby
        "AUDITSEAL_STORE": str(logs.location),
        "AUDITSEAL_RPC": anvil_rpc,
    }
    logs.append(0)
    logs.append(1)
    # The active one sleeps 1.5 s after each broadcast, so the kill lands between its
    # transaction (mined at once by Anvil) and the store's record of it.
    first = Service("first", tmp_path, {**env, "AUDITSEAL_TEST_PAUSE_AFTER_BROADCAST": "1.5"})
    second: Service | None = None
    try:
        first.wait_for(lambda t: "active: took over anchoring" in t)
        second = Service("second", tmp_path, env)
        second.wait_for(lambda t: "standby: another anchor service is active" in t)
        assert first.active_gauge() == 1.0 and second.active_gauge() == 0.0

        # A third one with --once finds the lead taken: exit 3, nothing done.
        once = subprocess.run(
            [
                *(sys.executable, "-c", "from auditseal.cli.main import main; main()"),
                *("anchor", "run", "--deployment", str(tmp_path / "deployment.json"), "--once"),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert once.returncode == 3, once.stderr
        assert "another anchor service is active" in once.stderr
        assert "Traceback" not in once.stderr
        if isinstance(logs.location, str):  # the message names the store without its password
            password = conninfo_to_dict(logs.location).get("password")
            assert password and str(password) not in once.stderr

        # The log grows; the first anchors, the second only watches.
        first.wait_for(lambda t: len(re.findall(r"anchor round: ", t)) >= 1)
        logs.append(0, 2)
        logs.append(2)
        first.wait_for(lambda t: len(first.sent()) >= 2)
        first.proc.send_signal(signal.SIGKILL)  # asleep right after its second broadcast
        first.proc.wait(10)
        killed_at = time.monotonic()
        dead_broadcast = first.sent()[-1]
        assert second.sent() == [] and "active: took over" not in second.text()
        seqs = [seq for seq, _, tx in anchored_events(anvil_rpc, record) if tx == dead_broadcast]
        assert len(seqs) == 1  # the dead one's anchor is on chain ...
        (dead_seq,) = seqs
        assert dead_seq not in [a.seq for a in logs.store.anchors()]  # ... but not recorded

        second.wait_for(lambda t: "active: took over anchoring" in t)
        takeover = time.monotonic() - killed_at
        assert takeover <= TAKEOVER_BOUND, takeover
        second.wait_for(lambda t: f"anchor {dead_seq} was on chain" in t)
        assert second.active_gauge() == 1.0
        recorded = logs.store.anchor(dead_seq)
        assert recorded.tx_hash == dead_broadcast and recorded.status == "confirmed"

        # The second goes on anchoring as the log grows.
        for i in (1, 3, 0):
            logs.append(i)
            time.sleep(INTERVAL)
        deadline = time.monotonic() + 30
        while anchored_state(logs) != current_state(logs):
            assert time.monotonic() < deadline, second.text()
            time.sleep(0.1)
        assert second.sent(), second.text()
        second.proc.send_signal(signal.SIGTERM)  # stops after its round, releasing the lead
        assert second.proc.wait(30) == 0, second.text()
    finally:
        first.stop()
        if second is not None:
            second.stop()

    # No seq twice, no root twice, and every anchor on chain is in the store once, confirmed,
    # with receipts that verify against it.
    events = anchored_events(anvil_rpc, record)
    by_seq = Counter(seq for seq, _, _ in events)
    assert max(by_seq.values()) == 1, by_seq
    assert sorted(by_seq) == list(range(1, len(events) + 1))
    assert len({root for _, root, _ in events}) == len(events)
    stored = logs.store.anchors()
    assert [(a.seq, a.root, a.tx_hash, a.status) for a in stored] == [
        (seq, root, tx, "confirmed") for seq, root, tx in sorted(events)
    ]
    for a in stored:
        for r in logs.store.anchor_receipts(a.seq):
            verify_anchor_inclusion(r.checkpoint, r.index, r.size, list(r.proof), a.root)
    # Every transaction on chain came from the one active at the time; none reverted.
    assert {tx for _, _, tx in events} <= set(first.sent()) | set(second.sent())
    assert set(statuses_of(anvil_rpc, record).values()) == {1}
    print(
        f"standby on {'PostgreSQL' if isinstance(logs.location, str) else 'SQLite'}: "
        f"took over {takeover:.2f} s after the kill, {len(events)} anchors, "
        f"anchor {dead_seq} of the dead one recorded from the chain"
    )


def test_a_leader_that_lost_its_lead_sends_nothing(logs, anvil_rpc, artifact):
    """The lead's lock is lost under a leader (on PostgreSQL its session is terminated, as
    after a network cut; on SQLite its file is deleted) and a standby takes it: the old
    leader's next round stops before its intent, sends nothing and says so (NotLeader)."""
    from auditseal.anchor.service import NotLeader
    from auditseal.store.blockstore import BlockStore
    from tests.integration.test_anchor_service import nonce, service

    record = deployed(anvil_rpc, artifact)
    logs.append(0)
    own = BlockStore.open(logs.location)
    other = BlockStore.open(logs.location)
    try:
        svc = service(logs, anvil_rpc, record, artifact)
        svc.store = own
        assert svc.take_lead() and svc.run_once().seq == 1
        if isinstance(logs.location, str):
            import psycopg

            with psycopg.connect(logs.location, autocommit=True) as admin:
                (pid,) = admin.execute(
                    "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                    " WHERE l.locktype = 'advisory' AND l.granted"
                    " AND d.datname = current_database()"
                ).fetchone()
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        else:  # someone deletes the lock file: the next process locks a new one
            Path(f"{logs.location}.lead-anchor").unlink()
        deadline = time.monotonic() + 10
        while not other.try_lead("anchor"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        logs.append(0)
        before = nonce(anvil_rpc)
        with pytest.raises(NotLeader, match="lost the store's anchor lead; nothing sent"):
            svc.run_once()
        assert nonce(anvil_rpc) == before and logs.store.anchor_intents(2) == {}
        assert not svc.take_lead()  # a standby now
    finally:
        own.close()
        other.close()
