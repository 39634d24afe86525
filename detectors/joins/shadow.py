"""Shadow mode: a candidate model answers the same requests as production without serving, both
publish prediction events, and the two are joined by `request_id` and compared.

A pair is configured as ``production=candidate`` (`parse_shadow_pairs`). The join is `RequestJoin`'s
(bounded, either side first, duplicates counted once, never-matching ids expire after
`JoinConfig.shadow_ttl`). Each joined request gives:

- classification: whether the two predictions agree (their `category_key`); regression: their
  difference (candidate - production), and agreement when it is within SHADOW_REGRESSION_TOLERANCE
  x the spread of production's predictions (the baseline's prediction profile, else the first window's);
- the difference of their confidences, when both have one;
- with delayed labels, each model's error: each model's accuracy / MAE with its 95% interval and a
  paired test of their difference (McNemar's for accuracy, a paired z test for MAE).

Every `JoinConfig.shadow_window` joined requests close a window: its agreement is tested against the
**expected agreement**. No baseline records what two models should agree on, so the expected figure is
either the configured `JoinConfig.shadow_min_agreement`, tested from the first window, or, by default,
the first window's own agreement less `JoinConfig.tolerance` and BASELINE_ALLOWANCE_SD of its sampling
error (as the performance test treats the validation figure), tested from the second window: the
default catches a candidate that starts to disagree (a traffic segment it handles differently
arrives), not one that disagreed from the start; set a minimum for that. A window whose agreement is
below the expected one at one-sided SHADOW_ALPHA opens a ``shadow`` alert (one per episode, as the
other joins), naming the features whose values best separate the window's agreeing requests from the
disagreeing ones: per feature, the segment (a side of one of the training bin edges, one training
category, values not in training, missing values) whose disagreement rate is furthest above the rest's
by a two-proportion z statistic. Segments are cut at training's bin edges and categories, so an alert
quotes no individual production value.

>>> import numpy as np
>>> from baselines.build import build_baseline_from_columns
>>> rng = np.random.default_rng(7)
>>> amount = rng.lognormal(3, 1, 4000)
>>> base = build_baseline_from_columns("credit", {"amount": amount, "country": ["US", "FR"] * 2000})
>>> shadow = ShadowMonitor([("credit", "credit-v2")], {"credit": base}.get)
>>> alerts = []
>>> for i, x in enumerate(rng.lognormal(3, 1, 4000)):
...     features = {"amount": float(x), "country": "US"}
...     disagree = x > 60 and i >= 1000   # after the first window the candidate differs on large amounts
...     alerts += shadow.add_prediction({"model": "credit", "request_id": f"r{i}", "features": features,
...                                      "prediction": 1}, float(i), i + 1)
...     alerts += shadow.add_prediction({"model": "credit-v2", "request_id": f"r{i}", "features": features,
...                                      "prediction": 0 if disagree else 1}, float(i), i + 1)
>>> [(a.kind, a.model, a.evidence["candidate"], a.evidence["separating_features"][0]["feature"]) for a in alerts]
[('shadow', 'credit', 'credit-v2', 'amount')]
>>> alerts[0].evidence["separating_features"][0]["segment"]
"'amount' > 55.7"
"""
from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from statistics import NormalDist
from typing import Any

import numpy as np

from baselines.profile import Baseline, CategoricalProfile, NumericProfile, category_key
from detectors import thresholds as T
from detectors.alerts import Alert, alert_id
from detectors.diagnosis import Diagnosis
from detectors.episodes import EpisodeTracker
from detectors.extract import TrainedSpelling
from detectors.fmt import count, number, percent, printable, quote_value, rounded
from detectors.joins.buffer import RequestJoin
from detectors.joins.config import DEFAULT_JOIN_CONFIG, JoinConfig
from detectors.joins.performance import MAX_LABEL_WINDOW, REPORTED_CI, wilson_interval
from detectors.joins.wire import is_missing, is_number
from detectors.numeric import MIN_POOLED_SUMMARY, POOLED_VALUES, pooled_quantiles
from detectors.sketches import MAX_LABEL

__all__ = ["SHADOW_ALPHA", "SHADOW_REGRESSION_TOLERANCE", "ShadowComparison", "ShadowMonitor", "parse_shadow_pairs",
           "shadow_pairs_text"]

