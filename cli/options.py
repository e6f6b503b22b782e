"""The options many commands share, declared once: one spelling, one environment variable and
one help text each. A command adds a sentence of its own with ``note``; where two spellings
existed, the old one stays as a hidden alias for one release (see the commands that use them).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from auditseal.store.blockstore import DEFAULT_STORE
from auditseal.store.database import Location, is_url
from auditseal.transport.kafka_settings import KafkaConfigError, KafkaSettings
from auditseal.transport.tls import ServerTLS
from auditseal.verifier.errors import FormatError
from auditseal.verifier.note import NoteVerifier
from auditseal.verifier.pins import DEFAULT_RECORD, ENV_RECORD, read_pins
from auditseal.verifier.rotation import KeySet, read_key_set

__all__ = [
    "Expiry",
    "HostPort",
    "StoreLocation",
    "alerts_topic_option",
    "anchors_topic_option",
    "bootstrap_option",
    "contract_pin_options",
    "events_topic_option",
    "host_port",
    "json_option",
    "kafka_config_option",
    "key_set_options",
    "key_source",
    "listen_option",
    "log_key_option",
    "log_option",
    "metrics_listen_option",
    "previous_key_option",
    "read_access_options",
    "read_token_options",
    "resolve_contract_pin",
    "resolve_key_set",
    "rpc_option",
    "sealed_topic_option",
    "server_tls_options",
    "signing_key_option",
    "store_option",
]

F = TypeVar("F", bound=Callable[..., Any])


def _help(text: str, note: str) -> str:
    return f"{text} {note}" if note else text


class HostPort(click.ParamType):
    """``host:port`` (``[::1]:8090`` for IPv6) as ``(host, port)``; with ``off=True`` the word
    ``off`` gives None (the endpoint is not served)."""

    name = "host:port"

    def __init__(self, off: bool = False) -> None:
        self.off = off

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, int] | None:
        if isinstance(value, tuple) or value is None:
            return value
        if self.off and value == "off":
            return None
        host, _, port = str(value).rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host or not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
            want = "host:port or 'off'" if self.off else "host:port"
            self.fail(f"want {want}, got {value!r}", param, ctx)
        return host, int(port)


def host_port(address: tuple[str, int]) -> str:
    """``(host, port)`` written back as ``host:port`` (``[::1]:port`` for IPv6), e.g. for URLs."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class StoreLocation(click.ParamType):
    """A block store: a ``postgresql://`` URL as given, anything else as a file path."""

    name = "path|url"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Location:
        if isinstance(value, Path) or is_url(value):
            return value  # type: ignore[no-any-return]
        if not value:
            self.fail("want a file path or a postgresql:// URL", param, ctx)
        return Path(value)


def json_option(f: F) -> F:
    """``--json``: the command's result as JSON on stdout, for scripts."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(f)


def store_option(
    note: str = "", default: Path | None = DEFAULT_STORE, dest: str = "store"
) -> Callable[[F], F]:
    """``--store``: the block store (``$AUDITSEAL_STORE``), a path or a URL."""
    return click.option(
        "--store",
        dest,
        type=StoreLocation(),
        default=default,
        envvar="AUDITSEAL_STORE",
        show_default=default is not None,
        show_envvar=True,
        help=_help(
            "Block store: a SQLite file, or a postgresql://USER@HOST:PORT/DB URL (the password "
            "from $PGPASSWORD or ~/.pgpass, not the URL, keeps it out of process lists).",
            note,
        ),
    )


def log_option(note: str = "", required: bool = True) -> Callable[[F], F]:
    """``--log``: a log's origin (``$AUDITSEAL_LOG``)."""
    return click.option(
        "--log",
        "origin",
        required=required,
        envvar="AUDITSEAL_LOG",
        show_envvar=True,
        help=_help("Log origin, e.g. auditseal.local/audit.events/0.", note),
    )


