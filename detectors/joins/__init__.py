"""Joins by `request_id`: feature parity (served features vs the offline recomputation) and
delayed labels (live accuracy / error vs the validation figure). Pure: numpy and river only.

Three record streams meet here, each in bounded memory:

- prediction events (the monitored stream), remembered by `request_id`;
- the offline pipeline's recomputation of the same rows, ``{"request_id", "model", "features"}``
  (topic ``skewwatch.feature-log``, ``replay --feature-log``): compared feature by feature with what
  was served, a Bernoulli CUSUM per feature on the mismatch indicator -> ``skew`` alerts;
- delayed labels, ``{"request_id", "label"}`` with an optional ``model`` (topic ``skewwatch.labels``,
  ``replay --labels``): joined with the remembered prediction -> live accuracy (classification) or
  MAE (regression) on ADWIN's adaptive window, tested against the baseline's ``metric`` ->
  ``performance`` alerts; and each feature's association with the label, against training's ->
  ``leakage_suspect`` alerts.

Modules, by job:

- `buffer`: `RequestJoin`, the bounded two-sided buffer both joins use (time-to-live, duplicates);
- `parity`: `FeatureParity`, served vs offline features -> ``skew`` alerts;
- `performance`: `PerformanceMonitor`, labelled predictions vs validation -> ``performance`` alerts;
- `leakage`: `LeakageMonitor`, each feature's association with the label vs training's -> ``leakage_suspect`` alerts;
- `monitor`: `JoinMonitor`, both joins for every model (what `replay` and the worker call);
- `wire`: `decode_join_records` and `record_time`, the records as they arrive;
- `config`: `JoinConfig`, the settings of all of them.
"""
from __future__ import annotations

from detectors.joins.buffer import RequestJoin
from detectors.joins.config import JoinConfig
from detectors.joins.leakage import LeakageMonitor
from detectors.joins.monitor import JoinMonitor
from detectors.joins.parity import FeatureParity
from detectors.joins.performance import PerformanceMonitor, wilson_interval
from detectors.joins.wire import decode_join_records, record_time

__all__ = ["FeatureParity", "JoinConfig", "JoinMonitor", "LeakageMonitor", "PerformanceMonitor", "RequestJoin",
           "decode_join_records", "record_time", "wilson_interval"]
