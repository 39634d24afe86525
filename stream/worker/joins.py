"""The request-id joins in the worker: feature parity, delayed labels and shadow pairs (detectors.joins).

    predictions  (key: model)  --forward_predictions--+
    feature log  (any key)     --forward_feature_log--+--> <app-id>-joins-by-request --join_requests--> alerts
    labels       (any key)     --forward_labels-------+    partition = crc32(request_id) % joins_partitions

The predictions are keyed by model and the feature log and labels by whatever their producers
chose, so the records of one request id are on unrelated partitions. The three forwarders repartition
them by request id into one internal topic, choosing the partition themselves
(`join_checkpoints.partition_of`, over SKEWWATCH_JOINS_PARTITIONS partitions, default 1), so
no producer has to key anything in a particular way and every record of a request id reaches the
same `join_requests` partition, and so the same worker. Each forwarded message holds all of a
micro-batch's records for one partition (msgpack {"kind", "records"}: a prediction message with many
events stays one message, not one per event).

Shadow pairs (`--shadow production=candidate`) ride on the same path: the events of both models of a
pair are forwarded (the candidate's whether or not it has a baseline), so a request's two predictions
meet on one partition; the pairs' agreement is on /metrics (`skewwatch_shadow_*`) and /joins.json.

Time-to-live expiry runs on event time: the events' `ts` (an event without one gets its Kafka
timestamp). A feature-log record or label without `ts` takes the newest time already seen rather
than its Kafka timestamp: the offline pipeline and the labels come later, and a wall-clock time
from them would expire every waiting event stamped with an older event time (replayed traffic).

State: each joins-by-request partition has its own `JoinMonitor` (its buffers, bounded by the TTL
and the cap of detectors.joins.JoinConfig, and its models' parity / performance / leakage / shadow
statistics), checkpointed with the monitors before every commit (`JoinCheckpoints`, a source of
stream.worker.agents.write_checkpoints) into the `join-checkpoints` table (stream.worker.join_checkpoints,
key "J<P>/"), and restored when the partition's first record arrives after a restart or a rebalance
(the agent waits for the baselines first, as the monitors' agent does); the records the checkpoint
includes, delivered again, are skipped by offset, and the joins topic's offsets are committed by
`JoinCheckpoints` only up to what the checkpoint includes (the topic is read with acks off, so
Faust never commits it). So a kill -9 loses no waiting record and joins none twice. The agent and
the forwarders hold the same lock as the monitors' agent (`processing`), and the checkpoint timer
waits for the broker to acknowledge every forwarded message before it commits the offsets of what
was forwarded (a commit past a record whose forwarded copy is not on the broker would lose it).

By default the topic has one partition (SKEWWATCH_JOINS_PARTITIONS=1): one JoinMonitor holds every
model's statistics, on one worker. With P partitions each tests its share of the requests (a
model's requests spread over every partition): a test sees ~1/P of the joined requests, and the
same change found by several partitions has the same `alert_id`: the worker sends it once
(`JoinPartitions.unsent`); with several workers each may send it (consumers dedupe on it).
Re-delivered input records are forwarded again and counted as duplicates by the join (the first
record wins; a served event's `events_seen` count includes them). docs/reliability.md, "kill -9
with the joins on", says what a kill -9 keeps and what an existing joins topic with more partitions
than the setting does.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
import msgpack
from faust.types import TP

import stream.worker.app as worker  # the module, not its names: tests swap worker.service and worker.metrics
from baselines.profile import Baseline
from detectors.alerts import Alert
from detectors.events import decode_message
from detectors.joins import JoinConfig, JoinMonitor, decode_join_records, parse_shadow_pairs, record_time
from stream.worker import config as _config
from stream.worker.agents import (
    CHECKPOINT_CONFIRM_TIMEOUT,
    checkpoint_sources,
    emit,
    input_readers,
    processing,
    send_dead_letter,
    wait_for_baselines,
)
from stream.worker.faust_internals import commit
from stream.worker.join_checkpoints import JoinPartitions, parse_join_checkpoint_key, partition_of

log = logging.getLogger("skewwatch.worker")

app, settings = worker.app, worker.settings

__all__ = ["JoinCheckpointTable", "JoinCheckpoints", "feature_log_topic", "forward_feature_log", "forward_labels",
           "forward_predictions", "join_checkpoints", "join_requests", "joins", "joins_status", "joins_topic",
           "labels_topic", "on_joins_assigned", "on_joins_revoked", "shadow_pairs"]

feature_log_topic = app.topic(settings.feature_log_topic, key_serializer="raw", value_serializer="raw",
                              partitions=settings.partitions)
labels_topic = app.topic(settings.labels_topic, key_serializer="raw", value_serializer="raw",
                         partitions=settings.partitions)
# acks=False: Faust never commits this topic's offsets (it would at a rebalance or a stop, past
# records processed since the last checkpoint); `JoinCheckpoints` commits what the checkpoints hold
joins_topic = app.topic(_config.joins_topic(settings), key_serializer="raw", value_serializer="raw",
                        partitions=settings.joins_partitions, internal=True, acks=False)


class JoinCheckpointTable(worker.CheckpointTable):
    """The joins' checkpoints (stream.worker.join_checkpoints): key "J<P>/" and its chunks go to
    changelog partition P, the table having as many partitions as the joins topic, so Faust gives
    it to the owner of joins partition P. A joins topic made earlier with more partitions (Kafka
    cannot shrink one) wraps around (P modulo the table's partitions; docs/reliability.md)."""

    def partition_for_key(self, key: Any) -> int:
        """Key "J<P>/" and its chunks "J<P>#g.i/" go to changelog partition P."""
        return parse_join_checkpoint_key(key)[0] % settings.joins_partitions


join_checkpoints = app.tables.add(JoinCheckpointTable(
    app,
    name=_config.JOIN_CHECKPOINT_TABLE,
    beacon=app.tables.beacon,
    partitions=settings.joins_partitions,
    key_type=str, value_type=bytes,  # msgpack stored as it is, never pickled (as the monitors' table)
    help="checkpoints of the joins (stream/worker/join_checkpoints.py), key 'Jpartition/'",
))


def _baseline_of(model: Any) -> Baseline | None:
    return worker.service.baseline(model)  # looked up per call: tests swap worker.service


shadow_pairs = parse_shadow_pairs(settings.shadow)
#: the models of the shadow pairs: their events are forwarded whether or not they have a baseline
_shadow_models = frozenset(m for pair in shadow_pairs for m in pair)
_join_config = JoinConfig(ttl=settings.join_ttl, max_entries=settings.join_max_entries,
                          include_examples=settings.include_examples, shadow_ttl=settings.shadow_ttl,
                          shadow_window=settings.shadow_window, shadow_min_agreement=settings.shadow_min_agreement)
joins = JoinPartitions(lambda: JoinMonitor(_baseline_of, _join_config, shadow=shadow_pairs),
                       settings.max_checkpoint_bytes)

#: the forwarded messages the broker has not acknowledged yet (the checkpoint timer waits for them)
_unconfirmed_forwards: list[asyncio.Future] = []


async def _forward(kind: str, records_by_partition: dict[int, list[dict]]) -> None:
    for partition, records in records_by_partition.items():
        _unconfirmed_forwards.append(await joins_topic.send(
            value=msgpack.packb({"kind": kind, "records": records}, use_bin_type=True), partition=partition))


def _with_time(record: dict, message_timestamp: float | None) -> dict:
    if record_time(record, None) is not None or message_timestamp is None:
        return record
    return {**record, "ts": float(message_timestamp)}


async def forward_predictions(records: list) -> None:
    """The served events that carry a request id, of monitored models and of the shadow pairs, to
    their join partition. The worker's input path (stream.worker.agents.input_readers) calls it
    with each micro-batch's records (aiokafka ConsumerRecords), once the baselines are loaded,
    after the monitors (which dead-letter the undecodable ones), under the `processing` lock."""
    known = set(worker.service.models)
    by_partition: dict[int, list[dict]] = {}
    for record in records:
        timestamp = record.timestamp / 1000.0 if record.timestamp is not None else None
        for ev in decode_message(record.value, worker.service.limits)[0]:
            request_id = ev.get("request_id")
            if isinstance(request_id, str) and request_id and (ev["model"] in known
                                                               or ev["model"] in _shadow_models):
                by_partition.setdefault(partition_of(request_id, settings.joins_partitions), []).append(
                    _with_time(ev, timestamp))
    await _forward("predictions", by_partition)


input_readers.append(forward_predictions)


async def _forward_join_records(kind: str, batch: list) -> None:
    by_partition: dict[int, list[dict]] = {}
    for event in batch:
        message = event.message
        records, rejects = decode_join_records(message.value, kind, worker.service.limits)
        for rec in records:
            by_partition.setdefault(partition_of(rec["request_id"], settings.joins_partitions), []).append(rec)
        for reject in rejects:
            await send_dead_letter(worker.service.dead_letter(
                reject, {"topic": message.topic, "partition": message.partition, "offset": message.offset}))
    async with processing:  # not between a checkpoint and its commit (see JoinCheckpoints)
        await _forward(kind, by_partition)


@app.agent(feature_log_topic)
async def forward_feature_log(stream: faust.StreamT) -> None:
    """The offline pipeline's feature-log records to the join partitions of their request ids."""
    async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):
        await _forward_join_records("feature_log", batch)


