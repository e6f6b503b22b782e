"""Helpers of the sealer's integration tests: run workers, feed events, check the result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from auditseal.ingest import events
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.errors import StoreError
from auditseal.store.fsck import check_log
from auditseal.verifier.origin import split_generation

PREFIX = "test.local"


@dataclass
class Stack:
    bootstrap: str
    topic: str
    sealed_topic: str
    workdir: Path
    signer: Signer
    group: str = field(default_factory=lambda: f"sealer-{uuid.uuid4().hex[:8]}")
    store_url: str | None = None
    """A PostgreSQL store; None for the SQLite file in ``workdir``."""
    key: str | None = None
    """The workers' --key when not the key file: a pkcs11: URI."""

    @property
    def store_path(self) -> Path:
        return self.workdir / "store.db"

    @property
    def store(self) -> Path | str:
        return self.store_url or self.store_path

    @property
    def key_path(self) -> Path:
        return self.workdir / "sealer.key"

    def origin(self, partition: int) -> str:
        return f"{PREFIX}/{self.topic}/{partition}"

    def start_worker(
        self, name: str = "w", max_events: int = 200, max_interval: float = 0.3
    ) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"worker-{name}.log", "ab")  # noqa: SIM115 - child owns it
        # A URL goes through the environment: its password stays out of the process list.
        env = {**os.environ, "AUDITSEAL_STORE": str(self.store)}
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from auditseal.cli.main import main; main()",
                "seal",
                "--key",
                self.key or str(self.key_path),
                "--bootstrap",
                self.bootstrap,
                "--topic",
                self.topic,
                "--sealed-topic",
                self.sealed_topic,
                "--origin-prefix",
                PREFIX,
                "--group",
                self.group,
                "--state-dir",
                str(self.workdir / f"state-{name}"),
                "--max-events",
                str(max_events),
                "--max-interval",
                str(max_interval),
                "--metrics-listen",
                "off",
                "--session-timeout",
                "3",
                "--log-level",
                "warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )


