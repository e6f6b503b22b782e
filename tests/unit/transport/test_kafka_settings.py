"""Kafka security settings (--kafka-config): every property to confluent-kafka (every Kafka
client of auditseal, the sealer's included), secrets by reference, bad settings refused with
their line, and no secret in any message.

The local broker (Tansu 0.6) cannot serve TLS or SASL itself (docs/DEPLOY.md, "Kafka
security"); tests/integration/test_kafka_security.py runs the clients over real TLS through a
TLS front. Here, the properties are handed to a real librdkafka client, which loads the CA,
certificate and key files and refuses what it cannot use.
"""

from __future__ import annotations

import datetime
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from auditseal.cli.options import kafka_config_option
from auditseal.infra.processes import free_port, port_answers
from auditseal.sealer.signer import Signer
from auditseal.transport.kafka_settings import KafkaConfigError, KafkaSettings, Secret
from tests.tls_files import PKI, make_pki

PLANTED = "PLANTED-hunter2-0451"  # a secret that must never show


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def client_cert(pki: PKI) -> tuple[Path, Path]:
    return pki.client("auditseal-sealer")


@pytest.fixture(scope="module")
def encrypted_key(pki: PKI, client_cert: tuple[Path, Path]) -> Path:
    """The client key, encrypted with PLANTED."""
    key = serialization.load_pem_private_key(client_cert[1].read_bytes(), None)
    path = pki.dir / "client-encrypted.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PLANTED.encode()),
        )
    )
    path.chmod(0o600)
    return path


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def load(tmp_path: Path, text: str, mode: int = 0o600, **env: str) -> KafkaSettings:
    return KafkaSettings.load(write(tmp_path / "kafka.properties", text, mode), environ=env)


def refused(tmp_path: Path, text: str, mode: int = 0o600, **env: str) -> str:
    with pytest.raises(KafkaConfigError) as info:
        load(tmp_path, text, mode, **env)
    message = str(info.value)
    assert PLANTED not in message
    return message


# --- no file: plaintext, as before ------------------------------------------------------------


def test_no_settings_is_plaintext():
    settings = KafkaSettings()
    assert settings.confluent() == {}
    settings.check_librdkafka()


def test_comments_blanks_and_spacing(tmp_path):
    settings = load(
        tmp_path,
        "# a comment\n! another\n\n   security.protocol =  plaintext  \n",
    )
    assert settings.confluent() == {"security.protocol": "PLAINTEXT"}


# --- every property, to librdkafka --------------------------------------------------------------


def test_sasl_ssl_scram_with_mtls_goes_to_librdkafka(tmp_path, pki, client_cert, encrypted_key):
    (tmp_path / "secrets").mkdir()
    write(tmp_path / "secrets" / "kafka-password", PLANTED + "\n")
    (tmp_path / "ca.pem").write_bytes(pki.ca_cert.read_bytes())
    settings = load(
        tmp_path,
        "security.protocol=SASL_SSL\n"
        "sasl.mechanisms=scram-sha-512\n"  # librdkafka's other spelling, any case
        "sasl.username=auditseal-sealer\n"
        "sasl.password=${file:secrets/kafka-password}\n"  # relative to the config's folder
        "ssl.ca.location=ca.pem\n"
        f"ssl.certificate.location={client_cert[0]}\n"
        f"ssl.key.location={encrypted_key}\n"
        "ssl.key.password=${env:KAFKA_KEY_PASSWORD}\n"
        "ssl.endpoint.identification.algorithm=https\n",
        KAFKA_KEY_PASSWORD=PLANTED,
    )
    assert settings.confluent() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "auditseal-sealer",
        "sasl.password": PLANTED,
        "ssl.ca.location": str(tmp_path / "ca.pem"),
        "ssl.certificate.location": str(client_cert[0]),
        "ssl.key.location": str(encrypted_key),
        "ssl.key.password": PLANTED,
        "ssl.endpoint.identification.algorithm": "https",
    }
    settings.check_librdkafka()  # a real librdkafka client loads the CA, certificate and key


