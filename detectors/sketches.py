"""Bounded sketches kept in monitor state."""
from __future__ import annotations

from collections.abc import Iterable
from heapq import heapify, heappop, heappush, heapreplace
from typing import Any

__all__ = ["MAX_LABEL", "SpaceSaving"]

#: longest label kept for a value (an unseen category, an unexpected field name)
MAX_LABEL = 64


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
        """`update(value)` of each value in turn; a value already held costs one dict lookup.

        >>> s = SpaceSaving(capacity=2)
        >>> s.update_each("aababcaa")
        >>> s.top()
        [('a', 5, 0), ('c', 3, 2)]
        """
        counts = self._counts
        for value in values:
            entry = counts.get(value)  # a hit is a held label itself (str, at most MAX_LABEL characters)
            if entry is not None:
                entry[0] += 1
                self._total += 1
            else:
                self.update(value)

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
        ranked = sorted(((k, c, e) for k, (c, e, _) in self._counts.items()), key=lambda t: (-t[1], t[0]))
        return ranked[:n] if n else ranked

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
