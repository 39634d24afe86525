"""What the worker runs on the app of stream.worker.app: the agent, the timers, the
partition-signal handlers, and the worker's two outputs (`emit` an alert, `send_dead_letter`),
which the joins use too. The agent stays thin: `stream.worker.service` decodes, monitors and
builds the dead letters; this module moves bytes between Kafka and it.

Guarantee: at-least-once. The monitors are checkpointed every `checkpoint_interval` to a
compacted changelog (the `monitor-checkpoints` table), and offsets are committed right after
each checkpoint, so after `kill -9` the restored state counts every event once (re-delivered
messages the state already includes are skipped by offset); the alerts of the events since the
last checkpoint can be emitted a second time, with the same `alert_id`. A rebalance checkpoints
the revoked partitions first, so their monitors continue on the new owner.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import faust
import orjson

import stream.worker.app as worker  # the module, not its names: tests swap worker.service and worker.metrics
from detectors.alerts import Alert
from stream.gc_policy import relax_gc
from stream.worker.faust_internals import rewind
from stream.worker.service import Record, parse_checkpoint_key

log = logging.getLogger("skewwatch.worker")

__all__ = ["BROKER_PROBE_TIMEOUT", "CHECKPOINT_CONFIRM_TIMEOUT", "NO_BASELINE_NOTICE_INTERVAL", "STEP_SECONDS",
           "YIELD_EVERY_BYTES", "checkpoint_and_commit", "emit", "measure_lag", "monitor_predictions",
           "on_assigned", "on_revoked", "on_shutdown", "processing", "relax_gc_once_started", "rescan_baselines",
           "send_dead_letter", "wait_for_baselines", "write_checkpoints"]

app, settings = worker.app, worker.settings
T = TypeVar("T")

#: seconds the lag timer waits for the broker's end offsets before it reports the broker lost
BROKER_PROBE_TIMEOUT = 2.0
#: seconds the checkpoint timer waits for the broker to acknowledge a checkpoint before it gives
#: up committing this round (processing waits meanwhile)
CHECKPOINT_CONFIRM_TIMEOUT = 10.0


def _table_items() -> Iterable[tuple[str, bytes]]:
    return list(worker.checkpoints.items())


#: held by the agent while it processes a batch and by the checkpoint timer from checkpoint to
#: commit: a batch processed while the checkpoint is being flushed would otherwise be acked and
#: committed without being in the checkpoint, and lost by a crash before the next one
processing = asyncio.Lock()


#: seconds of loading baselines, restoring or creating monitors, or encoding checkpoints between two turns of the
#: event loop
STEP_SECONDS = 0.05

#: seconds between the warnings of a worker that waits for its first usable baseline
NO_BASELINE_NOTICE_INTERVAL = 10.0


@app.agent(worker.predictions_topic)
async def monitor_predictions(stream: faust.StreamT) -> None:
    """The prediction events, in micro-batches, through the monitors (once the baselines are loaded)."""
    await wait_for_baselines()
    async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):
        async with processing:
            await _process(batch)


async def wait_for_baselines() -> None:
    """Load the baselines before the first record is processed; while none is usable, process
    nothing (and commit nothing), saying so every NO_BASELINE_NOTICE_INTERVAL seconds.

    The agent does it, not an app task: Faust starts its tasks after it resumed fetching, so the
    first batch of a backlog could come first; its partition's monitors were then built with no
    model, restored no checkpoint, and dead-lettered every event as unknown_model.
    """
    service = worker.service
    loop = asyncio.get_running_loop()
    said = None
    while not service.models:
        await service.rescan_off_loop()
        if service.models:
            break
        if said is None or loop.time() - said >= NO_BASELINE_NOTICE_INTERVAL:
            log.warning("no usable baseline in %s: processing nothing until one appears (checking every %g s)",
                        service.directory.path, settings.baseline_scan_interval)
            said = loop.time()
        await asyncio.sleep(settings.baseline_scan_interval)
    if said is not None:
        log.info("baselines loaded (%s): processing", ", ".join(service.models))


#: payload bytes processed between two yields to the event loop: a batch of large messages (up to
#: batch_size of them, each up to Limits.max_message_bytes) would otherwise hold the loop (timers,
#: /metrics, the broker's heartbeats) for as long as it takes; the slowest valid input measured
#: (bench/input_paths.py: alarms on every feature) costs ~0.15 s a MB. Batching does not change the alerts.
YIELD_EVERY_BYTES = 2_000_000


def _chunks(records: list[Record]) -> Iterator[list[Record]]:
    """The records in order, in runs of about YIELD_EVERY_BYTES (at least one record each)."""
    chunk, size = [], 0
    for r in records:
        chunk.append(r)
        size += len(r.value or b"")
        if size >= YIELD_EVERY_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


async def _process(batch: list[faust.EventT]) -> None:
    service = worker.service
    with worker.metrics.batch_seconds.time():
        by_partition: dict[int, list[Record]] = {}
        keys: dict[int, set[bytes]] = {}
        tps = {}
        for event in batch:
            m = event.message
            by_partition.setdefault(m.partition, []).append(Record(m.value, m.partition, m.offset, m.topic))
            keys.setdefault(m.partition, set()).add(m.key)
            tps[m.partition] = m.tp
        first = True
        for partition, records in by_partition.items():
            # restored, then the monitors the batch's keys name created, letting the loop run between
            await _in_steps(service.restoring(partition, _table_items))
            monitors = service.monitors_for(partition, _table_items)
            models = [k.decode(errors="replace") for k in keys[partition] if isinstance(k, bytes)]
            await _in_steps(service.creating(monitors, models))
            for chunk in _chunks(records):
                if not first:
                    await asyncio.sleep(0)  # let the loop run (the processing lock stays held)
                first = False
                # after any await, as between partitions: the monitors a rebalance left (rebuilt if it dropped them)
                monitors = service.monitors_for(partition, _table_items)
                alerts, dead_letters = service.process(monitors, chunk)
                for alert in alerts:
                    await emit(alert)
                for letter in dead_letters:
                    await send_dead_letter(letter)
            seek = monitors.take_seek()
            if seek is not None:  # records fetched but never delivered: read them again
                rewind(app.consumer, tps[partition], seek)


async def _in_steps(steps: Iterable[T]) -> list[T]:
    """The items of `steps`, letting the event loop run every STEP_SECONDS: its timers, the web
    pages and the consumer's heartbeats wait no longer than that for baselines to load, monitors
    to be restored or created, or checkpoints to be encoded."""
    loop = asyncio.get_running_loop()
    since = loop.time()
    items = []
    for item in steps:
        items.append(item)
        if loop.time() - since >= STEP_SECONDS:
            await asyncio.sleep(0)
            since = loop.time()
    return items


async def emit(alert: Alert) -> None:
    """Send an alert to the alert topic, keyed by its model; count it, and keep it for the status
    pages (`DetectionService.alert_sent`). Every alert the worker finds goes out this way."""
    worker.metrics.count_alert(alert, worker.service.baseline(alert.model))
    record = alert.to_dict()
    worker.service.alert_sent(record)
    await worker.alerts_topic.send(key=alert.model.encode(), value=orjson.dumps(record))


async def send_dead_letter(letter: dict) -> None:
    """Send a dead-letter record, keyed by its reason. Every record comes from
    `DetectionService.dead_letter`, which counts and logs the reject."""
    await worker.dead_letters_topic.send(key=letter["reason"].encode(), value=orjson.dumps(letter))


async def write_checkpoints(partitions: Iterable[int] | None = None, stepwise: bool = False) -> bool:
    """Write the changed monitors' state, then (once the broker has it) the partitions' position
    markers; whether the broker has everything written so far. `stepwise` (only under the
    `processing` lock: no batch may change a monitor between two steps) lets the event loop run
    between the checkpoints."""
    checkpoints = worker.service.checkpointing(partitions)
    written = dict(await _in_steps(checkpoints) if stepwise else checkpoints)
    for key, blob in written.items():  # in order: a model's chunks before its head (checkpoint_codec)
        if blob is None:
            worker.checkpoints.pop(key, None)  # an older checkpoint's chunk: a tombstone
        else:
            worker.checkpoints[key] = blob
    if not await _confirmed():
        return False
    # A marker vouches for every monitor of its partition, rewritten this round or not: only
    # once the checkpoints before it are durable.
    for key, blob in worker.service.positions(partitions).items():
        worker.checkpoints[key] = blob
    if not await _confirmed():
        return False
    worker.metrics.checkpoints.inc(sum(parse_checkpoint_key(key)[2] is None for key in written))  # heads
    return True


async def _confirmed() -> bool:
    confirmed = await worker.checkpoints.confirmed(CHECKPOINT_CONFIRM_TIMEOUT)
    if not confirmed:
        if confirmed is None:  # a lost record is written again, with every other monitor's, next time
            worker.service.rewrite_checkpoints()
        log.warning("the broker has not confirmed the checkpoints (%s): offsets stay uncommitted until it does",
                    "a send failed" if confirmed is None else f"{CHECKPOINT_CONFIRM_TIMEOUT:.0f} s")
    return bool(confirmed)


@app.timer(interval=settings.checkpoint_interval)
async def checkpoint_and_commit() -> None:
    """Checkpoint the monitors, then commit the offsets they cover (only once the broker has them)."""
    async with processing:
        # Only once the checkpoints are durable may the consumer's offsets move on to what they cover.
        if await write_checkpoints(stepwise=True) and await app.consumer.commit():
            worker.service.offsets_committed()


@app.task
async def relax_gc_once_started() -> None:
    """Freeze what start-up allocated out of the garbage collector's way."""
    relax_gc()  # set up: from here on, mostly events in flight (stream/gc_policy.py)


