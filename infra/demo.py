"""``auditseal demo`` (``make demo``): the whole flow on this machine, start to verified summary.

It runs the same commands an operator would, each printed before it runs, in a directory of its
own (``--dir``, default ``.auditseal/demo``) with free ports, so a stack kept by ``make up`` is
left alone:

1. ``dev up --pipeline``: broker, chain, contract, sealer, anchor service, monitor, dashboard;
2. ``simulate``: the events from the simulated proxies, into Kafka;
3. a wait until every event is sealed and every log's tip is anchored;
4. ``verify --block`` on one block, then ``verify --all``;
5. a copy of the store with one event altered, shown failing ``verify``;
6. a summary: events, blocks, anchors, gas, monitor alerts, the dashboard's address;
7. ``dev down``, unless ``--keep`` (then ``auditseal dev down`` in that directory stops it).

With ``--hsm`` the log's signing key is generated inside a SoftHSM2 token (a real PKCS#11
module, Debian ``softhsm2``) in the demo's directory by ``auditseal keygen --pkcs11``, and the
sealer signs every checkpoint in the token: no log key file exists. Without softhsm2 (or the
``hsm`` extra) it says what to install and starts nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from auditseal.infra import state
from auditseal.infra.errors import ServiceUnavailableError
from auditseal.infra.pipeline import auditseal_argv, dashboard_login
from auditseal.infra.processes import free_port
from auditseal.store.blockstore import DEFAULT_STORE, BlockStore
from auditseal.store.files import create_private, private_dir, write_atomic
from auditseal.verifier.checkpoint import Checkpoint

__all__ = ["demo"]

STORE = DEFAULT_STORE


@dataclass
class Demo:
    workdir: Path
    quiet: bool
    env: dict[str, str] = field(default_factory=dict)

    def say(self, text: str = "") -> None:
        if not self.quiet:
            click.echo(text)

    def step(self, text: str) -> None:
        self.say(click.style(f"\n== {text}", bold=True))

    def run(self, *args: str, expect: tuple[int, ...] = (0,), show: bool = True) -> str:
        """Run ``auditseal ARGS`` in the demo directory; its output is shown (unless quiet)."""
        self.say(click.style(f"$ auditseal {' '.join(args)}", fg="cyan"))
        done = subprocess.run(
            [*auditseal_argv(), *args],
            cwd=self.workdir,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
        )
        if show:
            self.say(done.stdout.rstrip("\n"))
        if done.returncode not in expect:
            raise ServiceUnavailableError(
                f"`auditseal {' '.join(args)}` exited {done.returncode}, expected "
                f"{' or '.join(map(str, expect))}: {done.stderr.strip()[-2000:]}"
            )
        return done.stdout


def _store_progress(path: Path) -> tuple[int, int, int]:
    """(entries sealed, entries anchored, logs). An entry counts as anchored once a confirmed
    anchor covers its log up to it; both counts only grow (sizes and anchored sizes only grow),
    unlike "logs anchored", which drops each time a log's tip moves past its last anchor."""
    if not path.exists():
        return 0, 0, 0
    with BlockStore.open(path, readonly=True) as store:
        sealed = anchored = 0
        logs = store.logs()
        for origin in logs:
            size = store.size(origin)
            sealed += size
            receipt = store.latest_anchored_checkpoint(origin)
            if receipt is not None:
                anchored += min(size, Checkpoint.from_text(receipt.checkpoint).size)
        return sealed, anchored, len(logs)


def _wait_anchored(demo: Demo, events: int, timeout: float) -> float:
    began = time.monotonic()
    path = demo.workdir / STORE
    last, said_at = None, -1.0
    while True:
        sealed, anchored, logs = _store_progress(path)
        done = sealed >= events and anchored == sealed
        now = time.monotonic() - began
        if (sealed, anchored) != last and (done or now - said_at >= 2.0):
            demo.say(
                f"   {now:5.1f} s  sealed {sealed:>7,} and anchored {anchored:>7,} of "
                f"{events:,} events ({logs} logs)"
            )
            last, said_at = (sealed, anchored), now
        if done:
            return now
        if time.monotonic() - began > timeout:
            raise ServiceUnavailableError(
                f"after {timeout:.0f} s: {sealed} of {events} events sealed, {anchored} "
                f"anchored; see the logs in {demo.workdir / '.auditseal' / 'dev'}"
            )
        time.sleep(0.5)


