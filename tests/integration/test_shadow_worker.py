"""Shadow mode through a real worker on the embedded broker: a candidate model (no baseline of its own)
answers the same requests as production, keyed by its own name and sometimes before production; from
the third window it answers differently for one country -> a shadow alert naming that segment, the
pair's gauges on /metrics and its comparison on /joins.json; delayed labels reach the comparison."""
from __future__ import annotations

import dataclasses
import json
import signal

import numpy as np
import pytest

from stream.worker import config
from tests.integration.conftest import produce, wait_for
from tests.integration.test_joins_worker import alerts_of_kind, chunks, joins_in_changelog
from tests.stream.helpers import events, training_baseline

pytestmark = pytest.mark.integration


@pytest.fixture
def shadow_deployment(deployment, broker):
    """The deployment with shadow pairs and its own join topics (other tests' workers read the defaults)."""
    deployment.env.update(SKEWWATCH_SHADOW="credit=credit-v2", SKEWWATCH_SHADOW_WINDOW="500",
                          SKEWWATCH_FEATURE_LOG_TOPIC=f"{deployment.app_id}.feature-log",
                          SKEWWATCH_LABELS_TOPIC=f"{deployment.app_id}.labels")
    deployment.cfg = config.load(deployment.env)
    broker.create_topics(config.topics(deployment.cfg))
    return deployment


def joined(worker) -> int:
    return json.loads(worker.get("/joins.json") or "{}").get("shadow", {}).get("credit=credit-v2", {}).get("joined", 0)


def test_a_disagreeing_shadow_candidate_is_alerted_end_to_end(shadow_deployment, follow):
    d = shadow_deployment
    baseline = dataclasses.replace(training_baseline("credit"), metric={"name": "accuracy", "value": 0.9, "n": 20_000})
    baseline.save(d.baselines / "credit.msgpack")
    worker = d.worker().wait_ready()
    cfg = d.cfg

    n = 2000
    truth = np.random.default_rng(3).integers(0, 2, n)
    production = events("credit", n, seed=41)
    candidate = []
    for i, ev in enumerate(production):
        ev["request_id"] = f"req-{i}"
        ev["prediction"] = int(truth[i])
        differs = i >= 1000 and ev["features"]["country"] == "DE"
        candidate.append({**ev, "model": "credit-v2", "prediction": int(1 - truth[i]) if differs else int(truth[i])})
    # the first 1000 requests (the clean windows), the candidate's events ahead of production's and one
    # chunk re-delivered; once joined, the next 1000 (partitions interleave: a window mixes their requests)
    produce(d.bootstrap, cfg.input_topic, chunks(candidate[:300], 50, key=b"credit-v2"))
    produce(d.bootstrap, cfg.input_topic, chunks(production[:1000], 50, key=b"credit"))
    produce(d.bootstrap, cfg.input_topic, chunks(candidate[250:1000], 50, key=b"credit-v2"))
    wait_for(lambda: joined(worker) == 1000, 45, "the first 1000 requests joined")
    produce(d.bootstrap, cfg.input_topic, chunks(production[1000:], 50, key=b"credit"))
    produce(d.bootstrap, cfg.input_topic, chunks(candidate[1000:], 50, key=b"credit-v2"))

    alerts = follow(cfg.alert_topic)
    [shadow] = wait_for(lambda: alerts_of_kind(alerts, "shadow"), 45, "a shadow alert")
    assert (shadow["model"], shadow["detector"], shadow["evidence"]["candidate"]) == ("credit", "shadow_join",
                                                                                       "credit-v2")
    assert shadow["evidence"]["window"] == 3
    assert shadow["evidence"]["separating_features"][0]["segment"] == "'country' = 'DE'"
    assert shadow["next_step"].startswith("hold the rollout of 'credit-v2'")

    labels = [{"request_id": f"req-{i}", "label": int(truth[i])} for i in range(n)]
    produce(d.bootstrap, cfg.labels_topic, chunks(labels, 100, key=b"any"))
    pair = wait_for(lambda: (p := json.loads(worker.get("/joins.json") or "{}").get("shadow", {}).get(
        "credit=credit-v2", {})).get("labels") and p["labels"]["n"] == n and p, 30, "every label compared")
    assert pair["joined"] == n and pair["counts"]["duplicate_candidate"] == 50
    assert pair["labels"]["production"]["accuracy"] == 1.0 and pair["labels"]["verdict"] == "candidate_worse"
    metrics = worker.metrics()
    assert metrics['skewwatch_shadow_joined{candidate="credit-v2",model="credit"}'] == n
    assert metrics['skewwatch_shadow_agreement{candidate="credit-v2",model="credit"}'] < 0.9
    assert metrics['skewwatch_shadow_expected_agreement{candidate="credit-v2",model="credit"}'] > 0.95
    # the candidate has no baseline: its events go to the shadow join, not to the dead letters
    assert not [k for k in metrics if k.startswith("skewwatch_rejected_events_total")]


