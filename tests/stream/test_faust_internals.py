"""Faust hard-codes the consumer's fetch_max_wait_ms=1500; the worker lowers it to its setting
through stream/worker/faust_internals.py, which relies on private names of faust-streaming and
aiokafka: these tests build a real consumer the way Faust does and fail if either name moves."""
import inspect

import faust
import faust.transport.drivers.aiokafka as driver
from aiokafka import AIOKafkaConsumer

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
