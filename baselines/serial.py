"""Serial dependence of a time-ordered training file: how much sums of consecutive scores vary.

The monitors' CUSUMs add up per-event scores and their thresholds assume independent events. Real
traffic in time order is not: hourly weather persists for days, a flight's departure time follows
the clock, cancellations come in storms. A sum of L consecutive scores then varies V(L) times as
much as L independent ones (the variance inflation factor, V = 1 + 2 sum_k (1 - k/L) rho_k), and a
CUSUM calibrated for V = 1 fires on data that did not change.

When the training file is in time order (`baseline build --time-ordered`), the builder measures
V(L) per feature at the horizons `SERIAL_HORIZONS`, on the series the monitors score:

- numeric: the location score (u - 1/2) sqrt 12 and the spread score (|2u - 1| - 1/2) sqrt 12 of
  each valid value, u its rank among the first chunk's values (ties broken at random, as the
  monitors' PIT does), and the missing indicator of every row;
- categorical: the indicator of a value outside the first chunk's top-K, and the missing indicator.

With a seasonal baseline (`baselines.seasonal`), whose monitors score each value against its slot of
the clock, u is the value's rank among the first chunk's values of its slot: the dependence left once
the daily cycle is taken out.

Streamed: the sums over every window of L consecutive values are accumulated chunk by chunk with
the last `max(SERIAL_HORIZONS)` cumulative sums carried over, so memory does not grow with the file.
The ranks come from the first chunk (the final profile is not known until the end); for a file of
one chunk (100,000 rows by default) they are the file's.

>>> rng = np.random.default_rng(0)
>>> acc = SerialStats("numeric")
>>> acc.add_numeric(rng.normal(size=20_000), np.zeros(20_000, dtype=bool))
>>> v = acc.finish()
>>> v.shape, bool(np.all(np.abs(v[:2, :5] - 1) < 0.2)), float(v[2, 0])
((3, 10), True, 1.0)
"""
from __future__ import annotations

import zlib
from typing import Any

import numpy as np

__all__ = ["CATEGORICAL_SERIES", "NUMERIC_SERIES", "SERIAL_HORIZONS", "SerialStats", "inflation_at"]

#: window lengths (events) at which the variance inflation is measured: the CUSUM block (8) to 4096
SERIAL_HORIZONS = tuple(8 << i for i in range(10))
#: the series measured per kind of feature, in the order of `SerialStats.finish`'s rows
NUMERIC_SERIES = ("location", "scale", "missing")
CATEGORICAL_SERIES = ("other", "missing")
#: values of the first chunk kept as the reference of the ranks (its evenly spaced order statistics)
REFERENCE_VALUES = 10_000
#: disjoint windows a horizon needs in the series to be measured: an AR(1) series of rho 0.9
#: (V about 19) measured on 20,000 values read V(4096) = 5 (5 windows), V(2048) = 13 (10 windows)
MIN_WINDOWS = 16
_SQRT12 = float(np.sqrt(12.0))
_HORIZONS = np.array((1, *SERIAL_HORIZONS))
_LONGEST = SERIAL_HORIZONS[-1]


class _WindowSums:
    """Sums and sums of squares of every window of L consecutive values, for L in 1 and the horizons."""

    def __init__(self) -> None:
        self._prefix = np.zeros(1)  # the last cumulative sums (C_0 = 0 at first)
        self._center: float | None = None
        self.n = 0
        self._s1 = np.zeros(len(_HORIZONS))
        self._s2 = np.zeros(len(_HORIZONS))
        self._count = np.zeros(len(_HORIZONS))

    def add(self, y: np.ndarray) -> None:
        if not len(y):
            return
        if self._center is None:  # keeps the cumulative sums near 0 over a long file
            self._center = float(y.mean())
        c = np.concatenate([self._prefix, self._prefix[-1] + np.cumsum(y - self._center)])
        first = len(self._prefix)  # index in c of the first new cumulative sum
        for i, horizon in enumerate(_HORIZONS.tolist()):
            lo = max(horizon, first)
            if lo >= len(c):
                continue
            d = c[lo:] - c[lo - horizon:len(c) - horizon]
            self._s1[i] += d.sum()
            self._s2[i] += np.square(d).sum()
            self._count[i] += len(d)
        self._prefix = c[-(_LONGEST + 1):]
        self.n += len(y)

    def inflation(self) -> np.ndarray:
        """V(L) per horizon: the windows' variance over L times the single values' variance. 1 when the
        series is constant; beyond 1/MIN_WINDOWS of the series (too few disjoint windows to tell) the
        longest horizon measured."""
        out = np.ones(len(SERIAL_HORIZONS))
        if self._count[0] < 2:
            return out
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self._s1 / self._count
            var = self._s2 / self._count - mean**2
        if not var[0] > 1e-12:
            return out
        last = 1.0
        for i, horizon in enumerate(SERIAL_HORIZONS, start=1):
            if self._count[i] and horizon <= self.n / MIN_WINDOWS:
                # overlapping windows around their own mean: E[var] = L sigma^2 V (1 - L / n) roughly
                last = float(var[i] / (horizon * var[0]) / (1.0 - horizon / self.n))
            out[i - 1] = last
        return out


