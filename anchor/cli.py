"""``auditseal anchor ...``: the on-chain side of anchoring (see docs/ANCHORING.md).

Wired into the root CLI lazily by ``cli/main.py``, whose ``main()`` turns an
AnchorError into ``auditseal: error: <message>`` and its exit code. The chain key is read
from --key (a 0600 file) or $AUDITSEAL_CHAIN_KEY and never printed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from auditseal.cli.options import (
    anchors_topic_option,
    bootstrap_option,
    json_option,
    kafka_config_option,
    metrics_listen_option,
    rpc_option,
    server_tls_options,
    store_option,
)
from auditseal.store.database import Location
from auditseal.transport.kafka_settings import KafkaSettings
from auditseal.transport.tls import ServerTLS
from auditseal.verifier.pins import DEFAULT_RECORD, ENV_RECORD

if TYPE_CHECKING:
    from auditseal.anchor.chain_client import ChainKey

__all__ = ["anchor"]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_RPC = "http://127.0.0.1:8545"  # anchor.chain_client.DEFAULT_RPC, without importing web3
RPC_DEFAULT_HELP = "the chain of `auditseal dev up` if its state file exists, else " + DEFAULT_RPC
KEY_DEFAULT_HELP = "with `auditseal dev up`'s chain as --rpc: its .auditseal/dev/chain.key"


def _default_rpc() -> str:
    """The RPC URL when --rpc and $AUDITSEAL_RPC are not given: the dev stack's, if up."""
    from auditseal.infra.state import endpoints

    return endpoints()[1]


def _dev_bootstrap() -> str | None:
    """--bootstrap of `anchor run` when neither it nor $AUDITSEAL_BOOTSTRAP is given: the dev
    stack's broker while its state file names one (so receipts reach the dashboard and the
    monitor as with every other command), else None: no guessed broker to publish to."""
    from auditseal.infra.errors import InfraError
    from auditseal.infra.state import load

    try:
        dev = load()
    except InfraError:
        return None
    return dev.bootstrap if dev is not None else None


def _default_key_file() -> Path | None:
    """The key file when neither --key, $AUDITSEAL_CHAIN_KEY_FILE nor $AUDITSEAL_CHAIN_KEY is
    given: the dev stack's (Anvil's public dev key) while its state file exists and --rpc is
    its chain, else none. (--rpc is declared before --key, so it is already parsed.)"""
    import os

    if os.environ.get("AUDITSEAL_CHAIN_KEY"):
        return None
    from auditseal.infra.state import dev_chain_key

    return dev_chain_key(rpc_url=click.get_current_context().params.get("rpc_url"))


def _test_pause_after_broadcast() -> float:
    """$AUDITSEAL_TEST_PAUSE_AFTER_BROADCAST (seconds), for crash tests only: the service
    sleeps right after each broadcast so that a kill lands between sending and recording.
    Deliberately not a flag; never set it in production."""
    import os

    from auditseal.anchor.errors import InputError

    value = os.environ.get("AUDITSEAL_TEST_PAUSE_AFTER_BROADCAST", "")
    try:
        return float(value) if value else 0.0
    except ValueError:
        raise InputError(
            f"$AUDITSEAL_TEST_PAUSE_AFTER_BROADCAST: {value!r} is not a number of seconds"
        ) from None


_rpc_option = rpc_option(default=_default_rpc, default_help=RPC_DEFAULT_HELP, dest="rpc_url")


def _chain_key_option(note: str) -> Callable[[F], F]:
    """``--key`` (a chain account's key, not the log's signing key: a keystore or a plain file)
    and ``--key-passphrase-file``, the keystore's passphrase."""
    key = click.option(
        "--key",
        "key_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=_default_key_file,
        envvar="AUDITSEAL_CHAIN_KEY_FILE",
        show_default=KEY_DEFAULT_HELP,
        show_envvar=True,
        help=f"{note} A Web3 Secret Storage keystore (see `auditseal anchor keygen`) or a plain "
        "file holding 0x + 64 hex digits (warned about outside the dev chain), mode 0600; "
        "without it, $AUDITSEAL_CHAIN_KEY holds the key.",
    )

    def both(f: F) -> F:
        return key(_passphrase_option("Opens the --key keystore.")(f))

    return both


