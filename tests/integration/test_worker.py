"""The worker against a real broker, over loopback, in real processes."""
from __future__ import annotations

import json
import signal

import msgpack
import orjson
import pytest

from detectors.routing import ModelRouter
from tests.integration.conftest import produce, wait_for
from tests.stream.helpers import events, training_baseline

pytestmark = pytest.mark.integration


def messages(evs: list[dict], per_message: int = 50, model: bytes = b"credit") -> list[tuple[bytes, bytes]]:
    """Many events per message (how producers reach high rates), alternating JSON and msgpack."""
    chunks = [evs[i:i + per_message] for i in range(0, len(evs), per_message)]
    return [(model, (orjson.dumps if i % 2 else msgpack.packb)(c)) for i, c in enumerate(chunks)]


def alerts_of(records) -> list[dict]:
    return [json.loads(r.value) for r in records]


def drift_on(feature):
    return lambda records: [a for a in alerts_of(records) if a["kind"] == "drift" and a["feature"] == feature]


def test_drift_alert_and_dead_letters_end_to_end(deployment, follow):
    training_baseline("credit").save(deployment.baselines / "credit.msgpack")
    worker = deployment.worker().wait_ready()
    cfg = deployment.cfg
    stream = events("credit", 1500, seed=21) + events("credit", 2500, seed=22, amount_mean=160.0, t0=1_764_000_015.0)
    produce(deployment.bootstrap, cfg.input_topic, messages(stream), compression="lz4")  # as producers often do
    garbage = [(b"credit", b"{truncated json"), (b"x", msgpack.packb("a string, not an event")),
               (b"ghost", orjson.dumps({"model": "ghost", "features": {}}))]
    produce(deployment.bootstrap, cfg.input_topic, garbage)

    alerts = follow(cfg.alert_topic)
    [first, *_] = alerts.wait(drift_on("amount"), 30, "a drift alert on amount")
    assert first["model"] == "credit" and first["alert_id"]
    assert {r.key for r in alerts.records} == {b"credit"}

    dead = follow(cfg.dead_letter_topic)
    letters = dead.wait(lambda rs: len(rs) >= 3 and rs, 20, "three dead letters")
    by_reason = {json.loads(r.value)["reason"]: json.loads(r.value) for r in letters}
    assert set(by_reason) == {"not_decodable", "not_an_object", "unknown_model"}
    assert by_reason["not_decodable"]["raw"] == "{truncated json"
    assert by_reason["unknown_model"]["source"]["topic"] == cfg.input_topic

    wait_for(lambda: worker.metric('skewwatch_events_total{model="credit"}') == 4000, 20, "4000 events counted")
    m = worker.metrics()
    assert m['skewwatch_rejected_events_total{reason="not_decodable"}'] == 1
    assert m['skewwatch_rejected_events_total{reason="unknown_model"}'] == 1
    assert m['skewwatch_alerts_total{feature="amount",kind="drift",model="credit"}'] >= 1
    assert m['skewwatch_baseline_loaded{model="credit"}'] == 1
    assert m['skewwatch_feature_alerting{feature="amount",kind="drift",model="credit"}'] == 1
    scores = {k: v for k, v in m.items() if k.startswith("skewwatch_drift_score{")}
    assert max(scores, key=scores.get) == 'skewwatch_drift_score{feature="amount",model="credit"}'
    assert any(k.startswith('skewwatch_drift_statistic{feature="amount",model="credit",statistic="psi"') for k in m)
    assert "<h2>credit</h2>" in worker.get("/")


def test_a_new_baseline_file_is_picked_up_without_restart(deployment, follow):
    training_baseline("credit").save(deployment.baselines / "credit.msgpack")
    worker = deployment.worker().wait_ready()
    cfg = deployment.cfg
    produce(deployment.bootstrap, cfg.input_topic, messages(events("fraud", 10, seed=23), model=b"fraud"))
    dead = follow(cfg.dead_letter_topic)
    dead.wait(lambda rs: len(rs) >= 10, 20, "events of a model with no baseline dead-lettered")
    assert {json.loads(r.value)["reason"] for r in dead.records} == {"unknown_model"}

    training_baseline("fraud", seed=1).save(deployment.baselines / "fraud.msgpack")
    wait_for(lambda: worker.metric('skewwatch_baseline_loaded{model="fraud"}') == 1, 10, "the fraud baseline loaded")
    produce(deployment.bootstrap, cfg.input_topic, messages(events("fraud", 10, seed=24), model=b"fraud"))
    wait_for(lambda: worker.metric('skewwatch_events_total{model="fraud"}') == 10, 20, "fraud events monitored")

    (deployment.baselines / "fraud.msgpack").unlink()
    wait_for(lambda: worker.metric('skewwatch_baseline_loaded{model="fraud"}') == 0, 10, "the fraud baseline dropped")
    produce(deployment.bootstrap, cfg.input_topic, messages(events("fraud", 1, seed=25), model=b"fraud"))
    last = dead.wait(lambda rs: [json.loads(r.value) for r in rs
                                 if json.loads(r.value)["reason"] == "baseline_unavailable"],
                     20, "an event of a deleted baseline dead-lettered")
    assert "was deleted" in last[0]["detail"]