@app.agent(labels_topic)
async def forward_labels(stream: faust.StreamT) -> None:
    """The delayed labels to the join partitions of their request ids."""
    async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):
        await _forward_join_records("labels", batch)


def _table_items() -> list[tuple[str, bytes]]:
    return list(join_checkpoints.items())


@app.agent(joins_topic)
async def join_requests(stream: faust.StreamT) -> None:
    """Join each request id's served event, feature-log record and label; emit the parity,
    performance, leakage and shadow alerts."""
    await wait_for_baselines()  # the joins check against the baselines, and restore against them
    async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):
        async with processing:  # a checkpoint holds every batch processed before the commit after it
            alerts: list[Alert] = []
            for event in batch:
                message = event.message
                forwarded = msgpack.unpackb(message.value, raw=False, strict_map_key=False)
                partition = joins.joins_for(message.partition, _table_items)
                alerts += partition.add(message.offset, forwarded["kind"], forwarded["records"])
            if partition.joins.shadow is not None:
                # with several joins partitions here, the gauges show the one that joined last
                worker.metrics.observe_shadow(partition.joins.shadow.figures())
            for alert in joins.unsent(alerts):
                await emit(alert)


class JoinCheckpoints:
    """The joins' part of every checkpoint (stream.worker.agents.write_checkpoints, under the
    `processing` lock): once the broker has acknowledged every forwarded message, the changed
    partitions' joins, written to the `join-checkpoints` table and acknowledged too; then the
    joins topic's offsets they cover (each partition's last joined offset + 1). Until then the
    round's offsets are not committed: a commit would move the input topics past records whose
    forwarded copy (or the join state holding them) a kill -9 could still lose."""

    def __init__(self) -> None:
        self._committed: dict[int, int] = {}  # joins partition -> the offset committed last

    async def checkpoint(self) -> bool:
        """Write the changed joins, then commit the joins topic's offsets they cover; whether
        everything they and the forwarders sent is on the broker."""
        sent, _unconfirmed_forwards[:] = list(_unconfirmed_forwards), []
        if sent:
            done, pending = await asyncio.wait(sent, timeout=CHECKPOINT_CONFIRM_TIMEOUT)
            if pending:
                _unconfirmed_forwards[:0] = list(pending)
                log.warning("the broker has not confirmed %d message(s) forwarded to the joins: offsets stay "
                            "uncommitted until it does", len(pending))
                return False
            failed = sum(1 for f in done if f.exception() is not None)
            if failed:
                log.warning("the broker refused %d message(s) forwarded to the joins: their records are not joined",
                            failed)
        if not await _write(await _encoded()):
            return False
        offsets = {p: j.last_offset + 1 for p, j in joins.partitions.items()
                   if j.last_offset >= 0 and self._committed.get(p) != j.last_offset + 1}
        name = joins_topic.get_topic_name()
        if offsets and await commit(app.consumer, {TP(name, p): o for p, o in offsets.items()}):
            self._committed.update(offsets)
        return True