#: one-sided level of a window's agreement test (a window per 1000 joined requests by default: at most
#: one false alert per ~10^9 joined requests of a pair that keeps its agreement)
SHADOW_ALPHA = 1e-6
#: regression: two predictions agree when they differ by at most this share of the standard deviation
#: of production's predictions
SHADOW_REGRESSION_TOLERANCE = 0.1
#: an agreement this far below the expected one makes a shadow alert critical
SHADOW_CRITICAL_DROP = 0.1
#: features (the baseline's first ones) whose values are split to separate agreeing from disagreeing requests
SHADOW_MAX_FEATURES = 100
#: a categorical feature's training categories (the most frequent) that are segments of their own
SHADOW_MAX_CATEGORIES = 20
#: fewest joined requests inside, and outside, a segment for its split to count
SHADOW_MIN_SEGMENT = 30
#: smallest z of a feature's best split for the feature to be named (~Bonferroni 0.05 over
#: 100 features x ~40 splits)
SHADOW_SPLIT_Z = 4.0
#: separating features an alert names at most
SHADOW_FEATURES_SHOWN = 3
#: closed windows kept per pair (the status page's and the report's history)
SHADOW_HISTORY = 48
#: fewest labelled pairs before the paired test's verdict is given (the figures are shown from the first)
SHADOW_MIN_LABELS = 30
#: two-sided level at which the labelled difference of the two models is called real
SHADOW_LABEL_ALPHA = 1 - REPORTED_CI


def parse_shadow_pairs(texts: str | Iterable[str]) -> tuple[tuple[str, str], ...]:
    """Shadow pairs from ``production=candidate`` items, comma-separated or given one by one.

    A candidate shadows one production model, and no model is both a production model and a
    candidate; a production model may have several candidates.

    Parameters
    ----------
    texts
        One text or several, e.g. "credit=credit-v2,fraud=fraud-b".

    Returns
    -------
    tuple
        The (production, candidate) pairs, in the order given, without repeats.

    Raises
    ------
    ValueError
        An item is not ``production=candidate`` with two different non-empty names, or the pairs conflict.

    >>> parse_shadow_pairs("credit=credit-v2, fraud=fraud-b")
    (('credit', 'credit-v2'), ('fraud', 'fraud-b'))
    >>> parse_shadow_pairs(["credit=v2", "v2=v3"])
    Traceback (most recent call last):
    ...
    ValueError: 'v2' is both a candidate and a production model
    """
    items = [texts] if isinstance(texts, str) else list(texts)
    pairs: list[tuple[str, str]] = []
    for item in (part.strip() for text in items for part in text.split(",")):
        if not item:
            continue
        production, sep, candidate = (s.strip() for s in item.partition("="))
        if not sep or not production or not candidate or production == candidate:
            raise ValueError(f"{item!r} is not production=candidate (two different model names)")
        if (production, candidate) not in pairs:
            pairs.append((production, candidate))
    candidates = [c for _, c in pairs]
    for c in candidates:
        if candidates.count(c) > 1:
            raise ValueError(f"{c!r} is the candidate of more than one production model")
        if c in {p for p, _ in pairs}:
            raise ValueError(f"{c!r} is both a candidate and a production model")
    return tuple(pairs)


class _FeatureBins:
    """One feature's segments: training's bins (numeric) or top categories, then missing, invalid."""

    def __init__(self, name: str, profile: NumericProfile | CategoricalProfile):
        self.name = name
        self.numeric = isinstance(profile, NumericProfile)
        if self.numeric:
            self.edges = [float(e) for e in profile.bin_edges]
            self.valid = len(self.edges) + 1
            self.categories: list[str] = []
        else:
            self.categories = sorted(profile.categories, key=lambda c: -profile.categories[c])[:SHADOW_MAX_CATEGORIES]
            self.index = {c: i for i, c in enumerate(self.categories)}
            self.spelling = TrainedSpelling(profile.categories)  # as the monitors code a value
            self.valid = len(self.categories) + 1  # the last: not in training
        self.missing, self.invalid = self.valid, self.valid + 1
        self.size = self.valid + 2

    def bin(self, v: Any) -> int:
        if is_missing(v):
            return self.missing
        if self.numeric:
            if not is_number(v) or not math.isfinite(v):
                return self.invalid
            return bisect_left(self.edges, v)  # bin i holds edges[i-1] < v <= edges[i], as the baseline's
        if isinstance(v, (list, dict)):
            return self.invalid
        return self.index.get(self.spelling(v), self.valid - 1)

    def segments(self, n: np.ndarray, d: np.ndarray) -> Iterable[tuple[str, float, float]]:
        """(description, requests, disagreements) of each candidate segment, from per-bin counts."""
        name = f"'{printable(self.name[:MAX_LABEL])}'"
        if self.numeric:
            cn, cd = np.cumsum(n[:self.valid]), np.cumsum(d[:self.valid])
            for i, edge in enumerate(self.edges):
                yield f"{name} <= {number(edge)}", cn[i], cd[i]
                yield f"{name} > {number(edge)}", cn[-1] - cn[i], cd[-1] - cd[i]
        else:
            for i, c in enumerate(self.categories):
                yield f"{name} = '{printable(c[:MAX_LABEL])}'", n[i], d[i]
            yield f"{name} not in training", n[self.valid - 1], d[self.valid - 1]
        yield f"{name} missing", n[self.missing], d[self.missing]
        yield f"{name} invalid", n[self.invalid], d[self.invalid]