def test_kill_9_restart_restores_the_monitors(deployment, follow):
    """After kill -9 and a restart the alerts, deduplicated by alert_id, are exactly those of an
    uninterrupted run: the drift alerted before the crash gets no new id, the drift that starts
    after it is still detected."""
    baseline = training_baseline("credit")
    baseline.save(deployment.baselines / "credit.msgpack")
    cfg = deployment.cfg
    before = events("credit", 1500, seed=31) + events("credit", 1500, seed=32, amount_mean=160.0, t0=1_764_000_015.0)
    during = events("credit", 1000, seed=33, amount_mean=160.0, t0=1_764_000_030.0)
    after = events("credit", 3000, seed=34, amount_mean=160.0, age_mean=60.0, t0=1_764_000_040.0)
    reference = ModelRouter([baseline])
    expected = {a.alert_id: a.to_dict() for a in reference.process(before + during + after)[0]}
    assert {"amount", "age"} <= {a["feature"] for a in expected.values()}

    worker = deployment.worker().wait_ready()
    alerts = follow(cfg.alert_topic)
    produce(deployment.bootstrap, cfg.input_topic, messages(before))
    alerts.wait(drift_on("amount"), 30, "the amount drift alerted before the crash")
    wait_for(lambda: worker.metric("skewwatch_checkpoints_total") >= 1, 10, "a checkpoint")
    produce(deployment.bootstrap, cfg.input_topic, messages(during))
    worker.kill(signal.SIGKILL)  # mid-stream: `during` is partly processed, partly not

    restarted = deployment.worker().wait_ready(timeout=90)
    produce(deployment.bootstrap, cfg.input_topic, messages(after))
    alerts.wait(drift_on("age"), 60, "the age drift (after the restart) alerted")
    n_messages = len(messages(before + during + after))
    # every message is keyed "credit", so they all sit on one partition
    wait_for(lambda: restarted.last_offsets() == [n_messages - 1], 30, "the restarted worker to process every message")
    alerts.poll(1000)
    got = {a["alert_id"]: a for a in alerts_of(alerts.records)}
    assert set(got) == set(expected), (sorted((a["kind"], a["feature"], a["events_seen"]) for a in got.values()),
                                       sorted((a["kind"], a["feature"], a["events_seen"]) for a in expected.values()))
    # a duplicate (at-least-once) is the same alert; a monitor restarted from scratch would
    # count differently
    for alert in alerts_of(alerts.records):
        assert alert["events_seen"] == expected[alert["alert_id"]]["events_seen"]


def test_two_workers_split_the_partitions_and_a_rebalance_moves_the_monitors(deployment):
    training_baseline("credit").save(deployment.baselines / "credit.msgpack")
    cfg = deployment.cfg
    first = deployment.worker().wait_ready()
    second = deployment.worker().wait_ready(timeout=90)

    def split():
        a, b = first.partitions(cfg.input_topic), second.partitions(cfg.input_topic)
        return a and b and not (a & b) and (a | b) == {0, 1, 2, 3} and (a, b)
    mine, theirs = wait_for(split, 60, "the two workers to split the 4 partitions")

    for p in range(4):  # (p + 1) * 20 events on partition p
        produce(deployment.bootstrap, cfg.input_topic,
                messages(events("credit", (p + 1) * 20, seed=40 + p), per_message=10),
                partition=p)

    def counts(worker):
        return {int(p): s["models"].get("credit", 0) for p, s in worker.status().get("partitions", {}).items()}
    expected = {p: (p + 1) * 20 for p in range(4)}
    wait_for(lambda: {**counts(first), **counts(second)} == expected, 30, "each partition's events on its owner")
    assert set(counts(first)) == mine and set(counts(second)) == theirs
    counted = 'skewwatch_events_total{model="credit"}'
    total = first.metric(counted) + second.metric(counted)
    assert total == sum(expected.values())

    second.kill(signal.SIGTERM)  # a clean leave: the first worker takes over its partitions
    wait_for(lambda: first.partitions(cfg.input_topic) == {0, 1, 2, 3}, 60, "the first worker to own every partition")
    for p in range(4):
        produce(deployment.bootstrap, cfg.input_topic, messages(events("credit", 5, seed=50 + p), per_message=5),
                partition=p)
    moved = {p: n + 5 for p, n in expected.items()}
    wait_for(lambda: counts(first) == moved, 30, "the moved monitors continuing from their checkpoints")
