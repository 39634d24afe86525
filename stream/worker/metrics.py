"""The worker's Prometheus metrics (served at /metrics). The names are a contract: the
deploy/ dashboard and alert rules query them.

`Metrics(registry)` creates them on any CollectorRegistry, so tests get a fresh set each.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["BATCH_BUCKETS", "Metrics"]

#: Batch processing times span a tiny batch (~1 ms) to a full one of many-event messages (~1 s).
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The worker's Prometheus series (README, "Metrics"), on their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events = Counter("skewwatch_events", "Events accepted by a model's monitor", ["model"], registry=r)
        self.rejected = Counter("skewwatch_rejected_events",
                                "Rejected messages or events (dead-lettered), by reason", ["reason"], registry=r)
        self.alerts = Counter("skewwatch_alerts", "Alerts emitted", ["model", "kind"], registry=r)
        self.drift_statistic = Gauge("skewwatch_drift_statistic", "Current value of a feature's drift statistic",
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

    def observe_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Set the per-model gauges from a `ModelMonitor.snapshot()`."""
        model = snapshot["model"]
        confidence = snapshot.get("confidence_mean")
        if confidence is not None:
            self.confidence_mean.labels(model).set(confidence)
        for feature, info in snapshot.get("features", {}).items():
            missing = info.get("missing_ratio")
            if missing is not None:
                self.missing_ratio.labels(model, feature).set(missing)
            for statistic, value in (info.get("statistics") or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.drift_statistic.labels(model, feature, statistic).set(value)

    def forget_model(self, model: str) -> None:
        """Drop a model's per-feature series (its baseline was deleted or replaced)."""
        for gauge in (self.drift_statistic, self.missing_ratio, self.confidence_mean):
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