def _best_split(bins: _FeatureBins, column: np.ndarray, disagree: np.ndarray) -> dict[str, Any] | None:
    """The segment of one feature whose disagreement rate is furthest above the rest's (z), or None."""
    n_bins = np.bincount(column, minlength=bins.size).astype(float)
    d_bins = np.bincount(column, weights=disagree, minlength=bins.size)
    total, total_d = float(len(column)), float(disagree.sum())
    p = total_d / total
    if p <= 0 or p >= 1:
        return None
    best = None
    for text, n_in, d_in in bins.segments(n_bins, d_bins):
        n_out = total - n_in
        if n_in < SHADOW_MIN_SEGMENT or n_out < SHADOW_MIN_SEGMENT:
            continue
        rate_in, rate_out = d_in / n_in, (total_d - d_in) / n_out
        z = (rate_in - rate_out) / math.sqrt(p * (1 - p) * (1 / n_in + 1 / n_out))
        if best is None or z > best["z"]:
            best = {"feature": bins.name, "segment": text, "z": z, "share": n_in / total,
                    "disagreement_in": rate_in, "disagreement_out": rate_out,
                    "share_of_disagreements": d_in / total_d}
    return best


def _is_regression(baseline: Baseline | None) -> bool | None:
    """The pair's task from production's baseline (its metric, else its prediction profile), None if unsaid."""
    if baseline is None:
        return None
    if baseline.metric:
        return baseline.metric.get("name") == "mae"
    if baseline.prediction is not None:
        return isinstance(baseline.prediction, NumericProfile)
    return None


class _Window:
    """The joined requests of the open window."""

    def __init__(self) -> None:
        self.agree: list[bool] = []  # classification
        self.diffs: list[float] = []  # regression: candidate - production
        self.production: list[float] = []  # regression: production's predictions (its spread, if needed)
        self.confidence_diffs: list[float] = []
        self.rows: list[list[int]] = []  # each request's segment per tracked feature

    def __len__(self) -> int:
        return len(self.rows)


