"""Kafka clients' security settings: one file of librdkafka properties for every client.

Every command that talks to Kafka takes ``--kafka-config FILE`` (``$AUDITSEAL_KAFKA_CONFIG``).
The file holds librdkafka properties, one ``key=value`` per line, in the Java client's
``.properties`` layout::

    # lines starting with # or ! are comments; blank lines are skipped
    security.protocol=SASL_SSL
    sasl.mechanism=SCRAM-SHA-512
    sasl.username=auditseal-sealer
    sasl.password=${file:/run/secrets/kafka-password}
    ssl.ca.location=kafka-ca.pem

Keys and values are stripped of surrounding blanks. A value that is exactly ``${env:NAME}`` is
the environment variable NAME; exactly ``${file:PATH}`` is the content of the file PATH
without its trailing newlines. Relative paths (in references and in ``ssl.*.location``) are
relative to the config file's folder. Secrets come from the file or the environment, never
from the command line (where every local user reads them in the process list).

The file fails closed: a key this module does not know, a line that is not ``key=value``, a
key given twice, a setting the protocol would ignore (``sasl.*`` without a SASL protocol,
``ssl.*`` without SSL) is an error naming the line, never ignored. A literal secret
(``sasl.password``, ``ssl.key.password``, ``ssl.keystore.password``) in a file that others may
read is refused; a referenced secret file or a private key that others may read is only
warned about, since orchestrators (Kubernetes secret volumes, Docker secrets) mount them 0644
or 0444 inside a container of one user. No error message and no ``repr`` shows a secret.

Every Kafka client of auditseal is confluent-kafka (the emitter, the gateway, the simulator,
the sealer's consumer and producer, the anchor service, the monitor, the dashboard) and takes
the properties as they are (:meth:`KafkaSettings.confluent`). At start,
:meth:`KafkaSettings.check_librdkafka` lets librdkafka load the CA, certificate and key, so a
file it refuses is named with its line before any client runs. See docs/DEPLOY.md, "Kafka
security".
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MECHANISMS",
    "PROTOCOLS",
    "KafkaConfigError",
    "KafkaSettings",
    "Properties",
    "Secret",
]

log = logging.getLogger(__name__)

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaConfigError(Exception):
    """A Kafka config file that cannot be used; the message names the file and the line, and
    never holds a secret."""

    exit_code = 2


class Secret:
    """A password that stays out of reprs, messages and logs; ``reveal()`` gives it to the one
    client that needs it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class _Key:
    group: str = ""  # "sasl" or "ssl": needs a protocol of that kind
    secret: bool = False
    path: bool = False  # a file (a folder too for the CA), relative to the config's folder
    private: bool = False  # a private key file: warned about if others may read it


_KEYS: dict[str, _Key] = {
    "security.protocol": _Key(),
    "sasl.mechanism": _Key("sasl"),
    "sasl.username": _Key("sasl"),
    "sasl.password": _Key("sasl", secret=True),
    "ssl.ca.location": _Key("ssl", path=True),
    "ssl.certificate.location": _Key("ssl", path=True),
    "ssl.key.location": _Key("ssl", path=True, private=True),
    "ssl.key.password": _Key("ssl", secret=True),
    "ssl.endpoint.identification.algorithm": _Key("ssl"),
    "enable.ssl.certificate.verification": _Key("ssl"),
    "ssl.cipher.suites": _Key("ssl"),
    "ssl.crl.location": _Key("ssl", path=True),
    "ssl.keystore.location": _Key("ssl", path=True, private=True),
    "ssl.keystore.password": _Key("ssl", secret=True),
    "ssl.curves.list": _Key("ssl"),
    "ssl.sigalgs.list": _Key("ssl"),
}
_SECRET_KEYS = frozenset(key for key, spec in _KEYS.items() if spec.secret)
_ALIASES = {"sasl.mechanisms": "sasl.mechanism"}  # librdkafka takes both spellings
_JAVA_STORES = "a Java key store: give PEM files with ssl.ca.location, ssl.certificate.location "
_REFUSED = {
    "sasl.jaas.config": "the Java client's JAAS line: give sasl.username and sasl.password",
    "ssl.truststore.location": _JAVA_STORES + "and ssl.key.location",
    "ssl.truststore.password": _JAVA_STORES + "and ssl.key.location",
    "ssl.truststore.type": _JAVA_STORES + "and ssl.key.location",
    "ssl.keystore.type": _JAVA_STORES + "and ssl.key.location",
    "ssl.ca.pem": "inline PEM: put it in a file and give ssl.ca.location",
    "ssl.certificate.pem": "inline PEM: put it in a file and give ssl.certificate.location",
    "ssl.key.pem": "inline PEM: put it in a file and give ssl.key.location",
    "bootstrap.servers": "give the brokers with --bootstrap",
}
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_REFERENCE = re.compile(r"\$\{(env|file):(.+)\}")
_GROUP_PROTOCOLS = {"sasl": ("SASL_PLAINTEXT", "SASL_SSL"), "ssl": ("SSL", "SASL_SSL")}
# Whoever may read the file besides its owner: group and others.
_OTHERS_READ = stat.S_IRGRP | stat.S_IROTH


