"""``auditseal ingest ...`` and ``auditseal simulate``: wiring only. Heavy imports (Kafka,
aiohttp) happen inside the commands, so listing commands stays cheap."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from auditseal.cli.options import (
    Expiry,
    bootstrap_option,
    events_topic_option,
    json_option,
    kafka_config_option,
    listen_option,
    server_tls_options,
)
from auditseal.transport.kafka_settings import KafkaSettings
from auditseal.transport.tls import ServerTLS

DEFAULT_GATEWAY_DIR = Path(".auditseal") / "gateway"
DEFAULT_TOKENS = DEFAULT_GATEWAY_DIR / "tokens"

F = TypeVar("F", bound=Callable[..., Any])


def _default_bootstrap() -> str:
    from auditseal.infra.state import endpoints

    return endpoints()[0]


def _tokens_option(note: str) -> Callable[[F], F]:
    """``--tokens``: the gateway's tokens file (hashes of bearer tokens, by source)."""
    return click.option(
        "--tokens",
        "tokens_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=DEFAULT_TOKENS,
        show_default=True,
        envvar="AUDITSEAL_GATEWAY_TOKENS",
        show_envvar=True,
        help=f"The gateway's tokens file (see `auditseal ingest token`). {note}",
    )


@click.group()
def ingest() -> None:
    """Take audit events in: the HTTP gateway and its tokens."""


@ingest.command("serve")
@listen_option("127.0.0.1:8080", "AUDITSEAL_GATEWAY_LISTEN")
@server_tls_options("the gateway")
@bootstrap_option()
@kafka_config_option()
@events_topic_option()
@_tokens_option("Re-read on change; an empty file is fine when clients use certificates.")
@click.option(
    "--client-certs",
    "client_certs",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="AUDITSEAL_GATEWAY_CLIENT_CERTS",
    show_envvar=True,
    help="With --tls-client-ca: the file mapping client-certificate names (uri:..., dns:..., "
    "email:..., cn:...) to the sources they may publish (docs/INGEST.md). Re-read on change.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_GATEWAY_DIR,
    show_default=True,
    help="Where the adapters' per-source sequence counters live.",
)
@click.option(
    "--max-event-bytes",
    type=click.IntRange(1024),
    default=1 << 20,
    show_default=True,
    help="Largest event, encoded (413 beyond).",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(1024),
    help="Largest request body (413 beyond) [default: 4 MiB, or --max-event-bytes if larger].",
)
@click.option(
    "--max-batch-events",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Most events in one request, counted before parsing (413 beyond).",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(0.1),
    default=10.0,
    show_default=True,
    help="Seconds for a connection's TLS handshake, then for each complete request head "
    "(from connecting, and from the previous response: the idle time).",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(0.1),
    default=30.0,
    show_default=True,
    help="Seconds for a request body to arrive whole (408 and the connection closed beyond).",
)
@click.option(
    "--rate-limit",
    type=click.FloatRange(0),
    default=10_000.0,
    show_default=True,
    help="Events per second per client (a token's source, or a certificate); 429 with "
    "Retry-After beyond; 0 for no limit.",
)
@click.option(
    "--rate-burst",
    type=click.FloatRange(1),
    help="Events a client may send at once before --rate-limit applies [default: 2 s worth].",
)
@click.option(
    "--ack-timeout",
    type=click.FloatRange(0.1),
    default=10.0,
    show_default=True,
    help="Seconds to wait for Kafka before answering 503.",
)
def serve(
    listen: tuple[str, int],
    tls: ServerTLS | None,
    insecure_plaintext: bool,
    bootstrap: str | None,
    kafka_settings: KafkaSettings,
    topic: str,
    tokens_path: Path,
    client_certs: Path | None,
    state_dir: Path,
    max_event_bytes: int,
    max_body_bytes: int | None,
    max_batch_events: int,
    header_timeout: float,
    body_timeout: float,
    rate_limit: float,
    rate_burst: float | None,
    ack_timeout: float,
) -> None:
    """Run the HTTP gateway: POST /v1/events, /v1/adapters/k8s, /v1/adapters/teleport.

    Answers 202 only once Kafka acknowledged (acks=all); 400 with the first field errors;
    401/403 for clients and their sources; 408 for a body too slow; 413 for oversize; 429 over
    the rate limit; 503 with Retry-After when Kafka is unavailable. Beyond loopback it needs
    --tls-cert and --tls-key (or --insecure-plaintext behind a TLS proxy).
    """
    from auditseal.cli.output import fail
    from auditseal.transport.client_certs import CertMapError
    from auditseal.transport.listen import PlaintextRefused, check_plaintext, serve_app, url
    from auditseal.transport.tls import TLSConfigError
    from auditseal.transport.tokens import TokenFileError

    if client_certs is not None and (tls is None or tls.client_ca is None):
        raise click.UsageError("--client-certs needs --tls-client-ca (and --tls-cert, --tls-key)")
    if max_body_bytes is None:
        max_body_bytes = max(4 << 20, max_event_bytes)
    elif max_body_bytes < max_event_bytes:
        raise click.UsageError("--max-body-bytes must be at least --max-event-bytes")
    try:
        check_plaintext(listen, tls, insecure_plaintext, "the gateway")
        if tls is not None:
            tls.context()  # a bad file is named now, not when the first client connects
        from auditseal.ingest.gateway import GatewayConfig, make_app

        config = GatewayConfig(
            bootstrap=bootstrap or _default_bootstrap(),
            tokens_path=tokens_path,
            state_dir=state_dir,
            topic=topic,
            client_certs_path=client_certs,
            max_event_bytes=max_event_bytes,
            max_body_bytes=max_body_bytes,
            max_batch_events=max_batch_events,
            body_timeout_s=body_timeout,
            rate_limit=rate_limit,
            rate_burst=rate_burst,
            ack_timeout_s=ack_timeout,
            kafka_config=kafka_settings.confluent(),
        )
        app = make_app(config)
    except (PlaintextRefused, TLSConfigError, TokenFileError, CertMapError) as exc:
        fail(str(exc), 2)
    click.echo(f"auditseal gateway on {url(listen, tls)} -> Kafka {config.bootstrap} topic {topic}")
    serve_app(app, listen, tls, header_timeout=header_timeout)


