"""An append-only spool file: where an emitter keeps events while the broker is out of reach.

Records are appended as ``u32 length ‖ u32 crc32(payload) ‖ payload`` with
``payload = u16 key length ‖ key ‖ value``. A separate cursor file holds the byte offset up to
which records were acknowledged by Kafka; it is replaced atomically (write, fsync, rename), so a
crash at any moment either keeps the old cursor (records are sent again: at-least-once, with the
same event id and sequence, which the sealer and monitor see as a replay) or the new one.

A record torn by a crash mid-append (length or CRC wrong at the tail) was never acknowledged to
the caller as spooled-and-synced; it is cut off on open and counted in ``torn_bytes``.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from ingest.errors import IngestError

__all__ = ["Spool", "SpoolError"]

_HEADER = struct.Struct(">II")
_KEY_LEN = struct.Struct(">H")


class SpoolError(IngestError):
    """The spool file is unusable (corrupt in the middle, unwritable)."""

    exit_code = 3


class Spool:
    """Single-writer spool; not thread-safe (the emitter serialises access with its lock)."""

    def __init__(self, directory: str | Path, name: str = "events") -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"{name}.spool"
        self._cursor_path = self.dir / f"{name}.cursor"
        self.torn_bytes = 0
        self._acked = self._read_cursor()
        self._end = self._recover()
        self._file = open(self.path, "ab")  # noqa: SIM115 - held open for the spool's life
        self._count = sum(1 for _ in self._scan(self._acked, self._end))

    # --- state -----------------------------------------------------------------------------

    def __len__(self) -> int:
        """Records appended and not yet acknowledged."""
        return self._count

    @property
    def acked_offset(self) -> int:
        return self._acked

    def _read_cursor(self) -> int:
        try:
            text = self._cursor_path.read_text().strip()
        except FileNotFoundError:
            return 0
        if not text.isdigit():
            raise SpoolError(f"{self._cursor_path}: not a byte offset: {text[:40]!r}")
        return int(text)

    def _recover(self) -> int:
        """Validate every record after the cursor; cut a torn tail; return the end offset."""
        size = self.path.stat().st_size if self.path.exists() else 0
        if self._acked > size:
            raise SpoolError(f"{self._cursor_path}: cursor {self._acked} beyond spool end {size}")
        end = self._acked
        if size == 0:
            return end
        with open(self.path, "rb") as f:
            f.seek(end)
            while end < size:
                header = f.read(_HEADER.size)
                if len(header) < _HEADER.size:
                    break
                length, crc = _HEADER.unpack(header)
                payload = f.read(length)
                if len(payload) < length or zlib.crc32(payload) != crc:
                    break
                end += _HEADER.size + length
        if end < size:
            self.torn_bytes = size - end
            with open(self.path, "r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())
        return end

    # --- writing ---------------------------------------------------------------------------

    def append(self, key: bytes, value: bytes) -> int:
        """Append one record; returns its end offset (what :meth:`ack` takes)."""
        if len(key) > 0xFFFF:
            raise ValueError(f"spool key of {len(key)} bytes exceeds 65535")
        payload = _KEY_LEN.pack(len(key)) + key + value
        self._file.write(_HEADER.pack(len(payload), zlib.crc32(payload)) + payload)
        self._file.flush()
        self._end += _HEADER.size + len(payload)
        self._count += 1
        return self._end

    def sync(self) -> None:
        os.fsync(self._file.fileno())

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
        tmp = self.path.with_suffix(".new")
        with open(tmp, "wb") as f:
            for key, value in [*records, *rest]:
                payload = _KEY_LEN.pack(len(key)) + key + value
                f.write(_HEADER.pack(len(payload), zlib.crc32(payload)) + payload)
            f.flush()
            os.fsync(f.fileno())
        self._file.close()
        os.replace(tmp, self.path)
        self._file = open(self.path, "ab")  # noqa: SIM115
        self._end = self.path.stat().st_size
        self._acked = 0
        self._count = len(records) + len(rest)
        self._write_cursor()

    def _write_cursor(self) -> None:
        tmp = self._cursor_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(f"{self._acked}\n")
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
        self._write_cursor()

    def _scan(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        if end <= start:
            return
        with open(self.path, "rb") as f:
            f.seek(start)
            offset = start
            while offset < end:
                length, crc = _HEADER.unpack(f.read(_HEADER.size))
                payload = f.read(length)
                if zlib.crc32(payload) != crc:
                    raise SpoolError(f"{self.path}: corrupt record at byte {offset}")
                yield offset, payload
                offset += _HEADER.size + length

    def close(self) -> None:
        self._file.close()