@app.timer(interval=settings.baseline_scan_interval)
async def rescan_baselines() -> None:
    """Pick up new, changed, broken or deleted baseline files (read in a thread: parsing a large
    one must not stall the loop); report held-back reject counts."""
    await worker.service.rescan_off_loop()
    worker.service.report_rejects()  # the reject counts a burst's rate-limited log line held back


_broker_reachable: bool | None = None


def _set_broker_reachable(reachable: bool, why: str = "") -> None:
    """The skewwatch_broker_connected gauge, and one log line per change (not one per probe)."""
    global _broker_reachable
    if reachable != _broker_reachable:
        if reachable:
            log.info("broker reachable")
        else:
            log.warning("lost the broker (%s); reconnecting", why)
    _broker_reachable = reachable
    worker.metrics.broker_connected.set(1 if reachable else 0)


@app.timer(interval=2.0)
async def measure_lag() -> None:
    """Probe the broker (the end offsets of the assigned partitions): the lag and broker gauges, and
    a recreated input log noticed."""
    consumer = app.consumer
    mine = [tp for tp in consumer.assignment() if tp.topic == settings.input_topic]
    if not mine:
        return
    try:
        ends = await asyncio.wait_for(consumer.highwaters(*mine), BROKER_PROBE_TIMEOUT)
    except Exception as e:  # noqa: BLE001 (a timeout or any Kafka error: the broker is out of reach)
        _set_broker_reachable(False, type(e).__name__)
        return
    _set_broker_reachable(True)
    worker.service.observe_end_offsets({tp.partition: ends[tp] for tp in mine if ends.get(tp) is not None})
    for tp in mine:
        monitors = worker.service.partitions.get(tp.partition)
        position = monitors.last_offset + 1 if monitors else await consumer.position(tp)
        if ends.get(tp) is not None and position is not None:
            worker.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, ends[tp] - position))