def assert_running(stack: Stack, workers: dict[str, subprocess.Popen[bytes]]) -> None:
    """Every worker still runs: one that exited is named, with the end of its log."""
    dead = {name: proc.returncode for name, proc in workers.items() if proc.poll() is not None}
    assert not dead, "\n".join(
        f"worker {name} exited with {code}:\n"
        + (stack.workdir / f"worker-{name}.log").read_text(errors="replace")[-3000:]
        for name, code in dead.items()
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a service and wait for it; SIGKILL after 15 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def make_stack(bootstrap: str, new_topic, tmp_path: Path, partitions: int = 6) -> Stack:
    signer = Signer.generate("sealer.test")
    signer.write_private_file(tmp_path / "sealer.key")
    return Stack(bootstrap, new_topic(partitions), new_topic(1), tmp_path, signer)


def kafka_offsets(bootstrap: str, topic: str) -> dict[int, list[int]]:
    """The offsets of every record of ``topic``, read back by a consumer.

    Not the high watermarks: Tansu 0.6 sometimes reports a watermark one below the last
    offset + 1 (seen on partitions written by several idempotent producer batches).
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "offset-reader", "enable.auto.commit": False}
    )
    meta = c.list_topics(topic, timeout=10).topics[topic]
    out: dict[int, list[int]] = {p: [] for p in meta.partitions}
    # Read at least up to each partition's reported end (Tansu's may be one short of the real
    # one, hence the idle wait after): an idle wait alone stops early when a loaded machine
    # delays one partition's fetch, and the records it missed look unsealed.
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in out}
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])

    def behind() -> list[int]:
        return [
            p for p, end in ends.items() if end > 0 and (out[p][-1] if out[p] else -1) < end - 1
        ]

    deadline = time.monotonic() + 120
    idle = time.monotonic() + 3.0
    while time.monotonic() < idle or behind():
        assert time.monotonic() < deadline, f"partitions {behind()} not read to their ends {ends}"
        msg = c.poll(0.2)
        if msg is None or msg.error():
            continue
        out[msg.partition()].append(msg.offset())
        idle = time.monotonic() + 3.0
    c.close()
    return out


def sealed_positions(stack: Stack) -> dict[int, list[int]]:
    if stack.store_url is None and not stack.store_path.exists():
        return {}
    out: dict[int, list[int]] = {}
    try:
        store = BlockStore.open(stack.store, readonly=True)
    except StoreError:  # no worker has created it yet
        return {}
    with store:
        for origin in store.logs():  # generations of one partition's log, in order
            p = int(split_generation(origin)[0].rsplit("/", 1)[1])
            out.setdefault(p, []).extend(
                e.position for e in store.entries(origin, 0, store.size(origin)) if not e.log_record
            )
    return out


def wait_until_sealed(stack: Stack, timeout: float = 120.0) -> dict[int, list[int]]:
    """Wait until every record in Kafka is in the store; returns Kafka's offsets."""
    offsets = kafka_offsets(stack.bootstrap, stack.topic)
    deadline = time.monotonic() + timeout
    while True:
        sealed = sealed_positions(stack)
        if all(not o or sealed.get(p, [-1])[-1] >= o[-1] for p, o in offsets.items()):
            return offsets
        assert time.monotonic() < deadline, "not sealed in time: " + str(
            {p: (o[-1] if o else None, sealed.get(p, [None])[-1]) for p, o in offsets.items()}
        )
        time.sleep(0.3)


def check_exactly_once(stack: Stack) -> int:
    """Every offset of every partition sealed exactly once, in order; every log verifies."""
    offsets = kafka_offsets(stack.bootstrap, stack.topic)
    sealed = sealed_positions(stack)
    for p, o in offsets.items():
        got = sealed.get(p, [])
        if got != o:
            missing = sorted(set(o) - set(got))
            extra = sorted(set(got) - set(o))
            twice = sorted({x for x in got if got.count(x) > 1})
            raise AssertionError(
                f"partition {p}: {len(o)} offsets in Kafka, {len(got)} sealed; "
                f"missing {missing[:10]}, not in Kafka {extra[:10]}, sealed twice {twice[:10]}, "
                f"in order: {got == sorted(got)}"
            )
    with BlockStore.open(stack.store, readonly=True) as store:
        for origin in store.logs():
            check_log(store, origin, [stack.signer.verifier])
    return sum(len(o) for o in offsets.values())


class Feeder:
    """Emits realistic events from a thread until stopped."""

    def __init__(self, stack: Stack, rate: float = 300.0, sources: int = 8) -> None:
        from auditseal.ingest.emitter import Emitter

        self.emitter = Emitter(stack.bootstrap, stack.workdir / "feeder", topic=stack.topic)
        self.rate = rate
        self.sources = [f"proxy://feeder-{i}" for i in range(sources)]
        self._stop = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            source = self.sources[self.sent % len(self.sources)]
            self.emitter.emit_with(
                source,
                lambda seq, s=source: events.api_activity(
                    s, seq, {"name": "bob"}, "GET", {"name": "/x"}, "success", "10.0.0.9"
                ),
            )
            self.sent += 1
            time.sleep(1 / self.rate)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        assert self.emitter.close(60) == 0


def sealed_stream(stack: Stack, timeout: float = 5.0) -> list[dict]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": stack.bootstrap,
            "group.id": "sealed-reader",
            "enable.auto.commit": False,
        }
    )
    c.assign([TopicPartition(stack.sealed_topic, 0, OFFSET_BEGINNING)])
    out, idle = [], time.monotonic() + timeout
    while time.monotonic() < idle:
        msg = c.poll(0.3)
        if msg is None or msg.error():
            continue
        out.append(orjson.loads(msg.value()))
        idle = time.monotonic() + 2.0
    c.close()
    return out


def blocks_from_stream(messages: list[dict]) -> dict[tuple[str, int], dict]:
    """(log, block) -> the block reassembled from its parts; a republished block must be
    identical to the first copy."""
    parts: dict[tuple[str, int], dict[int, dict]] = defaultdict(dict)
    for m in messages:
        key = (m["log"], m["block"])
        if m["part"] in parts[key]:
            assert parts[key][m["part"]] == m, f"republished {key} part {m['part']} differs"
        parts[key][m["part"]] = m
    blocks = {}
    for key, ps in parts.items():
        n = next(iter(ps.values()))["parts"]
        assert sorted(ps) == list(range(n)), f"{key}: parts {sorted(ps)} of {n}"
        first = ps[0]
        blocks[key] = {**first, "entries": [e for i in range(n) for e in ps[i]["entries"]]}
    return blocks
