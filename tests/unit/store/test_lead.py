"""The store's lead lock (one active anchor service per store), on SQLite and PostgreSQL: one
holder at a time, freed by release, by close and by the holder's death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from auditseal.store.blockstore import BlockStore
from auditseal.store.errors import InputError
from tests.unit.store.conftest import store, store_location  # noqa: F401

ROOT = Path(__file__).resolve().parents[3]


def test_one_holder_at_a_time_until_it_releases(store, store_location):  # noqa: F811
    other = BlockStore.open(store_location)
    try:
        assert store.try_lead("anchor")
        assert store.try_lead("anchor")  # held already: still True, nothing taken twice
        assert not other.try_lead("anchor")
        assert not other.try_lead("anchor")  # a standby may ask again and again
        assert other.try_lead("other-job")  # names are independent
        store.release_lead("anchor")
        store.release_lead("anchor")  # not held: nothing to do
        assert other.try_lead("anchor")
        assert not store.try_lead("anchor")
    finally:
        other.close()


def test_closing_the_holder_frees_the_lead(store_location):  # noqa: F811
    first = BlockStore.open(store_location, create=True)
    second = BlockStore.open(store_location)
    try:
        assert first.try_lead("anchor") and not second.try_lead("anchor")
        first.close()
        assert second.try_lead("anchor")
    finally:
        second.close()


def test_a_killed_holder_frees_the_lead_and_a_stopped_one_keeps_it(store, store_location):  # noqa: F811
    """The guarantee standby rests on: the lock dies with its process (SIGKILL, no clean-up),
    and a paused process keeps it (no second leader while it could wake up)."""
    holder = _holder(store_location)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        assert not store.try_lead("anchor")
        holder.send_signal(signal.SIGSTOP)
        time.sleep(0.5)
        assert not store.try_lead("anchor")  # paused, not dead: it still leads
        holder.send_signal(signal.SIGCONT)
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        deadline = time.monotonic() + 10
        while not store.try_lead("anchor") and time.monotonic() < deadline:
            time.sleep(0.05)  # the server notices the closed socket at once; allow for a slow CI
        assert store.try_lead("anchor")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)


def _holder(location: Path | str) -> subprocess.Popen[str]:
    """A process that takes the lead on ``location`` (given on stdin, so a URL's password
    never appears in a process list) and sleeps."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from auditseal.store.blockstore import BlockStore\n"
            "s = BlockStore.open(sys.stdin.readline().strip())\n"
            "print(s.try_lead('anchor'), flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdin is not None
    proc.stdin.write(f"{location}\n")
    proc.stdin.close()
    return proc


def test_sqlite_lead_is_a_0600_sidecar_file(tmp_path):
    with BlockStore.open(tmp_path / "store.db", create=True) as s:
        assert s.try_lead("anchor")
        sidecar = tmp_path / "store.db.lead-anchor"
        assert sidecar.exists() and sidecar.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("name", ["", "Anchor", "../x", "a b", "x" * 65])
def test_a_bad_lead_name_is_an_input_error(tmp_path, name):
    with (
        BlockStore.open(tmp_path / "store.db", create=True) as s,
        pytest.raises(InputError, match="lead name"),
    ):
        s.try_lead(name)


def test_a_lost_lock_is_reported_once_then_taken_afresh(store, store_location):  # noqa: F811
    """Its lock file deleted (SQLite) or its session ended (PostgreSQL), a holder is told it
    no longer leads, so it starts over as a new leader (recovery first) if it takes it again."""
    assert store.try_lead("anchor")
    if store.path is None:
        import psycopg

        with psycopg.connect(str(store_location), autocommit=True) as admin:
            # What ANCHORING.md tells an operator to run against a paused leader.
            (ended,) = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'auditseal lead anchor'"
                " AND datname = current_database()"
            ).fetchone()
            assert ended == 1
        time.sleep(0.2)
    else:
        Path(f"{store_location}.lead-anchor").unlink()
    assert not store.try_lead("anchor")
    assert store.try_lead("anchor")
