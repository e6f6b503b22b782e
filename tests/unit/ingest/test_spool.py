"""The emitter's spool file and sequence counters: order, acknowledgement, crash recovery,
damage (a record that fails its checks costs that record only, and the file is kept aside)."""

from __future__ import annotations

import json
import logging
import shutil
import stat
import struct
import zlib
from pathlib import Path

import pytest

from auditseal.ingest.sequence import SequenceCounter
from auditseal.ingest.spool import MAGIC, Spool, SpoolDamaged, SpoolError

FORMAT1 = Path(__file__).parent / "spool_format1"


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
    assert again.damage is None


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


# --- damage --------------------------------------------------------------------------------


def spool_of(directory: Path, n: int) -> list[tuple[int, int]]:
    """A synced spool of ``n`` records ``value i``; returns each record's [start, end)."""
    spool = Spool(directory)
    ends = [spool.append(b"proxy://k", b"value %d" % i) for i in range(n)]
    spool.sync()
    spool.close()
    return list(zip([0, *ends[:-1]], ends, strict=True))


def flip(path: Path, byte: int, bit: int = 0) -> bytes:
    """Flip one bit of the file in place; returns the bytes as they were."""
    data = bytearray(path.read_bytes())
    before = bytes(data)
    data[byte] ^= 1 << bit
    path.write_bytes(bytes(data))
    return before


def values(spool: Spool) -> list[bytes]:
    return [v for _, _, v in spool.records()]


def damaged_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("events.spool.damaged-*"))


