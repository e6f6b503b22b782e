"""``auditseal ingest ...`` and ``auditseal simulate``: wiring only. Heavy imports (Kafka,
aiohttp) happen inside the commands, so listing commands stays cheap."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from auditseal.cli.options import (
    bootstrap_option,
    events_topic_option,
    host_port,
    json_option,
    kafka_config_option,
    listen_option,
)
from auditseal.transport.kafka_settings import KafkaSettings

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
@bootstrap_option()
@kafka_config_option()
@events_topic_option()
@_tokens_option("Re-read on change.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_GATEWAY_DIR,
    show_default=True,
    help="Where the adapters' per-source sequence counters live.",
)
@click.option("--max-event-bytes", type=click.IntRange(1024), default=1 << 20, show_default=True)
@click.option(
    "--ack-timeout",
    type=click.FloatRange(0.1),
    default=10.0,
    show_default=True,
    help="Seconds to wait for Kafka before answering 503.",
)
def serve(
    listen: tuple[str, int],
    bootstrap: str | None,
    kafka_settings: KafkaSettings,
    topic: str,
    tokens_path: Path,
    state_dir: Path,
    max_event_bytes: int,
    ack_timeout: float,
) -> None:
    """Run the HTTP gateway: POST /v1/events, /v1/adapters/k8s, /v1/adapters/teleport.

    Answers 202 only once Kafka acknowledged (acks=all); 400 with every field error; 401/403
    for tokens; 413 for oversize; 503 with Retry-After when Kafka is unavailable.
    """
    from aiohttp import web

    from auditseal.ingest.gateway import GatewayConfig, make_app

    host, port = listen
    config = GatewayConfig(
        bootstrap=bootstrap or _default_bootstrap(),
        tokens_path=tokens_path,
        state_dir=state_dir,
        topic=topic,
        max_event_bytes=max_event_bytes,
        max_body_bytes=max(32 << 20, max_event_bytes),
        ack_timeout_s=ack_timeout,
        kafka_config=kafka_settings.confluent(),
    )
    app = make_app(config)
    click.echo(
        f"auditseal gateway on http://{host_port(listen)} -> Kafka {config.bootstrap} topic {topic}"
    )
    web.run_app(app, host=host, port=port, print=None)


@ingest.command("token")
@click.option("--source", required=True, help="The event source this token may publish for.")
@_tokens_option("The token is added to it.")
def token(source: str, tokens_path: Path) -> None:
    """Create a bearer token for SOURCE; prints it once, stores only its hash."""
    from auditseal.transport.tokens import add_token

    click.echo(add_token(tokens_path, source))


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
