"""One-sided CUSUM chains on event-count-aligned blocks, in exact integer arithmetic.

A CUSUM chain is S_t = max(0, S_{t-1} + x_t) and alarms when S_t > h. A bank runs many chains side
by side (every feature x every test) over a batch of block increments, compiled
(`detectors._kernels.cusum_sums`). Increments are fixed-point integers: sums are then exact and
associative, which is what makes the alarms identical whatever the batch sizes.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from baselines.serial import inflation_at
from detectors import _kernels

__all__ = ["DISABLED", "BlockAccumulator", "CusumBank", "bernoulli_llr_weights", "blocks_touched", "serial_threshold"]

#: chains whose threshold is this are switched off (never alarm)
DISABLED = np.iinfo(np.int64).max // 4
_NO_SCORES = np.zeros(0, dtype=np.int64)


def blocks_touched(start: int, n: int, size: int) -> int:
    """How many blocks of `size` events aligned on the event count hold events start..start+n-1."""
    return (start + n - 1) // size - start // size + 1 if n else 0


def _block_ends(start: int, size: int, count: int) -> np.ndarray:
    """The last event index of `count` consecutive blocks from the one holding event `start`."""
    first = start // size * size + size - 1
    return np.arange(first, first + count * size, size)


class BlockAccumulator:
    """Sums per-event integer columns over blocks of `size` events aligned on the event count.

    A block that a batch leaves incomplete is carried to the next batch.

    >>> acc = BlockAccumulator(size=4, n_columns=1)
    >>> acc.add(np.ones((6, 1), dtype=np.int64), start=0)[0].ravel().tolist()
    [4]
    >>> sums, ends = acc.add(np.ones((3, 1), dtype=np.int64), start=6)
    >>> sums.ravel().tolist(), ends.tolist()
    ([4], [7])
    """

    def __init__(self, size: int, n_columns: int):
        self._size = size
        self._partial = np.zeros(n_columns, dtype=np.int64)

    def add(self, values: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Add rows of integers for events start..start+n-1; return completed block sums (exact int64
        sums, compiled: `_kernels.block_sums`) and each block's last event index."""
        values = np.ascontiguousarray(values, dtype=np.int64)
        size = self._size
        out = np.empty((blocks_touched(start, len(values), size), len(self._partial)), dtype=np.int64)
        complete = _kernels.block_sums(values, start, size, self._partial, out)
        return out[:complete], _block_ends(start, size, complete)

    def add_sums(self, raw: np.ndarray, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """`add` from sums already made per block: raw (nb, n_columns) int64 holds the sums over the
        events start..start+n-1 of each block they touch (`blocks_touched`), in order."""
        if n == 0:
            return raw[:0], np.zeros(0, dtype=np.int64)
        size = self._size
        raw[0] += self._partial
        complete = len(raw) - ((start + n) % size != 0)  # the last block may still be incomplete
        if complete < len(raw):
            self._partial = raw[-1].copy()
        else:
            self._partial.fill(0)
        return raw[:complete], _block_ends(start, size, complete)

    def state_dict(self) -> dict[str, Any]:
        """The incomplete block's sums as plain data (`load_state` takes it back)."""
        return {"partial": self._partial.tolist()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        self._partial = np.asarray(state["partial"], dtype=np.int64)


class CusumBank:
    """Many one-sided CUSUM chains updated together on integer block increments.

    Parameters
    ----------
    thresholds
        One decision interval h per chain (integer, in the increments' fixed-point units; `DISABLED`
        switches a chain off).

    Examples
    --------
    Chain 0 climbs 3 + 4 + 5 = 12 > 10 in the block ending at event 29, alarms with onset -1 (it stood
    at 0 only before the first block) and restarts; chain 1 never leaves 0:

    >>> bank = CusumBank(np.array([10, 10]))
    >>> inc = np.array([[3, -1], [4, -1], [5, -1], [-20, -1]])
    >>> bank.update(inc, ends=np.array([9, 19, 29, 39]))
    [(29, 0, 12, -1)]
    >>> bank.statistics.tolist()
    [0, 0]
    """

    def __init__(self, thresholds: np.ndarray):
        self._h = np.asarray(thresholds, dtype=np.int64)
        self._s = np.zeros(len(self._h), dtype=np.int64)
        #: event index at which each chain last stood at 0 (the change-point estimate), -1 = start
        self._last_zero = np.full(len(self._h), -1, dtype=np.int64)

    @property
    def statistics(self) -> np.ndarray:
        return self._s

    def update(self, increments: np.ndarray, ends: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Feed blocks (rows) of increments; return (event index, chain, statistic, onset) per alarm.

        onset is the last event at which the chain stood at 0 before the alarm (-1: never), the
        classic CUSUM change-point estimate. After an alarm the chain restarts from 0 at that block.
        """
        increments = np.ascontiguousarray(increments, dtype=np.int64)
        ones = np.ones(len(self._h), dtype=np.int64)
        return self.update_from_sums(increments, ends, ones, np.zeros_like(ones), block=0)

    def update_from_sums(self, sums: np.ndarray, ends: np.ndarray, hit: np.ndarray, miss: np.ndarray, block: int,
                         k_fixed: np.ndarray | None = None, half: int = 0) -> list[tuple[int, int, int, int]]:
        """`update` with the increments made from block sums (see `detectors._kernels.cusum_sums`):
        sums (nb, 3 f + r), f = len(k_fixed) location/scale scores (none without k_fixed), then r
        Bernoulli counts per block of `block` events, weighted hit / miss. The chains are the 4 f
        score chains, then the r rate chains."""
        if len(sums) == 0:
            return []
        if k_fixed is None:
            k_fixed = _NO_SCORES
        return _kernels.cusum_sums(sums, np.ascontiguousarray(ends, dtype=np.int64), len(k_fixed), k_fixed, half,
                                   hit, miss, block, self._h, self._s, self._last_zero)

    def state_dict(self) -> dict[str, Any]:
        """Each chain's statistic and change-point estimate as plain data (`load_state` takes it back)."""
        return {"s": self._s.tolist(), "last_zero": self._last_zero.tolist()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        self._s = np.asarray(state["s"], dtype=np.int64)
        self._last_zero = np.asarray(state["last_zero"], dtype=np.int64)


def bernoulli_llr_weights(p0: float, p1: float, scale: float) -> tuple[int, int]:
    """Fixed-point log-likelihood-ratio increments (per hit, per non-hit) of rate p1 against p0."""
    return int(round(np.log(p1 / p0) * scale)), int(round(np.log((1 - p1) / (1 - p0)) * scale))


#: window lengths (events) over which `serial_threshold` checks a chain: 1 to a million, log-spaced
_SPANS = np.geomspace(1.0, 1e6, 600)


def serial_threshold(h: float, drift: float, inflation: np.ndarray | None) -> float:
    """The threshold of a CUSUM chain that holds its false-alarm rate on serially dependent events.

    The chain's per-event increments have variance 1 and mean -drift under "no change" (threshold h
    and drift in those units). It alarms when the sum of some L consecutive increments exceeds
    h + drift L. With independent increments that sum has standard deviation sqrt(L), and the
    horizon closest to alarming (L = h / drift) sits z = 2 sqrt(h drift) deviations below it; with
    serial dependence the sum varies inflation(L) times as much. The threshold returned is the
    lowest that keeps every horizon at least z deviations away: h when inflation is 1 (or None),
    about h V when it is a constant V (the Brownian approximation's ARL is then V times longer).

    Parameters
    ----------
    h, drift
        The chain's threshold and reference, in standard deviations of one increment.
    inflation
        V(L) at `baselines.serial.SERIAL_HORIZONS` (interpolated in log L between them, 1 at L = 1,
        the longest one's beyond it); None: independent events.

    Examples
    --------
    >>> serial_threshold(35.0, 0.25, None), serial_threshold(35.0, 0.25, np.ones(10))
    (35.0, 35.0)
    >>> round(serial_threshold(35.0, 0.25, np.full(10, 19.0)) / 35.0, 1)
    19.0
    """
    if inflation is None or drift <= 0:
        return h
    v = inflation_at(inflation, _SPANS)
    z = 2.0 * np.sqrt(h * drift)
    return max(h, float(np.max(z * np.sqrt(v * _SPANS) - drift * _SPANS)))

