"""The ``auditseal`` command line: wiring only, every decision lives in the packages.

The root group lives here because the sealer owns the store and the keys that most commands
need; ``verifier`` stays free of imports from the other packages.
Exit codes: 0 ok, 1 verification failed, 2 usage or input error, 3 service unavailable or the
state moved on (retry).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from sealer.blocks import Record
from sealer.errors import InputError, SealerError
from sealer.fsck import check_log
from sealer.log_writer import LogWriter
from sealer.signer import Signer
from sealer.store import DEFAULT_STORE, BlockStore
from verifier.errors import VerifierError
from verifier.note import NoteVerifier

store_option = click.option(
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_STORE,
    envvar="AUDITSEAL_STORE",
    show_default=True,
    show_envvar=True,
    help="Block store file (SQLite).",
)
log_option = click.option(
    "--log",
    "origin",
    required=True,
    envvar="AUDITSEAL_LOG",
    show_envvar=True,
    help="Log origin, e.g. auditseal.local/audit.events/0.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text)


# Subcommands owned by other packages, imported only when invoked, so that `auditseal verify`
# never loads Kafka clients. Each value is "module:attribute" of a click command or group.
LAZY_COMMANDS = {
    "verify": "sealer.verify_cli:verify",
    "bundle": "sealer.verify_cli:bundle",
    "anchor": "anchor.cli:anchor",
    "serve": "sealer.serve:serve",
    "dashboard": "sealer.dashboard:dashboard",
    "seal": "sealer.worker:seal",
    "dev": "infra.cli:dev",
    "demo": "infra.demo:demo",
    "ingest": "ingest.cli:ingest",
    "simulate": "ingest.cli:simulate",
    "monitor": "sealer.monitor:monitor",
}
OWN_PACKAGES = {"verifier", "sealer", "ingest", "infra", "anchor"}
# Modules of the `pipeline` extra: a command that needs a missing one says which extra to install.
PIPELINE_MODULES = {"confluent_kafka", "faust", "aiohttp", "aiokafka", "prometheus_client"}


def _module_exists(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        available = [name for name, target in LAZY_COMMANDS.items() if _module_exists(target)]
        return sorted([*super().list_commands(ctx), *available])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(cmd_name)
        if target is None or not _module_exists(target):
            return super().get_command(ctx, cmd_name)
        module_name, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="auditseal")
def cli() -> None:
    """auditseal: a tamper-evident audit trail.

    Audit events are sealed into append-only RFC 9162 Merkle logs with signed C2SP checkpoints,
    whose roots are anchored on Ethereum; anyone with the public keys can verify them.
    """


@cli.command()
@click.option("--name", required=True, help="Key name (no spaces or '+'), e.g. the log operator.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory for NAME.key (private, mode 0600) and NAME.pub (verifier key).",
)
@json_option
def keygen(name: str, out: Path, as_json: bool) -> None:
    """Create an Ed25519 signing key and print its verifier key.

    The private key is in the Go note format (PRIVATE+KEY+...), the verifier key in the
    name+keyid+base64 format that C2SP signed-note verifiers accept.
    """
    signer = Signer.generate(name)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create directory: {exc.strerror}") from exc
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    key_path, pub_path = out / f"{stem}.key", out / f"{stem}.pub"
    signer.write_private_file(key_path)
    vkey = signer.verifier.to_string()
    pub_path.write_text(vkey + "\n", encoding="utf-8")
    _emit(as_json, {"name": name, "key_file": str(key_path), "verifier_key": vkey}, vkey)


@cli.group()
def log() -> None:
    """Append to, inspect and prove a log in a block store."""


@log.command("append")
@store_option
@log_option
@click.option(
    "--key",
    "key_file",
    required=True,
    envvar="AUDITSEAL_SEALER_KEY_FILE",
    show_envvar=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private key file from `auditseal keygen`.",
)
@click.argument("input_file", type=click.File("rb"), default="-")
@json_option
def log_append(store: Path, origin: str, key_file: Path, input_file: Any, as_json: bool) -> None:
    """Seal each line of INPUT_FILE (default: stdin) as one entry, all in one block.

    Every newline ends an entry and a last line without one is an entry too; blank lines are
    entries; nothing is skipped or altered. Positions continue from the log's last entry.
    """
    from ingest.envelope import triage  # a line that is an event is findable by its id

    signer = Signer.from_file(key_file)
    data = input_file.read()
    lines = data.split(b"\n")
    if data.endswith(b"\n") or not data:
        lines.pop()  # the newline ended the last entry; it does not start another
    if not lines:
        raise InputError(f"{input_file.name}: no lines to append")
    with BlockStore.open(store, create=True) as db:
        writer = LogWriter(db, signer, _now_ms)
        first = writer.tip(origin).next_position
        now = _now_ms()
        records = [
            Record(first + i, now, None, line, triage(line)[0]) for i, line in enumerate(lines)
        ]
        block = writer.append(origin, records)
    h = block.header
    _emit(
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
@store_option
@log_option
def log_checkpoint(store: Path, origin: str) -> None:
    """Print the log's latest signed checkpoint, verbatim."""
    with BlockStore.open(store, readonly=True) as db:
        click.echo(db.latest_checkpoint(origin), nl=False)


