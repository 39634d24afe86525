"""What a monitor keeps of the last events for an alert's "current" summary and its diagnosis: each
feature's last values (`RecentRing`), and a numeric feature's last raw invalid values (`InvalidExamples`).

>>> ring = RecentRing(n_features=1, length=4, fill=-1, dtype=np.int16)
>>> ring.hold_batch(np.array([[10, 11, 12]]), start=0)
>>> ring.rows(0, event_index=1).tolist()  # inside the batch: up to the alert's event
[10, 11]
>>> ring.commit()
>>> ring.hold_batch(np.array([[13, 14, 15]]), start=3)
>>> ring.commit()
>>> ring.rows(0).tolist(), ring.rows(0, event_index=5, since=5).tolist()  # since: at least MIN_SUMMARY_EVENTS
([12, 13, 14, 15], [12, 13, 14, 15])
"""
from __future__ import annotations

from typing import Any

import numpy as np

from detectors.diagnosis import redact_example
from detectors.extract import INVALID, NumericValues

__all__ = ["MAX_INVALID_EXAMPLES", "MIN_SUMMARY_EVENTS", "InvalidExamples", "RecentRing"]

#: fewest recent events an alert's current summary is computed from
MIN_SUMMARY_EVENTS = 32
#: raw invalid values kept per numeric feature (the last ones), quoted by the diagnosis
MAX_INVALID_EXAMPLES = 4


class RecentRing:
    """The last `length` events' encoded values of each of `n_features` features.

    During a batch the batch's own values are held apart (`hold_batch`), so that an alert raised
    at an event inside the batch is described by the events up to it, and join the ring at `commit`.

    Parameters
    ----------
    n_features
        Rows: one per feature.
    length
        Events kept per feature.
    fill
        The value of the slots before any event, in the state (`state_dict` writes every slot).
    dtype
        The encoding's dtype (NaN / inf for numeric values, codes for categories).

    Only the filled slots are held (a fresh monitor's ring costs nothing), each ring in an array of
    its own: never a view of a batch's array, which would keep the whole batch alive. Once full, a
    batch overwrites the oldest slots in place, so that a batch of a few events costs a few slots'
    copy, not the whole ring's (many models in one stream give each call a few events of each).
    """

    def __init__(self, n_features: int, length: int, fill: Any, dtype: Any):
        self._length = length
        self._dtype = np.dtype(dtype)
        self._fill = fill
        #: the filled slots; oldest first until full, then a circular buffer whose oldest is at _oldest
        self._values = np.empty((n_features, 0), dtype=self._dtype)
        self._oldest = 0
        self._filled = 0
        self._batch: np.ndarray | None = None
        self._batch_start = 0

    @property
    def length(self) -> int:
        """Events kept per feature."""
        return self._length

    @property
    def filled(self) -> int:
        """Slots of the ring holding an event (at most `length`)."""
        return self._filled

    def hold_batch(self, values: np.ndarray, start: int) -> None:
        """The batch's values (n_features, n), of events start..start+n-1, readable until `commit`.

        The array is kept, not copied: the caller must not write to it afterwards.
        """
        self._batch = values
        self._batch_start = start

    def commit(self) -> None:
        """End of a batch: the last `length` events of ring + batch become the ring."""
        batch = self._batch
        if batch is None:
            return
        self._batch = None
        n, keep = batch.shape[1], self._length
        if self._filled < keep or n >= keep:
            self._values = np.concatenate([self._ordered()[:, max(0, self._filled + n - keep):],
                                           batch[:, max(0, n - keep):]], axis=1).astype(self._dtype, copy=False)
            self._filled = min(keep, self._filled + n)
            self._oldest = 0
            return
        end = self._oldest + n  # full: the batch takes the n oldest slots
        if end <= keep:
            self._values[:, self._oldest:end] = batch
        else:
            self._values[:, self._oldest:] = batch[:, :keep - self._oldest]
            self._values[:, :end - keep] = batch[:, keep - self._oldest:]
        self._oldest = end % keep

    def _ordered(self) -> np.ndarray:
        """The filled slots, oldest first."""
        oldest = self._oldest
        return self._values if oldest == 0 else np.concatenate([self._values[:, oldest:], self._values[:, :oldest]],
                                                               axis=1)

    def _row(self, j: int) -> np.ndarray:
        """Feature j's filled slots, oldest first."""
        row, oldest = self._values[j], self._oldest
        return row if oldest == 0 else np.concatenate([row[oldest:], row[:oldest]])

    def rows(self, j: int, event_index: int | None = None, since: int | None = None) -> np.ndarray:
        """Feature j's last `length` events up to event_index (inside a held batch; None: the ring).

        With `since`, only the events since then (the change's start), but at least MIN_SUMMARY_EVENTS
        to summarise.
        """
        if self._batch is not None and event_index is not None:
            stop = event_index - self._batch_start + 1
            rows = np.concatenate([self._row(j), self._batch[j, :stop]])[-self._length:]
            have = min(self._length, self._filled + stop)
        else:
            rows, have = self._row(j), self._filled
        if since is not None and event_index is not None:
            have = min(have, max(event_index - since + 1, MIN_SUMMARY_EVENTS))
        return rows[len(rows) - have:] if have < len(rows) else rows

    def ring_and_batch(self, j: int) -> np.ndarray:
        """Feature j's filled slots of the ring, then every value of the held batch (if any)."""
        ring = self._row(j)
        return ring if self._batch is None else np.concatenate([ring, self._batch[j]])

    def state_dict(self, values: bool = True) -> dict[str, Any]:
        """The ring as plain data (`load_state` takes it back). values=False: without the values (the
        request's own, which a checkpoint keeps only with examples on): the ring restarts empty."""
        if not values:
            return {"recent_filled": 0}
        n_features = self._values.shape[0]
        empty = np.full((n_features, self._length - self._filled), self._fill, dtype=self._dtype)
        return {"recent": np.concatenate([empty, self._ordered()], axis=1).tobytes(), "recent_filled": self._filled}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        n_features = self._values.shape[0]
        if "recent" not in state:
            self._values = np.empty((n_features, 0), dtype=self._dtype)
            self._filled = self._oldest = 0
            return
        ring = np.frombuffer(state["recent"], dtype=self._dtype).reshape(n_features, self._length)
        self._filled = int(state["recent_filled"])
        self._values = ring[:, self._length - self._filled:].copy()
        self._oldest = 0


