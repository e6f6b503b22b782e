"""``make demo`` in a reduced form (fewer events), so it cannot rot: the whole flow runs on the
real broker, chain and pipeline, catches the tampered copy, and leaves nothing running."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from auditseal.infra.processes import is_alive

pytestmark = [pytest.mark.chain, pytest.mark.timeout(600)]
AUDITSEAL = str(Path(sys.executable).parent / "auditseal")
ANVIL_DEV_ACCOUNT = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # owns the contract


def test_the_demo_runs_end_to_end_and_stops_everything(tmp_path):
    workdir = tmp_path / "demo"
    done = subprocess.run(
        [
            AUDITSEAL,
            "demo",
            "--dir",
            str(workdir),
            "--events",
            "3000",
            "--timeout",
            "240",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["events_sent"] == summary["events_sealed"] == 3000
    assert summary["anchors"] >= 1 and summary["gas_used"] >= 48_000 * summary["anchors"]
    assert summary["verify_all"] == "VALID"
    # The anchor service signs from an encrypted keystore, with an account of its own.
    assert summary["anchor_key"].endswith("anchor.keystore.json")
    assert len(summary["anchorers"]) == 1 and summary["anchorers"][0] != ANVIL_DEV_ACCOUNT
    assert summary["tampered_verdict"] == "INVALID: check 1 (entries) failed"
    assert summary["monitor_alerts"] == 0 and summary["dashboard"].startswith("http://127.0.0.1:")
    # Nothing is left running: the state file is gone and every process it named is gone.
    assert not (workdir / ".auditseal" / "dev" / "state.json").exists()
    pids = summary["pids"]
    assert set(pids) == {"tansu", "anvil", "sealer", "anchor", "monitor", "dashboard"}
    assert not [kind for kind, pid in pids.items() if is_alive(pid)]


def test_the_demo_keeps_the_stack_when_asked(tmp_path):
    workdir = tmp_path / "kept"
    done = subprocess.run(
        [AUDITSEAL, "demo", "--dir", str(workdir), "--events", "500", "--keep", "--json"],
        capture_output=True,
        text=True,
        timeout=500,
    )
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        state = json.loads((workdir / ".auditseal" / "dev" / "state.json").read_text())
        pids = [s["pid"] for s in state["pipeline"]] + [state["broker"]["pid"]]
        assert len(state["pipeline"]) == 4 and all(is_alive(pid) for pid in pids)
        # The kept dashboard wants a read token: dev up made one, kept beside the sealer's key.
        address = next(s["address"] for s in state["pipeline"] if s["kind"] == "dashboard")
        token_file = workdir / ".auditseal" / "dev" / "dashboard.token"
        token = token_file.read_text().strip()
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert token not in json.dumps(state)  # the state file and every argv: no token
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{address}api/state", timeout=30)
        assert refused.value.code == 401
        request = urllib.request.Request(
            f"{address}api/state", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["blocks"]
    finally:
        down = subprocess.run(
            [AUDITSEAL, "dev", "down"], cwd=workdir, capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0, down.stderr
    assert not any(is_alive(pid) for pid in pids)
