"""``auditseal verify``: prove one block of a store against the pinned log keys and the chain.

The checks are :class:`verifier.verify.Verifier`'s; this module only reads the store
(:mod:`sealer.verify_material`), the pinned values (flags, environment, the anchor deployment
record) and prints the report. Exit codes: 0 valid, 1 invalid (first failing check named),
2 usage or input error, 3 not anchored yet or the chain unreachable.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from sealer.errors import SealerError
from sealer.store import BlockStore
from sealer.verify_material import block_material, only_log
from verifier.anchoring import AnchorReader
from verifier.errors import VerifierError
from verifier.note import NoteVerifier
from verifier.verify import Verifier

DEFAULT_STORE = Path(".auditseal") / "store.db"
DEFAULT_RECORD = Path(".auditseal") / "anchor" / "deployment.json"  # anchor.deploy's record


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"auditseal: error: {message}", err=True)
    sys.exit(code)


def _deployment(path: Path) -> dict[str, Any]:
    """The anchor deployment record (chain id, contract address), or {} if there is none."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        _fail(f"{path}: unreadable deployment record: {exc}", 2)
    if not isinstance(data, dict):
        _fail(f"{path}: not a deployment record", 2)
    return data


@click.command("verify")
@click.option("--block", "number", type=click.IntRange(min=0), required=True, help="Block number.")
@click.option(
    "--log",
    "origin",
    envvar="AUDITSEAL_LOG",
    show_envvar=True,
    help="Log origin; may be omitted when the store holds one log.",
)
@click.option(
    "--store",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=DEFAULT_STORE,
    envvar="AUDITSEAL_STORE",
    show_default=True,
    show_envvar=True,
    help="Block store file (SQLite) to read the block and its proofs from.",
)
@click.option(
    "--rpc", envvar="AUDITSEAL_RPC", show_envvar=True, help="JSON-RPC URL of the anchor chain."
)
@click.option(
    "--contract",
    envvar="AUDITSEAL_CONTRACT",
    show_envvar=True,
    help="Pinned AuditAnchor address [default: from the deployment record].",
)
@click.option(
    "--chain-id",
    type=click.IntRange(min=1),
    envvar="AUDITSEAL_CHAIN_ID",
    show_envvar=True,
    help="Pinned chain id [default: from the deployment record].",
)
@click.option(
    "--deployment",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_RECORD,
    envvar="AUDITSEAL_ANCHOR_DEPLOYMENT",
    show_default=True,
    show_envvar=True,
    help="Anchor deployment record giving the default contract and chain id.",
)
@click.option(
    "--log-key",
    "log_keys",
    multiple=True,
    envvar="AUDITSEAL_LOG_KEY",
    show_envvar=True,
    help="Pinned log verifier key (name+keyid+base64); repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(
    number: int,
    origin: str | None,
    store: Path,
    rpc: str | None,
    contract: str | None,
    chain_id: int | None,
    deployment: Path,
    log_keys: tuple[str, ...],
    as_json: bool,
) -> None:
    """Prove block N of a log: its entries, tree, signed checkpoint and header chain, and that
    it is covered by a checkpoint whose anchor root the pinned contract holds on chain.

    Trusts only the pinned log keys, the pinned contract and the chain. Exit code 0 valid,
    1 invalid (the first failing check is named), 2 usage or input error, 3 not anchored yet
    or the chain unreachable.
    """
    if not log_keys:
        _fail("no pinned log key: give --log-key or set AUDITSEAL_LOG_KEY", 2)
    record = _deployment(deployment)
    contract = contract or record.get("address")
    if chain_id is None and isinstance(record.get("chain_id"), int):
        chain_id = record["chain_id"]
    try:
        keys = [NoteVerifier.from_string(k) for k in log_keys]
        reader: AnchorReader | None = None
        if rpc and contract:
            from verifier.chain import Web3AnchorReader  # web3 only when a chain is asked

            reader = Web3AnchorReader(rpc, contract)
        with BlockStore.open(store, readonly=True) as db:
            material = block_material(db, origin or only_log(db), number)
    except (SealerError, VerifierError) as exc:
        _fail(str(exc), 2)
    if rpc and not contract:
        _fail("no pinned contract: give --contract or a deployment record", 2)
    report = Verifier(keys, reader, contract, chain_id, int(time.time())).verify_block(material)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.render(), nl=False)
    sys.exit(report.exit_code)
