"""The joins' checkpoints in the worker, without Faust (stream.worker.join_checkpoints): each
joins-by-request partition's state written to the checkpoint table, restored on first use after a
restart, the records it includes skipped when they are delivered again."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from types import SimpleNamespace

import msgpack
import numpy as np
import orjson

from detectors.joins import JoinConfig, JoinMonitor
from stream.worker import agents
from stream.worker.join_checkpoints import JoinPartitions, join_checkpoint_key, parse_join_checkpoint_key, partition_of
from stream.worker.service import parse_checkpoint_key, position_key
from tests.stream.helpers import events, training_baseline

BASELINE = dataclasses.replace(training_baseline("credit"), metric={"name": "accuracy", "value": 0.9, "n": 20_000})
CONFIG = JoinConfig(ttl=3600.0, max_entries=5000)


def partitions(max_record_bytes: int = 900_000) -> JoinPartitions:
    """The joins of the partitions a worker owns, as stream.worker.joins builds them."""
    return JoinPartitions(lambda: JoinMonitor({"credit": BASELINE}.get, CONFIG), max_record_bytes)


def forwarded_messages(n: int = 3000, partitions: int = 2, seed: int = 4) -> dict[int, list[tuple[str, list[dict]]]]:
    """Per joins partition, its forwarded messages in order: the served events, then the feature
    log (amount /1000 on every 8th request from 1000), then the labels (accuracy 0.9, then 0.6
    from 1000), 25 records a message, as the forwarders send them."""
    rng = np.random.default_rng(seed)
    served = events("credit", n, seed=seed)
    truth = rng.integers(0, 2, n)
    right = rng.random(n) < np.where(np.arange(n) < 1000, 0.9, 0.6)
    for i, ev in enumerate(served):
        ev.update(request_id=f"r{i}", prediction=int(truth[i] if right[i] else 1 - truth[i]))
    log = [{"request_id": f"r{i}", "model": "credit",
            "features": {**ev["features"], "amount": ev["features"]["amount"] / (1000 if i >= 1000 and i % 8 == 0
                                                                                  else 1)}}
           for i, ev in enumerate(served)]
    labels = [{"request_id": f"r{i}", "label": int(truth[i])} for i in range(n)]
    out: dict[int, list[tuple[str, list[dict]]]] = {p: [] for p in range(partitions)}
    for kind, records in (("predictions", served), ("feature_log", log), ("labels", labels)):
        for p in range(partitions):
            mine = records[p::partitions]
            out[p] += [(kind, mine[i:i + 25]) for i in range(0, len(mine), 25)]
    return out


def write(table: dict[str, bytes], records: dict[str, bytes | None]) -> None:
    for key, blob in records.items():
        if blob is None:
            table.pop(key, None)
        else:
            table[key] = blob


def test_a_restart_from_the_checkpoint_joins_as_the_uninterrupted_run_skipping_what_it_includes():
    messages = forwarded_messages()  # per partition: served 0-59, feature log 60-119, labels 120-179
    whole = partitions(max_record_bytes=8_000)  # big states in chunks
    first = partitions(max_record_bytes=8_000)
    table: dict[str, bytes] = {}
    whole_alerts: dict[int, list] = {0: [], 1: []}
    # the first worker checkpoints at offset 140 of each partition (every served event and feature-log
    # record, a few labels), goes on to 150, and dies (kill -9: its memory is gone)
    for p, msgs in messages.items():
        for offset, (kind, records) in enumerate(msgs[:150]):
            first.joins_for(p, table.items).add(offset, kind, records)
            found = whole.joins_for(p, table.items).add(offset, kind, records)
            whole_alerts[p] += found if offset > 140 else []
            if offset == 140:
                write(table, first.checkpoints([p]))
    assert any(parse_join_checkpoint_key(k)[1] is not None for k in table)  # chunks beside the heads
    assert all(len(record) <= 8_000 for record in table.values())  # none over the record limit
    assert {parse_join_checkpoint_key(k)[0] for k in table} == {0, 1}
    # its offsets were committed at 100: the restarted worker is given 100.. again, then the rest
    restarted = partitions(max_record_bytes=8_000)
    alerts: dict[int, list] = {0: [], 1: []}
    for p, msgs in messages.items():
        for offset, (kind, records) in enumerate(msgs[100:], start=100):
            alerts[p] += restarted.joins_for(p, table.items).add(offset, kind, records)
        for offset, (kind, records) in enumerate(msgs[150:], start=150):
            whole_alerts[p] += whole.joins_for(p, table.items).add(offset, kind, records)
    assert restarted.snapshot() == whole.snapshot()  # every counter and statistic of every partition
    for p in (0, 1):
        assert [a.kind for a in alerts[p]] == ["performance"]
        assert [a.to_dict() for a in alerts[p]] == [a.to_dict() for a in whole_alerts[p]]
    counts = restarted.snapshot()["counts"]
    assert counts["labels"]["matched"] == counts["feature_log"]["matched"] == 3000
    assert counts["labels"]["duplicate_label"] == counts["feature_log"]["duplicate_offline"] == 0


def test_only_changed_partitions_are_written_and_generations_alternate_their_chunks():
    messages = forwarded_messages(n=600, partitions=1)
    joins = partitions(max_record_bytes=2048)
    table: dict[str, bytes] = {}
    for offset, (kind, records) in enumerate(messages[0][:6]):
        joins.joins_for(0, table.items).add(offset, kind, records)
    write(table, joins.checkpoints())
    assert joins.checkpoints() == {}  # nothing new
    first = set(table)
    assert len(first) > 1  # a head and its chunks
    joins.joins_for(0, table.items).add(6, *messages[0][6])
    write(table, joins.checkpoints())
    chunks = [parse_join_checkpoint_key(k)[1] for k in table if k != join_checkpoint_key(0)]
    assert chunks and {g for g, _ in chunks} == {1}  # the previous generation's chunks deleted
    assert first - set(table) == {k for k in first if k != join_checkpoint_key(0)}


def test_a_damaged_checkpoint_starts_the_joins_fresh_and_says_why(caplog):
    messages = forwarded_messages(n=600, partitions=1)
    joins = partitions(max_record_bytes=2048)
    table: dict[str, bytes] = {}
    for offset, (kind, records) in enumerate(messages[0][:6]):
        joins.joins_for(0, table.items).add(offset, kind, records)
    write(table, joins.checkpoints())
    chunk = next(k for k in table if k != join_checkpoint_key(0))
    table[chunk] = table[chunk][:-10]
    with caplog.at_level(logging.WARNING, logger="skewwatch.worker"):
        fresh = partitions().joins_for(0, table.items)
    assert fresh.last_offset == -1 and fresh.joins.counts["feature_log"]["waiting"] == 0
    assert any("cannot restore the joins from their checkpoint" in r.getMessage() for r in caplog.records)
    # and the next checkpoint deletes the damaged one's chunks
    fresh.add(0, *messages[0][0])
    assert {k for k, v in fresh.checkpoint().items() if v is None} == {k for k in table if k != join_checkpoint_key(0)}


def test_join_keys_go_to_their_partition_and_are_never_read_as_a_monitors(monkeypatch):
    from stream.worker import joins  # registers the joins' agents and table on the app, which no test starts

    monkeypatch.setattr(joins, "settings", dataclasses.replace(joins.settings, joins_partitions=4))
    assert joins.join_checkpoints.partition_for_key(join_checkpoint_key(3)) == 3
    assert joins.join_checkpoints.partition_for_key(join_checkpoint_key(2, (0, 5))) == 2
    # a joins topic made earlier with more partitions than the setting: wrapped into the table
    assert joins.join_checkpoints.partition_for_key(join_checkpoint_key(5)) == 1
    assert parse_join_checkpoint_key("1/credit") is None and parse_join_checkpoint_key(position_key(1)) is None
    assert parse_checkpoint_key("1/Jx") == (1, "Jx", None)  # a model named J... is still a monitor's


class ConfirmingTable(dict):
    """The joins' checkpoint table: records kept in a dict; the broker confirms them."""

    async def confirmed(self, timeout):
        return True


