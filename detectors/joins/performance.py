"""Delayed labels: live accuracy (classification) or MAE (regression) against the validation figure.

Each labelled prediction's error feeds River ADWIN; the live figure on ADWIN's window is tested
against the baseline's ``metric`` and a significant drop raises a ``performance`` alert.
"""
from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Collection, Mapping
from itertools import islice
from statistics import NormalDist
from typing import Any

import numpy as np

from baselines.profile import category_key
from detectors import thresholds as T
from detectors.alerts import Alert, alert_id
from detectors.diagnosis import Diagnosis
from detectors.episodes import EpisodeTracker
from detectors.extract import TrainedSpelling
from detectors.fmt import count, number, percent, printable, quote_value, rounded
from detectors.joins.config import DEFAULT_JOIN_CONFIG, JoinConfig
from detectors.joins.wire import is_missing, is_number
from detectors.river_adapter import ADWIN, adwin_state, restore_adwin
from detectors.sketches import MAX_LABEL

__all__ = ["PerformanceMonitor", "wilson_interval"]

#: performance test: one look every LOOK_EVERY labels, each at alpha PERFORMANCE_ALPHA (Bonferroni:
#: at most PERFORMANCE_ALPHA / LOOK_EVERY = 2e-9 false alerts per label on a stationary stream)
LOOK_EVERY = 50
PERFORMANCE_ALPHA = 1e-7
#: most recent labelled predictions the live figure is measured on (ADWIN's window, capped)
MAX_LABEL_WINDOW = 5000
#: the 0/1 error stream's change detector; a detection only shortens the window (never alerts)
LABEL_ADWIN_DELTA = T.ADWIN_DELTA
#: level of the interval reported with the live figure (the test uses its own, stricter one)
REPORTED_CI = 0.95
#: power at which the alert states the smallest drop its labelled sample can detect
DETECTION_POWER = 0.8
#: categorical features (the baseline's first ones) whose segments the drop is recomputed in, besides model_version
MAX_SEGMENT_FEATURES = 8
#: fewest labels of a segment, in the window or before it, for its figure to count
MIN_SEGMENT_LABELS = 30
#: largest segments of a feature an alert lists
SEGMENTS_SHOWN = 3
#: a segment "appears with the drop" when it holds at least this share of the window and, before it, at
#: most NEW_SEGMENT_BEFORE of the labels or fewer than MIN_SEGMENT_LABELS
NEW_SEGMENT_SHARE = 0.05
NEW_SEGMENT_BEFORE = 0.01
#: the segments of values a segment feature groups apart from its training categories
NOT_IN_TRAINING = "(not in training)"
MISSING_SEGMENT = "(missing)"


