"""Faust hard-codes the consumer's fetch_max_wait_ms=1500; the worker lowers it to its setting."""
import faust.transport.drivers.aiokafka as driver

from stream.worker import app as skewwatch_app
from stream.worker import fetch_wait


def test_the_worker_consumer_takes_the_fetch_wait_setting(monkeypatch):
    class FakeConsumer:
        _fetch_max_wait_ms = 1500

    monkeypatch.setattr(fetch_wait, "_original", lambda self, transport: FakeConsumer())
    fetch_wait.set_fetch_max_wait(skewwatch_app.settings.fetch_max_wait_ms)
    consumer = driver.AIOKafkaConsumerThread._create_worker_consumer(None, None)
    assert consumer._fetch_max_wait_ms == skewwatch_app.settings.fetch_max_wait_ms == 100
