"""Probability-integral transform (PIT) of production values against a training profile.

Each valid value x becomes u = F(x) under the training distribution F. When production looks like
training, u is uniform on [0, 1] whatever the feature's distribution, so every downstream test can
be calibrated once, distribution-free.

Ties: a value that sits on a point mass of F (an integer count, a default-filled 0) gets a u drawn
uniformly inside [F(x-), F(x)] instead of the mid-rank (F(x-) + F(x)) / 2. The mid-rank has the
right mean but not the uniform's spread (a 0/1 feature would only ever score 0.25 or 0.75), and the
CUSUM thresholds assume the uniform's spread. The draw is a hash of (feature, event index): the same
event always gets the same u, whatever the batching or replay.
"""
from __future__ import annotations

import hashlib
import math
import weakref
from collections.abc import Sequence

import numpy as np

from baselines.profile import QUANTILE_PROBS, NumericProfile
from detectors import _kernels

__all__ = ["BatchedPIT", "ProbabilityIntegralTransform", "SegmentIndex"]

#: how detectors._kernels.pit_transform scores a feature
_TABLED, _INTEGER, _PYTHON = range(3)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _stable_salt(name: str) -> int:
    """A per-name 64-bit constant that is the same in every process (unlike hash())."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


def _hashed_uniform(event_index: np.ndarray, salt: int | np.ndarray) -> np.ndarray:
    """Uniform numbers in [0, 1) from a splitmix64 hash of each event index (salts broadcast).

    >>> u = _hashed_uniform(np.arange(100_000), 7)
    >>> bool(abs(u.mean() - 0.5) < 0.005), bool(u.min() >= 0), bool(u.max() < 1)
    (True, True, True)
    """
    with np.errstate(over="ignore"):
        salts = salt if isinstance(salt, np.ndarray) else np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
        z = event_index.astype(np.uint64) * _GOLDEN + salts
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


class SegmentIndex:
    """searchsorted(values, x, side="left") for many x, through a table of equal cells over the
    values' range: a cell lookup and a step or two within the cell instead of a binary search per
    value, whose every step is a mispredicted branch and, mid-batch, often a cache miss (the
    credit model's update_batch: 2.9 -> 2.7 us per event). Grids with more than MAX_STEPS values
    in one cell fall back to the search.

    Why it is exact: cell(v) = clip(floor((v - lo) * scale)) is one monotone float formula for the
    grid and x alike, so every grid value in an earlier cell is < x and in a later one > x.

    >>> v = np.array([0.0, 0.5, 0.51, 2.0, 10.0])
    >>> x = np.array([-np.inf, -1.0, 0.0, 0.5, 0.505, 0.51, 1.0, 10.0, 11.0, np.inf])
    >>> SegmentIndex(v).find(x).tolist() == np.searchsorted(v, x).tolist()
    True
    """

    #: cells at most, and per grid value (a power of two at least this many times the values)
    CELLS = 4096
    CELLS_PER_VALUE = 4
    MAX_STEPS = 4

    def __init__(self, values: np.ndarray):
        self._values = values
        self._table = None
        width = float(values[-1]) - float(values[0]) if len(values) >= 16 else 0.0  # Python floats: inf, no warning
        if not 0.0 < width < math.inf:
            return
        # sized to the grid: a 4096-cell table of 64-bit indexes was 32 KB for a count of 20 values
        self._n_cells = min(self.CELLS, 1 << (self.CELLS_PER_VALUE * len(values) - 1).bit_length())
        self._lo, self._scale = values[0], self._n_cells / width
        cells = self._cells(values)
        starts = np.searchsorted(cells, np.arange(self._n_cells + 1), side="left")  # first value of each cell
        steps = int(np.max(np.diff(starts)))
        if steps <= self.MAX_STEPS:
            self._table, self._steps = starts[:-1].astype(np.min_scalar_type(len(values))), steps
            self._next = np.concatenate((values, [np.inf]))  # never < x: the last step stops at m

    def _cells(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):  # huge values: inf, clipped to the last cell
            t = x - self._lo
            t *= self._scale
        np.fmax(t, 0.0, out=t)  # NaN -> 0 (fmax ignores it): a NaN ends in segment 0, scores NaN anyway
        np.fmin(t, self._n_cells - 1, out=t)
        return t.astype(np.int64)

    def find(self, x: np.ndarray) -> np.ndarray:
        """Index of the first grid value >= x (len(values) past the last; NaN: any)."""
        if self._table is None:
            return np.searchsorted(self._values, x, side="left")
        j = self._table[self._cells(x)].astype(np.int64)
        for _ in range(self._steps):
            j += self._next[j] < x
        return j


class ProbabilityIntegralTransform:
    """u = F(x) against a NumericProfile: exact discrete distribution if stored, else the quantile grid.

    >>> from baselines.profile import NumericProfile
    >>> q = np.linspace(0.0, 10.0, 1001)
    >>> p = NumericProfile("x", 1000, 0, 0, 5.0, 2.9, 0.0, 10.0, q, np.array([5.0]), np.array([0.5, 0.5]))
    >>> pit = ProbabilityIntegralTransform(p)
    >>> pit.transform(np.array([-np.inf, -1.0, 0.0, 2.5, 10.0, 11.0, np.inf, np.nan]), np.arange(8)).tolist()
    [0.0, 0.0, 0.0, 0.25, 1.0, 1.0, 1.0, nan]
    """

    def __init__(self, profile: NumericProfile):
        if profile.discrete_values is not None and len(profile.discrete_values):
            values = np.asarray(profile.discrete_values, dtype=np.float64)
            shares = np.asarray(profile.discrete_freqs, dtype=np.float64)
            upper = np.cumsum(shares) / shares.sum()
            lower = np.concatenate(([0.0], upper[:-1]))
        else:
            grid = np.asarray(profile.quantiles, dtype=np.float64)
            if len(grid) == len(QUANTILE_PROBS) and np.all(grid[1:] > grid[:-1]):
                values, lower, upper = grid, QUANTILE_PROBS, QUANTILE_PROBS  # no ties: shared, not copied
            else:
                values, first = np.unique(grid, return_index=True)
                last = len(grid) - 1 - np.unique(grid[::-1], return_index=True)[1]
                lower, upper = QUANTILE_PROBS[first], QUANTILE_PROBS[last]
        self._values = values
        self._lower = lower
        self._upper = upper
        #: no point masses: u is a plain linear interpolation (the fast path)
        self._continuous = bool(np.all(lower == upper))
        self._salt = _stable_salt(profile.name)
        if self._continuous:  # np.interp needs nothing more: the segment tables below cost ~70 KB a feature
            return
        # x in segment j (values[j-1] < x < values[j], j = searchsorted(values, x)) scores
        # upper[j-1] + (x - values[j-1]) * slope[j]; segment 0 (below the grid) is 0 and segment m
        # (above it) 1, flat; `at` (values, then NaN) says whether x sits on a point of the grid
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(values[1:] > values[:-1], (lower[1:] - upper[:-1]) / (values[1:] - values[:-1]), 0.0)
        self._seg_u = np.concatenate(([0.0], upper))
        self._seg_x = np.concatenate(([0.0], values))
        self._seg_slope = np.concatenate(([0.0], slope, [0.0]))
        self._at = np.concatenate((values, [np.nan]))
        self._span = upper - lower
        self._segments = SegmentIndex(values)

    @property
    def continuous(self) -> bool:
        return self._continuous

    def transform(self, x: np.ndarray, event_index: np.ndarray) -> np.ndarray:
        """PIT scores of x (NaN stays NaN); event_index feeds the tie-breaking draw."""
        if self._continuous:
            return np.interp(x, self._values, self._lower)
        j = self._segments.find(x)  # values[j-1] < x <= values[j]
        u = np.clip(x, self._values[0], self._values[-1])  # beyond the grid the slope is 0: no inf * 0
        u -= self._seg_x[j]
        u *= self._seg_slope[j]
        u += self._seg_u[j]  # NaN stays NaN (NaN * 0)
        on_point = np.flatnonzero(self._at[j] == x)
        if len(on_point):
            k = j[on_point]
            u[on_point] = self._lower[k] + _hashed_uniform(event_index[on_point], self._salt) * self._span[k]
        return u


class BatchedPIT:
    """PIT of many features at once: (n_features, n_events) values -> scores, one compiled pass
    (detectors._kernels.pit_transform) instead of a binary search per value and feature.

    Continuous features: each training CDF is tabulated on TABLE_CELLS equal cells between its
    0.1% and 99.9% quantiles and interpolated linearly inside a cell; beyond them the quantile grid
    is linear between its two last points, which is computed in closed form. A feature whose table
    would be off by more than TABLE_TOLERANCE anywhere (a very heavy tail squeezes its body into a
    few cells) uses the exact transform.
    Integer-valued features with point masses (counts, flags, ratings): one cell per integer of the
    training range holding the exact [F(x-), F(x)] of that integer, the tie-breaking draw hashed for
    all of them at once. Values that are not integers in that range use the exact transform.

    >>> from baselines.profile import NumericProfile
    >>> q = np.linspace(0.0, 10.0, 1001)
    >>> counts = NumericProfile("n", 100, 0, 0, 1.0, 1.0, 0.0, 2.0, np.repeat([0.0, 1.0, 2.0], [300, 400, 301]),
    ...                         np.array([1.0]), np.array([0.5, 0.5]), np.array([0.0, 1.0, 2.0]),
    ...                         np.array([0.3, 0.4, 0.3]))
    >>> smooth = NumericProfile("x", 1000, 0, 0, 5.0, 2.9, 0.0, 10.0, q, np.array([5.0]), np.array([0.5, 0.5]))
    >>> profiles = [smooth, counts]
    >>> x = np.array([[-1.0, 0.005, 2.5, 9.995, 11.0], [0.0, 1.0, 1.5, 2.0, 3.0]])
    >>> u = BatchedPIT(profiles).transform(x, 0)
    >>> exact = np.array([ProbabilityIntegralTransform(p).transform(row, np.arange(5)) for row, p in zip(x, profiles)])
    >>> bool(np.allclose(u, exact, atol=1e-9))
    True
    """

    #: 1024 cells (8 KB a feature): 4096 tables outgrew the cache next to a batch of events, and the
    #: scores' interpolation error, ~1e-6 on a normal feature, is at the fixed-point unit (2**-20)
    TABLE_CELLS = 1024
    TABLE_TOLERANCE = 1e-3
    #: widest integer range tabulated for a feature with point masses
    MAX_INTEGER_CELLS = 4096

    #: the transforms built, by the identity of their profiles (each holds its profiles, so that
    #: the ids stay theirs): the monitors of one baseline share one
    _shared: weakref.WeakValueDictionary[tuple[int, ...], BatchedPIT] = weakref.WeakValueDictionary()

    @classmethod
    def shared(cls, profiles: Sequence[NumericProfile]) -> BatchedPIT:
        """The transform of these very profiles, built once however many monitors use it (a
        baseline's monitors on several partitions, a monitor rebuilt from a checkpoint): it is
        read-only once built, and building it is most of a monitor's creation time."""
        key = tuple(map(id, profiles))
        pit = cls._shared.get(key)
        if pit is None:
            pit = cls._shared[key] = cls(profiles)
        return pit

    def __init__(self, profiles: Sequence[NumericProfile]):
        self._profiles = tuple(profiles)
        pits = [ProbabilityIntegralTransform(p) for p in profiles]
        f = len(profiles)
        # per feature, as detectors._kernels.pit_transform takes them
        self._kinds = np.full(f, _PYTHON, dtype=np.int64)
        self._offsets = np.zeros(f, dtype=np.int64)
        self._sizes = np.zeros(f, dtype=np.int64)
        self._params = np.zeros((f, 6))
        self._salts = np.zeros(f, dtype=np.uint64)
        tables, lowers, uppers = [], [], []
        table_len = int_len = 0
        for j, (p, pit) in enumerate(zip(profiles, pits)):
            if pit.continuous:
                table = self._continuous_table(p, pit)
                if table is not None:
                    q = np.asarray(p.quantiles, dtype=np.float64)
                    self._kinds[j], self._offsets[j] = _TABLED, table_len
                    self._params[j] = (q[1], self.TABLE_CELLS / (q[-2] - q[1]), q[0], q[1], q[-2], q[-1])
                    tables.append(table)
                    table_len += len(table)
                continue
            values = pit._values
            if (np.all(values == np.round(values)) and values[-1] - values[0] < self.MAX_INTEGER_CELLS):
                grid = np.arange(values[0], values[-1] + 1.0)
                lower = pit.transform(grid, np.zeros(len(grid), dtype=np.int64))  # between point masses
                upper = lower.copy()
                at = (values - values[0]).astype(np.int64)
                lower[at], upper[at] = pit._lower, pit._upper
                self._kinds[j], self._offsets[j], self._sizes[j] = _INTEGER, int_len, len(grid)
                self._params[j, 0] = values[0]
                self._salts[j] = pit._salt
                lowers.append(lower)
                uppers.append(upper)
                int_len += len(grid)
        self._table = np.concatenate(tables) if tables else np.zeros(0)
        self._int_lower = np.concatenate(lowers) if lowers else np.zeros(0)
        self._int_span = np.concatenate(uppers) - self._int_lower if uppers else np.zeros(0)
        self._exact = np.flatnonzero(self._kinds == _PYTHON).tolist()
        self._integer = np.flatnonzero(self._kinds == _INTEGER).tolist()
        #: the exact transforms still called (`transform`): a tabled feature's is dropped once its table is built
        self._pits = {j: pits[j] for j in self._exact + self._integer}

    def _continuous_table(self, p: NumericProfile, pit: ProbabilityIntegralTransform) -> np.ndarray | None:
        lo, hi = float(p.quantiles[1]), float(p.quantiles[-2])
        if not hi > lo:
            return None
        edges = np.linspace(lo, hi, self.TABLE_CELLS + 1)
        table = pit.transform(edges, np.zeros(len(edges), dtype=np.int64))
        probe = np.concatenate([p.quantiles[1:-1], np.linspace(lo, hi, 7 * self.TABLE_CELLS + 3)])
        t = (probe - lo) * (self.TABLE_CELLS / (hi - lo))
        cell = np.clip(t, 0, self.TABLE_CELLS - 1).astype(np.int64)
        approx = table[cell] + (t - cell) * (table[cell + 1] - table[cell])
        if np.max(np.abs(approx - pit.transform(probe, np.zeros(len(probe), dtype=np.int64)))) > self.TABLE_TOLERANCE:
            return None
        return table

    def transform(self, x: np.ndarray, start: int) -> np.ndarray:
        """PIT scores of x (n_features, n_events) of events start..; NaN stays NaN."""
        u = np.empty_like(x)
        odd = _kernels.pit_transform(x, u, start, self._kinds, self._offsets, self._sizes, self._params,
                                     self._salts, self._table, self._int_lower, self._int_span,
                                     self.TABLE_CELLS, float(QUANTILE_PROBS[1]))
        if self._exact or odd:
            event_index = np.arange(start, start + x.shape[1])
            for j in self._exact:
                u[j] = self._pits[j].transform(x[j], event_index)
            for j in self._integer if odd else ():  # not integers, inside the training range
                cols = np.flatnonzero(u[j] < 0.0)
                if len(cols):
                    u[j, cols] = self._pits[j].transform(x[j, cols], event_index[cols])
        return u
