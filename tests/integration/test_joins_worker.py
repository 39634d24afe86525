"""The request-id joins through a real worker on the embedded broker: served events, then the
offline feature log with a feature computed differently -> a skew alert; then delayed labels that
show an accuracy drop -> a performance alert."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import orjson
import pytest

from stream.worker import config
from tests.integration.conftest import produce, wait_for
from tests.stream.helpers import events, training_baseline

pytestmark = pytest.mark.integration


@pytest.fixture
def join_deployment(deployment, broker):
    """The deployment with its own feature-log and labels topics (other tests' workers read the defaults)."""
    deployment.env.update(SKEWWATCH_JOINS="true",
                          SKEWWATCH_FEATURE_LOG_TOPIC=f"{deployment.app_id}.feature-log",
                          SKEWWATCH_LABELS_TOPIC=f"{deployment.app_id}.labels")
    deployment.cfg = config.load(deployment.env)
    broker.create_topics(config.topics(deployment.cfg))
    return deployment


def chunks(records: list[dict], size: int, key: bytes | None = None) -> list[tuple[bytes | None, bytes]]:
    return [(key, orjson.dumps(records[i:i + size])) for i in range(0, len(records), size)]


def alerts_of_kind(follower, kind: str) -> list[dict]:
    follower.poll()
    return [a for a in (json.loads(r.value) for r in follower.records) if a["kind"] == kind]


def test_feature_parity_and_delayed_labels_end_to_end(join_deployment, follow):
    d = join_deployment
    baseline = dataclasses.replace(training_baseline("credit"), metric={"name": "accuracy", "value": 0.9, "n": 20_000})
    baseline.save(d.baselines / "credit.msgpack")
    worker = d.worker().wait_ready()
    cfg = d.cfg

    n = 3000
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 2, n)
    right = rng.random(n) < np.where(np.arange(n) < 1000, 0.9, 0.6)  # the model degrades from request 1000
    served = events("credit", n, seed=31)
    for i, ev in enumerate(served):
        ev["request_id"] = f"req-{i}"
        ev["prediction"] = int(truth[i] if right[i] else 1 - truth[i])
    produce(d.bootstrap, cfg.input_topic, chunks(served, 50, key=b"credit"))

    # the offline recomputation: `age` is computed differently at serving time for every 4th request
    # from 1000 on; the log is keyed arbitrarily (no key) and comes in reverse order
    log = [{"request_id": ev["request_id"], "model": "credit",
             "features": {**ev["features"], "age": ev["features"]["age"] + (7.0 if i >= 1000 and i % 4 == 0 else 0.0)}}
           for i, ev in enumerate(served)]
    produce(d.bootstrap, cfg.feature_log_topic, chunks(log[::-1], 100) + [(None, b"{not json")])

    alerts = follow(cfg.alert_topic)
    [skew] = wait_for(lambda: alerts_of_kind(alerts, "skew"), 45, "a skew alert from the feature-log join")
    assert (skew["model"], skew["feature"], skew["detector"]) == ("credit", "age", "feature_parity")
    assert 0 < skew["current"]["mismatch_rate"] <= 1 and skew["evidence"]["examples"]
    assert all(int(ex["request_id"].split("-")[1]) % 4 == 0 for ex in skew["evidence"]["examples"])
    assert "serving value differs from the offline recomputation" in skew["diagnosis"]

    labels = [{"request_id": f"req-{i}", "label": int(truth[i])} for i in range(n)]
    produce(d.bootstrap, cfg.labels_topic, chunks(labels, 100, key=b"any"))
    [perf] = wait_for(lambda: alerts_of_kind(alerts, "performance"), 30, "a performance alert from the label join")
    assert perf["baseline"] == {"accuracy": 0.9, "n": 20_000}
    assert perf["current"]["ci_high"] < 0.9 and perf["current"]["n"] >= 200
    assert {r.key for r in alerts.records} == {b"credit"}

    counts = wait_for(lambda: (c := json.loads(worker.get("/joins.json") or "{}").get("counts", {}))
                      and c["labels"]["matched"] == n and c, 20, "every label joined")
    assert counts["feature_log"]["matched"] == n and counts["feature_log"]["waiting"] == 0
    assert worker.metric('skewwatch_rejected_events_total{reason="not_decodable"}') == 1
