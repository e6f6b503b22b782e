"""``auditseal keygen`` and ``auditseal log``: a log's key, and appending to, proving,
checking and redacting a log in a block store by hand."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import click

from auditseal.cli.options import (
    json_option,
    key_set_options,
    key_source,
    log_key_option,
    log_option,
    previous_key_option,
    resolve_key_set,
    signing_key_option,
    store_option,
)
from auditseal.cli.output import emit
from auditseal.sealer.blocks import build_rotation_block, checkpoint_signers, redaction_sealer
from auditseal.sealer.errors import InputError
from auditseal.sealer.log_writer import LogWriter, load_rotations
from auditseal.sealer.signer import NoteSigner, Signer, load_signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.database import Location
from auditseal.store.files import private_dir, write_atomic
from auditseal.store.fsck import check_log
from auditseal.store.model import BuiltBlock, LogTip, Record
from auditseal.verifier.errors import VerifierError
from auditseal.verifier.note import SignedNote
from auditseal.verifier.rotation import KeyHistory, KeySet, RotationError, open_rotation_record


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@click.command()
@click.option("--name", required=True, help="Key name (no spaces or '+'), e.g. the log operator.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory for NAME.key (private, mode 0600; not with --pkcs11) and NAME.pub "
    "(verifier key).",
)
@click.option(
    "--pkcs11",
    "pkcs11_uri",
    metavar="URI",
    default=None,
    help="Generate the key inside a PKCS#11 token instead of a file, e.g. "
    "'pkcs11:token=T?pin-source=file:PIN_FILE' (the key's label is NAME); only NAME.pub is "
    "written. See docs/SEALER.md, PKCS#11.",
)
@json_option
def keygen(name: str, out: Path, pkcs11_uri: str | None, as_json: bool) -> None:
    """Create an Ed25519 signing key and print its verifier key.

    The private key is in the Go note format (PRIVATE+KEY+...), or inside an HSM with
    --pkcs11 (where it never leaves the token); the verifier key is in the name+keyid+base64
    format that C2SP signed-note verifiers accept.
    """
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    key_path, pub_path = out / f"{stem}.key", out / f"{stem}.pub"
    if pkcs11_uri is not None:
        from auditseal.sealer.pkcs11_signer import generate_in_token

        if not pkcs11_uri.startswith("pkcs11:"):
            raise click.BadParameter("want a pkcs11: URI", param_hint="'--pkcs11'")
        if pub_path.exists():  # checked before the token gets a key nobody is told about
            raise InputError(f"{pub_path}: already exists; refusing to overwrite a key")
        _make_dir(out)
        token_signer = generate_in_token(pkcs11_uri, name)
        vkey = token_signer.verifier.to_string()
        write_atomic(pub_path, (vkey + "\n").encode())
        data = {"name": name, "pkcs11": token_signer.uri, "verifier_key": vkey}
        emit(as_json, data, f"{vkey}\n--key '{token_signer.uri}'")
        return
    signer = Signer.generate(name)
    _make_dir(out)
    signer.write_private_file(key_path)
    vkey = signer.verifier.to_string()
    write_atomic(pub_path, (vkey + "\n").encode())
    emit(as_json, {"name": name, "key_file": str(key_path), "verifier_key": vkey}, vkey)


def _make_dir(out: Path) -> None:
    try:
        private_dir(out)
    except OSError as exc:
        raise InputError(f"{out}: cannot create directory: {exc.strerror}") from exc


@click.group()
def log() -> None:
    """Append to, inspect and prove a log in a block store."""


def _previous(previous_key_file: Path | str | None) -> NoteSigner | None:
    return load_signer(previous_key_file) if previous_key_file is not None else None


@log.command("append")
@store_option()
@log_option()
@signing_key_option()
@previous_key_option
@click.argument("input_file", type=click.File("rb"), default="-")
@json_option
def log_append(
    store: Location,
    origin: str,
    key_file: Path | str,
    previous_key_file: Path | str | None,
    input_file: Any,
    as_json: bool,
) -> None:
    """Seal each line of INPUT_FILE (default: stdin) as one entry, all in one block.

    Every newline ends an entry and a last line without one is an entry too; blank lines are
    entries; nothing is skipped or altered. Positions continue from the log's last entry.
    """
    from auditseal.ingest.envelope import triage  # a line that is an event is findable by its id

    signer = load_signer(key_file)
    previous = _previous(previous_key_file)
    data = input_file.read()
    lines = data.split(b"\n")
    if data.endswith(b"\n") or not data:
        lines.pop()  # the newline ended the last entry; it does not start another
    if not lines:
        raise InputError(f"{input_file.name}: no lines to append")
    with BlockStore.open(store, create=True) as db:
        writer = LogWriter(db, signer, _now_ms, previous)
        first = writer.tip(origin).next_position
        now = _now_ms()
        records = [
            Record(first + i, now, None, line, triage(line)[0]) for i, line in enumerate(lines)
        ]
        block = writer.append(origin, records)
    h = block.header
    emit(
        as_json,
        {
            "log": origin,
            "block": h.number,
            "start": h.start,
            "end": h.end,
            "root": h.root.hex(),
            "block_hash": h.hash().hex(),
            "checkpoint": block.checkpoint,
        },
        f"{origin}: block {h.number} sealed {h.size} entries [{h.start}, {h.end}), "
        f"root {h.root.hex()}",
    )


@log.command("checkpoint")
@store_option()
@log_option()
def log_checkpoint(store: Location, origin: str) -> None:
    """Print the log's latest signed checkpoint, verbatim."""
    with BlockStore.open(store, readonly=True) as db:
        click.echo(db.latest_checkpoint(origin), nl=False)


