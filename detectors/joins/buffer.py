"""`RequestJoin`, the buffer both joins use: two record streams meet by `request_id`.

Either side may arrive first, a second record of a side for the same id is counted and dropped
(the first wins: at-least-once re-delivery must not count twice), and waiting records expire after
a time-to-live or, beyond a hard cap, oldest first. Time is stream time: a record's `ts` when it
has one, else the caller's clock (the worker: the Kafka record timestamp) or, with none, the newest
time seen; so replay is deterministic.

>>> join = RequestJoin(ttl=60.0, max_entries=1000, sides=("served", "offline"))
>>> join.offer("offline", "r1", {"x": 1}, ts=10.0) is None      # the offline side first: waits
True
>>> join.offer("served", "r1", {"x": 2}, ts=11.0)               # the served side: matched
{'x': 1}
>>> join.offer("served", "r1", {"x": 3}, ts=12.0) is None      # re-delivered: a duplicate
True
>>> join.offer("served", "r2", {}, ts=13.0); join.offer("served", "r3", {}, ts=200.0)  # r2 expires
>>> join.counts
{'matched': 1, 'waiting': 1, 'duplicate_served': 1, 'duplicate_offline': 0, 'expired_served': 1, 'expired_offline': 0}
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any

__all__ = ["RequestJoin"]


class RequestJoin:
    """Symmetric join of two record streams by request id, in bounded memory (module docstring)."""

    def __init__(self, ttl: float, max_entries: int, sides: tuple[str, str]):
        self._ttl = ttl
        self._max_entries = max_entries
        self._sides = sides
        # request id -> (stamp, side, value), in stamp order (stamps never decrease)
        self._waiting: dict[str, tuple[float, str, Any]] = {}
        # request ids matched within the time-to-live: a late re-delivery is a duplicate, not a new record
        self._matched: dict[str, float] = {}
        self._now = -math.inf
        self._n_matched = 0
        self._duplicates = Counter({s: 0 for s in sides})
        self._expired = Counter({s: 0 for s in sides})

    @property
    def now(self) -> float:
        """The newest stream time seen."""
        return self._now

    @property
    def counts(self) -> dict[str, int]:
        out = {"matched": self._n_matched, "waiting": len(self._waiting)}
        out.update((f"duplicate_{s}", self._duplicates[s]) for s in self._sides)
        out.update((f"expired_{s}", self._expired[s]) for s in self._sides)
        return out

    def offer(self, side: str, request_id: str, value: Any, ts: float | None = None) -> Any | None:
        """Add one record; return the other side's value when this completes a pair."""
        self._advance(ts)
        entry = self._waiting.get(request_id)
        if entry is None:
            if request_id in self._matched:
                self._duplicates[side] += 1
                return None
            self._waiting[request_id] = (self._now, side, value)
            if len(self._waiting) > self._max_entries:
                oldest = next(iter(self._waiting))
                self._expired[self._waiting.pop(oldest)[1]] += 1
            return None
        if entry[1] == side:
            self._duplicates[side] += 1
            return None
        del self._waiting[request_id]
        self._matched[request_id] = self._now
        if len(self._matched) > self._max_entries:
            del self._matched[next(iter(self._matched))]
        self._n_matched += 1
        return entry[2]

    def state_dict(self) -> dict[str, Any]:
        """The buffer as plain data (`load_state` takes it back): the waiting records with their
        values (what a restart must keep to join them), the matched ids, the clock and the counters.
        Column by column (ids, stamps, sides as 0/1, values), in stamp order: a list per record
        would cost a Python object per waiting record."""
        entries = self._waiting.values()
        first = self._sides[0]
        return {"waiting_ids": list(self._waiting), "waiting_stamps": [e[0] for e in entries],
                "waiting_sides": bytes(e[1] != first for e in entries), "waiting_values": [e[2] for e in entries],
                "matched_ids": list(self._matched), "matched_stamps": list(self._matched.values()),
                "now": self._now, "n_matched": self._n_matched,
                "duplicates": dict(self._duplicates), "expired": dict(self._expired)}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`; beyond this buffer's cap the oldest records are dropped
        (counted as expired), so a smaller cap holds after a restart."""
        sides = self._sides
        columns = (state["waiting_ids"], state["waiting_stamps"], state["waiting_sides"], state["waiting_values"])
        self._waiting = {str(rid): (float(stamp), sides[side], value)
                         for rid, stamp, side, value in zip(*columns, strict=True)}
        self._matched = {str(rid): float(stamp)
                         for rid, stamp in zip(state["matched_ids"], state["matched_stamps"], strict=True)}
        self._now = float(state["now"])
        self._n_matched = int(state["n_matched"])
        self._duplicates = Counter({s: int(state["duplicates"].get(s, 0)) for s in sides})
        self._expired = Counter({s: int(state["expired"].get(s, 0)) for s in sides})
        while len(self._waiting) > self._max_entries:
            self._expired[self._waiting.pop(next(iter(self._waiting)))[1]] += 1
        while len(self._matched) > self._max_entries:
            del self._matched[next(iter(self._matched))]

    def _advance(self, ts: float | None) -> None:
        if ts is None or ts <= self._now:
            return
        if self._now == -math.inf:  # records from before any time was known arrived at the first time
            self._waiting = {k: (ts, side, v) for k, (_, side, v) in self._waiting.items()}
            self._matched = dict.fromkeys(self._matched, ts)
        self._now = ts
        horizon = ts - self._ttl
        waiting = self._waiting
        while waiting:
            oldest = next(iter(waiting))
            stamp, side, _ = waiting[oldest]
            if stamp >= horizon:
                break
            del waiting[oldest]
            self._expired[side] += 1
        matched = self._matched
        while matched:
            oldest = next(iter(matched))
            if matched[oldest] >= horizon:
                break
            del matched[oldest]
