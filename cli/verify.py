"""``auditseal verify`` and ``auditseal bundle``: prove blocks and events of a log against the
pinned log keys and the chain, from a store, the read API of ``auditseal serve``, or a bundle.

The checks are :class:`auditseal.verifier.verify.Verifier`'s; this module only gets their input (a
:class:`~auditseal.verifier.bundle.Bundle` from :mod:`auditseal.store.evidence`,
:mod:`auditseal.verifier.remote` or a file), the pinned values (flags, environment, the anchor
deployment record) and prints the report. Exit codes: 0 valid, 1 invalid (first failing check named)
or an ambiguous event id (sealed by more than one source), 2 usage or input error, 3 not proven yet:
not anchored, or the chain or the read API unreachable.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from auditseal.cli.options import (
    contract_pin_options,
    json_option,
    key_set_options,
    log_key_option,
    log_option,
    resolve_contract_pin,
    resolve_key_set,
    rpc_option,
    store_option,
)
from auditseal.cli.output import fail
from auditseal.store.blockstore import DEFAULT_STORE, BlockStore
from auditseal.store.database import Location, may_exist
from auditseal.store.errors import StoreError
from auditseal.store.evidence import store_bundle
from auditseal.store.files import write_atomic
from auditseal.verifier.anchored_state import SETTLE_S, ChainState, mined_within
from auditseal.verifier.anchoring import AnchorReader, ChainAnchor, ChainUnavailableError
from auditseal.verifier.audit import LogAudit, combined_exit_code
from auditseal.verifier.bundle import Bundle, bundle_from_bytes
from auditseal.verifier.errors import VerifierError
from auditseal.verifier.verify import AmbiguousEventError, Verifier

if TYPE_CHECKING:
    from auditseal.verifier.remote import Source

MAX_BUNDLE_FILE = 256 * 1024 * 1024
DEV_RPC_HELP = "the chain of `auditseal dev up` while its state file names one, else none"


def _dev_rpc() -> str | None:
    """--rpc when neither it nor $AUDITSEAL_RPC is given: the dev stack's chain, as the other
    commands default to it, but only while `dev up`'s state file names one. Never a guessed
    localhost: without a chain a block stays NOT PROVEN (exit 3), it is not checked against
    whatever answers there."""
    from auditseal.infra.errors import InfraError
    from auditseal.infra.state import load

    try:
        dev = load()
    except InfraError:
        return None
    return dev.rpc_url if dev is not None else None


def read_bundle_file(path: Path) -> Bundle:
    """A bundle file, parsed strictly; exit 2 naming the file and the field at fault."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BUNDLE_FILE + 1)
    except OSError as exc:
        fail(f"{path}: cannot read: {exc.strerror or exc}", 2)
    if len(raw) > MAX_BUNDLE_FILE:
        fail(f"{path}: over {MAX_BUNDLE_FILE} bytes, not a bundle", 2)
    try:
        return bundle_from_bytes(raw)
    except ValueError as exc:  # FormatError is a ValueError too
        fail(f"{path}: {exc}", 2)


@dataclass(frozen=True)
class _Depth:
    """When the chain's word on an anchor is final: ``--confirmations`` and ``--settle``."""

    confirmations: int = 1
    settle_s: int = SETTLE_S
    now: int = 0

    def settling(self, reader: AnchorReader) -> Callable[[ChainAnchor], bool]:
        return mined_within(reader, self.now, self.settle_s)


def _from_store(
    store: Location,
    origin: str | None,
    number: int | None,
    event: str | None,
    source_uri: str | None = None,
    reader: AnchorReader | None = None,
    depth: _Depth | None = None,
) -> tuple[Bundle, ChainState | None, int | None]:
    """The bundle of a block or event, and, with a chain, what the chain anchored and where
    the store's log ends: the block is then proven against the chain's latest anchor."""
    if not may_exist(store):
        fail(f"{store}: no block store here (give --store, --source or --bundle)", 2)
    with BlockStore.open(store, readonly=True) as db:
        chain = _chain_state(db, reader, depth or _Depth())
        made = store_bundle(db, origin, number, event, source_uri, chain=chain)
        return made, chain, db.size(made.material.origin) if chain is not None else None