@pytest.mark.parametrize(
    ("lines", "protocol", "mechanism"),
    [
        ("security.protocol=SSL\n", "SSL", None),
        ("security.protocol=sasl_plaintext\nsasl.mechanism=PLAIN\n", "SASL_PLAINTEXT", "PLAIN"),
        (
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n",
            "SASL_PLAINTEXT",
            "SCRAM-SHA-256",
        ),
        ("security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n", "SASL_SSL", "PLAIN"),
    ],
)
def test_each_protocol_and_mechanism(tmp_path, lines, protocol, mechanism):
    if mechanism:
        lines += "sasl.username=u\nsasl.password=${env:PW}\n"
    settings = load(tmp_path, lines, PW=PLANTED)
    settings.check_librdkafka()
    conf = settings.confluent()
    assert conf["security.protocol"] == protocol
    assert conf.get("sasl.mechanism") == mechanism
    assert conf.get("sasl.password") == (PLANTED if mechanism else None)


def test_plain_password_in_clear_is_warned_about(tmp_path, caplog):
    load(
        tmp_path,
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.username=u\n"
        "sasl.password=${env:PW}\n",
        PW=PLANTED,
    )
    assert "in clear" in caplog.text


def test_no_hostname_check_ciphers_and_crl(tmp_path, pki):
    now = datetime.datetime.now(datetime.UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.ca.subject)
        .last_update(now)
        .next_update(now + datetime.timedelta(days=1))
        .sign(pki.ca_key, hashes.SHA256())
    )
    (tmp_path / "ca.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    settings = load(
        tmp_path,
        f"security.protocol=SSL\nssl.ca.location={pki.ca_cert}\n"
        "ssl.endpoint.identification.algorithm=NONE\n"
        "ssl.cipher.suites=ECDHE-ECDSA-AES256-GCM-SHA384\n"
        "ssl.crl.location=ca.crl\n",
    )
    assert settings.confluent() == {
        "security.protocol": "SSL",
        "ssl.ca.location": str(pki.ca_cert),
        "ssl.endpoint.identification.algorithm": "none",
        "ssl.cipher.suites": "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ssl.crl.location": str(tmp_path / "ca.crl"),
    }
    settings.check_librdkafka()  # librdkafka sets the ciphers and loads the CRL


def test_ca_folder_and_system_store(tmp_path, pki):
    folder = tmp_path / "cas"
    folder.mkdir()
    settings = load(tmp_path, f"security.protocol=SSL\nssl.ca.location={folder}\n")
    assert settings.confluent()["ssl.ca.location"] == str(folder)
    settings.check_librdkafka()
    probe = load(tmp_path, "security.protocol=SSL\nssl.ca.location=probe\n")
    assert probe.confluent()["ssl.ca.location"] == "probe"
    probe.check_librdkafka()


@pytest.fixture
def keystore(tmp_path: Path, client_cert: tuple[Path, Path]) -> Path:
    """The client certificate and key in a PKCS#12 key store, encrypted with PLANTED."""
    cert = x509.load_pem_x509_certificate(client_cert[0].read_bytes())
    key = serialization.load_pem_private_key(client_cert[1].read_bytes(), None)
    path = tmp_path / "client.p12"
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"client",
            key,  # type: ignore[arg-type]
            cert,
            None,
            serialization.BestAvailableEncryption(PLANTED.encode()),
        )
    )
    path.chmod(0o600)
    return path