class Properties(dict[str, str]):
    """librdkafka properties, secrets included (librdkafka needs them as text), whose repr
    hides the secrets: a configuration printed by mistake shows ``***``."""

    def __repr__(self) -> str:
        return repr({k: "***" if k in _SECRET_KEYS else v for k, v in self.items()})

    __str__ = __repr__


@dataclass(frozen=True)
class Entry:
    """One setting: its key (``sasl.mechanisms`` spelled ``sasl.mechanism``), its resolved
    value, and the line it came from."""

    key: str
    value: str | Secret
    line: int
    referenced: bool = False  # from ${env:...} or ${file:...}

    def text(self) -> str:
        return self.value.reveal() if isinstance(self.value, Secret) else self.value

    def __repr__(self) -> str:
        return f"{self.key}={self.value!r}"


class KafkaSettings:
    """The security settings of one config file (none: plaintext, as without the option)."""

    def __init__(self, entries: Sequence[Entry] = (), source: str = "") -> None:
        self.source = source
        self._entries = {e.key: e for e in entries}

    # --- reading --------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, environ: Mapping[str, str] | None = None) -> KafkaSettings:
        """Read and check ``path``. Raises KafkaConfigError naming the file and the line."""
        p = Path(path)
        where = f"kafka config {p}"
        try:
            text = p.read_text(encoding="utf-8")
            mode = p.stat().st_mode
        except OSError as exc:
            raise KafkaConfigError(f"{where}: cannot read it: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise KafkaConfigError(f"{where}: not UTF-8 text (byte {exc.start})") from None
        settings = cls.parse(
            text, source=str(p), base=p.parent, environ=os.environ if environ is None else environ
        )
        literal = next((e for e in settings if _KEYS[e.key].secret and not e.referenced), None)
        if literal is not None and mode & _OTHERS_READ:
            raise KafkaConfigError(
                f"{where} line {literal.line}: a literal {literal.key} in a file others may "
                f"read (mode {stat.S_IMODE(mode):04o}): chmod 600 it, or take the secret from "
                "${file:PATH} or ${env:NAME}"
            )
        return settings

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        source: str = "<text>",
        base: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> KafkaSettings:
        """The settings of ``text`` (the file's content); relative paths are taken from
        ``base``. Raises KafkaConfigError naming the line."""
        base = base or Path.cwd()
        env = os.environ if environ is None else environ
        where = f"kafka config {source}"
        entries: dict[str, Entry] = {}
        for n, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line[0] in "#!":
                continue
            at = f"{where} line {n}"
            if line.endswith("\\"):
                raise KafkaConfigError(f"{at}: continued lines (ending in \\) are not supported")
            key, eq, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if not eq:
                # Never echo the line: it may be a password with a missing '='.
                raise KafkaConfigError(f"{at}: want key=value")
            if not _NAME.fullmatch(key):
                raise KafkaConfigError(f"{at}: not a property name (lower case, dots)")
            key = _ALIASES.get(key, key)
            if key in _REFUSED:
                raise KafkaConfigError(f"{at}: {key} is not taken: {_REFUSED[key]}")
            spec = _KEYS.get(key)
            if spec is None:
                raise KafkaConfigError(
                    f"{at}: unknown key {key}: this file takes Kafka security settings only "
                    "(security.protocol, sasl.*, ssl.*; the keys are listed in docs/DEPLOY.md, "
                    "Kafka security)"
                )
            if key in entries:
                raise KafkaConfigError(
                    f"{at}: {key} given again (first on line {entries[key].line})"
                )
            if not value:
                raise KafkaConfigError(f"{at}: {key} has no value")
            resolved, referenced = _resolve(value, at, key, base, env)
            checked = _check_value(key, spec, resolved, at, base)
            entries[key] = Entry(key, Secret(checked) if spec.secret else checked, n, referenced)
        settings = cls(list(entries.values()), source)
        settings._check_together()
        return settings

    def _check_together(self) -> None:
        """What librdkafka would ignore or guess is refused here instead."""
        protocol = self.protocol
        for e in self:
            group = _KEYS[e.key].group
            if group and protocol not in _GROUP_PROTOCOLS[group]:
                wanted = " or ".join(_GROUP_PROTOCOLS[group])
                raise KafkaConfigError(
                    f"{self._at(e)}: {e.key} needs security.protocol {wanted} "
                    f"(it is {protocol}), else it would be ignored"
                )
        if protocol.startswith("SASL_"):
            at = self._at(self._entries["security.protocol"])
            if "sasl.mechanism" not in self._entries:
                raise KafkaConfigError(
                    f"{at}: security.protocol {protocol} needs sasl.mechanism: "
                    + ", ".join(MECHANISMS)
                )
            for key in ("sasl.username", "sasl.password"):
                if key not in self._entries:
                    raise KafkaConfigError(f"{at}: security.protocol {protocol} needs {key}")
        for key, needs in (
            ("ssl.certificate.location", "ssl.key.location"),
            ("ssl.key.location", "ssl.certificate.location"),
            ("ssl.key.password", "ssl.key.location"),
            ("ssl.keystore.password", "ssl.keystore.location"),
        ):
            if key in self._entries and needs not in self._entries:
                raise KafkaConfigError(f"{self._at(self._entries[key])}: {key} needs {needs}")
        if "ssl.keystore.location" in self._entries and "ssl.key.location" in self._entries:
            raise KafkaConfigError(
                f"{self._at(self._entries['ssl.keystore.location'])}: give the client "
                "certificate once: ssl.keystore.location or ssl.certificate.location"
            )
        if protocol == "SASL_PLAINTEXT" and self.get("sasl.mechanism") == "PLAIN":
            log.warning(
                "%s: sasl.mechanism PLAIN over SASL_PLAINTEXT sends the password in clear; "
                "use SASL_SSL (or SCRAM)",
                self.source,
            )

    def _at(self, entry: Entry) -> str:
        return f"kafka config {self.source} line {entry.line}"

    # --- looking at it ------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> str | None:
        """A setting's value, None if not set; secrets are not given (use confluent())."""
        e = self._entries.get(key)
        if e is None or isinstance(e.value, Secret):
            return None
        return e.value

    @property
    def protocol(self) -> str:
        return self.get("security.protocol") or "PLAINTEXT"

    def __repr__(self) -> str:
        inner = ", ".join(repr(e) for e in self)
        return f"KafkaSettings({self.source!r}{', ' if inner else ''}{inner})"

    def _secrets(self) -> list[str]:
        return [e.value.reveal() for e in self if isinstance(e.value, Secret)]

    # --- confluent-kafka ----------------------------------------------------------------------

    def confluent(self) -> Properties:
        """The librdkafka properties, to merge into a client's configuration (they never
        overlap with what auditseal sets itself: only security keys are taken)."""
        return Properties((e.key, e.text()) for e in self)

    def check_librdkafka(self) -> None:
        """Let librdkafka itself look at the properties (it loads the CA, certificate and key
        when a client is made): a throwaway producer without brokers, so a mistake shows at
        start, in one line, rather than in a client thread later."""
        if not self._entries:
            return
        from confluent_kafka import KafkaException, Producer

        try:
            producer = Producer({**self.confluent(), "logger": _quiet_librdkafka()})
        except KafkaException as exc:
            error = exc.args[0] if exc.args else exc
            message = error.str() if hasattr(error, "str") else str(error)
            message = message.removeprefix("Failed to create producer: ")  # ours, a throwaway
            for secret in self._secrets():
                message = message.replace(secret, "***")
            named = [e for e in self if e.key in message]
            at = self._at(named[0]) if named else f"kafka config {self.source}"
            raise KafkaConfigError(f"{at}: librdkafka refuses it: {message}") from None
        del producer


# --- values ---------------------------------------------------------------------------------


def _resolve(
    value: str, at: str, key: str, base: Path, environ: Mapping[str, str]
) -> tuple[str, bool]:
    """The value, with a ${env:NAME} or ${file:PATH} reference replaced by what it names."""
    if not value.startswith("${"):
        return value, False
    match = _REFERENCE.fullmatch(value)
    if match is None:
        raise KafkaConfigError(f"{at}: {key}: a reference is ${{env:NAME}} or ${{file:PATH}}")
    kind, name = match.groups()
    if kind == "env":
        if name not in environ:
            raise KafkaConfigError(f"{at}: {key}: environment variable {name} is not set")
        text = environ[name]
        if not text:
            raise KafkaConfigError(f"{at}: {key}: environment variable {name} is empty")
        return text, True
    path = base / name
    try:
        text = path.read_text(encoding="utf-8").rstrip("\r\n")
        mode = path.stat().st_mode
    except OSError as exc:
        raise KafkaConfigError(f"{at}: {key}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KafkaConfigError(f"{at}: {key}: {path} is not UTF-8 text") from None
    if not text:
        raise KafkaConfigError(f"{at}: {key}: {path} is empty")
    if "\n" in text:
        raise KafkaConfigError(f"{at}: {key}: {path} holds more than one line")
    if _KEYS[key].secret and mode & _OTHERS_READ:
        log.warning(
            "%s: %s comes from %s, which others may read (mode %04o); chmod 600 it",
            at,
            key,
            path,
            stat.S_IMODE(mode),
        )
    return text, True


def _check_value(key: str, spec: _Key, value: str, at: str, base: Path) -> str:
    """The value in the form clients take (upper-case protocol, absolute paths), or an error.
    Only non-secret values are ever quoted."""
    shown = value if len(value) <= 60 else value[:57] + "..."
    if key == "security.protocol":
        if value.upper() not in PROTOCOLS:
            raise KafkaConfigError(
                f"{at}: security.protocol {shown!r}: want one of {', '.join(PROTOCOLS)}"
            )
        return value.upper()
    if key == "sasl.mechanism":
        if value.upper() in ("GSSAPI", "OAUTHBEARER"):
            raise KafkaConfigError(
                f"{at}: sasl.mechanism {value.upper()} is not supported by auditseal's Kafka "
                f"clients: use {', '.join(MECHANISMS)}"
            )
        if value.upper() not in MECHANISMS:
            raise KafkaConfigError(
                f"{at}: sasl.mechanism {shown!r}: want one of {', '.join(MECHANISMS)}"
            )
        return value.upper()
    if key == "ssl.endpoint.identification.algorithm":
        if value.lower() not in ("https", "none"):
            raise KafkaConfigError(f"{at}: {key} {shown!r}: want https (the default) or none")
        return value.lower()
    if key == "enable.ssl.certificate.verification":
        if value.lower() != "true":
            raise KafkaConfigError(
                f"{at}: {key}={shown}: refused, it accepts any broker certificate; give the "
                "broker's CA with ssl.ca.location instead"
            )
        return "true"
    if spec.path:
        if key == "ssl.ca.location" and value == "probe":
            return value  # librdkafka: the system's CA store
        path = (base / value).absolute()
        folder_ok = key == "ssl.ca.location"
        if not (path.is_file() or (folder_ok and path.is_dir())):
            raise KafkaConfigError(f"{at}: {key} {path}: no such file")
        if not os.access(path, os.R_OK):
            raise KafkaConfigError(f"{at}: {key} {path}: not readable")
        if spec.private:
            mode = path.stat().st_mode
            if mode & _OTHERS_READ:
                log.warning(
                    "%s: %s %s: others may read this private key (mode %04o); chmod 600 it",
                    at,
                    key,
                    path,
                    stat.S_IMODE(mode),
                )
        return str(path)
    return value


def _quiet_librdkafka() -> logging.Logger:
    # The throwaway producer has no brokers and says so; nobody needs to read it.
    quiet = logging.getLogger("auditseal.transport.librdkafka")
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
    return quiet