class ShadowComparison:
    """One pair's joined requests: windows of agreement, their test, and the labelled comparison.

    `add` takes each joined pair of events (production's, the candidate's); `add_labelled` each pair
    whose label arrived. `baseline` is production's (its fingerprint counts the alert ids, its features
    the segments, its metric or prediction profile says classification or regression); without one
    the task is read off the first scorable pair and no feature is split.
    """

    def __init__(self, production: str, candidate: str, baseline: Baseline | None,
                 config: JoinConfig = DEFAULT_JOIN_CONFIG):
        self.production, self.candidate = production, candidate
        self._reference_id = baseline.fingerprint if baseline is not None else ""
        self._config = config
        self._regression = _is_regression(baseline)
        spread = baseline.prediction.std if baseline is not None and isinstance(baseline.prediction,
                                                                                NumericProfile) else 0.0
        self._tolerance = SHADOW_REGRESSION_TOLERANCE * spread if spread > 0 else None
        self._bins = [] if baseline is None else [
            _FeatureBins(n, p) for n, p in baseline.features.items()
            if isinstance(p, (NumericProfile, CategoricalProfile))][:SHADOW_MAX_FEATURES]
        self._episodes = EpisodeTracker(config.rearm_quiet)
        self._z_test = NormalDist().inv_cdf(1 - SHADOW_ALPHA)
        self._z_reported = NormalDist().inv_cdf(0.5 + REPORTED_CI / 2)
        self._joined = 0
        self._unscorable = 0
        self._window = _Window()
        self._windows = 0
        minimum = config.shadow_min_agreement
        self._reference: dict[str, Any] | None = (
            None if minimum is None else {"source": "configured", "expected": minimum})
        self._history: deque[dict[str, Any]] = deque(maxlen=SHADOW_HISTORY)
        self._labelled: deque[tuple[float, float]] = deque(maxlen=MAX_LABEL_WINDOW)  # (production, candidate) errors

    @property
    def joined(self) -> int:
        return self._joined

    @property
    def last_window(self) -> dict[str, Any] | None:
        """The summary of the last closed window, None before the first closes."""
        return self._history[-1] if self._history else None

    @property
    def reference(self) -> dict[str, Any] | None:
        """The expected agreement and where it comes from (None until the first window closes)."""
        return self._reference

    def scorable(self, production: Any, candidate: Any) -> bool:
        """Whether two predictions can be compared (deciding the task on the first pair that can)."""
        if self._regression is None:
            if is_missing(production) or is_missing(candidate):
                return False
            self._regression = (is_number(production) and is_number(candidate)
                                and not (float(production).is_integer() and float(candidate).is_integer()))
        if self._regression:
            return is_number(production) and is_number(candidate) and math.isfinite(candidate - production)
        return not (is_missing(production) or is_missing(candidate))

    def add(self, production: dict, candidate: dict, events_seen: int, ts: float | None) -> list[Alert]:
        """One joined request; the shadow alert its window opens, if it closes one.

        Parameters
        ----------
        production, candidate
            The two models' events for the request.
        events_seen
            Production's events so far (the alert's `events_seen`).
        ts
            Stream time of the join (the alert's `ts`).
        """
        p, c = production.get("prediction"), candidate.get("prediction")
        if not self.scorable(p, c):
            self._unscorable += 1
            return []
        self._joined += 1
        w = self._window
        if self._regression:
            w.diffs.append(float(c) - float(p))
            w.production.append(float(p))
        else:
            w.agree.append(category_key(p) == category_key(c))
        pc, cc = production.get("confidence"), candidate.get("confidence")
        if is_number(pc) and is_number(cc) and 0 <= pc <= 1 and 0 <= cc <= 1:
            w.confidence_diffs.append(float(cc) - float(pc))
        features = production.get("features")
        features = features if isinstance(features, dict) else {}
        w.rows.append([b.bin(features.get(b.name)) for b in self._bins])
        if len(w) < self._config.shadow_window:
            return []
        return self._close(production, events_seen, ts)

    def add_labelled(self, production: Any, candidate: Any, label: Any) -> None:
        """Both models' predictions of a request and its delayed label (unscorable labels are skipped)."""
        if not self.scorable(production, candidate):  # joined before a changed baseline changed the task
            return
        if self._regression:
            if not is_number(label) or not math.isfinite(label):
                return
            self._labelled.append((abs(float(production) - label), abs(float(candidate) - label)))
        else:
            key = category_key(label)
            self._labelled.append((float(category_key(production) != key), float(category_key(candidate) != key)))

    # ---- windows -------------------------------------------------------------------------------------
    def _agreement(self, w: _Window) -> np.ndarray:
        if not self._regression:
            return np.asarray(w.agree, bool)
        if self._tolerance is None:  # no prediction profile: the spread of this (the first) window
            spread = float(np.std(w.production, ddof=1)) if len(w.production) > 1 else 0.0
            self._tolerance = SHADOW_REGRESSION_TOLERANCE * spread if spread > 0 else self._config.abs_tol
        return np.abs(np.asarray(w.diffs)) <= self._tolerance

    def _summary(self, w: _Window, agree: np.ndarray, ts: float | None) -> dict[str, Any]:
        n = len(agree)
        low, high = wilson_interval(float(agree.sum()), n, self._z_reported)
        out: dict[str, Any] = {"window": self._windows, "n": n, "agreement": float(agree.mean()), "ci_low": low,
                               "ci_high": high, "joined": self._joined, "ts": ts}
        if w.confidence_diffs:
            d = np.asarray(w.confidence_diffs)
            half = self._z_reported * (float(d.std(ddof=1)) if len(d) > 1 else 0.0) / math.sqrt(len(d))
            out["confidence_diff"] = {"mean": float(d.mean()), "ci_low": float(d.mean()) - half,
                                      "ci_high": float(d.mean()) + half, "n": len(d)}
        if self._regression:
            out["diff"] = self._differences(np.sort(np.asarray(w.diffs)))
        return out

    def _differences(self, ordered: np.ndarray) -> dict[str, Any]:
        """The distribution of candidate - production: with examples off, only pooled quantiles
        (the mean of the POOLED_VALUES differences around each), from MIN_POOLED_SUMMARY differences."""
        out: dict[str, Any] = {"mean": float(ordered.mean()), "mean_abs": float(np.abs(ordered).mean()),
                               "tolerance": self._tolerance}
        probs = (0.05, 0.5, 0.95)
        if self._config.include_examples:
            out.update(zip(("p05", "p50", "p95"), np.quantile(ordered, probs).tolist()))
        elif len(ordered) >= MIN_POOLED_SUMMARY:
            out.update(zip(("p05", "p50", "p95"), pooled_quantiles(ordered, probs, POOLED_VALUES).tolist()))
        return out

    def _close(self, production: dict, events_seen: int, ts: float | None) -> list[Alert]:
        w, self._window = self._window, _Window()
        self._windows += 1
        agree = self._agreement(w)
        summary = self._summary(w, agree, ts)
        self._history.append(summary)
        rate, n = summary["agreement"], summary["n"]
        if self._reference is None:  # the first window is the reference
            allowance = T.BASELINE_ALLOWANCE_SD * math.sqrt(rate * (1 - rate) / n)
            self._reference = {"source": "first_window", "agreement": rate, "n": n,
                               "expected": rate - self._config.tolerance - allowance}
            return []
        expected = self._reference["expected"]
        if not 0 < expected < 1:
            return []
        z = (expected - rate) / math.sqrt(expected * (1 - expected) / n)
        summary["below_expected"] = z > self._z_test  # the test rejected (an alert, or its open episode)
        if z <= self._z_test:
            return []
        episode = self._episodes.observe((self.candidate, "shadow"), self._joined)
        if episode is None:
            return []
        disagree = ~agree
        rows = np.asarray(w.rows, dtype=np.int64).reshape(n, len(self._bins))
        splits = [s for j, b in enumerate(self._bins)
                  if (s := _best_split(b, rows[:, j], disagree.astype(float))) is not None and s["z"] >= SHADOW_SPLIT_Z]
        splits.sort(key=lambda s: -s["z"])
        return [self._alert(summary, z, splits[:SHADOW_FEATURES_SHOWN], episode, production, events_seen, ts)]

    def _alert(self, summary: dict, z: float, splits: list[dict], episode: int, production: dict,
               events_seen: int, ts: float | None) -> Alert:
        ref = self._reference
        expected = ref["expected"]
        p_value = 0.5 * math.erfc(z / math.sqrt(2))
        current = {k: v for k, v in summary.items() if k not in ("joined", "ts", "below_expected")}
        labels = self.labelled_summary()
        evidence: dict[str, Any] = {
            "production": self.production, "candidate": self.candidate,
            "task": "regression" if self._regression else "classification",
            "agreement": rounded(summary["agreement"]), "ci_low": rounded(summary["ci_low"]),
            "ci_high": rounded(summary["ci_high"]), "expected_agreement": rounded(expected),
            "reference": _rounded_tree(ref),
            "window": summary["window"], "alpha_per_look": SHADOW_ALPHA,
            "separating_features": _rounded_tree(splits), "labels": _rounded_tree(labels), "episode": episode}
        version = production.get("model_version")
        return Alert(
            alert_id=alert_id(self.production, None, "shadow", f"agreement:{self.candidate}", episode,
                              self._reference_id),
            kind="shadow", model=self.production,
            model_version=None if version is None else quote_value(version, MAX_LABEL),
            feature=None, detector="shadow_join", statistic=z, threshold=self._z_test, p_value=p_value,
            baseline={"agreement": ref.get("agreement"), "expected": expected, "source": ref["source"],
                      "n": ref.get("n")},
            current=current, events_seen=events_seen, ts=ts,
            severity="critical" if expected - summary["agreement"] >= SHADOW_CRITICAL_DROP else "warning",
            **Diagnosis("shadow_disagreement", self._sentence(summary, splits, labels, p_value),
                        evidence).alert_fields())

    def _sentence(self, summary: dict, splits: list[dict], labels: dict | None, p_value: float) -> str:
        ref = self._reference
        cand, prod = (f"'{printable(m[:MAX_LABEL])}'" for m in (self.candidate, self.production))
        what = (f"predicts within {number(self._tolerance)} of {prod}" if self._regression
                else f"agrees with {prod}")
        source = (f"the first window's {percent(ref['agreement'])} (n={count(ref['n'])}) less "
                  f"{number(100 * self._config.tolerance)} points and its sampling error"
                  if ref["source"] == "first_window" else "the configured minimum")
        text = (f"candidate {cand} {what} on {percent(summary['agreement'])} ({REPORTED_CI:.0%} CI "
                f"{percent(summary['ci_low'])}-{percent(summary['ci_high'])}) of the {count(summary['n'])} requests "
                f"of shadow window {summary['window']}, below the {percent(ref['expected'])} expected ({source}; "
                f"p={p_value:.1g})")
        if splits:
            parts = [f"{s['segment']} ({percent(s['share'])} of the requests: {percent(s['disagreement_in'])} "
                     f"disagree there, {percent(s['disagreement_out'])} elsewhere)" for s in splits]
            text += "; the disagreements concentrate where " + "; ".join(parts)
        else:
            text += "; no feature's segment separates the disagreements: they are spread over the traffic"
        if labels is not None and labels["verdict"] is not None:
            text += "; " + _label_sentence(labels)
        return text

    # ---- labels --------------------------------------------------------------------------------------
    def labelled_summary(self) -> dict[str, Any] | None:
        """Each model's accuracy (or MAE) on the labelled requests both answered, with 95% intervals,
        and the paired test of their difference (None before the first labelled pair).

        `difference` is the candidate's figure minus production's; `verdict` (from SHADOW_MIN_LABELS
        pairs) is "candidate_better", "candidate_worse" or "no_real_difference" at two-sided
        SHADOW_LABEL_ALPHA: McNemar's test on the discordant pairs for accuracy, a z test of the mean
        paired difference of absolute errors for MAE.
        """
        n = len(self._labelled)
        if not n:
            return None
        errors = np.asarray(self._labelled)
        zq = self._z_reported
        if self._regression:
            metric = "mae"
            figures = {}
            for side, e in (("production", errors[:, 0]), ("candidate", errors[:, 1])):
                half = zq * (float(e.std(ddof=1)) if n > 1 else 0.0) / math.sqrt(n)
                figures[side] = {"mae": float(e.mean()), "ci_low": max(0.0, float(e.mean()) - half),
                                 "ci_high": float(e.mean()) + half}
            d = errors[:, 1] - errors[:, 0]
            diff = float(d.mean())
            se = (float(d.std(ddof=1)) if n > 1 else 0.0) / math.sqrt(n)
            z = diff / se if se > 0 else 0.0
            test = "paired_z"
        else:
            metric = "accuracy"
            figures = {}
            for side, e in (("production", errors[:, 0]), ("candidate", errors[:, 1])):
                low, high = wilson_interval(n - float(e.sum()), n, zq)
                figures[side] = {"accuracy": 1 - float(e.mean()), "ci_low": low, "ci_high": high}
            only_production = float(((errors[:, 0] == 0) & (errors[:, 1] == 1)).sum())
            only_candidate = float(((errors[:, 0] == 1) & (errors[:, 1] == 0)).sum())
            diff = (only_candidate - only_production) / n
            se = math.sqrt(max((only_candidate + only_production) / n - diff * diff, 0.0) / n)
            discordant = only_candidate + only_production
            z = (only_candidate - only_production) / math.sqrt(discordant) if discordant else 0.0
            test = "mcnemar"
        p_value = math.erfc(abs(z) / math.sqrt(2))
        verdict = None
        if n >= SHADOW_MIN_LABELS:
            better = diff < 0 if self._regression else diff > 0
            verdict = ("no_real_difference" if p_value >= SHADOW_LABEL_ALPHA or diff == 0
                       else "candidate_better" if better else "candidate_worse")
        return {"metric": metric, "n": n, "production": figures["production"], "candidate": figures["candidate"],
                "difference": diff, "difference_ci_low": diff - zq * se, "difference_ci_high": diff + zq * se,
                "test": test, "p_value": p_value, "verdict": verdict}

    def state_dict(self) -> dict[str, Any]:
        """The pair's statistics as plain data (`load_state` takes it back into a ShadowComparison of
        the same pair and baseline): the task read off the first pair, the open window, the closed
        windows' summaries, the reference and the labelled errors."""
        w = self._window
        return {"regression": self._regression, "tolerance": self._tolerance, "joined": self._joined,
                "unscorable": self._unscorable, "windows": self._windows, "reference": self._reference,
                "history": list(self._history), "labelled": [list(e) for e in self._labelled],
                "episodes": self._episodes.state_dict(),
                "window": {"agree": bytes(w.agree), "diffs": w.diffs, "production": w.production,
                           "confidence_diffs": w.confidence_diffs, "rows": w.rows}}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        self._regression, self._tolerance = state["regression"], state["tolerance"]
        self._joined, self._unscorable = int(state["joined"]), int(state["unscorable"])
        self._windows, self._reference = int(state["windows"]), state["reference"]
        self._history.extend(state["history"])
        self._labelled.extend((float(a), float(b)) for a, b in state["labelled"])
        self._episodes.load_state(state["episodes"])
        saved = state["window"]
        w = self._window = _Window()
        w.agree = [bool(b) for b in saved["agree"]]
        w.diffs, w.production = list(saved["diffs"]), list(saved["production"])
        w.confidence_diffs = list(saved["confidence_diffs"])
        w.rows = [list(r) for r in saved["rows"]]

    def snapshot(self) -> dict[str, Any]:
        """The pair's counts, reference, open window, closed windows (newest last) and labelled comparison."""
        w = self._window
        live: dict[str, Any] = {"n": len(w)}
        if len(w) and (not self._regression or self._tolerance is not None):
            live["agreement"] = float(self._agreement(w).mean())
        return {"production": self.production, "candidate": self.candidate,
                "task": None if self._regression is None else "regression" if self._regression else "classification",
                "joined": self._joined, "unscorable": self._unscorable, "reference": self._reference,
                "regression_tolerance": self._tolerance if self._regression else None,
                "live": live, "windows": list(self._history), "labels": self.labelled_summary()}


