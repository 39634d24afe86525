"""stream/worker/faust_internals.py relies on private names of faust-streaming and aiokafka:
these tests build a real consumer the way Faust does and fail if one of them moves. Faust
hard-codes the consumer's fetch_max_wait_ms=1500, which the worker lowers to its setting; the
input topic's records are taken off Faust's per-message path (divert) and their offsets committed
by the worker (commit)."""
import asyncio
import inspect
from types import SimpleNamespace

import faust
import faust.transport.consumer as _consumer
import faust.transport.drivers.aiokafka as driver
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from stream.worker import app as skewwatch_app
from stream.worker import faust_internals

MOVED = (f"stream/worker/faust_internals.py is tested with {faust_internals.TESTED_WITH}: "
         "a private name it relies on moved")


async def test_the_worker_consumer_takes_the_fetch_wait_setting(monkeypatch):
    # undone after the test: the class attribute the adapter replaces
    monkeypatch.setattr(driver.AIOKafkaConsumerThread, "_create_worker_consumer",
                        driver.AIOKafkaConsumerThread._create_worker_consumer)
    app = faust.App("fetch-wait-test", broker="kafka://127.0.0.1:1")  # never connects
    faust_internals.set_fetch_max_wait(skewwatch_app.settings.fetch_max_wait_ms)
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    try:
        assert isinstance(consumer, AIOKafkaConsumer), MOVED
        assert consumer._fetch_max_wait_ms == skewwatch_app.settings.fetch_max_wait_ms == 100, MOVED
    finally:
        await consumer.stop()


def test_aiokafka_reads_the_fetch_wait_when_the_consumer_starts():
    # the attribute set on the fresh consumer reaches its fetcher only if start() reads it there
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start), MOVED


# ---- the input topic taken off Faust's per-message path (divert, commit) ---------------------
def _record(topic: str, partition: int, offset: int, value: bytes = b"{}") -> ConsumerRecord:
    return ConsumerRecord(topic, partition, offset, 0, 0, b"m", value, None, 1, len(value), ())


class FakeSink:
    def __init__(self, room: bool = True):
        self.taken: list[dict] = []
        self.room = asyncio.Event()
        if room:
            self.room.set()

    def full(self):
        return not self.room.is_set()

    async def wait_for_room(self):
        await self.room.wait()

    def put(self, records):
        self.taken.append(records)


@pytest.fixture
def consumer(monkeypatch):
    """A Faust consumer (never connected) whose fetch returns two input records and one of another
    topic; the input topic diverted to a fake sink."""
    app = faust.App("divert-test", broker="kafka://127.0.0.1:1")
    consumer = app.consumer
    sink = FakeSink()
    monkeypatch.setattr(faust_internals, "_diverted", {"input": sink})
    fetched = {TP("input", 0): [_record("input", 0, 5), _record("input", 0, 6)],
               TP("input", 1): [_record("input", 1, 0)], TP("other", 0): [_record("other", 0, 9)]}

    async def getmany(active_partitions, timeout):
        return fetched
    monkeypatch.setattr(consumer, "_getmany", getmany)
    monkeypatch.setattr(consumer, "highwater", lambda tp: 10)
    consumer._set_active_tps({TP("input", 0), TP("other", 0)})  # partition 1 paused (recovering)
    return SimpleNamespace(consumer=consumer, sink=sink, app=app)


async def test_the_diverted_topic_never_reaches_fausts_per_message_path(consumer):
    """Faust's fetcher loop turns into Messages only what getmany yields: the input topic's
    records go to the sink, one fetch at a time, and none of them is yielded (Faust's streams see
    no input event); a paused partition's records go nowhere, as Faust's own rule has it."""
    assert _consumer.Consumer._wait_next_records is faust_internals._wait_next_records_diverting, MOVED
    yielded = [(tp.topic, message.offset) async for tp, message in consumer.consumer.getmany(timeout=0.0)]
    assert yielded == [("other", 9)]
    [taken] = consumer.sink.taken
    assert {p: [r.offset for r in rs] for p, rs in taken.items()} == {0: [5, 6]}


async def test_nothing_is_handed_over_while_the_flow_is_suspended(consumer, monkeypatch):
    original = faust_internals._original_wait_next_records

    async def rebalanced_during_the_fetch(self, timeout):
        out = await original(self, timeout)
        self.stop_flow()
        return out
    monkeypatch.setattr(faust_internals, "_original_wait_next_records", rebalanced_during_the_fetch)
    records, _ = await consumer.consumer._wait_next_records(0.0)
    assert consumer.sink.taken == [] and list(records) == [TP("other", 0)]


async def test_a_full_sink_holds_the_fetch_until_it_has_room_or_the_flow_is_suspended(consumer):
    sink = consumer.sink
    sink.room.clear()
    fetch = asyncio.create_task(consumer.consumer._wait_next_records(0.0))
    await asyncio.sleep(0.05)
    assert not fetch.done() and sink.taken == []  # the fetch loop waits, as on a full stream buffer
    sink.room.set()
    await asyncio.wait_for(fetch, 5)
    assert len(sink.taken) == 1

    sink.room.clear()
    fetch = asyncio.create_task(consumer.consumer._wait_next_records(0.0))
    await asyncio.sleep(0.05)
    consumer.consumer.stop_flow()  # a rebalance: the records are dropped (read again from the committed offsets)
    records, _ = await asyncio.wait_for(fetch, 5)
    assert len(sink.taken) == 1 and list(records) == [TP("other", 0)]


async def test_commit_goes_through_fausts_commit_path_for_the_assigned_partitions(consumer, monkeypatch):
    committed = []

    async def driver_commit(offsets):
        committed.append(dict(offsets))
        return True

    async def flush():
        committed.append("flushed")
    c = consumer.consumer
    monkeypatch.setattr(c, "_commit", driver_commit)
    monkeypatch.setattr(c, "assignment", lambda: {TP("input", 0)})
    monkeypatch.setattr(consumer.app.producer, "flush", flush)
    assert inspect.iscoroutinefunction(_consumer.Consumer._commit_offsets), MOVED
    assert await faust_internals.commit(c, {TP("input", 0): 7, TP("input", 3): 2})  # 3: revoked meanwhile
    assert committed == ["flushed", {TP("input", 0): 7}]
    assert not await faust_internals.commit(c, {})


async def test_a_partition_being_rewound_hands_over_nothing_until_its_seek(consumer):
    """Records fetched after a rewind was asked for and before its seek (made at the start of the
    next fetch) are older than the seek: they come again after it."""
    faust_internals.rewind(consumer.consumer, TP("input", 0), 3)
    records, _ = await consumer.consumer._wait_next_records(0.0)
    assert consumer.sink.taken == [] and list(records) == [TP("other", 0)]