def test_keystores_curves_and_signature_algorithms_go_to_librdkafka(tmp_path, pki, keystore):
    settings = load(
        tmp_path,
        f"security.protocol=SSL\nssl.ca.location={pki.ca_cert}\n"
        f"ssl.keystore.location={keystore.name}\nssl.keystore.password=${{env:PW}}\n"
        "ssl.curves.list=P-256:X25519\nssl.sigalgs.list=ECDSA+SHA256\n",
        PW=PLANTED,
    )
    assert settings.confluent() == {
        "security.protocol": "SSL",
        "ssl.ca.location": str(pki.ca_cert),
        "ssl.keystore.location": str(keystore),
        "ssl.keystore.password": PLANTED,
        "ssl.curves.list": "P-256:X25519",
        "ssl.sigalgs.list": "ECDSA+SHA256",
    }
    settings.check_librdkafka()  # librdkafka reads PKCS#12 key stores

    wrong = load(
        tmp_path,
        f"security.protocol=SSL\nssl.keystore.location={keystore}\n"
        "ssl.keystore.password=${env:PW}\n",
        PW="not-" + PLANTED,
    )
    with pytest.raises(KafkaConfigError) as info:
        wrong.check_librdkafka()
    message = str(info.value)
    assert "line 2: librdkafka refuses it: " in message and "ssl.keystore.location" in message
    assert PLANTED not in message


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("ssl.cipher.suites=NO-SUCH-CIPHER", "ssl.cipher.suites"),
        ("ssl.crl.location=junk.pem", "ssl.crl.location"),
        ("ssl.curves.list=NO-SUCH-CURVE", "ssl.curves.list"),
        ("ssl.sigalgs.list=NO+SUCH", "ssl.sigalgs.list"),
    ],
)
def test_what_librdkafka_cannot_use_is_named_with_its_line(tmp_path, line, key):
    (tmp_path / "junk.pem").write_text("hello\n")
    settings = load(tmp_path, f"security.protocol=SSL\n#\n{line}\n")
    with pytest.raises(KafkaConfigError) as info:
        settings.check_librdkafka()
    assert str(info.value).startswith(
        f"kafka config {tmp_path / 'kafka.properties'} line 3: librdkafka refuses it: {key}"
    )


# --- references -------------------------------------------------------------------------------


def test_env_and_file_references(tmp_path):
    write(tmp_path / "pw", PLANTED + "\r\n\n")
    settings = load(
        tmp_path,
        "security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nsasl.username=${env:KAFKA_USER}\n"
        f"sasl.password=${{file:{tmp_path / 'pw'}}}\n",
        KAFKA_USER="alice",
    )
    assert settings.confluent()["sasl.username"] == "alice"
    assert settings.confluent()["sasl.password"] == PLANTED  # trailing newlines dropped


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("${env:NOPE}", {}, "line 4: sasl.password: environment variable NOPE is not set"),
        ("${env:EMPTY}", {"EMPTY": ""}, "line 4: sasl.password: environment variable EMPTY is"),
        ("${file:missing}", {}, "line 4: sasl.password: cannot read "),
        ("${file:empty}", {}, "line 4: sasl.password: "),
        ("${file:two-lines}", {}, "holds more than one line"),
        ("${env:PW", {"PW": PLANTED}, "line 4: sasl.password: a reference is ${env:NAME} or"),
        ("${vault:kafka}", {}, "line 4: sasl.password: a reference is ${env:NAME} or"),
    ],
)
def test_bad_references_name_the_line(tmp_path, value, env, expected):
    write(tmp_path / "empty", "\n")
    write(tmp_path / "two-lines", f"{PLANTED}\nmore\n")
    message = refused(
        tmp_path,
        "security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nsasl.username=u\n"
        f"sasl.password={value}\n",
        **env,
    )
    assert expected in message


# --- refusals, each naming its line -----------------------------------------------------------

