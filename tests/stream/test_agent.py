"""The Faust agents themselves, with `agent.test_context()` and the memory store (no broker):
the input path (fetched records handed to the agent), micro-batching, routing per partition,
alerts keyed by model, dead letters (the joins' too)."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from types import SimpleNamespace

import msgpack
import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP
from prometheus_client import CollectorRegistry

import stream.worker.app as worker
from stream.worker import agents
from stream.worker.metrics import Metrics
from stream.worker.service import DetectionService, position_key
from tests.stream.helpers import credit_baseline, events, fraud_baseline, training_baseline  # noqa: F401 (fixtures)


@pytest.fixture
def sent(monkeypatch, tmp_path, credit_baseline, fraud_baseline):
    """A fresh service on a baselines directory, and the records the agent sends."""
    credit_baseline.save(tmp_path / "credit.msgpack")
    fraud_baseline.save(tmp_path / "fraud.msgpack")
    metrics = Metrics(CollectorRegistry())
    service = DetectionService(str(tmp_path), metrics)
    service.rescan()
    monkeypatch.setattr(worker, "service", service)
    monkeypatch.setattr(worker, "metrics", metrics)
    monkeypatch.setattr(agents, "input_readers", [])  # the joins' forwarder registers itself when imported
    out: dict[str, list[tuple[bytes, bytes]]] = {"alerts": [], "dead": []}

    def collector(name):
        async def send(*, key, value, **kwargs):
            out[name].append((key, value))
        return send

    monkeypatch.setattr(worker.alerts_topic, "send", collector("alerts"))
    monkeypatch.setattr(worker.dead_letters_topic, "send", collector("dead"))
    return out


@pytest.fixture(autouse=True)
def empty_input():
    """The input path's buffer is the module's: empty before and after each test."""
    assert len(agents.fetched) == 0
    yield
    agents.fetched.drop(range(64))


def raw_context():
    """The agent running; its records come from `agents.fetched`, never from this channel."""
    return agents.monitor_predictions.test_context(channel=worker.app.channel(key_type=bytes, value_type=bytes))


#: the next offset of each test partition
_offsets: dict[int, int] = {}


def fetch(payloads, partition=0, key=b"credit") -> list[ConsumerRecord]:
    """The records one fetch of `payloads` from `partition` gives (offsets follow on per partition)."""
    start = _offsets.get(partition, 0)
    _offsets[partition] = start + len(payloads)
    return [ConsumerRecord(worker.settings.input_topic, partition, start + i, 1_764_000_000_000 + i, 0, key, value,
                           None, len(key), len(value), ()) for i, value in enumerate(payloads)]


@pytest.fixture(autouse=True)
def offsets_from_zero():
    _offsets.clear()


async def processed() -> None:
    """Wait until the agent has processed everything fetched."""
    deadline = asyncio.get_running_loop().time() + 10
    while len(agents.fetched) or agents.processing.locked():
        assert asyncio.get_running_loop().time() < deadline, "the agent did not process the fetched records"
        await asyncio.sleep(0.01)


async def put_all(agent, payloads, partition=0, key=b"credit"):
    """Hand the messages over as one fetch, then wait until the agent has processed them."""
    agents.fetched.put({partition: fetch(payloads, partition, key)})
    await processed()


async def test_drifting_stream_gives_a_drift_alert_keyed_by_model(sent):
    stream = events("credit", 1500, seed=11) + events("credit", 2500, seed=12, amount_mean=160.0)
    # 100 events per message, msgpack and JSON mixed
    payloads = [(msgpack.packb if i % 2 else orjson.dumps)(stream[i * 100:(i + 1) * 100]) for i in range(40)]
    async with raw_context() as agent:
        await put_all(agent, payloads)
    assert worker.service.partitions[0].router.monitor("credit").events_seen == 4000
    alerts = [(key, orjson.loads(value)) for key, value in sent["alerts"]]
    assert any(a["kind"] == "drift" and a["feature"] == "amount" for _, a in alerts)
    assert {key for key, _ in alerts} == {b"credit"}
    assert all(a["model"] == "credit" and a["alert_id"] for _, a in alerts)
    assert sent["dead"] == []
    # each alert sent was counted, and the last is the model's last on the status pages
    value = worker.metrics.registry.get_sample_value
    counted = {(a["kind"], a["feature"] or ""): value("skewwatch_alerts_total", {"model": "credit", "kind": a["kind"],
                                                                                   "feature": a["feature"] or ""})
               for _, a in alerts}
    assert sum(counted.values()) == len(alerts) and counted[("drift", "amount")] >= 1
    assert worker.service.last_alerts["credit"] == alerts[-1][1]


async def test_garbage_and_unknown_models_are_dead_lettered_with_their_reason(sent):
    good = events("credit", 5, seed=13)
    payloads = [orjson.dumps(good[0]), b"{not json", orjson.dumps({"model": "ghost", "features": {"a": 1}}),
                msgpack.packb([good[1], 42]), orjson.dumps(good[2])]
    async with raw_context() as agent:
        await put_all(agent, payloads, partition=1)
    letters = [(key, orjson.loads(value)) for key, value in sent["dead"]]
    assert [(k, d["reason"]) for k, d in letters] == [
        (b"not_decodable", "not_decodable"), (b"unknown_model", "unknown_model"), (b"not_an_object", "not_an_object")]
    assert letters[0][1]["raw"] == "{not json"
    assert [d["source"]["offset"] for _, d in letters] == [1, 2, 3]
    assert worker.service.partitions[1].router.monitor("credit").events_seen == 3
    rejected = {s.labels["reason"]: s.value for f in worker.metrics.registry.collect()
                for s in f.samples if s.name == "skewwatch_rejected_events_total"}
    assert rejected == {"not_decodable": 1, "unknown_model": 1, "not_an_object": 1}


async def test_each_partition_feeds_its_own_monitors(sent):
    async with raw_context() as agent:
        await put_all(agent, [orjson.dumps(e) for e in events("credit", 30, seed=14)], partition=0)
        await put_all(agent, [orjson.dumps(e) for e in events("fraud", 20, seed=15)], partition=3, key=b"fraud")
    parts = worker.service.partitions
    assert parts[0].router.monitor("credit").events_seen == 30 and parts[0].router.monitor("fraud").events_seen == 0
    assert parts[3].router.monitor("fraud").events_seen == 20
    assert sorted(worker.service.checkpoints()) == ["0/credit", "3/fraud"]


async def test_a_batch_holds_many_messages(sent):
    payloads = [orjson.dumps(e) for e in events("credit", 300, seed=16)]
    async with raw_context() as agent:
        await put_all(agent, payloads)
    batches = {s.name: s.value for f in worker.metrics.registry.collect() for s in f.samples
               if s.name == "skewwatch_batch_seconds_count"}
    # 300 messages put back to back are processed in a few micro-batches, not one by one
    assert 1 <= batches["skewwatch_batch_seconds_count"] <= 5


async def test_the_agent_loads_the_baselines_before_it_processes_anything(sent, tmp_path, monkeypatch):
    """A restart with a backlog: the first batch may arrive before anything else ran. It must
    meet the loaded baselines, not monitors without models that dead-letter it as unknown_model
    (and would never restore the models' checkpoints)."""
    fresh = DetectionService(str(tmp_path), worker.metrics)  # as the worker starts: nothing scanned yet
    monkeypatch.setattr(worker, "service", fresh)
    async with raw_context() as agent:
        await put_all(agent, [orjson.dumps(e) for e in events("credit", 10, seed=17)])
    assert sent["dead"] == []
    assert fresh.partitions[0].router.monitor("credit").events_seen == 10


async def test_the_joins_forward_served_events_only_once_the_baselines_are_loaded(sent, tmp_path, monkeypatch):
    """The joins' forwarder keeps the events of monitored models: before the baselines are
    loaded it would know none, and drop a restart backlog's events from the joins. It reads the
    input topic through the agent's input path, with each micro-batch."""
    from stream.worker import joins  # registers the joins' agents on the app, which no test starts

    monkeypatch.setattr(worker, "service", DetectionService(str(tmp_path), worker.metrics))
    monkeypatch.setattr(agents, "input_readers", [joins.forward_predictions])
    forwarded = []

    async def send(*, value, partition, **kwargs):
        forwarded.append(msgpack.unpackb(value))
        acknowledged = asyncio.get_running_loop().create_future()
        acknowledged.set_result(None)
        return acknowledged  # as Faust's send: a future the broker's acknowledgement completes
    monkeypatch.setattr(joins.joins_topic, "send", send)
    monkeypatch.setattr(joins, "_unconfirmed_forwards", [])
    event = {**events("credit", 1, seed=20)[0], "request_id": "r-1"}
    del event["ts"]  # takes its Kafka timestamp
    async with raw_context() as agent:
        await put_all(agent, [orjson.dumps(event)])
    [record] = [r for f in forwarded for r in f["records"]]
    assert record["request_id"] == "r-1" and record["ts"] == 1_764_000_000.0
    assert worker.service.partitions[0].router.monitor("credit").events_seen == 1


async def test_without_a_usable_baseline_the_agent_waits_and_says_so(sent, tmp_path, monkeypatch, caplog):
    empty = tmp_path / "empty"
    empty.mkdir()
    fresh = DetectionService(str(empty), worker.metrics)
    monkeypatch.setattr(worker, "service", fresh)
    monkeypatch.setattr(agents, "settings", dataclasses.replace(agents.settings, baseline_scan_interval=0.01))
    monkeypatch.setattr(agents, "NO_BASELINE_NOTICE_INTERVAL", 0.05)
    with caplog.at_level(logging.INFO, logger="skewwatch.worker"):
        async with raw_context() as agent:
            agents.fetched.put({0: fetch([orjson.dumps(events("credit", 1, seed=18)[0])])})
            await asyncio.sleep(0.3)  # long enough for a few rescans and notices
            assert len(agents.fetched) == 1 and fresh.partitions == {} and sent["dead"] == []
            training_baseline("credit").save(empty / "credit.msgpack")
            await put_all(agent, [orjson.dumps(e) for e in events("credit", 4, seed=19)])
    assert sent["dead"] == [] and fresh.partitions[0].router.monitor("credit").events_seen == 5
    waiting = [r.getMessage() for r in caplog.records if "no usable baseline" in r.getMessage()]
    assert len(waiting) >= 2 and str(empty) in waiting[0]
    assert any("baselines loaded (credit): processing" in r.getMessage() for r in caplog.records)


async def test_join_records_rejects_take_the_agents_dead_letter_path(sent, caplog):
    """Counted, logged (rate-limited, by the service's RejectLog) and dead-lettered with their source."""
    from stream.worker import joins  # registers the joins' agents on the app, which no test starts

    message = SimpleNamespace(value=b"{not json", topic="labels", partition=2, offset=7)
    with caplog.at_level(logging.WARNING, logger="skewwatch.worker"):
        await joins._forward_join_records("labels", [SimpleNamespace(message=message)])
    [(key, value)] = sent["dead"]
    letter = orjson.loads(value)
    assert key == b"not_decodable" and letter["source"] == {"topic": "labels", "partition": 2, "offset": 7}
    assert worker.metrics.registry.get_sample_value("skewwatch_rejected_events_total", {"reason": "not_decodable"}) == 1
    assert any("rejected 1 message(s)/event(s) as not_decodable" in r.getMessage() for r in caplog.records)


class SlowService:
    """A detection service whose processing holds the CPU in proportion to the payload bytes, as
    the monitors' does (worst measured: ~0.15 s a MB), and notes which records it processed."""

    def __init__(self, seconds_per_mb: float):
        self.seconds_per_mb = seconds_per_mb
        self.partitions: dict[int, SimpleNamespace] = {}
        self.processed: list[tuple[int, int]] = []

    def monitors_for(self, partition, checkpoints):
        return self.partitions.setdefault(partition, SimpleNamespace(take_seek=lambda: None))

    def restoring(self, partition, checkpoints):
        self.monitors_for(partition, checkpoints)
        return iter(())

    def creating(self, monitors, models):
        return iter(())

    def process(self, monitors, records):
        assert agents.processing.locked()
        self.processed += [(r.partition, r.offset) for r in records]
        end = time.perf_counter() + self.seconds_per_mb * sum(len(r.value) for r in records) / 1e6
        while time.perf_counter() < end:
            pass
        return [], []


async def test_a_slow_batch_of_large_messages_does_not_block_the_event_loop(monkeypatch):
    """24 messages of 0.5 MB at 0.1 s a MB hold the CPU 1.2 s in all: a timer (the lag probe, /metrics,
    the broker's heartbeats) waits about one chunk of YIELD_EVERY_BYTES (0.2 s), not the batch, and
    every record is processed once, in order, under the processing lock."""
    service = SlowService(seconds_per_mb=0.1)
    monkeypatch.setattr(worker, "service", service)
    monkeypatch.setattr(worker, "metrics", Metrics(CollectorRegistry()))
    monkeypatch.setattr(agents, "input_readers", [])  # the monitors' alone, whichever test imported the joins
    payload = b"x" * 500_000
    batch = [(p, [SimpleNamespace(value=payload, partition=p, offset=o, topic="predictions", key=b"m")
                  for o in range(12)])
             for p in (0, 1)]
    loop = asyncio.get_running_loop()
    lateness: asyncio.Queue = asyncio.Queue()

    async def ticker():
        while True:
            due = loop.time() + 0.01
            await asyncio.sleep(0.01)
            lateness.put_nowait(loop.time() - due)

    task = asyncio.create_task(ticker())
    await lateness.get()  # ticking
    async with agents.processing:
        await agents._process(batch)
    worst = await asyncio.wait_for(lateness.get(), 5)  # the tick that was due during the batch
    while not lateness.empty():
        worst = max(worst, lateness.get_nowait())
    task.cancel()
    assert service.processed == [(p, o) for p in (0, 1) for o in range(12)]
    assert worst < 0.6, f"a timer waited {worst:.2f} s"


class ConfirmingTable(dict):
    """The checkpoint table: records kept in a dict; the broker confirms them or not."""

    confirm = True

    async def confirmed(self, timeout):
        return self.confirm


@pytest.fixture
def committed(monkeypatch):
    """The checkpoint table, and the offsets the worker commits for its input topic."""
    table = ConfirmingTable()
    monkeypatch.setattr(worker, "checkpoints", table)
    monkeypatch.setattr(agents, "checkpoint_sources", [])  # the monitors' alone (the joins': test_join_checkpoints)
    out: list[dict] = []

    async def commit(consumer, offsets):
        out.append({tp.partition: offset for tp, offset in offsets.items() if tp.topic == worker.settings.input_topic})
        return True

    async def faust_commit():  # the other topics' (none here)
        return False
    monkeypatch.setattr(agents, "commit", commit)
    monkeypatch.setattr(worker.app.consumer, "commit", faust_commit)
    return SimpleNamespace(table=table, offsets=out)


async def checkpoint_and_commit():
    """What the checkpoint timer does each round."""
    async with agents.processing:
        await agents._checkpoint_then_commit(stepwise=True)


def _marker_offset(table, partition):
    return msgpack.unpackb(table[position_key(partition)])["offset"]


async def test_the_offsets_committed_are_those_the_confirmed_checkpoints_cover(sent, committed):
    """Faust never sees the input records, so the worker commits their offsets itself: each
    partition's last processed offset + 1, what its position marker vouches for, and only once
    the broker has the checkpoints."""
    async with raw_context() as agent:
        await put_all(agent, [orjson.dumps(e) for e in events("credit", 30, seed=21)], partition=0)
        await put_all(agent, [orjson.dumps(e) for e in events("fraud", 20, seed=22)], partition=2, key=b"fraud")
        committed.table.confirm = False
        await checkpoint_and_commit()
        assert committed.offsets == []  # not on the broker: nothing committed
        committed.table.confirm = True
        await checkpoint_and_commit()
        assert committed.offsets == [{0: 30, 2: 20}]
        assert (_marker_offset(committed.table, 0), _marker_offset(committed.table, 2)) == (29, 19)
        await put_all(agent, [orjson.dumps(e) for e in events("credit", 10, seed=23)], partition=0)
        await checkpoint_and_commit()
        assert committed.offsets[-1] == {0: 40}  # partition 2 did not move
        assert _marker_offset(committed.table, 0) == 39
        await agents.on_shutdown(worker.app)  # a stop commits what its checkpoints cover too
        assert committed.offsets[-1] == {0: 40}


async def test_a_revoked_partition_is_checkpointed_and_its_fetched_records_dropped(sent, committed, tmp_path):
    """A rebalance: the revoked partition's records still waiting are not processed here (its new
    owner reads them from the committed offset); its monitors are checkpointed first, and the
    other partitions' records are processed as fetched."""
    empty = tmp_path / "none"
    empty.mkdir()
    fresh = DetectionService(str(empty), worker.metrics)
    worker.service.rescan()
    async with raw_context() as agent:
        await put_all(agent, [orjson.dumps(e) for e in events("credit", 10, seed=24)], partition=1)
        agents.fetched.put({0: fetch([orjson.dumps(e) for e in events("credit", 5, seed=25)], 0),
                            1: fetch([orjson.dumps(e) for e in events("credit", 7, seed=26)], 1)})
        await agents.on_revoked(worker.app, {TP(worker.settings.input_topic, 1)})
        await processed()
    assert fresh.partitions == {}
    assert set(worker.service.partitions) == {0}
    assert worker.service.partitions[0].router.monitor("credit").events_seen == 5
    assert _marker_offset(committed.table, 1) == 9 and "1/credit" in committed.table


async def test_the_fetched_records_are_bounded_in_bytes_and_a_large_fetch_waits_for_nothing():
    """Large messages: the fetch loop waits once the payload waiting reaches the byte bound (not
    only the record count), and a micro-batch of enough payload starts without the batch wait."""
    waiting = agents.FetchedRecords(capacity=1000, capacity_bytes=1000, enough_bytes=500)
    waiting.put({0: fetch([b"x" * 300, b"x" * 300])})
    assert not waiting.full()
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(waiting.ready(max_records=1000, within=5.0), 1)  # 600 bytes: enough, no wait
    assert asyncio.get_running_loop().time() - started < 0.5
    waiting.put({1: fetch([b"x" * 400], partition=1)})
    assert waiting.full()
    room = asyncio.ensure_future(waiting.wait_for_room())
    await asyncio.sleep(0.01)
    assert not room.done()
    assert [(p, len(rs)) for p, rs in waiting.take(1)] == [(0, 1)]  # 700 bytes left
    await asyncio.wait_for(room, 1)
    assert len(waiting) == 2 and not waiting.full()


async def test_events_waiting_for_their_models_others_are_fed_before_a_checkpoint_and_on_time(sent, committed,
                                                                                              monkeypatch):
    """With the hold on, a partition's few events of a model wait; the checkpoint timer feeds them
    (and sends what they give) before it checkpoints, so the commit covers them; the hold's timer
    feeds those that waited most of --hold-seconds, and only those."""
    monkeypatch.setattr(worker.service, "hold_events", 100)
    garbage = b"{not json"
    async with raw_context() as agent:
        await put_all(agent, [orjson.dumps(e) for e in events("credit", 30, seed=27)] + [garbage], partition=0)
        assert worker.service.held() == 30 and worker.service.events_seen("credit") == 0
        assert len(sent["dead"]) == 1  # a decode reject waits for nothing
        await agents.checkpoint_round()
        assert worker.service.held() == 0 and worker.service.events_seen("credit") == 30
        assert committed.offsets == [{0: 31}] and _marker_offset(committed.table, 0) == 30

        await put_all(agent, [orjson.dumps(e) for e in events("fraud", 20, seed=28)], partition=2, key=b"fraud")
        await agents.feed_overdue()  # they came just now: they wait
        assert worker.service.held() == 20
        monkeypatch.setattr(agents, "settings", dataclasses.replace(agents.settings, hold_seconds=1e-6))
        await agents.feed_overdue()
        assert worker.service.held() == 0 and worker.service.events_seen("fraud") == 20


async def test_held_events_are_fed_a_model_at_a_time_with_the_loop_let_run(sent, committed, monkeypatch):
    """The timer's and the checkpoint's flush fed every held model in one go: at 500 models the
    monitor calls in a row held the event loop (and so /metrics and the heartbeats) for their sum.
    Now the loop runs between models whenever STEP_SECONDS has passed (0 here: after each)."""
    monkeypatch.setattr(worker.service, "hold_events", 100)
    monkeypatch.setattr(agents, "STEP_SECONDS", 0.0)
    turns = 0

    async def count_turns():
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async with raw_context() as agent:
        await put_all(agent, [orjson.dumps(e) for e in events("credit", 10, seed=37)], partition=0)
        await put_all(agent, [orjson.dumps(e) for e in events("fraud", 10, seed=38)], partition=0, key=b"fraud")
        assert worker.service.held() == 20
        monkeypatch.setattr(agents, "settings", dataclasses.replace(agents.settings, hold_seconds=1e-6))
        ticker = asyncio.ensure_future(count_turns())
        await asyncio.sleep(0)
        before = turns
        await agents.feed_overdue()
        ticker.cancel()
        assert worker.service.held() == 0 and worker.service.events_seen("fraud") == 10
        assert turns - before >= 2, turns - before  # a turn after each of the two models


async def test_a_log_recreated_while_the_group_rejoins_is_seen_by_the_lag_probe(sent, monkeypatch):
    """Seen after a 300 s broker outage: the broker came back empty while the group rejoined, so no
    partition was assigned when the lag timer ran, and it probed nothing; by the reassignment the
    new log had outgrown the old one (its end offset never seen going back), and the monitors
    restored from the old log's checkpoint skipped its first records as counted. The probe now
    covers every input partition this worker has held."""
    consumer = worker.app.consumer
    tp = TP(worker.settings.input_topic, 2)
    ends = {tp: 60}
    assignment = {tp}

    async def highwaters(*tps):
        return {t: ends[t] for t in tps if t in ends}

    monkeypatch.setattr(consumer, "assignment", lambda: set(assignment))
    monkeypatch.setattr(consumer, "highwaters", highwaters)
    monkeypatch.setattr(consumer, "position", lambda t: asyncio.sleep(0, 60))
    monkeypatch.setattr(agents, "_partitions_held", set())
    await agents.probe_broker()
    assignment.clear()  # the group rejoins
    ends[tp] = 0  # the broker came back without its records
    await agents.probe_broker()
    assert 2 in worker.service._recreated