def bootstrap_option(note: str = "", dev_default: bool = True) -> Callable[[F], F]:
    """``--bootstrap``: Kafka bootstrap servers (``$AUDITSEAL_BOOTSTRAP``). With
    ``dev_default`` the command falls back to the dev stack's broker
    (``auditseal.infra.state.endpoints``) when it is None; else None means no Kafka."""
    default = " [default: from `auditseal dev up`, else 127.0.0.1:9092]" if dev_default else ""
    return click.option(
        "--bootstrap",
        default=None,
        envvar="AUDITSEAL_BOOTSTRAP",
        show_envvar=True,
        help=_help(f"Kafka bootstrap servers{default}.", note),
    )


class KafkaConfigFile(click.ParamType):
    """A Kafka config file (librdkafka properties) as checked KafkaSettings."""

    name = "file"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> KafkaSettings:
        if isinstance(value, KafkaSettings):
            return value
        try:
            settings = KafkaSettings.load(value)
            settings.check_librdkafka()
        except KafkaConfigError as exc:
            self.fail(str(exc), param, ctx)
        return settings


def kafka_config_option(note: str = "") -> Callable[[F], F]:
    """``--kafka-config FILE``: the Kafka clients' security settings
    (``$AUDITSEAL_KAFKA_CONFIG``), given to the command as ``kafka_settings`` (empty settings,
    plaintext, without the option)."""
    return click.option(
        "--kafka-config",
        "kafka_settings",
        type=KafkaConfigFile(),
        default=None,
        envvar="AUDITSEAL_KAFKA_CONFIG",
        show_envvar=True,
        callback=lambda _ctx, _param, value: value if value is not None else KafkaSettings(),
        help=_help(
            "Kafka security settings: a file of librdkafka properties (security.protocol, "
            "sasl.*, ssl.*; secrets as ${file:PATH} or ${env:NAME}). See docs/DEPLOY.md.",
            note,
        ),
    )


def _topic_option(flag: str, default: str, holds: str, note: str = "") -> Callable[[F], F]:
    return click.option(
        flag, default=default, show_default=True, help=_help(f"Kafka topic of {holds}.", note)
    )


def events_topic_option(note: str = "") -> Callable[[F], F]:
    """``--topic``: the topic audit events are published to (``audit.events``)."""
    return _topic_option("--topic", "audit.events", "the audit events", note)


def anchors_topic_option(f: F) -> F:
    """``--anchors-topic``: the anchor receipts (``audit.anchors``)."""
    return _topic_option("--anchors-topic", "audit.anchors", "the anchor receipts")(f)


def alerts_topic_option(note: str = "") -> Callable[[F], F]:
    """``--alerts-topic``: the monitor's alerts (``audit.alerts``)."""
    return _topic_option("--alerts-topic", "audit.alerts", "the monitor's alerts", note)


def sealed_topic_option(f: F) -> F:
    """``--sealed-topic``: the sealed stream (``audit.sealed``)."""
    return _topic_option("--sealed-topic", "audit.sealed", "the sealed blocks")(f)