def _rounded_tree(value: Any) -> Any:
    """A copy with every float `rounded` (an alert's evidence is for reading)."""
    if isinstance(value, float):
        return rounded(value)
    if isinstance(value, dict):
        return {k: _rounded_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded_tree(v) for v in value]
    return value


def _label_sentence(labels: dict[str, Any]) -> str:
    metric = labels["metric"]
    fmt = number if metric == "mae" else percent
    p, c = labels["production"], labels["candidate"]

    def figure(d: dict) -> str:
        return f"{fmt(d[metric])} ({REPORTED_CI:.0%} CI {fmt(d['ci_low'])}-{fmt(d['ci_high'])})"

    verdict = {"candidate_better": "the candidate is really better", "candidate_worse": "the candidate is really worse",
               "no_real_difference": "not a real difference"}[labels["verdict"]]
    return (f"on {count(labels['n'])} labelled requests the candidate's {metric} is {figure(c)} against production's "
            f"{figure(p)}: {verdict} (p={labels['p_value']:.2g})")


class ShadowMonitor:
    """Every shadow pair: the joins of the two models' events and of the joined pairs with their labels.

    Parameters
    ----------
    pairs
        (production, candidate) model names (`parse_shadow_pairs`).
    baseline_of
        Production's baseline by model name, or None (a changed baseline restarts the pair's statistics).
    config
        TTLs, caps, window and expected agreement (`JoinConfig`).
    labels
        Whether labels will come (`add_label`): joined pairs then wait for theirs (bounded like the joins).
    """

    def __init__(self, pairs: Iterable[tuple[str, str]], baseline_of: Callable[[str], Baseline | None],
                 config: JoinConfig = DEFAULT_JOIN_CONFIG, labels: bool = True):
        self._pairs = tuple(pairs)
        self._baseline_of = baseline_of
        self._config = config
        self._candidates: dict[str, list[str]] = {}
        for production, candidate in self._pairs:
            self._candidates.setdefault(production, []).append(candidate)
        self._production_of = {c: p for p, c in self._pairs}
        self._joins = {pair: RequestJoin(config.shadow_ttl, config.max_entries, ("production", "candidate"))
                       for pair in self._pairs}
        self._label_joins = ({pair: RequestJoin(config.ttl, config.max_entries, ("pair", "label"))
                              for pair in self._pairs} if labels else {})
        self._comparisons: dict[tuple[str, str], tuple[Baseline | None, ShadowComparison]] = {}

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        return self._pairs

    def role(self, model: Any) -> str | None:
        """"production", "candidate" or None: the model's part in the shadow pairs."""
        if model in self._production_of:
            return "candidate"
        return "production" if model in self._candidates else None

    def production_of(self, candidate: str) -> str:
        """The production model a candidate shadows."""
        return self._production_of[candidate]

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Each pair's join counters (and its label join's), named "shadow <production>=<candidate>"."""
        out = {}
        for (production, candidate), join in self._joins.items():
            out[f"shadow {production}={candidate}"] = join.counts
            if (production, candidate) in self._label_joins:
                out[f"shadow {production}={candidate} labels"] = self._label_joins[production, candidate].counts
        return out

    def _comparison(self, pair: tuple[str, str]) -> ShadowComparison:
        baseline = self._baseline_of(pair[0])
        entry = self._comparisons.get(pair)
        if entry is None or entry[0] is not baseline:
            entry = self._comparisons[pair] = (baseline, ShadowComparison(*pair, baseline, self._config))
        return entry[1]

    def add_prediction(self, event: dict, ts: float | None, events_seen: int) -> list[Alert]:
        """A prediction event of a model of a pair (others are ignored), with its stream time and
        production's events so far; the shadow alerts it completes."""
        model, request_id = event.get("model"), event.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            return []
        role = self.role(model)
        if role is None:
            return []
        pairs = [(model, c) for c in self._candidates[model]] if role == "production" else [
            (self._production_of[model], model)]
        alerts: list[Alert] = []
        for pair in pairs:
            join = self._joins[pair]
            other = join.offer(role, request_id, event, ts)
            if other is None:
                continue
            production, candidate = (event, other) if role == "production" else (other, event)
            comparison = self._comparison(pair)
            now = join.now if join.now > -math.inf else None
            before = comparison.joined
            alerts += comparison.add(production, candidate, events_seen, now)
            if pair in self._label_joins and comparison.joined > before:  # scorable: it waits for its label
                predictions = (production.get("prediction"), candidate.get("prediction"))
                label = self._label_joins[pair].offer("pair", request_id, predictions, ts)
                if label is not None:
                    comparison.add_labelled(*predictions, label)
        return alerts

    def add_label(self, production: str, request_id: str, label: Any, ts: float | None) -> None:
        """A delayed label of production's request (as the label join matched it): to each of its pairs."""
        for candidate in self._candidates.get(production, ()):
            pair = (production, candidate)
            join = self._label_joins.get(pair)
            if join is None:
                continue
            predictions = join.offer("label", request_id, label, ts)
            if predictions is not None:
                self._comparison(pair).add_labelled(*predictions, label)

    def figures(self) -> list[dict[str, Any]]:
        """Per pair, the few figures a gauge shows (cheap: read off the last closed window): requests
        joined, the last window's agreement and confidence difference, the expected agreement (None until known).

        >>> [f["agreement"] for f in ShadowMonitor([("a", "b")], lambda m: None).figures()]
        [None]
        """
        out = []
        for pair in self._pairs:
            entry = self._comparisons.get(pair)
            comparison = entry[1] if entry is not None else None
            last = comparison.last_window if comparison is not None else None
            reference = comparison.reference if comparison is not None else None
            out.append({"production": pair[0], "candidate": pair[1],
                        "joined": comparison.joined if comparison is not None else 0,
                        "agreement": last["agreement"] if last else None,
                        "expected": reference["expected"] if reference else None,
                        "confidence_diff": last["confidence_diff"]["mean"] if last and "confidence_diff" in last
                        else None})
        return out

    def state_dict(self) -> dict[str, Any]:
        """Per pair ("production=candidate"): its joins' buffers and its comparison's state with its
        baseline's fingerprint (None: no baseline), as plain data (`load_state` takes it back)."""
        out = {}
        for pair in self._pairs:
            entry = self._comparisons.get(pair)
            out[shadow_pairs_text([pair])] = {
                "join": self._joins[pair].state_dict(),
                "label_join": self._label_joins[pair].state_dict() if pair in self._label_joins else None,
                "comparison": None if entry is None else {
                    "baseline": None if entry[0] is None else entry[0].fingerprint, "state": entry[1].state_dict()}}
        return out

    def load_state(self, state: dict[str, Any]) -> list[str]:
        """Continue from a `state_dict`: the pairs still configured (a pair no longer configured is
        dropped); a comparison taken against another baseline of production starts afresh. The
        production models whose comparison was left out are returned."""
        left_out = []
        for pair in self._pairs:
            saved = state.get(shadow_pairs_text([pair]))
            if saved is None:
                continue
            self._joins[pair].load_state(saved["join"])
            if pair in self._label_joins and saved["label_join"] is not None:
                self._label_joins[pair].load_state(saved["label_join"])
            if saved["comparison"] is not None:
                baseline = self._baseline_of(pair[0])
                if (None if baseline is None else baseline.fingerprint) != saved["comparison"]["baseline"]:
                    left_out.append(pair[0])
                    continue
                comparison = ShadowComparison(*pair, baseline, self._config)
                comparison.load_state(saved["comparison"]["state"])
                self._comparisons[pair] = (baseline, comparison)
        return left_out

    def snapshot(self) -> dict[str, Any]:
        """Per pair ("production=candidate"): its comparison's snapshot and join counters."""
        out = {}
        for pair in self._pairs:
            entry = self._comparisons.get(pair)
            snap = entry[1].snapshot() if entry is not None else {"production": pair[0], "candidate": pair[1],
                                                                 "joined": 0}
            snap["counts"] = self._joins[pair].counts
            out[f"{pair[0]}={pair[1]}"] = snap
        return out


def shadow_pairs_text(pairs: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """The canonical text of pairs ("a=b,c=d"), as `parse_shadow_pairs` reads it back.

    >>> shadow_pairs_text(parse_shadow_pairs(" credit = credit-v2 "))
    'credit=credit-v2'
    """
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return ",".join(f"{p}={c}" for p, c in items)