async def _encoded(partitions: set[int] | None = None) -> dict[str, bytes | None]:
    """The changed partitions' checkpoint records, encoded in a thread: the event loop (timers, the
    pages, the broker's heartbeats) need not wait while a join state of up to --join-max-entries
    waiting records per join, values included, is packed and compressed. Only under the
    `processing` lock: nothing changes the joins meanwhile."""
    return await asyncio.to_thread(joins.checkpoints, partitions)


async def _write(records: dict[str, bytes | None]) -> bool:
    for key, blob in records.items():  # in order: the chunks before their head (checkpoint_codec)
        if blob is None:
            join_checkpoints.pop(key, None)
        else:
            join_checkpoints[key] = blob
    confirmed = await join_checkpoints.confirmed(CHECKPOINT_CONFIRM_TIMEOUT)
    if not confirmed:
        if confirmed is None:  # a lost record: every partition's joins are written again next time
            joins.rewrite_checkpoints()
        log.warning("the broker has not confirmed the joins' checkpoints (%s): offsets stay uncommitted until it does",
                    "a send failed" if confirmed is None else f"{CHECKPOINT_CONFIRM_TIMEOUT:.0f} s")
    return bool(confirmed)


checkpoint_sources.append(JoinCheckpoints())


def _joins_partitions(tps: set) -> set[int]:
    return {tp.partition for tp in tps if tp.topic == joins_topic.get_topic_name()}


