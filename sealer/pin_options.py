"""The command-line options that pin the anchor contract, shared by ``verify``, ``monitor`` and
``dashboard``: the same names, environment variables and defaults everywhere."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from verifier.errors import FormatError
from verifier.pins import DEFAULT_RECORD, ENV_RECORD, read_pins

__all__ = ["contract_pin_options", "resolve_contract_pin"]

F = TypeVar("F", bound=Callable[..., object])


def contract_pin_options(f: F) -> F:
    """``--contract``, ``--chain-id`` and ``--deployment`` (the record giving their defaults)."""
    for option in reversed(
        (
            click.option(
                "--contract",
                envvar="AUDITSEAL_CONTRACT",
                show_envvar=True,
                help="Pinned AuditAnchor address [default: from the deployment record].",
            ),
            click.option(
                "--chain-id",
                type=click.IntRange(min=1),
                envvar="AUDITSEAL_CHAIN_ID",
                show_envvar=True,
                help="Pinned chain id; receipts must name it [default: from the deployment "
                "record].",
            ),
            click.option(
                "--deployment",
                type=click.Path(dir_okay=False, path_type=Path),
                default=DEFAULT_RECORD,
                envvar=ENV_RECORD,
                show_default=True,
                show_envvar=True,
                help="Anchor deployment record giving the default contract and chain id.",
            ),
        )
    ):
        f = option(f)
    return f


def resolve_contract_pin(
    contract: str | None, chain_id: int | None, deployment: Path
) -> tuple[str | None, int | None]:
    """The flags' contract and chain id, else the deployment record's; a malformed record is a
    usage error naming the file and the field."""
    try:
        pins = read_pins(deployment)
    except FormatError as exc:
        raise click.BadParameter(str(exc), param_hint="--deployment") from exc
    return contract or pins.address, chain_id if chain_id is not None else pins.chain_id
