"""What the worker runs on the app of stream.worker.app: the agent and its input path, the timers,
the partition-signal handlers, and the worker's two outputs (`emit` an alert, `send_dead_letter`),
which the joins use too. The agent stays thin: `stream.worker.service` decodes, monitors and
builds the dead letters; this module moves bytes between Kafka and it.

Input path: the input topic's records never go through Faust's per-message stream (a Message,
an Event and an ack per record cost ~9 times the monitors' work on a single-event message). The
consumer's fetch loop hands them over a fetched batch at a time (`fetched`, through
stream.worker.faust_internals.divert); the agent takes micro-batches of them from there. Faust
still owns the consumer, its group and rebalances, the checkpoint table and the other topics.

Guarantee: at-least-once. The monitors are checkpointed every `checkpoint_interval` to a
compacted changelog (the `monitor-checkpoints` table), and then the offsets those checkpoints
cover (each partition's last processed offset + 1; the events waiting for their model's others,
`--hold-events`, are fed before each checkpoint) are committed, so after `kill -9` the
restored state counts every event once (re-delivered messages the state already includes are
skipped by offset); the alerts of the events since the last checkpoint can be emitted a second
time, with the same `alert_id`. A rebalance checkpoints the revoked partitions first, so their
monitors continue on the new owner. With the joins on, their state is checkpointed in the same
rounds, before the same commit (`checkpoint_sources`; stream.worker.joins).
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

import faust
import orjson
from faust.types import TP

import stream.worker.app as worker  # the module, not its names: tests swap worker.service and worker.metrics
from detectors.alerts import Alert
from stream.gc_policy import relax_gc
from stream.worker.faust_internals import commit, divert, rewind
from stream.worker.service import Record, parse_checkpoint_key

log = logging.getLogger("skewwatch.worker")

__all__ = ["BROKER_PROBE_TIMEOUT", "CHECKPOINT_CONFIRM_TIMEOUT", "FETCHED_CAPACITY", "FETCHED_CAPACITY_BYTES",
           "NO_BASELINE_NOTICE_INTERVAL", "STEP_SECONDS", "YIELD_EVERY_BYTES", "CheckpointSource", "FetchedRecords",
           "checkpoint_and_commit", "checkpoint_round", "checkpoint_sources", "emit", "feed_held_events",
           "feed_overdue", "fetched", "input_readers", "measure_lag", "monitor_predictions", "on_assigned",
           "on_revoked", "on_shutdown", "probe_broker", "processing", "relax_gc_once_started", "rescan_baselines",
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


class CheckpointSource(Protocol):
    """State checkpointed with the monitors, before each commit (the joins': stream.worker.joins)."""

    async def checkpoint(self) -> bool:
        """Write what changed; whether it (and whatever it depends on) is on the broker, so that
        the offsets may be committed this round."""


#: what `write_checkpoints` checkpoints besides the monitors, every round (the joins register theirs)
checkpoint_sources: list[CheckpointSource] = []


#: held by the agent while it processes a batch, and by the checkpoint timer and the stop handler
#: from checkpoint to commit: a batch processed while the checkpoint is being flushed would
#: otherwise be committed without being in the checkpoint, and lost by a crash before the next
#: one; held by the rebalance handler too, so no record of a revoked partition is processed after
#: its checkpoint
processing = asyncio.Lock()


#: seconds of loading baselines, restoring or creating monitors, or encoding checkpoints between two turns of the
#: event loop
STEP_SECONDS = 0.05

#: seconds between the warnings of a worker that waits for its first usable baseline
NO_BASELINE_NOTICE_INTERVAL = 10.0


@app.agent(worker.predictions_topic)
async def monitor_predictions(stream: faust.StreamT) -> None:
    """The input topic's records, in micro-batches, through the monitors (once the baselines are
    loaded). They come from `fetched`, never from `stream`: iterating its channel only makes
    Faust subscribe the consumer to the topic."""
    aiter(stream.channel)
    await wait_for_baselines()
    while True:
        await fetched.ready(settings.batch_size, settings.batch_within)
        async with processing:
            # taken under the lock: a rebalance may have dropped them meanwhile (on_revoked)
            batch = fetched.take(settings.batch_size)
            if batch:
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


#: records fetched and not yet taken by the agent, at most (the fetch loop waits beyond): a few
#: micro-batches, so that the next is fetched while one is processed
FETCHED_CAPACITY = 4 * settings.batch_size
#: payload bytes fetched and not yet taken by the agent, at most: the bound on what large
#: messages (up to --max-message-bytes each) hold in memory
FETCHED_CAPACITY_BYTES = 8 * YIELD_EVERY_BYTES


class FetchedRecords:
    """The input topic's fetched records on their way from the consumer's fetch loop
    (stream.worker.faust_internals.divert) to the agent, in fetch order.

    Bounded: the fetch loop waits while `capacity` records or `capacity_bytes` of payload are
    waiting (a fetch is taken whole, so one fetch may go beyond). The agent waits for a
    micro-batch (`ready`) and takes it (`take`); a rebalance drops the revoked partitions'
    records (`drop`).

    >>> from types import SimpleNamespace as Rec
    >>> f = FetchedRecords(capacity=3, capacity_bytes=100, enough_bytes=50)
    >>> f.put({0: [Rec(value=b"a", offset=0), Rec(value=b"b", offset=1)], 1: [Rec(value=b"c", offset=7)]})
    >>> f.full(), [(p, [r.offset for r in rs]) for p, rs in f.take(2)]
    (True, [(0, [0, 1])])
    >>> [(p, [r.offset for r in rs]) for p, rs in f.take(2)], len(f)
    ([(1, [7])], 0)
    """

    def __init__(self, capacity: int, capacity_bytes: int, enough_bytes: int):
        self.capacity = capacity
        self.capacity_bytes = capacity_bytes
        #: payload bytes that make a micro-batch without waiting for more records
        self.enough_bytes = enough_bytes
        self._fetches: deque[tuple[int, list[Any], int]] = deque()  # (partition, records, payload bytes)
        self._records = 0
        self._bytes = 0
        self._waiting: list[asyncio.Future] = []

    def __len__(self) -> int:
        return self._records

    def full(self) -> bool:
        """Whether the fetch loop must wait before the next `put`."""
        return self._records >= self.capacity or self._bytes >= self.capacity_bytes

    def put(self, records: dict[int, list[Any]]) -> None:
        """One fetch's records, {partition: records in offset order} (aiokafka ConsumerRecords)."""
        for partition, batch in records.items():
            size = _payload_bytes(batch)
            self._fetches.append((partition, batch, size))
            self._records += len(batch)
            self._bytes += size
        self._wake()

    async def wait_for_room(self) -> None:
        """Return once `full` is False."""
        while self.full():
            await self._changed()

    async def ready(self, max_records: int, within: float) -> None:
        """Return once a micro-batch is waiting: `max_records` records or `enough_bytes` of
        payload, or whatever came within `within` seconds of the first record."""
        while not self._records:
            await self._changed()
        deadline = asyncio.get_running_loop().time() + within
        while self._records < max_records and self._bytes < self.enough_bytes:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            await self._changed(left)

    def take(self, max_records: int) -> list[tuple[int, list[Any]]]:
        """Up to `max_records` records, oldest first, as (partition, records) runs."""
        out: list[tuple[int, list[Any]]] = []
        taken = 0
        while self._fetches and taken < max_records:
            partition, batch, size = self._fetches.popleft()
            if taken + len(batch) > max_records:  # the rest of this fetch stays first in line
                head = batch[:max_records - taken]
                head_size = _payload_bytes(head)
                self._fetches.appendleft((partition, batch[max_records - taken:], size - head_size))
                batch, size = head, head_size
            out.append((partition, batch))
            taken += len(batch)
            self._bytes -= size
        self._records -= taken
        self._wake()
        return out

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the records of `partitions` (revoked: their next owner reads them)."""
        partitions = set(partitions)
        self._fetches = deque(f for f in self._fetches if f[0] not in partitions)
        self._records = sum(len(batch) for _, batch, _ in self._fetches)
        self._bytes = sum(size for _, _, size in self._fetches)
        self._wake()

    async def _changed(self, timeout: float | None = None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            pass
        finally:
            if waiter in self._waiting:
                self._waiting.remove(waiter)

    def _wake(self) -> None:
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)


def _payload_bytes(records: list[Any]) -> int:
    return sum([len(r.value) for r in records if r.value is not None])


#: the input topic's records between the fetch loop and the agent
fetched = FetchedRecords(FETCHED_CAPACITY, FETCHED_CAPACITY_BYTES, enough_bytes=YIELD_EVERY_BYTES)
divert(settings.input_topic, fetched)

#: the other readers of the input topic (the joins' forwarder, stream.worker.joins): each is
#: awaited with every micro-batch's records (aiokafka ConsumerRecords) after the monitors, under
#: the processing lock, so the offsets committed next cover what they did with them too
input_readers: list[Callable[[list[Any]], Awaitable[None]]] = []


async def _process(batch: list[tuple[int, list[Any]]]) -> None:
    """A micro-batch of (partition, fetched records) runs, through the monitors and the other readers."""
    service = worker.service
    with worker.metrics.batch_seconds.time():
        by_partition: dict[int, list[Any]] = {}
        for partition, records in batch:
            by_partition.setdefault(partition, []).extend(records)
        first = True
        for partition, fetched_records in by_partition.items():
            # restored, then the monitors the batch's keys name created, letting the loop run between
            await _in_steps(service.restoring(partition, _table_items))
            monitors = service.monitors_for(partition, _table_items)
            keys = {r.key for r in fetched_records}
            models = [k.decode(errors="replace") for k in keys if isinstance(k, bytes)]
            await _in_steps(service.creating(monitors, models))
            # aiokafka's records as they are: they have a Record's attributes (building Records cost 10%)
            for chunk in _chunks(fetched_records):
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
                rewind(app.consumer, TP(settings.input_topic, partition), seek)
        if input_readers:
            every = [r for records in by_partition.values() for r in records]
            for reader in input_readers:
                await reader(every)


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
    markers, then, for every partition (None), the `checkpoint_sources`'; whether the broker has
    everything written so far (the offsets may be committed). `stepwise` (only under the
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
    for source in checkpoint_sources if partitions is None else ():
        if not await source.checkpoint():
            return False
    return True


async def _confirmed() -> bool:
    confirmed = await worker.checkpoints.confirmed(CHECKPOINT_CONFIRM_TIMEOUT)
    if not confirmed:
        if confirmed is None:  # a lost record is written again, with every other monitor's, next time
            worker.service.rewrite_checkpoints()
        log.warning("the broker has not confirmed the checkpoints (%s): offsets stay uncommitted until it does",
                    "a send failed" if confirmed is None else f"{CHECKPOINT_CONFIRM_TIMEOUT:.0f} s")
    return bool(confirmed)


async def _feed_held(partitions: Iterable[int] | None = None, older_than: float | None = None) -> None:
    """Feed the held events (all, or those that waited `older_than` seconds) a model at a time
    (`DetectionService.flushing`), letting the loop run every STEP_SECONDS, and send what they
    give; under the `processing` lock."""
    for alerts, dead_letters in await _in_steps(worker.service.flushing(partitions, older_than)):
        for alert in alerts:
            await emit(alert)
        for letter in dead_letters:
            await send_dead_letter(letter)


@app.timer(interval=settings.hold_seconds / 4)
async def feed_held_events() -> None:
    """Every quarter of `hold_seconds`: `feed_overdue`."""
    await feed_overdue()


async def feed_overdue() -> None:
    """Feed the models whose oldest held event came 3/4 of `hold_seconds` ago: checked every
    quarter of it, no event waits longer than `hold_seconds` for its model's other events (plus
    the batch in progress, which holds the lock)."""
    if worker.service.held():
        async with processing:
            await _feed_held(older_than=settings.hold_seconds * 0.75)


@app.timer(interval=settings.checkpoint_interval)
async def checkpoint_and_commit() -> None:
    """Every `checkpoint_interval`: `checkpoint_round`."""
    await checkpoint_round()


async def checkpoint_round() -> None:
    """Feed the held events, checkpoint the monitors, then commit the offsets they cover (only once
    the broker has them)."""
    async with processing:
        await _feed_held()  # a checkpoint covers no held event: its offsets would skip them after a restart
        await _checkpoint_then_commit(stepwise=True)


async def _checkpoint_then_commit(stepwise: bool = False) -> None:
    # Only once the checkpoints are durable may the group's offsets move on to what they cover:
    # each partition's last processed offset + 1 (Faust never saw those records, so its own
    # commit would not move them).
    if not await write_checkpoints(stepwise=stepwise):
        return
    offsets = {TP(settings.input_topic, p): o for p, o in worker.service.committable().items()}
    if offsets and await commit(app.consumer, offsets):
        worker.service.offsets_committed()
    # the joins' input topics: what Faust's streams acked, all forwarded before this round's checkpoints
    # (under the lock) and acknowledged (stream.worker.joins commits the joins topic itself)
    await app.consumer.commit()


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


#: the input partitions assigned to this worker at some time since it started (`measure_lag` probes them)
_partitions_held: set[int] = set()


@app.timer(interval=2.0)
async def measure_lag() -> None:
    """Every 2 s: `probe_broker`."""
    await probe_broker()


async def probe_broker() -> None:
    """Probe the broker (the end offsets of the input partitions): the lag and broker gauges, and
    a recreated input log noticed."""
    consumer = app.consumer
    mine = [tp for tp in consumer.assignment() if tp.topic == settings.input_topic]
    _partitions_held.update(tp.partition for tp in mine)
    if not _partitions_held:
        return
    # Every input partition this worker has held, not only those assigned now: while the group
    # rejoins (the broker back after an outage) none is, and a log recreated meanwhile must be seen
    # going back before it grows past the old one's end, or the monitors restored at the
    # reassignment skip its first records as counted (observe_end_offsets)
    probed = [TP(settings.input_topic, p) for p in sorted(_partitions_held)]
    try:
        ends = await asyncio.wait_for(consumer.highwaters(*probed), BROKER_PROBE_TIMEOUT)
    except Exception as e:  # noqa: BLE001 (a timeout or any Kafka error: the broker is out of reach)
        _set_broker_reachable(False, type(e).__name__)
        return
    _set_broker_reachable(True)
    worker.service.observe_end_offsets({tp.partition: end for tp, end in ends.items() if end is not None})
    for tp in mine:
        monitors = worker.service.partitions.get(tp.partition)
        position = monitors.last_offset + 1 if monitors else await consumer.position(tp)
        if ends.get(tp) is not None and position is not None:
            worker.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, ends[tp] - position))


@app.on_partitions_revoked.connect
async def on_revoked(app: faust.App, revoked: set, **kwargs: Any) -> None:
    """Checkpoint the revoked partitions' monitors for their next owner, then drop them."""
    mine = {tp.partition for tp in revoked if tp.topic == settings.input_topic}
    # Under the lock: the batch being processed ends first (Faust's wait for unacked messages
    # does not know these records), and no record of these partitions is processed after.
    async with processing:
        fetched.drop(mine)
        await _feed_held(mine)  # the next owner resumes after the checkpoint: nothing of it may wait here
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
    """Checkpoint every monitor before the worker stops, and commit what the checkpoints cover."""
    async with processing:
        await _feed_held()
        await _checkpoint_then_commit()