SASL = "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-256\nsasl.username=u\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("security.protocol=SSL\nacks=0\n", "line 2: unknown key acks: this file takes Kafka "),
        (f"sasl.password {PLANTED}\n", "line 1: want key=value"),
        (f"Sasl.Password{PLANTED}=x\n", "line 1: not a property name"),
        ("security.protocol=SSL\nsecurity.protocol=SSL\n", "line 2: security.protocol given "),
        ("security.protocol=\n", "line 1: security.protocol has no value"),
        ("security.protocol=SSL\\\n", "line 1: continued lines"),
        ("security.protocol=TLS\n", "line 1: security.protocol 'TLS': want one of PLAINTEXT,"),
        (
            "security.protocol=SASL_SSL\nsasl.mechanism=GSSAPI\n",
            "line 2: sasl.mechanism GSSAPI is not supported by auditseal's Kafka clients",
        ),
        ("security.protocol=SASL_SSL\nsasl.mechanism=MD5\n", "line 2: sasl.mechanism 'MD5'"),
        (
            "security.protocol=SSL\nsasl.username=u\n",
            "line 2: sasl.username needs security.protocol SASL_PLAINTEXT or SASL_SSL (it is "
            "SSL), else it would be ignored",
        ),
        (
            "sasl.mechanism=PLAIN\n",  # no protocol: PLAINTEXT, where sasl.* is ignored
            "line 1: sasl.mechanism needs security.protocol SASL_PLAINTEXT or SASL_SSL",
        ),
        (
            "security.protocol=SASL_PLAINTEXT\nssl.ca.location=probe\n",
            "line 2: ssl.ca.location needs security.protocol SSL or SASL_SSL",
        ),
        (
            "security.protocol=SASL_SSL\nsasl.username=u\n",
            "line 1: security.protocol SASL_SSL needs sasl.mechanism",
        ),
        (SASL, "line 1: security.protocol SASL_SSL needs sasl.password"),
        (
            "security.protocol=SSL\nssl.certificate.location=/etc/hostname\n",
            "line 2: ssl.certificate.location needs ssl.key.location",
        ),
        (
            "security.protocol=SSL\nssl.key.password=${env:PW}\n",
            "line 2: ssl.key.password needs ssl.key.location",
        ),
        (
            f"{SASL}sasl.jaas.config=org.apache...PlainLoginModule password={PLANTED};\n",
            "line 4: sasl.jaas.config is not taken: the Java client's JAAS line",
        ),
        (
            "security.protocol=SSL\nssl.truststore.location=/etc/kafka/truststore.jks\n",
            "line 2: ssl.truststore.location is not taken: a Java key store",
        ),
        ("bootstrap.servers=kafka:9092\n", "line 1: bootstrap.servers is not taken: give the "),
        (
            "security.protocol=SSL\nenable.ssl.certificate.verification=false\n",
            "line 2: enable.ssl.certificate.verification=false: refused, it accepts any broker",
        ),
        (
            "security.protocol=SSL\nssl.endpoint.identification.algorithm=\n",
            "line 2: ssl.endpoint.identification.algorithm has no value",
        ),
        (
            "security.protocol=SSL\nssl.endpoint.identification.algorithm=dns\n",
            "line 2: ssl.endpoint.identification.algorithm 'dns': want https (the default) or",
        ),
        ("security.protocol=SSL\nssl.ca.location=nope.pem\n", "line 2: ssl.ca.location "),
    ],
)
def test_bad_settings_are_refused_naming_the_line(tmp_path, text, expected):
    message = refused(tmp_path, text, PW=PLANTED)
    assert expected in message
    assert message.startswith(f"kafka config {tmp_path / 'kafka.properties'}")


def test_client_certificate_once(tmp_path, pki, client_cert):
    (tmp_path / "k.p12").write_bytes(b"x")
    message = refused(
        tmp_path,
        "security.protocol=SSL\nssl.keystore.location=k.p12\n"
        f"ssl.certificate.location={client_cert[0]}\nssl.key.location={client_cert[1]}\n",
    )
    assert "line 2: give the client certificate once" in message


def test_unusable_files_are_named_with_their_line(tmp_path, pki, client_cert, encrypted_key):
    (tmp_path / "not-a-ca.pem").write_text("hello\n")
    bad_ca = load(tmp_path, "security.protocol=SSL\n#\nssl.ca.location=not-a-ca.pem\n")
    with pytest.raises(KafkaConfigError, match=r"line 3: librdkafka refuses it: ssl\.ca\.location"):
        bad_ca.check_librdkafka()

    (tmp_path / "not-a-cert.pem").write_text("hello\n")
    bad_cert = load(
        tmp_path,
        f"security.protocol=SSL\nssl.certificate.location=not-a-cert.pem\n"
        f"ssl.key.location={client_cert[1]}\n",
    )
    with pytest.raises(KafkaConfigError, match=r"line 2: librdkafka refuses it: ssl\.certif"):
        bad_cert.check_librdkafka()

    other_key = load(  # a key, but not the certificate's
        tmp_path,
        f"security.protocol=SSL\nssl.certificate.location={client_cert[0]}\n"
        f"ssl.key.location={pki.server_key}\n",
    )
    with pytest.raises(KafkaConfigError, match=r"line 3: librdkafka refuses it: ssl\.key\.loc"):
        other_key.check_librdkafka()

    wrong = load(
        tmp_path,
        f"security.protocol=SSL\nssl.certificate.location={client_cert[0]}\n"
        f"ssl.key.location={encrypted_key}\nssl.key.password=${{env:PW}}\n",
        PW="not-" + PLANTED,
    )
    with pytest.raises(KafkaConfigError) as info:
        wrong.check_librdkafka()
    assert "line 3: librdkafka refuses it: ssl.key.location" in str(info.value)
    assert PLANTED not in str(info.value)


