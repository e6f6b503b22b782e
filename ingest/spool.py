"""An append-only spool file: where an emitter keeps events while the broker is out of reach.

Record framing (format 2, docs/INGEST.md has the byte layout)::

    magic "\\xff\\xfeSP" ‖ u32 length ‖ u32 crc32(payload) ‖ u32 crc32(those 12 bytes) ‖ payload
    payload = u16 key length ‖ key ‖ value

All integers are big-endian. The magic cannot occur in an event (orjson writes UTF-8, where 0xFF
and 0xFE never appear) and the header carries its own checksum, so a reader that meets a damaged
record finds the next good one by searching for the magic and checking the header: one flipped
bit costs one record, never the rest of the file.

A separate cursor file holds the byte offset up to which records were acknowledged by Kafka; it
is replaced atomically (write, fsync, rename), so a crash at any moment either keeps the old
cursor (records are sent again: at-least-once, with the same event id and sequence, which the
sealer and monitor see as a replay) or the new one.

On open, every record after the cursor is checked:

* A **torn tail**, the last record cut short by a crash mid-append (its header, where complete,
  checks and claims more bytes than the file has), was never synced for the caller; it is cut
  off, counted in ``recovery.torn_bytes`` and logged as a warning with its byte count.
* Any other bad bytes are **damage**. The damaged file is kept intact under a new name beside it
  (``events.spool.damaged-<UTC time>``, mode 0600, never deleted by auditseal), every record that
  still checks, before and after the damage, is written to a fresh spool, and ``damage`` holds a
  :class:`SpoolDamaged` error naming both files and the counts, which is also logged.
* A spool of format 1 (``u32 length ‖ u32 crc32(payload) ‖ payload``, before the magic) is read
  and rewritten in format 2 the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import mmap
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from auditseal.ingest.errors import IngestError

__all__ = [
    "MAGIC",
    "Spool",
    "SpoolDamaged",
    "SpoolError",
    "SpoolRecovery",
    "encode_frame",
    "private_dir",
    "write_private",
]

log = logging.getLogger(__name__)

MAGIC = b"\xff\xfeSP"
_HEADER = struct.Struct(">4sIII")  # magic, payload length, payload crc, header crc
_HEAD_CHECKED = 12  # the header bytes its own crc covers
_V1_HEADER = struct.Struct(">II")  # format 1: payload length, payload crc
_KEY_LEN = struct.Struct(">H")


class SpoolError(IngestError):
    """The spool file is unusable (corrupt while running, unwritable)."""

    exit_code = 3


class SpoolDamaged(SpoolError):
    """Records after the cursor failed their checks; the file was moved aside, the rest kept."""

    def __init__(self, recovery: SpoolRecovery) -> None:
        self.recovery = recovery
        r = recovery
        super().__init__(
            f"{r.path}: {r.damaged_records} damaged record(s) ({r.damaged_bytes} bytes) after "
            f"byte {r.cursor}; the damaged file is kept as {r.quarantine}; "
            f"{r.recovered_records} record(s) that check were recovered and will be delivered"
        )


@dataclass(frozen=True)
class SpoolRecovery:
    """What opening the spool found after the cursor."""

    path: Path
    format: int
    cursor: int  # the acknowledged offset in the file as found
    recovered_records: int  # records that check, kept for delivery
    damaged_records: int  # record headers found in damaged bytes, at least 1 per damaged stretch
    damaged_bytes: int
    torn_bytes: int  # a torn last record, cut off
    quarantine: Path | None  # where the damaged file was kept


def encode_frame(key: bytes, value: bytes) -> bytes:
    """One format-2 record."""
    if len(key) > 0xFFFF:
        raise ValueError(f"spool key of {len(key)} bytes exceeds 65535")
    payload = _KEY_LEN.pack(len(key)) + key + value
    head = MAGIC + struct.pack(">II", len(payload), zlib.crc32(payload))
    return head + struct.pack(">I", zlib.crc32(head)) + payload


class Spool:
    """Single-writer spool; not thread-safe (the emitter serialises access with its lock)."""

    def __init__(self, directory: str | Path, name: str = "events") -> None:
        self.dir = Path(directory)
        private_dir(self.dir)
        self.path = self.dir / f"{name}.spool"
        self._cursor_path = self.dir / f"{name}.cursor"
        self._acked = self._read_cursor()
        self.recovery = self._recover()
        self.damage = SpoolDamaged(self.recovery) if self.recovery.quarantine else None
        self._end = self.path.stat().st_size if self.path.exists() else 0
        self._file = _open_append(self.path)
        self._count = self.recovery.recovered_records
        self._unsynced = 0

    # --- state -----------------------------------------------------------------------------

    def __len__(self) -> int:
        """Records appended and not yet acknowledged."""
        return self._count

    @property
    def acked_offset(self) -> int:
        return self._acked

    @property
    def torn_bytes(self) -> int:
        return self.recovery.torn_bytes

    @property
    def unsynced(self) -> int:
        """Records appended since the last :meth:`sync`."""
        return self._unsynced

    def _read_cursor(self) -> int:
        try:
            text = self._cursor_path.read_text().strip()
        except FileNotFoundError:
            return 0
        if not text.isdigit():
            raise SpoolError(f"{self._cursor_path}: not a byte offset: {text[:40]!r}")
        return int(text)

    # --- recovery --------------------------------------------------------------------------

    def _recover(self) -> SpoolRecovery:
        """Check every record after the cursor; cut a torn tail; move a damaged file aside."""
        size = self.path.stat().st_size if self.path.exists() else 0
        if self._acked > size:
            raise SpoolError(f"{self._cursor_path}: cursor {self._acked} beyond spool end {size}")
        if size == self._acked:
            return SpoolRecovery(self.path, 2, self._acked, 0, 0, 0, 0, None)
        with open(self.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            fmt = _format_of(buf)
            scan = _scan_v2(buf, self._acked) if fmt == 2 else _scan_v1(buf, self._acked)
            recovery = SpoolRecovery(
                path=self.path,
                format=fmt,
                cursor=self._acked,
                recovered_records=len(scan.frames),
                damaged_records=scan.damaged_records,
                damaged_bytes=scan.damaged_bytes,
                torn_bytes=scan.torn_bytes,
                quarantine=None,
            )
            if scan.torn_bytes:
                log.warning(
                    "%s: cut off a torn last record of %d bytes (a crash mid-append)",
                    self.path,
                    scan.torn_bytes,
                )
            if fmt == 2 and not scan.damaged_bytes:
                if scan.torn_bytes:
                    with open(self.path, "r+b") as w:
                        w.truncate(size - scan.torn_bytes)
                        os.fsync(w.fileno())
                return recovery
            # Damage, or format 1: write what checks to a fresh file in format 2.
            tmp = self.path.with_name(self.path.name + ".new")
            with _open_new(tmp) as out:
                for start, end in scan.frames:
                    if fmt == 2:
                        out.write(buf[start:end])
                    else:
                        payload = buf[start + _V1_HEADER.size : end]
                        (key_len,) = _KEY_LEN.unpack_from(payload)
                        out.write(encode_frame(payload[2 : 2 + key_len], payload[2 + key_len :]))
                out.flush()
                os.fsync(out.fileno())
        quarantine = None
        if scan.damaged_bytes:
            quarantine = self._quarantine()
            recovery = dataclasses.replace(recovery, quarantine=quarantine)
            log.error("%s", SpoolDamaged(recovery))
        else:
            log.warning("%s: rewrote a format 1 spool in format 2", self.path)
        # Cursor first, then the file: a crash between the two re-sends acknowledged records
        # (a visible replay); the other order would skip records of the new file.
        self._acked = 0
        self._write_cursor()
        os.replace(tmp, self.path)
        _fsync_dir(self.dir)
        return recovery

    def _quarantine(self) -> Path:
        """Keep the damaged file, byte for byte, under a new name (a hard link, else a copy)."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.damaged-{stamp}-{n}")
            n += 1
        try:
            os.link(self.path, target)
        except OSError:
            with open(self.path, "rb") as src, _open_new(target) as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
        os.chmod(target, 0o600)
        _fsync_dir(self.dir)
        return target

    # --- writing ---------------------------------------------------------------------------

    def append(self, key: bytes, value: bytes) -> int:
        """Append one record (written to the OS, not synced); returns its end offset."""
        frame = encode_frame(key, value)
        self._file.write(frame)
        self._file.flush()
        self._end += len(frame)
        self._count += 1
        self._unsynced += 1
        return self._end

    def sync(self) -> None:
        os.fsync(self._file.fileno())
        self._unsynced = 0

    def records(self, start: int | None = None) -> Iterator[tuple[int, bytes, bytes]]:
        """(end offset, key, value) of each record from ``start`` (default: the cursor) on.

        A record's end offset is what :meth:`ack` takes to acknowledge it and all before it.
        """
        for offset, payload in self._scan(self._acked if start is None else start, self._end):
            (key_len,) = _KEY_LEN.unpack_from(payload)
            yield (
                offset + _HEADER.size + len(payload),
                payload[2 : 2 + key_len],
                payload[2 + key_len :],
            )

    def ack(self, upto: int, count: int) -> None:
        """Mark every record before byte offset ``upto`` acknowledged (``count`` of them)."""
        if not self._acked <= upto <= self._end:
            raise ValueError(f"ack offset {upto} outside [{self._acked}, {self._end}]")
        self._acked = upto
        self._count -= count
        if self._acked == self._end:
            self._reset()
        else:
            self._write_cursor()

    def prepend(self, records: list[tuple[bytes, bytes]]) -> None:
        """Put ``records`` before every unacknowledged record, atomically (new file, rename).

        Used at shutdown for events that were still in memory: they are older than anything
        in the spool, and the order must survive into the next run.
        """
        if not records:
            return
        rest = [(key, value) for _end, key, value in self.records()]
        tmp = self.path.with_name(self.path.name + ".new")
        with _open_new(tmp) as f:
            for key, value in [*records, *rest]:
                f.write(encode_frame(key, value))
            f.flush()
            os.fsync(f.fileno())
        self._file.close()
        # Cursor first (see _recover): a crash in between re-sends, never skips.
        self._acked = 0
        self._write_cursor()
        os.replace(tmp, self.path)
        _fsync_dir(self.dir)
        self._file = _open_append(self.path)
        self._end = self.path.stat().st_size
        self._count = len(records) + len(rest)
        self._unsynced = 0

    def _write_cursor(self) -> None:
        tmp = self._cursor_path.with_suffix(".tmp")
        with _open_new(tmp) as f:
            f.write(f"{self._acked}\n".encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._cursor_path)

    def _reset(self) -> None:
        """Everything acknowledged: start the file afresh so it never grows without bound."""
        self._file.truncate(0)
        self._file.seek(0)
        os.fsync(self._file.fileno())
        self._acked = self._end = 0
        self._count = 0
        self._unsynced = 0
        self._write_cursor()

    def _scan(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        """Records of this run (checked on open or written since): a bad one now is a fault."""
        if end <= start:
            return
        with open(self.path, "rb") as f:
            f.seek(start)
            offset = start
            while offset < end:
                magic, length, crc, _head_crc = _HEADER.unpack(f.read(_HEADER.size))
                payload = f.read(length)
                if magic != MAGIC or zlib.crc32(payload) != crc:
                    raise SpoolError(f"{self.path}: corrupt record at byte {offset}")
                yield offset, payload
                offset += _HEADER.size + length

    def close(self) -> None:
        self._file.close()


# --- reading a file as found -------------------------------------------------------------------


@dataclass
class _Scan:
    frames: list[tuple[int, int]]  # [start, end) of each record that checks
    damaged_records: int = 0
    damaged_bytes: int = 0
    torn_bytes: int = 0


def _format_of(buf: mmap.mmap) -> int:
    """2 if the file starts with the magic; 1 if it starts with a good format-1 record; else
    2 if the magic occurs anywhere (a format-2 file whose first record is damaged), else 1."""
    if buf[:4] == MAGIC:
        return 2
    if _v1_frame_at(buf, 0, len(buf)) is not None:
        return 1
    return 2 if buf.find(MAGIC) >= 0 else 1


def _frame_at(buf: mmap.mmap, offset: int, size: int) -> int | None:
    """End of the good format-2 record at ``offset``, or None."""
    if offset + _HEADER.size > size:
        return None
    magic, length, crc, head_crc = _HEADER.unpack_from(buf, offset)
    if magic != MAGIC or zlib.crc32(buf[offset : offset + _HEAD_CHECKED]) != head_crc:
        return None
    end = offset + _HEADER.size + int(length)
    if length < _KEY_LEN.size or end > size:
        return None
    payload = buf[offset + _HEADER.size : end]
    if zlib.crc32(payload) != crc or _KEY_LEN.unpack_from(payload)[0] > length - _KEY_LEN.size:
        return None
    return end


def _head_ok(buf: mmap.mmap, offset: int, size: int) -> bool:
    if offset + _HEADER.size > size:
        return False
    magic, _length, _crc, head_crc = _HEADER.unpack_from(buf, offset)
    return bool(magic == MAGIC and zlib.crc32(buf[offset : offset + _HEAD_CHECKED]) == head_crc)


def _torn_at(buf: mmap.mmap, offset: int, size: int) -> bool:
    """Is ``[offset, size)`` the start of a record cut short by the end of the file?"""
    left = size - offset
    if left < _HEADER.size:
        n = min(len(MAGIC), left)
        return buf[offset : offset + n] == MAGIC[:n]
    if not _head_ok(buf, offset, size):
        return False
    (length,) = struct.unpack_from(">I", buf, offset + 4)
    return offset + _HEADER.size + int(length) > size


def _scan_v2(buf: mmap.mmap, start: int) -> _Scan:
    size = len(buf)
    scan = _Scan([])
    offset = start
    while offset < size:
        end = _frame_at(buf, offset, size)
        if end is not None:
            scan.frames.append((offset, end))
            offset = end
            continue
        # Bad bytes from here: resynchronise on the next magic whose record checks.
        candidates: list[int] = []
        following = None
        p = buf.find(MAGIC, offset + 1)
        while p >= 0:
            if _frame_at(buf, p, size) is not None:
                following = p
                break
            candidates.append(p)
            p = buf.find(MAGIC, p + 1)
        if following is None:
            # Nothing good up to the end: the tail is torn only from the last record's start.
            tail = [offset, *candidates, *range(max(size - 3, offset), size)]
            torn = max((q for q in tail if _torn_at(buf, q, size)), default=None)
            stop = size if torn is None else torn
            if torn is not None:
                scan.torn_bytes = size - torn
        else:
            stop = following
        if stop > offset:
            scan.damaged_bytes += stop - offset
            heads = sum(1 for q in [offset, *candidates] if q < stop and _head_ok(buf, q, size))
            scan.damaged_records += max(1, heads)
        if following is None:
            break
        offset = following
    return scan


def _v1_frame_at(buf: mmap.mmap, offset: int, size: int) -> int | None:
    if offset + _V1_HEADER.size > size:
        return None
    length, crc = _V1_HEADER.unpack_from(buf, offset)
    end = offset + _V1_HEADER.size + int(length)
    if length < _KEY_LEN.size or end > size:
        return None
    payload = buf[offset + _V1_HEADER.size : end]
    if zlib.crc32(payload) != crc or _KEY_LEN.unpack_from(payload)[0] > length - _KEY_LEN.size:
        return None
    return end


def _scan_v1(buf: mmap.mmap, start: int) -> _Scan:
    """Format 1 has no magic: resynchronise by trying every offset (a length that fits and a
    matching CRC-32); a tail whose header is cut or whose length runs past the end is torn."""
    size = len(buf)
    scan = _Scan([])
    offset = start
    while offset < size:
        end = _v1_frame_at(buf, offset, size)
        if end is not None:
            scan.frames.append((offset, end))
            offset = end
            continue
        following = next(
            (p for p in range(offset + 1, size) if _v1_frame_at(buf, p, size) is not None), None
        )
        if following is None:
            left = size - offset
            torn = (
                left < _V1_HEADER.size
                or offset + _V1_HEADER.size + _V1_HEADER.unpack_from(buf, offset)[0] > size
            )
            if torn:
                scan.torn_bytes = left
            else:
                scan.damaged_bytes += left
                scan.damaged_records += 1
            break
        scan.damaged_bytes += following - offset
        scan.damaged_records += 1
        offset = following
    return scan


# --- files -----------------------------------------------------------------------------------


# Owner-only whatever the umask, as store/files.py (which ingest may not import) does for the
# other rooms: events may carry personal data.


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create the directory ``path`` and its missing parents, each 0700; return it."""
    target = Path(path)
    missing: list[Path] = []
    at = target
    while not at.exists() and at != at.parent:
        missing.append(at)
        at = at.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            continue
        os.chmod(folder, 0o700)  # mkdir's mode went through the umask
    return target


def _open_private(path: Path, flags: int) -> int:
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)  # also a file left by an older version under a looser umask
    return fd


def _open_append(path: Path) -> BinaryIO:
    """The spool for appending, 0600."""
    return os.fdopen(_open_private(path, os.O_WRONLY | os.O_APPEND), "ab")


def _open_new(path: Path) -> BinaryIO:
    """``path`` emptied for writing, 0600."""
    return os.fdopen(_open_private(path, os.O_WRONLY | os.O_TRUNC), "wb")


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (0600) through a synced temporary file and a rename."""
    private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    with _open_new(tmp) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