@log.group("proof")
def log_proof() -> None:
    """Print inclusion and consistency proofs."""


@log_proof.command("inclusion")
@store_option()
@log_option()
@click.option("--index", type=int, required=True, help="Leaf index (0-based).")
@click.option("--size", type=int, default=None, help="Tree size (default: the log's size).")
@json_option
def proof_inclusion(
    store: Location, origin: str, index: int, size: int | None, as_json: bool
) -> None:
    """Inclusion proof of leaf INDEX in the tree of SIZE leaves."""
    with BlockStore.open(store, readonly=True) as db:
        p = db.inclusion_proof(origin, index, size)
    data = {
        "log": p.origin,
        "index": p.index,
        "size": p.size,
        "leaf_hash": p.leaf_hash.hex(),
        "root": p.root.hex(),
        "proof": [h.hex() for h in p.proof],
    }
    text = "\n".join(
        [
            f"leaf {p.index} of {p.size} in {p.origin}",
            f"leaf hash {p.leaf_hash.hex()}",
            f"root {p.root.hex()}",
            *(h.hex() for h in p.proof),
        ]
    )
    emit(as_json, data, text)


@log_proof.command("consistency")
@store_option()
@log_option()
@click.option("--old", "old_size", type=int, required=True, help="Old tree size (> 0).")
@click.option(
    "--new", "new_size", type=int, default=None, help="New tree size (default: the log's)."
)
@json_option
def proof_consistency(
    store: Location, origin: str, old_size: int, new_size: int | None, as_json: bool
) -> None:
    """Consistency proof from the tree of OLD leaves to the tree of NEW leaves."""
    with BlockStore.open(store, readonly=True) as db:
        p = db.consistency_proof(origin, old_size, new_size)
    data = {
        "log": p.origin,
        "old_size": p.old_size,
        "new_size": p.new_size,
        "old_root": p.old_root.hex(),
        "new_root": p.new_root.hex(),
        "proof": [h.hex() for h in p.proof],
    }
    text = "\n".join(
        [
            f"{p.origin}: {p.old_size} -> {p.new_size}",
            f"old root {p.old_root.hex()}",
            f"new root {p.new_root.hex()}",
            *(h.hex() for h in p.proof),
        ]
    )
    emit(as_json, data, text)


@log.command("check")
@store_option()
@log_option()
@log_key_option()
@key_set_options
@json_option
def log_check(
    store: Location,
    origin: str,
    log_keys: tuple[str, ...],
    log_keys_file: Path | None,
    follow_rotations: bool,
    as_json: bool,
) -> None:
    """Replay every block of a log from the store: entries, tree, chain, checkpoints, nodes,
    key rotations."""
    key_set = resolve_key_set(log_keys, log_keys_file, follow_rotations)
    if not key_set.pins:
        raise click.UsageError("no pinned log key: give --log-key or --log-keys FILE")
    with BlockStore.open(store, readonly=True) as db:
        result = check_log(db, origin, key_set)
    emit(
        as_json,
        {
            "log": origin,
            "ok": True,
            "blocks": result.blocks,
            "size": result.size,
            "redacted": result.redacted,
        },
        f"{origin}: OK, {result.blocks} blocks, {result.size} entries, {result.redacted} redacted",
    )


