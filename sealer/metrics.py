"""Prometheus metrics of the sealer worker, in a registry of their own."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

__all__ = ["SealerMetrics"]


class SealerMetrics:
    def __init__(self, lag: Callable[[], Mapping[str, int]]) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "auditseal_sealer_events", "Records sealed into blocks", ["log"], registry=self.registry
        )
        self.invalid = Counter(
            "auditseal_sealer_invalid_records",
            "Records sealed with a flag (not a valid event)",
            ["log"],
            registry=self.registry,
        )
        self.blocks = Counter(
            "auditseal_sealer_blocks", "Blocks committed", ["log"], registry=self.registry
        )
        self.skipped = Counter(
            "auditseal_sealer_redelivered_records",
            "Records skipped because the store already held them",
            registry=self.registry,
        )
        self.resets = Counter(
            "auditseal_sealer_log_resets",
            "Logs closed because their topic partition was reset (a new generation started)",
            ["log"],
            registry=self.registry,
        )
        self.generation = Gauge(
            "auditseal_sealer_log_generation",
            "Current generation of the logs of a partition (0 until a reset), by base origin",
            ["log"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "auditseal_sealer_seal_latency_seconds",
            "From a record's Kafka timestamp to its block's commit",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self._lag = lag
        self.registry.register(self)  # the lag gauge, read at scrape time

    def collect(self) -> Iterator[Any]:
        gauge = GaugeMetricFamily(
            "auditseal_sealer_consumer_lag",
            "Records in Kafka not yet sealed, by log",
            labels=["log"],
        )
        for log, lag in self._lag().items():
            gauge.add_metric([log], lag)
        yield gauge