def wilson_interval(successes: float, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion (good at small n and near 0 or 1).

    >>> [round(x, 3) for x in wilson_interval(90, 100, 1.96)]
    [0.826, 0.945]
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _same_class(prediction: Any, label: Any) -> bool:
    return category_key(prediction) == category_key(label)


class PerformanceMonitor:
    """One model's labelled predictions against its validation figure (`Baseline.metric`).

    Classification ("accuracy"): the 0/1 error of each labelled prediction feeds River ADWIN; the
    live accuracy is measured on ADWIN's window (the labels since the last change it found, at
    most MAX_LABEL_WINDOW). Every LOOK_EVERY labels, once min_labels are in the window, a score
    test asks whether the live accuracy is below validation - tolerance - the validation figure's
    own sampling error (4 standard errors); the alert fires when p < PERFORMANCE_ALPHA.
    Regression ("mae"): the same on the absolute error, with a normal interval, against
    validation MAE x (1 + tolerance).
    """

    def __init__(self, model: str, metric: dict[str, Any] | None, config: JoinConfig = DEFAULT_JOIN_CONFIG,
                 reference: str = "", segments: Mapping[str, Collection[str]] | None = None):
        self._model = model
        #: the baseline's fingerprint: alert ids are counted against it (see detectors.alerts.alert_id)
        self._reference = reference
        self._metric = metric
        self._config = config
        self._regression = bool(metric) and metric.get("name") == "mae"
        self._adwin = ADWIN(delta=LABEL_ADWIN_DELTA)
        self._errors: deque[float] = deque(maxlen=MAX_LABEL_WINDOW)
        self._episodes = EpisodeTracker(config.rearm_quiet)
        self._z_test = NormalDist().inv_cdf(1 - PERFORMANCE_ALPHA)
        self._z_reported = NormalDist().inv_cdf(0.5 + REPORTED_CI / 2)
        self._labelled = 0
        self._unscorable = 0
        self._change_at: int | None = None
        # each labelled prediction's segments (model_version, then the categorical features': a training
        # category, NOT_IN_TRAINING or MISSING_SEGMENT), beside its error: bounded like the errors
        self._segment_features = ["model_version", *list(segments or {})[:MAX_SEGMENT_FEATURES]]
        self._training_categories = [frozenset(c) for c in list((segments or {}).values())[:MAX_SEGMENT_FEATURES]]
        self._spellings = [TrainedSpelling(c) for c in list((segments or {}).values())[:MAX_SEGMENT_FEATURES]]
        self._segments: deque[tuple[str, ...]] = deque(maxlen=MAX_LABEL_WINDOW)
        self._z_power = NormalDist().inv_cdf(DETECTION_POWER)

    @property
    def labelled(self) -> int:
        return self._labelled

    def update(self, prediction: dict, label: Any, events_seen: int, ts: float | None) -> list[Alert]:
        """One labelled prediction (`prediction`: the remembered {"prediction", "model_version"})."""
        predicted = prediction.get("prediction")
        if self._regression:
            if not (is_number(predicted) and is_number(label)) or not math.isfinite(predicted - label):
                self._unscorable += 1
                return []
            error = abs(predicted - label)
        else:
            if is_missing(predicted) or is_missing(label):
                self._unscorable += 1
                return []
            error = 0.0 if _same_class(predicted, label) else 1.0
        self._labelled += 1
        self._errors.append(error)
        self._segments.append(self._segment_of(prediction))
        self._adwin.update(error)
        if self._adwin.drift_detected:  # River restarts ADWIN's window with the next label
            self._change_at = self._labelled
        if not self._metric or self._labelled % LOOK_EVERY:
            return []
        return self._look(prediction, events_seen, ts)

    def worse_than_validation(self) -> dict[str, Any] | None:
        """The live figure when the performance test rejects "as good as validation" on the current
        window (the test of the `performance` alert, whether or not its episode is open), else None:
        the overall drop a leakage suspect requires."""
        errors = self._window()
        tested = self._test(errors)
        if tested is None or tested[0] <= self._z_test:
            return None
        _, _, base, live = tested
        name = "mae" if self._regression else "accuracy"
        return {"metric": name, "live": live[name], "ci_low": live["ci_low"], "ci_high": live["ci_high"],
                "n": live["n"], "validation": base[name]}

    def _segment_of(self, prediction: dict) -> tuple[str, ...]:
        version = prediction.get("model_version")
        features = prediction.get("features")
        features = features if isinstance(features, dict) else {}
        keys = [MISSING_SEGMENT if version is None else quote_value(str(version), MAX_LABEL)]
        for name, categories, spell in zip(self._segment_features[1:], self._training_categories, self._spellings):
            v = features.get(name)
            if is_missing(v):
                keys.append(MISSING_SEGMENT)
            elif isinstance(v, (str, int, float, bool)) and spell(v) in categories:  # as the monitors code it
                keys.append(spell(v))
            else:  # anything else is one segment: a producer cannot grow the state with new values
                keys.append(NOT_IN_TRAINING)
        return tuple(keys)

    def _window(self) -> np.ndarray:
        n = min(int(self._adwin.width), len(self._errors))
        return np.fromiter(islice(self._errors, len(self._errors) - n, None), float, n)

    def _test(self, errors: np.ndarray) -> tuple[float, float, dict, dict] | None:
        """(z, bound, validation summary, live summary) of the window's test, None with too few labels."""
        n = len(errors)
        if not self._metric or n < self._config.min_labels:
            return None
        value, n_val = float(self._metric["value"]), int(self._metric.get("n") or 0)
        if self._regression:
            mean, sd = float(errors.mean()), float(errors.std(ddof=1)) or 1e-12
            allowance = 0.0 if n_val <= 1 else T.BASELINE_ALLOWANCE_SD * sd / math.sqrt(n_val)
            bound = value * (1 + self._config.tolerance) + allowance
            z = (mean - bound) / (sd / math.sqrt(n))
            half = self._z_reported * sd / math.sqrt(n)
            live = {"mae": mean, "ci_low": max(0.0, mean - half), "ci_high": mean + half, "n": n}
            base = {"mae": value, "n": n_val}
        else:
            accuracy = 1.0 - float(errors.mean())
            allowance = 0.0 if n_val <= 0 else T.BASELINE_ALLOWANCE_SD * math.sqrt(value * (1 - value) / n_val)
            bound = value - self._config.tolerance - allowance
            if bound <= 0:
                return None
            # the score test of "accuracy >= bound": rejected exactly when Wilson's upper limit is below it
            z = (bound - accuracy) / math.sqrt(bound * (1 - bound) / n) if bound < 1 else 0.0
            low, high = wilson_interval(accuracy * n, n, self._z_reported)
            live = {"accuracy": accuracy, "ci_low": low, "ci_high": high, "n": n}
            base = {"accuracy": value, "n": n_val}
        return z, bound, base, live

    def _look(self, prediction: dict, events_seen: int, ts: float | None) -> list[Alert]:
        errors = self._window()
        tested = self._test(errors)
        if tested is None or tested[0] <= self._z_test:
            return []
        z, bound, base, live = tested
        episode = self._episodes.observe((None, "performance"), self._labelled)
        if episode is None:
            return []
        p_value = 0.5 * math.erfc(z / math.sqrt(2))
        version = prediction.get("model_version")
        return [Alert(
            alert_id=alert_id(self._model, None, "performance", self._metric.get("name", "accuracy"), episode,
                              self._reference),
            kind="performance", model=self._model,
            model_version=None if version is None else quote_value(version, MAX_LABEL),
            feature=None, detector="label_join", statistic=z, threshold=self._z_test, p_value=p_value,
            baseline=base, current=live, events_seen=events_seen, ts=ts,
            severity="critical",
            **self._diagnosis(base, live, bound, p_value, errors).alert_fields(),
        )]

    def _diagnosis(self, base: dict, live: dict, bound: float, p_value: float, errors: np.ndarray) -> Diagnosis:
        name = "mae" if self._regression else "accuracy"
        fmt = number if self._regression else percent
        since = ("" if self._change_at is None else
                 f"; ADWIN dates the change ~{count(self._labelled - self._change_at)} labels ago")
        sentence = (f"live {name} {fmt(live[name])} "
                    f"({REPORTED_CI:.0%} CI {fmt(live['ci_low'])}-{fmt(live['ci_high'])}, "
                    f"n={live['n']:,} labelled predictions) vs {fmt(base[name])} on validation (n={base['n']:,}): "
                    f"the model really performs worse in production (p={p_value:.1g}){since}")
        evidence: dict[str, Any] = {
            "metric": name, "test_bound": rounded(bound), "alpha_per_look": PERFORMANCE_ALPHA, "look_every": LOOK_EVERY,
            "labelled": self._labelled,
            "change_labels_ago": None if self._change_at is None else self._labelled - self._change_at}
        detectable, detect_sentence = self._detectable(base[name], live[name], bound, errors)
        evidence.update(detectable)
        segments, segment_sentence = self._segment_check(errors)
        evidence["segments"] = segments
        return Diagnosis("performance_drop", f"{sentence}; {detect_sentence}; {segment_sentence}", evidence)

    # ---- is the problem real? --------------------------------------------------------------------
    def _detectable(self, validation: float, live: float, bound: float, errors: np.ndarray) -> tuple[dict, str]:
        """The smallest drop from validation the test detects DETECTION_POWER of the time at the
        window's sample size, against the drop measured: is the sample big enough for the claim?

        The test rejects "figure at the bound" past z_test standard errors (at the bound); a true
        figure a further z_power standard errors (its own) beyond is rejected with the stated power.
        Accuracy: standard errors sqrt(p (1 - p) / n); MAE: the window's sd / sqrt(n) for both.
        """
        n = len(errors)
        if self._regression:
            se = (float(errors.std(ddof=1)) or 1e-12) / math.sqrt(n)
            smallest = bound - validation + (self._z_test + self._z_power) * se
            measured = live - validation
            shown, unit = number(smallest), ""
            measured_shown = number(measured)
            what = "a rise of the MAE"
        else:
            # rejected below bound - z_test * se(bound); at a true accuracy p the estimate's own standard
            # error is sqrt(p (1 - p) / n): solve p = bound - z_test se(bound) - z_power se(p) (fixed point)
            critical = bound - self._z_test * math.sqrt(bound * (1 - bound) / n)
            p = critical
            for _ in range(20):
                p = max(0.0, critical - self._z_power * math.sqrt(p * (1 - p) / n))
            smallest = validation - p
            measured = validation - live
            shown, measured_shown, unit = number(100 * smallest), number(100 * measured), " points"
            what = "a drop"
        enough = measured >= smallest
        verdict = ("above it: enough labels for the claim" if enough else
                   "near that limit: real, but its size is uncertain until more labels arrive")
        sentence = (f"{n:,} labels detect {what} of {shown}{unit} or more {DETECTION_POWER:.0%} of the time; the "
                    f"measured {measured_shown}{unit} is {verdict}")
        return ({"minimum_detectable_change": rounded(smallest), "measured_change": rounded(measured),
                 "detection_power": DETECTION_POWER, "enough_labels": enough}, sentence)

    def _segment_check(self, errors: np.ndarray) -> tuple[dict, str]:
        """Did something else change with the drop? The window's labels against those before it (the
        rest of the kept labels), segment by segment, for model_version and each tracked categorical:

        * a segment that appears with the drop (a new model_version, values not in training: too few
          labels before for a figure, or a negligible share) and whose removal leaves the rest of the
          window within half the drop of before: `new_segment`;
        * else the drop split, by direct standardisation, into the part the new mix of segments
          explains at the old per-segment figures and the part within segments; the mix explaining
          at least half of it: `mix_change`;
        * else `within_segments`: the largest segments degraded themselves.
        Without MIN_SEGMENT_LABELS x 2 labels before the window there is nothing to compare with: `no_history`.
        """
        n = len(errors)
        keys = list(self._segments)[-n:] if n else []
        before_errors = np.fromiter(islice(self._errors, 0, len(self._errors) - n), float)
        before_keys = list(self._segments)[: len(self._errors) - n]
        if len(before_errors) < 2 * MIN_SEGMENT_LABELS:
            return ({"verdict": "no_history", "labels_before": len(before_errors)},
                    "too few labels before the change to tell a traffic mix change from a drop within segments")
        err_before, err_now = float(before_errors.mean()), float(errors.mean())
        total = err_now - err_before
        found = []
        for j, feature in enumerate(self._segment_features):
            now = _by_segment(errors, [k[j] for k in keys])
            before = _by_segment(before_errors, [k[j] for k in before_keys])
            found.append((feature, now, before))
        for feature, now, before in found:  # model_version first
            for segment, (count_now, err_sum_now) in now.items():
                count_before = before.get(segment, (0, 0.0))[0]
                # new: too few labels before for a figure of its own, or a negligible share of them
                new = count_before < MIN_SEGMENT_LABELS or count_before <= NEW_SEGMENT_BEFORE * len(before_errors)
                if count_now >= max(MIN_SEGMENT_LABELS, NEW_SEGMENT_SHARE * n) and new and count_now < n:
                    rest = (err_now * n - err_sum_now) / (n - count_now)
                    if total > 0 and rest - err_before <= total / 2:
                        return self._segments_found("new_segment", feature, now, before, n, len(before_errors),
                                                    {"segment": segment, "total_change": rounded(total),
                                                     "change_without_it": rounded(rest - err_before)})
        split = []
        for feature, now, before in found:
            # the window's error had each segment kept its error of before (unknown ones: the overall one)
            expected = sum(c * (before[s][1] / before[s][0] if before.get(s, (0,))[0] >= MIN_SEGMENT_LABELS
                                else err_before) for s, (c, _) in now.items()) / n
            big = sum(c >= MIN_SEGMENT_LABELS for c, _ in now.values())
            split.append((expected - err_before, big, feature, now, before))
        mix, _, feature, now, before = max(split, key=lambda m: m[0])
        verdict = "mix_change" if total > 0 and mix >= total / 2 else "within_segments"
        if verdict == "within_segments":  # shown on the feature with the most segments large enough to compare
            mix, big, feature, now, before = max(split, key=lambda m: m[1])
            if big < 2:
                return ({"verdict": "one_segment", "labels_before": len(before_errors)},
                        "the labelled traffic is one segment (of model_version and the categorical features): no mix "
                        "to compare")
        # in the metric's units: a rise of the mean error is the accuracy's fall, the MAE's rise
        return self._segments_found(verdict, feature, now, before, n, len(before_errors),
                                    {"total_change": rounded(total), "mix_effect": rounded(round(mix, 9)),
                                     "within_effect": rounded(round(total - mix, 9))})

    def _segments_found(self, verdict: str, feature: str, now: dict, before: dict, n: int, n_before: int,
                        extra: dict) -> tuple[dict, str]:
        metric = "mae" if self._regression else "accuracy"
        fmt = number if self._regression else percent

        def figure(counts: tuple[int, float]) -> float | None:
            c, e = counts
            if c < MIN_SEGMENT_LABELS:
                return None
            return e / c if self._regression else 1 - e / c

        largest = sorted(now, key=lambda s: -now[s][0])[:SEGMENTS_SHOWN]
        if "segment" in extra and extra["segment"] not in largest:
            largest = [extra["segment"], *largest[:-1]]
        rows = [{"segment": s, "labels": now[s][0], "share_before": rounded(before.get(s, (0, 0.0))[0] / n_before),
                 "share_now": rounded(now[s][0] / n),
                 f"{metric}_before": _rounded_or_none(figure(before.get(s, (0, 0.0)))),
                 f"{metric}_now": _rounded_or_none(figure(now[s])), "not_in_training": s == NOT_IN_TRAINING}
                for s in largest]
        evidence = {"verdict": verdict, "feature": feature, "labels_before": n_before, **extra, "largest": rows}

        def row_text(r: dict) -> str:
            b, c = r[f"{metric}_before"], r[f"{metric}_now"]
            figures = f"{metric} {fmt(b)} -> {fmt(c)}" if b is not None else f"{metric} {fmt(c)}, new"
            return (f"'{printable(r['segment'])}' {percent(r['share_before'])} -> {percent(r['share_now'])} of labels, "
                    f"{figures}")

        def amount(x: float) -> str:  # a change of the mean error, in the metric's units
            return number(x) if self._regression else f"{number(100 * x)} points"

        what = "model_version" if feature == "model_version" else f"'{printable(feature)}'"
        change = "rise" if self._regression else "drop"
        if verdict == "new_segment":
            [row] = [r for r in rows if r["segment"] == extra["segment"]]
            sentence = (f"the {change} comes with a new segment of {what}: {row_text(row)}; without it the {change} "
                        f"is {amount(extra['change_without_it'])} of {amount(extra['total_change'])}")
        elif verdict == "mix_change":
            sentence = (f"a traffic mix change in {what}: the new mix alone, at each segment's figure of before, "
                        f"accounts for {amount(extra['mix_effect'])} of the {change} ({amount(extra['total_change'])} "
                        f"since before the window; {', '.join(map(row_text, rows))})")
        else:
            sentence = (f"the {change} holds within the largest segments of {what} "
                        f"({', '.join(map(row_text, rows))}), not a traffic mix change")
        return evidence, sentence

    def state_dict(self) -> dict[str, Any]:
        """The labelled errors, their segments, ADWIN's window and the episodes as plain data
        (`load_state` takes it back into a PerformanceMonitor of the same model and baseline)."""
        window, drift = adwin_state(self._adwin)
        return {"errors": list(self._errors), "segments": [list(k) for k in self._segments],
                "adwin": window, "adwin_drift": drift, "episodes": self._episodes.state_dict(),
                "labelled": self._labelled, "unscorable": self._unscorable, "change_at": self._change_at}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        self._errors.extend(float(e) for e in state["errors"])
        self._segments.extend(tuple(k) for k in state["segments"])
        restore_adwin(self._adwin, state["adwin"], state["adwin_drift"])
        self._episodes.load_state(state["episodes"])
        self._labelled, self._unscorable = int(state["labelled"]), int(state["unscorable"])
        self._change_at = None if state["change_at"] is None else int(state["change_at"])

    def snapshot(self) -> dict[str, Any]:
        """Labelled and unscorable predictions, the window's live figure and the validation one."""
        errors = self._window()
        mean = float(errors.mean()) if len(errors) else None
        figure = mean if self._regression or mean is None else 1.0 - mean
        return {"labelled": self._labelled, "unscorable": self._unscorable, "window": len(errors),
                "metric": "mae" if self._regression else "accuracy", "live": figure,
                "validation": None if not self._metric else self._metric.get("value")}


def _by_segment(errors: np.ndarray, segments: list[str]) -> dict[str, tuple[int, float]]:
    """segment -> (labels, sum of their errors)."""
    labels: Counter[str] = Counter()
    sums: dict[str, float] = {}
    for e, s in zip(errors.tolist(), segments):
        labels[s] += 1
        sums[s] = sums.get(s, 0.0) + e
    return {s: (labels[s], sums[s]) for s in labels}


def _rounded_or_none(x: float | None) -> float | None:
    return None if x is None else rounded(x)
