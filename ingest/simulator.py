"""Realistic traffic from N simulated access proxies, for demos, load tests and benchmarks.

Four kinds of proxy take turns: a database gateway (queries, logins), an SSH bastion (logons,
logoffs, commands), an API gateway (HTTP calls) and a Kubernetes API proxy (verbs on
resources). A few percent of actions are denied, most of them by one suspicious user. The model
is seeded, so a run is reproducible; only timestamps and event ids differ.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditseal.ingest import events

__all__ = ["PROXY_KINDS", "SimulatedProxy", "TrafficModel", "pace", "simulated_proxies"]

PROXY_KINDS = ("db-gateway", "ssh-bastion", "api-gateway", "k8s-proxy")
USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "mallory")
TABLES = ("customers", "orders", "invoices", "payments", "audit_exports", "employees")
HTTP_CALLS = (
    ("GET", "/v1/customers/{id}"),
    ("GET", "/v1/orders"),
    ("POST", "/v1/orders"),
    ("PATCH", "/v1/customers/{id}"),
    ("DELETE", "/v1/sessions/{id}"),
    ("POST", "/v1/admin/exports"),
)
K8S_CALLS = (
    ("get", "pods"),
    ("list", "secrets"),
    ("create", "deployments"),
    ("delete", "pods"),
    ("patch", "configmaps"),
    ("create", "pods/exec"),
)
SSH_COMMANDS = (
    "sudo systemctl restart nginx",
    "cat /etc/shadow",
    "tail -f /var/log/syslog",
    "kubectl get nodes",
    "psql -c 'select 1'",
    "scp backup.tgz remote:",
)

Build = Callable[[int], dict[str, Any]]
_PROD_DB = {"name": "prod", "type_id": 1, "type": "Relational"}  # OCSF database type 1


@dataclass(frozen=True)
class SimulatedProxy:
    source: str
    kind: str
    host_ip: str


def simulated_proxies(n: int) -> list[SimulatedProxy]:
    """``n`` proxies, kinds in turn: proxy://db-gateway-1, proxy://ssh-bastion-2, ..."""
    if n < 1:
        raise ValueError("at least one simulated proxy")
    out = []
    for i in range(1, n + 1):
        kind = PROXY_KINDS[(i - 1) % len(PROXY_KINDS)]
        out.append(SimulatedProxy(f"proxy://{kind}-{i}", kind, f"10.0.{i // 250}.{i % 250 + 1}"))
    return out


class TrafficModel:
    """Picks the next proxy and builds its next event (as a function of the sequence)."""

    def __init__(self, proxies: list[SimulatedProxy], seed: int = 1) -> None:
        self.proxies = proxies
        self.rng = random.Random(seed)

    def next(self) -> tuple[SimulatedProxy, Build]:
        proxy = self.rng.choice(self.proxies)
        return proxy, getattr(self, "_" + proxy.kind.replace("-", "_"))(proxy)

    def _user(self) -> str:
        return self.rng.choice(USERS)

    def _client_ip(self) -> str:
        return f"192.168.{self.rng.randrange(1, 20)}.{self.rng.randrange(2, 250)}"

    def _denied(self, user: str) -> bool:
        return self.rng.random() < (0.3 if user == "mallory" else 0.01)

    def _db_gateway(self, p: SimulatedProxy) -> Build:
        user, ip = self._user(), self._client_ip()
        status: events.Status = "failure" if self._denied(user) else "success"
        if self.rng.random() < 0.15:
            return lambda seq: events.authentication(
                p.source, seq, {"name": user}, "logon", status, ip, {"name": "postgres"}
            )
        table = self.rng.choice(TABLES)
        verb = self.rng.choice(("SELECT * FROM", "UPDATE", "DELETE FROM", "SELECT count(*) FROM"))
        query = f"{verb} {table} WHERE id = {self.rng.randrange(1, 10**6)}"
        rows = self.rng.randrange(0, 500)
        return lambda seq: events.datastore_query(
            p.source,
            seq,
            {"name": user},
            _PROD_DB,
            query,
            rows,
            status,
            src_ip=ip,
            query_uid=f"{p.source}/q{seq}",  # the gateway's own statement number
        )

    def _ssh_bastion(self, p: SimulatedProxy) -> Build:
        user, ip = self._user(), self._client_ip()
        status: events.Status = "failure" if self._denied(user) else "success"
        roll = self.rng.random()
        if roll < 0.4:
            if roll < 0.25:
                return lambda seq: events.authentication(
                    p.source, seq, {"name": user}, "logon", status, ip, {"name": "sshd"}
                )
            return lambda seq: events.authentication(
                p.source, seq, {"name": user}, "logoff", "success", ip, {"name": "sshd"}
            )
        command = self.rng.choice(SSH_COMMANDS)
        return lambda seq: events.api_activity(
            p.source, seq, {"name": user}, "exec", {"name": command}, status, ip
        )

    def _api_gateway(self, p: SimulatedProxy) -> Build:
        user, ip = self._user(), self._client_ip()
        status: events.Status = "failure" if self._denied(user) else "success"
        method, path = self.rng.choice(HTTP_CALLS)
        resource = path.format(id=self.rng.randrange(1, 10**5))
        return lambda seq: events.api_activity(
            p.source, seq, {"name": user}, method, {"name": resource}, status, ip
        )

    def _k8s_proxy(self, p: SimulatedProxy) -> Build:
        user, ip = self._user(), self._client_ip()
        status: events.Status = "failure" if self._denied(user) else "success"
        verb, kind = self.rng.choice(K8S_CALLS)
        name = f"{kind}/app-{self.rng.randrange(1, 50)}"
        return lambda seq: events.api_activity(
            p.source, seq, {"name": user}, verb, {"name": name}, status, ip
        )


