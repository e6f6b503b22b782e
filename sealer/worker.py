"""``auditseal seal``: run a sealer worker. Wiring only."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from auditseal.cli.options import (
    bootstrap_option,
    events_topic_option,
    kafka_config_option,
    metrics_listen_option,
    previous_key_option,
    sealed_topic_option,
    server_tls_options,
    signing_key_option,
    store_option,
)
from auditseal.cli.output import fail
from auditseal.store.database import Location
from auditseal.transport.kafka_settings import KafkaConfigError, KafkaSettings
from auditseal.transport.listen import check_plaintext
from auditseal.transport.tls import ServerTLS

LOG_LEVELS = {
    "crit": logging.CRITICAL,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


@click.command()
@store_option("Shared by every worker of this machine.")
@signing_key_option()
@previous_key_option
@bootstrap_option()
@kafka_config_option()
@events_topic_option()
@sealed_topic_option
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
    default=None,
    hidden=True,  # the worker keeps nothing outside the store; accepted for older unit files
)
@metrics_listen_option("127.0.0.1:9464")
@server_tls_options("the metrics endpoint")
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
    store: Location,
    key_file: Path | str,
    previous_key_file: Path | str | None,
    bootstrap: str | None,
    kafka_settings: KafkaSettings,
    topic: str,
    sealed_topic: str,
    origin_prefix: str,
    max_events: int,
    max_interval: float,
    group: str,
    state_dir: Path | None,
    metrics_listen: tuple[str, int] | None,
    tls: ServerTLS | None,
    insecure_plaintext: bool,
    session_timeout: float,
    log_level: str,
) -> None:
    """Seal audit.events into signed Merkle blocks: one log per partition.

    For each block: commit it to the store (entries, tree nodes, signed checkpoint, header
    chained to the previous block), publish it to the sealed topic, then commit the Kafka
    offsets. Run several workers with the same --group and --store to share the partitions.
    """
    from auditseal.infra.state import endpoints
    from auditseal.ingest.envelope import triage
    from auditseal.sealer.app import WorkerConfig, run_worker
    from auditseal.sealer.pipeline import SealerConfig
    from auditseal.sealer.signer import load_signer

    try:  # what librdkafka refuses is named now, in one line
        kafka_settings.check_librdkafka()
    except KafkaConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="'--kafka-config'") from None
    load_signer(key_file)  # fail now, with one line, rather than inside the worker
    if previous_key_file is not None:
        load_signer(previous_key_file)
    if metrics_listen is None and tls is not None:
        fail("--tls-cert: the metrics endpoint is off (--metrics-listen off)", 2)
    if metrics_listen is not None:  # refused now (exit 2), not inside the worker
        check_plaintext(metrics_listen, tls, insecure_plaintext, "the metrics endpoint")
        if tls is not None:
            tls.context()
    config = WorkerConfig(
        bootstrap=bootstrap or endpoints()[0],
        store_path=store,
        key_file=key_file,
        sealer=SealerConfig(origin_prefix, max_events, max_interval),
        topic=topic,
        sealed_topic=sealed_topic,
        group=group,
        session_timeout_s=session_timeout,
        metrics_listen=metrics_listen,
        kafka=kafka_settings,
        metrics_tls=tls,
        metrics_insecure_plaintext=insecure_plaintext,
        previous_key_file=previous_key_file,
    )
    logging.basicConfig(
        level=LOG_LEVELS[log_level],
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
    )
    run_worker(config, triage)