def key_source(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Path | str:
    """A click callback for a log key option: a ``pkcs11:`` URI stays text
    (``auditseal.sealer.signer.load_signer`` parses it); anything else is a path."""
    if value is None or value.startswith("pkcs11:"):
        return value  # type: ignore[return-value]  # None only when not required
    return Path(value)


def signing_key_option(note: str = "") -> Callable[[F], F]:
    """``--key``: the log's signing key, as ``key_file``: a key file's ``Path``, or a
    ``pkcs11:`` URI (``str``) of a key in an HSM; ``load_signer`` opens either."""
    return click.option(
        "--key",
        "key_file",
        required=True,
        envvar="AUDITSEAL_SEALER_KEY_FILE",
        show_envvar=True,
        callback=key_source,
        help=_help(
            "Private key that signs the checkpoints: a key file (`auditseal keygen`) or a "
            "pkcs11: URI of a key in an HSM, e.g. 'pkcs11:token=T;object=NAME?"
            "pin-source=file:PIN_FILE' (docs/SEALER.md, PKCS#11).",
            note,
        ),
    )


def previous_key_option(f: F) -> F:
    """``--previous-key``: the log key being rotated out, as ``previous_key_file``."""
    return click.option(
        "--previous-key",
        "previous_key_file",
        default=None,
        envvar="AUDITSEAL_SEALER_PREVIOUS_KEY_FILE",
        show_envvar=True,
        callback=key_source,
        help="During a key rotation: the old private key (a file or a pkcs11: URI). It "
        "co-signs the checkpoints of the overlap the rotation record states, and signs the logs "
        "not rotated yet (docs/SEALER.md, Rotating the log key).",
    )(f)


def rpc_option(
    note: str = "",
    default: Callable[[], str | None] | None = None,
    default_help: str | None = None,
    dest: str = "rpc",
) -> Callable[[F], F]:
    """``--rpc``: the JSON-RPC URL of the anchor chain (``$AUDITSEAL_RPC``)."""
    return click.option(
        "--rpc",
        dest,
        default=default,
        envvar="AUDITSEAL_RPC",
        show_default=default_help,
        show_envvar=True,
        help=_help("JSON-RPC URL of the anchor chain (Anvil, Sepolia, Holesky, ...).", note),
    )


def log_key_option(note: str = "", required: bool = False) -> Callable[[F], F]:
    """``--log-key``: pinned log verifier keys (``$AUDITSEAL_LOG_KEY``), as ``log_keys``."""
    return click.option(
        "--log-key",
        "log_keys",
        multiple=True,
        required=required,
        envvar="AUDITSEAL_LOG_KEY",
        show_envvar=True,
        help=_help("Pinned log verifier key (name+keyid+base64); repeatable.", note),
    )


def key_set_options(f: F) -> F:
    """``--log-keys FILE`` (a pins file of keys with validity ranges, docs/VERIFYING.md) and
    ``--no-follow-rotations``, as ``log_keys_file`` and ``follow_rotations``; combine them
    with ``--log-key`` through :func:`resolve_key_set`."""
    f = click.option(
        "--follow-rotations/--no-follow-rotations",
        "follow_rotations",
        default=True,
        show_default=True,
        help="Accept the keys the log's rotation records name (each record is signed by the "
        "old and the new key), starting from a pinned key. Without it, pin every key.",
    )(f)
    return click.option(
        "--log-keys",
        "log_keys_file",
        default=None,
        envvar="AUDITSEAL_LOG_KEYS",
        show_envvar=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Pins file: log verifier keys with the log sizes each may sign "
        "(auditseal.log-keys/v1, docs/VERIFYING.md); with or instead of --log-key.",
    )(f)


def resolve_key_set(
    log_keys: tuple[str, ...], log_keys_file: Path | None, follow_rotations: bool
) -> KeySet:
    """The pinned keys of ``--log-key`` (every size) and ``--log-keys`` (by range); exit 2
    naming the option for a malformed key or file."""
    try:
        pinned = KeySet.of((NoteVerifier.from_string(k) for k in log_keys), follow_rotations)
    except FormatError as exc:
        raise click.BadParameter(str(exc), param_hint="'--log-key'") from None
    if log_keys_file is None:
        return pinned
    try:
        return pinned.merged(read_key_set(log_keys_file, follow_rotations))
    except FormatError as exc:
        raise click.BadParameter(str(exc), param_hint="'--log-keys'") from None


def listen_option(default: str, envvar: str, note: str = "") -> Callable[[F], F]:
    """``--listen host:port`` of a server, as ``(host, port)``."""
    return click.option(
        "--listen",
        type=HostPort(),
        default=default,
        envvar=envvar,
        show_default=True,
        show_envvar=True,
        help=_help("host:port to listen on ([::1]:PORT for IPv6).", note),
    )


def metrics_listen_option(default: str) -> Callable[[F], F]:
    """``--metrics-listen host:port|off``: the Prometheus endpoint, as ``(host, port)`` or None."""
    return click.option(
        "--metrics-listen",
        type=HostPort(off=True),
        default=default,
        show_default=True,
        help="host:port of the Prometheus endpoint, or 'off'.",
    )


def server_tls_options(what: str) -> Callable[[F], F]:
    """``--tls-cert``, ``--tls-key``, ``--tls-client-ca`` and ``--insecure-plaintext`` of a
    server (``what`` names it in the help), given to the command as ``tls`` (a ServerTLS, or
    None for plaintext) and ``insecure_plaintext``."""
    path = click.Path(dir_okay=False, path_type=Path)

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def wrapper(
            *args: Any,
            tls_cert: Path | None,
            tls_key: Path | None,
            tls_client_ca: Path | None,
            **kwargs: Any,
        ) -> Any:
            if (tls_cert is None) != (tls_key is None):
                raise click.UsageError("--tls-cert and --tls-key go together")
            if tls_client_ca is not None and tls_cert is None:
                raise click.UsageError("--tls-client-ca needs --tls-cert and --tls-key")
            tls = ServerTLS(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key else None
            return f(*args, tls=tls, **kwargs)

        options = (
            click.option(
                "--tls-cert",
                type=path,
                envvar="AUDITSEAL_TLS_CERT",
                show_envvar=True,
                help=f"PEM certificate (chain) of {what}: serve HTTPS.",
            ),
            click.option(
                "--tls-key",
                type=path,
                envvar="AUDITSEAL_TLS_KEY",
                show_envvar=True,
                help="PEM private key of --tls-cert.",
            ),
            click.option(
                "--tls-client-ca",
                type=path,
                envvar="AUDITSEAL_TLS_CLIENT_CA",
                show_envvar=True,
                help="PEM CA certificates of client certificates (mTLS): a client may prove "
                "who it is with a certificate this CA signed.",
            ),
            click.option(
                "--insecure-plaintext",
                is_flag=True,
                help="Serve plaintext HTTP on a non-loopback address (behind a proxy that "
                "terminates TLS); refused otherwise.",
            ),
        )
        out: Any = wrapper
        for option in reversed(options):
            out = option(out)
        return out  # type: ignore[no-any-return]

    return decorate


_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class Expiry(click.ParamType):
    """When a token expires: an RFC 3339 time with its zone (``2027-01-31T00:00:00Z``), or a
    duration from now (``90d``, ``12h``, ``30m``), as an aware datetime."""

    name = "time|duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        match = re.fullmatch(r"(\d{1,6})([smhdw])", text)
        if match and int(match.group(1)) == 0:
            self.fail(f"{text}: a token that expires at once is no token", param, ctx)
        if match:
            return datetime.now(UTC) + timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            self.fail(
                f"want a time with its zone (2027-01-31T00:00:00Z) or a duration (90d, 12h, "
                f"30m), got {text!r}",
                param,
                ctx,
            )
        if when <= datetime.now(UTC):
            self.fail(f"{text} is in the past", param, ctx)
        return when


def _tokens_option(default: Path, envvar: str, what: str, note: str) -> Callable[[F], F]:
    return click.option(
        "--tokens",
        "tokens_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        envvar=envvar,
        show_envvar=True,
        help=f"Read tokens of {what} (hashes only), re-read when it changes [default: "
        f"{default}]. {note}",
    )


def read_access_options(
    what: str, command: str, default_tokens: Path, env_prefix: str
) -> Callable[[F], F]:
    """Who may read from a server (``what`` names it; ``auditseal COMMAND token`` makes its
    tokens; ``env_prefix`` such as ``AUDITSEAL_API`` gives ``$AUDITSEAL_API_TOKENS`` and
    ``$AUDITSEAL_API_ALLOWED_HOSTS``): ``--tokens`` (given to the command as ``tokens_path``,
    None when not named),
    ``--reader-cert`` (``reader_certs``), ``--no-auth`` and ``--allowed-host``
    (``allowed_host``). See auditseal.transport.readers.read_access."""

    def decorate(f: F) -> F:
        options = (
            _tokens_option(
                default_tokens,
                f"{env_prefix}_TOKENS",
                what,
                f"Made with `auditseal {command} token`; a missing, unreadable or malformed "
                "file lets no token in.",
            ),
            click.option(
                "--reader-cert",
                "reader_certs",
                multiple=True,
                metavar="NAME",
                help="With --tls-client-ca: only client certificates with this name may read "
                "(cn:NAME, dns:NAME, uri:URI or email:ADDRESS); repeatable. Without it any "
                "certificate the client CA signed may read.",
            ),
            click.option(
                "--no-auth",
                is_flag=True,
                help="Let everybody who reaches the address read, without a token or "
                "certificate; only on a loopback address, and said loudly at start.",
            ),
            click.option(
                "--allowed-host",
                "allowed_host",
                multiple=True,
                metavar="NAME[:PORT]",
                envvar=f"{env_prefix}_ALLOWED_HOSTS",
                show_envvar=True,
                help="A Host name clients use for this server, besides the listen address and "
                "localhost (others get 421, which stops DNS rebinding); repeatable.",
            ),
        )
        out: Any = f
        for option in reversed(options):
            out = option(out)
        return out  # type: ignore[no-any-return]

    return decorate


def read_token_options(what: str, default_tokens: Path, env_prefix: str) -> Callable[[F], F]:
    """``--name``, ``--expires`` and ``--tokens`` of a command creating a read token."""

    def decorate(f: F) -> F:
        options = (
            click.option(
                "--name",
                required=True,
                help="Who the token is for (no spaces): its line in the tokens file, which "
                "revoking it deletes.",
            ),
            click.option(
                "--expires",
                type=Expiry(),
                help="When the token stops working: a time (2027-01-31T00:00:00Z) or a "
                "duration (90d, 12h) [default: never; revoke by deleting its line].",
            ),
            _tokens_option(
                default_tokens, f"{env_prefix}_TOKENS", what, "The token's hash is added to it."
            ),
        )
        out: Any = f
        for option in reversed(options):
            out = option(out)
        return out  # type: ignore[no-any-return]

    return decorate


def contract_pin_options(f: F) -> F:
    """``--contract``, ``--chain-id`` and ``--deployment`` (the record giving their defaults)."""
    for option in reversed(
        (
            click.option(
                "--contract",
                envvar="AUDITSEAL_CONTRACT",
                show_envvar=True,
                help="Pinned AuditAnchor address [default: from the deployment record].",
            ),
            click.option(
                "--chain-id",
                type=click.IntRange(min=1),
                envvar="AUDITSEAL_CHAIN_ID",
                show_envvar=True,
                help="Pinned chain id; receipts must name it [default: from the deployment "
                "record].",
            ),
            click.option(
                "--deployment",
                type=click.Path(dir_okay=False, path_type=Path),
                default=DEFAULT_RECORD,
                envvar=ENV_RECORD,
                show_default=True,
                show_envvar=True,
                help="Anchor deployment record giving the default contract and chain id.",
            ),
        )
    ):
        f = option(f)
    return f


def resolve_contract_pin(
    contract: str | None, chain_id: int | None, deployment: Path
) -> tuple[str | None, int | None]:
    """The flags' contract and chain id, else the deployment record's; a malformed record is a
    usage error naming the file and the field."""
    try:
        pins = read_pins(deployment)
    except FormatError as exc:
        raise click.BadParameter(str(exc), param_hint="--deployment") from exc
    return contract or pins.address, chain_id if chain_id is not None else pins.chain_id
