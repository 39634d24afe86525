"""Delayed labels: live accuracy (classification) or MAE (regression) against the validation figure.

Each labelled prediction's error feeds River ADWIN; the live figure on ADWIN's window is tested
against the baseline's ``metric`` and a significant drop raises a ``performance`` alert.
"""
from __future__ import annotations

import math
from collections import deque
from itertools import islice
from statistics import NormalDist
from typing import Any

import numpy as np

from baselines.profile import category_key
from detectors import thresholds as T
from detectors.alerts import Alert, alert_id
from detectors.diagnosis import Diagnosis
from detectors.episodes import EpisodeTracker
from detectors.fmt import count, number, percent, quote_value, rounded
from detectors.joins.config import DEFAULT_JOIN_CONFIG, JoinConfig
from detectors.joins.wire import is_missing, is_number
from detectors.river_adapter import ADWIN
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
                 reference: str = ""):
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
        self._adwin.update(error)
        if self._adwin.drift_detected:  # River restarts ADWIN's window with the next label
            self._change_at = self._labelled
        if not self._metric or self._labelled % LOOK_EVERY:
            return []
        return self._look(prediction, events_seen, ts)

    def _window(self) -> np.ndarray:
        n = min(int(self._adwin.width), len(self._errors))
        return np.fromiter(islice(self._errors, len(self._errors) - n, None), float, n)

    def _look(self, prediction: dict, events_seen: int, ts: float | None) -> list[Alert]:
        errors = self._window()
        n = len(errors)
        if n < self._config.min_labels:
            return []
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
                return []
            # the score test of "accuracy >= bound": rejected exactly when Wilson's upper limit is below it
            z = (bound - accuracy) / math.sqrt(bound * (1 - bound) / n) if bound < 1 else 0.0
            low, high = wilson_interval(accuracy * n, n, self._z_reported)
            live = {"accuracy": accuracy, "ci_low": low, "ci_high": high, "n": n}
            base = {"accuracy": value, "n": n_val}
        if z <= self._z_test:
            return []
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
            **self._diagnosis(base, live, bound, p_value).alert_fields(),
        )]

    def _diagnosis(self, base: dict, live: dict, bound: float, p_value: float) -> Diagnosis:
        name = "mae" if self._regression else "accuracy"
        fmt = number if self._regression else percent
        since = ("" if self._change_at is None else
                 f"; ADWIN dates the change ~{count(self._labelled - self._change_at)} labels ago")
        sentence = (f"live {name} {fmt(live[name])} "
                    f"({REPORTED_CI:.0%} CI {fmt(live['ci_low'])}-{fmt(live['ci_high'])}, "
                    f"n={live['n']:,} labelled predictions) vs {fmt(base[name])} on validation (n={base['n']:,}): "
                    f"the model really performs worse in production (p={p_value:.1g}){since}")
        return Diagnosis("performance_drop", sentence, {
            "metric": name, "test_bound": rounded(bound), "alpha_per_look": PERFORMANCE_ALPHA, "look_every": LOOK_EVERY,
            "labelled": self._labelled,
            "change_labels_ago": None if self._change_at is None else self._labelled - self._change_at})

    def snapshot(self) -> dict[str, Any]:
        """Labelled and unscorable predictions, the window's live figure and the validation one."""
        errors = self._window()
        mean = float(errors.mean()) if len(errors) else None
        figure = mean if self._regression or mean is None else 1.0 - mean
        return {"labelled": self._labelled, "unscorable": self._unscorable, "window": len(errors),
                "metric": "mae" if self._regression else "accuracy", "live": figure,
                "validation": None if not self._metric else self._metric.get("value")}
