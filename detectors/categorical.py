"""Monitors of categorical features, vectorised across features.

Per feature: Bernoulli CUSUMs on the share of values outside the training top-K (unseen, or
training's "other" bucket), missing and invalid; tumbling windows of events with a chi-square test
of the category shares against training (alarm), Jensen-Shannon, L-infinity and PSI (reported);
the most frequent unseen values (Space-Saving, bounded).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache, partial
from typing import Any

import numpy as np

from baselines.profile import CategoricalProfile
from baselines.serial import inflation_at
from detectors import _kernels
from detectors import thresholds as T
from detectors.cusum import BlockAccumulator, CusumBank, blocks_touched
from detectors.episodes import Alarm, AlarmSource, Candidate
from detectors.extract import INVALID_CODE, MISSING_CODE
from detectors.numeric import missing_rate_rows, rate_threshold, rate_weights, window_cuts
from detectors.pointmass import PointMassBank, categorical_chains, point_mass_evidence, with_point_mass
from detectors.recent import RecentRing
from detectors.sketches import PendingValues, SpaceSaving
from detectors.stats import MIN_EXPECTED, chi2_sf, jensen_shannon, psi

__all__ = ["CategoricalBank"]

UNSEEN, MISSING, INVALID = range(3)
CHAINS = ("unseen", "missing", "invalid")
#: the rank (the test's own order) of a feature's point-mass alarms (`detectors.pointmass`), after its CUSUMs'
POINT_MASS = len(CHAINS)
ALARMS = {
    UNSEEN: ("data_quality", "unseen", "unseen_category"),
    MISSING: ("data_quality", "missing", "missing_rate"),
    INVALID: ("data_quality", "invalid", "invalid_type"),
}


class CategoricalBank:
    """All categorical features of a model (see the module docstring for the tests).

    Parameters
    ----------
    profiles
        The features' training profiles.
    window
        Tumbling window of the model's events for the chi-square test.
    min_window_values
        Fewest valid values a window needs before its test runs.
    recent
        Recent events kept per feature for summaries.
    top_unseen
        Unseen values tracked per feature (Space-Saving).
    """

    def __init__(self, profiles: Sequence[CategoricalProfile], window: int, min_window_values: int,
                 recent: int, top_unseen: int):
        self._profiles = list(profiles)
        self._names = [p.name for p in self._profiles]
        self._categories = [list(p.categories) for p in self._profiles]
        f = len(self._profiles)
        self._window = window
        self._min_window_values = min_window_values
        self._n_known = np.array([len(c) for c in self._categories], dtype=np.int64)
        #: cell offsets in one flat histogram: feature j owns cells [offset, offset + K_j] (K_j = other)
        self._offsets = np.concatenate(([0], np.cumsum(self._n_known + 1)))[:-1].astype(np.int64)
        self._n_cells = int((self._n_known + 1).sum())
        self._expected = [_expected_shares(p, window) for p in self._profiles]
        # the same per cell of the flat histogram, for `_window_candidates`
        self._expected_cell = np.concatenate(self._expected) if self._expected else np.zeros(0)
        # rows the expected shares are as precise as (the chi-square's two-sample variance)
        self._profile_counts = np.array([_rows_equivalent(p) for p in self._profiles], dtype=np.float64)
        weights = np.array([[rate_weights(p.expected_other_freq, _rows_equivalent(p)),
                             rate_weights(p.missing_rate, missing_rate_rows(p)),
                             rate_weights(p.invalid_rate, p.total)] for p in self._profiles]).reshape(f, 3, 3)
        self._llr_hit = weights[:, :, 0].astype(np.int64)
        self._llr_miss = weights[:, :, 1].astype(np.int64)
        self._expected_rates = weights[:, :, 2].tolist()  # (f, 3) floats: an alarm's evidence, no numpy scalars
        # in chain order: unseen, missing, invalid, each feature by feature
        self._rate_hit = np.ascontiguousarray(self._llr_hit.T).ravel()
        self._rate_miss = np.ascontiguousarray(self._llr_miss.T).ravel()
        h = np.full((3, f), round(T.RATE_H * T.LLR_SCALE), dtype=np.int64)
        for j, p in enumerate(self._profiles):
            if p.serial_inflation is not None:  # rows: other, missing (`CategoricalProfile.serial_inflation`)
                for test, v in ((UNSEEN, p.serial_inflation[0]), (MISSING, p.serial_inflation[1])):
                    h[test, j] = rate_threshold(int(h[test, j]), weights[j, test], v)
        #: each chain's threshold (fixed point), (3, f)
        self._h = h
        self._cusum = CusumBank(h.ravel())
        self._blocks = BlockAccumulator(T.CUSUM_BLOCK, 3 * f)
        self._counts = np.zeros(self._n_cells, dtype=np.int64)
        self._last_counts = np.zeros(self._n_cells, dtype=np.int64)
        #: `_window_test` of each feature's last closed window (None: not computed since it closed)
        self._last_window_statistics: list[dict[str, float]] | None = None
        self._unseen = [SpaceSaving(top_unseen) for _ in range(f)]
        self._recent = RecentRing(f, recent, MISSING_CODE, np.int16)
        self._batch_start = 0
        #: per feature, this batch's unseen values, which its sketch takes at end_batch
        self._pending_unseen = [PendingValues() for _ in range(f)]
        #: the share of one category (a fill, a stuck category) against training's
        self._point_mass = PointMassBank(categorical_chains(self._profiles, self._expected,
                                                            [_rows_equivalent(p) for p in self._profiles]), f)

    @property
    def names(self) -> list[str]:
        return self._names

    @property
    def categories(self) -> list[list[str]]:
        return self._categories

    def update(self, codes: np.ndarray, others: list[list[tuple[int, str]]], start: int) -> list[Candidate | Alarm]:
        """Feed events start.. of the model; return the alarms they raise (its CUSUMs' as `Alarm`s).

        codes: (n_features, n_events) category codes (`detectors.extract.FeatureColumns`); others: per
        feature the (event offset, label) of every value coded "other".
        """
        f, n = codes.shape
        self._batch_start = start
        if f == 0 or n == 0:
            return []
        # the sketches take this batch's values at end_batch: an alert inside the batch sees only earlier ones
        for pending, values in zip(self._pending_unseen, others):
            pending.hold(values)
        cuts = window_cuts(start, n, self._window)
        raw = np.empty((blocks_touched(start, n, T.CUSUM_BLOCK), 3 * f), dtype=np.int64)
        counts = np.empty((len(cuts) - 1, self._n_cells), dtype=np.int64)
        _kernels.categorical_blocks(codes, start, T.CUSUM_BLOCK, self._n_known, self._offsets, self._n_cells,
                                    np.array(cuts, dtype=np.int64), raw, counts)
        sums, ends = self._blocks.add_sums(raw, start, n)
        out = self._cusum_alarms(sums, ends, f)
        out += self._point_mass_alarms(codes, start)
        for segment, b in enumerate(cuts[1:]):
            self._counts += counts[segment]
            if (start + b) % self._window == 0:
                out += self._close_window(start + b - 1)
        self._recent.hold_batch(codes.astype(np.int16), start)
        return out

    def end_batch(self) -> None:
        """After the batch's alerts are built: its unseen values join the sketches, its codes the recent ones."""
        for sketch, pending in zip(self._unseen, self._pending_unseen):
            pending.commit(sketch)
        self._recent.commit()

    def _cusum_alarms(self, sums: np.ndarray, ends: np.ndarray, f: int) -> list[Alarm]:
        if len(sums) == 0:
            return []
        out = []
        alarms = self._cusum.update_from_sums(sums, ends, self._rate_hit, self._rate_miss, T.CUSUM_BLOCK)
        for event, chain, stat, zero in alarms:
            test, j = divmod(chain, f)
            _, family, detector = ALARMS[test]
            out.append(Alarm(event, (AlarmSource.CATEGORICAL_CUSUM, test, j), self._names[j], family, detector,
                             zero + 1, self._cusum_candidate, (event, test, j, stat, zero + 1)))
        return out

    def _point_mass_alarms(self, codes: np.ndarray, start: int) -> list[Alarm]:
        if not len(self._point_mass):
            return []
        # a stored category's code is its value; missing, invalid and "other" never hit
        known = (codes >= 0) & (codes < self._n_known[:, None])
        x = np.where(known, codes, np.nan)
        out = []
        for event, chain, stat, zero in self._point_mass.update(x, start):
            j = self._point_mass.chain(chain)[0]
            out.append(Alarm(event, (AlarmSource.CATEGORICAL_CUSUM, POINT_MASS, j), self._names[j], "distribution",
                             "point_mass", zero + 1, self._point_mass_candidate, (event, chain, stat, zero + 1)))
        return out

    def _point_mass_candidate(self, event: int, chain: int, stat: int, onset: int) -> Candidate:
        j, value, expected = self._point_mass.chain(chain)
        label = None if value is None else self._categories[j][int(value)]
        return Candidate(event_index=event, rank=(AlarmSource.CATEGORICAL_CUSUM, POINT_MASS, j),
                         feature=self._names[j], kind="drift", family="distribution", detector="point_mass",
                         statistic=stat / T.LLR_SCALE,
                         threshold=float(self._point_mass.thresholds[chain] / T.LLR_SCALE),
                         p_value=None, evidence=point_mass_evidence(label, expected, onset),
                         onset=onset)

    def _cusum_candidate(self, event: int, test: int, j: int, stat: int, onset: int) -> Candidate:
        kind, family, detector = ALARMS[test]
        evidence = {"test": CHAINS[test], "expected_rate": self._expected_rates[j][test], "change_start_event": onset}
        return Candidate(event_index=event, rank=(AlarmSource.CATEGORICAL_CUSUM, test, j), feature=self._names[j],
                         kind=kind, family=family, detector=detector, statistic=stat / T.LLR_SCALE,
                         threshold=float(self._h[test, j] / T.LLR_SCALE), p_value=None, evidence=evidence, onset=onset,
                         late_evidence=partial(self._unseen_evidence, j, event) if test == UNSEEN else None)

    def _unseen_evidence(self, j: int, event: int) -> dict[str, Any]:
        return {"top_unseen": self.top_unseen(j, event_index=event)}

    def _window_candidates(self, counts: np.ndarray) -> np.ndarray:
        """Features whose window may fail the chi-square test, in a few passes over all cells.

        Pooling cells never raises chi-square ((sum o - sum e)^2 / sum e <= sum (o - e)^2 / e) and the
        threshold is lowest at 1 degree of freedom, so a feature whose unpooled chi-square is below
        that threshold cannot alarm, and is not tested cell by cell (`_chi2`)."""
        if not len(self._offsets):
            return np.zeros(0, dtype=np.int64)
        values, unpooled = np.empty(len(self._offsets), dtype=np.int64), np.empty(len(self._offsets))
        _kernels.chi2_screen(counts, self._offsets, self._n_known, self._expected_cell, self._profile_counts,
                             values, unpooled)
        # the margin covers float rounding between this sum and _chi2's
        return np.flatnonzero((values >= self._min_window_values) & (unpooled > 0.999 * _chi2_threshold(1)))

    def _chi2(self, j: int, counts: np.ndarray) -> tuple[float, int]:
        """(chi-square of the window's shares against training, degrees of freedom); dof 0: no test."""
        observed = counts[self._offsets[j]: self._offsets[j] + self._n_known[j] + 1]
        expected = self._expected[j]
        known = expected > 0
        n = int(observed[known].sum())
        if n == 0:
            return 0.0, 0
        exp_counts = n * expected[known]
        obs = observed[known]
        small = exp_counts < MIN_EXPECTED
        if small.any():  # pool the small cells
            exp_counts = np.append(exp_counts[~small], exp_counts[small].sum())
            obs = np.append(obs[~small], obs[small].sum())
        if len(obs) < 2:
            return 0.0, 0
        chi2 = float(np.sum((obs - exp_counts) ** 2 / exp_counts))
        # the baseline shares are themselves a sample of `count` rows: two-sample variance
        return chi2 / (1.0 + n / max(self._profiles[j].count, 1)), len(obs) - 1

    def _window_test(self, j: int, counts: np.ndarray) -> dict[str, float]:
        observed = counts[self._offsets[j]: self._offsets[j] + self._n_known[j] + 1]
        expected = self._expected[j]
        total = int(observed.sum())
        chi2, dof = self._chi2(j, counts)
        return {"window_values": total, "chi2": chi2, "p_value": chi2_sf(chi2, dof) if dof else 1.0, "dof": dof,
                "jensen_shannon": jensen_shannon(observed, expected) if total else 0.0,
                "linf": float(np.max(np.abs(observed / max(total, 1) - expected))) if total else 0.0,
                "psi": psi(observed, expected) if total else 0.0}

    def _close_window(self, event: int) -> list[Candidate]:
        out = []
        for j in self._window_candidates(self._counts).tolist():
            chi2, dof = self._chi2(j, self._counts)
            if not dof or chi2 <= _chi2_threshold(dof):  # the threshold is where the tail is WINDOW_ALPHA
                continue
            stats = self._window_test(j, self._counts)
            if stats["p_value"] < T.WINDOW_ALPHA:
                evidence = {"test": "chi2", "window_events": self._window, **{k: _round(v) for k, v in stats.items()}}
                out.append(Candidate(event_index=event, rank=(AlarmSource.CHI2_WINDOW, 0, j), feature=self._names[j],
                                     kind="drift", family="distribution", detector="chi2",
                                     statistic=float(stats["chi2"]), threshold=_chi2_threshold(stats["dof"]),
                                     p_value=float(stats["p_value"]), evidence=evidence,
                                     onset=event - self._window + 1))
        self._last_counts, self._counts = self._counts, self._last_counts  # the last window's array takes the next
        self._counts.fill(0)
        self._last_window_statistics = None
        return out

    # ---- reporting ----------------------------------------------------------------------
    def top_unseen(self, j: int, n: int = 5, event_index: int | None = None) -> list[list]:
        """Most frequent values outside the training categories, up to event_index (inside a batch)."""
        sketch = self._unseen[j]
        if event_index is not None:
            sketch = self._pending_unseen[j].as_of(sketch, event_index - self._batch_start)
        return [[label, count] for label, count, _ in sketch.top(n)]

    def recent_codes(self, j: int, event_index: int | None = None, since: int | None = None) -> np.ndarray:
        """Feature j's recent category codes up to event_index (`RecentRing.rows`)."""
        return self._recent.rows(j, event_index, since)

    def current_summary(self, j: int, event_index: int | None = None, since: int | None = None) -> dict[str, Any]:
        """An alert's "current" of feature j: top shares, unseen share and values, missing and invalid rates."""
        codes = self.recent_codes(j, event_index, since)
        total = len(codes)
        valid = codes[codes >= 0]
        counts = np.bincount(valid, minlength=self._n_known[j] + 1)
        top = np.argsort(-counts[:-1], kind="stable")[:5]
        return {
            "events": total,
            "count": int(len(valid)),
            "top": ({self._categories[j][i]: float(counts[i] / len(valid)) for i in top if counts[i]}
                    if len(valid) else {}),
            "unseen_share": float(counts[-1] / len(valid)) if len(valid) else 0.0,
            "top_unseen": self.top_unseen(j, event_index=event_index),
            "missing_rate": float((codes == MISSING_CODE).sum() / total) if total else 0.0,
            "invalid_rate": float((codes == INVALID_CODE).sum() / total) if total else 0.0,
        }

    def statistics(self) -> list[dict[str, Any]]:
        """Each feature's last closed window's test statistics and its unseen-share CUSUM (the
        snapshot's), in feature order, as plain numbers. The window's are computed when first asked after the window
        closed, and kept until the next closes."""
        if self._last_window_statistics is None:
            self._last_window_statistics = [self._window_test(j, self._last_counts) for j in range(len(self._names))]
        f = len(self._names)
        unseen = (np.asarray(self._cusum.statistics[UNSEEN * f:(UNSEEN + 1) * f]) / T.LLR_SCALE).tolist()
        threshold = (self._h[UNSEEN] / T.LLR_SCALE).tolist()
        return with_point_mass([{**w, "unseen_cusum": u, "cusum_threshold": h}
                                for w, u, h in zip(self._last_window_statistics, unseen, threshold)], self._point_mass)

    def missing_ratios(self) -> list[float]:
        """Each feature's share of recent events without a value."""
        out = []
        for j in range(len(self._names)):
            codes = self.recent_codes(j)
            out.append(float((codes == MISSING_CODE).sum() / len(codes)) if len(codes) else 0.0)
        return out

    # ---- state --------------------------------------------------------------------------
    def state_dict(self, unseen_labels: bool = True) -> dict[str, Any]:
        """The bank as plain data (`load_state` takes it back). unseen_labels=False: without the
        sketches of unseen values (production values, which only describe alerts: the unseen-share
        test counts codes), which restart empty."""
        return {
            "cusum": self._cusum.state_dict(),
            "blocks": self._blocks.state_dict(),
            "counts": self._counts.astype(np.int32).tobytes(),
            "last_counts": self._last_counts.astype(np.int32).tobytes(),
            "unseen": [s.state_dict() for s in self._unseen] if unseen_labels else [],
            "point_mass": self._point_mass.state_dict(),
            **self._recent.state_dict(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        self._cusum.load_state(state["cusum"])
        self._blocks.load_state(state["blocks"])
        self._counts = np.frombuffer(state["counts"], dtype=np.int32).astype(np.int64)
        self._last_counts = np.frombuffer(state["last_counts"], dtype=np.int32).astype(np.int64)
        self._last_window_statistics = None
        for s, st in zip(self._unseen, state["unseen"]):
            s.load_state(st)
        self._point_mass.load_state(state.get("point_mass"))
        self._recent.load_state(state)


def _expected_shares(p: CategoricalProfile, window: int) -> np.ndarray:
    """Expected share of each stored category and, last, of "other" (never-seen values included).

    "Other" is expected at the held-out `expected_other_freq`. What that adds to training's "other"
    share comes from the top-K's rarest categories (those a window expects fewer than MIN_EXPECTED
    times), scaled down together: choosing the top-K by their training counts inflated exactly those.
    """
    shares = np.array(list(p.categories.values()) + [p.other_freq], dtype=np.float64)
    if shares.sum() <= 0:
        return shares
    shares /= shares.sum()
    moved = p.expected_other_freq - shares[-1]
    rare = np.append(shares[:-1] * window < MIN_EXPECTED, False)
    held = shares[rare].sum()
    if moved > 0 and held > 0:
        shares[rare] *= 1.0 - min(moved, 0.999 * held) / held
        shares[-1] = p.expected_other_freq
        shares /= shares.sum()
    return shares


def _rows_equivalent(p: CategoricalProfile) -> int:
    """Rows of a binomial sample as precise as the baseline's "other" share: its count, fewer when the
    share is a Good-Turing estimate, whose variance is the binomial one of n1 / n plus 2 n2 / n^2, and
    fewer when its rows were measured serially dependent."""
    q, n = p.expected_other_freq, max(p.count, 1)
    binomial = max(q, 1.0 / n) * (1.0 - q) / n
    rows = n if binomial <= 0 or not p.n_doubletons else n * binomial / (binomial + 2.0 * p.n_doubletons / n**2)
    # a time-ordered baseline: as precise as 1 / V(n) as many independent rows
    return max(1, round(rows / inflation_at(None if p.serial_inflation is None else p.serial_inflation[0], n)))


def _round(v: Any) -> Any:
    return round(v, 6) if isinstance(v, float) and math.isfinite(v) else v


@cache
def _chi2_threshold(dof: int) -> float:
    """The chi-square value whose tail is WINDOW_ALPHA (bisection)."""
    if dof <= 0:
        return math.inf
    lo, hi = 0.0, 1000.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if chi2_sf(mid, dof) > T.WINDOW_ALPHA else (lo, mid)
    return hi