def pace(
    rate: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Callable[[int], None]:
    """A function that, called before event ``i``, sleeps until event ``i`` is due."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    start = clock()

    def wait(i: int) -> None:
        due = start + i / rate
        delay = due - clock()
        if delay > 0:
            sleep(delay)

    return wait


# --- running the traffic against Kafka or the gateway -------------------------------------

# Both paths number each proxy's events from this one file (the emitter's), so a run via HTTP
# after one via Kafka, or the other way round, continues every source's sequence.
SEQUENCES = "sequences.json"
_OLD_HTTP_SEQUENCES = "http-sequences.json"  # the HTTP path's own file before they shared one


def _shared_sequences(state_dir: Path) -> Path:
    """The state dir's sequence file, with an older HTTP-only file folded into it."""
    from auditseal.ingest.sequence import merge_into

    path = state_dir / SEQUENCES
    merge_into(path, state_dir / _OLD_HTTP_SEQUENCES)
    return path


def _progress(enabled: bool, total: int) -> Any:
    import io

    import click

    # Hidden progress still goes through click's bar, into a sink, to keep one code path.
    return click.progressbar(
        length=total, label="simulating", show_pos=True, file=None if enabled else io.StringIO()
    )


def run_kafka(
    bootstrap: str,
    topic: str,
    state_dir: Path,
    rate: float,
    total: int,
    sources: int,
    seed: int,
    progress: bool = True,
    kafka_config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Send ``total`` events at ``rate`` through an :class:`~auditseal.ingest.emitter.Emitter`
    (``kafka_config``: librdkafka security properties for its producer)."""
    from auditseal.ingest.emitter import Emitter

    model = TrafficModel(simulated_proxies(sources), seed)
    _shared_sequences(state_dir)  # the emitter numbers from state_dir/sequences.json
    emitter = Emitter(  # builders validate
        bootstrap, state_dir, topic=topic, validate=False, config=kafka_config
    )
    wait = pace(rate)
    started = time.monotonic()
    try:
        with _progress(progress, total) as bar:
            for i in range(total):
                wait(i)
                proxy, build = model.next()
                emitter.emit_with(proxy.source, build)
                bar.update(1)
    finally:
        left = emitter.close(timeout=60)
    seconds = time.monotonic() - started
    return {
        "via": "kafka",
        "sources": sources,
        "sent": total,
        "acknowledged": emitter.acked,
        "failed": emitter.failures,
        "pending": left,
        "seconds": seconds,
        "rate": total / seconds,
    }


def run_http(
    url: str,
    tokens_path: Path,
    state_dir: Path,
    rate: float,
    total: int,
    sources: int,
    seed: int,
    progress: bool = True,
    batch: int = 200,
) -> dict[str, Any]:
    """Send ``total`` events at ``rate`` through the gateway, in NDJSON batches per proxy."""
    from auditseal.ingest.client import GatewayClient
    from auditseal.ingest.sequence import SequenceCounter
    from auditseal.transport.tokens import add_token

    proxies = simulated_proxies(sources)
    model = TrafficModel(proxies, seed)
    sequences = SequenceCounter(_shared_sequences(state_dir))  # a bad file fails before tokens
    tokens = {p.source: add_token(tokens_path, p.source) for p in proxies}
    time.sleep(1.1)  # the gateway re-reads its tokens file at most once a second
    client = GatewayClient(url)
    pending: dict[str, list[dict[str, Any]]] = {p.source: [] for p in proxies}
    acknowledged = 0
    wait = pace(rate)
    started = time.monotonic()
    last_flush = started

    def flush(source: str) -> int:
        events_ = pending[source]
        pending[source] = []
        return client.post_events(tokens[source], events_) if events_ else 0

    try:
        with _progress(progress, total) as bar:
            for i in range(total):
                wait(i)
                proxy, build = model.next()
                pending[proxy.source].append(build(sequences.next(proxy.source)))
                if len(pending[proxy.source]) >= batch:
                    acknowledged += flush(proxy.source)
                if time.monotonic() - last_flush > 0.2:  # keep latency low at low rates
                    acknowledged += sum(flush(s) for s in pending)
                    last_flush = time.monotonic()
                bar.update(1)
            acknowledged += sum(flush(s) for s in pending)
    finally:
        sequences.close()
        client.close()
    seconds = time.monotonic() - started
    return {
        "via": "http",
        "sources": sources,
        "sent": total,
        "acknowledged": acknowledged,
        "failed": total - acknowledged,
        "pending": 0,
        "seconds": seconds,
        "rate": total / seconds,
        "retries": client.retries,
    }
