"""Faust hard-codes the consumer's fetch_max_wait_ms=1500; the app lowers it to the setting."""
import faust.transport.drivers.aiokafka as driver

from stream import app as skewwatch_app


def test_the_worker_consumer_takes_the_fetch_wait_setting():
    class FakeConsumer:
        _fetch_max_wait_ms = 1500

    patched = skewwatch_app._consumer_with_fetch_wait(lambda self, transport: FakeConsumer())
    consumer = patched(None, None)
    assert consumer._fetch_max_wait_ms == skewwatch_app.settings.fetch_max_wait_ms == 100
    assert driver.AIOKafkaConsumerThread._create_worker_consumer.__name__ == "create_worker_consumer"