def _chain_state(db: BlockStore, reader: AnchorReader | None, depth: _Depth) -> ChainState | None:
    """The chain's anchors against the store's records; None without a reachable chain (the
    on-chain check then says why nothing is proven)."""
    from auditseal.store.log_audit import store_chain_state

    if reader is None:
        return None
    try:
        return store_chain_state(db, reader, depth.confirmations, depth.settling(reader))
    except ChainUnavailableError:
        return None


def _check_bundle_matches(
    bundle: Bundle,
    path: Path,
    origin: str | None,
    number: int | None,
    event: str | None,
    source_uri: str | None,
) -> Bundle:
    """A bundle proves one block (and maybe one event): asking it for another is a usage error.
    ``source_uri`` becomes the source the event check demands."""
    header = bundle.material.block.header
    if origin is not None and origin != bundle.material.origin:
        fail(f"{path}: is a bundle of log {bundle.material.origin!r}, not {origin!r}", 2)
    if number is not None and number != header.number:
        fail(f"{path}: is a bundle of block {header.number}, not {number}", 2)
    if event is not None and (bundle.event is None or bundle.event.requested != event):
        held = f"event {bundle.event.requested!r}" if bundle.event else "no event"
        fail(f"{path}: holds {held}; make one with: auditseal bundle --event {event}", 2)
    if source_uri is None:
        return bundle
    if bundle.event is None:
        fail(f"{path}: holds no event; --source-uri names the source of one", 2)
    return dataclasses.replace(bundle, event=dataclasses.replace(bundle.event, source=source_uri))


_log_option = log_option("May be omitted when the store holds one log, or with --event.", False)
_store_option = store_option(f"To read from [default: {DEFAULT_STORE}].", default=None)


def _event_option(f: Any) -> Any:
    f = click.option(
        "--source-uri",
        metavar="URI",
        help="With --event: the CloudEvents source of the event. An id sealed by more than "
        "one source is ambiguous without it (or --log).",
    )(f)
    return click.option(
        "--event",
        metavar="ID",
        help="An event: its CloudEvents id, or position:N (the Kafka offset it was sealed "
        "from) or index:N (its leaf index) in --log.",
    )(f)


def _print_ambiguous(exc: AmbiguousEventError, as_json: bool) -> NoReturn:
    """An ambiguous event id: nothing is proven; list the copies so the caller can narrow."""
    if as_json:
        click.echo(json.dumps(exc.to_json(), indent=2))
    else:
        lines = [f"event {exc.requested}"]
        lines += [f"  source {c.source!r}: log {c.origin}, leaf {c.index}" for c in exc.candidates]
        lines += [exc.verdict + "; name one with --source-uri URI or --log ORIGIN"]
        click.echo("\n".join(lines))
    sys.exit(exc.exit_code)