@log.group("proof")
def log_proof() -> None:
    """Print inclusion and consistency proofs."""


@log_proof.command("inclusion")
@store_option
@log_option
@click.option("--index", type=int, required=True, help="Leaf index (0-based).")
@click.option("--size", type=int, default=None, help="Tree size (default: the log's size).")
@json_option
def proof_inclusion(store: Path, origin: str, index: int, size: int | None, as_json: bool) -> None:
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
    _emit(as_json, data, text)


@log_proof.command("consistency")
@store_option
@log_option
@click.option("--old", "old_size", type=int, required=True, help="Old tree size (> 0).")
@click.option(
    "--new", "new_size", type=int, default=None, help="New tree size (default: the log's)."
)
@json_option
def proof_consistency(
    store: Path, origin: str, old_size: int, new_size: int | None, as_json: bool
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
    _emit(as_json, data, text)


@log.command("check")
@store_option
@log_option
@click.option(
    "--log-key",
    "log_keys",
    multiple=True,
    required=True,
    envvar="AUDITSEAL_LOG_KEY",
    show_envvar=True,
    help="Pinned verifier key (name+keyid+base64); repeatable.",
)
@json_option
def log_check(store: Path, origin: str, log_keys: tuple[str, ...], as_json: bool) -> None:
    """Replay every block of a log from the store: entries, tree, chain, checkpoints, nodes."""
    verifiers = [NoteVerifier.from_string(k) for k in log_keys]
    with BlockStore.open(store, readonly=True) as db:
        result = check_log(db, origin, verifiers)
    _emit(
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
@store_option
@log_option
@click.option("--index", type=int, required=True, help="Leaf index whose value to erase.")
@click.option("--actor", required=True, help="Who asks for the erasure (recorded in the log).")
@click.option(
    "--reason", required=True, help="Why, e.g. a GDPR request reference (recorded in the log)."
)
@click.option(
    "--key",
    "key_file",
    required=True,
    envvar="AUDITSEAL_SEALER_KEY_FILE",
    show_envvar=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The log's private key file: the redaction record is signed into the log.",
)
@json_option
def log_redact(
    store: Path, origin: str, index: int, actor: str, reason: str, key_file: Path, as_json: bool
) -> None:
    """Erase one entry's value and salt, and seal a signed redaction record into the log.

    The record (which leaf, its leaf hash, who, why, when) is the next leaf of the log, in a
    block of its own, committed in the same transaction as the erasure; verifiers accept an
    erased entry only with it. The erased bytes are then purged from the store files (WAL
    included). Copies already published on audit.sealed are not touched: see docs/STORE.md.
    """
    signer = Signer.from_file(key_file)
    with BlockStore.open(store) as db:
        built = db.redact(origin, index, actor, reason, signer, _now_ms())
    h = built.block.header
    _emit(
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


@log.command("purge")
@store_option
def log_purge(store: Path) -> None:
    """Move the WAL into the database file and truncate it (after a redaction that could not)."""
    with BlockStore.open(store) as db:
        db.purge_wal()
    click.echo(f"{store}: WAL purged")


def fail(message: str, code: int) -> NoReturn:
    """End a command with one line on stderr, ``auditseal: error: MESSAGE``, and exit ``code``."""
    click.echo(f"auditseal: error: {message}", err=True)
    sys.exit(code)


def main() -> None:
    """Entry point: run the CLI, turning every known error into one line and an exit code."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted", 2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (SealerError, VerifierError) as exc:
        fail(str(exc), exc.exit_code)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in PIPELINE_MODULES:
            fail(
                f"this command needs the 'pipeline' extra ({exc.name} is not installed): "
                "pip install 'auditseal[pipeline]'",
                2,
            )
        raise
    except Exception as exc:
        # Every package's error root carries its exit code; one place turns them into a line.
        code = getattr(exc, "exit_code", None)
        if isinstance(code, int) and type(exc).__module__.split(".")[0] in OWN_PACKAGES:
            fail(str(exc), code)
        if isinstance(exc, OSError):
            fail(f"{exc.filename or ''}: {exc.strerror or exc}", 2)
        raise