def _passphrase_option(note: str) -> Callable[[F], F]:
    return click.option(
        "--key-passphrase-file",
        "passphrase_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        envvar="AUDITSEAL_KEY_PASSPHRASE_FILE",
        show_envvar=True,
        help=f"{note} A file (mode 0600) holding the keystore's passphrase (one trailing newline "
        "is ignored); without it, $AUDITSEAL_KEY_PASSPHRASE holds it. Never on the command line.",
    )


def _load_key(key_file: Path | None, passphrase_file: Path | None) -> ChainKey:
    from auditseal.anchor.chain_client import ChainKey
    from auditseal.anchor.keystore import Passphrase

    return ChainKey.load(key_file, passphrase=Passphrase(passphrase_file))


def _warn_plain(key: ChainKey, chain_id: int) -> None:
    from auditseal.anchor.keystore import plain_key_warning

    warning = plain_key_warning(key.plain_file, chain_id)
    if warning:
        click.echo(f"auditseal: warning: {warning}", err=True)


def _new_passphrase(passphrase_file: Path | None) -> str:
    """The passphrase for a new keystore: the file, $AUDITSEAL_KEY_PASSPHRASE, else asked twice
    on a terminal (never echoed)."""
    import os
    import sys

    from auditseal.anchor.errors import KeyFileError
    from auditseal.anchor.keystore import ENV_PASSPHRASE, Passphrase

    if passphrase_file is not None or os.environ.get(ENV_PASSPHRASE):
        return Passphrase(passphrase_file).read("the new keystore")
    if not sys.stdin.isatty():
        raise KeyFileError(
            f"no passphrase for the new keystore: pass --key-passphrase-file FILE (mode 0600) "
            f"or set ${ENV_PASSPHRASE}"
        )
    passphrase = str(
        click.prompt("Passphrase for the new keystore", hide_input=True, confirmation_prompt=True)
    )
    if not passphrase:
        raise KeyFileError("the passphrase is empty")
    return passphrase


def _write_keystore(
    key: ChainKey, out: Path, passphrase: str, kdf: str, light: bool, force: bool
) -> None:
    from auditseal.anchor.errors import InputError
    from auditseal.store.files import write_atomic

    if out.is_dir():
        raise InputError(f"{out}: is a directory")
    if out.exists() and not force:
        raise InputError(f"{out}: exists; pass --force to replace it or choose another --out")
    try:
        write_atomic(out, key.to_keystore(passphrase, kdf=kdf, light=light))
    except OSError as exc:
        raise InputError(f"{out}: cannot write keystore: {exc.strerror or exc}") from None


def _keystore_options(f: F) -> F:
    for option in reversed(
        [
            click.option(
                "--out",
                type=click.Path(dir_okay=False, path_type=Path),
                required=True,
                help="The keystore file to write (mode 0600, its folders 0700).",
            ),
            _passphrase_option("The new keystore's passphrase; asked on a terminal without it."),
            click.option(
                "--kdf",
                type=click.Choice(["scrypt", "pbkdf2"]),
                default="scrypt",
                show_default=True,
                help="Key derivation (both standard; scrypt also costs memory to guess).",
            ),
            click.option(
                "--light-kdf",
                is_flag=True,
                help="A cheap key derivation (scrypt N=4096, as geth's --lightkdf): quick to "
                "open and quick to guess; for throwaway keys only.",
            ),
            click.option("--force", is_flag=True, help="Replace an existing --out."),
            json_option,
        ]
    ):
        f = option(f)
    return f


