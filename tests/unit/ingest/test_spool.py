"""The emitter's spool file and sequence counters: order, acknowledgement, crash recovery."""

from __future__ import annotations

import json

import pytest

from ingest.sequence import SequenceCounter
from ingest.spool import Spool, SpoolError


def test_records_come_back_in_order_and_ack_advances(tmp_path):
    spool = Spool(tmp_path)
    ends = [spool.append(b"src-%d" % (i % 2), b"value %d" % i) for i in range(5)]
    assert len(spool) == 5
    got = list(spool.records())
    assert [(k, v) for _, k, v in got] == [(b"src-%d" % (i % 2), b"value %d" % i) for i in range(5)]
    assert [e for e, _, _ in got] == ends
    spool.ack(ends[1], 2)
    assert len(spool) == 3
    assert [v for _, _, v in spool.records()] == [b"value 2", b"value 3", b"value 4"]
    spool.close()
    again = Spool(tmp_path)  # the cursor survives a restart
    assert [v for _, _, v in again.records()] == [b"value 2", b"value 3", b"value 4"]


def test_fully_acked_spool_resets_to_empty(tmp_path):
    spool = Spool(tmp_path)
    end = [spool.append(b"k", b"v") for _ in range(3)][-1]
    spool.ack(end, 3)
    assert spool.path.stat().st_size == 0 and len(spool) == 0
    spool.append(b"k", b"after")
    assert [v for _, _, v in spool.records()] == [b"after"]


def test_torn_tail_is_cut_and_counted(tmp_path):
    spool = Spool(tmp_path)
    spool.append(b"k", b"complete")
    spool.append(b"k", b"torn record")
    spool.close()
    data = spool.path.read_bytes()
    spool.path.write_bytes(data[:-3])  # a crash in the middle of the second write
    again = Spool(tmp_path)
    assert [v for _, _, v in again.records()] == [b"complete"]
    assert again.torn_bytes > 0 and len(again) == 1


def test_prepend_puts_older_events_first(tmp_path):
    spool = Spool(tmp_path)
    first = spool.append(b"k", b"spooled 1")
    spool.append(b"k", b"spooled 2")
    spool.ack(first, 1)
    spool.prepend([(b"k", b"memory 1"), (b"k", b"memory 2")])
    assert [v for _, _, v in spool.records()] == [b"memory 1", b"memory 2", b"spooled 2"]
    spool.close()
    assert [v for _, _, v in Spool(tmp_path).records()] == [b"memory 1", b"memory 2", b"spooled 2"]


def test_bad_cursor_is_a_clear_error(tmp_path):
    Spool(tmp_path).close()
    (tmp_path / "events.cursor").write_text("garbage")
    with pytest.raises(SpoolError, match="not a byte offset"):
        Spool(tmp_path)
    (tmp_path / "events.cursor").write_text("999")
    with pytest.raises(SpoolError, match="beyond spool end"):
        Spool(tmp_path)


def test_sequences_continue_after_a_clean_close(tmp_path):
    path = tmp_path / "seq.json"
    seq = SequenceCounter(path, reserve=10)
    assert [seq.next("a") for _ in range(3)] == [1, 2, 3]
    assert seq.next("b") == 1
    seq.close()
    again = SequenceCounter(path, reserve=10)
    assert again.next("a") == 4 and again.next("b") == 2


def test_sequences_never_repeat_after_a_crash(tmp_path):
    path = tmp_path / "seq.json"
    seq = SequenceCounter(path, reserve=10)
    used = [seq.next("a") for _ in range(13)]
    seq.next("b")
    # no close(): the process died; the file holds the reservations
    assert json.loads(path.read_text()) == {"a": 21, "b": 11}
    again = SequenceCounter(path, reserve=10)
    assert again.next("a") > max(used) and again.next("b") > 1
