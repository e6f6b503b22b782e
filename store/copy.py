"""Copying a block store to another, block by block, checking each block on the way
(``auditseal store copy``): SQLite to PostgreSQL, back, or between two of either.

The copy moves evidence, it does not judge it against keys: each block is replayed as
:class:`~auditseal.verifier.replay.LogReplay` does (header chain, entries, leaves, tree root,
the checkpoint's origin, size and root) but its checkpoint's signature is not checked, so no
key is needed; the source's stored tree nodes and block hash are compared with the recomputed
ones as :func:`auditseal.store.fsck.check_log` does. A block that fails stops the copy: the
error names its log and number and nothing from it on is written.

Steps, read from one snapshot of the source:

1. plan: the destination may hold only a prefix of the source: no other log, no log ahead of
   the source's, and each log's last block must be the source's block of that number; its
   other rows (anchors, claims, ...) must be ones the source holds. Else CopyError, nothing
   written.
2. blocks, in the order the source committed them across logs (the anchor service replays
   that order to explain old anchors), each through :meth:`BlockStore.append_block` with its
   entries (salts, commitments, event ids, flags), its nodes, header, checkpoint and gaps as
   stored; one transaction per block, so a copy killed at any moment leaves whole blocks.
3. the rest, once every block is in: the publications outbox, redactions (the record is a
   leaf, already copied; an entry copied before it was erased is erased now), log generations,
   claims, anchors with their receipts (an anchor orphaned since is marked so), anchor intents
   and the anchors' outbox. Every insert is idempotent.

Started again, a copy continues from what the destination holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from auditseal.store.blockstore import BlockStore, StoredAnchor, StoredBlock
from auditseal.store.errors import StoreError
from auditseal.store.model import BuiltBlock, LogTip
from auditseal.verifier.block import SealedBlock
from auditseal.verifier.checkpoint import Checkpoint
from auditseal.verifier.errors import VerificationError, VerifierError
from auditseal.verifier.note import SignedNote
from auditseal.verifier.origin import split_generation
from auditseal.verifier.replay import LogReplay

__all__ = ["CopyError", "CopyResult", "LogCopy", "SourceFaultError", "copy_store"]

K = TypeVar("K")
V = TypeVar("V")
_NODES_PER_QUERY = 2048  # two parameters each: well under SQLite's 32766


class CopyError(StoreError):
    """The destination cannot take the copy: it is the source, holds other logs, is ahead of
    the source or diverged from it. Nothing was written."""


class SourceFaultError(CopyError):
    """A block of the source fails its check: the blocks before it are copied, none after."""

    exit_code = 1


Progress = Callable[[str, int, int], None]
"""Called after each copied block with its log and that log's blocks and entries copied so far."""


@dataclass
class LogCopy:
    origin: str
    blocks: int
    """Blocks of the log in the source (and, once complete, in the destination)."""
    entries: int
    copied_blocks: int = 0
    """Blocks this run wrote (the rest were there already)."""
    copied_entries: int = 0


@dataclass
class CopyResult:
    source: str
    destination: str
    logs: list[LogCopy]
    complete: bool = False
    """False when ``max_blocks`` stopped the copy: run it again to finish."""
    added: dict[str, int] = field(default_factory=dict)
    """Rows this run added besides blocks: publications, redactions, generations, claims,
    anchors, orphaned (anchors marked orphaned), anchor_intents, anchor_publications."""


class _UnsignedReplay(LogReplay):
    """The verifier's replay without the signature check: the checkpoint must be a
    well-formed signed note whose body states the block's origin, size and root."""

    def open_checkpoint(self, raw_note: str) -> Checkpoint:
        return Checkpoint.from_text(SignedNote.from_text(raw_note).text)


