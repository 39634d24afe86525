"""The worker's Prometheus metrics (served at /metrics). The names are a contract: the
deploy/ dashboard and alert rules query them (docs/contracts.md, "Metrics").

`Metrics(registry)` creates them on any CollectorRegistry, so tests get a fresh set each.

Per model, the series are bounded by its baseline's F features (and its confidence):
`skewwatch_drift_score` F, `skewwatch_missing_ratio` F, `skewwatch_feature_alerting` 2 F + 2
(drift and data_quality per feature; confidence_drop and data_quality for the confidence),
`skewwatch_drift_statistic` up to 6 per numeric and 5 per categorical feature, and
`skewwatch_alerts_total` at most (F + 2) x 6 kinds, for the ones that occur.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from baselines.profile import Baseline
from detectors import thresholds as T
from detectors.alerts import Alert

__all__ = ["BATCH_BUCKETS", "CONFIDENCE_KINDS", "DRIFT_STATISTICS", "FEATURE_KINDS", "NOT_DRIFT_STATISTICS", "Metrics",
           "alert_feature_label", "drift_score"]

#: Batch processing times span a tiny batch (~1 ms) to a full one of many-event messages (~1 s).
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

#: the snapshot's statistics exported as skewwatch_drift_statistic: distances of the last window to
#: training and the tests' statistics, each larger the further production is from training
DRIFT_STATISTICS = frozenset({"psi", "jensen_shannon", "ks", "wasserstein", "cusum_location", "cusum_scale",
                              "chi2", "linf", "unseen_cusum"})
#: the snapshot's other entries, not exported: p-values (smaller is further; skewwatch_drift_score has
#: them), settings and counts (alarm threshold, degrees of freedom, values in the window, ADWIN's width)
NOT_DRIFT_STATISTICS = frozenset({"ks_p_value", "p_value", "cusum_threshold", "dof", "window_values",
                                  "adwin_width_blocks"})
#: the CUSUMs among the statistics: they alarm above the snapshot's "cusum_threshold"
_CUSUMS = ("cusum_location", "cusum_scale", "unseen_cusum")
#: the window tests' p-values (KS, chi-square): they alarm below detectors.thresholds.WINDOW_ALPHA
_WINDOW_P_VALUES = ("ks_p_value", "p_value")
#: the alert kinds of a feature's own tests, and of the confidence's (skewwatch_feature_alerting)
FEATURE_KINDS = ("drift", "data_quality")
CONFIDENCE_KINDS = ("confidence_drop", "data_quality")
#: the name the monitor gives the model's confidence (`ModelMonitor.snapshot()["alerting"]`, alerts)
_CONFIDENCE = "confidence"


def drift_score(statistics: dict[str, Any]) -> float | None:
    """A feature's highest test statistic over its alarm threshold, from its snapshot statistics:
    >= 1 when one of its tests is past its threshold (None when it reports no test).

    A CUSUM counts as statistic / threshold; a window test's p-value p as log(p) / log(alpha), the
    same ratio on the scale of the evidence (1 where p reaches WINDOW_ALPHA, 0 at p = 1).

    >>> drift_score({"cusum_location": 7.0, "cusum_scale": 1.0, "cusum_threshold": 35.0, "ks_p_value": 1.0})
    0.2
    >>> drift_score({"cusum_location": 0.0, "cusum_threshold": 35.0, "ks_p_value": 1e-9}) > 1
    True
    """
    scores = [statistics[name] / statistics["cusum_threshold"] for name in _CUSUMS if name in statistics]
    scores += [math.log(min(max(statistics[name], 1e-300), 1.0)) / math.log(T.WINDOW_ALPHA)
               for name in _WINDOW_P_VALUES if name in statistics]
    return max(scores) if scores else None


def alert_feature_label(alert: Alert, baseline: Baseline | None) -> str:
    """The `feature` label of an alert's count: its feature when the model's baseline has it (or it
    is the confidence), else "" (model-wide alerts, and the join's feature-log names, which the
    baselines do not bound)."""
    feature = alert.feature
    if feature is None or baseline is None:
        return ""
    return feature if feature in baseline.features or feature == _CONFIDENCE else ""


class Metrics:
    """The worker's Prometheus series (README, "Metrics"), on their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events = Counter("skewwatch_events", "Events accepted by a model's monitor", ["model"], registry=r)
        self.rejected = Counter("skewwatch_rejected_events",
                                "Rejected messages or events (dead-lettered), by reason", ["reason"], registry=r)
        self.alerts = Counter("skewwatch_alerts", "Alerts emitted, by the feature they name (\"\" for model-wide ones)",
                              ["model", "kind", "feature"], registry=r)
        self.drift_score = Gauge("skewwatch_drift_score",
                                 "A feature's highest test statistic over its alarm threshold (>= 1: past it)",
                                 ["model", "feature"], registry=r)
        self.feature_alerting = Gauge("skewwatch_feature_alerting",
                                      "1 while an alert episode of this kind is open on the feature, else 0",
                                      ["model", "feature", "kind"], registry=r)
        self.drift_statistic = Gauge("skewwatch_drift_statistic",
                                     "A feature's distance to training or test statistic, larger when further",
                                     ["model", "feature", "statistic"], registry=r)
        self.missing_ratio = Gauge("skewwatch_missing_ratio", "Share of recent events missing the feature",
                                   ["model", "feature"], registry=r)
        self.confidence_mean = Gauge("skewwatch_confidence_mean", "Mean prediction confidence (recent events)",
                                     ["model"], registry=r)
        self.batch_seconds = Histogram("skewwatch_batch_seconds", "Time to decode, monitor and emit one micro-batch",
                                       buckets=BATCH_BUCKETS, registry=r)
        self.consumer_lag = Gauge("skewwatch_consumer_lag_messages",
                                  "Messages between the consumer position and the end of the partition",
                                  ["topic", "partition"], registry=r)
        self.baseline_loaded = Gauge("skewwatch_baseline_loaded",
                                     "1 while the model's baseline is loaded, 0 when it is broken or deleted",
                                     ["model"], registry=r)
        self.broker_connected = Gauge("skewwatch_broker_connected",
                                      "1 once the worker has joined its consumer group and received an assignment",
                                      registry=r)
        self.checkpoints = Counter("skewwatch_checkpoints", "Monitor-state checkpoints written", registry=r)

    def count_alert(self, alert: Alert, baseline: Baseline | None) -> None:
        """Count an emitted alert, under its feature if `baseline` (its model's) bounds it
        (`alert_feature_label`)."""
        self.alerts.labels(alert.model, alert.kind, alert_feature_label(alert, baseline)).inc()

    def observe_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Set the per-model gauges from a `ModelMonitor.snapshot()`."""
        model = snapshot["model"]
        confidence = snapshot.get("confidence_mean")
        if confidence is not None:
            self.confidence_mean.labels(model).set(confidence)
        features = snapshot.get("features", {})
        for feature, info in features.items():
            missing = info.get("missing_ratio")
            if missing is not None:
                self.missing_ratio.labels(model, feature).set(missing)
            statistics = info.get("statistics") or {}
            for statistic in DRIFT_STATISTICS.intersection(statistics):
                self.drift_statistic.labels(model, feature, statistic).set(statistics[statistic])
            score = drift_score(statistics)
            if score is not None:
                self.drift_score.labels(model, feature).set(score)
        for subject, kinds in snapshot.get("alerting", {}).items():
            # a feature called "confidence" and the model's confidence share the name (and the series)
            possible = ((FEATURE_KINDS if subject in features else ())
                        + (CONFIDENCE_KINDS if subject == _CONFIDENCE else ()))
            for kind in dict.fromkeys(possible):
                self.feature_alerting.labels(model, subject, kind).set(1 if kind in kinds else 0)

    def forget_model(self, model: str) -> None:
        """Drop a model's per-feature series (its baseline was deleted or replaced)."""
        for gauge in (self.drift_score, self.feature_alerting, self.drift_statistic, self.missing_ratio,
                      self.confidence_mean):
            _remove_where(gauge, lambda labels: labels["model"] == model)

    def forget_lag(self, topic: str, keep: set[int]) -> None:
        """Drop the lag series of the topic's partitions this worker no longer consumes."""
        _remove_where(self.consumer_lag,
                      lambda labels: labels["topic"] == topic and int(labels["partition"]) not in keep)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format (the /metrics page)."""
        return generate_latest(self.registry)


def _remove_where(metric: Gauge, predicate: Callable[[dict[str, str]], bool]) -> None:
    """Remove the series of a labelled gauge whose labels ({name: value}) satisfy `predicate`.

    prometheus_client lists a metric's series only through `collect()`: one sample per series of a
    gauge, its labels in the metric's label order, which is the order `remove()` takes them in.
    """
    for family in metric.collect():
        for sample in family.samples:
            if predicate(sample.labels):
                metric.remove(*sample.labels.values())