@click.group("anchor")
def anchor() -> None:
    """The Ethereum side: deploy the AuditAnchor contract, run the anchor service.

    Exit codes: 0 ok, 2 usage or input (key file, flags, funds, chain id, a revert),
    3 retry later: the chain unavailable (RPC unreachable, not mined in time, base fee above
    the cap), or, for `run --once`, another anchor service active on the store.
    """


def _transaction_options(f: F) -> F:
    """``--max-fee-gwei``, ``--confirmations`` and ``--timeout`` of a command that sends one
    transaction and waits for it."""
    options = (
        click.option(
            "--max-fee-gwei",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            help="Cap on the EIP-1559 max fee per gas; a base fee above it is exit 3 (retry "
            "later).",
        ),
        click.option(
            "--confirmations",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Blocks to wait for, counting the one that includes the transaction.",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=1),
            default=180.0,
            show_default=True,
            help="Seconds to wait for the receipt and confirmations.",
        ),
    )
    for option in reversed(options):
        f = option(f)
    return f


@anchor.command("deploy")
@_rpc_option
@_chain_key_option("The deployer's key.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_RECORD,
    envvar=ENV_RECORD,
    show_default=True,
    show_envvar=True,
    help="Deployment record to write (JSON); other anchor commands read it.",
)
@click.option(
    "--anchorer",
    "anchorers",
    multiple=True,
    metavar="ADDR",
    help="Also authorise this address to anchor (repeatable); the deployer always is.",
)
@click.option(
    "--chain-id",
    type=click.IntRange(min=1),
    default=None,
    envvar="AUDITSEAL_CHAIN_ID",
    show_envvar=True,
    help="Refuse to deploy unless the RPC endpoint serves this chain (Sepolia 11155111).",
)
@_transaction_options
@click.option("--force", is_flag=True, help="Overwrite an existing deployment record.")
@json_option
def deploy(
    rpc_url: str,
    key_file: Path | None,
    passphrase_file: Path | None,
    out: Path,
    anchorers: tuple[str, ...],
    chain_id: int | None,
    max_fee_gwei: float | None,
    confirmations: int,
    timeout: float,
    force: bool,
    as_json: bool,
) -> None:
    """Deploy AuditAnchor from the committed artifact and write the deployment record.

    The deployer becomes the owner and an anchorer; --anchorer adds more, in the same
    transaction. Before sending: the key, the record path, the chain id and the balance are
    checked, so a failure there costs nothing. After the receipt the code at the new address
    is compared with the artifact.
    """
    from auditseal.anchor import deploy as deployment
    from auditseal.anchor.artifact import load_artifact
    from auditseal.anchor.chain_client import ChainClient, gwei_to_wei

    key = _load_key(key_file, passphrase_file)
    extra = deployment.checksummed(anchorers)
    deployment.check_writable(out, overwrite=force)
    artifact = load_artifact()
    client = ChainClient.connect(rpc_url, expected_chain_id=chain_id)
    _warn_plain(key, client.chain_id)
    record = deployment.deploy(
        client,
        key,
        artifact,
        extra,
        max_fee_cap=gwei_to_wei(max_fee_gwei) if max_fee_gwei is not None else None,
        timeout=timeout,
        confirmations=confirmations,
    )
    deployment.write_record(record, out)
    if as_json:
        click.echo(json.dumps({**record.to_json(), "record_file": str(out)}, indent=2))
        return
    click.echo(
        f"{record.contract} deployed at {record.address} on chain {record.chain_id} "
        f"(block {record.block_number}, tx {record.tx_hash}, gas {record.gas_used}); "
        f"owner and anchorer {record.owner}"
    )
    for extra_anchorer in record.anchorers[1:]:
        click.echo(f"anchorer {extra_anchorer}")
    click.echo(f"record written to {out}")