@ingest.command("token")
@click.option("--source", required=True, help="The event source this token may publish for.")
@click.option(
    "--expires",
    type=Expiry(),
    help="When the token stops working: a time (2027-01-31T00:00:00Z) or a duration from now "
    "(90s, 15m, 12h, 30d, 2w) [default: never; revoke by deleting its line].",
)
@_tokens_option("The token is added to it.")
def token(source: str, expires: datetime | None, tokens_path: Path) -> None:
    """Create a bearer token for SOURCE; prints it once, stores only its hash (and expiry).

    Revoke a token by deleting its line from the tokens file: the gateway stops accepting it
    within a second. A token past its expiry is refused the same way.
    """
    from auditseal.cli.output import fail
    from auditseal.transport.tokens import TokenFileError, add_token

    try:
        click.echo(add_token(tokens_path, source, expires=expires))
    except TokenFileError as exc:
        fail(str(exc), 2)


@click.command()
@click.option(
    "--rate",
    type=click.FloatRange(min=0.1),
    default=1000.0,
    show_default=True,
    help="Events per second, all proxies together.",
)
@click.option(
    "--duration", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="Seconds."
)
@click.option(
    "--events",
    type=click.IntRange(min=1),
    help="Send exactly this many events at --rate (instead of --rate x --duration).",
)
@click.option(
    "--sources",
    type=click.IntRange(1, 10_000),
    default=8,
    show_default=True,
    help="Number of simulated proxies.",
)
@click.option("--via", type=click.Choice(["kafka", "http"]), default="kafka", show_default=True)
@bootstrap_option("With --via kafka.")
@kafka_config_option("With --via kafka.")
@events_topic_option("With --via kafka.")
@click.option(
    "--url",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Gateway URL, with --via http.",
)
@_tokens_option("With --via http: one token per simulated proxy is added to it.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".auditseal") / "simulator",
    show_default=True,
    help="Sequence counters and spool of the simulated proxies.",
)
@click.option("--seed", type=int, default=1, show_default=True)
@json_option
def simulate(
    rate: float,
    duration: float,
    events: int | None,
    sources: int,
    via: str,
    bootstrap: str | None,
    kafka_settings: KafkaSettings,
    topic: str,
    url: str,
    tokens_path: Path,
    state_dir: Path,
    seed: int,
    as_json: bool,
) -> None:
    """Send realistic traffic of simulated access proxies (database, SSH, API, Kubernetes)."""
    from auditseal.ingest.simulator import run_http, run_kafka

    total = events if events is not None else max(1, int(rate * duration))
    if via == "kafka":
        counts = run_kafka(
            bootstrap or _default_bootstrap(),
            topic,
            state_dir,
            rate,
            total,
            sources,
            seed,
            progress=not as_json,
            kafka_config=kafka_settings.confluent(),
        )
    else:
        counts = run_http(
            url, tokens_path, state_dir, rate, total, sources, seed, progress=not as_json
        )
    _report(counts, as_json)


def _report(counts: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(counts, indent=2))
        return
    click.echo(
        f"sent {counts['sent']} events from {counts['sources']} proxies in "
        f"{counts['seconds']:.1f} s ({counts['rate']:.0f}/s): {counts['acknowledged']} "
        f"acknowledged, {counts['failed']} failed, {counts['pending']} still pending"
    )
    if counts["failed"] or counts["pending"]:
        sys.exit(3)