# --- file modes -------------------------------------------------------------------------------


def test_a_literal_secret_in_a_file_others_may_read_is_refused(tmp_path):
    text = f"{SASL}sasl.password={PLANTED}\n"
    message = refused(tmp_path, text, mode=0o644)
    assert message == (
        f"kafka config {tmp_path / 'kafka.properties'} line 4: a literal sasl.password in a "
        "file others may read (mode 0644): chmod 600 it, or take the secret from ${file:PATH} "
        "or ${env:NAME}"
    )
    refused(tmp_path, text, mode=0o640)  # the group too
    assert load(tmp_path, text, mode=0o600).confluent()["sasl.password"] == PLANTED
    assert load(tmp_path, text, mode=0o400).confluent()["sasl.password"] == PLANTED
    # Without a literal secret the file is not secret.
    load(tmp_path, f"{SASL}sasl.password=${{env:PW}}\n", mode=0o644, PW=PLANTED)


def test_readable_secret_files_and_keys_are_warned_about(tmp_path, pki, client_cert, caplog):
    write(tmp_path / "pw", PLANTED, mode=0o644)
    key = tmp_path / "client.key"
    key.write_bytes(client_cert[1].read_bytes())
    key.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        load(
            tmp_path,
            f"{SASL}sasl.password=${{file:pw}}\nssl.certificate.location={client_cert[0]}\n"
            "ssl.key.location=client.key\n",
            mode=0o644,
        )
    assert f"line 4: sasl.password comes from {tmp_path / 'pw'}, which others may read" in (
        caplog.text
    )
    assert "line 6: ssl.key.location" in caplog.text and "others may read" in caplog.text
    assert PLANTED not in caplog.text


# --- no secret shows --------------------------------------------------------------------------


def test_no_secret_in_reprs(tmp_path, client_cert, encrypted_key):
    settings = load(
        tmp_path,
        f"{SASL}sasl.password={PLANTED}\n#\nssl.key.password=${{env:PW}}\n"
        f"ssl.certificate.location={client_cert[0]}\nssl.key.location={encrypted_key}\n",
        PW=PLANTED,
    )
    assert PLANTED not in repr(settings) and "Secret('***')" in repr(settings)
    assert PLANTED not in repr(list(settings)) and PLANTED not in str(Secret(PLANTED))
    assert settings.get("sasl.password") is None  # get() never hands out secrets


def test_no_secret_in_the_configurations_clients_hold(tmp_path):
    from auditseal.dashboard.server import DashboardConfig
    from auditseal.ingest.gateway import GatewayConfig

    settings = load(tmp_path, f"{SASL}sasl.password={PLANTED}\n")
    properties = settings.confluent()
    assert properties["sasl.password"] == PLANTED  # librdkafka gets it ...
    assert PLANTED not in repr(properties) and PLANTED not in str(properties)  # ... no one else
    assert "'sasl.password': '***'" in repr(properties)
    gateway = GatewayConfig("b:9092", tmp_path / "t", tmp_path, kafka_config=properties)
    dashboard = DashboardConfig("b:9092", tmp_path / "s.db", kafka_config=properties)
    for config in (gateway, dashboard):
        assert PLANTED not in repr(config)


