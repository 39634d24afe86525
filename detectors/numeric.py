"""Monitors of numeric features (and of the prediction confidence), vectorised across features.

Per feature, on the PIT score u of each valid value (detectors.pit):
- CUSUMs on blocks of events, against training: location (mean of u) and scale (mean of |2u - 1|),
  both directions; Bernoulli CUSUMs on the missing, invalid and out-of-training-range rates;
- tumbling windows of events: KS of the window's u against uniform (alarm), PSI / Jensen-Shannon
  on PIT deciles and Wasserstein-1 in the feature's units (reported);
- River ADWIN and Page-Hinkley on block means of u (changes within production).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from baselines.profile import QUANTILE_PROBS, CategoricalProfile, NumericProfile
from baselines.serial import inflation_at
from detectors import _kernels
from detectors import thresholds as T
from detectors.cusum import (
    DISABLED,
    BlockAccumulator,
    CusumBank,
    bernoulli_llr_weights,
    blocks_touched,
    serial_threshold,
)
from detectors.episodes import RIVER_DETECTORS, Alarm, AlarmSource, Candidate
from detectors.pit import BatchedPIT
from detectors.pointmass import PointMassBank, numeric_chains, point_mass_evidence, with_point_mass
from detectors.recent import RecentRing
from detectors.river_blocks import BlockChangeDetectors
from detectors.stats import (
    jensen_shannon,
    jensen_shannon_rows,
    kolmogorov_sf,
    kolmogorov_sf_rows,
    ks_uniform_rows,
    psi,
    psi_rows,
    wasserstein_from_histogram,
    wasserstein_rows,
)

__all__ = ["MIN_POOLED_SUMMARY", "POOLED_VALUES", "Z_PER_UNIT", "NumericBank", "missing_rate_rows", "pooled_quantiles",
           "rate_threshold", "rate_weights", "summarise_recent", "window_cuts"]

ONE = 1 << T.U_BITS
HALF = ONE >> 1
#: standardised-score units per fixed-point unit: z = (u - 1/2) * sqrt(12)
Z_PER_UNIT = math.sqrt(12.0) / ONE
FINE_BINS = 100
DECILES = np.full(10, 0.1)

LOC_UP, LOC_DOWN, SCALE_UP, SCALE_DOWN, MISSING, INVALID, OUT_OF_RANGE = range(7)
CHAINS = ("location_up", "location_down", "scale_up", "scale_down", "missing", "invalid", "out_of_range")
N_CHAINS = len(CHAINS)
#: the rank (the test's own order) of a feature's point-mass alarms (`detectors.pointmass`), after its CUSUMs'
POINT_MASS = N_CHAINS
#: alarm -> (kind, family, detector) for a feature, and for the confidence
FEATURE_ALARMS = {
    LOC_UP: ("drift", "distribution", "cusum"),
    LOC_DOWN: ("drift", "distribution", "cusum"),
    SCALE_UP: ("drift", "distribution", "cusum"),
    SCALE_DOWN: ("drift", "distribution", "cusum"),
    MISSING: ("data_quality", "missing", "missing_rate"),
    INVALID: ("data_quality", "invalid", "invalid_type"),
    OUT_OF_RANGE: ("data_quality", "out_of_range", "out_of_range"),
}
CONFIDENCE_ALARMS = {
    LOC_DOWN: ("confidence_drop", "confidence", "cusum"),
    INVALID: ("data_quality", "invalid", "invalid_confidence"),
}


def _ks_critical(alpha: float) -> float:
    """x with P(sqrt(n) D > x) = alpha, by bisection on the Kolmogorov tail."""
    lo, hi = 0.5, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if kolmogorov_sf(mid) > alpha else (lo, mid)
    return hi


KS_CRITICAL = _ks_critical(T.WINDOW_ALPHA)


def rate_weights(rate: float, n: int) -> tuple[int, int, float]:
    """Bernoulli CUSUM weights for a rate expected at `rate` in a baseline of n rows.

    The expected rate p0 gets an allowance for the baseline's own sampling error, then the floor.
    The alternative p1 doubles it (at least +0.05) but goes at most halfway to 1, i.e. above a third
    it halves the complementary rate (80% missing -> 90%). The weights are the log-likelihood ratio
    of p1 against p0, so Wald's bound (ARL >= exp(RATE_H) under p0) holds at any expected rate. A
    rate expected within RATE_FLOOR of 1 has no room to rise: its chain never alarms (weights 0).

    Returns
    -------
    tuple of int, int, float
        Fixed-point weight of a hit, of a non-hit, and p0.

    Examples
    --------
    >>> [round(rate_weights(r, 10_000)[2], 3) for r in (0.0, 0.1, 0.8, 1.0)]
    [0.002, 0.112, 0.816, 1.0]
    >>> rate_weights(1.0, 10_000)[:2]
    (0, 0)
    """
    p = max(rate, 1.0 / max(n, 1))
    p0 = max(rate + T.BASELINE_ALLOWANCE_SD * math.sqrt(p * (1 - p) / max(n, 1)), T.RATE_FLOOR)
    if p0 >= 1.0 - T.RATE_FLOOR:
        return 0, 0, min(p0, 1.0)
    p1 = min(max(2 * p0, p0 + 0.05), (1 + p0) / 2)
    hit, miss = bernoulli_llr_weights(p0, p1, T.LLR_SCALE)
    return hit, miss, p0


def _allow_serial_dependence(h: np.ndarray, inflation: np.ndarray, k: float, missing: np.ndarray) -> None:
    """Raise one feature's chain thresholds h (fixed point, in chain order; in place) by
    `serial_threshold` for its measured serial dependence (`NumericProfile.serial_inflation`, rows
    location, scale, missing): the score chains on the scores' (variance 1, drift k), the missing
    chain on the missing indicator's, its increments standardised (weights (hit, miss, p0))."""
    location, scale, missing_v = inflation
    for chain, v in ((LOC_UP, location), (LOC_DOWN, location), (SCALE_UP, scale), (SCALE_DOWN, scale)):
        if h[chain] != DISABLED:
            h[chain] = round(serial_threshold(h[chain] * Z_PER_UNIT, k, v) / Z_PER_UNIT)
    if h[MISSING] != DISABLED:
        h[MISSING] = rate_threshold(int(h[MISSING]), missing, missing_v)