def copy_store(
    source: BlockStore,
    destination: BlockStore,
    progress: Progress | None = None,
    max_blocks: int | None = None,
) -> CopyResult:
    """Copy ``source`` into ``destination`` (see the module's steps); ``max_blocks`` stops
    after writing that many blocks (the result is then not ``complete``).

    Raises CopyError (step 1: nothing written), SourceFaultError (a block failed its check),
    StoreError (either store cannot be read or written).
    """
    if _same_store(source, destination):
        raise CopyError(f"{source.location}: source and destination are the same store")
    with source.snapshot() as db:
        src = BlockStore(db)
        plan = _Plan(src, destination)  # 1
        result = CopyResult(source.location, destination.location, plan.logs())
        if not _copy_blocks(src, destination, plan, result, progress, max_blocks):  # 2
            return result
        plan.copy_rows(result.added)  # 3
    result.complete = True
    return result


def _same_store(a: BlockStore, b: BlockStore) -> bool:
    if a.path is not None and b.path is not None:
        return Path(a.path).resolve() == Path(b.path).resolve()
    return a.path is None and b.path is None and a.location == b.location


def _diverged(dst: BlockStore, what: str) -> CopyError:
    return CopyError(f"{dst.location}: the destination diverged from the source: {what}")


def _missing(dst: BlockStore, what: str, have: Mapping[K, V], want: Mapping[K, V]) -> list[K]:
    """Keys of ``want`` the destination lacks; CopyError if it holds a row the source does
    not, or holds it otherwise."""
    for key, value in have.items():
        if key not in want:
            raise _diverged(dst, f"{what} {key} is not in the source")
        if want[key] != value:
            raise _diverged(dst, f"{what} {key} differs from the source's")
    return [key for key in want if key not in have]