@click.command("verify")
@click.option("--block", "number", type=click.IntRange(min=0), help="Block number to prove.")
@_event_option
@click.option(
    "--all",
    "whole_log",
    is_flag=True,
    help="Every block of the log (of every log without --log) from the first, from a store "
    "or the read API; reports every bad or missing block, then proves the latest anchor on "
    "chain.",
)
@_log_option
@_store_option
@click.option(
    "--source",
    "source_url",
    metavar="URL",
    envvar="AUDITSEAL_SOURCE",
    show_envvar=True,
    help="Read API of `auditseal serve` (https://host:port) to fetch the proof from, "
    "instead of a store; it needs a read token or a client certificate (--api-*).",
)
@click.option(
    "--api-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="AUDITSEAL_API_TOKEN_FILE",
    show_envvar=True,
    help="With --source: a file holding the read token (`auditseal serve token`); "
    "$AUDITSEAL_API_TOKEN may hold the token itself. Sent over https:// or to loopback only.",
)
@click.option(
    "--api-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="AUDITSEAL_API_CA",
    show_envvar=True,
    help="With an https:// --source: PEM CA certificates that signed the server's "
    "certificate [default: the system's].",
)
@click.option(
    "--api-client-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="AUDITSEAL_API_CLIENT_CERT",
    show_envvar=True,
    help="With an https:// --source: a PEM client certificate to read with (mTLS).",
)
@click.option(
    "--api-client-key",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="AUDITSEAL_API_CLIENT_KEY",
    show_envvar=True,
    help="The PEM private key of --api-client-cert.",
)
@click.option(
    "--bundle",
    "bundle_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Proof bundle file (from `auditseal bundle`) to check, instead of a store.",
)
@rpc_option(default=_dev_rpc, default_help=DEV_RPC_HELP)
@contract_pin_options
@log_key_option()
@key_set_options
@click.option(
    "--confirmations",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    envvar="AUDITSEAL_CONFIRMATIONS",
    show_envvar=True,
    help="Confirmation depth an anchor needs before the chain's word on it is taken as final "
    "(which anchors exist, and so how far each log must reach).",
)
@click.option(
    "--settle",
    "settle_s",
    type=click.IntRange(min=0),
    default=SETTLE_S,
    show_default=True,
    metavar="SECONDS",
    help="An anchor mined less than this long ago may be missing from the evidence without "
    "failing it (the anchor service is still recording it): the verdict is then NOT PROVEN.",
)
@json_option
def verify(
    number: int | None,
    event: str | None,
    source_uri: str | None,
    whole_log: bool,
    origin: str | None,
    store: Location | None,
    source_url: str | None,
    api_token_file: Path | None,
    api_ca: Path | None,
    api_client_cert: Path | None,
    api_client_key: Path | None,
    bundle_path: Path | None,
    rpc: str | None,
    contract: str | None,
    chain_id: int | None,
    deployment: Path,
    log_keys: tuple[str, ...],
    log_keys_file: Path | None,
    follow_rotations: bool,
    confirmations: int,
    settle_s: int,
    as_json: bool,
) -> None:
    """Prove a block (--block N), one event (--event ID) or a whole log (--all).

    \b
    Checks, in order, trusting only the pinned log keys, contract and chain:
      1 entries           each entry re-hashes to its leaf (redacted ones are listed)
      2 previous-state    the tree before the block matches the previous signed checkpoint
      3 root              the block's leaves on top of it give the header's root
      4 checkpoint        the checkpoint opens with a pinned key and states that root
      5 header-chain      the header links to the previous block's hash
      6 consistency       the checkpoint is a prefix of the anchored checkpoint
      7 anchor-inclusion  the anchored checkpoint is in the anchor's aggregate root
      8 on-chain          the pinned contract holds that root, set by an authorised anchorer
      9 event             (--event) the event's inclusion proof leads to the checkpoint
     10 anchored-state    (store, read API) every anchor on chain is one the evidence
                          rebuilds, and no log is anchored beyond where the evidence ends
     11 key-rotation      (a rotated log) each rotation record is signed by its old and new
                          keys, chained, authenticated by a pinned key, and in the log
     12 log-key           (a rotated log) each checkpoint is signed by a key of the log at
                          its size: after the overlap, not by the old key alone

    \b
    The proof is read from one of: --store (default .auditseal/store.db), --source (the
    read API of `auditseal serve`) or --bundle (a file from `auditseal bundle`).
    --all replays every block of a store (checks 1-5 on each, listing every bad or missing
    block) and runs checks 6-8 once, on the block of the latest anchor; with --source it
    fetches each block's bundle and runs checks 1-7 on each, check 8 once. The chain, not
    the evidence, says which anchor is the latest: a store restored from an older copy, or
    missing its last blocks, fails anchored-state.

    \b
    Exit codes: 0 valid; 1 invalid (the first failing check is named), or an event id
    sealed by more than one source (AMBIGUOUS: narrow it with --source-uri or --log); 2 usage
    or input error; 3 not proven yet: not anchored, or the chain or the read API unreachable.

    \b
    Example:
      auditseal verify --block 3 --log-key "$(cat sealer.pub)" \\
          --rpc https://your-node --contract 0x... --chain-id 1
    docs/VERIFYING.md explains each check and what its failure means.
    """
    source = None
    if source_url is not None:
        source = _api_source(source_url, api_token_file, api_ca, api_client_cert, api_client_key)
    if whole_log and (number is not None or event is not None):
        fail("--all proves every block: give it without --block or --event", 2)
    if whole_log and bundle_path is not None:
        fail("--all proves a whole log: give --store or --source; a bundle proves one block", 2)
    if number is None and event is None and bundle_path is None and not whole_log:
        fail("name what to prove: --block N, --event ID or --all", 2)
    if source_uri is not None and event is None and bundle_path is None:
        fail("--source-uri names the source of an event: give it with --event ID", 2)
    if sum(x is not None for x in (store, source, bundle_path)) > 1:
        fail("read from one place: --store, --source or --bundle", 2)
    key_set = resolve_key_set(log_keys, log_keys_file, follow_rotations)
    if not key_set.pins:
        fail("no pinned log key: give --log-key, --log-keys FILE or set AUDITSEAL_LOG_KEY", 2)
    contract, chain_id = resolve_contract_pin(contract, chain_id, deployment)
    if rpc and not contract:
        fail("no pinned contract: give --contract or a deployment record (--deployment)", 2)
    try:
        keys = key_set
        reader: AnchorReader | None = None
        if rpc and contract:
            from auditseal.verifier.chain import Web3AnchorReader  # web3 only when a chain is asked

            reader = Web3AnchorReader(rpc, contract)
        verifier = Verifier(keys, reader, contract, chain_id, int(time.time()))
        depth = _Depth(confirmations, settle_s, verifier.now)
        if whole_log and source is not None:
            offline = Verifier(keys, None, contract, chain_id, verifier.now)
            _verify_all_remote(offline, verifier, source, origin, depth, as_json)
        if whole_log:
            _verify_all(verifier, store or DEFAULT_STORE, origin, depth, as_json)
        if bundle_path is not None:
            bundle = read_bundle_file(bundle_path)
            bundle = _check_bundle_matches(bundle, bundle_path, origin, number, event, source_uri)
            chain, tip = None, None
        elif source is not None:
            from auditseal.verifier.remote import fetch_bundle

            bundle = fetch_bundle(source, origin, number, event, source_uri=source_uri)
            chain = _remote_chain_state(reader, source, depth)
            tip = _remote_tip(source, bundle.material.origin) if chain is not None else None
        else:
            bundle, chain, tip = _from_store(
                store or DEFAULT_STORE, origin, number, event, source_uri, reader, depth
            )
    except AmbiguousEventError as exc:
        _print_ambiguous(exc, as_json)
    except (StoreError, VerifierError) as exc:
        fail(str(exc), exc.exit_code if isinstance(exc, VerifierError) else 2)
    report = verifier.verify_block(bundle.material, bundle.event, chain=chain, tip=tip)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.render(), nl=False)
    sys.exit(report.exit_code)