def missing_rate_rows(p: NumericProfile | CategoricalProfile) -> float:
    """Rows of independent events the baseline's missing rate is as precise as: its total, divided
    by the missing indicator's V over the whole baseline when it was measured in time order."""
    if p.serial_inflation is None:
        return p.total
    return p.total / inflation_at(p.serial_inflation[-1], max(p.total, 1))


def rate_threshold(h: int, weights: np.ndarray, inflation: np.ndarray) -> int:
    """A Bernoulli rate chain's threshold h (fixed point) raised by `serial_threshold` for the serial
    dependence of its indicator; weights: (hit, miss, p0) as `rate_weights` gives them."""
    hit, miss, p0 = float(weights[0]), float(weights[1]), float(weights[2])
    sd = math.sqrt(p0 * (1.0 - p0)) * abs(hit - miss)
    if sd <= 0:
        return h
    drift = -(p0 * hit + (1.0 - p0) * miss) / sd
    return round(serial_threshold(h / sd, drift, inflation) * sd)


def window_cuts(start: int, n: int, window: int) -> list[int]:
    """Offsets that split a batch of events start..start+n-1 where tumbling windows of `window`
    events (aligned on the event count) end: [0, ..., n], no empty segment.

    >>> window_cuts(1500, 2000, 1000)
    [0, 500, 1500, 2000]
    """
    first = (-start) % window
    return [0] + [c for c in range(first, n, window) if c > 0] + [n]


