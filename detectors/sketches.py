"""Bounded sketches kept in monitor state."""
from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from detectors import _kernels

__all__ = ["MAX_LABEL", "PendingValues", "SpaceSaving"]

#: longest label kept for a value (an unseen category, an unexpected field name)
MAX_LABEL = 64


_NO_ROWS = np.zeros((0, 3), dtype=np.int64)
_NO_SLOTS = np.zeros(0, dtype=np.int64)


def _most_counted_first(item: tuple[str, int, int]) -> tuple[int, str]:
    return -item[1], item[0]


class SpaceSaving:
    """Approximate top-k counter in bounded memory (Metwally et al., Space-Saving).

    Every true count lies in [count - error, count]; any value with a true share above 1/capacity
    is guaranteed to be held. A new value at capacity takes the place of the held one of the
    smallest count, the first held among ties (deterministic).

    >>> s = SpaceSaving(capacity=2)
    >>> for v in "aababcaa":
    ...     s.update(v)
    >>> s.top()
    [('a', 5, 0), ('c', 3, 2)]
    """

    def __init__(self, capacity: int = 20):
        self._allocate(capacity)
        self._total = 0

    def _allocate(self, capacity: int) -> None:
        # the counting is compiled (detectors/_kernels.c): a flood of ever-new values misses on every one,
        # ~4 us each in Python, 45 per event of a renamed schema. Each held label has a slot: its count,
        # error and position (the order labels were first held in) in `_table`, and its place in `_heap`,
        # the slots by exact (count, position), so the victim is the root: O(log capacity) per value.
        self._capacity = capacity
        self._slots: dict[str, int] = {}  # label -> slot
        # allocated on the first value (`_arrays`): most sketches (a feature's unseen values) never see one
        self._labels: list[str | None] = []  # slot -> label
        self._table = _NO_ROWS  # slot -> count, error, position
        self._heap = _NO_SLOTS  # the held slots, a binary heap by (count, position)
        self._where = _NO_SLOTS  # slot -> its index in _heap
        self._next_position = 0

    def _arrays(self) -> SpaceSaving:
        if not self._labels:
            self._labels = [None] * self._capacity
            self._table = np.zeros((self._capacity, 3), dtype=np.int64)
            self._heap = np.zeros(self._capacity, dtype=np.int64)
            self._where = np.zeros(self._capacity, dtype=np.int64)
        return self

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
        """Count `value` (as its string, cut to MAX_LABEL characters) `count` (>= 1) more times."""
        _kernels.spacesaving_update(self._arrays(), (value,), count, MAX_LABEL, None)

    def update_each(self, values: Iterable[Any], exclude: AbstractSet[str] | None = None) -> None:
        """`update(value)` of each value in turn, but those in `exclude` (a set).

        >>> s = SpaceSaving(capacity=2)
        >>> s.update_each("aababcaxa", exclude={"x"})
        >>> s.top()
        [('a', 5, 0), ('c', 3, 2)]
        """
        _kernels.spacesaving_update(self._arrays(), values, 1, MAX_LABEL, exclude)

    def _held(self) -> list[tuple[str, int, int, int]]:
        """(label, count, error, position) of each held label, in position order."""
        table = self._table.tolist()
        return sorted(((label, *table[slot]) for label, slot in self._slots.items()), key=itemgetter(3))

    def top(self, n: int | None = None) -> list[tuple[str, int, int]]:
        """The `n` (default: all) held labels, most counted first: (label, count, error).

        A label's true count lies in [count - error, count].
        """
        table = self._table.tolist()
        ranked = sorted(((label, *table[slot][:2]) for label, slot in self._slots.items()), key=_most_counted_first)
        return ranked[:n] if n else ranked

    def state_dict(self) -> dict[str, Any]:
        """The sketch as plain data (`load_state`, `from_state` take it back)."""
        return {"items": [[k, c, e] for k, c, e, _ in self._held()], "total": self._total}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        items = {str(label): (int(count), int(error)) for label, count, error in state["items"]}
        # a state of more labels than the capacity (a smaller one configured since) keeps them all
        self._allocate(max(self._capacity, len(items)))
        self._arrays()
        for position, (label, (count, error)) in enumerate(items.items()):
            self._slots[label] = position
            self._labels[position] = label
            self._table[position] = (count, error, position)
        order = sorted(range(len(items)), key=lambda slot: (int(self._table[slot, 0]), slot))
        self._heap[:len(order)] = order  # sorted: a valid heap
        self._where[order] = np.arange(len(order))
        self._next_position = len(items)
        self._total = int(state["total"])


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

    def __init__(self, grouped: bool = False, exclude: AbstractSet[str] | None = None):
        #: each pending item is an iterable of values (True) or one value (False)
        self._grouped = grouped
        self._exclude = exclude  # values never counted (`SpaceSaving.update_each`)
        self._pending: list[tuple[int, Any]] = []  # (event offset in the batch, item), in event order
        #: (copy of the sketch, pending items it took, last event offset they cover)
        self._cursor: tuple[SpaceSaving, int, int] | None = None

    def hold(self, pending: list[tuple[int, Any]]) -> None:
        """The batch's (event offset, value or iterable of values), in event order."""
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
        copy.update_each(self._values(pending[taken:end]), self._exclude)
        self._cursor = (copy, end, last)
        return copy

    def commit(self, sketch: SpaceSaving) -> None:
        """The batch's values join `sketch`."""
        if self._pending:  # most batches have none (a feature's unseen values): ~7 us a call saved
            sketch.update_each(self._values(self._pending), self._exclude)
        self._pending, self._cursor = [], None

    def _values(self, items: list[tuple[int, Any]]) -> Iterable[Any]:
        values = (value for _, value in items)
        return chain.from_iterable(values) if self._grouped else values
