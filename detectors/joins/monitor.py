"""`JoinMonitor`: the joins for every model (parity, labels, shadow pairs), the one object `replay`
and the worker feed."""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from baselines.profile import Baseline, CategoricalProfile
from detectors.alerts import Alert
from detectors.joins.buffer import RequestJoin
from detectors.joins.config import DEFAULT_JOIN_CONFIG, JoinConfig
from detectors.joins.leakage import LeakageMonitor
from detectors.joins.parity import FeatureParity
from detectors.joins.performance import PerformanceMonitor
from detectors.joins.shadow import ShadowMonitor
from detectors.joins.wire import record_time

__all__ = ["JoinMonitor"]


class JoinMonitor:
    """The two joins for every model: the one object `replay` and the worker feed.

    `baseline_of(model)` returns the model's baseline, or None for a model that is not monitored
    (its records are counted as `unknown_model` and ignored). `parity` / `labels` switch a join off
    (replay without --feature-log need not remember served features). `shadow` pairs models
    (production, candidate) for detectors.joins.shadow: a candidate's events go to the shadow join
    only, never to the parity and label joins (they carry production's request ids), whether or not
    the candidate has a baseline; the labels production's events receive are passed on to its pairs.
    """

    def __init__(self, baseline_of: Callable[[str], Baseline | None], config: JoinConfig = DEFAULT_JOIN_CONFIG,
                 parity: bool = True, labels: bool = True, shadow: Iterable[tuple[str, str]] = ()):
        self._baseline_of = baseline_of
        self._config = config
        shadow = tuple(shadow)
        self._shadow = ShadowMonitor(shadow, baseline_of, config, labels) if shadow else None
        self._parity_join = RequestJoin(config.ttl, config.max_entries, ("served", "offline")) if parity else None
        self._label_join = RequestJoin(config.ttl, config.max_entries, ("prediction", "label")) if labels else None
        self._parity: dict[str, tuple[Baseline, FeatureParity]] = {}
        # per model: its baseline, its performance monitor and, when the baseline records the features'
        # association with the label, its leakage monitor
        self._performance: dict[str, tuple[Baseline, PerformanceMonitor, LeakageMonitor | None]] = {}
        self._events_seen: Counter[str] = Counter()
        self._ignored: Counter[str] = Counter()

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Join counters (matched, waiting, duplicates, expired unmatched) and ignored records."""
        out = {}
        if self._parity_join is not None:
            out["feature_log"] = self._parity_join.counts
        if self._label_join is not None:
            out["labels"] = self._label_join.counts
        if self._shadow is not None:
            out.update(self._shadow.counts)
        if self._ignored:
            out["ignored"] = dict(self._ignored)
        return out

    @property
    def shadow(self) -> ShadowMonitor | None:
        """The shadow pairs' monitor, if pairs were given."""
        return self._shadow

    def add_predictions(self, events: Iterable[dict], default_ts: float | None = None) -> list[Alert]:
        """Remember served events that carry a request id (events of unmonitored models are skipped)."""
        alerts: list[Alert] = []
        shadow = self._shadow
        for ev in events:
            model = ev.get("model")
            role = shadow.role(model) if shadow is not None else None
            monitored = role != "candidate" and self._baseline_of(model) is not None
            if not monitored and role is None:
                continue
            if monitored:
                self._events_seen[model] += 1
            request_id = ev.get("request_id")
            if not isinstance(request_id, str) or not request_id:
                continue
            ts = record_time(ev, default_ts)
            if role is not None:
                production = model if role == "production" else shadow.production_of(model)
                alerts += shadow.add_prediction(ev, ts, self._events_seen[production])
            if not monitored:
                continue
            if self._parity_join is not None:
                offline = self._parity_join.offer("served", request_id, ev, ts)
                if offline is not None:
                    alerts += self._compare(request_id, ev, offline)
            if self._label_join is not None and "prediction" in ev:
                label = self._label_join.offer("prediction", request_id, ev, ts)
                if label is not None:
                    alerts += self._score(ev, label["label"])
                    self._shadow_label(ev, label["label"])
        return alerts

    def add_feature_log(self, records: Iterable[dict], default_ts: float | None = None) -> list[Alert]:
        """Offline recomputations {"request_id", "model", "features"} (as `decode_join_records` gives)."""
        alerts: list[Alert] = []
        if self._parity_join is None:
            return alerts
        for rec in records:
            if self._baseline_of(rec["model"]) is None:
                self._ignored["feature_log_unknown_model"] += 1
                continue
            served = self._parity_join.offer("offline", rec["request_id"], rec, record_time(rec, default_ts))
            if served is not None:
                alerts += self._compare(rec["request_id"], served, rec)
        return alerts

    def add_labels(self, records: Iterable[dict], default_ts: float | None = None) -> list[Alert]:
        """Delayed labels {"request_id", "label"} (as `decode_join_records` gives)."""
        alerts: list[Alert] = []
        if self._label_join is None:
            return alerts
        for rec in records:
            prediction = self._label_join.offer("label", rec["request_id"], rec, record_time(rec, default_ts))
            if prediction is not None:
                alerts += self._score(prediction, rec["label"])
                self._shadow_label(prediction, rec["label"])
        return alerts

    def _shadow_label(self, prediction: dict, label: Any) -> None:
        """A label production's event received, to its shadow pairs (their candidates' predictions)."""
        if self._shadow is not None and self._shadow.role(prediction["model"]) == "production":
            now = self._label_join.now
            self._shadow.add_label(prediction["model"], prediction["request_id"], label,
                                   now if now > -math.inf else None)

    def _compare(self, request_id: str, served: dict, offline: dict) -> list[Alert]:
        model = served["model"]
        if offline["model"] != model:
            self._ignored["feature_log_other_model"] += 1
            return []
        baseline = self._baseline_of(model)
        entry = self._parity.get(model)
        if entry is None or entry[0] is not baseline:  # a changed baseline starts afresh, like the monitors
            entry = self._parity[model] = (baseline, FeatureParity(model, baseline, self._config))
        return entry[1].compare(request_id, served, offline["features"], self._events_seen[model],
                                self._parity_join.now if self._parity_join.now > -math.inf else None)

    def _score(self, prediction: dict, label: Any) -> list[Alert]:
        model = prediction["model"]
        baseline = self._baseline_of(model)
        if baseline is None:
            return []
        now = self._label_join.now
        ts = now if now > -math.inf else None
        _, performance, leakage = self._score_monitors(model, baseline)
        alerts = performance.update(prediction, label, self._events_seen[model], ts)
        if leakage is not None:
            alerts += leakage.update(prediction, label, self._events_seen[model], ts, performance)
        return alerts

    def _score_monitors(self, model: str,
                        baseline: Baseline) -> tuple[Baseline, PerformanceMonitor, LeakageMonitor | None]:
        entry = self._performance.get(model)
        if entry is None or entry[0] is not baseline:
            # the drop is recomputed within the segments of the categorical features (their training categories)
            segments = {n: p.categories for n, p in baseline.features.items() if isinstance(p, CategoricalProfile)}
            association = baseline.label_association
            leakage = (LeakageMonitor(model, association, self._config, baseline.fingerprint)
                       if association is not None and association.features else None)
            entry = self._performance[model] = (baseline, PerformanceMonitor(model, baseline.metric, self._config,
                                                                            baseline.fingerprint, segments), leakage)
        return entry

    def state_dict(self) -> dict[str, Any]:
        """The joins as plain data (msgpack-ready; `load_state` takes it back): the buffers (the
        records waiting for their other side, values included: bounded by the TTL and the cap), the
        counters, per model its parity, performance and leakage state with its baseline's
        fingerprint, and the shadow pairs' joins and comparisons."""
        parity_join = None if self._parity_join is None else self._parity_join.state_dict()
        label_join = None if self._label_join is None else self._label_join.state_dict()
        if parity_join is not None and label_join is not None:
            # a served event waiting in both joins is one object: kept once, in the parity join's values
            where = {id(v): i for i, v in enumerate(parity_join["waiting_values"])}
            values = label_join["waiting_values"]
            label_join["same_as_parity"] = shared = []
            for j, v in enumerate(values):
                i = where.get(id(v))
                if i is not None:
                    shared.append([j, i])
                    values[j] = None
        return {
            "parity_join": parity_join,
            "label_join": label_join,
            "events_seen": dict(self._events_seen), "ignored": dict(self._ignored),
            "parity": {m: {"baseline": b.fingerprint, "state": p.state_dict()} for m, (b, p) in self._parity.items()},
            "performance": {m: {"baseline": b.fingerprint, "state": p.state_dict(),
                                "leakage": None if leak is None else leak.state_dict()}
                            for m, (b, p, leak) in self._performance.items()},
            "shadow": None if self._shadow is None else self._shadow.state_dict(),
        }

    def load_state(self, state: dict[str, Any]) -> list[str]:
        """Continue from a `state_dict` (of a JoinMonitor with the same joins on). A model's parity,
        performance, leakage or shadow state applies only to the baseline of the same fingerprint
        (as the monitors' checkpoints); it is left out otherwise, and the models left out are returned."""
        if self._parity_join is not None and state["parity_join"] is not None:
            self._parity_join.load_state(state["parity_join"])
        if self._label_join is not None and state["label_join"] is not None:
            label_join = state["label_join"]
            shared = label_join.get("same_as_parity") or []
            if shared:  # the served events kept once (state_dict): one object in both joins again
                values = list(label_join["waiting_values"])
                for j, i in shared:
                    values[j] = state["parity_join"]["waiting_values"][i]
                label_join = {**label_join, "waiting_values": values}
            self._label_join.load_state(label_join)
        self._events_seen = Counter({str(m): int(n) for m, n in state["events_seen"].items()})
        self._ignored = Counter({str(r): int(n) for r, n in state["ignored"].items()})
        left_out = []
        for model, saved in state["parity"].items():
            baseline = self._baseline_of(model)
            if baseline is None or baseline.fingerprint != saved["baseline"]:
                left_out.append(model)
                continue
            parity = FeatureParity(model, baseline, self._config)
            parity.load_state(saved["state"])
            self._parity[model] = (baseline, parity)
        for model, saved in state["performance"].items():
            baseline = self._baseline_of(model)
            if baseline is None or baseline.fingerprint != saved["baseline"]:
                left_out.append(model)
                continue
            self._performance.pop(model, None)
            _, performance, leakage = self._score_monitors(model, baseline)
            performance.load_state(saved["state"])
            if leakage is not None and saved.get("leakage") is not None:
                leakage.load_state(saved["leakage"])
        if self._shadow is not None and state.get("shadow") is not None:
            left_out += self._shadow.load_state(state["shadow"])
        return sorted(set(left_out))

    def snapshot(self) -> dict[str, Any]:
        """The join counters and, per model, the parity, performance and leakage snapshots; per shadow
        pair ("production=candidate"), its comparison."""
        out = {"counts": self.counts,
               "parity": {m: p.snapshot() for m, (_, p) in self._parity.items()},
               "performance": {m: p.snapshot() for m, (_, p, _) in self._performance.items()},
               "leakage": {m: leak.snapshot() for m, (_, _, leak) in self._performance.items() if leak is not None}}
        if self._shadow is not None:
            out["shadow"] = self._shadow.snapshot()
        return out