@app.on_partitions_revoked.connect
async def on_joins_revoked(app: faust.App, revoked: set, **kwargs: Any) -> None:
    """Checkpoint the revoked joins partitions' state for their next owner, then drop it."""
    mine = _joins_partitions(revoked)
    if not mine:
        return
    async with processing:  # the batch being joined ends first, and none of these partitions' after
        await _write(await _encoded(mine))
        joins.drop(mine)


@app.on_partitions_assigned.connect
async def on_joins_assigned(app: faust.App, assigned: set, **kwargs: Any) -> None:
    """Drop the joins of the partitions no longer ours (rebuilt from their checkpoints if they come
    back); say so if the joins topic has more partitions than SKEWWATCH_JOINS_PARTITIONS."""
    mine = _joins_partitions(assigned)
    async with processing:  # not while a checkpoint is encoded (`_encoded`)
        joins.drop(set(joins.partitions) - mine)
    beyond = sorted(p for p in mine if p >= settings.joins_partitions)
    if beyond:
        log.warning("the joins topic %s has partitions beyond SKEWWATCH_JOINS_PARTITIONS=%d (%s): it was made with "
                    "more (Kafka cannot shrink a topic); nothing new is forwarded to them. Set "
                    "SKEWWATCH_JOINS_PARTITIONS to its partition count, or recreate it (docs/reliability.md)",
                    joins_topic.get_topic_name(), settings.joins_partitions, ", ".join(map(str, beyond)))


@app.page("/joins.json")
async def joins_status(web: Any, request: Any) -> Any:
    """The joins' counters (matched, waiting, duplicates, expired unmatched) summed over the partitions
    here, and each partition's counters and monitors (with one partition, its monitors at the top too)."""
    return web.json(joins.snapshot())