def _api_source(
    url: str,
    token_file: Path | None,
    ca: Path | None,
    client_cert: Path | None,
    client_key: Path | None,
) -> Source:
    """The read API at ``url`` with the credentials the flags and environment name: the read
    token from ``token_file`` (else ``$AUDITSEAL_API_TOKEN``), never from the command line."""
    from auditseal.verifier.remote import Source

    if (client_cert is None) != (client_key is None):
        fail("--api-client-cert and --api-client-key go together", 2)
    token = os.environ.get("AUDITSEAL_API_TOKEN") or None
    if token_file is not None:
        try:
            lines = token_file.read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"--api-token-file {token_file}: cannot read: {getattr(exc, 'strerror', exc)}", 2)
        if len(lines) != 1:
            fail(f"--api-token-file {token_file}: want the token alone on one line", 2)
        token = lines[0]
    cert = (client_cert, client_key) if client_cert and client_key else None
    try:
        return Source(url, token.strip() if token else None, ca, cert)
    except VerifierError as exc:
        fail(f"{'--api-token-file' if token_file else '$AUDITSEAL_API_TOKEN'}: {exc}", 2)


def _remote_chain_state(
    reader: AnchorReader | None, source: Source, depth: _Depth
) -> ChainState | None:
    """The chain's anchors against the read API's records of them; None without a chain."""
    from auditseal.verifier.anchored_state import read_chain_state
    from auditseal.verifier.remote import fetch_anchors

    if reader is None:
        return None
    try:
        on_chain = reader.anchors()
    except ChainUnavailableError:
        return None
    recorded = fetch_anchors(source)
    return read_chain_state(
        on_chain,
        lambda seq: recorded[seq][1] if seq in recorded else None,
        min_confirmations=depth.confirmations,
        claimed=[seq for seq, (status, _) in recorded.items() if status == "confirmed"],
        evidence="read API",
        settling=depth.settling(reader),
    )


