"""Bounded sketches kept in monitor state."""
from __future__ import annotations

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
        self._counts: dict[str, list[int]] = {}  # label -> [count, error]
        self._total = 0

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
            self._counts[label] = [count, 0]
        else:
            # evict the smallest count (first inserted among ties: deterministic)
            victim = min(self._counts, key=lambda k: self._counts[k][0])
            floor = self._counts.pop(victim)[0]
            self._counts[label] = [floor + count, floor]

    def top(self, n: int | None = None) -> list[tuple[str, int, int]]:
        """The `n` (default: all) held labels, most counted first: (label, count, error).

        A label's true count lies in [count - error, count].
        """
        ranked = sorted(((k, c, e) for k, (c, e) in self._counts.items()), key=lambda t: (-t[1], t[0]))
        return ranked[:n] if n else ranked

    def state_dict(self) -> dict[str, Any]:
        """The sketch as plain data (`load_state`, `from_state` take it back)."""
        return {"items": [[k, c, e] for k, (c, e) in self._counts.items()], "total": self._total}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        self._counts = {str(k): [int(c), int(e)] for k, c, e in state["items"]}
        self._total = int(state["total"])