def _tamper(source: Path, target: Path) -> tuple[str, int, int]:
    """A copy of the store with one event's value altered; returns (log, block, leaf)."""
    target.unlink(missing_ok=True)
    create_private(target)  # event values: owner-only, as every store
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    db = sqlite3.connect(target)
    try:
        for trigger in ("entries_no_delete", "entries_only_redact"):
            db.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        log_id, origin = db.execute("SELECT id, origin FROM logs ORDER BY id LIMIT 1").fetchone()
        number, start, end = db.execute(
            "SELECT number, start_idx, end_idx FROM blocks WHERE log_id = ? ORDER BY number",
            (log_id,),
        ).fetchone()
        index = min(start + 1, end - 1)
        value = db.execute(
            "SELECT value FROM entries WHERE log_id = ? AND idx = ?", (log_id, index)
        ).fetchone()[0]
        forged = bytes(value).replace(b'"', b"'", 1) if value else b"forged"
        db.execute(
            "UPDATE entries SET value = ? WHERE log_id = ? AND idx = ?", (forged, log_id, index)
        )
        db.commit()
    finally:
        db.close()
    return origin, number, index


def _gas(rpc: str, tx_hashes: list[str]) -> tuple[int, int, list[str]]:
    """(gas used, wei paid, senders) of the anchor transactions, read from the chain."""
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(rpc, request_kwargs={"timeout": 10}))
    gas = wei = 0
    senders: set[str] = set()
    for tx in tx_hashes:
        receipt = w3.eth.get_transaction_receipt(tx)  # type: ignore[arg-type]
        gas += int(receipt["gasUsed"])
        wei += int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
        senders.add(str(receipt["from"]))
    return gas, wei, sorted(senders)


def _alerts(log: Path) -> list[dict[str, Any]]:
    """The alerts the monitor printed (JSON lines) so far."""
    alerts = []
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        if line.startswith("{"):
            try:
                alerts.append(json.loads(line))
            except ValueError:
                continue
    return alerts


