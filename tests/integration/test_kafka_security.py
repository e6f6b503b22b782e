"""Every Kafka client of auditseal over TLS with client certificates (--kafka-config), and the
clients that must not get in refused.

Tansu 0.6, the local broker, cannot serve TLS (its `--cert`/`--key` flags refuse each other)
nor SASL (every mechanism: NoSharedMechanism); see docs/DEPLOY.md, "Kafka security". So a real
Tansu runs on a loopback port nobody is told about, and advertises a TLS front instead: a
server in this module that terminates TLS 1.2+ (the test CA's server certificate for
127.0.0.1, client certificates required) and passes the bytes on. Every client learns only the
front's address, from the command line and then from Tansu's metadata: what reaches the broker
went through a handshake the client's settings had to pass. The clients are the real ones,
unchanged, all confluent-kafka: the simulator's emitter, the sealer (its consumer, producer
and partition probe, as the `auditseal seal` process), the monitor (`auditseal monitor
--once`), the gateway's producer, the dashboard's consumer and the anchor service's publisher.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from auditseal.infra import broker
from auditseal.infra.errors import ToolMissingError
from auditseal.infra.processes import free_port, port_answers, tail, wait_until
from auditseal.ingest import events
from auditseal.ingest.envelope import encode_event
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.transport.kafka_settings import KafkaSettings
from auditseal.transport.tls import ServerTLS, peer_names
from auditseal.verifier.note import SignedNote
from tests.integration.sealer_harness import PREFIX, Stack, sealed_positions, stop
from tests.tls_files import PKI, make_pki

pytestmark = pytest.mark.kafka

KEY_PASSWORD = "key-pw-PLANTED-7731"  # the client key's passphrase, from the environment
CLIENT = "auditseal-test-client"


# --- the TLS front ------------------------------------------------------------------------------


@dataclass
class TLSFront:
    """Terminates TLS (client certificates required) and relays to a plaintext broker."""

    context: ssl.SSLContext
    upstream: int
    port: int = field(default_factory=free_port)
    accepted: list[list[str]] = field(default_factory=list)  # peer names per handshake
    refused: list[str] = field(default_factory=list)  # OpenSSL's reason per failed handshake
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        listener.setblocking(False)

        async def accept() -> None:
            while True:
                sock, _ = await self._loop.sock_accept(listener)
                self._loop.create_task(self._client(sock))

        self._loop.create_task(accept())
        threading.Thread(target=self._loop.run_forever, daemon=True, name="tls-front").start()

    def close(self) -> None:
        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _client(self, sock: socket.socket) -> None:
        # The handshake is awaited here rather than inside a TLS server, so that a failed one
        # is seen with its reason (asyncio's servers only log those in debug mode).
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport, _ = await self._loop.connect_accepted_socket(
                lambda: protocol, sock, ssl=self.context, ssl_handshake_timeout=10
            )
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            self.refused.append(getattr(exc, "reason", None) or type(exc).__name__)
            sock.close()
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, self._loop)
        self.accepted.append(peer_names(writer.get_extra_info("peercert")))
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.transport.abort()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


# --- the broker behind it -----------------------------------------------------------------------


@dataclass
class SecureKafka:
    front: TLSFront
    pki: PKI
    config: Path  # --kafka-config of a client with the CA and a client certificate
    dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.front.port}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KAFKA_KEY_PASSWORD": KEY_PASSWORD}

    def settings(self, config: Path | None = None) -> KafkaSettings:
        return KafkaSettings.load(config or self.config, environ=self.env)

    def write_config(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(text)
        path.chmod(0o600)
        return path

    def create_topics(self, **partitions: int) -> dict[str, str]:
        """Unique topics (given name -> partitions), created over TLS; returns name -> topic."""
        from confluent_kafka.admin import AdminClient, NewTopic

        suffix = f"{time.monotonic_ns():x}"
        names = {name: f"tls-{name}-{suffix}" for name in partitions}
        admin = AdminClient({**self.settings().confluent(), "bootstrap.servers": self.bootstrap})
        futures = admin.create_topics(
            [
                NewTopic(names[n], num_partitions=p, replication_factor=1)
                for n, p in partitions.items()
            ]
        )
        for future in futures.values():
            future.result(30)
        return names


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    work = tmp_path_factory.mktemp("kafka-tls")
    try:
        tansu = broker.tansu_binary()
    except ToolMissingError as exc:
        pytest.skip(str(exc))
    pki = make_pki(work / "pki")
    server = ServerTLS(pki.server_cert, pki.server_key, client_ca=pki.ca_cert).context()
    server.verify_mode = ssl.CERT_REQUIRED  # mTLS: no certificate, no connection
    upstream = free_port()
    front = TLSFront(server, upstream)
    # Tansu listens on a loopback port and tells clients the front's address in its metadata.
    log = work / "tansu.log"
    proc = subprocess.Popen(
        [
            tansu,
            "broker",
            *("--listener-url", f"tcp://127.0.0.1:{upstream}"),
            *("--advertised-listener-url", f"tcp://127.0.0.1:{front.port}"),
            *("--storage-engine", "memory://tansu/"),
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if k not in broker.TANSU_ENV},
    )
    try:
        wait_until(lambda: port_answers(upstream) or None, 30, f"tansu ({tail(log)})")
        front.start()
        # The client's files next to its config, the key encrypted (passphrase from the env).
        cert, key = pki.client(CLIENT)
        (work / "ca.pem").write_bytes(pki.ca_cert.read_bytes())
        encrypted = work / "client.key"
        encrypted.write_bytes(
            serialization.load_pem_private_key(key.read_bytes(), None).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
            )
        )
        encrypted.chmod(0o600)
        kafka = SecureKafka(front, pki, work / "kafka.properties", work)
        kafka.write_config(
            "kafka.properties",
            "# the test's client: the CA, a client certificate, its key's passphrase from env\n"
            "security.protocol=SSL\n"
            "ssl.ca.location=ca.pem\n"
            f"ssl.certificate.location={cert}\n"
            "ssl.key.location=client.key\n"
            "ssl.key.password=${env:KAFKA_KEY_PASSWORD}\n",
        )
        yield kafka
    finally:
        front.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from auditseal.cli.main import main; main()", *args]


def _read(kafka: SecureKafka, topic: str, want: int, timeout: float = 30) -> list[Any]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            **kafka.settings().confluent(),
            "bootstrap.servers": kafka.bootstrap,
            "group.id": "tls-reader",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    consumer.close()
    return got


# --- the pipeline over TLS ----------------------------------------------------------------------


def test_every_client_works_over_tls_with_a_client_certificate(secure_kafka, tmp_path):
    kafka = secure_kafka
    topics = kafka.create_topics(events=2, sealed=1, anchors=1, alerts=1, receipts=1)
    signer = Signer.generate("sealer.tls")
    stack = Stack(kafka.bootstrap, topics["events"], topics["sealed"], tmp_path, signer)
    signer.write_private_file(stack.key_path)
    handshakes = len(kafka.front.accepted)

    # 1. The simulator's emitter publishes events.
    sim = subprocess.run(
        _cli(
            "simulate",
            *("--via", "kafka", "--events", "200", "--rate", "2000", "--sources", "4"),
            *("--bootstrap", kafka.bootstrap, "--topic", stack.topic),
            *("--kafka-config", str(kafka.config), "--state-dir", str(tmp_path / "sim")),
            "--json",
        ),
        capture_output=True,
        text=True,
        timeout=120,
        env=kafka.env,
    )
    assert sim.returncode == 0, sim.stderr
    assert json.loads(sim.stdout)["acknowledged"] == 200

    # 2. The gateway's producer publishes three more (a source of its own).
    from auditseal.ingest.gateway import KafkaSink

    gateway_config = kafka.settings().confluent()
    sink = KafkaSink(kafka.bootstrap, stack.topic, 30.0, gateway_config)
    try:
        asyncio.run(
            sink.publish(
                [
                    (
                        b"proxy://gateway-tls",
                        encode_event(
                            events.api_activity(
                                "proxy://gateway-tls",
                                seq,
                                {"name": "bob"},
                                "GET",
                                {"name": "/x"},
                                "success",
                                "10.0.0.9",
                            )
                        ),
                    )
                    for seq in (1, 2, 3)
                ]
            )
        )
    finally:
        sink.close()

    # 3. A sealer worker (its consumer, producer and probe all confluent-kafka) seals them.
    worker = subprocess.Popen(
        _cli(
            "seal",
            *("--store", str(stack.store_path), "--key", str(stack.key_path)),
            *("--bootstrap", kafka.bootstrap, "--kafka-config", str(kafka.config)),
            *("--topic", stack.topic, "--sealed-topic", stack.sealed_topic),
            *("--origin-prefix", PREFIX, "--group", stack.group),
            *("--state-dir", str(tmp_path / "sealer"), "--max-events", "50"),
            *("--max-interval", "0.3", "--metrics-listen", "off", "--session-timeout", "3"),
        ),
        stdout=(tmp_path / "worker.log").open("ab"),
        stderr=subprocess.STDOUT,
        env=kafka.env,
    )
    try:
        deadline = time.monotonic() + 120
        while sum(len(p) for p in sealed_positions(stack).values()) < 203:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.3)
        # ... and publishes the blocks on the sealed topic (read back over TLS).
        assert _read(kafka, stack.sealed_topic, 1)
    finally:
        stop(worker)

    # 4. The monitor replays the sealed stream: every block checks, no alert.
    monitor = subprocess.run(
        _cli(
            "monitor",
            *("--bootstrap", kafka.bootstrap, "--kafka-config", str(kafka.config)),
            *("--sealed-topic", stack.sealed_topic, "--anchors-topic", topics["anchors"]),
            *("--alerts-topic", topics["alerts"], "--log-key", signer.verifier.to_string()),
            *("--no-chain", "--metrics-listen", "off", "--once", "--idle-exit", "3"),
        ),
        capture_output=True,
        text=True,
        timeout=120,
        env={**kafka.env, "AUDITSEAL_DEV_STATE": str(tmp_path / "no-dev-state.json")},
        cwd=tmp_path,
    )
    assert monitor.returncode == 0, monitor.stderr
    assert monitor.stdout == ""  # no alert
    assert "203 events" in monitor.stderr, monitor.stderr

    # 5. The dashboard's consumer tails the sealed topic.
    from auditseal.dashboard.server import KafkaTail

    seen: list[tuple[str, bytes | None]] = []
    tail_thread = KafkaTail(
        kafka.bootstrap,
        {"sealed": (stack.sealed_topic, 10)},
        lambda *m: seen.append(m),
        kafka.settings().confluent(),
    )
    tail_thread.start()
    try:
        wait_until(lambda: any(r == "sealed" for r, _ in seen) or None, 30, "the dashboard tail")
    finally:
        tail_thread.stop()
        tail_thread.join(10)
    assert ("broker", None) in seen  # it never reported the broker unreachable

    # 6. The anchor service's publisher sends a receipt.
    from auditseal.anchor.service import KafkaPublisher
    from auditseal.verifier.anchor import AnchorReceipt

    with BlockStore.open(stack.store_path, readonly=True) as store:
        origin = store.logs()[0]
        checkpoint = SignedNote.from_text(store.latest_checkpoint(origin)).text  # the body
    receipt = AnchorReceipt(
        1,
        origin,
        checkpoint,
        0,
        1,
        (),
        bytes(32),
        "0x" + "ab" * 32,
        7,
        "0x" + "cd" * 32,
        31337,
        "0x" + "ef" * 20,
    )
    KafkaPublisher(
        kafka.bootstrap, topics["receipts"], kafka_config=kafka.settings().confluent()
    ).publish([receipt])
    (published,) = _read(kafka, topics["receipts"], 1)
    assert json.loads(published)["origin"] == origin

    # Every connection those clients made was a TLS handshake with the client certificate.
    names = kafka.front.accepted[handshakes:]
    assert len(names) >= 8, names
    assert all(f"cn:{CLIENT}" in n for n in names), names


# --- and the clients that must not get in -------------------------------------------------------


def _confluent_refused(kafka: SecureKafka, settings: dict[str, str]) -> None:
    import logging

    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    quiet = logging.getLogger("tls-refused")
    quiet.disabled = True
    admin = AdminClient({**settings, "bootstrap.servers": kafka.bootstrap, "logger": quiet})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)


def test_clients_without_the_ca_or_a_certificate_are_refused(secure_kafka, tmp_path):
    kafka = secure_kafka
    topics = kafka.create_topics(sealed=1, anchors=1)  # the right client gets in

    # A client that trusts another CA, so not the broker's certificate, hangs up on the broker
    # (it has a certificate of its own, to be told apart): a bare client and the monitor.
    other = make_pki(tmp_path / "other", name="other CA")
    cert, key = kafka.pki.client("wrong-ca-client")
    wrong_ca = kafka.write_config(
        "wrong-ca.properties",
        f"security.protocol=SSL\nssl.ca.location={other.ca_cert}\n"
        f"ssl.certificate.location={cert}\nssl.key.location={key}\n",
    )
    _confluent_refused(kafka, kafka.settings(wrong_ca).confluent())
    monitor = subprocess.run(
        _cli(
            "monitor",
            *("--bootstrap", kafka.bootstrap, "--kafka-config", str(wrong_ca)),
            *("--sealed-topic", topics["sealed"], "--anchors-topic", topics["anchors"]),
            *("--log-key", Signer.generate("x").verifier.to_string()),
            *("--no-chain", "--metrics-listen", "off", "--once"),
        ),
        capture_output=True,
        text=True,
        timeout=120,
        env={**kafka.env, "AUDITSEAL_DEV_STATE": str(tmp_path / "no-dev-state.json")},
        cwd=tmp_path,
    )
    assert monitor.returncode == 3, monitor.stderr
    assert f"broker at {kafka.bootstrap} unreachable" in monitor.stderr
    assert "Traceback" not in monitor.stderr
    assert "TLSV1_ALERT_UNKNOWN_CA" in kafka.front.refused  # the client refused the broker

    # A client that trusts the CA but shows no certificate: the front refuses it.
    no_cert = kafka.write_config(
        "no-cert.properties", f"security.protocol=SSL\nssl.ca.location={kafka.pki.ca_cert}\n"
    )
    refused = len(kafka.front.refused)
    _confluent_refused(kafka, kafka.settings(no_cert).confluent())
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in kafka.front.refused[refused:]

    # A plaintext client (no --kafka-config) does not speak TLS at all.
    refused = len(kafka.front.refused)
    _confluent_refused(kafka, {})
    assert kafka.front.refused[refused:], "the plaintext client was not refused by the front"

    # Not one of them got through: every handshake that completed showed the good client's
    # certificate (earlier clients of this broker may still reconnect meanwhile).
    assert kafka.front.accepted
    assert all(names == [f"cn:{CLIENT}"] for names in kafka.front.accepted), {
        tuple(n) for n in kafka.front.accepted
    }
