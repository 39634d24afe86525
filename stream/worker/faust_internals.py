"""The one adapter over Faust's and aiokafka's private internals: the worker consumer's fetch
wait, and reading a partition again from an offset.

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
not handed over. tests/stream/test_faust_internals.py fails if a private name moves.
"""
from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator
from typing import Any

import faust.transport.consumer as _consumer
import faust.transport.drivers.aiokafka as _driver

__all__ = ["TESTED_WITH", "rewind", "set_fetch_max_wait"]

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
