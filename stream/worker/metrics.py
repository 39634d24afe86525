"""The worker's Prometheus metrics (served at /metrics). The names are a contract: the
deploy/ dashboard and alert rules query them (docs/contracts.md, "Metrics", lists the series
per model).

`Metrics(registry)` creates them on any CollectorRegistry, so tests get a fresh set each.
The per-feature gauges follow each model's busiest monitor (`refresh`): only models that saw
events since their last refresh are read again, least recently refreshed first, within a time
budget, so a scrape of many models costs what changed, not the whole fleet.
"""
from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from baselines.profile import Baseline
from detectors import thresholds as T
from detectors.alerts import Alert
from detectors.model import ModelMonitor
from stream.worker.config import FEATURE_METRICS

__all__ = ["BATCH_BUCKETS", "DRIFTING_SCORE", "DRIFT_STATISTICS", "NOT_DRIFT_STATISTICS", "REFRESH_BUDGET", "Metrics",
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
#: the name the monitor gives the model's confidence in its alerts
_CONFIDENCE = "confidence"
#: seconds one `refresh` may spend reading monitors; the models left are the first of the next call
REFRESH_BUDGET = 0.05
#: the drift score from which feature_metrics="drifting" exports a feature's: on stationary data a
#: feature's score is >= 0.5 in 0.06% of snapshots (3 seeds x 50 features x 30k events)
DRIFTING_SCORE = 0.5


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
    # log(1 / p), not -log(p): a p-value of 1 scores 0.0, not -0.0
    scores += [math.log(1.0 / min(max(statistics[name], 1e-300), 1.0)) / math.log(1.0 / T.WINDOW_ALPHA)
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
    """The worker's Prometheus series (README, "Metrics"), on their own registry.

    Parameters
    ----------
    registry
        Where to create them (default: a new CollectorRegistry).
    feature_metrics
        Which per-feature series the snapshots set: one of stream.worker.config.FEATURE_METRICS
        (SKEWWATCH_FEATURE_METRICS).
    """

    def __init__(self, registry: CollectorRegistry | None = None, feature_metrics: str = "all"):
        if feature_metrics not in FEATURE_METRICS:
            raise ValueError(f"feature metrics {feature_metrics!r} is not one of {', '.join(FEATURE_METRICS)}")
        self.feature_metrics = feature_metrics
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
                                      "1 while an alert episode of this kind is open on the feature (no series after)",
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
        # shadow pairs (--shadow): labelled by production model and candidate, both from the settings
        self.shadow_agreement = Gauge("skewwatch_shadow_agreement",
                                      "Agreement of a shadow candidate with production over the last closed window",
                                      ["model", "candidate"], registry=r)
        self.shadow_expected_agreement = Gauge("skewwatch_shadow_expected_agreement",
                                               "The agreement below which a shadow window alerts",
                                               ["model", "candidate"], registry=r)
        self.shadow_confidence_diff = Gauge("skewwatch_shadow_confidence_diff",
                                            "Mean candidate - production confidence over the last closed window",
                                            ["model", "candidate"], registry=r)
        self.shadow_joined = Gauge("skewwatch_shadow_joined", "Requests both models of a shadow pair answered",
                                   ["model", "candidate"], registry=r)
        #: model -> (its monitor, that monitor's events seen) the gauges show; least recently refreshed first
        self._shown: dict[str, tuple[weakref.ref, int]] = {}
        #: model -> the (feature, kind) series of skewwatch_feature_alerting set
        self._alerting: dict[str, set[tuple[str, str]]] = {}

    def count_alert(self, alert: Alert, baseline: Baseline | None) -> None:
        """Count an emitted alert, under its feature if `baseline` (its model's) bounds it
        (`alert_feature_label`). An update record re-diagnoses an alert already counted: not counted."""
        if not alert.update:
            self.alerts.labels(alert.model, alert.kind, alert_feature_label(alert, baseline)).inc()

    def refresh(self, monitors: Iterable[ModelMonitor], budget: float = REFRESH_BUDGET,
                clock: Callable[[], float] = time.perf_counter) -> int:
        """Set the per-model gauges from the monitors (one per model) that saw events since the
        gauges last showed them, least recently refreshed first, until `budget` seconds are spent
        (at least one model per call); the others keep their values until a later call.

        Returns
        -------
        int
            How many models were refreshed.
        """
        stale = [m for m in monitors if self._changed(m)]
        position = {model: i for i, model in enumerate(self._shown)}
        stale.sort(key=lambda m: position.get(m.baseline.model, -1))
        start = clock()
        for done, monitor in enumerate(stale):
            if done and clock() - start >= budget:
                return done
            model = monitor.baseline.model
            self.observe_snapshot(monitor.snapshot())
            self._shown.pop(model, None)
            self._shown[model] = (weakref.ref(monitor), monitor.events_seen)
        return len(stale)

    def _changed(self, monitor: ModelMonitor) -> bool:
        """Whether `monitor` has events its model's gauges do not show (another monitor, or more events)."""
        shown = self._shown.get(monitor.baseline.model)
        return monitor.events_seen > 0 and (shown is None or shown[0]() is not monitor
                                            or shown[1] != monitor.events_seen)

    def observe_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Set the per-model gauges from a `ModelMonitor.snapshot()`."""
        model = snapshot["model"]
        detail, only_drifting = self.feature_metrics == "all", self.feature_metrics == "drifting"
        confidence = snapshot.get("confidence_mean")
        if confidence is not None:
            self.confidence_mean.labels(model).set(confidence)
        for feature, info in snapshot.get("features", {}).items():
            statistics = info.get("statistics") or {}
            score = drift_score(statistics)
            if score is not None and not (only_drifting and score < DRIFTING_SCORE
                                          and feature not in snapshot.get("alerting", {})):
                self.drift_score.labels(model, feature).set(score)
            elif only_drifting:
                self.drift_score.remove(model, feature)
            if not detail:
                continue
            missing = info.get("missing_ratio")
            if missing is not None:
                self.missing_ratio.labels(model, feature).set(missing)
            for statistic in DRIFT_STATISTICS.intersection(statistics):
                self.drift_statistic.labels(model, feature, statistic).set(statistics[statistic])
        # like Prometheus' own ALERTS: a series while alerting, none after (not thousands of zeros)
        alerting = {(subject, kind) for subject, kinds in snapshot.get("alerting", {}).items() for kind in kinds}
        for feature, kind in self._alerting.get(model, set()) - alerting:
            self.feature_alerting.remove(model, feature, kind)
        for feature, kind in alerting:
            self.feature_alerting.labels(model, feature, kind).set(1)
        self._alerting[model] = alerting

    def observe_shadow(self, figures: Iterable[dict[str, Any]]) -> None:
        """Set the shadow gauges from `ShadowMonitor.figures()` (a figure not known yet: no series)."""
        for f in figures:
            labels = (f["production"], f["candidate"])
            self.shadow_joined.labels(*labels).set(f["joined"])
            for gauge, key in ((self.shadow_agreement, "agreement"), (self.shadow_expected_agreement, "expected"),
                               (self.shadow_confidence_diff, "confidence_diff")):
                if f[key] is not None:
                    gauge.labels(*labels).set(f[key])

    def forget_model(self, model: str) -> None:
        """Drop a model's per-feature series (its baseline was deleted or replaced)."""
        for gauge in (self.drift_score, self.feature_alerting, self.drift_statistic, self.missing_ratio,
                      self.confidence_mean):
            _remove_where(gauge, lambda labels: labels["model"] == model)
        self._shown.pop(model, None)
        self._alerting.pop(model, None)

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
