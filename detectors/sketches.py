"""Bounded sketches kept in monitor state."""
from __future__ import annotations

from collections.abc import Iterable
from heapq import heapify, heappop, heappush, heapreplace
from itertools import chain
from typing import Any

from detectors import _kernels

__all__ = ["MAX_LABEL", "PendingValues", "SpaceSaving"]

#: longest label kept for a value (an unseen category, an unexpected field name)
MAX_LABEL = 64


def _most_counted_first(item: tuple[str, list[int]]) -> tuple[int, str]:
    return -item[1][0], item[0]


class SpaceSaving:
    """Approximate top-k counter in bounded memory (Metwally et al., Space-Saving).

    Every true count lies in [count - error, count]; any value with a true share above 1/capacity
    is guaranteed to be held.

    >>> s = SpaceSaving(capacity=2)
    >>> for v in "aababcaa":
    ...     s.update(v)
    >>> s.top()
    [('a', 5, 0), ('c', 3, 2)]
    """

    def __init__(self, capacity: int = 20):
        self._capacity = capacity
        self._counts: dict[str, list[int]] = {}  # label -> [count, error, position]: held in position order
        self._total = 0
        self._next_position = 0
        # one (count, position, label) per held label; count is a lower bound (raised lazily at eviction),
        # so the smallest exact key is the victim: eviction costs O(log capacity), not a scan of every label
        self._heap: list[tuple[int, int, str]] = []

    @property
    def capacity(self) -> int:
        return self._capacity

    @classmethod
    def from_state(cls, state: dict[str, Any], capacity: int) -> SpaceSaving:
        """A new sketch of `capacity` holding a `state_dict` (a copy to update without touching the original)."""
        sketch = cls(capacity)
        sketch.load_state(state)
        return sketch

    @property
    def total(self) -> int:
        return self._total

    def update(self, value: Any, count: int = 1) -> None:
        """Count `value` (as its string, cut to MAX_LABEL characters) `count` more times."""
        label = str(value)[:MAX_LABEL]
        self._total += count
        entry = self._counts.get(label)
        if entry is not None:
            entry[0] += count
        elif len(self._counts) < self._capacity:
            self._hold(label, count, 0)
        else:
            # evict the smallest count (first held among ties: deterministic)
            floor = self._evict()
            self._hold(label, floor + count, floor)

    def update_each(self, values: Iterable[Any]) -> None:
        """`update(value)` of each value in turn.

        >>> s = SpaceSaving(capacity=2)
        >>> s.update_each("aababcaa")
        >>> s.top()
        [('a', 5, 0), ('c', 3, 2)]
        """
        # compiled (detectors/_kernels.c): a flood of ever-new values misses on every one, and a miss
        # (evict, hold) in Python costs ~4 us, 45 of them per event of a renamed schema
        _kernels.spacesaving_update(self, values, MAX_LABEL)

    def _hold(self, label: str, count: int, error: int) -> None:
        position = self._next_position
        self._next_position += 1
        self._counts[label] = [count, error, position]
        heappush(self._heap, (count, position, label))

    def _evict(self) -> int:
        """Drop the held label of the smallest (count, position); return its count."""
        heap, counts = self._heap, self._counts
        while True:
            count, position, label = heap[0]
            exact = counts[label][0]
            if exact == count:
                heappop(heap)
                del counts[label]
                return count
            heapreplace(heap, (exact, position, label))

    def top(self, n: int | None = None) -> list[tuple[str, int, int]]:
        """The `n` (default: all) held labels, most counted first: (label, count, error).

        A label's true count lies in [count - error, count].
        """
        ranked = sorted(self._counts.items(), key=_most_counted_first)
        return [(k, c, e) for k, (c, e, _) in (ranked[:n] if n else ranked)]

    def state_dict(self) -> dict[str, Any]:
        """The sketch as plain data (`load_state`, `from_state` take it back)."""
        return {"items": [[k, c, e] for k, (c, e, _) in self._counts.items()], "total": self._total}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        self._counts = {str(k): [int(c), int(e), p] for p, (k, c, e) in enumerate(state["items"])}
        self._total = int(state["total"])
        self._next_position = len(self._counts)
        self._heap = [(c, p, k) for k, (c, _, p) in self._counts.items()]
        heapify(self._heap)


class PendingValues:
    """The values of the current batch for a sketch, which takes them only at the batch's end (`commit`),
    so that an alert inside the batch sees the values before its event: `as_of` is the sketch with the
    pending values up to an event, a copy carried forward from the last question's, so that questions
    asked in event order cost each pending value one update in all, however many alarms a flood raises.

    >>> sketch, pending = SpaceSaving(capacity=2), PendingValues(grouped=True)
    >>> pending.hold([(0, ["a"]), (3, ["b", "b"]), (5, ["c"])])
    >>> pending.as_of(sketch, 3).top(), sketch.top()
    ([('b', 2, 0), ('a', 1, 0)], [])
    >>> pending.commit(sketch)
    >>> sketch.top()
    [('b', 2, 0), ('c', 2, 1)]
    """

    def __init__(self, grouped: bool = False):
        #: each pending item is a list of values (True) or one value (False)
        self._grouped = grouped
        self._pending: list[tuple[int, Any]] = []  # (event offset in the batch, item), in event order
        #: (copy of the sketch, pending items it took, last event offset they cover)
        self._cursor: tuple[SpaceSaving, int, int] | None = None

    def hold(self, pending: list[tuple[int, Any]]) -> None:
        """The batch's (event offset, value or list of values), in event order."""
        self._pending, self._cursor = pending, None

    def as_of(self, sketch: SpaceSaving, last: int) -> SpaceSaving:
        """`sketch` with the pending values of event offsets up to `last` (`sketch` itself if none)."""
        pending = self._pending
        if not pending or pending[0][0] > last:
            return sketch
        copy, taken, covered = self._cursor or (None, 0, -1)
        if copy is None or last < covered:  # the first question of the batch, or an earlier event than the last
            copy, taken = SpaceSaving.from_state(sketch.state_dict(), sketch.capacity), 0
        end = taken
        while end < len(pending) and pending[end][0] <= last:
            end += 1
        copy.update_each(self._values(pending[taken:end]))
        self._cursor = (copy, end, last)
        return copy

    def commit(self, sketch: SpaceSaving) -> None:
        """The batch's values join `sketch`."""
        sketch.update_each(self._values(self._pending))
        self._pending, self._cursor = [], None

    def _values(self, items: list[tuple[int, Any]]) -> Iterable[Any]:
        values = (value for _, value in items)
        return chain.from_iterable(values) if self._grouped else values
