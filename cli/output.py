"""How commands end: one result on stdout (text or ``--json``), or one error line on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

__all__ = ["emit", "fail", "warn_alias"]


def emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    """Print ``data`` as JSON with ``--json``, else ``text``."""
    click.echo(json.dumps(data, indent=2) if as_json else text)


def fail(message: str, code: int) -> NoReturn:
    """End a command with one line on stderr, ``auditseal: error: MESSAGE``, and exit ``code``."""
    click.echo(f"auditseal: error: {message}", err=True)
    sys.exit(code)


def warn_alias(old: str, new: str) -> None:
    """Tell that a hidden old spelling was used; it goes away in the next release."""
    click.echo(f"auditseal: warning: {old} is deprecated; use {new}", err=True)
