"""``pip install auditseal`` (no extras) in a clean venv is enough to verify: the verifier needs
only ``auditseal.verifier`` and the base dependencies, never a Kafka client (nor Faust, which
only the benchmarks' extra installs).

The venv is built from this source tree with the package index this machine reaches; the store
and the anchor it checks are made with the test environment, as an auditor receives them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_verify import LOG_KEY
from tests.integration.test_verify_sources import (  # noqa: F401  (fixtures)
    Events,
    artifact,
    events,
)

pytestmark = [pytest.mark.chain, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCES = (".git", ".venv", "node_modules", "build", "*.egg-info", ".auditseal", "*_cache")


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("base-venv")
    # A copy of the sources: setuptools builds in the source tree and would leave build/ here.
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    return venv


def run(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "auditseal"), *args], capture_output=True, text=True, timeout=120
    )


def test_the_base_install_has_no_pipeline_packages(base_venv):
    probe = subprocess.run(
        [
            str(base_venv / "bin" / "python"),
            "-c",
            "import importlib.util as u, json;"
            "print(json.dumps({m: u.find_spec(m) is not None for m in "
            "('faust', 'confluent_kafka', 'aiokafka', 'auditseal.verifier', 'web3')}))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=base_venv,  # not the repository, whose folders are importable from its root
    )
    found = json.loads(probe.stdout)
    assert found == {
        "faust": False,
        "confluent_kafka": False,
        "aiokafka": False,
        "auditseal.verifier": True,
        "web3": True,
    }


def test_the_install_adds_one_top_level_package(base_venv):
    files = subprocess.run(
        [
            str(base_venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m, json;"
            "print(json.dumps([str(f) for f in m.files('auditseal')]))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=base_venv,
    )
    installed = json.loads(files.stdout)
    in_site_packages = {f.split("/")[0] for f in installed if not f.startswith("..")}
    assert in_site_packages == {"auditseal", "auditseal-0.1.0.dist-info"}, in_site_packages
    rooms = {f.split("/")[1] for f in installed if f.startswith("auditseal/")}
    assert {"verifier", "store", "sealer", "anchor", "ingest", "cli"} <= rooms, rooms
    # Package data travels with its room.
    assert "auditseal/verifier/anchor_abi.json" in installed
    assert "auditseal/dashboard/static/index.html" in installed
    assert "auditseal/anchor/contracts/AuditAnchor.json" in installed


def test_the_base_install_verifies_a_store_a_bundle_and_an_event(base_venv, events: Events):  # noqa: F811
    pins = ["--rpc", events.rpc, "--deployment", str(events.record_path), "--log-key", LOG_KEY]
    assert "--bundle" in run(base_venv, "verify", "--help").stdout
    by_store = run(base_venv, "verify", "--store", str(events.path), "--block", "1", *pins)
    assert by_store.returncode == 0 and by_store.stdout.endswith("VALID\n"), by_store.stderr
    out = events.tmp / "bundle.json"
    made = run(
        base_venv, "bundle", "--store", str(events.path), "--event", "evt-4", "--out", str(out)
    )
    assert made.returncode == 0, made.stderr
    by_bundle = run(base_venv, "verify", "--bundle", str(out), "--json", *pins)
    report = json.loads(by_bundle.stdout)
    assert by_bundle.returncode == 0 and report["verdict"] == "VALID"
    assert report["event"] == "evt-4" and len(report["checks"]) == 9