@log.command("redact")
@store_option()
@log_option()
@click.option("--index", type=int, required=True, help="Leaf index whose value to erase.")
@click.option("--actor", required=True, help="Who asks for the erasure (recorded in the log).")
@click.option(
    "--reason", required=True, help="Why, e.g. a GDPR request reference (recorded in the log)."
)
@signing_key_option("The redaction record is signed into the log with it.")
@previous_key_option
@json_option
def log_redact(
    store: Location,
    origin: str,
    index: int,
    actor: str,
    reason: str,
    key_file: Path | str,
    previous_key_file: Path | str | None,
    as_json: bool,
) -> None:
    """Erase one entry's value and salt, and seal a signed redaction record into the log.

    The record (which leaf, its leaf hash, who, why, when) is the next leaf of the log, in a
    block of its own, committed in the same transaction as the erasure; verifiers accept an
    erased entry only with it. The erased bytes are then purged from the store files (WAL
    included). Copies already published on audit.sealed are not touched: see docs/STORE.md.
    """
    signer = load_signer(key_file)
    previous = _previous(previous_key_file)
    with BlockStore.open(store) as db:
        sealer = redaction_sealer(signer, previous, load_rotations(db, origin))
        built = db.redact(origin, index, actor, reason, sealer, _now_ms())
    h = built.block.header
    emit(
        as_json,
        {
            "log": origin,
            "index": index,
            "record_index": h.start,
            "block": h.number,
            "root": h.root.hex(),
            "checkpoint": built.block.checkpoint,
        },
        f"{origin}: entry {index} redacted; redaction record sealed as leaf {h.start} "
        f"in block {h.number}",
    )


@log.command("rotate-key")
@store_option()
@log_option()
@signing_key_option("The log's current key: it signs the rotation record.")
@click.option(
    "--new-key",
    "new_key_file",
    required=True,
    callback=key_source,
    help="The new log key, a key file (`auditseal keygen`) or a pkcs11: URI; it co-signs the "
    "record.",
)
@click.option(
    "--overlap",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Leaves after the record during which the old key still co-signs the checkpoints "
    "(a sealer run with --key NEW --previous-key OLD does), so verifiers that pin only the "
    "old key keep working while they update.",
)
@json_option
def log_rotate_key(
    store: Location,
    origin: str,
    key_file: Path | str,
    new_key_file: Path | str,
    overlap: int,
    as_json: bool,
) -> None:
    """Hand the log over to a new signing key, with a rotation record in the log itself.

    The record (old and new verifier keys, the size from which the new key signs, the size
    from which the old one no longer does) is signed by both keys and sealed as the next leaf,
    in a block of its own signed by both, in one store transaction. Verifiers that pin the old
    key follow it to the new one; verifiers that pin the new key follow it back. Then restart
    the sealer with --key NEW.key --previous-key OLD.key until the overlap has passed, and
    with --key NEW.key alone after. docs/SEALER.md, Rotating the log key.
    """
    old = load_signer(key_file)
    new = load_signer(new_key_file)
    if old.verifier == new.verifier:
        raise InputError("--new-key: is the current key; make a new one with auditseal keygen")
    now = _now_ms()

    with BlockStore.open(store) as db:

        def seal(tip: LogTip) -> BuiltBlock:
            rotations = load_rotations(db, origin)
            if not rotations:
                try:  # before the first rotation, the log's key is the one that signs it
                    SignedNote.from_text(db.latest_checkpoint(origin)).verify([old.verifier])
                except VerifierError as exc:
                    raise InputError(
                        f"--key: the latest checkpoint of {origin} is not signed by "
                        f"{old.verifier.to_string()}: {exc}"
                    ) from exc
            built = build_rotation_block(tip, old, new, overlap, now)
            history = KeyHistory(KeySet(()), origin, list(rotations))
            (record,) = built.block.entries
            try:
                history.add(tip.size, open_rotation_record(record, tip.size, origin))
            except RotationError as exc:
                raise InputError(f"--key: {exc}") from exc
            checkpoint_signers(origin, rotations, tip.size + 1, old)  # old must be current
            return built

        built = db.append_log_record(origin, seal)
    h = built.block.header
    emit(
        as_json,
        {
            "log": origin,
            "record_index": h.start,
            "block": h.number,
            "old_key": old.verifier.to_string(),
            "new_key": new.verifier.to_string(),
            "from_size": h.end,
            "until": h.end + 1 + overlap,
            "checkpoint": built.block.checkpoint,
        },
        f"{origin}: rotation record sealed as leaf {h.start} in block {h.number}: "
        f"{new.verifier.to_string()} signs from size {h.end}; the old key co-signs until size "
        f"{h.end + 1 + overlap} (run the sealer with --key NEW --previous-key OLD until then)",
    )


@log.command("purge")
@store_option()
def log_purge(store: Location) -> None:
    """Move the WAL into the database file and truncate it (after a redaction that could not)."""
    with BlockStore.open(store) as db:
        db.purge_wal()
        click.echo(f"{db.location}: WAL purged")
