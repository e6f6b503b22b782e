"""Prometheus metrics of the anchor service, in a registry of their own: the service's
:class:`~auditseal.anchor.service.RoundObserver`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from auditseal.anchor.service import RoundResult

__all__ = ["AnchorMetrics"]


class AnchorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rounds = Counter(
            "auditseal_anchor_rounds",
            "Anchor rounds by what they did",
            ["action"],
            registry=self.registry,
        )
        self.failures = Counter(
            "auditseal_anchor_failed_rounds",
            "Rounds that failed after their retries (the chain unavailable)",
            registry=self.registry,
        )
        self.gas = Counter(
            "auditseal_anchor_gas", "Gas used by anchor transactions", registry=self.registry
        )
        self.orphaned = Counter(
            "auditseal_anchor_orphaned",
            "Anchors whose block left the canonical chain",
            registry=self.registry,
        )
        self.recovered = Counter(
            "auditseal_anchor_recovered",
            "Anchors found on chain but not in the store (a crash after sending), now recorded",
            registry=self.registry,
        )
        self.unexplained = Counter(
            "auditseal_anchor_unexplained",
            "Anchors on chain whose root the store cannot explain (reported, left in place)",
            registry=self.registry,
        )
        self.broadcasts = Counter(
            "auditseal_anchor_broadcasts",
            "Transactions broadcast, rebroadcasts with bumped fees included",
            registry=self.registry,
        )
        self.last_seq = Gauge(
            "auditseal_anchor_last_seq", "Sequence of the last anchor", registry=self.registry
        )
        self.last_time = Gauge(
            "auditseal_anchor_last_success_time_seconds",
            "When the last round succeeded (anchored or nothing to do), Unix time",
            registry=self.registry,
        )
        self.logs = Gauge(
            "auditseal_anchor_logs", "Logs in the last anchor's aggregate", registry=self.registry
        )
        self.active = Gauge(
            "auditseal_anchor_active",
            "1 while this service holds the store's lead and anchors, 0 while it stands by",
            registry=self.registry,
        )

    def failed(self) -> None:
        self.failures.inc()

    def leading(self, active: bool) -> None:
        self.active.set(1 if active else 0)

    def observe(self, result: RoundResult, now: float) -> None:
        self.rounds.labels(result.action).inc()
        self.last_time.set(now)
        self.orphaned.inc(len(result.orphaned))
        self.broadcasts.inc(result.broadcasts)
        self.recovered.inc(len(result.recovered))
        self.unexplained.inc(len(result.unexplained))
        if result.gas_used:
            self.gas.inc(result.gas_used)
        if result.seq is not None:
            self.last_seq.set(result.seq)
            self.logs.set(result.logs)