class _Plan:
    """What the destination holds of the source, checked before anything is written."""

    def __init__(self, src: BlockStore, dst: BlockStore) -> None:
        self.src, self.dst = src, dst
        self.origins = src.logs()
        extra = sorted(set(dst.logs()) - set(self.origins))
        if extra:
            raise CopyError(
                f"{dst.location}: holds logs the source does not: {', '.join(extra)}; "
                "copy into an empty store"
            )
        self.held: dict[str, int] = {}
        """Blocks each log holds in the destination."""
        for origin in dst.logs():
            self.held[origin] = self._check_log(origin)
        bases = {split_generation(o)[0] for o in self.origins} | set(src.claimed_bases())
        extra = sorted(set(dst.claimed_bases()) - bases)
        if extra:
            raise _diverged(dst, f"claims of {', '.join(extra)} are not in the source")
        self.bases = sorted(bases)
        self._check_rows()

    def _check_log(self, origin: str) -> int:
        """The destination's block count of ``origin`` once its last block is checked."""
        last = self.dst.last_block(origin)
        if last is None:
            return 0
        number = last.header.number
        total = self.src.size(origin)
        try:
            theirs = self.src.block(origin, number)
        except StoreError:
            raise CopyError(
                f"{self.dst.location}: the destination is ahead of the source: log {origin!r} "
                f"holds block {number} (size {last.header.end}), the source's size is {total}"
            ) from None
        if theirs.hash != last.hash or theirs.checkpoint != last.checkpoint:
            raise _diverged(
                self.dst,
                f"log {origin!r}, block {number}: header hash {last.hash.hex()[:16]}, the "
                f"source's is {theirs.hash.hex()[:16]}",
            )
        return number + 1

    def logs(self) -> list[LogCopy]:
        out = []
        for origin in self.origins:
            last = self.src.last_block(origin)
            blocks = last.header.number + 1 if last else 0
            out.append(LogCopy(origin, blocks, last.header.end if last else 0))
        return out

    # --- rows besides blocks: each table as {key: row}, compared, then the missing added ---

    def _publications(self, store: BlockStore, origin: str) -> dict[int, int]:
        return dict(store.publications(origin)) if store.has_log(origin) else {}

    def _redactions(self, store: BlockStore, origin: str) -> dict[int, tuple[int, str, str]]:
        if not store.has_log(origin):
            return {}
        return {i: (t, a, r) for i, t, a, r in store.redactions(origin)}

    def _generations(self, store: BlockStore, base: str) -> dict[int, tuple[str, int, str]]:
        return {g: (o, t, r) for g, o, t, r in store.generations(base)}

    def _claims(self, store: BlockStore, base: str) -> dict[int, tuple[str, int]]:
        return {e: (w, t) for e, w, t in store.claims(base)}

    def _anchors(self, store: BlockStore) -> dict[int, StoredAnchor]:
        return {a.seq: a for a in store.anchors()}

    def _intents(self, store: BlockStore) -> dict[tuple[int, bytes], tuple[list[str], int]]:
        return {(s, root): (bodies, t) for s, root, bodies, t in store.all_anchor_intents()}

    def _check_rows(self) -> None:
        src, dst = self.src, self.dst
        for origin in self.held:
            _missing(
                dst, f"{origin}: publication of block", *self._pair(self._publications, origin)
            )
            _missing(dst, f"{origin}: redaction of entry", *self._pair(self._redactions, origin))
        for base in self.bases:
            self._prefix(f"{base}: generation", *self._pair(self._generations, base))
            self._prefix(f"{base}: claim epoch", *self._pair(self._claims, base))
        mine, theirs = self._anchors(dst), self._anchors(src)
        for seq, anchor in mine.items():
            if seq in theirs and self._orphaned_since(anchor, theirs[seq]):
                mine[seq] = theirs[seq]  # marked orphaned in step 3
        _missing(dst, "anchor", mine, theirs)
        _missing(dst, "anchor intent", self._intents(dst), self._intents(src))
        _missing(
            dst,
            "anchor publication",
            dict(dst.anchor_publications()),
            dict(src.anchor_publications()),
        )

    def _pair(
        self, read: Callable[[BlockStore, str], dict[K, V]], name: str
    ) -> tuple[dict[K, V], dict[K, V]]:
        return read(self.dst, name), read(self.src, name)

    def _prefix(self, what: str, have: dict[int, V], want: dict[int, V]) -> list[int]:
        """Generations and claims are numbered from 1 by compare-and-swap: the destination's
        must be the source's first ones."""
        missing = _missing(self.dst, what, have, want)
        if have and missing and min(missing) < max(have):
            raise _diverged(self.dst, f"{what} {min(missing)} is missing before {max(have)}")
        return sorted(missing)

    @staticmethod
    def _orphaned_since(mine: StoredAnchor, theirs: StoredAnchor) -> bool:
        return (
            mine.status == "confirmed"
            and theirs.status == "orphaned"
            and replace(mine, status=theirs.status, replaced_by=theirs.replaced_by) == theirs
        )

    def copy_rows(self, added: dict[str, int]) -> None:
        """Step 3: every row besides blocks that the destination lacks."""
        src, dst = self.src, self.dst
        counts = dict.fromkeys(
            (
                "publications",
                "redactions",
                "generations",
                "claims",
                "anchors",
                "orphaned",
                "anchor_intents",
                "anchor_publications",
            ),
            0,
        )
        erased = False
        for origin in self.origins:
            have, want = self._pair(self._publications, origin)
            rows = [
                (n, want[n]) for n in _missing(dst, f"{origin}: publication of block", have, want)
            ]
            dst.import_publications(origin, rows)
            counts["publications"] += len(rows)
            have_r, want_r = self._pair(self._redactions, origin)
            for index in _missing(dst, f"{origin}: redaction of entry", have_r, want_r):
                erased |= dst.import_redaction(origin, index, *want_r[index])
                counts["redactions"] += 1
        if erased:
            dst.purge_wal()
        for base in self.bases:
            have_g, want_g = self._pair(self._generations, base)
            for g in self._prefix(f"{base}: generation", have_g, want_g):
                _, started, reason = want_g[g]
                if dst.start_generation(base, g - 1, reason, started) != g:
                    raise _diverged(dst, f"{base}: generation {g} was started meanwhile")
                counts["generations"] += 1
            have_c, want_c = self._pair(self._claims, base)
            for epoch in self._prefix(f"{base}: claim epoch", have_c, want_c):
                writer, claimed = want_c[epoch]
                if dst.claim(base, writer, claimed) != epoch:
                    raise _diverged(dst, f"{base}: claim epoch {epoch} was taken meanwhile")
                counts["claims"] += 1
        mine, theirs = self._anchors(dst), self._anchors(src)
        for seq, anchor in theirs.items():
            if seq not in mine:
                dst.record_anchor(anchor, src.anchor_receipts(seq))
                counts["anchors"] += 1
            elif self._orphaned_since(mine[seq], anchor):
                dst.mark_anchor_orphaned(seq, anchor.replaced_by)
                counts["orphaned"] += 1
        have_i, want_i = self._intents(dst), self._intents(src)
        for seq, root in _missing(dst, "anchor intent", have_i, want_i):
            bodies, created = want_i[(seq, root)]
            dst.record_anchor_intent(seq, root, bodies, created)
            counts["anchor_intents"] += 1
        have_p, want_p = dict(dst.anchor_publications()), dict(src.anchor_publications())
        for seq in _missing(dst, "anchor publication", have_p, want_p):
            dst.mark_anchor_published(seq, want_p[seq])
            counts["anchor_publications"] += 1
        added.update(counts)


