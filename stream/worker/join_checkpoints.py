"""The request-id joins' state per joins-by-request partition, and its checkpoints (without Faust:
unit-testable).

Each partition of the internal joins-by-request topic is joined by its own `JoinMonitor`, the way
the monitors are kept per input partition: its buffers (the records waiting for their other side)
and its parity, performance, leakage and shadow statistics are those of that partition's request
ids, so a rebalance that moves the partition moves its state with it, and a restart restores the
state of exactly the records it had read. The topic has its own partition count
(SKEWWATCH_JOINS_PARTITIONS, default 1): with one, a model's whole statistics are in one place.

Checkpoints go through the monitors' codec (stream.worker.checkpoint_codec: msgpack, compressed,
split into records of at most SKEWWATCH_MAX_CHECKPOINT_BYTES, whatever the size of the state) into
their own table, `join-checkpoints` (stream.worker.joins), key "J<P>/" (its chunks
"J<P>#<generation>.<index>/"): the table has as many partitions as the joins topic and key J<P>/
goes to its partition P, so Faust hands a joins partition's checkpoint to the worker that owns
the joins partition. The head's meta holds the last offset of joins partition P the state
includes; after a restart the records up to it, delivered again, are skipped.

>>> join_checkpoint_key(3), join_checkpoint_key(3, (1, 0))
('J3/', 'J3#1.0/')
>>> parse_join_checkpoint_key("J3#1.0/"), parse_join_checkpoint_key("3/credit")
((3, (1, 0)), None)
"""
from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from detectors.alerts import Alert
from detectors.joins import JoinMonitor
from stream.worker import checkpoint_codec
from stream.worker.config import DEFAULT_MAX_CHECKPOINT_BYTES
from stream.worker.service import checkpoint_key, parse_checkpoint_key

log = logging.getLogger("skewwatch.worker")

__all__ = ["JOIN_KEY_PREFIX", "SENT_ALERT_IDS", "JoinPartitions", "PartitionJoins", "join_checkpoint_key",
           "parse_join_checkpoint_key", "partition_of"]

#: what a join checkpoint's key starts with (a monitor's starts with its partition number: a key is
#: never mistaken for the other's)
JOIN_KEY_PREFIX = "J"

#: what `PartitionJoins.add` feeds each kind of forwarded message to
_KINDS = ("predictions", "feature_log", "labels")
#: alert ids `JoinPartitions.unsent` remembers (the oldest forgotten first)
SENT_ALERT_IDS = 10_000


def partition_of(request_id: str, partitions: int) -> int:
    """The joins-by-request partition of a request id: stable across processes and restarts.

    >>> partition_of("r-81723", 4) == partition_of("r-81723", 4) < 4
    True
    """
    return zlib.crc32(request_id.encode("utf-8", "surrogatepass")) % partitions


def join_checkpoint_key(partition: int, chunk: tuple[int, int] | None = None) -> str:
    """The checkpoint table's key of joins `partition`'s state: of its head, or of its chunk
    (generation, index)."""
    return JOIN_KEY_PREFIX + checkpoint_key(partition, "", chunk)


def parse_join_checkpoint_key(key: str) -> tuple[int, tuple[int, int] | None] | None:
    """(partition, chunk or None) of a join checkpoint key; None for any other key."""
    if not key.startswith(JOIN_KEY_PREFIX):
        return None
    partition, _, chunk = parse_checkpoint_key(key[len(JOIN_KEY_PREFIX):])
    return partition, chunk


class PartitionJoins:
    """The joins of one joins-by-request partition, and the offset their state includes."""

    def __init__(self, partition: int, new_joins: Callable[[], JoinMonitor],
                 max_record_bytes: int = DEFAULT_MAX_CHECKPOINT_BYTES):
        self.partition = partition
        self._new_joins = new_joins
        self.joins = new_joins()
        self.max_record_bytes = max_record_bytes
        self.last_offset = -1  # the newest offset of the partition the state includes
        self._dirty = False
        self._written = (1, 0)  # (generation, chunks) of the newest checkpoint: the next writes the other

    def add(self, offset: int, kind: str, records: list[dict]) -> list[Alert]:
        """One forwarded message (offset, its kind and records); nothing for one the state already
        includes (delivered again after a restore, or twice)."""
        if offset <= self.last_offset:
            return []
        self.last_offset = offset
        self._dirty = True
        if kind == "predictions":
            return self.joins.add_predictions(records)
        if kind == "feature_log":
            return self.joins.add_feature_log(records)
        if kind == "labels":
            return self.joins.add_labels(records)
        raise ValueError(f"a forwarded message of unknown kind {kind!r} (expected one of {_KINDS})")

    def checkpoint(self, everything: bool = False) -> dict[str, bytes | None]:
        """{table key: record, or None to delete it} of the state if it changed since the last call
        (or `everything`), in the order to write them: its chunks, its head, the previous
        checkpoint's chunks deleted (checkpoint_codec)."""
        if not (self._dirty or everything):
            return {}
        self._dirty = False
        previous, stale = self._written
        *chunks, head = checkpoint_codec.encode({"offset": self.last_offset}, self.joins.state_dict(),
                                                self.max_record_bytes, generation=1 - previous)
        out: dict[str, bytes | None] = {join_checkpoint_key(self.partition, (1 - previous, i)): c
                                        for i, c in enumerate(chunks)}
        out[join_checkpoint_key(self.partition)] = head
        out.update((join_checkpoint_key(self.partition, (previous, i)), None) for i in range(stale))
        self._written = (1 - previous, len(chunks))
        return out

    def restore(self, head: bytes, chunk: Callable[[tuple[int, int]], bytes | None]) -> bool:
        """Continue from a checkpoint (its head, its chunks looked up by (generation, index)). False,
        and the joins left fresh, when it cannot be read back (the worker logs why)."""
        try:
            found = checkpoint_codec.read_head(head)
            self._written = (found.generation, len(found.chunks))  # the next checkpoint deletes them
            state = checkpoint_codec.decode(found, chunk)
            offset = int(found.meta["offset"])
            restored = self._new_joins()  # all or nothing
            left_out = restored.load_state(state)
        except Exception as e:  # noqa: BLE001 (a bad checkpoint must not stop the worker: start fresh)
            log.warning("joins partition %d: cannot restore the joins from their checkpoint (%s: %s); starting "
                        "fresh", self.partition, type(e).__name__, e)
            return False
        self.joins, self.last_offset = restored, offset
        counts = self.joins.counts
        log.info("joins partition %d: restored the joins at offset %d (%s waiting)%s", self.partition, offset,
                 " + ".join(str(c["waiting"]) for k, c in counts.items() if k != "ignored") or "0",
                 f"; statistics of {', '.join(left_out)} taken against another baseline: starting fresh"
                 if left_out else "")
        return True


