"""The detection core: pure functions and classes over decoded events, no Faust, Kafka or metrics.

Import from the modules; the package itself re-exports nothing. Where to start:
`detectors.model` (`ModelMonitor`, one model's tests and alerts), `detectors.routing` (`ModelRouter`,
many models), `detectors.processing` (the one path of the worker, replay and report),
`detectors.events` (bytes -> events), `detectors.alerts` (the alert record) and `detectors.joins`
(feature parity and delayed labels by request id).
"""
from __future__ import annotations

__all__: list[str] = []