@click.command("demo")
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".auditseal") / "demo",
    show_default=True,
    help="Working directory of the demo's stack, store and logs (wiped at the start).",
)
@click.option(
    "--events",
    type=click.IntRange(min=100),
    default=50_000,
    show_default=True,
    help="Events to send.",
)
@click.option(
    "--sources",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Simulated proxies.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=10),
    default=10_000,
    show_default=True,
    help="Events per second sent by all proxies together.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=10),
    default=600,
    show_default=True,
    help="Seconds to wait for everything to be sealed and anchored.",
)
@click.option("--keep", is_flag=True, help="Leave the stack running (stop it with `dev down`).")
@click.option(
    "--hsm",
    is_flag=True,
    help="Generate the log's signing key inside a SoftHSM2 token (PKCS#11) in the demo's "
    "directory and seal with it there; no log key file (needs softhsm2 and the hsm extra).",
)
@click.option("--json", "as_json", is_flag=True, help="Print only the summary, as JSON.")
def demo(
    workdir: Path,
    events: int,
    sources: int,
    rate: float,
    timeout: float,
    keep: bool,
    hsm: bool,
    as_json: bool,
) -> None:
    """Run the whole flow: stack up, events from simulated proxies sealed and anchored, a block
    and the whole log verified, a tampered copy caught, a summary; then the stack down.

    Exit codes: 0 the demo ran and every check came out as expected; 2 a bad option or a
    missing tool; 3 a step failed (its error says which, and where the logs are).
    """
    began = time.monotonic()
    workdir = workdir.absolute()
    d = Demo(workdir, quiet=as_json)
    if hsm:
        _check_hsm()  # before anything is stopped, wiped or started
    if (workdir / ".auditseal").exists():
        d.run("dev", "down", show=False)  # a kept stack from an earlier demo
        shutil.rmtree(workdir / ".auditseal")
    private_dir(workdir)
    broker_port, chain_port, dashboard_port = free_port(), free_port(), free_port()
    d.env = {
        **dict.fromkeys(("AUDITSEAL_DEV_STATE", "AUDITSEAL_STORE", "AUDITSEAL_LOG_KEY"), ""),
        "AUDITSEAL_KAFKA_CONFIG": "",  # the demo's broker is plaintext on loopback
    }
    summary: dict[str, Any] = {"dir": str(workdir), "kept": keep}
    if hsm:
        summary["log_key"] = _hsm_log_key(d, workdir / state.DEFAULT_STATE.parent)
    try:
        d.step("1. the stack: broker, chain, contract, sealer, anchor service, monitor, dashboard")
        d.run(
            *("dev", "up", "--pipeline", "--anchor-interval", "2", "--no-pipeline-metrics"),
            *("--broker-port", str(broker_port), "--chain-port", str(chain_port)),
            *("--dashboard-port", str(dashboard_port)),
        )
        dev = state.load(workdir / state.DEFAULT_STATE)
        assert dev is not None and dev.rpc_url is not None
        state_dir = workdir / state.DEFAULT_STATE.parent
        d.env.update(
            AUDITSEAL_LOG_KEY=(state_dir / "sealer.pub").read_text().strip(),
            AUDITSEAL_RPC=dev.rpc_url,
        )
        dashboard = next(s.address for s in dev.pipeline if s.kind == "dashboard")
        services = [dev.broker, dev.chain, *dev.pipeline]
        summary["pids"] = {s.kind: s.pid for s in services if s is not None}

        d.step(f"2. {events:,} events from {sources} simulated proxies into Kafka")
        sent = json.loads(
            d.run(
                *("simulate", "--events", str(events), "--rate", str(rate)),
                *("--sources", str(sources), "--json"),
                show=False,
            )
        )
        d.say(f"   sent {sent['sent']:,}, acknowledged by Kafka {sent['acknowledged']:,}")
        summary["events_sent"] = sent["acknowledged"]

        d.step("3. waiting until every event is sealed and every log's tip is anchored on chain")
        waited = _wait_anchored(d, sent["acknowledged"], timeout)
        d.say(f"   done in {waited:.1f} s")

        d.step("4. verify one block, then the whole store")
        with BlockStore.open(workdir / STORE, readonly=True) as store:
            first_log = store.logs()[0]
        d.run("verify", "--block", "0", "--log", first_log)
        whole = json.loads(d.run("verify", "--all", "--json", show=False))
        for log in whole["logs"]:
            counts = f"{log['blocks']} blocks, {log['entries']:,} entries"
            d.say(f"   {log['origin']}: {counts}: {log['verdict'].split(':')[0]}")
        d.say(f"   verify --all: {whole['verdict']}")
        summary["verify_all"] = whole["verdict"]

        d.step("5. a copy of the store with one event altered, as someone with file access could")
        tampered = workdir / "tampered.db"
        origin, number, index = _tamper(workdir / STORE, tampered)
        d.say(
            f"   changed the value of leaf {index} (block {number} of {origin}) in {tampered.name}"
        )
        report = d.run(
            *("verify", "--block", str(number), "--log", origin, "--store", str(tampered)),
            expect=(1,),
        )
        summary["tampered_verdict"] = report.strip().splitlines()[-1]

        d.step("6. summary")
        summary.update(_summarise(workdir / STORE, dev.rpc_url))
        summary["anchor_key"] = _anchor_key(dev)
        if hsm and (state_dir / "sealer.key").exists():
            raise ServiceUnavailableError(f"demo --hsm: {state_dir / 'sealer.key'} exists")
        alerts = _alerts(state_dir / "monitor.log")
        summary.update(
            monitor_alerts=len(alerts),
            dashboard=dashboard,
            seconds=round(time.monotonic() - began, 1),
        )
        _print_summary(d, summary, as_json)
        if alerts:
            raise ServiceUnavailableError(
                f"the monitor raised {len(alerts)} alert(s) on a clean run: {alerts[:3]}"
            )
    finally:
        if keep:
            address = summary.get("dashboard", "-")
            login = dashboard_login((workdir / state.DEFAULT_STATE).parent, address)
            d.say(
                f"\nthe stack keeps running: dashboard {login or address}; stop "
                f"it with: (cd {workdir} && auditseal dev down)"
            )
        else:
            d.step("7. stopping the stack")
            d.run("dev", "down", show=not as_json, expect=(0, 1, 2, 3))
    if as_json:
        click.echo(json.dumps(summary, indent=2))