def _remote_tip(source: Source, origin: str) -> int | None:
    from auditseal.verifier.remote import fetch_logs

    return next((size for log, _, size in fetch_logs(source) if log == origin), None)


def _unheld_logs(chain: ChainState | None, held: list[str], origin: str | None) -> list[str]:
    """Problems for logs the chain anchors that the evidence does not hold at all."""
    if chain is None:
        return []
    wanted = [origin] if origin is not None else sorted(chain.logs)
    return [p for log in wanted if log not in held for p in chain.problems_for(log, None)]


def _verify_all(
    verifier: Verifier, store: Location, origin: str | None, depth: _Depth, as_json: bool
) -> NoReturn:
    """Every block of one log (or of every log) streamed from a store, with a progress bar."""
    from auditseal.store.log_audit import audit_log

    if not may_exist(store):
        fail(f"{store}: no block store here (give --store)", 2)
    with BlockStore.open(store, readonly=True) as db:
        chain = _chain_state(db, verifier.reader, depth)
        held = db.logs()
        unheld = _unheld_logs(chain, held, origin)
        if origin is not None and not db.has_log(origin) and not unheld:
            fail(f"{store}: no log {origin!r}", 2)
        origins = [o for o in ([origin] if origin is not None else held) if o in held]
        total = sum(db.size(o) for o in origins)
        audits = []
        with click.progressbar(
            length=total, label="verifying", file=sys.stderr, show_pos=True
        ) as bar:
            for log in origins:
                done = 0

                def advance(n: int) -> None:
                    nonlocal done
                    bar.update(n - done)
                    done = n

                audits.append(audit_log(db, log, verifier, advance, chain))
    _print_audits(audits, as_json, chain, unheld)


def _verify_all_remote(
    offline: Verifier,
    online: Verifier,
    source: Source,
    origin: str | None,
    depth: _Depth,
    as_json: bool,
) -> NoReturn:
    """Every block of one log (or of every log) fetched from the read API as bundles."""
    from dataclasses import replace

    from auditseal.verifier.anchored_state import CHECK as ANCHORED_STATE
    from auditseal.verifier.audit import Problem, audit_materials
    from auditseal.verifier.remote import SourceError, fetch_bundle, fetch_logs
    from auditseal.verifier.verify import BlockMaterial

    chain = _remote_chain_state(online.reader, source, depth)
    logs = fetch_logs(source)
    unheld = _unheld_logs(chain, [log for log, _, _ in logs], origin)
    if origin is not None:
        logs = [item for item in logs if item[0] == origin]
        if not logs and not unheld:
            fail(f"{source}: serves no log {origin!r}", 2)
    audits = []
    with click.progressbar(
        length=sum(n for _, n, _ in logs),
        label="verifying blocks",
        file=sys.stderr,
        show_pos=True,
    ) as bar:
        for log, count, size in logs:

            def blocks(log: str = log, count: int = count) -> Iterator[BlockMaterial | Problem]:
                for number in range(count):
                    bar.update(1)
                    try:
                        yield fetch_bundle(source, log, number).material
                    except SourceError as exc:  # the server lacks it: a missing block
                        yield Problem(number, "missing", str(exc))

            audit = audit_materials(log, blocks(), offline, online)
            if chain is not None:
                found = [Problem(None, ANCHORED_STATE, p) for p in chain.problems_for(log, size)]
                audit = replace(audit, problems=(*audit.problems, *found))
            audits.append(audit)
    _print_audits(audits, as_json, chain, unheld)


