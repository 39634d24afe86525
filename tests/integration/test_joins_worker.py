"""The request-id joins through a real worker on the embedded broker: served events, then the
offline feature log with a feature computed differently -> a skew alert; then delayed labels that
show an accuracy drop -> a performance alert."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import signal

import numpy as np
import orjson
import pytest

from detectors.joins import JoinConfig, JoinMonitor
from stream.worker import checkpoint_codec, config
from stream.worker.join_checkpoints import join_checkpoint_key, parse_join_checkpoint_key
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


def joins_in_changelog(records: list) -> dict[int, dict]:
    """The newest joins state of each joins partition in the joins' checkpoint changelog (heads and chunks)."""
    newest: dict[str, bytes | None] = {}
    for r in records:
        newest[json.loads(r.key)] = r.value
    states = {}
    for key, value in newest.items():
        parsed = parse_join_checkpoint_key(key)
        if parsed is not None and parsed[1] is None and value is not None:
            states[parsed[0]] = checkpoint_codec.decode(
                checkpoint_codec.read_head(value), lambda c, p=parsed[0]: newest.get(join_checkpoint_key(p, c)))
    return states


def committed_offset(bootstrap: str, group: str, topic: str, partition: int) -> int | None:
    """The consumer group's committed offset of a partition."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def main():
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            return await consumer.committed(TopicPartition(topic, partition))
        finally:
            await consumer.stop()

    return asyncio.run(main())


def test_a_kill_9_between_predictions_and_labels_still_joins_them_after_the_restart(join_deployment, follow):
    """The served events wait in the label join; the worker is killed once a checkpoint holds them;
    the labels, produced after the restart, join the restored events, and the performance
    statistics and alerts are those of an uninterrupted run (detectors.joins alone): the one joins
    partition (SKEWWATCH_JOINS_PARTITIONS's default) holds the model's whole statistics."""
    d = join_deployment
    cfg = d.cfg
    assert cfg.joins_partitions == 1
    baseline = dataclasses.replace(training_baseline("credit"), metric={"name": "accuracy", "value": 0.9, "n": 20_000})
    baseline.save(d.baselines / "credit.msgpack")
    n = 3000
    rng = np.random.default_rng(8)
    truth = rng.integers(0, 2, n)
    right = rng.random(n) < np.where(np.arange(n) < 1000, 0.9, 0.6)  # the model degrades from request 1000
    served = events("credit", n, seed=32)
    for i, ev in enumerate(served):
        ev.update(request_id=f"req-{i}", prediction=int(truth[i] if right[i] else 1 - truth[i]))
    labels = [{"request_id": f"req-{i}", "label": int(truth[i])} for i in range(n)]
    changelog = follow(config.join_changelog_topic(cfg))
    alerts = follow(cfg.alert_topic)

    worker = d.worker().wait_ready()
    produce(d.bootstrap, cfg.input_topic, chunks(served, 50, key=b"credit"))
    changelog.wait(lambda rs: sum(len(s["label_join"]["waiting_ids"]) for s in joins_in_changelog(rs).values()) == n,
                   60, "a checkpoint of the joins holding every served event")
    # the worker commits the joins topic's offsets its checkpoints cover (Faust does not: acks off)
    wait_for(lambda: committed_offset(d.bootstrap, cfg.app_id, config.joins_topic(cfg), 0), 30,
             "the joins topic's offset committed")
    worker.kill(signal.SIGKILL)

    restarted = d.worker().wait_ready(timeout=90)
    produce(d.bootstrap, cfg.labels_topic, chunks(labels, 100, key=b"any"))
    snapshot = wait_for(lambda: (s := json.loads(restarted.get("/joins.json") or "{}")).get("counts", {}).get(
        "labels", {}).get("matched") == n and s, 60, "every label joined with its restored served event")
    assert "restored the joins" in restarted.log_path.read_text()
    assert snapshot["counts"]["labels"]["waiting"] == snapshot["counts"]["labels"]["duplicate_label"] == 0

    # the uninterrupted run: every record in the order the worker reads them
    joins = JoinMonitor({"credit": baseline}.get, JoinConfig(ttl=cfg.join_ttl, max_entries=cfg.join_max_entries))
    joins.add_predictions(served)
    expected_alerts = joins.add_labels(labels)
    assert snapshot["performance"] == joins.snapshot()["performance"] and list(snapshot["partitions"]) == ["0"]
    # the degradation is alerted as without the kill, with the statistic and figures of the uninterrupted run
    [expected] = [a for a in expected_alerts if a.kind == "performance"]
    [sent] = alerts.wait(lambda rs: [a for a in (json.loads(r.value) for r in rs) if a["kind"] == "performance"],
                         30, "the performance alert")
    assert (sent["alert_id"], sent["statistic"], sent["current"]) == (expected.alert_id, expected.statistic,
                                                                      expected.current)


def test_the_joins_move_with_their_partition_to_the_other_worker_after_a_kill_9(join_deployment, follow):
    """Two workers, one joins partition (the default): the worker that owns it is killed once a
    checkpoint holds the served events; the other takes the partition over with its checkpoint (the
    joins' checkpoint table has the joins topic's partition count, so both go to the same worker)
    and joins the labels produced after the kill with the restored events."""
    d = join_deployment
    cfg = d.cfg
    baseline = dataclasses.replace(training_baseline("credit"), metric={"name": "accuracy", "value": 0.9, "n": 20_000})
    baseline.save(d.baselines / "credit.msgpack")
    n = 1000
    served = events("credit", n, seed=33)
    for i, ev in enumerate(served):
        ev.update(request_id=f"req-{i}", prediction=i % 2)
    labels = [{"request_id": f"req-{i}", "label": (i // 2) % 2} for i in range(n)]
    changelog = follow(config.join_changelog_topic(cfg))

    workers = [d.worker().wait_ready(), d.worker().wait_ready()]
    wait_for(lambda: all(w.partitions(cfg.input_topic) for w in workers), 60, "both workers assigned input partitions")
    produce(d.bootstrap, cfg.input_topic, chunks(served, 50, key=b"credit"))
    changelog.wait(lambda rs: sum(len(s["label_join"]["waiting_ids"]) for s in joins_in_changelog(rs).values()) == n,
                   60, "a checkpoint of the joins holding every served event")

    def joins_of(w) -> dict:
        return json.loads(w.get("/joins.json") or "{}").get("partitions", {})
    [owner] = [w for w in workers if "0" in joins_of(w)]
    [other] = [w for w in workers if w is not owner]
    owner.kill(signal.SIGKILL)
    produce(d.bootstrap, cfg.labels_topic, chunks(labels, 100, key=b"any"))
    snapshot = wait_for(lambda: (s := json.loads(other.get("/joins.json") or "{}")).get("counts", {}).get(
        "labels", {}).get("matched") == n and s, 90, "every label joined on the other worker")
    assert "restored the joins" in other.log_path.read_text()
    assert snapshot["counts"]["labels"]["waiting"] == snapshot["counts"]["labels"]["duplicate_label"] == 0
    joins = JoinMonitor({"credit": baseline}.get, JoinConfig(ttl=cfg.join_ttl, max_entries=cfg.join_max_entries))
    joins.add_predictions(served)
    joins.add_labels(labels)
    assert snapshot["performance"] == joins.snapshot()["performance"]
