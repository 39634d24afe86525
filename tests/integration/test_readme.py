"""The README's local Kafka path works as written: its producer example, pointed at the test's broker
and input topic, sends an event a running worker monitors (and rejects nothing)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from stream.devkit.synthetic import credit
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def producer_example() -> str:
    [code] = [block for block in re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
              if "AIOKafkaProducer" in block]
    return code


def test_the_readme_producer_example_is_short_and_uses_the_default_broker_and_topic():
    code = producer_example()
    lines = [line for line in code.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert len(lines) <= 10, "\n".join(lines)
    assert '"127.0.0.1:9092"' in code and '"skewwatch.predictions"' in code


def test_the_readme_producer_example_sends_an_event_the_worker_monitors(deployment):
    credit.baseline(0, rows=2_000).save(deployment.baselines / "credit.msgpack")
    worker = deployment.worker().wait_ready()
    code = (producer_example().replace('"127.0.0.1:9092"', repr(deployment.bootstrap))
            .replace('"skewwatch.predictions"', repr(deployment.cfg.input_topic)))
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    wait_for(lambda: worker.metric('skewwatch_events_total{model="credit"}') == 1, 30, "the example's event counted")
    assert not [k for k in worker.metrics() if k.startswith("skewwatch_rejected_events_total{")]