def test_the_option_reads_the_file_or_the_environment(tmp_path, monkeypatch):
    @click.command()
    @kafka_config_option()
    def show(kafka_settings: KafkaSettings) -> None:
        click.echo(repr(kafka_settings))

    runner = CliRunner()
    assert runner.invoke(show, []).output == "KafkaSettings('')\n"
    good = write(tmp_path / "good.properties", f"{SASL}sasl.password={PLANTED}\n")
    out = runner.invoke(show, ["--kafka-config", str(good)])
    assert out.exit_code == 0 and "SASL_SSL" in out.output and PLANTED not in out.output
    bad = write(tmp_path / "bad.properties", f"{SASL}sasl.password={PLANTED}\nx=1\n")
    out = runner.invoke(show, [], env={"AUDITSEAL_KAFKA_CONFIG": str(bad)})
    assert out.exit_code == 2
    assert "Invalid value for '--kafka-config'" in out.output and "line 5: unknown key x" in (
        out.output
    )
    assert PLANTED not in out.output


# --- every command, as users run it -----------------------------------------------------------

COMMANDS = [
    ["ingest", "serve"],
    ["simulate", "--events", "1"],
    ["seal", "--key", "no.key"],
    ["anchor", "run", "--bootstrap", "127.0.0.1:9"],
    ["monitor", "--no-chain"],
    ["dashboard"],
]


def _env(cwd: Path, **env: str) -> dict[str, str]:
    return {**os.environ, "AUDITSEAL_DEV_STATE": str(cwd / "no-dev-state.json"), **env}


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from auditseal.cli.main import main; main()", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(cwd, **env),
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_each_command_refuses_a_bad_file_with_one_error(tmp_path, command):
    bad = write(tmp_path / "kafka.properties", f"{SASL}sasl.password={PLANTED}\n", mode=0o644)
    out = _run([*command, "--kafka-config", str(bad)], tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert f"kafka config {bad} line 4: a literal sasl.password in a file others" in out.stderr
    assert PLANTED not in out.stderr + out.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_each_command_names_the_line_librdkafka_refuses(tmp_path, command):
    (tmp_path / "not-a-ca.pem").write_text("hello\n")
    bad = write(
        tmp_path / "kafka.properties", "security.protocol=SSL\n#\nssl.ca.location=not-a-ca.pem\n"
    )
    out = _run([*command, "--kafka-config", str(bad)], tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert f"kafka config {bad} line 3: librdkafka refuses it: ssl.ca.location" in out.stderr


def test_the_environment_variable_is_read_by_the_commands(tmp_path):
    bad = write(tmp_path / "kafka.properties", "security.protocol=SSL\nsasl.username=u\n")
    out = _run(["monitor", "--no-chain"], tmp_path, AUDITSEAL_KAFKA_CONFIG=str(bad))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "line 2: sasl.username needs security.protocol" in out.stderr


@pytest.mark.parametrize("case", ["keystore", "curves"])
def test_the_sealer_takes_keystores_and_curves(tmp_path, pki, keystore, case):
    """The sealer reads and publishes with confluent-kafka, which honours these: the worker
    starts with them (its consumer and producer made, its metrics served) and looks for a
    broker that is not there until it is stopped."""
    lines = {
        "keystore": f"ssl.keystore.location={keystore.name}\nssl.keystore.password=${{env:PW}}\n",
        "curves": "ssl.curves.list=P-256\nssl.sigalgs.list=ECDSA+SHA256\n",
    }[case]
    config = write(
        tmp_path / "kafka.properties",
        f"security.protocol=SSL\nssl.ca.location={pki.ca_cert}\n{lines}",
    )
    Signer.generate("sealer.test").write_private_file(tmp_path / "sealer.key")
    metrics = free_port()
    args = [
        *("seal", "--key", "sealer.key", "--store", "store.db", "--state-dir", "sealer"),
        *("--bootstrap", f"127.0.0.1:{free_port()}", "--kafka-config", str(config)),
        *("--metrics-listen", f"127.0.0.1:{metrics}"),
    ]
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-c", "from auditseal.cli.main import main; main()", *args],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(tmp_path, PW=PLANTED),
        )
    try:
        deadline = time.monotonic() + 60
        while not port_answers(metrics):
            assert worker.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    output = log.read_text()
    assert worker.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "kafka config" not in output
    assert PLANTED not in output
