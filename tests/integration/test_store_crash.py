"""Kill -9 a writer mid-append, many times: the store always opens, verifies, and resumes."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.fsck import check_log

ORIGIN = "auditseal.local/crash/0"
KILLS = 30

# Appends blocks of random sizes forever, with values large enough that a commit takes a while.
WRITER = textwrap.dedent(
    """
    import random, sys, time
    from auditseal.store.model import Record
    from auditseal.sealer.log_writer import LogWriter
    from auditseal.sealer.signer import Signer
    from auditseal.store.blockstore import BlockStore

    store = BlockStore.open(sys.argv[1], create=True)
    writer = LogWriter(store, Signer.from_file(sys.argv[2]), lambda: time.time_ns() // 10**6)
    rng = random.Random()
    print("ready", flush=True)
    while True:
        pos = writer.tip(sys.argv[3]).next_position
        n = rng.randint(1, 200)
        writer.append(sys.argv[3], [Record(pos + i, 0, b"k", bytes(rng.randint(0, 500)))
                                    for i in range(n)])
    """
)


@pytest.mark.slow
def test_writer_killed_mid_append_never_leaves_a_partial_block(tmp_path):
    signer = Signer.generate("crash-test")
    key = tmp_path / "sealer.key"
    signer.write_private_file(key)
    db = tmp_path / "store.db"
    rng = random.Random(20261128)
    sizes = []
    for _ in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), str(key), ORIGIN],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with BlockStore.open(db) as store:
            result = check_log(store, ORIGIN, [signer.verifier])
            sizes.append(result.size)
            # Leaf indices and positions stay contiguous: no entry outside a block.
            n = store.size(ORIGIN)
            assert [e.position for e in store.entries(ORIGIN, 0, n)] == list(range(n))
        raw = sqlite3.connect(db)
        assert raw.execute("SELECT count(*) FROM entries").fetchone()[0] == n
        raw.close()
    assert sizes == sorted(sizes)
    assert sizes[-1] > 0, "the writer never committed a block: the test proved nothing"
    assert len(set(sizes)) > KILLS // 3, "kills did not land between many different appends"
