"""Joins by `request_id`: feature parity (served features vs the offline recomputation), delayed
labels (live accuracy / error vs the validation figure) and shadow pairs (a candidate model's
predictions vs production's). Pure: numpy and river only.

Three record streams meet here, each in bounded memory:

- prediction events (the monitored stream), remembered by `request_id`;
- the offline pipeline's recomputation of the same rows, ``{"request_id", "model", "features"}``
  (topic ``skewwatch.feature-log``, ``replay --feature-log``): compared feature by feature with what
  was served, a Bernoulli CUSUM per feature on the mismatch indicator -> ``skew`` alerts;
- delayed labels, ``{"request_id", "label"}`` with an optional ``model`` (topic ``skewwatch.labels``,
  ``replay --labels``): joined with the remembered prediction -> live accuracy (classification) or
  MAE (regression) on ADWIN's adaptive window, tested against the baseline's ``metric`` ->
  ``performance`` alerts; and each feature's association with the label, against training's ->
  ``leakage_suspect`` alerts;
- a shadow candidate's prediction events, joined with production's of the same request (models paired
  ``production=candidate``: worker ``--shadow``, ``replay --shadow``) -> agreement per window, the
  labelled comparison of the two models, ``shadow`` alerts.

Modules, by job:

- `buffer`: `RequestJoin`, the bounded two-sided buffer both joins use (time-to-live, duplicates);
- `parity`: `FeatureParity`, served vs offline features -> ``skew`` alerts;
- `performance`: `PerformanceMonitor`, labelled predictions vs validation -> ``performance`` alerts;
- `leakage`: `LeakageMonitor`, each feature's association with the label vs training's -> ``leakage_suspect`` alerts;
- `shadow`: `ShadowMonitor`, a candidate's predictions vs production's -> ``shadow`` alerts;
- `monitor`: `JoinMonitor`, the joins for every model (what `replay` and the worker call);
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
from detectors.joins.shadow import ShadowMonitor, parse_shadow_pairs, shadow_pairs_text
from detectors.joins.wire import decode_join_records, record_time

__all__ = ["FeatureParity", "JoinConfig", "JoinMonitor", "LeakageMonitor", "PerformanceMonitor", "RequestJoin",
           "ShadowMonitor", "decode_join_records", "parse_shadow_pairs", "record_time", "shadow_pairs_text",
           "wilson_interval"]
