"""librdkafka retries a dead broker every few milliseconds and logs each attempt: the worker lets
one line of a kind through per interval, and says how many it held back."""

from __future__ import annotations

import logging

from auditseal.sealer import app


def test_a_repeated_librdkafka_line_is_logged_once_per_interval(monkeypatch, caplog):
    now = [100.0]
    monkeypatch.setattr(app.time, "monotonic", lambda: now[0])
    logger = logging.getLogger("test.librdkafka.repeats")
    logger.addFilter(app._Repeats(60.0))
    fail = "FAIL [rdkafka#consumer-1]: 127.0.0.1:9: Connect failed (after %dms in state CONNECT)"
    with caplog.at_level(logging.ERROR, logger=logger.name):
        for ms in range(50):
            logger.error(fail, ms)
            now[0] += 0.05
        logger.error("FAIL [rdkafka#producer-2]: SSL handshake failed")  # another kind: shown
        now[0] += 60.0
        logger.error(fail, 7)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "FAIL [rdkafka#consumer-1]: 127.0.0.1:9: Connect failed (after 0ms in state CONNECT)",
        "FAIL [rdkafka#producer-2]: SSL handshake failed",
        "FAIL [rdkafka#consumer-1]: 127.0.0.1:9: Connect failed (after 7ms in state CONNECT) "
        "(49 more like it since)",
    ]