@anchor.command("run")
@store_option("The sealer's; anchors and receipts are recorded in it too.", dest="store_path")
@click.option(
    "--deployment",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_RECORD,
    envvar=ENV_RECORD,
    show_default=True,
    show_envvar=True,
    help="Deployment record written by `auditseal anchor deploy`.",
)
@_rpc_option
@_chain_key_option("An anchorer's key.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between rounds.",
)
@click.option(
    "--confirmations",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Blocks to wait for before recording an anchor, counting its own.",
)
@click.option(
    "--max-fee-gwei",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Cap on the EIP-1559 max fee per gas, fee bumps included.",
)
@click.option(
    "--rebroadcast-after",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds without a receipt before rebroadcasting with fees raised by 12.5%.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=600.0,
    show_default=True,
    help="Seconds one anchor transaction may take, rebroadcasts and confirmations included.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Attempts of a round when the chain is unavailable (backoff 1 s, doubling, max 30 s).",
)
@click.option(
    "--backoff",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="First pause between attempts, in seconds.",
)
@bootstrap_option(
    "Receipts are published to --anchors-topic (the dashboard and the monitor read them) "
    "[default: the broker of `auditseal dev up` while its state file names one, else none: "
    "no receipts are published].",
    dev_default=False,
)
@kafka_config_option("With --bootstrap.")
@anchors_topic_option
@click.option("--topic", hidden=True)
@click.option(
    "--once",
    is_flag=True,
    help="Run one round and exit (for tests and cron); exit 3 if another anchor service is "
    "active on the store.",
)
@metrics_listen_option("127.0.0.1:9465")
@server_tls_options("the metrics endpoint")
@json_option
def run(
    store_path: Location,
    deployment: Path,
    rpc_url: str,
    key_file: Path | None,
    passphrase_file: Path | None,
    interval: float,
    confirmations: int,
    max_fee_gwei: float | None,
    rebroadcast_after: float,
    timeout: float,
    retries: int,
    backoff: float,
    bootstrap: str | None,
    kafka_settings: KafkaSettings,
    anchors_topic: str,
    topic: str | None,
    once: bool,
    metrics_listen: tuple[str, int] | None,
    tls: ServerTLS | None,
    insecure_plaintext: bool,
    as_json: bool,
) -> None:
    """Anchor the latest checkpoint of every log, one transaction per changed state.

    Every --interval: if any log's latest checkpoint differs from the last anchor's, build
    the aggregate tree over all of them, send anchor(seq, root, logs), wait for
    --confirmations, and record the anchor with one receipt per log in the store (and on
    --anchors-topic with --bootstrap). Exit codes with --once: 0 anchored or nothing to do, 2 a
    usage error (key, record, wrong chain, key not authorised, no funds), 3 the chain
    unavailable after --retries attempts, not mined in --timeout, fees above the cap, or
    another anchor service active on the store.

    Standby: run it on two hosts against one store; only the one holding the store's lead
    anchors, the other logs "standby: another anchor service is active" and takes over
    within about 2 s of the active one's death (docs/ANCHORING.md, "Standby").
    """
    import logging

    from auditseal.anchor import deploy as deployments
    from auditseal.anchor.artifact import load_artifact
    from auditseal.anchor.chain_client import gwei_to_wei
    from auditseal.anchor.errors import InputError
    from auditseal.anchor.service import (
        AnchorService,
        KafkaPublisher,
        NotLeader,
        Publisher,
        ServiceOptions,
    )
    from auditseal.store.blockstore import BlockStore
    from auditseal.store.errors import StoreError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not once and metrics_listen is not None:  # refused (exit 2) before anything starts
        from auditseal.transport.listen import check_plaintext

        check_plaintext(metrics_listen, tls, insecure_plaintext, "the metrics endpoint")
        if tls is not None:
            tls.context()
    elif tls is not None:
        raise InputError("--tls-cert: no metrics endpoint (--metrics-listen off, or --once)")
    key = _load_key(key_file, passphrase_file)
    record = deployments.read_record(deployment)
    _warn_plain(key, record.chain_id)
    artifact = load_artifact()
    options = ServiceOptions(
        confirmations=confirmations,
        max_fee_cap=gwei_to_wei(max_fee_gwei) if max_fee_gwei is not None else None,
        rebroadcast_after=rebroadcast_after,
        timeout=timeout,
        retries=retries,
        backoff=backoff,
        pause_after_broadcast=_test_pause_after_broadcast(),
    )
    if topic is not None:  # the old spelling, kept hidden for one release
        from auditseal.cli.output import warn_alias

        warn_alias("--topic", "--anchors-topic")
        anchors_topic = topic
    bootstrap = bootstrap or _dev_bootstrap()
    publisher: Publisher | None = (
        KafkaPublisher(bootstrap, anchors_topic, kafka_config=kafka_settings.confluent())
        if bootstrap
        else None
    )
    try:
        store = BlockStore.open(store_path)
    except StoreError as exc:
        raise InputError(str(exc)) from None
    with store:
        service = AnchorService(store, key, record, artifact, rpc_url, options, publisher=publisher)
        if not once:
            import signal
            import threading

            if metrics_listen is not None:
                from auditseal.anchor.metrics import AnchorMetrics
                from auditseal.transport.listen import serve_metrics

                host, port = metrics_listen
                service.metrics = AnchorMetrics()
                try:
                    serve_metrics(metrics_listen, service.metrics.registry, tls, insecure_plaintext)
                except OSError as exc:
                    raise InputError(f"--metrics-listen {host}:{port}: {exc.strerror}") from None
            stop = threading.Event()
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
            service.run_forever(interval, stop)  # SIGTERM/SIGINT: stop after the round
            return
        try:
            leading = service.take_lead()
        except StoreError as exc:
            raise NotLeader(f"cannot look at the anchor lead of {store.location}: {exc}") from None
        if not leading:
            raise NotLeader(
                f"another anchor service is active on {store.location}: nothing done (it "
                "anchors this state; retry later)"
            )
        result = service.run_once()
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    elif result.action == "unchanged":
        click.echo("nothing to anchor: no log changed since the last anchor")
    else:
        if result.recovered:
            click.echo(f"recorded from the chain: anchor(s) {list(result.recovered)}")
        click.echo(
            f"anchor {result.seq} ({result.action}): {result.logs} log(s), root "
            f"{result.root.hex() if result.root else '-'}, tx {result.tx_hash}, block "
            f"{result.block_number}, gas {result.gas_used}"
        )