async def test_no_commit_while_a_message_forwarded_to_the_joins_is_unacknowledged(monkeypatch):
    """The checkpoint timer commits the input offsets only once every forwarded copy is on the
    broker: a kill -9 after the commit could otherwise lose the copy of a committed record."""
    from stream.worker import joins  # registers the joins' agents on the app, which no test starts

    monkeypatch.setattr(joins, "CHECKPOINT_CONFIRM_TIMEOUT", 0.05)
    monkeypatch.setattr(joins, "joins", partitions())
    monkeypatch.setattr(joins, "join_checkpoints", table := ConfirmingTable())
    joins.joins.joins_for(0, dict().items).add(0, *forwarded_messages(n=50, partitions=1)[0][0])
    sent = asyncio.get_running_loop().create_future()
    monkeypatch.setattr(joins, "_unconfirmed_forwards", [sent])
    committed = []

    async def commit(consumer, offsets):
        committed.append({(tp.topic, tp.partition): o for tp, o in offsets.items()})
        return True
    monkeypatch.setattr(joins, "commit", commit)
    assert any(isinstance(s, joins.JoinCheckpoints) for s in agents.checkpoint_sources)  # the timer asks it
    source = joins.JoinCheckpoints()
    assert await source.checkpoint() is False  # not acknowledged: no commit this round
    assert joins._unconfirmed_forwards == [sent] and table == {} and committed == []
    sent.set_result(None)
    assert await source.checkpoint() is True
    assert list(table) == [join_checkpoint_key(0)] and joins._unconfirmed_forwards == []
    # then the joins topic's offset the checkpoint covers (Faust never commits it: acks off), once
    assert committed == [{(joins.joins_topic.get_topic_name(), 0): 1}] and not joins.joins_topic.acks
    assert await source.checkpoint() is True and len(committed) == 1


