"""Checkpoints of a wide model on a real worker and broker: every record under the limit, and a
kill -9 restores them (issue 14: a 1,000-feature model's 4.5 MB checkpoint killed the worker)."""
from __future__ import annotations

import json
import signal

import pytest

from stream.devkit.synthetic import scenarios
from stream.worker import config
from stream.worker.service import parse_checkpoint_key
from tests.integration.conftest import produce, wait_for
from tests.integration.test_worker import messages

pytestmark = pytest.mark.integration

FEATURES = 1000
#: small enough that the wide model's checkpoint (~0.4 KB per feature) needs several records
RECORD_LIMIT = 65_536


def test_a_1000_feature_model_checkpoints_in_bounded_records_and_restores_after_kill_9(deployment, follow):
    stream = scenarios.stationary(2500, n_features=FEATURES, n_train=2000)
    stream.baseline().save(deployment.baselines / f"{scenarios.MODEL}.msgpack")
    deployment.env["SKEWWATCH_MAX_CHECKPOINT_BYTES"] = str(RECORD_LIMIT)
    cfg = deployment.cfg
    model = scenarios.MODEL.encode()
    before, during, after = stream.events[:1500], stream.events[1500:2000], stream.events[2000:]
    changelog = follow(config.changelog_topic(cfg))

    worker = deployment.worker().wait_ready()
    produce(deployment.bootstrap, cfg.input_topic, messages(before, per_message=10, model=model))
    wait_for(lambda: worker.last_offsets() == [len(before) // 10 - 1], 60, "the first events processed")
    wait_for(lambda: worker.metric("skewwatch_checkpoints_total") >= 1, 30, "a checkpoint")
    heads = changelog.wait(lambda rs: [r for r in rs if parse_checkpoint_key(json.loads(r.key))[2] is None], 30,
                           "the head of the wide model's checkpoint")
    produce(deployment.bootstrap, cfg.input_topic, messages(during, per_message=10, model=model))
    worker.kill(signal.SIGKILL)  # mid-stream: `during` is partly processed, partly not

    restarted = deployment.worker().wait_ready(timeout=90)
    produce(deployment.bootstrap, cfg.input_topic, messages(after, per_message=10, model=model))
    n_messages = len(stream.events) // 10
    wait_for(lambda: restarted.last_offsets() == [n_messages - 1], 60, "the restarted worker to process every message")
    seen = restarted.status()["partitions"]
    assert sum(p["models"].get(scenarios.MODEL, 0) for p in seen.values()) == len(stream.events)
    assert f"restored '{scenarios.MODEL}'" in restarted.log_path.read_text()

    changelog.poll(1000)
    values = [r.value for r in changelog.records if r.value is not None]
    chunks = [r for r in changelog.records if parse_checkpoint_key(json.loads(r.key))[2] is not None]
    assert heads and len(chunks) >= 2 * len(heads)  # the state is in several chunks
    assert max(map(len, values)) <= RECORD_LIMIT
    assert worker.proc.returncode == -signal.SIGKILL and restarted.proc.poll() is None
