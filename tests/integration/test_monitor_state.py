"""`auditseal monitor --state`: a restart resumes where the saved state stops, against the real
broker and sealer. The second run reads only the new messages and raises nothing false; a
topic whose early messages are gone raises no chain_break for the blocks before the state."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from auditseal.sealer.signer import Signer
from tests.integration.sealer_harness import Stack, make_stack
from tests.integration.test_monitor import event, produce, run_monitor, seal

pytestmark = pytest.mark.kafka


def sealed_messages(stack: Stack, start: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of every message of the sealed topic's partition 0 from ``start``."""
    consumer = Consumer(
        {
            "bootstrap.servers": stack.bootstrap,
            "group.id": "state-test",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(stack.sealed_topic, 0, start)])
    out: list[tuple[bytes, bytes]] = []
    idle = 0
    while idle < 6:
        msg = consumer.poll(0.5)
        if msg is None:
            idle += 1
        elif msg.error() is None:
            idle = 0
            out.append((msg.key(), msg.value()))
    consumer.close()
    return out


def batch(first: int, last: int) -> list[tuple[bytes, bytes]]:
    return [
        (source.encode(), event(source, seq))
        for seq in range(first, last + 1)
        for source in ("proxy://a", "proxy://b")
    ]


def messages_read(stderr: str) -> int:
    [line] = [x for x in stderr.splitlines() if "messages read" in x]
    return int(line.split("auditseal monitor: ")[1].split(" messages read")[0])


def test_a_second_run_reads_only_new_messages_and_a_cut_topic_raises_no_chain_break(
    kafka_bootstrap, new_topic, tmp_path
):
    stack = make_stack(kafka_bootstrap, new_topic, tmp_path, partitions=2)
    anchors = new_topic(1)
    state = tmp_path / "monitor" / "state.json"
    args = ("--no-chain", "--anchor-late-after", "3600", "--state", str(state))

    seal(stack, batch(1, 20))
    first = run_monitor(stack, anchors, *args)
    assert (first.code, first.alerts) == (0, []), first.stderr
    assert "state " + str(state) + ", new" in first.stderr
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    saved = json.loads(state.read_bytes())
    assert saved["format"] == "auditseal.monitor-state/v1"
    cut = saved["topics"][stack.sealed_topic]["0"]
    assert cut == messages_read(first.stderr) > 0

    # More blocks: the sources go on from 21; had the monitor forgotten them, 21 would be a gap.
    seal(stack, batch(21, 30))
    new = sealed_messages(stack, cut)
    second = run_monitor(stack, anchors, *args)
    assert (second.code, second.alerts) == (0, []), second.stderr
    assert "resumed" in second.stderr
    assert messages_read(second.stderr) == len(new) > 0
    assert f"{len(new)} blocks" in second.stderr  # one message per block here
    assert json.loads(state.read_bytes())["topics"][stack.sealed_topic]["0"] == cut + len(new)

    # A topic whose history before the first state is gone (retention): a copy of the sealed
    # topic from the cut on, read with the first state pointed at its start.
    cut_topic = new_topic(1)
    produce(kafka_bootstrap, cut_topic, new)
    restarted = tmp_path / "cut.json"
    saved["topics"] = {cut_topic: {"0": 0}}
    restarted.write_text(json.dumps(saved))
    os.chmod(restarted, 0o600)
    cut_stack = Stack(kafka_bootstrap, stack.topic, cut_topic, stack.workdir, stack.signer)
    resumed = run_monitor(cut_stack, anchors, *args[:-1], str(restarted))
    assert (resumed.code, resumed.alerts) == (0, []), resumed.stderr
    # Without the state the same topic is a chain_break (and every source a gap).
    fresh = run_monitor(cut_stack, anchors, *args[:-1], str(restarted), "--reset-state")
    assert fresh.code == 1
    assert "chain_break" in fresh.kinds(), fresh.alerts


def monitor(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    key = Signer.generate("sealer.test").verifier.to_string()
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from auditseal.cli.main import main; main()",
            "monitor",
            *("--no-chain", "--log-key", key, "--metrics-listen", "off"),
            *("--bootstrap", "127.0.0.1:1", "--state", str(state), *args),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "AUDITSEAL_DEV_STATE": str(state.parent / "none.json")},
        cwd=state.parent,
    )


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "not JSON"),
        ('{"format": "auditseal.monitor-state/v0"}', "format 'auditseal.monitor-state/v0'"),
        ("[]", "not a JSON object"),
        (
            '{"format": "auditseal.monitor-state/v1", "topics": {"t": {"0": "5"}}, "checker": {}}',
            "topics['t']['0']",
        ),
        (
            '{"format": "auditseal.monitor-state/v1", "topics": {}, "checker": {"digest_key": 1}}',
            "checker.digest_key: want a string",
        ),
    ],
)
def test_a_bad_state_file_is_one_line_naming_it_and_exit_2(tmp_path, content, says):
    state = tmp_path / "state.json"
    state.write_text(content)
    done = monitor(state)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"--state {state}:" in lines[0] and says in lines[0], lines[0]
    assert "--reset-state" in lines[0]


def test_a_directory_as_state_file_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.mkdir()
    done = monitor(state)
    assert done.returncode == 2 and f"'{state}' is a directory" in done.stderr
