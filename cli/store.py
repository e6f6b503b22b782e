"""``auditseal store``: commands on a block store as a whole (``store init``, ``store copy``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import click

from auditseal.cli.options import StoreLocation, json_option, store_option
from auditseal.cli.output import emit, fail
from auditseal.store.blockstore import BlockStore
from auditseal.store.copy import CopyResult, copy_store
from auditseal.store.database import ROLES, Location, may_exist

__all__ = ["store"]

_WHERE = (
    "A SQLite file or a postgresql://USER@HOST:PORT/DB URL; give the password in $PGPASSWORD "
    "or ~/.pgpass, not in the URL, so that it stays out of process lists."
)
_PROGRESS_EVERY_S = 1.0


@click.group()
def store() -> None:
    """Work on a block store as a whole."""


@store.command("init")
@store_option(default=None)
@json_option
def store_init(store: Location | None, as_json: bool) -> None:
    """Create an empty block store: a SQLite file, or in an empty PostgreSQL database the
    tables, the append-only triggers and the roles auditseal_writer, auditseal_reader and
    auditseal_redactor (when the connecting user may create roles; see docs/DEPLOY.md).

    Run it once as the database's owner; sealers then log in as members of auditseal_writer.
    An existing store is opened and left as it is.
    """
    if store is None:
        fail("name the store to create: --store PATH or --store postgresql://...", 2)
    with BlockStore.open(store, create=True) as db:
        roles = db.roles()
        logs = db.logs()
    missing = [] if db.path is not None else [r for r in ROLES if r not in roles]
    text = f"{db.location}: block store ready ({len(logs)} logs)"
    if missing:
        text += f"; roles missing (the user may not create roles): {', '.join(missing)}"
    elif roles:
        text += f"; roles {', '.join(roles)}"
    emit(
        as_json,
        {"store": db.location, "logs": len(logs), "roles": roles, "missing_roles": missing},
        text,
    )


@store.command("copy")
@click.option(
    "--from", "source", type=StoreLocation(), required=True, help=f"The store to copy. {_WHERE}"
)
@click.option(
    "--to",
    "destination",
    type=StoreLocation(),
    required=True,
    help=f"The store to copy into: new, empty, or a partial copy to resume. {_WHERE}",
)
@json_option
def store_copy(source: Location, destination: Location, as_json: bool) -> None:
    """Copy a block store block by block, checking each block, e.g. SQLite to PostgreSQL.

    Every log is copied in the order its blocks were committed; each block is replayed (header
    chain, entries, tree root and nodes, the checkpoint's origin, size and root; no key needed,
    signatures are carried as they are) before it is written in one transaction. Then the
    publication outbox, redactions, log generations, claims, anchors with their receipts,
    anchor intents and the anchor outbox. Run again after an interruption to resume; a
    destination holding anything the source does not is refused. See docs/STORE.md.
    """
    if not may_exist(source):
        fail(f"{source}: no block store here (give --from)", 2)
    with (
        BlockStore.open(source, readonly=True) as src,
        BlockStore.open(destination, create=True) as dst,
    ):
        click.echo(f"copying {src.location} to {dst.location}", err=True)
        result = copy_store(src, dst, _progress())
    _report(result, as_json)


def _progress() -> Callable[[str, int, int], None]:
    """One line on stderr per log at most every second: blocks and entries copied so far."""
    last: dict[str, float] = {}

    def report(origin: str, blocks: int, entries: int) -> None:
        now = time.monotonic()
        if now - last.get(origin, 0.0) >= _PROGRESS_EVERY_S:
            last[origin] = now
            click.echo(f"  {origin}: {blocks} blocks, {entries} entries copied", err=True)

    return report


def _report(result: CopyResult, as_json: bool) -> None:
    lines = [f"{result.source} -> {result.destination}: copied, every block checked"]
    for log in result.logs:
        lines.append(
            f"  {log.origin}: {log.blocks} blocks, {log.entries} entries "
            f"({log.copied_blocks} blocks, {log.copied_entries} entries copied now)"
        )
    added = ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in result.added.items() if n)
    lines.append(f"  also added: {added or 'nothing else'}")
    emit(
        as_json,
        {
            "from": result.source,
            "to": result.destination,
            "complete": result.complete,
            "logs": [
                {
                    "log": log.origin,
                    "blocks": log.blocks,
                    "entries": log.entries,
                    "copied_blocks": log.copied_blocks,
                    "copied_entries": log.copied_entries,
                }
                for log in result.logs
            ],
            "added": result.added,
        },
        "\n".join(lines),
    )