class JoinPartitions:
    """The joins of the joins-by-request partitions this worker owns, built (and restored from the
    checkpoint table) on first use."""

    def __init__(self, new_joins: Callable[[], JoinMonitor], max_record_bytes: int = DEFAULT_MAX_CHECKPOINT_BYTES):
        self._new_joins = new_joins  # a fresh JoinMonitor (the worker's baselines, settings and shadow pairs)
        self._max_record_bytes = max_record_bytes
        self.partitions: dict[int, PartitionJoins] = {}
        self._rewrite_all = False
        self._sent: dict[str, None] = {}  # alert ids sent, oldest first

    def unsent(self, alerts: list[Alert]) -> list[Alert]:
        """The alerts whose id this worker has not sent yet: a change found by several partitions
        (each tests its share of a model's requests) is one alert, the first partition's."""
        out = []
        for alert in alerts:
            if alert.alert_id not in self._sent:
                out.append(alert)
                self._sent[alert.alert_id] = None
                if len(self._sent) > SENT_ALERT_IDS:
                    del self._sent[next(iter(self._sent))]
        return out

    def joins_for(self, partition: int, table: Callable[[], Iterable[tuple[str, bytes]]]) -> PartitionJoins:
        """The partition's joins, restored from the table's (key, record) pairs on first use."""
        joins = self.partitions.get(partition)
        if joins is None:
            joins = PartitionJoins(partition, self._new_joins, self._max_record_bytes)
            mine: dict[tuple[int, int] | None, bytes] = {}
            for key, blob in table():
                parsed = parse_join_checkpoint_key(key)
                if parsed is not None and parsed[0] == partition:
                    mine[parsed[1]] = blob
            if None in mine:
                joins.restore(mine[None], mine.get)
            self.partitions[partition] = joins
        return joins

    def rewrite_checkpoints(self) -> None:
        """A checkpoint did not reach the broker: the next `checkpoints` writes every partition's."""
        self._rewrite_all = True

    def checkpoints(self, partitions: Iterable[int] | None = None) -> dict[str, bytes | None]:
        """{table key: record or None} of the partitions' joins that changed since their last checkpoint."""
        everything, self._rewrite_all = self._rewrite_all, False
        out: dict[str, bytes | None] = {}
        for p in sorted(self.partitions if partitions is None else partitions):
            if p in self.partitions:
                out.update(self.partitions[p].checkpoint(everything))
        return out

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the joins of partitions no longer assigned here (their checkpoints have them)."""
        for p in partitions:
            self.partitions.pop(p, None)

    def snapshot(self) -> dict[str, Any]:
        """The join counters summed over the partitions here and each partition's
        `JoinMonitor.snapshot` ("partitions"); with one partition here (the default: one joins
        partition), its snapshot's parity, performance, leakage and shadow sections too."""
        counts: dict[str, dict[str, int]] = {}
        by_partition = {}
        for p, joins in sorted(self.partitions.items()):
            by_partition[str(p)] = snap = joins.joins.snapshot()
            for join, c in snap["counts"].items():
                total = counts.setdefault(join, {})
                for name, n in c.items():
                    total[name] = total.get(name, 0) + n
        only = next(iter(by_partition.values())) if len(by_partition) == 1 else {}
        return {**only, "counts": counts, "partitions": by_partition}

    def shadow_snapshot(self) -> dict[str, Any]:
        """The shadow pairs' comparisons (`ShadowMonitor.snapshot`) of the partitions here, a pair
        named "production=candidate", followed by " (joins partition P)" when several partitions are here."""
        out = {}
        for p, joins in sorted(self.partitions.items()):
            shadow = joins.joins.shadow
            for name, pair in (shadow.snapshot() if shadow is not None else {}).items():
                out[name if len(self.partitions) == 1 else f"{name} (joins partition {p})"] = pair
        return out