def _check_hsm() -> None:
    """SoftHSM2 and the PKCS#11 binding are here, or ToolMissingError (exit 2) saying what to
    install."""
    import importlib.util

    from auditseal.infra.errors import ToolMissingError
    from auditseal.infra.softhsm import find_softhsm

    try:
        find_softhsm()
        if importlib.util.find_spec("pkcs11") is None:
            raise ToolMissingError("python-pkcs11 is not installed: pip install 'auditseal[hsm]'")
    except ToolMissingError as exc:
        raise ToolMissingError(f"demo --hsm: {exc}; nothing was started") from None


def _hsm_log_key(d: Demo, state_dir: Path) -> str:
    """A SoftHSM2 token in the state directory, the log key generated inside it, and the
    ``sealer.pkcs11`` file that makes ``dev up --pipeline`` seal with it; the key's URI."""
    from auditseal.infra.pipeline import SEALER_PKCS11
    from auditseal.infra.softhsm import init_token

    d.step("0. the log key, generated inside a SoftHSM2 token (PKCS#11): no key file")
    private_dir(state_dir)
    token = init_token(state_dir / "softhsm", "auditseal-demo")
    d.env.update(token.env)  # every command of the demo, and the sealer dev up starts
    d.say(f"   token auditseal-demo in {token.conf.parent}, user PIN in {token.pin_file} (0600)")
    made = json.loads(
        d.run(
            *("keygen", "--pkcs11", token.uri(), "--name", "auditseal-demo-sealer"),
            *("--out", str(state_dir), "--json"),
            show=False,
        )
    )
    d.say(f"   verifier key {made['verifier_key']}")
    uri: str = made["pkcs11"]
    write_atomic(state_dir / SEALER_PKCS11, (uri + "\n").encode())
    return uri


def _summarise(path: Path, rpc: str) -> dict[str, Any]:
    with BlockStore.open(path, readonly=True) as store:
        logs = store.logs()
        entries = sum(store.size(o) for o in logs)
        blocks = sum(1 for o in logs for _ in store.blocks(o))
        txs = [a.tx_hash for a in store.anchors(status="confirmed")]
    gas, wei, senders = _gas(rpc, txs)
    return {
        "anchorers": senders,
        "events_sealed": entries,
        "logs": len(logs),
        "blocks": blocks,
        "anchors": len(txs),
        "gas_used": gas,
        "eth_spent": wei / 10**18,
    }


def _anchor_key(dev: state.DevState) -> str | None:
    """The key file the demo's anchor service was started with (its keystore)."""
    argv = next((s.argv for s in dev.pipeline if s.kind == "anchor" and s.argv), [])
    return argv[argv.index("--key") + 1] if "--key" in argv else None


def _print_summary(d: Demo, s: dict[str, Any], as_json: bool) -> None:
    if as_json:
        return
    rows = [
        ("events sent", f"{s['events_sent']:,}"),
        ("events sealed", f"{s['events_sealed']:,} in {s['blocks']} blocks of {s['logs']} logs"),
        (
            "anchors",
            f"{s['anchors']} transactions, {s['gas_used']:,} gas "
            f"({s['eth_spent']:.6f} ETH on the dev chain)",
        ),
        ("anchor key", f"{s['anchor_key']} (account {', '.join(s['anchorers'])})"),
        ("verify --all", s["verify_all"]),
        ("tampered copy", s["tampered_verdict"]),
        ("monitor alerts", str(s["monitor_alerts"])),
        (
            "dashboard",
            s["dashboard"]
            + ("" if s.get("kept") else " (stopped with the stack; --keep or `make up` keeps it)"),
        ),
        ("took", f"{s['seconds']} s"),
    ]
    if "log_key" in s:
        rows.insert(4, ("log key", "in a SoftHSM2 token (PKCS#11), no key file"))
    for name, value in rows:
        d.say(f"   {name:<15} {value}")
