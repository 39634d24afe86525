"""Many models: route decoded events to their model's monitor, in order, and reject the rest.

The worker, `replay` and `report` all call it through `detectors.processing` (which adds the
isolation of a monitor that raises), so the same events give the same alerts in all three.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from baselines.profile import Baseline
from detectors.alerts import Alert
from detectors.events import Reject, encode_value, model_of
from detectors.model import ModelMonitor, MonitorConfig

__all__ = ["ModelRouter"]


class ModelRouter:
    """One `ModelMonitor` per model, keyed by the event's `model` field, created at the model's
    first event (or restored from a checkpoint): a model whose events never come here costs its
    baseline's reference, not a monitor.

    Parameters
    ----------
    baselines
        The models to monitor, one baseline each.
    config
        The settings of every monitor (default `MonitorConfig()`).
    """

    def __init__(self, baselines: Iterable[Baseline] = (), config: MonitorConfig | None = None,
                 shadow_candidates: Iterable[str] = ()):
        """`shadow_candidates`: the candidate models of shadow pairs (`--shadow`): without a baseline,
        their events are compared with production's by the joins, and here neither monitored nor
        rejected (a dead letter per candidate event would read as bad input)."""
        self._config = config
        self._shadow_candidates = frozenset(shadow_candidates)
        self._monitors: dict[str, ModelMonitor] = {}
        self._baselines: dict[str, Baseline] = {}
        self._unavailable: dict[str, str] = {}
        for b in baselines:
            self.set_baseline(b)

    @property
    def models(self) -> list[str]:
        """The models routed here (those with a baseline), monitored yet or not."""
        return sorted(self._baselines)

    @property
    def monitored(self) -> list[str]:
        """The models with a monitor: they had events here, or were restored."""
        return sorted(self._monitors)

    def monitors(self) -> Mapping[str, ModelMonitor]:
        """{model: its monitor} of the `monitored` models, read-only and live (none is created)."""
        return MappingProxyType(self._monitors)

    @property
    def unavailable(self) -> dict[str, str]:
        """Models whose baseline is broken or gone, with the reason."""
        return dict(self._unavailable)

    def unmonitored(self, models: Iterable[str]) -> list[str]:
        """Those of `models` routed here (with a baseline) that have no monitor yet, each once, in order."""
        return [m for m in dict.fromkeys(models) if m in self._baselines and m not in self._monitors]

    def monitor(self, model: str) -> ModelMonitor:
        """The model's monitor, created fresh if it has none yet (KeyError if the model has no baseline)."""
        monitor = self._monitors.get(model)
        if monitor is None:
            monitor = self._monitors[model] = ModelMonitor(self._baselines[model], self._config)
        return monitor

    def baseline(self, model: str) -> Baseline:
        """The baseline the model's monitor compares with (KeyError if the model has none)."""
        return self._baselines[model]

    def set_baseline(self, baseline: Baseline) -> None:
        """Add a model, or replace its baseline. A baseline of other content (`Baseline.fingerprint`)
        drops the monitor (a fresh one starts at the model's next event); the same profile rebuilt
        (a new `created`) keeps the monitor, whose episodes go on counting, so its next alert
        never reuses an id."""
        old = self._baselines.get(baseline.model)
        self._unavailable.pop(baseline.model, None)
        if old is not None and old.fingerprint == baseline.fingerprint:
            return
        self._baselines[baseline.model] = baseline
        self._monitors.pop(baseline.model, None)

    def disable_model(self, model: str, detail: str) -> None:
        """The model's baseline is corrupt or deleted: dead-letter its events with `detail`."""
        self._monitors.pop(model, None)
        self._baselines.pop(model, None)
        self._unavailable[model] = detail

    def process(self, events: list[dict]) -> tuple[list[Alert], list[Reject]]:
        """Update each model's monitor with its events, in arrival order.

        An event of a model without a monitor touches none: it is rejected as ``unknown_model``, or
        ``baseline_unavailable`` after `disable_model`, unless its model is a shadow candidate without
        a baseline (then it is left to the joins).

        Parameters
        ----------
        events
            Usable events (as `decode_message` returns them), of any models.

        Returns
        -------
        tuple of list of Alert and list of Reject
            The alerts, model by model in order of first appearance, and the rejected events.

        Examples
        --------
        >>> from baselines.profile import Baseline
        >>> router = ModelRouter([Baseline("credit", "1", {}, n_rows=1000)])
        >>> alerts, rejects = router.process([{"model": "credit", "features": {}}, {"model": "fraud", "features": {}}])
        >>> alerts, [r.reason for r in rejects], router.monitor("credit").events_seen
        ([], ['unknown_model'], 1)
        >>> router.disable_model("credit", "baseline file deleted")
        >>> [r.detail for r in router.process([{"model": "credit", "features": {}}])[1]]
        ["model 'credit': baseline file deleted"]
        """
        rejects: list[Reject] = []
        models = set(map(model_of, events))
        if len(models) == 1 and models <= self._baselines.keys():
            by_model = {models.pop(): events}  # the common batch: one known model, nothing to group
        else:
            by_model = self._group(events, rejects)
        alerts: list[Alert] = []
        for model, group in by_model.items():
            alerts.extend(self.monitor(model).update_batch(group))
        return alerts, rejects

    def _group(self, events: list[dict], rejects: list[Reject]) -> dict[str, list[dict]]:
        by_model: dict[str, list[dict]] = {}
        known = self._baselines
        for ev in events:
            model = ev["model"]
            group = by_model.get(model)
            if group is None:
                if model not in known:
                    if model not in self._shadow_candidates or model in self._unavailable:
                        rejects.append(self._reject(model, ev))
                    continue
                group = by_model[model] = []
            group.append(ev)
        return by_model

    def _reject(self, model: str, ev: dict) -> Reject:
        why = self._unavailable.get(model)
        if why is not None:
            return Reject("baseline_unavailable", f"model {model!r}: {why}", encode_value(ev))
        return Reject("unknown_model", f"no baseline for model {model!r}", encode_value(ev))

    def state_dict(self, model: str, complete: bool = False) -> dict[str, Any]:
        """The model's monitor state, for a checkpoint (`ModelMonitor.state_dict`)."""
        return self.monitor(model).state_dict(complete)

    def restore(self, model: str, state: dict[str, Any]) -> None:
        """Continue a model's monitor from a checkpoint taken with `state_dict`."""
        self._monitors[model] = ModelMonitor.from_state(self._baselines[model], state, self._config)