@app.on_partitions_revoked.connect
async def on_revoked(app: faust.App, revoked: set, **kwargs: Any) -> None:
    """Checkpoint the revoked partitions' monitors for their next owner, then drop them."""
    # Faust committed what was processed; checkpoint everything processed so the next owner
    # of these partitions resumes from the same point.
    mine = {tp.partition for tp in revoked if tp.topic == settings.input_topic}
    await write_checkpoints(mine)
    worker.service.drop_partitions(mine)


@app.on_partitions_assigned.connect
async def on_assigned(app: faust.App, assigned: set, **kwargs: Any) -> None:
    """Drop the monitors of partitions no longer ours; note the assigned ones' end offsets."""
    service = worker.service
    mine = {tp.partition for tp in assigned if tp.topic == settings.input_topic}
    # Monitors of partitions no longer ours are rebuilt from the changelog if they come back.
    service.drop_partitions(set(service.partitions) - mine)
    # Before any record is processed: a log recreated since (its end offset went back) must not
    # have its first records skipped as already counted. The lag timer checks it every 2 s too.
    tps = [tp for tp in assigned if tp.topic == settings.input_topic]
    try:
        ends = await asyncio.wait_for(app.consumer.highwaters(*tps), BROKER_PROBE_TIMEOUT) if tps else {}
        service.observe_end_offsets({tp.partition: end for tp, end in ends.items() if end is not None})
    except Exception as e:  # noqa: BLE001 (the broker is slow or away: the lag timer checks again)
        log.info("could not read the end offsets of the assigned partitions (%s)", type(e).__name__)
    worker.metrics.forget_lag(settings.input_topic, mine)
    _set_broker_reachable(True)


@app.on_before_shutdown.connect
async def on_shutdown(app: faust.App, **kwargs: Any) -> None:
    """Checkpoint every monitor before the worker stops."""
    await write_checkpoints()