def test_a_flipped_bit_in_the_middle_record_costs_that_record_only(tmp_path, caplog):
    frames = spool_of(tmp_path, 9)
    start, end = frames[4]
    original = flip(tmp_path / "events.spool", (start + end) // 2, 3)
    damaged_bytes = (tmp_path / "events.spool").read_bytes()
    with caplog.at_level(logging.ERROR, logger="ingest.spool"):
        spool = Spool(tmp_path)
    assert values(spool) == [b"value %d" % i for i in range(9) if i != 4]
    assert len(spool) == 8
    # the damaged file is kept intact beside the spool, readable by its owner only
    (kept,) = damaged_files(tmp_path)
    assert kept.read_bytes() == damaged_bytes != original
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert isinstance(spool.damage, SpoolDamaged)
    r = spool.damage.recovery
    assert (r.damaged_records, r.recovered_records, r.quarantine) == (1, 8, kept)
    assert r.damaged_bytes == end - start and r.torn_bytes == 0
    message = str(spool.damage)
    assert str(tmp_path / "events.spool") in message and str(kept) in message
    assert "1 damaged record" in message and "8 record(s)" in message
    assert message in caplog.text
    # the fresh spool is whole: a restart finds nothing wrong and the same records
    spool.append(b"proxy://k", b"after")
    spool.close()
    again = Spool(tmp_path)
    assert again.damage is None and len(damaged_files(tmp_path)) == 1
    assert values(again) == [b"value %d" % i for i in range(9) if i != 4] + [b"after"]


@pytest.mark.parametrize(
    ("where", "byte"),
    [("magic", 0), ("length", 5), ("payload crc", 9), ("header crc", 13), ("payload", 20)],
)
def test_a_flipped_bit_in_the_first_record_costs_that_record_only(tmp_path, where, byte):
    spool_of(tmp_path, 5)
    flip(tmp_path / "events.spool", byte, 6)
    spool = Spool(tmp_path)
    assert values(spool) == [b"value %d" % i for i in range(1, 5)], where
    assert spool.damage is not None and spool.damage.recovery.damaged_records == 1
    assert len(damaged_files(tmp_path)) == 1


def test_every_bit_of_a_record_header_is_covered(tmp_path):
    """Any one flipped bit of a middle record's 16-byte header loses that record only."""
    for bit in range(16 * 8):
        d = tmp_path / str(bit)
        frames = spool_of(d, 3)
        flip(d / "events.spool", frames[1][0] + bit // 8, bit % 8)
        spool = Spool(d)
        assert values(spool) == [b"value 0", b"value 2"], bit
        assert spool.damage is not None and spool.recovery.torn_bytes == 0, bit
        spool.close()


def test_several_damaged_records_are_each_counted(tmp_path):
    frames = spool_of(tmp_path, 10)
    for i in (2, 5, 6):  # two of them adjacent
        flip(tmp_path / "events.spool", frames[i][1] - 2, 1)
    spool = Spool(tmp_path)
    assert values(spool) == [b"value %d" % i for i in range(10) if i not in (2, 5, 6)]
    assert spool.damage is not None
    assert spool.damage.recovery.damaged_records == 3
    assert spool.damage.recovery.recovered_records == 7


def test_torn_last_record_is_cut_without_quarantine(tmp_path, caplog):
    frames = spool_of(tmp_path, 6)
    start, end = frames[-1]
    path = tmp_path / "events.spool"
    path.write_bytes(path.read_bytes()[: (start + end) // 2])
    torn = (start + end) // 2 - start
    with caplog.at_level(logging.WARNING, logger="ingest.spool"):
        spool = Spool(tmp_path)
    assert values(spool) == [b"value %d" % i for i in range(5)]
    assert spool.damage is None and damaged_files(tmp_path) == []
    assert spool.torn_bytes == torn
    assert f"torn last record of {torn} bytes" in caplog.text
    assert path.stat().st_size == start


@pytest.mark.parametrize("keep", [1, 5, 15])
def test_a_header_cut_short_is_a_torn_tail(tmp_path, keep):
    frames = spool_of(tmp_path, 3)
    path = tmp_path / "events.spool"
    path.write_bytes(path.read_bytes()[: frames[-1][0] + keep])
    spool = Spool(tmp_path)
    assert values(spool) == [b"value 0", b"value 1"]
    assert spool.damage is None and spool.torn_bytes == keep


def test_a_flipped_bit_in_the_complete_last_record_is_damage_not_a_tear(tmp_path):
    frames = spool_of(tmp_path, 4)
    flip(tmp_path / "events.spool", frames[-1][1] - 1)
    spool = Spool(tmp_path)
    assert values(spool) == [b"value 0", b"value 1", b"value 2"]
    assert spool.damage is not None and spool.torn_bytes == 0
    assert len(damaged_files(tmp_path)) == 1


def test_damage_then_a_torn_tail(tmp_path):
    frames = spool_of(tmp_path, 5)
    path = tmp_path / "events.spool"
    flip(path, frames[3][0] + 20)
    path.write_bytes(path.read_bytes()[: frames[4][0] + 10])
    spool = Spool(tmp_path)
    assert values(spool) == [b"value 0", b"value 1", b"value 2"]
    assert spool.damage is not None and spool.damage.recovery.damaged_records == 1
    assert spool.torn_bytes == 10


def test_damage_before_the_cursor_is_not_read(tmp_path):
    spool = Spool(tmp_path)
    ends = [spool.append(b"k", b"value %d" % i) for i in range(4)]
    spool.ack(ends[1], 2)
    spool.close()
    flip(tmp_path / "events.spool", 20)  # inside an acknowledged record
    again = Spool(tmp_path)
    assert values(again) == [b"value 2", b"value 3"] and again.damage is None


def test_a_cursor_off_a_record_boundary_loses_nothing_after_it(tmp_path):
    frames = spool_of(tmp_path, 4)
    (tmp_path / "events.cursor").write_text(f"{frames[1][0] + 3}\n")
    spool = Spool(tmp_path)
    assert values(spool) == [b"value 2", b"value 3"]
    assert spool.damage is not None


def test_new_spool_files_are_private(tmp_path):
    spool = Spool(tmp_path)
    spool.append(b"k", b"v")
    assert stat.S_IMODE(spool.path.stat().st_mode) == 0o600


# --- format 1 (before the record magic) ------------------------------------------------------


def test_a_format1_spool_still_reads_and_is_rewritten(tmp_path):
    shutil.copytree(FORMAT1, tmp_path / "state")
    spool = Spool(tmp_path / "state")
    got = [json.loads(v) for _, _, v in spool.records()]
    assert [e["id"] for e in got] == ["format1-3", "format1-4", "format1-5"]
    assert {k for _, k, _ in spool.records()} == {b"proxy://format1"}
    assert spool.damage is None and spool.recovery.format == 1
    assert spool.path.read_bytes()[:4] == MAGIC and spool.acked_offset == 0
    spool.append(b"proxy://format1", b"{}")
    spool.close()
    again = Spool(tmp_path / "state")
    assert len(again) == 4 and again.recovery.format == 2


def v1_frame(key: bytes, value: bytes) -> bytes:
    payload = struct.pack(">H", len(key)) + key + value
    return struct.pack(">II", len(payload), zlib.crc32(payload)) + payload


def test_a_damaged_format1_spool_keeps_what_checks(tmp_path):
    frames = [v1_frame(b"k", b'{"n": %d}' % i) for i in range(5)]
    data = bytearray(b"".join(frames))
    data[len(frames[0]) + len(frames[1]) + 12] ^= 0x10  # inside record 2's value
    (tmp_path / "events.spool").write_bytes(bytes(data))
    spool = Spool(tmp_path)
    assert values(spool) == [b'{"n": %d}' % i for i in (0, 1, 3, 4)]
    assert spool.damage is not None and spool.damage.recovery.damaged_records == 1
    assert len(damaged_files(tmp_path)) == 1


def test_a_torn_format1_tail_is_cut(tmp_path):
    data = v1_frame(b"k", b"one") + v1_frame(b"k", b"two")
    (tmp_path / "events.spool").write_bytes(data[:-2])
    spool = Spool(tmp_path)
    assert values(spool) == [b"one"] and spool.damage is None and spool.torn_bytes > 0
