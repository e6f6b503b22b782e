"""``auditseal serve``: the read API over a block store (see readapi/app.py, docs/SERVE.md).

aiohttp is imported inside the command, so listing commands stays cheap.
"""

from __future__ import annotations

import click

from auditseal.cli.options import host_port, listen_option, store_option
from auditseal.store.database import Location

DEFAULT_ENTRY_MAX_AGE_S = 60  # readapi.app's default, repeated so that --help loads no aiohttp


@click.command()
@store_option()
@listen_option("127.0.0.1:8090", "AUDITSEAL_API_LISTEN")
@click.option(
    "--entry-max-age",
    type=click.IntRange(0),
    default=DEFAULT_ENTRY_MAX_AGE_S,
    show_default=True,
    help="Cache-Control max-age (seconds) of answers holding entries, which redaction changes.",
)
def serve(store: Location, listen: tuple[str, int], entry_max_age: int) -> None:
    """Serve the block store read-only over HTTP, as JSON, for verifiers and dashboards.

    Logs are named by origin in the query parameter `log`; hashes are hex, checkpoint notes
    and block headers verbatim.

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
    GET /healthz, GET /metrics                   liveness, Prometheus metrics

    Errors are JSON {"error": ...}: 400 for a bad parameter, 404 for an unknown log, block,
    entry or event. The store is opened read-only; there is no authentication, so listen on
    loopback or behind a proxy that authenticates (entries hold event values in clear).
    """
    from aiohttp import web

    from auditseal.readapi.app import make_app
    from auditseal.store.database import public_location

    host, port = listen
    app = make_app(store, entry_max_age_s=entry_max_age)
    click.echo(f"auditseal read API on http://{host_port(listen)} serving {public_location(store)}")
    web.run_app(app, host=host, port=port, print=None)