def _copy_blocks(
    src: BlockStore,
    dst: BlockStore,
    plan: _Plan,
    result: CopyResult,
    progress: Progress | None,
    max_blocks: int | None,
) -> bool:
    """Step 2; False if ``max_blocks`` stopped it before the last block."""
    per_log = {c.origin: c for c in result.logs}
    replays: dict[str, LogReplay] = {}
    written = 0
    for origin, stored, gaps in src.blocks_by_commit():
        if stored.header.number < plan.held.get(origin, 0):
            continue  # copied by an earlier run (its last block checked in step 1)
        if max_blocks is not None and written >= max_blocks:
            return False
        replay = replays.get(origin)
        if replay is None:
            replay = replays[origin] = _start(dst, origin)
        built = _checked_block(src, replay, origin, stored, gaps)
        dst.append_block(built)
        written += 1
        copied = per_log[origin]
        copied.copied_blocks += 1
        copied.copied_entries += stored.header.size
        if progress is not None:
            progress(origin, copied.copied_blocks, copied.copied_entries)
    return True


def _start(dst: BlockStore, origin: str) -> LogReplay:
    """A replay of ``origin`` from the destination's tip (empty for a new log)."""
    tip = dst.tip(origin)
    return _UnsignedReplay(origin, (), tip.compact, tip.last_header, tip.last_position)


def _checked_block(
    src: BlockStore,
    replay: LogReplay,
    origin: str,
    stored: StoredBlock,
    gaps: list[tuple[int, int]],
) -> BuiltBlock:
    """The source's block as the destination writes it, once replayed on ``replay``; raises
    SourceFaultError naming the log and block if any check fails."""
    h = stored.header
    try:
        if stored.hash != h.hash():
            raise VerificationError("its stored hash is not the header's")
        entries = tuple(src.entries(origin, h.start, h.end))
        records = tuple(src.records(origin, h.start, h.end))
        if len(records) != len(entries):
            raise VerificationError("its entries changed while read")
        nodes = replay.compact.copy().extend(e.leaf_hash() for e in entries)
        block = SealedBlock(h, stored.checkpoint, entries)
        replay.apply(block)
        for i in range(0, len(nodes), _NODES_PER_QUERY):
            chunk = nodes[i : i + _NODES_PER_QUERY]
            held = src.nodes(origin, [(level, index) for level, index, _ in chunk])
            for (level, index, want), got in zip(chunk, held, strict=True):
                if got != want:
                    raise VerificationError(f"stored tree node ({level}, {index}) is wrong")
    except (VerifierError, StoreError) as exc:
        raise SourceFaultError(
            f"{src.location}: log {origin!r}, block {h.number} fails its check, "
            f"nothing from it on was copied: {exc}"
        ) from exc
    tip = LogTip(origin, replay.compact.copy(), h, replay.last_position)
    return BuiltBlock(block, records, tuple(nodes), tip, tuple(gaps))
