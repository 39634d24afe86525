"""The request-id joins in the worker: feature parity, delayed labels and shadow pairs (detectors.joins).

    predictions  (key: model)  --forward_predictions--+
    feature log  (any key)     --forward_feature_log--+--> <app-id>-joins-by-request --join_requests--> alerts
    labels       (any key)     --forward_labels-------+    partition = crc32(request_id) % partitions

The predictions are keyed by model and the feature log and labels by whatever their producers
chose, so the records of one request id are on unrelated partitions. The three forwarders repartition
them by request id into one internal topic, choosing the partition themselves (`partition_of`), so
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

Limitation (deliberate, for now): the join buffers and each model's parity / performance monitors
live in this process (`joins`), bounded by the TTL and the cap of detectors.joins.JoinConfig, and are
not checkpointed. A restart or a rebalance that moves a joins-by-request partition loses the
records waiting on it (they never match: the served events of those ids are not checked against
their feature-log records or labels) and restarts the monitors' statistics; with several workers
each one tests the share of the requests it owns, and an alert can come from more than one worker
with the same `alert_id` (consumers dedupe on it). The forwarders are at-least-once like the rest:
a re-delivered record is counted as a duplicate by the join and otherwise ignored.
"""
from __future__ import annotations

import zlib
from typing import Any

import faust
import msgpack

import stream.worker.app as worker  # the module, not its names: tests swap worker.service and worker.metrics
from baselines.profile import Baseline
from detectors.alerts import Alert
from detectors.events import decode_message
from detectors.joins import JoinConfig, JoinMonitor, decode_join_records, parse_shadow_pairs, record_time
from stream.worker import config as _config
from stream.worker.agents import emit, input_readers, send_dead_letter, wait_for_baselines

app, settings = worker.app, worker.settings

__all__ = ["feature_log_topic", "forward_feature_log", "forward_labels", "forward_predictions", "join_requests",
           "joins", "joins_status", "joins_topic", "labels_topic", "partition_of", "shadow_pairs"]

feature_log_topic = app.topic(settings.feature_log_topic, key_serializer="raw", value_serializer="raw",
                              partitions=settings.partitions)
labels_topic = app.topic(settings.labels_topic, key_serializer="raw", value_serializer="raw",
                         partitions=settings.partitions)
joins_topic = app.topic(_config.joins_topic(settings), key_serializer="raw", value_serializer="raw",
                        partitions=settings.partitions, internal=True)


def _baseline_of(model: Any) -> Baseline | None:
    return worker.service.baseline(model)  # looked up per call: tests swap worker.service


shadow_pairs = parse_shadow_pairs(settings.shadow)
#: the models of the shadow pairs: their events are forwarded whether or not they have a baseline
_shadow_models = frozenset(m for pair in shadow_pairs for m in pair)
joins = JoinMonitor(_baseline_of, JoinConfig(ttl=settings.join_ttl, max_entries=settings.join_max_entries,
                                             include_examples=settings.include_examples,
                                             shadow_ttl=settings.shadow_ttl, shadow_window=settings.shadow_window,
                                             shadow_min_agreement=settings.shadow_min_agreement),
                    shadow=shadow_pairs)


def partition_of(request_id: str, partitions: int) -> int:
    """The joins-by-request partition of a request id: stable across processes and restarts.

    >>> partition_of("r-81723", 4) == partition_of("r-81723", 4) < 4
    True
    """
    return zlib.crc32(request_id.encode("utf-8", "surrogatepass")) % partitions


async def _forward(kind: str, records_by_partition: dict[int, list[dict]]) -> None:
    for partition, records in records_by_partition.items():
        await joins_topic.send(value=msgpack.packb({"kind": kind, "records": records}, use_bin_type=True),
                               partition=partition)


def _with_time(record: dict, message_timestamp: float | None) -> dict:
    if record_time(record, None) is not None or message_timestamp is None:
        return record
    return {**record, "ts": float(message_timestamp)}


async def forward_predictions(records: list) -> None:
    """The served events that carry a request id, of monitored models and of the shadow pairs, to
    their join partition. The worker's input path (stream.worker.agents.input_readers) calls it
    with each micro-batch's records (aiokafka ConsumerRecords), once the baselines are loaded,
    after the monitors (which dead-letter the undecodable ones)."""
    known = set(worker.service.models)
    by_partition: dict[int, list[dict]] = {}
    for record in records:
        timestamp = record.timestamp / 1000.0 if record.timestamp is not None else None
        for ev in decode_message(record.value, worker.service.limits)[0]:
            request_id = ev.get("request_id")
            if isinstance(request_id, str) and request_id and (ev["model"] in known
                                                               or ev["model"] in _shadow_models):
                by_partition.setdefault(partition_of(request_id, settings.partitions), []).append(
                    _with_time(ev, timestamp))
    await _forward("predictions", by_partition)


input_readers.append(forward_predictions)


async def _forward_join_records(kind: str, batch: list) -> None:
    by_partition: dict[int, list[dict]] = {}
    for event in batch:
        message = event.message
        records, rejects = decode_join_records(message.value, kind, worker.service.limits)
        for rec in records:
            by_partition.setdefault(partition_of(rec["request_id"], settings.partitions), []).append(rec)
        for reject in rejects:
            await send_dead_letter(worker.service.dead_letter(
                reject, {"topic": message.topic, "partition": message.partition, "offset": message.offset}))
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


_ADD = {"predictions": joins.add_predictions, "feature_log": joins.add_feature_log, "labels": joins.add_labels}


@app.agent(joins_topic)
async def join_requests(stream: faust.StreamT) -> None:
    """Join each request id's served event, feature-log record and label; emit the parity,
    performance and leakage alerts."""
    await wait_for_baselines()  # the joins check against the baselines
    async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):
        alerts: list[Alert] = []
        for event in batch:
            forwarded = msgpack.unpackb(event.message.value, raw=False, strict_map_key=False)
            alerts += _ADD[forwarded["kind"]](forwarded["records"])
        if joins.shadow is not None:
            worker.metrics.observe_shadow(joins.shadow.figures())
        for alert in alerts:
            await emit(alert)


@app.page("/joins.json")
async def joins_status(web: Any, request: Any) -> Any:
    """The joins' counters (matched, waiting, duplicates, expired unmatched) and monitors."""
    return web.json(joins.snapshot())
