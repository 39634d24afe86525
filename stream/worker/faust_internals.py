"""The one adapter over Faust's and aiokafka's private internals: the worker consumer's fetch wait.

Faust builds its aiokafka consumer with fetch_max_wait_ms=1500 and no setting to change it; a
broker that holds a fetch until that limit (the embedded Tansu does) then adds up to 1.5 s to every
alert. `set_fetch_max_wait` wraps Faust's private `AIOKafkaConsumerThread._create_worker_consumer`
and sets aiokafka's private `AIOKafkaConsumer._fetch_max_wait_ms` on the consumer it returns:
aiokafka reads the value when the consumer starts, so setting it on the fresh consumer is enough.
Used by the worker (stream/worker/app.py) and by bench/e2e.py's bare agent, so both are compared
with the same consumer. tests/stream/test_faust_internals.py fails if either private name moves.
"""
from __future__ import annotations

from typing import Any

import faust.transport.drivers.aiokafka as _driver

__all__ = ["TESTED_WITH", "set_fetch_max_wait"]

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
