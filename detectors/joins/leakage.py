"""Leakage suspects: a feature that predicted the label far better in training than it does in production.

Label leakage is a feature computed after the event it predicts (or from the label itself): in
training it predicts the label almost perfectly, validation figures are excellent, and in
production, where the value is computed before the outcome exists, it predicts little. The
baseline records, per feature, how well the feature's bins predicted the label in training
(`baselines.profile.FeatureAssociation`: the AUC of the bins' positive rate for a class label,
the correlation of the bins' mean label for a numeric one); here the labelled production events
are scored with the same bins and the same scores, and the two figures compared.

A feature is a suspect when, at a look (every LOOK_EVERY labels, once LEAKAGE_MIN_LABELS are in):

* its training figure exceeds the production one by at least LEAKAGE_MIN_GAP and by a z statistic
  above the one-sided LEAKAGE_ALPHA level (DeLong standard errors for AUCs, Fisher's z for
  correlations); and the guards hold:
* enough labels: LEAKAGE_MIN_LABELS, and LEAKAGE_MIN_CLASS of each side of a class label;
* its own distribution has not moved: the labelled events' shares of its bins are within
  total variation LEAKAGE_MAX_SHIFT of training's, or not significantly apart (chi-square p >=
  LEAKAGE_SHIFT_ALPHA). A shifted feature's association may change for that reason: its drift
  alert says so;
* the model performs worse than on validation: the performance alert's own test rejects on its
  current window (`PerformanceMonitor.worse_than_validation`). A leak the model learnt costs it
  accuracy in production; a feature whose association weakened while the model holds up is more
  likely one the model never relied on.

The state is a few numbers per bin and feature (counts, label sums, label sums of squares), as
plain lists, halved whenever LEAKAGE_MAX_LABELS labels have been counted so recent labels weigh more.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

from baselines.profile import FeatureAssociation, LabelAssociation, category_key
from detectors.alerts import Alert, alert_id
from detectors.diagnosis import Diagnosis
from detectors.episodes import EpisodeTracker
from detectors.extract import TrainedSpelling
from detectors.fmt import count, number, percent, printable, quote_value, rounded
from detectors.joins.config import DEFAULT_JOIN_CONFIG, JoinConfig
from detectors.joins.performance import LOOK_EVERY, REPORTED_CI, PerformanceMonitor
from detectors.joins.wire import is_missing, is_number
from detectors.sketches import MAX_LABEL
from detectors.stats import binned_auc, binned_correlation, chi2_sf

__all__ = ["LEAKAGE_MIN_LABELS", "LeakageMonitor"]

#: fewest labelled predictions before a feature's production association is compared with training's
LEAKAGE_MIN_LABELS = 500
#: fewest labelled predictions of each side of a class label (the positive class, the rest)
LEAKAGE_MIN_CLASS = 50
#: one-sided level of the comparison per look and feature (as the performance test's PERFORMANCE_ALPHA)
LEAKAGE_ALPHA = 1e-7
#: smallest gap, training figure minus production figure, worth a suspicion: AUC points (0.5 is no
#: association), correlation points. A gap this large is a feature that mattered to the model, not a
#: statistically detectable nuance (with enough labels any small change of association would be)
LEAKAGE_MIN_GAP = {"auc": 0.1, "correlation": 0.2}
#: a feature's distribution "has moved" when its bins' shares are this far (total variation) from
#: training's and significantly so (chi-square p below LEAKAGE_SHIFT_ALPHA)
LEAKAGE_MAX_SHIFT = 0.1
LEAKAGE_SHIFT_ALPHA = 1e-3
#: labels counted before the tables are halved (older labels fade; the counts stay bounded numbers)
LEAKAGE_MAX_LABELS = 50_000

_MEASURE_WORDS = {"auc": "AUC", "correlation": "correlation with the label"}


class LeakageMonitor:
    """One model's features: their association with the label in production against training's.

    `update` takes each labelled prediction (the remembered event, with its features) and, every
    LOOK_EVERY labels, compares; `performance` is the model's PerformanceMonitor, asked for the
    overall drop only when a feature is otherwise a suspect.
    """

    def __init__(self, model: str, association: LabelAssociation, config: JoinConfig = DEFAULT_JOIN_CONFIG,
                 reference: str = ""):
        self._model = model
        self._reference = reference  # the baseline's fingerprint: alert ids are counted against it
        self._association = association
        self._numeric = association.label == "numeric"
        self._episodes = EpisodeTracker(config.rearm_quiet)
        self._z_test = NormalDist().inv_cdf(1 - LEAKAGE_ALPHA)
        self._z_reported = NormalDist().inv_cdf(0.5 + REPORTED_CI / 2)
        self._labelled = 0
        self._counted = 0.0  # labels in the tables (halved with them)
        # feature -> [rows per bin, label sum per bin, label sum of squares per bin (numeric label)]
        self._tables: dict[str, list[list[float]]] = {
            name: [[0.0] * len(a.scores) for _ in range(3 if self._numeric else 2)]
            for name, a in association.features.items()}
        # categorical features' values spelled as the monitors code them (a CSV's "True", "2.0")
        self._spellings = {name: TrainedSpelling(a.categories) for name, a in association.features.items()
                           if a.categories is not None}

    def update(self, prediction: dict, label: Any, events_seen: int, ts: float | None,
               performance: PerformanceMonitor) -> list[Alert]:
        """One labelled prediction; alerts for the features that became suspects at this look."""
        if self._numeric:
            if not is_number(label) or not math.isfinite(label):
                return []
            y = float(label)
        else:
            if is_missing(label):
                return []
            y = 1.0 if category_key(label) == self._association.positive else 0.0
        features = prediction.get("features")
        features = features if isinstance(features, dict) else {}
        for name, table in self._tables.items():
            assoc = self._association.features[name]
            value = features.get(name)
            if name in self._spellings and isinstance(value, (str, int, float, bool)):
                value = self._spellings[name](value)
            b = assoc.bin_of(value)
            table[0][b] += 1.0
            table[1][b] += y
            if self._numeric:
                table[2][b] += y * y
        self._labelled += 1
        self._counted += 1
        if self._counted > LEAKAGE_MAX_LABELS:
            self._halve()
        if self._labelled % LOOK_EVERY or self._labelled < LEAKAGE_MIN_LABELS:
            return []
        return self._look(prediction, events_seen, ts, performance)

    def _halve(self) -> None:
        for table in self._tables.values():
            for column in table:
                column[:] = [v / 2 for v in column]
        self._counted /= 2

    def _figure(self, assoc: FeatureAssociation, table: list[list[float]]) -> tuple[float, float, float] | None:
        """(production figure, its standard error, labelled rows), None with too few labels."""
        scores = np.asarray(assoc.scores)
        counts, sums = np.asarray(table[0]), np.asarray(table[1])
        n = float(counts.sum())
        if self._numeric:
            if n < LEAKAGE_MIN_LABELS:
                return None
            return binned_correlation(scores, counts, sums, np.asarray(table[2])), 1 / math.sqrt(n - 3), n
        positives = float(sums.sum())
        if min(positives, n - positives) < LEAKAGE_MIN_CLASS:
            return None
        auc, se = binned_auc(scores, sums, counts - sums)
        return auc, se, n

    def _gap_z(self, measure: str, train: float, train_se: float, live: float, live_se: float) -> float:
        if measure == "correlation":  # compared on Fisher's z scale, where both errors are 1 / sqrt(n - 3)
            return (math.atanh(min(train, 0.999999)) - math.atanh(max(min(live, 0.999999), -0.999999))) / math.hypot(
                train_se, live_se)
        # DeLong's error is 0 for perfectly separated classes (AUC 0 or 1), in training and production alike
        return (train - live) / max(math.hypot(train_se, live_se), 1e-9)

    def _interval(self, measure: str, value: float, se: float) -> tuple[float, float]:
        if measure == "correlation":
            z = math.atanh(max(min(value, 0.999999), -0.999999))
            return math.tanh(z - self._z_reported * se), math.tanh(z + self._z_reported * se)
        return max(0.0, value - self._z_reported * se), min(1.0, value + self._z_reported * se)

    def _shift(self, assoc: FeatureAssociation, counts: list[float]) -> tuple[float, float]:
        """(total variation, chi-square p-value) of the labelled events' bin shares against training's."""
        observed = np.asarray(counts)
        n = float(observed.sum())
        shares = np.asarray(assoc.shares)
        total_variation = float(0.5 * np.abs(observed / n - shares).sum())
        expected = np.maximum(shares, 0.5 / assoc.n) * n  # a bin training never filled: half a row
        stat = float(((observed - expected) ** 2 / expected).sum())
        return total_variation, chi2_sf(stat, len(shares) - 1)

    def _look(self, prediction: dict, events_seen: int, ts: float | None,
              performance: PerformanceMonitor) -> list[Alert]:
        suspects = []
        for name, table in self._tables.items():
            assoc = self._association.features[name]
            figure = self._figure(assoc, table)
            if figure is None:
                continue
            live, live_se, n = figure
            gap = assoc.value - live
            z = self._gap_z(assoc.measure, assoc.value, assoc.se, live, live_se)
            if gap < LEAKAGE_MIN_GAP[assoc.measure] or z <= self._z_test:
                continue
            total_variation, shift_p = self._shift(assoc, table[0])
            if total_variation >= LEAKAGE_MAX_SHIFT and shift_p < LEAKAGE_SHIFT_ALPHA:
                continue  # the feature moved: its drift alert explains a changed association
            suspects.append((name, assoc, live, live_se, n, z, total_variation, shift_p))
        if not suspects:
            return []
        drop = performance.worse_than_validation()
        if drop is None:
            return []
        alerts = []
        for name, assoc, live, live_se, n, z, total_variation, shift_p in suspects:
            episode = self._episodes.observe((name, "leakage"), self._labelled)
            if episode is None:
                continue
            version = prediction.get("model_version")
            t_low, t_high = self._interval(assoc.measure, assoc.value, assoc.se)
            p_low, p_high = self._interval(assoc.measure, live, live_se)
            base = {assoc.measure: assoc.value, "ci_low": t_low, "ci_high": t_high, "n": assoc.n}
            current = {assoc.measure: live, "ci_low": p_low, "ci_high": p_high, "n": round(n),
                       "total_variation": total_variation}
            evidence = {"measure": assoc.measure, "gap": rounded(assoc.value - live),
                        "min_gap": LEAKAGE_MIN_GAP[assoc.measure], "alpha_per_look": LEAKAGE_ALPHA,
                        "labelled": self._labelled, "positive_class": self._association.positive,
                        "distribution": {"total_variation": rounded(total_variation), "p_value": rounded(shift_p),
                                         "moved_from": LEAKAGE_MAX_SHIFT},
                        "performance": {k: rounded(v) if isinstance(v, float) else v for k, v in drop.items()},
                        "episode": episode}
            alerts.append(Alert(
                alert_id=alert_id(self._model, name, "leakage_suspect", assoc.measure, episode, self._reference),
                kind="leakage_suspect", model=self._model,
                model_version=None if version is None else quote_value(version, MAX_LABEL),
                feature=name, detector="label_association", statistic=z, threshold=self._z_test,
                p_value=0.5 * math.erfc(z / math.sqrt(2)), baseline=base, current=current,
                events_seen=events_seen, ts=ts, severity="warning",
                **Diagnosis("leakage_suspect", self._sentence(name, base, current, drop, evidence),
                            evidence).alert_fields()))
        return alerts

    def _sentence(self, name: str, base: dict, current: dict, drop: dict, evidence: dict) -> str:
        measure = evidence["measure"]
        words = _MEASURE_WORDS[measure]
        if measure == "auc" and self._association.positive is not None:
            words = f"AUC for label '{printable(str(self._association.positive)[:MAX_LABEL])}'"
        fmt = number if drop["metric"] == "mae" else percent

        def figure(d: dict, what: str) -> str:
            return (f"{words} {number(d[measure])}, {REPORTED_CI:.0%} CI {number(d['ci_low'])}-{number(d['ci_high'])}, "
                    f"n={count(d['n'])} {what}")

        return (f"'{printable(name[:MAX_LABEL])}' predicted the label far better in training ({figure(base, 'rows')}) "
                f"than it does in production ({figure(current, 'labelled predictions')}) while its own distribution "
                f"has not moved (total variation {number(current['total_variation'])} from training's bins) and the "
                f"model's {drop['metric']} fell ({fmt(drop['live'])} vs {fmt(drop['validation'])} on validation): the "
                "feature may leak the label in training (computed after the event it predicts, or from the label)")

    def state_dict(self) -> dict[str, Any]:
        """The label counts per feature bin, the labels counted and the episodes as plain data
        (`load_state` takes it back into a LeakageMonitor of the same model and baseline)."""
        return {"tables": self._tables, "labelled": self._labelled, "counted": self._counted,
                "episodes": self._episodes.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict` (a feature the baseline no longer tracks is left out)."""
        for name, table in state["tables"].items():
            mine = self._tables.get(name)
            if mine is not None and [len(c) for c in mine] == [len(c) for c in table]:
                self._tables[name] = [[float(v) for v in column] for column in table]
        self._labelled, self._counted = int(state["labelled"]), float(state["counted"])
        self._episodes.load_state(state["episodes"])

    def snapshot(self) -> dict[str, Any]:
        """Labels counted and, per feature with enough of them, the production figure beside training's."""
        out = {}
        for name, table in self._tables.items():
            assoc = self._association.features[name]
            figure = self._figure(assoc, table)
            if figure is not None:
                out[name] = {"measure": assoc.measure, "training": assoc.value, "production": figure[0]}
        return {"labelled": self._labelled, "features": out}