class NumericBank:
    """All numeric features of a model (or the confidence alone, with `confidence=True`).

    Parameters
    ----------
    profiles
        The features' training profiles.
    window
        Tumbling window of the model's events for the KS test (a multiple of the CUSUM block).
    min_window_values
        Fewest valid values a window needs before its test runs.
    recent
        Recent events kept per feature for summaries.
    confidence
        Watch the prediction confidence: a drop and invalid values alarm, no windows, no River.
    names
        The features' names (default: the profiles').
    """

    def __init__(self, profiles: Sequence[NumericProfile], window: int, min_window_values: int,
                 recent: int, confidence: bool = False, names: Sequence[str] | None = None):
        if window % T.CUSUM_BLOCK or T.TIMING_BLOCK % T.CUSUM_BLOCK or T.RIVER_BLOCK % T.TIMING_BLOCK:
            raise ValueError(f"window and timing block must be multiples of the CUSUM block ({T.CUSUM_BLOCK}), "
                             f"the River block of the timing block ({T.TIMING_BLOCK})")
        self._profiles = list(profiles)
        self._names = list(names) if names is not None else [p.name for p in self._profiles]
        self._confidence = confidence
        self._alarms = CONFIDENCE_ALARMS if confidence else FEATURE_ALARMS
        #: per CUSUM chain (test * f + j): its alarms' (rank, feature, family, detector, test, j)
        self._chain_keys = [((AlarmSource.NUMERIC_CUSUM, test, j), name, *self._alarms[test][1:], test, j)
                            if test in self._alarms else None for test in range(N_CHAINS)
                            for j, name in enumerate(self._names)]
        self._window = window
        self._min_window_values = min_window_values
        f = len(self._profiles)
        self._pit = BatchedPIT.shared(self._profiles)
        #: per feature, V of its location scores over L events (`inflation_at`; None: independent events)
        self._serial = [None if p.serial_inflation is None else p.serial_inflation[0] for p in self._profiles]
        # a time-ordered baseline's estimates are as precise as count / V(count) independent rows
        counts = np.array([max(p.count, 1) / inflation_at(v, max(p.count, 1))
                           for p, v in zip(self._profiles, self._serial)], dtype=np.float64)
        #: Page-Hinkley standardises a block mean by its valid values: this many events count as one.
        #: It is a CUSUM of block means (reference delta, threshold lambda): like the chains, it drifts
        #: to an alarm over lambda / delta blocks, so V over that many events (scaling its inputs by
        #: 1 / sqrt(V) scales both its reference and threshold by sqrt(V): the same false-alarm rate)
        self._river_inflation = [inflation_at(v, T.RIVER_BLOCK * T.PAGE_HINKLEY_THRESHOLD / T.PAGE_HINKLEY_DELTA)
                                 for v in self._serial]
        #: the window's KS critical value, sqrt(V) times the independent one's
        self._ks_inflation = np.sqrt([inflation_at(v, window) for v in self._serial])
        self._mins = np.array([p.min for p in self._profiles], dtype=np.float64)
        self._maxs = np.array([p.max for p in self._profiles], dtype=np.float64)
        k = T.CUSUM_K + T.BASELINE_ALLOWANCE_SD / np.sqrt(counts)
        self._k_fixed = np.rint(k / Z_PER_UNIT).astype(np.int64)
        self._reference_k = [round(v, 4) for v in (self._k_fixed * Z_PER_UNIT).tolist()]  # the alarms' evidence
        self._ks_allowance = T.KS_BASELINE_ALLOWANCE / np.sqrt(counts)
        weights = np.array([[rate_weights(p.missing_rate, missing_rate_rows(p)), rate_weights(p.invalid_rate, p.total),
                             rate_weights(0.0, p.count)] for p in self._profiles]).reshape(f, 3, 3)
        self._llr_hit = weights[:, :, 0].astype(np.int64)  # (f, 3): missing, invalid, out of range
        self._llr_miss = weights[:, :, 1].astype(np.int64)
        self._expected_rates = weights[:, :, 2].tolist()  # (f, 3) floats: an alarm's evidence, no numpy scalars
        # the rate chains' weights in chain order: missing, invalid, out of range, each feature by feature
        self._rate_hit = np.ascontiguousarray(self._llr_hit.T).ravel()
        self._rate_miss = np.ascontiguousarray(self._llr_miss.T).ravel()
        h = np.full((N_CHAINS, f), DISABLED, dtype=np.int64)
        for chain in self._alarms:
            h[chain] = round(T.CUSUM_H / Z_PER_UNIT) if chain <= SCALE_DOWN else round(T.RATE_H * T.LLR_SCALE)
        for j, p in enumerate(self._profiles):
            if p.serial_inflation is not None:
                _allow_serial_dependence(h[:, j], p.serial_inflation, k[j], weights[j, 0])
        #: each chain's threshold (fixed point), (N_CHAINS, f)
        self._h = h
        self._cusum = CusumBank(h.ravel())
        self._blocks = BlockAccumulator(T.CUSUM_BLOCK, 6 * f)
        # location sums and valid counts, re-blocked from CUSUM blocks to timing blocks (the model's
        # change-timing history), and from those to River blocks
        self._timing_blocks = BlockAccumulator(T.TIMING_BLOCK // T.CUSUM_BLOCK, 2 * f)
        self._river_blocks = BlockAccumulator(T.RIVER_BLOCK // T.TIMING_BLOCK, 2 * f)
        self._river = [] if confidence else [BlockChangeDetectors() for _ in range(f)]
        self._hist = np.zeros((f, FINE_BINS), dtype=np.int64)
        self._window_counts = np.zeros((f, 4), dtype=np.int64)  # valid, missing, invalid, out of range
        self._last_hist = np.zeros((f, FINE_BINS), dtype=np.int64)
        self._last_counts = np.zeros((f, 4), dtype=np.int64)
        #: `_window_statistics` of the last closed window (None: not computed since it closed)
        self._last_window_statistics: list[dict[str, Any]] | None = None
        #: last events' values: the value if valid, NaN if missing, +inf if invalid
        self._recent = RecentRing(f, recent, np.nan, np.float64)
        self._completed_timing: tuple[np.ndarray, np.ndarray] | None = None
        #: the share of one value (a fill, a stuck value) against training's; none on the confidence
        self._point_mass = PointMassBank([] if confidence else numeric_chains(self._profiles), f)

    @property
    def names(self) -> list[str]:
        return self._names

    # ---- the batch ---------------------------------------------------------------------
    def update(self, x: np.ndarray, start: int, run_gap: int = 0, received: np.ndarray | None = None
               ) -> list[Candidate | Alarm]:
        """x: (n_features, n_events) for events start.. of the model, as `NumericValues.x` encodes
        it: the value if valid, NaN if missing, +inf if invalid. Its CUSUMs' alarms come as `Alarm`s, a
        chain's alarms each within `run_gap` events of the one before as one (`Alarm.more`). received: the
        values as received when x is their seasonal mapping (`detectors.seasonal`): the recent values
        that alerts summarise and the diagnosis reads are those."""
        f, n = x.shape
        self._completed_timing = None
        if f == 0 or n == 0:
            return []
        u = self._pit.transform(x, start)
        cuts = [0, n] if self._confidence else window_cuts(start, n, self._window)
        raw = np.empty((blocks_touched(start, n, T.CUSUM_BLOCK), 6 * f), dtype=np.int64)
        hist = np.empty((len(cuts) - 1, f, FINE_BINS), dtype=np.int64)
        counts = np.empty((len(cuts) - 1, f, 4), dtype=np.int64)
        _kernels.numeric_blocks(x, u, start, T.CUSUM_BLOCK, T.U_BITS, self._mins, self._maxs,
                                np.array(cuts, dtype=np.int64), raw, hist, counts)
        sums, ends = self._blocks.add_sums(raw, start, n)
        candidates = self._cusum_alarms(sums, ends, run_gap)
        candidates += self._point_mass_alarms(x, start, run_gap)
        if self._river:
            candidates += self._river_alarms(sums, ends, f)
        if not self._confidence:
            candidates += self._windows(hist, counts, cuts, start)
        self._recent.hold_batch(x if received is None else received, start)
        return candidates

    def end_batch(self) -> None:
        """Keep the last events for summaries (after the batch's alerts are built)."""
        self._recent.commit()

    def _cusum_alarms(self, sums: np.ndarray, ends: np.ndarray, run_gap: int) -> list[Alarm]:
        if len(sums) == 0:
            return []
        alarms = self._cusum.update_from_sums(sums, ends, self._rate_hit, self._rate_miss, T.CUSUM_BLOCK,
                                              self._k_fixed, HALF)
        keys, build = self._chain_keys, self._cusum_candidate
        out = []
        for chain, run in _runs(alarms, run_gap):
            rank, feature, family, detector, test, j = keys[chain]
            out.append(Alarm(run[0][0], rank, feature, family, detector, run[0][3], build,
                             (run[0][0], test, j, run[0][2], run[0][3]),
                             tuple((e, test, j, stat, onset) for e, _, stat, onset in run[1:])))
        return out

    def _point_mass_alarms(self, x: np.ndarray, start: int, run_gap: int) -> list[Alarm]:
        alarms = self._point_mass.update(x, start)
        out = []
        for chain, run in _runs(alarms, run_gap):
            j = self._point_mass.chain(chain)[0]
            out.append(Alarm(run[0][0], (AlarmSource.NUMERIC_CUSUM, POINT_MASS, j), self._names[j], "distribution",
                             "point_mass", run[0][3], self._point_mass_candidate,
                             (run[0][0], chain, run[0][2], run[0][3]),
                             tuple((e, chain, stat, onset) for e, _, stat, onset in run[1:])))
        return out

    def _point_mass_candidate(self, event: int, chain: int, stat: int, onset: int) -> Candidate:
        j, value, expected = self._point_mass.chain(chain)
        evidence = point_mass_evidence(value, expected, onset, self._point_mass.grid(chain))
        return Candidate(event_index=event, rank=(AlarmSource.NUMERIC_CUSUM, POINT_MASS, j),
                         feature=self._names[j], kind="drift", family="distribution", detector="point_mass",
                         statistic=stat / T.LLR_SCALE,
                         threshold=float(self._point_mass.thresholds[chain] / T.LLR_SCALE),
                         p_value=None, evidence=evidence, onset=onset)

    def _cusum_candidate(self, event: int, test: int, j: int, stat: int, onset: int) -> Candidate:
        kind, family, detector = self._alarms[test]
        if test <= SCALE_DOWN:
            statistic, threshold = stat * Z_PER_UNIT, self._h[test, j] * Z_PER_UNIT
            evidence = {"test": CHAINS[test], "reference_k": self._reference_k[j]}
        else:
            statistic, threshold = stat / T.LLR_SCALE, self._h[test, j] / T.LLR_SCALE
            evidence = {"test": CHAINS[test], "expected_rate": self._expected_rates[j][test - MISSING]}
        evidence["change_start_event"] = onset
        return Candidate(event_index=event, rank=(AlarmSource.NUMERIC_CUSUM, test, j), feature=self._names[j],
                         kind=kind, family=family, detector=detector, statistic=float(statistic),
                         threshold=float(threshold), p_value=None, evidence=evidence, onset=onset)

    def _river_alarms(self, sums: np.ndarray, ends: np.ndarray, f: int) -> list[Candidate]:
        if len(sums) == 0:
            return []
        # blocks are numbered end // size: CUSUM blocks -> timing blocks -> River blocks
        timing_sums, timing_ends = self._timing_blocks.add(
            np.concatenate([sums[:, :f], sums[:, 2 * f:3 * f]], axis=1), int(ends[0]) // T.CUSUM_BLOCK)
        if len(timing_sums) == 0:
            return []
        timing_ends = (timing_ends + 1) * T.CUSUM_BLOCK - 1
        self._completed_timing = (timing_sums, timing_ends)
        river_sums, river_ends = self._river_blocks.add(timing_sums, int(timing_ends[0]) // T.TIMING_BLOCK)
        river_ends = (river_ends + 1) * T.TIMING_BLOCK - 1
        out = []
        for row, event in zip(river_sums.tolist(), river_ends.tolist()):
            for j, detector in enumerate(self._river):
                nvalid = row[f + j]
                if nvalid == 0:
                    continue
                mean_u = 0.5 + row[j] / (nvalid * ONE)
                fired = detector.update(mean_u, nvalid / self._river_inflation[j], event)
                if fired:
                    evidence = {"test": fired, "block_events": T.RIVER_BLOCK, "block_mean_u": round(float(mean_u), 4),
                                "adwin_width_blocks": detector.adwin_width, "change_start_event": detector.onset + 1}
                    if fired == "page_hinkley":
                        threshold, p_value = T.PAGE_HINKLEY_THRESHOLD, None
                    else:  # ADWIN: the statistic is the number of old blocks it dropped, delta bounds the error
                        threshold, p_value = 1.0, T.ADWIN_DELTA
                    out.append(Candidate(event_index=event, rank=(AlarmSource.RIVER, RIVER_DETECTORS.index(fired), j),
                                         feature=self._names[j], kind="drift", family="distribution", detector=fired,
                                         statistic=detector.statistic, threshold=threshold, p_value=p_value,
                                         evidence=evidence, onset=detector.onset + 1))
        return out

    def _windows(self, hist: np.ndarray, counts: np.ndarray, cuts: list[int], start: int) -> list[Candidate]:
        """hist (segments, f, bins), counts (segments, f, 4) of the batch's window segments."""
        out = []
        for segment, b in enumerate(cuts[1:]):
            self._hist += hist[segment]
            self._window_counts += counts[segment]
            if (start + b) % self._window == 0:
                out += self._close_window(start + b - 1)
        return out

    def _close_window(self, event: int) -> list[Candidate]:
        hist = self._hist
        out = []
        for j, nvalid, ks, excess in _kernels.ks_alarms(hist, self._ks_allowance, self._min_window_values, KS_CRITICAL):
            excess /= self._ks_inflation[j]  # V >= 1: the kernel's alarms hold those of the inflated critical value
            if excess <= KS_CRITICAL:
                continue
            p_value = kolmogorov_sf(excess)
            d10 = hist[j].reshape(10, -1).sum(axis=1)
            evidence = {"test": "ks", "window_events": self._window, "window_values": nvalid,
                        "ks": round(ks, 4), "psi": round(psi(d10, DECILES), 4),
                        "jensen_shannon": round(jensen_shannon(d10, DECILES), 4),
                        "wasserstein": self._wasserstein(j, hist[j])}
            threshold = float(KS_CRITICAL * self._ks_inflation[j] / math.sqrt(nvalid) + self._ks_allowance[j])
            out.append(Candidate(event_index=event, rank=(AlarmSource.KS_WINDOW, 0, j), feature=self._names[j],
                                 kind="drift", family="distribution", detector="ks", statistic=ks, threshold=threshold,
                                 p_value=p_value, evidence=evidence, onset=event - self._window + 1))
        # the closed window becomes the last one, whose arrays, zeroed, take the next window
        self._last_hist, self._hist = hist, self._last_hist
        self._last_counts, self._window_counts = self._window_counts, self._last_counts
        self._hist.fill(0)
        self._window_counts.fill(0)
        self._last_window_statistics = None
        return out

    def _wasserstein(self, j: int, hist: np.ndarray) -> float:
        return round(wasserstein_from_histogram(hist, QUANTILE_PROBS, self._profiles[j].quantiles), 6)

    # ---- reporting ----------------------------------------------------------------------
    def completed_timing_blocks(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The last batch's completed timing blocks: (sums of location and valid count, last event)."""
        return self._completed_timing

    def recent_values(self, j: int, event_index: int | None = None, since: int | None = None) -> np.ndarray:
        """The feature's last `recent` events up to event_index (encoded: NaN missing, inf invalid)."""
        return self._recent.rows(j, event_index, since)

    def current_summary(self, j: int, event_index: int | None = None) -> dict[str, Any]:
        """`summarise_recent` of feature j's recent values up to event_index."""
        values = self.recent_values(j, event_index)
        return summarise_recent(values)

    def statistics(self) -> list[dict[str, Any]]:
        """Each feature's last closed window's distances and KS test, and its CUSUMs (the snapshot's),
        in feature order, as plain numbers. The window's figures are computed for all features at once when first
        asked after the window closed, and kept until the next closes."""
        if not self._names:
            return []
        window = self._window_statistics()
        f = len(self._names)
        s = np.asarray(self._cusum.statistics).reshape(N_CHAINS, f)
        location = (np.maximum(s[LOC_UP], s[LOC_DOWN]) * Z_PER_UNIT).tolist()
        scale = (np.maximum(s[SCALE_UP], s[SCALE_DOWN]) * Z_PER_UNIT).tolist()
        threshold = (self._h[LOC_UP] * Z_PER_UNIT).tolist()
        out = [{**w, "cusum_location": loc, "cusum_scale": sc, "cusum_threshold": h}
               for w, loc, sc, h in zip(window, location, scale, threshold)]
        for stats, river in zip(out, self._river):
            stats["adwin_width_blocks"] = river.adwin_width
        return with_point_mass(out, self._point_mass)

    def _window_statistics(self) -> list[dict[str, Any]]:
        """Per feature of the last closed window: psi, jensen_shannon, ks, ks_p_value, wasserstein
        (rounded as an alarm's evidence has it), window_values; kept until the next window closes."""
        if self._last_window_statistics is None:
            hist = self._last_hist
            ks, n = ks_uniform_rows(hist)
            seen = n > 0
            d10 = hist.reshape(len(hist), 10, FINE_BINS // 10).sum(axis=2)
            excess = np.sqrt(n) * np.maximum(ks - self._ks_allowance, 0.0) / self._ks_inflation
            quantiles = np.array([p.quantiles for p in self._profiles], dtype=np.float64).reshape(
                len(hist), len(QUANTILE_PROBS))
            columns = {
                "psi": np.where(seen, psi_rows(d10, DECILES), 0.0).tolist(),
                "jensen_shannon": np.where(seen, jensen_shannon_rows(d10, DECILES), 0.0).tolist(),
                "ks": ks.tolist(),
                "ks_p_value": np.where(seen, kolmogorov_sf_rows(excess), 1.0).tolist(),
                "wasserstein": [round(w, 6) for w in wasserstein_rows(hist, QUANTILE_PROBS, quantiles).tolist()],
                "window_values": n.tolist(),
            }
            self._last_window_statistics = [dict(zip(columns, row)) for row in zip(*columns.values())]
        return self._last_window_statistics

    def missing_ratios(self) -> list[float]:
        """Each feature's share of values missing in the last closed window (the current one before
        any closes)."""
        counts = np.where(self._last_counts.sum(axis=1, keepdims=True) > 0, self._last_counts, self._window_counts)
        total = counts[:, 0] + counts[:, 1] + counts[:, 2]
        return (counts[:, 1] / np.maximum(total, 1)).tolist()

    # ---- state --------------------------------------------------------------------------
    def state_dict(self, recent_values: bool = True) -> dict[str, Any]:
        """The bank as plain data (`load_state` takes it back). recent_values=False: without the last
        raw values (`RecentRing.state_dict`), which only describe alerts, nor the point-mass chains' last
        value of each feature (a restored bank counts no repeat at its first event)."""
        return {
            "cusum": self._cusum.state_dict(),
            "blocks": self._blocks.state_dict(),
            "timing_blocks": self._timing_blocks.state_dict(),
            "river_blocks": self._river_blocks.state_dict(),
            "river": [d.state_dict() for d in self._river],
            "hist": self._hist.astype(np.int32).tobytes(),
            "window_counts": self._window_counts.ravel().tolist(),
            "last_hist": self._last_hist.astype(np.int32).tobytes(),
            "last_counts": self._last_counts.ravel().tolist(),
            "point_mass": self._point_mass.state_dict(last_values=recent_values),
            **self._recent.state_dict(recent_values),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        f = len(self._names)
        self._cusum.load_state(state["cusum"])
        self._blocks.load_state(state["blocks"])
        self._timing_blocks.load_state(state["timing_blocks"])
        self._river_blocks.load_state(state["river_blocks"])
        for d, s in zip(self._river, state["river"]):
            d.load_state(s)
        self._hist = np.frombuffer(state["hist"], dtype=np.int32).astype(np.int64).reshape(f, FINE_BINS)
        self._window_counts = np.asarray(state["window_counts"], dtype=np.int64).reshape(f, 4)
        self._last_hist = np.frombuffer(state["last_hist"], dtype=np.int32).astype(np.int64).reshape(f, FINE_BINS)
        self._last_counts = np.asarray(state["last_counts"], dtype=np.int64).reshape(f, 4)
        self._point_mass.load_state(state.get("point_mass"))
        self._last_window_statistics = None
        self._recent.load_state(state)


def _runs(alarms: list[tuple[int, int, int, int]], run_gap: int) -> list[tuple[int, list[tuple[int, int, int, int]]]]:
    """A bank's CUSUM alarms (event, chain, statistic, last zero) as runs: per chain, its alarms each
    within run_gap events of the one before (a flood alarms every CUSUM block) make one run, given as
    (chain, [(event, chain, statistic, onset), ...]), onset = last zero + 1."""
    runs: dict[int, list] = {}  # chain -> its runs: [last event, [alarms]]
    for event, chain, stat, zero in alarms:
        chain_runs = runs.setdefault(chain, [])
        if chain_runs and event - chain_runs[-1][0] <= run_gap:
            run = chain_runs[-1]
            run[0] = event
        else:
            run = [event, []]
            chain_runs.append(run)
        run[1].append((event, chain, stat, zero + 1))
    return [(chain, run) for chain, chain_runs in runs.items() for _, run in chain_runs]


#: with examples off, a summary statistic pools at least this many values (none is one request's)
POOLED_VALUES = 5
#: fewer valid values than this: no mean, spread or quantiles with examples off (rates only)
MIN_POOLED_SUMMARY = 10
_SUMMARY_PROBS = (0.05, 0.25, 0.5, 0.75, 0.95)


def summarise_recent(values: np.ndarray, exact: bool = True) -> dict[str, Any]:
    """mean, std, quantiles, missing and invalid rates of encoded recent values (NaN missing, inf invalid).

    Parameters
    ----------
    values
        Encoded recent values of one feature.
    exact
        Give min, max and the quantiles as the values themselves. False (examples off: production
        values may be personal data): no min / max, each quantile the mean of the POOLED_VALUES
        order statistics around it, and no value statistic at all from fewer than
        MIN_POOLED_SUMMARY values, so no statistic is one request's value.

    Returns
    -------
    dict
        count (valid values), events, mean, std, [min, max,] p05, p25, p50, p75, p95, missing_rate,
        invalid_rate.

    Examples
    --------
    >>> s = summarise_recent(np.array([1.0, 2.0, 3.0, np.nan, np.inf]))
    >>> s["count"], s["mean"], s["missing_rate"], s["invalid_rate"]
    (3, 2.0, 0.2, 0.2)
    >>> s = summarise_recent(np.arange(1.0, 12.0), exact=False)
    >>> "max" in s, s["p50"], s["p95"]
    (False, 6.0, 9.0)
    """
    total = len(values)
    ok = values[np.isfinite(values)]
    out: dict[str, Any] = {"count": int(len(ok)), "events": total}
    if len(ok) and (exact or len(ok) >= MIN_POOLED_SUMMARY):
        out.update(mean=float(ok.mean()), std=float(ok.std()))
        if exact:
            q = np.quantile(ok, _SUMMARY_PROBS)
            out.update(min=float(ok.min()), max=float(ok.max()))
        else:
            q = pooled_quantiles(np.sort(ok), _SUMMARY_PROBS, POOLED_VALUES)
        out.update(p05=float(q[0]), p25=float(q[1]), p50=float(q[2]), p75=float(q[3]), p95=float(q[4]))
    out["missing_rate"] = float(np.isnan(values).sum() / total) if total else 0.0
    out["invalid_rate"] = float(np.isinf(values).sum() / total) if total else 0.0
    return out


def pooled_quantiles(ordered: np.ndarray, probs: Sequence[float], k: int) -> np.ndarray:
    """Each quantile of sorted values as the mean of the k order statistics nearest its rank (with
    examples off, so that no quantile is one request's value).

    >>> pooled_quantiles(np.arange(1.0, 12.0), [0.5, 0.95], 5).tolist()
    [6.0, 9.0]
    """
    n = len(ordered)
    lo = np.clip(np.rint(np.asarray(probs) * (n - 1)).astype(np.int64) - k // 2, 0, max(n - k, 0))
    csum = np.concatenate([[0.0], np.cumsum(ordered)])
    hi = np.minimum(lo + k, n)
    return (csum[hi] - csum[lo]) / (hi - lo)
