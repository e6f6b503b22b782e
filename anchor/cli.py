"""``auditseal anchor ...``: the on-chain side of anchoring (see docs/ANCHORING.md).

Wired into the root CLI lazily by ``sealer/cli.py`` (LAZY_COMMANDS), whose ``main()`` turns an
AnchorError into ``auditseal: error: <message>`` and its exit code. The chain key is read
from --key (a 0600 file) or $AUDITSEAL_CHAIN_KEY and never printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

__all__ = ["anchor"]

DEFAULT_RPC = "http://127.0.0.1:8545"  # anchor.chain_client.DEFAULT_RPC, without importing web3
DEFAULT_RECORD = Path(".auditseal") / "anchor" / "deployment.json"  # anchor.deploy's


@click.group("anchor")
def anchor() -> None:
    """The Ethereum side: deploy the AuditAnchor contract (the anchor service is not built yet).

    Exit codes: 0 ok, 2 usage or input (key file, flags, funds, chain id, a revert),
    3 the chain unavailable (RPC unreachable, not mined in time, base fee above the cap).
    """


@anchor.command("deploy")
@click.option(
    "--rpc",
    "rpc_url",
    default=DEFAULT_RPC,
    envvar="AUDITSEAL_RPC",
    show_default=True,
    show_envvar=True,
    help="JSON-RPC URL of the chain (Anvil, Sepolia, Holesky, ...).",
)
@click.option(
    "--key",
    "key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="AUDITSEAL_CHAIN_KEY_FILE",
    show_envvar=True,
    help="File holding the deployer's private key (0x + 64 hex digits), mode 0600. "
    "Without it, $AUDITSEAL_CHAIN_KEY holds the key.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_RECORD,
    envvar="AUDITSEAL_ANCHOR_DEPLOYMENT",
    show_default=True,
    show_envvar=True,
    help="Deployment record to write (JSON); other anchor commands read it.",
)
@click.option(
    "--anchorer",
    "anchorers",
    multiple=True,
    metavar="ADDR",
    help="Also authorise this address to anchor (repeatable); the deployer always is.",
)
@click.option(
    "--chain-id",
    type=click.IntRange(min=1),
    default=None,
    envvar="AUDITSEAL_CHAIN_ID",
    show_envvar=True,
    help="Refuse to deploy unless the RPC endpoint serves this chain (Sepolia 11155111).",
)
@click.option(
    "--max-fee-gwei",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Cap on the EIP-1559 max fee per gas; a base fee above it is exit 3 (retry later).",
)
@click.option(
    "--confirmations",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Blocks to wait for, counting the one that includes the transaction.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=180.0,
    show_default=True,
    help="Seconds to wait for the receipt and confirmations.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing deployment record.")
@click.option("--json", "as_json", is_flag=True, help="Print the deployment record as JSON.")
def deploy(
    rpc_url: str,
    key_file: Path | None,
    out: Path,
    anchorers: tuple[str, ...],
    chain_id: int | None,
    max_fee_gwei: float | None,
    confirmations: int,
    timeout: float,
    force: bool,
    as_json: bool,
) -> None:
    """Deploy AuditAnchor from the committed artifact and write the deployment record.

    The deployer becomes the owner and an anchorer; --anchorer adds more, in the same
    transaction. Before sending: the key, the record path, the chain id and the balance are
    checked, so a failure there costs nothing. After the receipt the code at the new address
    is compared with the artifact.
    """
    from anchor import deploy as deployment
    from anchor.artifact import load_artifact
    from anchor.chain_client import ChainClient, ChainKey, gwei_to_wei

    key = ChainKey.load(key_file)
    extra = deployment.checksummed(anchorers)
    deployment.check_writable(out, overwrite=force)
    artifact = load_artifact()
    client = ChainClient.connect(rpc_url, expected_chain_id=chain_id)
    record = deployment.deploy(
        client,
        key,
        artifact,
        extra,
        max_fee_cap=gwei_to_wei(max_fee_gwei) if max_fee_gwei is not None else None,
        timeout=timeout,
        confirmations=confirmations,
    )
    deployment.write_record(record, out)
    if as_json:
        click.echo(json.dumps({**record.to_json(), "record_file": str(out)}, indent=2))
        return
    click.echo(
        f"{record.contract} deployed at {record.address} on chain {record.chain_id} "
        f"(block {record.block_number}, tx {record.tx_hash}, gas {record.gas_used}); "
        f"owner and anchorer {record.owner}"
    )
    for extra_anchorer in record.anchorers[1:]:
        click.echo(f"anchorer {extra_anchorer}")
    click.echo(f"record written to {out}")