@anchor.command("keygen")
@_keystore_options
def keygen(
    out: Path, passphrase_file: Path | None, kdf: str, light_kdf: bool, force: bool, as_json: bool
) -> None:
    """Make a new chain account and write its key as an encrypted keystore; print its address.

    The key never leaves the keystore: fund the address, then have the contract owner run
    `auditseal anchor authorise --anchorer ADDRESS` (docs/ANCHORING.md, The anchor key).
    """
    from auditseal.anchor.chain_client import ChainKey

    passphrase = _new_passphrase(passphrase_file)
    key = ChainKey.generate()
    _write_keystore(key, out, passphrase, kdf, light_kdf, force)
    _report_keystore(key, out, kdf, light_kdf, as_json)


@anchor.command("import-key")
@click.option(
    "--key",
    "key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The plain key file to encrypt (0x + 64 hex digits, mode 0600). It is left in place: "
    "delete it (shred -u) once the keystore works.",
)
@_keystore_options
def import_key(
    key_file: Path,
    out: Path,
    passphrase_file: Path | None,
    kdf: str,
    light_kdf: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Encrypt a plain chain key file into a keystore; print its address."""
    from auditseal.anchor.chain_client import ChainKey
    from auditseal.anchor.errors import KeyFileError
    from auditseal.anchor.keystore import looks_like_keystore

    try:
        head = key_file.read_text(encoding="utf-8", errors="replace")[:64]
    except OSError:
        head = ""  # from_file says why, naming the file
    if looks_like_keystore(head):
        raise KeyFileError(f"{key_file}: is a keystore already: nothing to import")
    key = ChainKey.from_file(key_file)
    passphrase = _new_passphrase(passphrase_file)
    _write_keystore(key, out, passphrase, kdf, light_kdf, force)
    _report_keystore(key, out, kdf, light_kdf, as_json)


def _report_keystore(key: ChainKey, out: Path, kdf: str, light: bool, as_json: bool) -> None:
    from auditseal.cli.output import emit

    emit(
        as_json,
        {"address": key.address, "keystore": str(out), "kdf": kdf, "light_kdf": light},
        f"keystore {out} (mode 0600, {kdf}{', light' if light else ''}) holds the key of "
        f"{key.address}",
    )


def _anchorer_command(name: str, authorise: bool, doc: str) -> None:
    @anchor.command(name, help=doc)
    @click.option(
        "--anchorer",
        required=True,
        metavar="ADDRESS",
        help="The account to " + ("authorise." if authorise else "revoke."),
    )
    @click.option(
        "--deployment",
        type=click.Path(dir_okay=False, path_type=Path),
        default=DEFAULT_RECORD,
        envvar=ENV_RECORD,
        show_default=True,
        show_envvar=True,
        help="Deployment record of the contract (its chain id is checked against --rpc).",
    )
    @_rpc_option
    @_chain_key_option("The contract owner's key.")
    @_transaction_options
    @json_option
    def command(
        anchorer: str,
        deployment: Path,
        rpc_url: str,
        key_file: Path | None,
        passphrase_file: Path | None,
        max_fee_gwei: float | None,
        confirmations: int,
        timeout: float,
        as_json: bool,
    ) -> None:
        from auditseal.anchor import deploy as deployments
        from auditseal.anchor.anchorers import set_anchorer
        from auditseal.anchor.artifact import load_artifact
        from auditseal.anchor.chain_client import ChainClient, gwei_to_wei
        from auditseal.cli.output import emit

        address = deployments.checksummed([anchorer])[0]
        key = _load_key(key_file, passphrase_file)
        record = deployments.read_record(deployment)
        artifact = load_artifact()
        client = ChainClient.connect(rpc_url, expected_chain_id=record.chain_id)
        _warn_plain(key, client.chain_id)
        change = set_anchorer(
            client,
            key,
            record,
            artifact,
            address,
            authorise=authorise,
            max_fee_cap=gwei_to_wei(max_fee_gwei) if max_fee_gwei is not None else None,
            timeout=timeout,
            confirmations=confirmations,
        )
        done = "authorised" if authorise else "revoked"
        where = f"on {record.address} (chain {record.chain_id})"
        text = (
            f"{address} {done} {where}: tx {change.tx_hash}, block {change.block_number}, "
            f"gas {change.gas_used}"
            if change.tx_hash
            else f"{address} is already {'an anchorer' if authorise else 'not an anchorer'} "
            f"{where}: nothing sent"
        )
        emit(as_json, change.to_json(), text)


_anchorer_command(
    "authorise",
    True,
    """Authorise an account to anchor (the contract owner's key signs).

    Nothing is sent if it is already an anchorer. Exit codes: 0 done or nothing to do, 2 the
    key is not the owner's, a bad address, key or record, 3 the chain unavailable.
    """,
)
_anchorer_command(
    "revoke",
    False,
    """Stop an account from anchoring (the contract owner's key signs).

    Its past anchors stay valid (verifiers check authorisation as of each anchor's block); the
    contract refuses its next ones. Nothing is sent if it is not an anchorer. Exit codes: 0
    done or nothing to do, 2 the key is not the owner's, a bad address, key or record, 3 the
    chain unavailable.
    """,
)
