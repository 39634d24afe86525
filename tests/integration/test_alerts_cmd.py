"""`skewwatch alerts` against a real broker: it says when it is connected, skips a record that is
not an alert (saying where it was) and prints the alerts; with no broker it exits with one line."""
from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading

import orjson
import pytest

from stream.devkit.processes import free_port
from tests.integration.conftest import ROOT, produce

pytestmark = pytest.mark.integration

ALERT = {"alert_id": "a1", "kind": "drift", "model": "credit", "model_version": "1", "feature": "income",
         "detector": "cusum", "statistic": 41.0, "threshold": 38.0, "p_value": None, "events_seen": 1200,
         "ts": 1764000204.1, "severity": "critical", "diagnosis": "income is lower", "baseline": {}, "current": {}}


def _alerts_cmd(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stream.commands.cli", "alerts", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_with_no_broker_it_exits_1_with_one_line_and_the_fix():
    proc = _alerts_cmd("--broker", f"127.0.0.1:{free_port()}")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert out.count("\n") == 1 and "Traceback" not in out, out
    assert "cannot reach the broker" in out and "skewwatch broker" in out


def test_it_says_when_connected_skips_a_foreign_record_and_prints_the_alert(broker):
    topic = f"alerts-cmd-{free_port()}"
    broker.create_topics({topic: 1})
    produce(broker.bootstrap, topic, [(b"credit", b"\xc1 not an alert"), (b"credit", orjson.dumps(ALERT))])
    proc = _alerts_cmd("--broker", broker.url, "--topic", topic, "--from-beginning")
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in proc.stdout], daemon=True).start()
    seen: list[str] = []
    try:
        while not any("CRITICAL  drift  credit v1 / income" in line for line in seen):
            seen.append(lines.get(timeout=30))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
    text = "\n".join(seen)
    assert seen[0].startswith("connected to ") and topic in seen[0], text
    assert "skipped a record that is not an alert at partition 0, offset 0" in text, text