class InvalidExamples:
    """The last MAX_INVALID_EXAMPLES raw invalid values of each numeric feature, as quoted strings;
    with `keep_raw` False (examples off), only whether each held a number (`diagnosis.redact_example`),
    so that no request's value is kept in the monitor's state.

    As in RecentRing, a batch's values are held apart until `commit`, so that an alert inside the
    batch quotes only the values up to its event.

    >>> from detectors.extract import classify_numbers
    >>> examples = InvalidExamples(n_features=1)
    >>> examples.hold_batch(classify_numbers(["1", 2.0, "x", None]), start=10)
    >>> examples.at(0, event_index=11), examples.at(0, event_index=13)
    (['1'], ['1', 'x'])
    """

    def __init__(self, n_features: int, keep_raw: bool = True):
        self._kept: list[list[str]] = [[] for _ in range(n_features)]
        self._keep_raw = keep_raw
        self._batch: NumericValues | None = None
        self._batch_start = 0

    def hold_batch(self, values: NumericValues, start: int) -> None:
        """The batch's numeric values, of events start.., readable by `at` until `commit`."""
        self._batch = values
        self._batch_start = start

    def at(self, j: int, event_index: int) -> list[str]:
        """Feature j's last invalid values up to event_index, oldest first."""
        kept = self._kept[j]
        if self._batch is None:
            return list(kept)
        recent = self._batch.invalid_examples(j, event_index - self._batch_start, MAX_INVALID_EXAMPLES)
        return (kept + self._as_kept(recent))[-MAX_INVALID_EXAMPLES:]

    def _as_kept(self, examples: list[str]) -> list[str]:
        return examples if self._keep_raw else [redact_example(e) for e in examples]

    def commit(self) -> None:
        """End of a batch: its last invalid values join the kept ones."""
        batch, self._batch = self._batch, None
        if batch is None or not batch.invalid_count:
            return
        last = batch.x.shape[1] - 1
        for j in np.flatnonzero((batch.status == INVALID).any(axis=1)).tolist():
            recent = batch.invalid_examples(j, last, MAX_INVALID_EXAMPLES)
            self._kept[j] = (self._kept[j] + self._as_kept(recent))[-MAX_INVALID_EXAMPLES:]

    def state_dict(self) -> dict[str, Any]:
        """The kept examples as plain data (`load_state` takes it back)."""
        return {"invalid_examples": [list(e) for e in self._kept]}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        self._kept = [[str(v) for v in e] for e in state["invalid_examples"]]
