"""``auditseal serve``: the read API over a block store (see readapi/app.py, docs/SERVE.md), and
``auditseal serve token``: a read token for it.

aiohttp is imported inside the command, so listing commands stays cheap.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from auditseal.cli.options import (
    listen_option,
    read_access_options,
    read_token_options,
    server_tls_options,
    store_option,
)
from auditseal.cli.output import fail
from auditseal.store.database import Location
from auditseal.transport.tls import ServerTLS

DEFAULT_ENTRY_MAX_AGE_S = 60  # readapi.app's default, repeated so that --help loads no aiohttp
DEFAULT_TOKENS = Path(".auditseal") / "read-api" / "tokens"
ENV_PREFIX = "AUDITSEAL_API"


@click.group(invoke_without_command=True, subcommand_metavar="[token --name NAME]")
@store_option()
@listen_option("127.0.0.1:8090", "AUDITSEAL_API_LISTEN")
@server_tls_options("the read API")
@read_access_options("the read API", "serve", DEFAULT_TOKENS, ENV_PREFIX)
@click.option(
    "--entry-max-age",
    type=click.IntRange(0),
    default=DEFAULT_ENTRY_MAX_AGE_S,
    show_default=True,
    help="Cache-Control max-age (seconds) of answers holding entries, which redaction changes.",
)
@click.pass_context
def serve(
    ctx: click.Context,
    store: Location,
    listen: tuple[str, int],
    tls: ServerTLS | None,
    insecure_plaintext: bool,
    tokens_path: Path | None,
    reader_certs: tuple[str, ...],
    no_auth: bool,
    allowed_host: tuple[str, ...],
    entry_max_age: int,
) -> None:
    """Serve the block store read-only over HTTP(S), as JSON, for verifiers and dashboards.
    `auditseal serve token --name NAME` makes a read token for it.

    \b
    Readers authenticate (every route but /healthz), by one of:
      a read token     Authorization: Bearer TOKEN (`auditseal serve token`; hashes in --tokens)
      a client cert    with --tls-client-ca: any certificate it signed, or --reader-cert names
      nothing          --no-auth, only on a loopback address (said loudly at start)
    Requests whose Host is not the listen address, localhost or an --allowed-host get 421.
    A non-loopback address needs --tls-cert/--tls-key (or --insecure-plaintext behind a proxy
    that terminates TLS).

    \b
    GET /v1/logs                                 every log: size, blocks, latest checkpoint
    GET /v1/checkpoint?log=O                     latest signed checkpoint (text/plain)
    GET /v1/checkpoint.json?log=O                the same with size and root
    GET /v1/blocks?log=O&from=N&limit=M          block headers (limit <= 1000)
    GET /v1/block?log=O&number=N[&entries=true]  one block [with its entries]
    GET /v1/entries?log=O&start=I&limit=M        entries from leaf index I
    GET /v1/entry?log=O&index=I | &position=P    one entry, by leaf index or Kafka offset
    GET /v1/event?id=ID[&log=O]                  every entry sealed with event ID
    GET /v1/proof/inclusion?log=O&index=I[&size=N]
    GET /v1/proof/consistency?log=O&old=M[&new=N]
    GET /v1/bundle?log=O&block=N | ?event=ID    a proof bundle, as `auditseal bundle`
    GET /healthz (open), GET /metrics            liveness, Prometheus metrics

    Errors are JSON {"error": ...}: 400 for a bad parameter, 401 without a reader's
    credentials, 404 for an unknown log, block, entry or event, 421 for a foreign Host. The
    store is opened read-only.
    """
    if ctx.invoked_subcommand is not None:
        return
    from auditseal.readapi.app import make_app
    from auditseal.store.database import public_location
    from auditseal.transport.listen import serve_app, url
    from auditseal.transport.readers import SETUP_ERRORS, read_server

    try:
        server = read_server(
            listen,
            tls,
            insecure_plaintext,
            what="the read API",
            tokens_path=tokens_path or DEFAULT_TOKENS,
            tokens_given=tokens_path is not None,
            reader_certs=reader_certs,
            no_auth=no_auth,
            allowed_host=allowed_host,
            token_command="serve",
        )
    except SETUP_ERRORS as exc:
        fail(str(exc), 2)
    app = make_app(store, access=server.access, hosts=server.hosts, entry_max_age_s=entry_max_age)
    for note in server.notes:
        click.echo(f"auditseal serve: {note}", err=True)
    click.echo(f"auditseal read API on {url(listen, tls)} serving {public_location(store)}")
    serve_app(app, listen, tls)


@serve.command("token")
@read_token_options("the read API", DEFAULT_TOKENS, ENV_PREFIX)
def token(name: str, expires: datetime | None, tokens_path: Path | None) -> None:
    """Create a read token for NAME: prints it once, keeps only its hash in --tokens.

    A running `auditseal serve` picks it up within a second; delete its line to revoke it.
    Clients send it as `Authorization: Bearer TOKEN`; `auditseal verify --source URL` reads
    it from --api-token-file or $AUDITSEAL_API_TOKEN.
    """
    from auditseal.transport.tokens import TokenFileError, add_token

    path = tokens_path or DEFAULT_TOKENS
    try:
        click.echo(add_token(path, name, prefix="asr_", expires=expires))
    except TokenFileError as exc:
        fail(f"--name {exc}", 2)
    except OSError as exc:
        fail(f"{path}: cannot add the token: {exc.strerror or exc}", 2)
    until = f", until {expires.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}" if expires else ""
    click.echo(f"read token for {name}{until}; its hash is in {path}", err=True)