class SerialStats:
    """One feature's series in time order, chunk by chunk (`add_numeric` / `add_categorical`), and
    their variance inflation at the end (`finish`).

    Parameters
    ----------
    kind
        "numeric" or "categorical".
    name
        The feature's name: seeds the random tie-breaking, so a rebuild gives the same figures.
    top_k
        Categories of the first chunk that are not "other" (categorical).
    """

    def __init__(self, kind: str, name: str = "", top_k: int = 0):
        self.kind = kind
        self._series = [_WindowSums() for _ in (NUMERIC_SERIES if kind == "numeric" else CATEGORICAL_SERIES)]
        self._reference: np.ndarray | None = None
        self._slot_references: dict[int, np.ndarray] = {}  # seasonal: per slot of the clock
        self._top: set[str] | None = None
        self._top_k = top_k
        self._rng = np.random.default_rng(zlib.crc32(name.encode()))

    def add_numeric(self, values: np.ndarray, missing: np.ndarray, slots: np.ndarray | None = None) -> None:
        """A chunk's values and missing mask (`baselines.accumulate.as_floats`), in time order; slots: their
        rows' slots of the clock (`baselines.seasonal.slot_of`, -1: none) when the baseline is seasonal."""
        valid = np.isfinite(values)
        x = values[valid]
        if self._reference is None and len(x):
            self._reference = _reference_of(x)
        if self._reference is not None and len(x):
            draws = self._rng.random(len(x))
            if slots is None:
                u = _ranks(x, self._reference, draws)
            else:
                u = np.empty(len(x))
                slots = slots[valid]
                for slot in np.unique(slots).tolist():
                    at = slots == slot
                    if slot >= 0 and slot not in self._slot_references:
                        self._slot_references[slot] = _reference_of(x[at])
                    u[at] = _ranks(x[at], self._slot_references.get(slot, self._reference), draws[at])
            self._series[0].add((u - 0.5) * _SQRT12)
            self._series[1].add((np.abs(2 * u - 1) - 0.5) * _SQRT12)
        self._series[2].add(missing.astype(np.float64))

    def add_categorical(self, codes: np.ndarray, keys: list[str | None]) -> None:
        """A chunk's codes and keys (`baselines.accumulate.category_codes`), in time order."""
        present = codes[codes >= 0]
        if self._top is None and len(present):
            counts = np.bincount(present, minlength=len(keys))
            ranked = sorted((-c, str(k)) for k, c in zip(keys, counts.tolist()) if k is not None and c)
            self._top = {k for _, k in ranked[:self._top_k]}
        if self._top is not None:
            other = np.array([k is not None and k not in self._top for k in keys] + [False])
            valid = present[np.array([k is not None for k in keys] + [False])[present]]
            self._series[0].add(other[valid].astype(np.float64))
        self._series[1].add((codes < 0).astype(np.float64))

    def finish(self) -> np.ndarray:
        """V(L) of each series (rows: `NUMERIC_SERIES` or `CATEGORICAL_SERIES`) at `SERIAL_HORIZONS`."""
        return np.array([s.inflation() for s in self._series])


def _reference_of(x: np.ndarray) -> np.ndarray:
    """The reference of the ranks: at most REFERENCE_VALUES evenly spaced order statistics of x."""
    ordered = np.sort(x)
    at = np.linspace(0, len(ordered) - 1, min(len(ordered), REFERENCE_VALUES)).round().astype(np.int64)
    return ordered[at]


def _ranks(x: np.ndarray, reference: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Each value's rank in [0, 1] among the reference, ties broken by the uniform draws."""
    left = np.searchsorted(reference, x, side="left")
    right = np.searchsorted(reference, x, side="right")
    return (left + draws * (right - left) + 0.5 * (left == right)) / len(reference)


def inflation_at(inflation: np.ndarray | None, span: Any) -> Any:
    """V at `span` events (a number or an array) from V at `SERIAL_HORIZONS`: log-
    interpolated, 1 at one event, the longest horizon's beyond it, never below 1 (a measured negative
    dependence does not lower a threshold). None (independent events): 1.

    >>> inflation_at(np.arange(1.0, 11.0), 16), inflation_at(None, 512), inflation_at(np.arange(1.0, 11.0), 1e5)
    (2.0, 1.0, 10.0)
    """
    if inflation is None:
        return np.ones_like(span, dtype=np.float64) if isinstance(span, np.ndarray) else 1.0
    v = np.interp(np.log(span), np.log([1.0, *SERIAL_HORIZONS]), [1.0, *np.maximum(inflation, 1.0)])
    return v if isinstance(span, np.ndarray) else float(v)
