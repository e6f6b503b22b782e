"""The commands as operators run them, under umask 0: nothing they create is open to group or
others. The dev stack with its whole pipeline (sealer, anchor service,
monitor, dashboard, logs, keys, state, the store with its -wal and -shm), the simulator's
spool and sequence state, and the one-shot commands that write files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from auditseal.infra.processes import free_port
from auditseal.store.blockstore import BlockStore
from tests.unit.test_file_modes import loose_modes

ROOT = Path(__file__).resolve().parents[2]
CLI = (sys.executable, "-c", "from auditseal.cli.main import main; main()")
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def run(
    cwd: Path, *args: str, codes: tuple[int, ...] = (0,), stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AUDITSEAL_")}
    proc = subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        env={**base, "PYTHONPATH": str(ROOT), "AUDITSEAL_BROKER": "tansu", **env},
        preexec_fn=lambda: os.umask(0),  # the loosest umask an operator could leave
    )
    assert proc.returncode in codes, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def contents_loose(folder: Path) -> list[str]:
    """Loose modes of everything inside ``folder`` (not the folder itself: the test's)."""
    return [line for child in folder.iterdir() for line in loose_modes(child)]


@pytest.mark.kafka
@pytest.mark.chain
def test_the_dev_stack_and_its_pipeline_leave_nothing_open(tmp_path: Path) -> None:
    ports = ("--broker-port", str(free_port()), "--chain-port", str(free_port()))
    run(
        tmp_path,
        *("dev", "up", "--pipeline", "--no-pipeline-metrics", "--anchor-interval", "1"),
        *(*ports, "--dashboard-port", str(free_port())),
    )
    try:
        run(tmp_path, "simulate", "--events", "40", "--rate", "200", "--json")
        store = tmp_path / ".auditseal" / "store.db"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if store.exists():
                with BlockStore.open(store, readonly=True) as db:
                    if sum(db.size(o) for o in db.logs()) >= 40 and db.anchors():
                        break
            time.sleep(0.5)
        else:
            pytest.fail("the pipeline did not seal and anchor the events in 120 s")
        assert (tmp_path / ".auditseal" / "dev" / "state.json").is_file()
        assert contents_loose(tmp_path) == []  # while it runs
        running = {p.name for p in (tmp_path / ".auditseal").rglob("*")}
    finally:
        run(tmp_path, "dev", "down")
    # The -wal exists while the store is open (a clean stop checkpoints and removes it).
    assert {"store.db-wal", "sealer.key", "chain.key", "anvil.log", "sealer.log"} <= running
    assert contents_loose(tmp_path) == []


@pytest.mark.kafka
@pytest.mark.chain
def test_one_shot_commands_leave_nothing_open(
    tmp_path: Path, anvil_rpc: str, kafka_bootstrap: str, new_topic
) -> None:
    origin = "modes.local/x/0"
    key = json.loads(run(tmp_path, "keygen", "--name", "op", "--out", "keys", "--json").stdout)
    run(tmp_path, "log", "append", "--store", "s/store.db", "--log", origin, "--key", "keys/op.key",
        stdin="a\nb\n")  # fmt: skip
    run(tmp_path, "store", "init", "--store", "t/empty.db")
    run(tmp_path, "store", "copy", "--from", "s/store.db", "--to", "c/copy.db")
    run(tmp_path, "bundle", "--block", "0", "--store", "s/store.db", "--out", "b/bundle.json")
    run(tmp_path, "anchor", "deploy", "--rpc", anvil_rpc, "--out", "a/deployment.json",
        AUDITSEAL_CHAIN_KEY=DEV_KEY)  # fmt: skip
    run(
        tmp_path,
        *("monitor", "--bootstrap", kafka_bootstrap, "--log-key", key["verifier_key"]),
        *("--no-chain", "--sealed-topic", new_topic(), "--anchors-topic", new_topic()),
        *("--alerts-topic", "", "--metrics-listen", "off", "--idle-exit", "1"),
        *("--state", "m/state.json"),
    )
    run(tmp_path, "simulate", "--events", "5", "--bootstrap", kafka_bootstrap,
        "--topic", new_topic(), "--state-dir", "sim/state")  # fmt: skip
    for made in ("keys/op.pub", "s/store.db-wal", "c/copy.db", "b/bundle.json",
                 "a/deployment.json", "m/state.json", "sim/state"):  # fmt: skip
        assert (tmp_path / made).exists(), made
    assert contents_loose(tmp_path) == []