def test_a_change_found_by_several_partitions_is_sent_once():
    messages = forwarded_messages(partitions=2)
    joins = partitions()
    found = [a for p, msgs in messages.items() for offset, (kind, records) in enumerate(msgs)
             for a in joins.joins_for(p, dict().items).add(offset, kind, records)]
    assert len(found) > len({a.alert_id for a in found})  # both partitions found the same changes
    sent = joins.unsent(found)
    assert [a.alert_id for a in sent] == list(dict.fromkeys(a.alert_id for a in found))
    assert joins.unsent(found) == []


async def test_the_forwarders_spread_request_ids_over_the_joins_partitions_setting(monkeypatch):
    """SKEWWATCH_JOINS_PARTITIONS, not the input's partition count: 1 by default (one place holds a
    model's whole join statistics), more on request."""
    from stream.worker import config, joins  # registers the joins' agents on the app, which no test starts

    assert config.load({}).joins_partitions == 1 < config.load({}).partitions
    cfg = config.load({"SKEWWATCH_JOINS_PARTITIONS": "3"})
    assert config.topics(cfg)[config.joins_topic(cfg)] == config.topics(cfg)[config.join_changelog_topic(cfg)] == 3
    sent: list[tuple[int, list[str]]] = []

    async def send(*, value, partition, **kwargs):
        sent.append((partition, [r["request_id"] for r in msgpack.unpackb(value)["records"]]))
        acknowledged = asyncio.get_running_loop().create_future()
        acknowledged.set_result(None)
        return acknowledged
    monkeypatch.setattr(joins.joins_topic, "send", send)
    monkeypatch.setattr(joins, "_unconfirmed_forwards", [])
    labels = [{"request_id": f"r{i}", "label": 1} for i in range(40)]
    message = SimpleNamespace(value=orjson.dumps(labels), topic="labels", partition=0, offset=0)
    for partitions in (1, 3):
        sent.clear()
        monkeypatch.setattr(joins, "settings", dataclasses.replace(joins.settings, joins_partitions=partitions))
        await joins._forward_join_records("labels", [SimpleNamespace(message=message)])
        assert {p for p, _ in sent} == set(range(partitions))
        assert all(partition_of(r, partitions) == p for p, ids in sent for r in ids)
        assert sorted(r for _, ids in sent for r in ids) == sorted(r["request_id"] for r in labels)
