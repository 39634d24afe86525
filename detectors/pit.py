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

import numpy as np

from baselines.profile import QUANTILE_PROBS, NumericProfile

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def stable_salt(name: str) -> int:
    """A per-name 64-bit constant that is the same in every process (unlike hash())."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


def hashed_uniform(event_index: np.ndarray, salt: int) -> np.ndarray:
    """Uniform numbers in [0, 1) from a splitmix64 hash of each event index.

    >>> u = hashed_uniform(np.arange(100_000), 7)
    >>> bool(abs(u.mean() - 0.5) < 0.005), bool(u.min() >= 0), bool(u.max() < 1)
    (True, True, True)
    """
    with np.errstate(over="ignore"):
        z = event_index.astype(np.uint64) * _GOLDEN + np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


class ProbabilityIntegralTransform:
    """u = F(x) against a NumericProfile: exact discrete distribution if stored, else the quantile grid.

    >>> from baselines.profile import NumericProfile
    >>> q = np.linspace(0.0, 10.0, 1001)
    >>> p = NumericProfile("x", 1000, 0, 0, 5.0, 2.9, 0.0, 10.0, q, np.array([5.0]), np.array([0.5, 0.5]))
    >>> pit = ProbabilityIntegralTransform(p)
    >>> pit.transform(np.array([-1.0, 0.0, 2.5, 10.0, 11.0]), np.arange(5)).tolist()
    [0.0, 0.0, 0.25, 1.0, 1.0]
    """

    def __init__(self, profile: NumericProfile):
        if profile.discrete_values is not None and len(profile.discrete_values):
            values = np.asarray(profile.discrete_values, dtype=np.float64)
            shares = np.asarray(profile.discrete_freqs, dtype=np.float64)
            upper = np.cumsum(shares) / shares.sum()
            lower = np.concatenate(([0.0], upper[:-1]))
        else:
            grid = np.asarray(profile.quantiles, dtype=np.float64)
            values, first = np.unique(grid, return_index=True)
            last = len(grid) - 1 - np.unique(grid[::-1], return_index=True)[1]
            lower, upper = QUANTILE_PROBS[first], QUANTILE_PROBS[last]
        self._values = values
        self._lower = lower
        self._upper = upper
        #: no point masses: u is a plain linear interpolation (the fast path)
        self._continuous = bool(np.all(lower == upper))
        self._salt = stable_salt(profile.name)

    @property
    def continuous(self) -> bool:
        return self._continuous

    def transform(self, x: np.ndarray, event_index: np.ndarray) -> np.ndarray:
        """PIT scores of x (NaN stays NaN); event_index feeds the tie-breaking draw."""
        if self._continuous:
            return np.interp(x, self._values, self._lower)
        values, lower, upper = self._values, self._lower, self._upper
        m = len(values)
        j = np.searchsorted(values, x, side="left")  # values[j-1] < x <= values[j]
        jc = np.minimum(j, m - 1)
        exact = (j < m) & (values[jc] == x)
        left = np.maximum(j - 1, 0)
        span = values[jc] - values[left]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(span > 0, (x - values[left]) / span, 0.0)
        u = np.where(j == 0, 0.0, np.where(j >= m, 1.0, upper[left] + t * (lower[jc] - upper[left])))
        if exact.any():
            draw = hashed_uniform(event_index[exact], self._salt)
            u[exact] = lower[jc[exact]] + draw * (upper[jc[exact]] - lower[jc[exact]])
        return np.where(np.isnan(x), np.nan, u)


class BatchedPIT:
    """PIT of many features at once: (n_features, n_events) values -> scores.

    Continuous features go through one lookup table for all of them: each feature's training CDF is
    tabulated on TABLE_CELLS equal cells between its 0.1% and 99.9% quantiles and interpolated
    linearly inside a cell, a handful of numpy passes over the whole matrix instead of one binary
    search per value. A feature whose table would be off by more than TABLE_TOLERANCE anywhere (a
    very heavy tail squeezes its body into a few cells), values outside the tabulated range, and
    features with point masses use the exact transform.
    """

    TABLE_CELLS = 4096
    TABLE_TOLERANCE = 1e-3

    def __init__(self, profiles: list[NumericProfile]):
        self._pits = [ProbabilityIntegralTransform(p) for p in profiles]
        tabled, tables, lows, scales = [], [], [], []
        for j, (p, pit) in enumerate(zip(profiles, self._pits)):
            if not pit.continuous:
                continue
            lo, hi = float(p.quantiles[1]), float(p.quantiles[-2])
            if not hi > lo:
                continue
            edges = np.linspace(lo, hi, self.TABLE_CELLS + 1)
            table = pit.transform(edges, np.zeros(len(edges), dtype=np.int64))
            probe = np.concatenate([p.quantiles[1:-1], np.linspace(lo, hi, 7 * self.TABLE_CELLS + 3)])
            scale = self.TABLE_CELLS / (hi - lo)
            approx = self._lookup(probe, table, lo, scale)
            if np.max(np.abs(approx - pit.transform(probe, np.zeros(len(probe), dtype=np.int64)))) > self.TABLE_TOLERANCE:
                continue
            tabled.append(j)
            tables.append(table)
            lows.append(lo)
            scales.append(scale)
        self._tabled = np.array(tabled, dtype=np.int64)
        self._exact = [j for j in range(len(profiles)) if j not in set(tabled)]
        self._table = np.concatenate(tables) if tables else np.zeros(0)
        self._offsets = (np.arange(len(tabled)) * (self.TABLE_CELLS + 1))[:, None]
        self._lows = np.array(lows)[:, None]
        self._scales = np.array(scales)[:, None]

    @staticmethod
    def _lookup(x: np.ndarray, table: np.ndarray, lo: float, scale: float) -> np.ndarray:
        t = (x - lo) * scale
        cell = np.clip(t, 0, len(table) - 2).astype(np.int64)
        return table[cell] + (t - cell) * (table[cell + 1] - table[cell])

    @property
    def transforms(self) -> list[ProbabilityIntegralTransform]:
        return self._pits

    def transform(self, x: np.ndarray, event_index: np.ndarray) -> np.ndarray:
        u = np.empty_like(x)
        for j in self._exact:
            u[j] = self._pits[j].transform(x[j], event_index)
        if len(self._tabled):
            xt = x[self._tabled]
            t = (xt - self._lows) * self._scales
            inside = (t >= 0) & (t <= self.TABLE_CELLS)  # NaN: False
            cell = np.minimum(np.where(inside, t, 0), self.TABLE_CELLS - 1).astype(np.int64)
            flat = cell + self._offsets
            low = self._table[flat]
            ut = low + (np.where(inside, t, 0) - cell) * (self._table[flat + 1] - low)
            outside = ~inside & ~np.isnan(xt)
            if outside.any():
                for r in np.flatnonzero(outside.any(axis=1)):
                    cols = outside[r]
                    ut[r, cols] = self._pits[self._tabled[r]].transform(xt[r, cols], event_index[cols])
            ut[np.isnan(xt)] = np.nan
            u[self._tabled] = ut
        return u
