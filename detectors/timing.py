"""A feature's recent history of block means, in constant memory, to date a change.

An exponential histogram of blocks: at most `per_size` blocks of each size, the two oldest of a
size merged into one twice as long when a new one arrives. Recent events stay at the finest
resolution, older ones are kept coarser, and `max_blocks` blocks cover about
per_size x block x 2**(max_blocks / per_size) events: a ramp over tens of thousands of events is
still seen whole, with the flat stretch before it.

Blocks are the same for every feature (aligned on the model's event count); each feature keeps the
sum of its score and its number of valid values per block, so merging is exact.

>>> h = BlockHistory(n_features=1, per_size=2, max_blocks=5)
>>> for end in range(256, 256 * 9, 256):
...     h.append(np.array([end - 1]), np.array([[10]]), np.array([[5]]), 256)
>>> h.counts.tolist(), h.ends.tolist()
([1024, 512, 256, 256], [1023, 1535, 1791, 2047])

`ChangeHistory` keeps one for the model's numeric features, holding a batch's blocks apart until its
alerts are built.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["TIMING_PER_SIZE", "BlockHistory", "ChangeHistory"]

#: blocks of each length in a model's change-timing history
TIMING_PER_SIZE = 8


class BlockHistory:
    """Per-feature block sums in an exponential histogram (module docstring).

    Parameters
    ----------
    n_features
        Features summed per block.
    per_size
        Blocks of each length kept before the two oldest merge.
    max_blocks
        Blocks kept at most; the oldest are dropped beyond it.
    """

    def __init__(self, n_features: int, per_size: int, max_blocks: int):
        self._n_features = n_features
        self._per_size = per_size
        self._max_blocks = max_blocks
        # oldest first: last event, events, and per feature the score sum and valid values of each block
        self._ends: list[int] = []
        self._counts: list[int] = []
        self._sums: list[np.ndarray] = []
        self._valid: list[np.ndarray] = []

    @property
    def ends(self) -> np.ndarray:
        return np.array(self._ends, dtype=np.int64)

    @property
    def counts(self) -> np.ndarray:
        return np.array(self._counts, dtype=np.int64)

    def copy(self) -> BlockHistory:
        """An independent history with the same blocks (appending to it leaves this one as it is)."""
        other = BlockHistory(self._n_features, self._per_size, self._max_blocks)
        other._ends, other._counts = list(self._ends), list(self._counts)
        other._sums, other._valid = list(self._sums), list(self._valid)
        return other

    def append(self, ends: np.ndarray, sums: np.ndarray, valid: np.ndarray, size: int) -> None:
        """Add consecutive new blocks of `size` events: last events (k,), sums and valid counts (k, n_features)."""
        for end, s, v in zip(ends.tolist(), sums.astype(np.int64), valid.astype(np.int64)):
            self._ends.append(end)
            self._counts.append(size)
            self._sums.append(s)
            self._valid.append(v)
            self._merge(size)

    def _merge(self, size: int) -> None:
        # sizes never grow towards the present: the blocks of a size are a run, the oldest at its start
        counts = self._counts
        end = len(counts)
        while True:
            first = end
            while first > 0 and counts[first - 1] == size:
                first -= 1
            if end - first <= self._per_size:
                break
            counts[first: first + 2] = [2 * size]
            del self._ends[first]
            self._sums[first: first + 2] = [self._sums[first] + self._sums[first + 1]]
            self._valid[first: first + 2] = [self._valid[first] + self._valid[first + 1]]
            end, size = first + 1, 2 * size
        drop = len(counts) - self._max_blocks
        if drop > 0:
            del self._ends[:drop], self._counts[:drop], self._sums[:drop], self._valid[:drop]

    def feature(self, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(block ends, events per block, mean score) of feature j over the blocks where it had a valid value."""
        if not self._ends:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        sums = np.array([s[j] for s in self._sums], dtype=np.float64)
        valid = np.array([v[j] for v in self._valid], dtype=np.int64)
        keep = valid > 0
        return self.ends[keep], self.counts[keep], sums[keep] / valid[keep]

    def state_dict(self) -> dict[str, Any]:
        """The blocks as plain data (`load_state` takes it back)."""
        f = self._n_features
        return {"ends": list(self._ends), "counts": list(self._counts),
                "sums": np.array(self._sums, dtype=np.int64).reshape(len(self._ends), f).tobytes(),
                "valid": np.array(self._valid, dtype=np.int32).reshape(len(self._ends), f).tobytes()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        f = self._n_features
        self._ends = [int(e) for e in state["ends"]]
        self._counts = [int(c) for c in state["counts"]]
        self._sums = list(np.frombuffer(state["sums"], dtype=np.int64).reshape(len(self._ends), f).copy())
        self._valid = list(np.frombuffer(state["valid"], dtype=np.int32).astype(np.int64).reshape(len(self._ends), f))


class ChangeHistory:
    """The model's numeric features' block sums of the location score, to date a change.

    Blocks completed during a batch are held apart (`hold_batch`) so that an alert raised inside
    the batch sees only the blocks up to its event, and join the history at `commit`.

    Parameters
    ----------
    n_features
        Numeric features of the model.
    max_blocks
        Blocks kept per feature (BlockHistory; at most TIMING_PER_SIZE of each length).
    block_events
        Events in a new block.

    >>> h = ChangeHistory(n_features=1, max_blocks=8, block_events=256)
    >>> h.hold_batch((np.array([[10, 5], [20, 5]]), np.array([255, 511])))
    >>> [a.tolist() for a in h.feature_at(0, event_index=300)]  # inside the batch: the first block only
    [[255], [256], [2.0]]
    >>> h.commit()
    >>> [a.tolist() for a in h.feature_at(0, event_index=300)]
    [[255, 511], [256, 256], [2.0, 4.0]]
    """

    def __init__(self, n_features: int, max_blocks: int, block_events: int):
        self._n_features = n_features
        self._block_events = block_events
        self._history = BlockHistory(n_features, TIMING_PER_SIZE, max_blocks)
        self._batch: tuple[np.ndarray, np.ndarray] | None = None

    def hold_batch(self, blocks: tuple[np.ndarray, np.ndarray] | None) -> None:
        """The batch's completed blocks: sums (k, 2 n_features), the location sums then the valid
        counts, and each block's last event (k,) (`NumericBank.completed_timing_blocks`)."""
        self._batch = blocks if blocks is not None and len(blocks[1]) else None

    def commit(self) -> None:
        """End of a batch: its blocks join the history."""
        if self._batch is not None:
            self._append(self._history)
            self._batch = None

    def _append(self, history: BlockHistory, until: int | None = None) -> None:
        sums, ends = self._batch
        if until is not None:
            ends, sums = ends[ends <= until], sums[ends <= until]
        f = self._n_features
        history.append(ends, sums[:, :f], sums[:, f:], self._block_events)

    def feature_at(self, j: int, event_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(block ends, events per block, mean location score) of feature j up to event_index
        (`BlockHistory.feature`)."""
        history = self._history
        if self._batch is not None:
            history = history.copy()
            self._append(history, until=event_index)
        return history.feature(j)

    def state_dict(self) -> dict[str, Any]:
        """The committed history as plain data (`load_state` takes it back)."""
        return self._history.state_dict()

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        self._history.load_state(state)
