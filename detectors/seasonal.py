"""Seasonal baselines at serving time: each event's numeric values compared with its slot of the clock.

A baseline built with `--seasonal` (`baselines.seasonal`) holds each numeric feature's quantiles per
slot (hour of day, day of week). Every valid value x of an event whose `ts` falls in slot s is mapped
to the whole-profile value of the same rank, x' = Q(F_s(x)) (quantile mapping: F_s the slot's
distribution, Q the whole profile's quantile function), before the monitors' tests. A night value
that is ordinary for the night becomes the whole-day value of the same rank, so the tests, which
compare with the whole profile, need no change; a value that is unusual for its hour stays unusual.

- Ties: a value on a point mass of its slot (a count, a fill) gets a rank drawn inside the mass,
  from a hash of (feature, event index) as the PIT does (`detectors.pit`): the same event always
  maps alike, whatever the batching.
- Beyond the slot's training range: a value outside the whole profile's [min, max] is kept as it
  is (the out-of-range test and the unit-change diagnosis see it); one inside it but beyond its
  slot's range maps to the whole profile's min or max.
- Not mapped: events without a finite numeric `ts`, slots with fewer than `MIN_SLOT_VALUES` training
  values, missing and invalid values, features without a seasonal profile (categorical ones).

>>> import numpy as np
>>> from baselines.build import build_baseline_from_columns
>>> ts = np.arange(48_000) * 180.0  # 100 days, every 3 minutes
>>> hour = ts / 3600 % 24
>>> rng = np.random.default_rng(0)
>>> b = build_baseline_from_columns("m", {"x": 10 * hour + rng.normal(size=len(ts))}, timestamps=ts,
...                                 seasonal="hour-of-day")
>>> m = SeasonalMap(list(b.features.values()), b.seasonal)
>>> x = np.array([[5.0, 235.0, 235.0, 5000.0]])  # ordinary at 0 h and at 23 h; beyond 0 h's range; out of range
>>> np.round(m.apply(x, np.array([0.0, 23 * 3600.0, 0.0, 0.0]), start=0)).tolist()  # mid-range whole-day values: 0..243
[[127.0, 126.0, 243.0, 5000.0]]
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from baselines.profile import QUANTILE_PROBS, NumericProfile, SeasonalProfile
from baselines.seasonal import MIN_SLOT_VALUES, SLOT_QUANTILE_PROBS, slot_of
from detectors.pit import _hashed_uniform, _stable_salt

__all__ = ["SeasonalMap", "event_times"]

_STEPS = len(SLOT_QUANTILE_PROBS) - 1
#: a JSON integer beyond this is no time (and would not fit a float64)
_LARGEST_INT = 2**63


def event_times(events: Sequence[dict]) -> np.ndarray:
    """Each event's `ts` as a float, NaN when it has no finite number there.

    >>> event_times([{"ts": 5}, {"ts": "5"}, {"ts": True}, {}, {"ts": float("inf")}, {"ts": 10**400}]).tolist()
    [5.0, nan, nan, nan, nan, nan]
    """
    out = np.array([t if type(t) is float or (type(t) is int and abs(t) <= _LARGEST_INT) else np.nan
                    for t in (e.get("ts") for e in events)], dtype=np.float64)
    out[~np.isfinite(out)] = np.nan
    return out


class SeasonalMap:
    """The quantile mapping of a bank's numeric features by their events' slots (see the module).

    Parameters
    ----------
    profiles
        The bank's numeric profiles, in its order.
    seasonal
        The baseline's `SeasonalProfile`.
    """

    def __init__(self, profiles: Sequence[NumericProfile], seasonal: SeasonalProfile):
        self._period, self._timezone = seasonal.period, seasonal.timezone
        #: per feature: None (not mapped) or (grids (slots, 101), slot usable (slots,), profile, salt)
        self._features = []
        for p in profiles:
            grid = seasonal.quantiles.get(p.name)
            usable = None if grid is None else seasonal.counts[p.name] >= MIN_SLOT_VALUES
            self._features.append(None if grid is None or not usable.any() else
                                  (grid, usable, p, _stable_salt("seasonal:" + p.name)))

    def apply(self, x: np.ndarray, ts: np.ndarray, start: int) -> np.ndarray:
        """The mapped copy of x ((features, events), as `NumericValues.x` encodes it) of events
        start.. with times ts (NaN: none)."""
        slots = slot_of(ts, self._period, self._timezone)
        out = x.copy()
        events = np.arange(start, start + x.shape[1], dtype=np.int64)
        # the batch's events by slot, once for every feature (a batch in time order spans one slot or two)
        present = np.unique(slots[slots >= 0]).tolist()
        for j, feature in enumerate(self._features):
            if feature is None:
                continue
            grid, usable, profile, salt = feature
            at = np.flatnonzero((slots >= 0) & np.isfinite(x[j]))
            at = at[usable[slots[at]]]
            if len(at) == 0:
                continue
            v, slot_of_value = x[j, at], slots[at]
            lo, hi = np.empty(len(at), dtype=np.int64), np.empty(len(at), dtype=np.int64)
            for slot in present:
                within = slot_of_value == slot
                if usable[slot] and within.any():
                    lo[within] = np.searchsorted(grid[slot], v[within], side="left")
                    hi[within] = np.searchsorted(grid[slot], v[within], side="right")
            out[j, at] = _mapped(v, grid, slot_of_value, lo, hi, profile, _hashed_uniform(events[at], salt))
        return out


def _mapped(v: np.ndarray, grids: np.ndarray, slots: np.ndarray, lo: np.ndarray, hi: np.ndarray,
            p: NumericProfile, draw: np.ndarray) -> np.ndarray:
    """Q(F_s(v)) of values v in slots s, with the feature's grids (slots, 101) and each value's
    searchsorted left (lo) and right (hi) positions in its slot's grid; draw: uniforms for ties."""
    below, above = grids[slots, np.clip(lo - 1, 0, _STEPS)], grids[slots, np.clip(lo, 0, _STEPS)]
    with np.errstate(invalid="ignore", divide="ignore"):
        between = (lo - 1 + (v - below) / (above - below)) / _STEPS
    # on grid values lo..hi-1 (a point mass): a rank drawn inside the mass, its ends halfway to the neighbours
    first, last = np.maximum(lo - 0.5, 0.0), np.minimum(hi - 0.5, _STEPS)
    tied = (first + draw * (last - first)) / _STEPS
    u = np.clip(np.where(hi > lo, tied, between), 0.0, 1.0)
    u[lo == 0] = 0.0  # below the slot's range (ties at its minimum have hi > lo)
    u[(lo > _STEPS)] = 1.0
    if p.discrete_values is not None:
        cumulative = np.cumsum(p.discrete_freqs)
        out = p.discrete_values[np.minimum(np.searchsorted(cumulative, u * cumulative[-1]), len(cumulative) - 1)]
    else:
        out = np.interp(u, QUANTILE_PROBS, p.quantiles)
        if p.integer_valued:
            out = np.round(out)
    # out of the whole profile's range: kept as it is (the out-of-range test and the diagnosis see it)
    return np.where((v < p.min) | (v > p.max), v, out)
