"""Faust builds its aiokafka consumer with fetch_max_wait_ms=1500 and no setting to change it; a
broker that holds a fetch until that limit (the embedded Tansu does) then adds up to 1.5 s to every
alert. aiokafka reads the value when the consumer starts, so setting it on the fresh consumer is
enough. Used by the worker (stream/worker/app.py) and by bench/e2e.py's bare agent, so both are compared
with the same consumer."""
from __future__ import annotations

import faust.transport.drivers.aiokafka as _driver

_original = _driver.AIOKafkaConsumerThread._create_worker_consumer


def set_fetch_max_wait(ms: int) -> None:
    """Make every Faust worker consumer created from now on wait at most `ms` per fetch."""
    def create_worker_consumer(self, transport):
        consumer = _original(self, transport)
        consumer._fetch_max_wait_ms = ms
        return consumer
    _driver.AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer
