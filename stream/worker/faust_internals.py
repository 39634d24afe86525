"""The one adapter over Faust's and aiokafka's private internals: the worker consumer's fetch
wait, reading a partition again from an offset, and the input topic's records taken off Faust's
per-message path (`divert`) with their offsets committed by the worker (`commit`).

Faust builds its aiokafka consumer with fetch_max_wait_ms=1500 and no setting to change it; a
broker that holds a fetch until that limit (the embedded Tansu does) then adds up to 1.5 s to every
alert. `set_fetch_max_wait` wraps Faust's private `AIOKafkaConsumerThread._create_worker_consumer`
and sets aiokafka's private `AIOKafkaConsumer._fetch_max_wait_ms` on the consumer it returns:
aiokafka reads the value when the consumer starts, so setting it on the fresh consumer is enough.
Used by the worker (stream/worker/app.py) and by bench/e2e.py's bare agent, so both are compared
with the same consumer.

`rewind` makes the consumer read a partition again from an offset. Faust's public `seek` alone
is not enough while its fetcher is in the middle of a batch: the records of that batch it still
hands over move its read offset (the private `Consumer._read_offset`) past the sought offset, and
the re-read records below it are then dropped as already read. So the seek is made where no batch
is in flight, at the start of the next `Consumer.getmany` (which Faust's fetcher loop calls; a
wrapper of the class method), and the records of that partition left in the current batch are
not handed over.

`divert` takes a topic's records off Faust's per-message path. Faust turns every fetched record
into a Message, hands it to its conductor, a channel queue, an Event and a stream, and acks it:
on single-event messages the worker spent ~90% of its time there (issue 15: 4.4-5.7k messages/s,
10-11% of the time in its micro-batches). The
fetcher's private `Consumer._wait_next_records` (which `Consumer.getmany` calls once per fetch)
is wrapped: the diverted topic's records of the fetch, of the partitions Faust would hand over
(its active ones, none with a `rewind` pending), are given to a sink a fetched batch at a time,
and removed from what Faust sees. The fetch loop waits while the sink is full (as it waits on a
full stream buffer) until Faust suspends its flow (a rebalance, a stop); records not taken then
are dropped as Faust drops them, and read again from the committed offsets when the flow resumes
(Faust seeks there). Faust never tracks those records, so it never commits their offsets:
`commit` does, with Faust's private `Consumer._commit_offsets` (its own commit path: revoked
partitions left out, the producer flushed first). tests/stream/test_faust_internals.py fails if a private name moves.
"""
from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import faust.transport.consumer as _consumer
import faust.transport.drivers.aiokafka as _driver

__all__ = ["TESTED_WITH", "Sink", "commit", "divert", "rewind", "set_fetch_max_wait"]

log = logging.getLogger("skewwatch.worker")

#: the versions this adapter is tested with; a private name it relies on missing in another
#: version fails at import (the method) or in tests/stream/test_faust_internals.py (both)
TESTED_WITH = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}

_original = _driver.AIOKafkaConsumerThread._create_worker_consumer


def set_fetch_max_wait(ms: int) -> None:
    """Make every Faust worker consumer created from now on wait at most `ms` per fetch.

    Parameters
    ----------
    ms : int
        The longest a fetch may wait for records, in milliseconds (SKEWWATCH_FETCH_MAX_WAIT_MS).
    """
    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = _original(self, transport)
        consumer._fetch_max_wait_ms = ms
        return consumer
    _driver.AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer


_original_getmany = _consumer.Consumer.getmany
#: consumer -> {tp: offset}: the rewinds asked for since its current batch began
_rewinds: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def rewind(consumer: Any, tp: Any, offset: int) -> None:
    """Make `consumer` (the app's, `app.consumer`) read partition `tp` again from `offset`.

    The records of `tp` still in the batch being handed over are dropped; the seek is made
    before the next fetch. The records of `tp` already handed to the stream still arrive: the
    caller drops them (stream.worker.service.PartitionMonitors.unseen does).
    """
    _rewinds.setdefault(consumer, {})[tp] = offset


