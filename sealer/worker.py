"""``auditseal seal``: run a sealer worker (a Faust worker). Wiring only."""

from __future__ import annotations

from pathlib import Path

import click

from sealer.store import DEFAULT_STORE


def _listen(value: str) -> tuple[str, int] | None:
    if value == "off":
        return None
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("want host:port or 'off'", param_hint="--metrics-listen")
    return host, int(port)


@click.command()
@click.option(
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_STORE,
    envvar="AUDITSEAL_STORE",
    show_envvar=True,
    show_default=True,
    help="Block store (SQLite); shared by every worker of this machine.",
)
@click.option(
    "--key",
    "key_file",
    required=True,
    envvar="AUDITSEAL_SEALER_KEY_FILE",
    show_envvar=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private key that signs the checkpoints (`auditseal keygen`).",
)
@click.option(
    "--bootstrap",
    default=None,
    envvar="AUDITSEAL_BOOTSTRAP",
    show_envvar=True,
    help="Kafka bootstrap servers (default: from `auditseal dev up`).",
)
@click.option("--topic", default="audit.events", show_default=True)
@click.option("--sealed-topic", default="audit.sealed", show_default=True)
@click.option(
    "--origin-prefix",
    default="auditseal.local",
    show_default=True,
    envvar="AUDITSEAL_ORIGIN_PREFIX",
    show_envvar=True,
    help="Logs are named PREFIX/TOPIC/PARTITION.",
)
@click.option(
    "--max-events",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="A block closes at this many records of one partition...",
)
@click.option(
    "--max-interval",
    type=click.FloatRange(0.01),
    default=1.0,
    show_default=True,
    help="...or when its oldest record waited this many seconds.",
)
@click.option(
    "--group",
    default="auditseal-sealer",
    show_default=True,
    help="Consumer group; workers of one group share the partitions.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".auditseal") / "sealer",
    show_default=True,
)
@click.option(
    "--metrics-listen",
    default="127.0.0.1:9464",
    show_default=True,
    help="host:port of the Prometheus endpoint, or 'off'.",
)
@click.option(
    "--session-timeout",
    type=click.FloatRange(1),
    default=6.0,
    show_default=True,
    help="Consumer group session timeout in seconds: how soon a dead worker's "
    "partitions move to the others.",
)
@click.option(
    "--log-level",
    type=click.Choice(["crit", "error", "warn", "info", "debug"]),
    default="warn",
    show_default=True,
)
def seal(
    store: Path,
    key_file: Path,
    bootstrap: str | None,
    topic: str,
    sealed_topic: str,
    origin_prefix: str,
    max_events: int,
    max_interval: float,
    group: str,
    state_dir: Path,
    metrics_listen: str,
    session_timeout: float,
    log_level: str,
) -> None:
    """Seal audit.events into signed Merkle blocks: one log per partition.

    For each block: commit it to the store (entries, tree nodes, signed checkpoint, header
    chained to the previous block), publish it to the sealed topic, then commit the Kafka
    offsets. Run several workers with the same --group and --store to share the partitions.
    """
    from faust.worker import Worker

    from infra.state import endpoints
    from ingest.envelope import triage
    from sealer.app import WorkerConfig, create_app
    from sealer.pipeline import SealerConfig
    from sealer.signer import Signer

    Signer.from_file(key_file)  # fail now, with one line, rather than inside the worker
    config = WorkerConfig(
        bootstrap=bootstrap or endpoints()[0],
        store_path=store,
        key_file=key_file,
        state_dir=state_dir,
        sealer=SealerConfig(origin_prefix, max_events, max_interval),
        topic=topic,
        sealed_topic=sealed_topic,
        group=group,
        session_timeout_s=session_timeout,
        metrics_listen=_listen(metrics_listen),
    )
    state_dir.mkdir(parents=True, exist_ok=True)
    app, _ = create_app(config, triage)
    Worker(app, loglevel=log_level, quiet=True).execute_from_commandline()