def test_a_shadow_pair_survives_a_kill_9(shadow_deployment, follow):
    """Two clean windows joined and 250 production events waiting for the candidate's when a
    checkpoint holds them; kill -9; after the restart the candidate's events join the waiting ones
    and the candidate, disagreeing for one country from request 1000, is alerted at window 3
    against the first window's agreement (a fresh comparison would take the changed window as its
    reference and stay silent)."""
    d = shadow_deployment
    cfg = d.cfg
    baseline = dataclasses.replace(training_baseline("credit"), metric={"name": "accuracy", "value": 0.9, "n": 20_000})
    baseline.save(d.baselines / "credit.msgpack")
    n = 2000
    truth = np.random.default_rng(4).integers(0, 2, n)
    production = events("credit", n, seed=42)
    candidate = []
    for i, ev in enumerate(production):
        ev.update(request_id=f"req-{i}", prediction=int(truth[i]))
        differs = i >= 1000 and ev["features"]["country"] == "DE"
        candidate.append({**ev, "model": "credit-v2", "prediction": int(1 - truth[i]) if differs else int(truth[i])})
    changelog = follow(config.join_changelog_topic(cfg))
    alerts = follow(cfg.alert_topic)

    worker = d.worker().wait_ready()
    produce(d.bootstrap, cfg.input_topic, chunks(production[:1250], 50, key=b"credit"))
    produce(d.bootstrap, cfg.input_topic, chunks(candidate[:1000], 50, key=b"credit-v2"))

    def checkpointed(records) -> bool:
        pair = (joins_in_changelog(records).get(0) or {}).get("shadow", {}).get("credit=credit-v2", {})
        return (len(pair.get("join", {}).get("waiting_ids", ())) == 250
                and (pair.get("comparison") or {}).get("state", {}).get("joined") == 1000)
    changelog.wait(checkpointed, 60, "a checkpoint of the pair: 1000 joined, 250 waiting")
    worker.kill(signal.SIGKILL)

    restarted = d.worker().wait_ready(timeout=90)
    produce(d.bootstrap, cfg.input_topic, chunks(candidate[1000:1250], 50, key=b"credit-v2"))
    produce(d.bootstrap, cfg.input_topic, chunks(production[1250:], 50, key=b"credit"))
    produce(d.bootstrap, cfg.input_topic, chunks(candidate[1250:], 50, key=b"credit-v2"))
    [shadow] = wait_for(lambda: alerts_of_kind(alerts, "shadow"), 60, "a shadow alert after the restart")
    assert shadow["evidence"]["window"] == 3 and shadow["evidence"]["reference"]["source"] == "first_window"
    assert shadow["evidence"]["separating_features"][0]["segment"] == "'country' = 'DE'"
    wait_for(lambda: joined(restarted) == n, 30, "every request joined once")
    assert "restored the joins" in restarted.log_path.read_text()
