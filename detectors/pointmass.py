"""Point masses: Bernoulli CUSUMs of the share of one value, against its training share.

A default fill (0 or -1 written for a missing value), a stuck value or a stuck category puts a share
of the events on one value. The location and spread scores see that late when the value sits near
the centre, and the window tests only when a window closes. Two indicators per event catch it:

- *value share*: the event's value is v, one of the feature's most frequent training values
  (`NumericProfile.top_values`, a categorical feature's top categories), expected at v's training
  share of the events;
- *repeat*: the event's value equals the previous event's (both valid; a categorical's "other"
  bucket never counts), expected at the training collision probability sum_v p_v^2 (an upper
  bound when only the top values' shares are known): a value stuck anywhere, a fill at a value
  training hardly had, values bucketed onto a coarse grid;
- *grid* (numeric): the value is a multiple of a step coarse against training's spread
  (`bucketing_step`: values bucketed to tens), or is off the grid training was measured on
  (`training_grid`: miles sent as km are no whole numbers), expected at training's share.

Each chain is a Bernoulli CUSUM (`detectors.cusum`), its expected rate the training one plus the
baseline's sampling allowance (`rate_weights`' rule), the alternative POINT_MASS_RISE higher:
these defects are large jumps of one share, not drifts (a repeat or grid chain: REPEAT_RATIO times the
expected rate, see `point_mass_weights`). A feature's chains share Wald's bound: each
threshold is RATE_H + ln(number of the feature's chains), a grid chain counted GRID_WEIGHT and its
own threshold RATE_H + ln(that total / GRID_WEIGHT). Features of a time-ordered baseline get no
chains: the serial dependence of these indicators is not measured (consecutive hours repeat a
rounded value), so their false-alarm rate would not hold.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from baselines.profile import CategoricalProfile, NumericProfile
from detectors import _kernels
from detectors import thresholds as T
from detectors.cusum import BlockAccumulator, CusumBank, bernoulli_llr_weights, blocks_touched
from detectors.diagnosis import NUMERIC_SENTINELS, bucketing_step, training_grid, training_share_on_step

__all__ = ["GRID_QUANTILE_ROWS", "GRID_WEIGHT", "MAX_VALUE_CHAINS", "OFF_GRID", "ON_COARSE_GRID", "POINT_MASS_RISE",
           "REPEAT_RATIO", "PointMassBank", "PointMassChain",
           "categorical_chains", "numeric_chains", "point_mass_evidence", "point_mass_weights", "value_share",
           "watched_values", "with_point_mass"]

#: the alternative of every point-mass chain: the expected share plus this (at most halfway to 1)
POINT_MASS_RISE = 0.2
#: a repeat chain's alternative: this many times its expected rate (see `point_mass_weights`)
REPEAT_RATIO = 4.0
#: value-share chains per feature for its most frequent training values (categories)
MAX_VALUE_CHAINS = 5
#: most frequent values a numeric profile lists (`NumericProfile.top_values`)
TOP_VALUES_KEPT = 10
#: the `test` of a chain in alarm evidence
VALUE_SHARE, REPEAT, ON_COARSE_GRID, OFF_GRID = "value_share", "repeat", "on_coarse_grid", "off_training_grid"
#: rows a grid share read off the profile's quantile grid is worth (its allowance): the 999 inner quantiles
GRID_QUANTILE_ROWS = 999
#: a grid chain's part of its feature's false-alarm budget, a value or repeat chain's being 1: adding
#: them leaves the fills' and stuck values' chains almost their whole threshold (a delay's 8 chains: ln 8.5 for ln 8),
#: while a bucketing or conversion puts every event on (or off) the grid and needs one more hit
GRID_WEIGHT = 0.25


class PointMassChain(NamedTuple):
    """One chain: feature row j, the value watched (None: the repeat indicator), its expected share of
    events in training, and the rows that share is estimated from (its allowance). A grid chain
    watches no value but whether the value is a multiple of `step` (`off_step`: whether it is not)."""

    j: int
    value: float | None
    share: float
    rows: int
    step: float | None = None
    off_step: bool = False


def point_mass_weights(share: float, rows: int, repeat: bool = False) -> tuple[int, int, float]:
    """Fixed-point LLR weights (hit, non-hit) and p0 of a point-mass chain expecting `share` (from
    `rows` rows): p0 is the share plus 4 standard errors (at least RATE_FLOOR), the alternative
    p0 + POINT_MASS_RISE, at most halfway to 1; a repeat (or grid) chain's REPEAT_RATIO p0 (a hit then
    weighs at most ln 4, so that even a value stuck from one event on alarms only after MIN_CHANGE_VALUES
    repeats: the diagnosis gets that many values after the change; likewise values bucketed or
    converted off training's grid). A share within RATE_FLOOR of 1 cannot rise: (0, 0).

    >>> hit, miss, p0 = point_mass_weights(0.0, 200_000)
    >>> round(p0, 3), round(hit / T.LLR_SCALE, 2), round(miss / T.LLR_SCALE, 3)
    (0.002, 4.62, -0.224)
    >>> round(point_mass_weights(0.0, 200_000, repeat=True)[0] / T.LLR_SCALE, 2)
    1.39
    """
    p = max(share, 1.0 / max(rows, 1))
    p0 = max(share + T.BASELINE_ALLOWANCE_SD * math.sqrt(p * (1 - p) / max(rows, 1)), T.RATE_FLOOR)
    if p0 >= 1.0 - T.RATE_FLOOR:
        return 0, 0, min(p0, 1.0)
    p1 = REPEAT_RATIO * p0 if repeat else p0 + POINT_MASS_RISE
    hit, miss = bernoulli_llr_weights(p0, min(p1, (1 + p0) / 2), T.LLR_SCALE)
    return hit, miss, p0


def numeric_chains(profiles: Sequence[NumericProfile]) -> list[PointMassChain]:
    """The chains of numeric features: a value-share chain per top value (`top_values`, at most
    MAX_VALUE_CHAINS) and per usual placeholder inside the training range (`NUMERIC_SENTINELS`: 0, -1,
    999...), a repeat chain; none for a feature without variation or from a time-ordered baseline."""
    out = []
    for j, p in enumerate(profiles):
        if p.serial_inflation is not None or p.count < 2 or p.std <= 0:
            continue
        valid = p.count / max(p.total, 1)
        if p.discrete_freqs is not None:
            rows, collision = p.count, float(np.sum(np.square(p.discrete_freqs)))
        else:  # top values from a sample; every value off the list has at most the smallest listed share
            rows = min(p.count, RESERVOIR_ROWS)
            shares = np.array([s for _, s in p.top_values], dtype=np.float64)
            rest = max(1.0 - shares.sum(), 0.0)
            bound = shares.min() if len(shares) >= TOP_VALUES_KEPT else 2.0 / rows
            collision = float(np.sum(np.square(shares)) + rest * bound)
        out += [PointMassChain(j, v, s * valid, rows) for v, s in watched_values(p).items()]
        out.append(PointMassChain(j, None, collision * valid * valid, rows))
        out += _grid_chains(j, p, valid)
    return out


def watched_values(p: NumericProfile) -> dict[float, float]:
    """The values whose share a numeric feature's chains watch, with their training shares: its most
    frequent values (at most MAX_VALUE_CHAINS) and the usual placeholders inside its training range."""
    watched = dict(p.top_values[:MAX_VALUE_CHAINS])
    for v in NUMERIC_SENTINELS:
        if p.min <= v <= p.max and v not in watched:
            watched[v] = value_share(p, v)
    return watched


def _grid_chains(j: int, p: NumericProfile, valid: float) -> list[PointMassChain]:
    """A numeric feature's grid chains: values on a coarse step (bucketing) and values off training's grid
    (a conversion by a factor that is no multiple of it), each where training makes it rare."""
    rows = p.count if p.discrete_freqs is not None or p.integer_valued else GRID_QUANTILE_ROWS
    out = []
    coarse = bucketing_step(p)
    if coarse is not None:
        out.append(PointMassChain(j, None, training_share_on_step(p, coarse) * valid, rows, coarse))
    grid = training_grid(p)
    if grid is not None:
        out.append(PointMassChain(j, None, (1.0 - training_share_on_step(p, grid)) * valid, rows, grid, True))
    return out


def value_share(p: NumericProfile, v: float) -> float:
    """Training share of exactly v, at its upper end: exact for a few-valued feature, else the larger of
    its `top_values` share and its ties in the quantile grid plus one (a value tied over t of the 1001
    quantiles holds at most (t + 1) / 1000 of the rows).

    >>> from baselines.profile import QUANTILE_PROBS
    >>> p = NumericProfile("x", count=1000, n_missing=0, n_invalid=0, mean=0.5, std=0.3, min=0.0, max=1.0,
    ...                    quantiles=np.linspace(0, 1, len(QUANTILE_PROBS)), bin_edges=np.array([0.5]),
    ...                    bin_freqs=np.array([0.5, 0.5]))
    >>> value_share(p, 0.0)
    0.002
    """
    if p.discrete_values is not None and p.discrete_freqs is not None:
        hit = np.flatnonzero(p.discrete_values == v)
        return float(p.discrete_freqs[hit[0]]) if len(hit) else 0.0
    top = max((s for tv, s in p.top_values if tv == v), default=0.0)
    ties = int(np.count_nonzero(p.quantiles == v))
    return max(top, (ties + 1) / (len(p.quantiles) - 1) if ties else 0.0)


def categorical_chains(profiles: Sequence[CategoricalProfile], expected: Sequence[np.ndarray],
                       rows: Sequence[int]) -> list[PointMassChain]:
    """The chains of categorical features: a value-share chain per top category (its code as the
    value; `expected` holds each feature's expected shares of its categories, "other" last), a
    repeat chain over the stored categories; none from a time-ordered baseline."""
    out = []
    for j, (p, shares, n) in enumerate(zip(profiles, expected, rows)):
        known = shares[:-1]
        if p.serial_inflation is not None or len(known) < 2:
            continue
        valid = p.count / max(p.total, 1)
        top = np.argsort(-known, kind="stable")[:MAX_VALUE_CHAINS]
        out += [PointMassChain(j, float(c), float(known[c]) * valid, p.count) for c in top.tolist()]
        out.append(PointMassChain(j, None, float(np.sum(np.square(known))) * valid * valid, n))
    return out


def point_mass_evidence(value: Any, expected_rate: float, onset: int,
                        grid: tuple[float, bool] | None = None) -> dict[str, Any]:
    """An alarm's evidence: the test (`value_share` of `value`, `repeat` when value is None, or for a grid
    chain (step, off) `on_coarse_grid` / `off_training_grid` with its step), the rate it expected, the
    change point.

    >>> point_mass_evidence(0.0, 0.0512345678, 2000)
    {'test': 'value_share', 'value': 0.0, 'expected_rate': 0.051235, 'change_start_event': 2000}
    >>> point_mass_evidence(None, 0.002, 2000, (1.0, True))["test"]
    'off_training_grid'
    """
    if grid is not None:
        evidence: dict[str, Any] = {"test": OFF_GRID if grid[1] else ON_COARSE_GRID, "step": grid[0]}
    elif value is None:
        evidence = {"test": REPEAT}
    else:
        evidence = {"test": VALUE_SHARE, "value": value}
    evidence.update(expected_rate=round(float(expected_rate), 6), change_start_event=onset)
    return evidence


#: rows the top values' shares of a column without a full value count are estimated from
#: (baselines.accumulate.RESERVOIR_SIZE, not imported: `detectors` reads baselines, not their builder)
RESERVOIR_ROWS = 200_000


class PointMassBank:
    """Point-mass chains over the rows of an encoded (features, events) float matrix: a valid value
    is finite, anything else (NaN missing, inf invalid, a categorical's "other") never hits.

    >>> bank = PointMassBank([PointMassChain(0, 0.0, 0.05, 10_000), PointMassChain(0, None, 0.01, 10_000)], 1)
    >>> x = np.zeros((1, 32))  # every event 0: the value chain alarms at once, the repeat chain after 16 repeats
    >>> [(e, bank.chain(c)[1]) for e, c, _, _ in bank.update(x, 0)]
    [(15, 0.0), (23, None), (31, 0.0)]
    """

    def __init__(self, chains: Sequence[PointMassChain], n_rows: int):
        # the kernel's chains first, one row's side by side (its hash per row); the grid chains after them
        chains = sorted(chains, key=lambda c: (c.step is not None, c.j))
        m = len(chains)
        weights = np.array([point_mass_weights(c.share, c.rows, c.value is None) for c in chains],
                           dtype=np.float64).reshape(m, 3)
        #: the chains the kernel counts (value and repeat), then the grid chains' steps and directions
        self._n_kernel = sum(c.step is None for c in chains)
        self._steps = np.array([c.step for c in chains[self._n_kernel:]], dtype=np.float64)
        self._off_step = np.array([c.off_step for c in chains[self._n_kernel:]], dtype=np.int64)
        self._hit = weights[:, 0].astype(np.int64)
        self._miss = weights[:, 1].astype(np.int64)
        #: each chain's expected rate p0 (an alarm's evidence)
        self._expected = weights[:, 2]
        #: each chain's feature row, and its value (NaN: the repeat indicator)
        self._rows = np.array([c.j for c in chains], dtype=np.int64)
        self._grid_rows = self._rows[self._n_kernel:].copy()
        self._chain_values = np.array([np.nan if c.value is None else c.value for c in chains], dtype=np.float64)
        share = np.array([GRID_WEIGHT if c.step is not None else 1.0 for c in chains], dtype=np.float64)
        per_feature = np.bincount(self._rows, weights=share, minlength=n_rows)
        #: each chain's threshold (fixed point): RATE_H + ln(its feature's chains, a grid chain counted
        #: GRID_WEIGHT, over its own weight); the feature's chains together keep Wald's bound
        self.thresholds = np.rint((T.RATE_H + np.log(per_feature[self._rows] / share)) * T.LLR_SCALE
                                  ).astype(np.int64)
        self._cusum = CusumBank(self.thresholds)
        self._blocks = BlockAccumulator(T.CUSUM_BLOCK, m)
        #: each row's value at the last event fed (NaN: none yet), the repeat indicator's memory
        self._last = np.full(n_rows, np.nan)

    def chain(self, i: int) -> tuple[int, float | None, float]:
        """Chain i's (feature row, value or None for the repeat and grid chains, expected rate p0)."""
        v = float(self._chain_values[i])
        return int(self._rows[i]), None if math.isnan(v) else v, float(self._expected[i])

    def grid(self, i: int) -> tuple[float, bool] | None:
        """Chain i's (step, whether it counts values off the step) if it is a grid chain, else None."""
        k = i - self._n_kernel
        return None if k < 0 else (float(self._steps[k]), bool(self._off_step[k]))

    def __len__(self) -> int:
        return len(self._rows)

    def update(self, x: np.ndarray, start: int) -> list[tuple[int, int, int, int]]:
        """Feed events start..start+n-1 (x: (rows, n)); return (event, chain, statistic, onset) per
        alarm, onset the last event at which the chain stood at 0 (`CusumBank.update`)."""
        n, m = x.shape[1], len(self._rows)
        if not m or n == 0:
            return []
        x = np.ascontiguousarray(x, dtype=np.float64)
        nb, k = blocks_touched(start, n, T.CUSUM_BLOCK), self._n_kernel
        raw = np.empty((nb, m), dtype=np.int64)
        counted = np.empty((nb, k), dtype=np.int64)
        _kernels.point_mass_blocks(x, start, T.CUSUM_BLOCK, self._rows[:k], self._chain_values[:k], self._last,
                                   counted)
        raw[:, :k] = counted
        if m > k:  # the grid chains (compiled: numpy's passes over the values cost 12-15% of a monitor)
            grid = np.empty((nb, m - k), dtype=np.int64)
            _kernels.grid_blocks(x, start, T.CUSUM_BLOCK, self._grid_rows, self._steps, self._off_step, grid)
            raw[:, k:] = grid
        sums, ends = self._blocks.add_sums(raw, start, n)
        return self._cusum.update_from_sums(sums, ends, self._hit, self._miss, T.CUSUM_BLOCK)

    def statistic(self, chain: int) -> float:
        """The chain's CUSUM statistic (log-likelihood ratio units)."""
        return float(self._cusum.statistics[chain] / T.LLR_SCALE)

    def feature_statistics(self, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Per feature row: the statistic and threshold (log-likelihood ratio units) of its chain nearest
        its threshold (a grid chain's is higher than the row's other chains'), NaN for a row without chains.

        >>> bank = PointMassBank([PointMassChain(1, 0.0, 0.05, 10_000)], 2)
        >>> _ = bank.update(np.zeros((2, 8)), 0)
        >>> statistic, threshold = bank.feature_statistics(2)
        >>> bool(np.isnan(statistic[0])), round(float(statistic[1]), 2), round(float(threshold[1]), 2)
        (True, 11.86, 20.72)
        """
        statistic, threshold = np.full(n_rows, np.nan), np.full(n_rows, np.nan)
        if len(self._rows):
            stats = np.asarray(self._cusum.statistics, dtype=np.float64) / T.LLR_SCALE
            limits = self.thresholds / T.LLR_SCALE
            # each row's chains in order of statistic / threshold: the last of a row is its nearest
            order = np.lexsort((stats / limits, self._rows))
            last = order[np.r_[self._rows[order][1:] != self._rows[order][:-1], True]]
            statistic[self._rows[last]], threshold[self._rows[last]] = stats[last], limits[last]
        return statistic, threshold

    def state_dict(self, last_values: bool = True) -> dict[str, Any]:
        """The chains' statistics, the incomplete block and (last_values) each row's last value, as
        plain data. Without the last values (a numeric feature's are production values: examples off),
        a restored bank counts no repeat at its first event."""
        return {"cusum": self._cusum.state_dict(), "blocks": self._blocks.state_dict(),
                "last": self._last.tobytes() if last_values else None}  # bytes: NaN (none yet) compares equal

    def load_state(self, state: dict[str, Any] | None) -> None:
        """Continue from a `state_dict` (None, a checkpoint from before these chains: start afresh)."""
        if state is None or len(state["cusum"]["s"]) != len(self):  # from before these chains (or the grid's)
            return
        self._cusum.load_state(state["cusum"])
        self._blocks.load_state(state["blocks"])
        self._last = np.full(len(self._last), np.nan) if state["last"] is None else \
            np.frombuffer(state["last"], dtype=np.float64).copy()


def with_point_mass(statistics: list[dict[str, Any]], bank: PointMassBank) -> list[dict[str, Any]]:
    """Feature statistics (in row order) with each watched feature's point-mass chain nearest its
    threshold (`point_mass_cusum`) and that threshold (`point_mass_threshold`): what the report charts for a
    `point_mass` alert and what the drift score counts; a feature without chains gets neither."""
    statistic, threshold = bank.feature_statistics(len(statistics))
    for stats, s, h in zip(statistics, statistic.tolist(), threshold.tolist()):
        if not math.isnan(s):
            stats["point_mass_cusum"], stats["point_mass_threshold"] = s, h
    return statistics
