"""Everything auditseal creates is 0600 in 0700 folders, whatever the umask.

Each test runs a creating function or command in-process under umask 0 (the loosest an operator
could leave, and what a library creating files with its defaults would then get), into a folder
that does not exist yet, and walks what appeared: any group or other bit fails. In-process on
purpose: the ``auditseal`` entry point sets umask 077 for what libraries create, so only here do
the creation sites have to stand on their own.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditseal.sealer.log_writer import LogWriter
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.files import create_private, open_private, private_dir, write_atomic
from auditseal.store.model import Record


def loose_modes(root: Path) -> list[str]:
    """Every file or folder under ``root`` (``root`` included) that group or others may use."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found.append(f"{path.relative_to(root.parent)} {mode:04o}")
    return found


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def fresh(tmp_path: Path, open_umask: None) -> Path:
    """A folder that does not exist yet, two levels below an existing one."""
    return tmp_path / "made" / "here"


def created(fresh: Path) -> list[str]:
    """The loose modes among what was created: ``fresh``'s parent and everything in it."""
    assert fresh.parent.exists(), "nothing was created"
    return loose_modes(fresh.parent)


def test_the_file_helpers(fresh: Path) -> None:
    private_dir(fresh / "a" / "b")
    write_atomic(fresh / "c" / "state.json", b"{}")
    os.close(open_private(fresh / "d" / "x.log"))
    assert create_private(fresh / "e" / "store.db")
    assert not create_private(fresh / "e" / "store.db")
    assert created(fresh) == []


def test_an_old_file_opened_for_appending_is_made_owner_only(tmp_path: Path) -> None:
    log = tmp_path / "old.log"
    log.write_text("")
    log.chmod(0o644)
    os.close(open_private(log))
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_a_sqlite_store_its_wal_shm_and_lead_file(fresh: Path) -> None:
    with BlockStore.open(fresh / "store.db", create=True) as store:
        writer = LogWriter(store, Signer.generate("modes"), lambda: 1_700_000_000_000)
        writer.append(
            "modes.local/x/0", [Record(i, 1_700_000_000_000, b"k", b"v") for i in range(3)]
        )
        assert store.try_lead("anchor")
        names = {p.name for p in fresh.iterdir()}
        assert {"store.db", "store.db-wal", "store.db-shm", "store.db.lead-anchor"} <= names
        assert created(fresh) == []


def test_store_copy_and_bundle_outputs(fresh: Path, tmp_path: Path) -> None:
    from auditseal.store.copy import copy_store

    source = tmp_path / "source.db"
    signer = Signer.generate("modes")
    with BlockStore.open(source, create=True) as store:
        LogWriter(store, signer, lambda: 1_700_000_000_000).append(
            "modes.local/x/0", [Record(0, 1_700_000_000_000, b"k", b"v")]
        )
    with (
        BlockStore.open(source, readonly=True) as src,
        BlockStore.open(fresh / "copy.db", create=True) as dst,
    ):
        copy_store(src, dst)
    from auditseal.cli.verify import bundle

    out = CliRunner().invoke(
        bundle,
        ["--block", "0", "--store", str(source), "--out", str(fresh / "b" / "bundle.json")],
    )
    assert out.exit_code == 0, out.output
    assert created(fresh) == []


def test_keygen_and_key_files(fresh: Path) -> None:
    from auditseal.sealer.cli import keygen

    out = CliRunner().invoke(keygen, ["--name", "op", "--out", str(fresh / "keys")])
    assert out.exit_code == 0, out.output
    assert {p.name for p in (fresh / "keys").iterdir()} == {"op.key", "op.pub"}
    assert created(fresh) == []


def test_the_ingest_spool_cursor_quarantine_and_sequence_state(fresh: Path) -> None:
    from auditseal.ingest.sequence import SequenceCounter
    from auditseal.ingest.spool import Spool

    spool = Spool(fresh / "spool")
    ends = [spool.append(b"k", b"v%d" % i) for i in range(5)]
    spool.sync()
    spool.ack(ends[1], 2)  # the cursor file
    spool.prepend([(b"k", b"older")])  # a new file, renamed over the spool
    spool.close()
    with open(fresh / "spool" / "events.spool", "r+b") as damaged:
        damaged.seek(30)
        damaged.write(b"garbage")
    Spool(fresh / "spool").close()  # keeps the damaged file aside
    assert any(".damaged-" in p.name for p in (fresh / "spool").iterdir())
    counter = SequenceCounter(fresh / "state" / "sequences.json", reserve=2)
    for _ in range(5):
        counter.next("src")
    counter.close()
    assert created(fresh) == []


def test_tokens_files(fresh: Path) -> None:
    from auditseal.transport.tokens import add_token

    add_token(fresh / "tokens" / "gateway.tokens", "src")
    add_token(fresh / "tokens" / "gateway.tokens", "other")
    assert created(fresh) == []


def test_monitor_state_and_deployment_record(fresh: Path) -> None:
    from auditseal.anchor.deploy import Deployment, write_record
    from auditseal.monitor.checks import Checker
    from auditseal.monitor.watch import StateFile

    StateFile(fresh / "monitor" / "state.json", 1.0).save(Checker([]), {("t", 0): 5})
    assert (fresh / "monitor" / "state.json").is_file()
    fields = Deployment.__dataclass_fields__
    record = Deployment(**{name: _sample(name) for name in fields})
    write_record(record, fresh / "anchor" / "deployment.json")
    assert created(fresh) == []


def _sample(name: str) -> object:
    return {
        "address": "0x" + "11" * 20,
        "owner": "0x" + "22" * 20,
        "anchorers": ("0x" + "22" * 20,),
        "tx_hash": "0x" + "33" * 32,
        "block_hash": "0x" + "44" * 32,
    }.get(name, 1 if name in {"chain_id", "block_number", "gas_used"} else "x")


def test_dev_stack_files(fresh: Path) -> None:
    from auditseal.infra import pipeline, postgres, processes, state
    from auditseal.infra.cli import _write_dev_key

    state.save(state.DevState(), fresh / "dev" / "state.json")
    _write_dev_key(fresh / "dev" / "chain.key")
    pipeline.ensure_sealer_key(fresh / "dev")
    postgres.write_pgpass(fresh / "dev", 5432, "pw")
    pid = processes.spawn_detached(["true"], fresh / "dev" / "logs" / "service.log")
    processes.wait_until(lambda: None if processes.is_alive(pid) else True, 10, "true")
    assert created(fresh) == []