async def _getmany_with_rewinds(self: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
    asked = _rewinds.pop(self, None)
    for tp, offset in (asked or {}).items():
        try:
            await self.seek(tp, offset)
        except Exception as e:  # noqa: BLE001 (revoked meanwhile: its next owner starts from the checkpoints)
            log.warning("could not read %s again from offset %d (%s: %s)", tp, offset, type(e).__name__, e)
    async for tp, message in _original_getmany(self, timeout):
        # `_rewinds` is nearly always empty: tested first, since a weak-keyed lookup costs a weakref per message
        if _rewinds and tp in _rewinds.get(self, ()):
            continue  # fetched before the seek asked for: it comes again after it
        yield tp, message


_consumer.Consumer.getmany = _getmany_with_rewinds


class Sink(Protocol):
    """Where `divert` hands a topic's fetched records."""

    def full(self) -> bool:
        """Whether the fetch loop must wait (`wait_for_room`) before `put`."""

    async def wait_for_room(self) -> None:
        """Return once `full` is False."""

    def put(self, records: dict[int, list[Any]]) -> None:
        """Take one fetch's records, {partition: aiokafka ConsumerRecords in offset order}."""


#: topic name -> the sink its records go to instead of Faust's streams
_diverted: dict[str, Sink] = {}


def divert(topic: str, sink: Sink) -> None:
    """Hand the records of `topic` that the app's consumer fetches to `sink`, a fetched batch at a
    time, instead of Faust's streams (see the module). Call before the worker starts; an agent
    must still iterate the topic's channel for Faust to subscribe to it."""
    _diverted[topic] = sink


async def commit(consumer: Any, offsets: Mapping[Any, int]) -> bool:
    """Commit `offsets` ({TP: the next offset to read}) for the app's consumer group: what the
    worker has checkpointed of the diverted topic, which Faust never saw. Partitions no longer
    assigned are left out; the producer is flushed first. Whether anything was committed."""
    return bool(offsets) and await consumer._commit_offsets(offsets)


_original_wait_next_records = _consumer.Consumer._wait_next_records


async def _wait_next_records_diverting(self: Any, timeout: float) -> tuple[Any, Any]:
    records, active_partitions = await _original_wait_next_records(self, timeout)
    if not records or not _diverted:
        return records, active_partitions
    mine = [tp for tp in records if tp.topic in _diverted]
    if not mine:
        return records, active_partitions
    records = dict(records)  # Faust's getmany sees the rest
    taken = {tp: records.pop(tp) for tp in mine}
    # getmany's own rule: nothing while the flow is suspended (it then seeks back to the committed
    # offsets) or stopping, and only the partitions it would hand over (the active ones)
    if not self.flow_active or self.should_stop:
        return records, active_partitions
    rewinding = _rewinds.get(self, ()) if _rewinds else ()  # fetched before a seek asked for: they come again
    by_topic: dict[str, dict[int, list[Any]]] = {}
    for tp, batch in taken.items():
        if batch and tp not in rewinding and (active_partitions is None or tp in active_partitions):
            by_topic.setdefault(tp.topic, {})[tp.partition] = batch
    for topic, batch in by_topic.items():
        sink = _diverted[topic]
        if sink.full():
            # until there is room, or the flow is suspended (then the records are dropped: see the module)
            room = asyncio.ensure_future(sink.wait_for_room())
            suspended = asyncio.ensure_future(self.suspend_flow.wait())
            try:
                await asyncio.wait((room, suspended), return_when=asyncio.FIRST_COMPLETED)
            finally:
                room.cancel()
                suspended.cancel()
            if not room.done() or room.cancelled() or not self.flow_active or self.should_stop:
                return records, active_partitions
        sink.put(batch)
    return records, active_partitions


_consumer.Consumer._wait_next_records = _wait_next_records_diverting