def _print_audits(
    audits: list[LogAudit],
    as_json: bool,
    chain: ChainState | None = None,
    unheld: list[str] | None = None,
) -> NoReturn:
    """The per-log reports, then what the chain says of the evidence as a whole (anchors it
    cannot rebuild, logs it does not hold), which fails the run whatever the logs say."""
    chain_problems = [*(chain.problems if chain is not None else ()), *(unheld or ())]
    waiting = chain.settling_note() if chain is not None else None
    code = 1 if chain_problems else combined_exit_code(audits)
    if code == 0 and waiting is not None:
        code = 3
    verdict = {0: "VALID", 1: "INVALID", 3: "NOT PROVEN"}[code]
    if as_json:
        data: dict[str, Any] = {
            "verdict": verdict,
            "exit_code": code,
            "logs": [a.to_json() for a in audits],
        }
        if chain is not None:
            data["anchored_state"] = {
                **chain.to_json(),
                "problems": chain_problems,
                "pending": waiting,
            }
        click.echo(json.dumps(data, indent=2))
    else:
        for audit in audits:
            click.echo(audit.render(), nl=False)
        if chain is not None:
            latest = chain.latest
            click.echo(
                f"chain: {len(chain.anchors)} anchors with {chain.min_confirmations}+ "
                "confirmations"
                + (
                    f", the latest is anchor {latest.seq} (block {latest.block_number})"
                    if latest is not None
                    else ""
                )
            )
        for problem in chain_problems:
            click.echo(f"  anchored-state: {problem}")
        if waiting is not None:
            click.echo(f"  anchored-state: {waiting}")
        if len(audits) != 1 or chain_problems:
            click.echo(f"{len(audits)} log{'s' if len(audits) != 1 else ''}: {verdict}")
    sys.exit(code)


@click.command("bundle")
@click.option("--block", "number", type=click.IntRange(min=0), help="Block number to bundle.")
@_event_option
@_log_option
@_store_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    required=True,
    help="File to write the bundle to (written whole or not at all); - for stdout.",
)
@json_option
def bundle(
    number: int | None,
    event: str | None,
    source_uri: str | None,
    origin: str | None,
    store: Location | None,
    out: Path,
    as_json: bool,
) -> None:
    """Write a proof bundle: everything needed to verify a block (and, with --event, one of
    its events) offline, with only the log keys and a chain endpoint:

    \b
        auditseal verify --bundle FILE --rpc URL --contract ADDR --log-key KEY

    The format is auditseal.bundle/v1 (docs/FORMAT.md). Nothing in it is trusted by the
    verifier: an edited bundle fails the same checks an edited store does.
    """
    if number is None and event is None:
        fail("name what to bundle: --block N or --event ID", 2)
    if source_uri is not None and event is None:
        fail("--source-uri names the source of an event: give it with --event ID", 2)
    try:
        made, _, _ = _from_store(store or DEFAULT_STORE, origin, number, event, source_uri)
    except (StoreError, VerifierError) as exc:
        fail(str(exc), 2)
    data = made.encode()
    if str(out) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        write_atomic(out, data)
    except OSError as exc:
        fail(f"{out}: cannot write the bundle: {exc.strerror or exc}", 2)
    header = made.material.block.header
    summary = {
        "file": str(out),
        "bytes": len(data),
        "origin": made.material.origin,
        "block": header.number,
        "entries": header.size,
        "anchored": made.material.receipt is not None,
        "event": made.event.requested if made.event else None,
    }
    if as_json:
        click.echo(json.dumps(summary))
    else:
        anchored = "anchored" if summary["anchored"] else "not anchored yet"
        click.echo(
            f"wrote {out}: block {header.number} of {made.material.origin}, "
            f"{header.size} entries, {anchored}, {len(data)} bytes"
        )
