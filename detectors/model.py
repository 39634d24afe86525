"""One monitor per model: every feature's tests, the confidence, data quality, serving, and the
episode rule that turns alarms into alerts.

The monitor orchestrates; the tests live in their own modules: detectors.numeric and
detectors.categorical (the features' banks, and the confidence's), detectors.schema (feature
names that differ from the baseline's), detectors.serving (model versions), detectors.timing (the history that dates a
change), detectors.episodes (alarm -> alert), detectors.diagnosis (the alert's wording).

>>> import numpy as np
>>> from baselines.profile import Baseline, NumericProfile, QUANTILE_PROBS
>>> q = np.quantile(np.random.default_rng(0).normal(0.5, 0.2, 20_000), QUANTILE_PROBS)
>>> p = NumericProfile("x", 20_000, 0, 0, 0.5, 0.2, float(q[0]), float(q[-1]), q, q[100:1000:100], np.full(10, 0.1))
>>> m = ModelMonitor(Baseline("credit", "1", {"x": p}, n_rows=20_000))
>>> rng = np.random.default_rng(1)
>>> alerts = m.update_batch([{"model": "credit", "features": {"x": float(v)}} for v in rng.normal(0.3, 0.4, 1000)])
>>> [(a.kind, a.feature, a.detector, a.events_seen) for a in alerts]
[('drift', 'x', 'cusum', 72), ('data_quality', 'x', 'out_of_range', 128)]
"""
from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from itertools import chain, repeat
from typing import Any, NamedTuple

import numpy as np

from baselines.profile import Baseline, CategoricalProfile, NumericProfile
from detectors import thresholds as T
from detectors._kernels import VERSIONS_EXPECTED, VERSIONS_NONE, VERSIONS_OTHER
from detectors.alerts import Alert, alert_id, severity
from detectors.categorical import ALARMS as CATEGORICAL_ALARMS
from detectors.categorical import CategoricalBank
from detectors.diagnosis import (
    MIN_CHANGE_VALUES,
    PIPELINE_CAUSES,
    ChangeTiming,
    Diagnosis,
    category_counts,
    diagnose_categorical,
    diagnose_confidence,
    diagnose_numeric,
    diagnose_schema,
    diagnose_serving,
    lead_with_change,
    lead_with_rate,
    on_grid,
    redact_labels,
    with_version_coincidence,
)
from detectors.episodes import ALARM_ORDER, Alarm, AlarmSource, Candidate, EpisodeTracker
from detectors.events import ParsedEvents
from detectors.extract import ABSENT_KEY, INVALID_CODE, MISSING_CODE, FeatureColumns, NumericValues, join_columns
from detectors.fmt import number, quote_value
from detectors.numeric import (
    CONFIDENCE_ALARMS,
    FEATURE_ALARMS,
    MIN_POOLED_SUMMARY,
    Z_PER_UNIT,
    NumericBank,
    summarise_recent,
)
from detectors.pointmass import ON_COARSE_GRID
from detectors.recent import InvalidExamples
from detectors.schema import SchemaMonitor
from detectors.seasonal import SeasonalMap, event_times
from detectors.serving import ServedVersions
from detectors.sketches import MAX_LABEL
from detectors.timing import ChangeHistory
from detectors.worstwindow import VALUE as WORST_WINDOW_VALUE

__all__ = ["STATE_VERSION", "ExtractedBatch", "ModelMonitor", "MonitorConfig"]

#: 5: the last raw values and unseen labels only with examples on (4: the schema monitor's record
#: of absent fields)
STATE_VERSION = 5

#: the alert kind of each family of a feature's (or the confidence's) alarms, from the banks' own tables
_FEATURE_ALARM_KINDS = {family: kind for kind, family, _ in
                        (*FEATURE_ALARMS.values(), *CONFIDENCE_ALARMS.values(), *CATEGORICAL_ALARMS.values())}


@dataclass(frozen=True)
class MonitorConfig:
    """A model monitor's settings (also saved with its state)."""

    #: tumbling window of the model's events for the windowed tests (a multiple of the CUSUM block)
    window: int = 1000
    #: fewest valid values a window needs before its test runs
    min_window_values: int = 200
    #: recent events kept per feature for the alert's "current" summary and the diagnosis
    recent: int = 512
    #: an episode re-arms after this many events without an alarm of its (feature, family)
    rearm_quiet_events: int = 5000
    #: unexpected feature names tracked (bounded)
    max_unexpected_names: int = 100
    #: unseen category values tracked per feature (bounded)
    top_unseen: int = 20
    #: timing-block means kept per feature to date a change (abrupt / gradual); older blocks are merged
    #: (at most timing.TIMING_PER_SIZE of each length), so 64 blocks cover ~500k events
    timing_blocks: int = 64
    #: quote individual raw values in alerts and keep them in the state: invalid examples, unseen
    #: category labels, exact extremes (docs/contracts.md); off by default, since production features
    #: may be personal data (training statistics and labels are always shown)
    include_examples: bool = False
    #: a feature's alert is diagnosed again from this many events after it; when that names a pipeline
    #: defect other than the alert's cause, an update record with the same alert_id follows
    #: (docs/diagnosis.md, "Update records"); 0: none
    diagnosis_update_events: int = 96


class ExtractedBatch(NamedTuple):
    """A batch of a model's events read into its monitor's columns (`ModelMonitor.extract` /
    `extract_scanned`), not yet monitored: what depends on the baseline alone, not on the
    monitor's state. `ModelMonitor.update_extracted` monitors several as one batch."""

    #: the events, as dicts (made when asked for, for scanned JSON)
    events: Sequence[dict]
    confidence: np.ndarray
    numeric: NumericValues
    #: (codes, absent, others) of the categorical features (`FeatureColumns.extract`)
    categorical: tuple
    extra: np.ndarray
    #: how the events' model versions compare with the baseline's (`_kernels.VERSIONS_*`)
    versions: int
    #: the events' model versions as {"model_version": v}, when read apart from the events (scanned)
    served: Sequence[dict] | None = None


class ModelMonitor:
    """Watches one model's events against its training baseline (see module docstring).

    Parameters
    ----------
    baseline
        The model's training profile (`baselines.profile.Baseline`).
    config
        The monitor's settings (default `MonitorConfig()`).

    Examples
    --------
    A feature that moves from N(100, 10) to N(115, 10) after 500 events; a restart from the checkpoint
    taken at event 400 gives the same alert, with the same id:

    >>> import numpy as np
    >>> from baselines.profile import QUANTILE_PROBS, Baseline, NumericProfile
    >>> q = np.quantile(np.random.default_rng(0).normal(100, 10, 20_000), QUANTILE_PROBS)
    >>> amount = NumericProfile("amount", 20_000, 0, 0, 100.0, 10.0, float(q[0]), float(q[-1]), q, q[100:1000:100],
    ...                         np.full(10, 0.1))
    >>> baseline = Baseline("credit", "1", {"amount": amount}, n_rows=20_000)
    >>> rng = np.random.default_rng(1)
    >>> values = np.concatenate([rng.normal(100, 10, 500), rng.normal(115, 10, 500)])
    >>> events = [{"model": "credit", "features": {"amount": float(v)}} for v in values]
    >>> monitor = ModelMonitor(baseline)
    >>> monitor.update_batch(events[:400])
    []
    >>> checkpoint = monitor.state_dict()
    >>> alerts = monitor.update_batch(events[400:])
    >>> [(a.kind, a.feature, a.detector, a.events_seen, a.severity) for a in alerts]
    [('drift', 'amount', 'cusum', 544, 'critical')]
    >>> monitor.snapshot()["features"]["amount"]["last_alert"]["events_seen"]
    544
    >>> restored = ModelMonitor.from_state(baseline, checkpoint)
    >>> [a.alert_id for a in restored.update_batch(events[400:])] == [a.alert_id for a in alerts]
    True
    """

    def __init__(self, baseline: Baseline, config: MonitorConfig | None = None):
        self._baseline = baseline
        self._config = config = config or MonitorConfig()
        numeric = [p for p in baseline.features.values() if isinstance(p, NumericProfile)]
        categorical = [p for p in baseline.features.values() if isinstance(p, CategoricalProfile)]
        self._numeric = NumericBank(numeric, config.window, config.min_window_values, config.recent)
        #: each event's numeric values mapped to the whole-day profile by its slot of the clock (None: the
        #: baseline is not seasonal)
        self._seasonal = SeasonalMap(numeric, baseline.seasonal) if baseline.seasonal is not None else None
        self._categorical = CategoricalBank(categorical, config.window, config.min_window_values,
                                            config.recent, config.top_unseen)
        self._columns = FeatureColumns(self._numeric.names, self._categorical.names, self._categorical.categories,
                                       count_extra=True)
        self._confidence = (NumericBank([baseline.confidence], config.window, config.min_window_values,
                                        config.recent, confidence=True, names=["confidence"])
                            if baseline.confidence else None)
        self._episodes = EpisodeTracker(config.rearm_quiet_events)
        self._schema = SchemaMonitor(self._numeric.names + self._categorical.names, baseline.n_rows,
                                     config.max_unexpected_names, config.recent)
        self._serving = ServedVersions(baseline.version, config.window, config.rearm_quiet_events)
        self._timing = ChangeHistory(len(self._numeric.names), config.timing_blocks, T.TIMING_BLOCK)
        self._invalid_examples = InvalidExamples(len(self._numeric.names), keep_raw=config.include_examples)
        self._last_alert: dict[str, dict] = {}
        #: alerts to diagnose again: {"due": event index, "defect": what the alert blamed, "episode", "candidate"}
        self._pending_updates: list[dict[str, Any]] = []
        self._events_seen = 0
        #: missing and invalid values since the start, per feature (numeric then categorical) and the
        #: confidence: the summaries' counts, from the extraction the tests use (no second pass)
        self._value_counts = np.zeros((2, len(self._numeric.names) + len(self._categorical.names)
                                       + (1 if self._confidence is not None else 0)), dtype=np.int64)

    # ---- public API ------------------------------------------------------------------------
    @property
    def events_seen(self) -> int:
        return self._events_seen

    @property
    def baseline(self) -> Baseline:
        return self._baseline

    @property
    def config(self) -> MonitorConfig:
        return self._config

    def update(self, event: dict) -> list[Alert]:
        """`update_batch` of one event."""
        return self.update_batch([event])

    def update_batch(self, events: list[dict]) -> list[Alert]:
        """Feed the model's next events, in arrival order; return the alerts they raise.

        Batching does not change the alerts: the same events in any batches give the same alerts.

        Parameters
        ----------
        events
            Usable events of this model (as `detectors.events.decode_message` returns them):
            "features", and optionally "confidence", "model_version", "ts".

        Returns
        -------
        list of Alert
            One per alarm that opens an episode, in event order (see the class example).
        """
        if not events:
            return []
        return self._update(*self.extract(events))

    def update_scanned(self, block: Any, payloads: Sequence[bytes], rows: list[int]) -> list[Alert]:
        """`update_batch` of the JSON events that `detectors._decode.scan` took from `payloads` at
        `rows` (their indexes, as the scan numbered them), read from its `block` into the columns
        without making their dicts: the same alerts as `update_batch` of the events
        `decode_message` makes of those payloads."""
        if not rows:
            return []
        return self._update(*self.extract_scanned(block, payloads, rows))

    def extract(self, events: list[dict]) -> ExtractedBatch:
        """The events read into the columns, to monitor later with `update_extracted` (the monitor's
        state is not touched: it depends on the baseline alone)."""
        confidence = np.empty(len(events) if self._confidence is not None else 0)
        return ExtractedBatch(events, confidence,
                              *self._columns.extract_events(events, self._baseline.version, confidence))

    def extract_scanned(self, block: Any, payloads: Sequence[bytes], rows: list[int]) -> ExtractedBatch:
        """`extract` of the events a scan took (see `update_scanned`); they keep `payloads` until
        monitored."""
        confidence = np.empty(len(rows) if self._confidence is not None else 0)
        events = ParsedEvents(payloads, rows)
        extracted = self._columns.extract_scanned(block, rows, events, self._baseline.version, confidence)
        served = None
        if extracted[-1] == VERSIONS_OTHER:  # the versions alone, not every event's dict
            values = block.versions(rows)
            served = None if values is None else [{"model_version": v} for v in values]
        return ExtractedBatch(events, confidence, *extracted, served=served)

    def update_extracted(self, batches: Sequence[ExtractedBatch]) -> list[Alert]:
        """`update_batch` of the events of `batches` (extracted by a monitor of this baseline, in
        arrival order) as one batch: the alerts of feeding them as they came, at the cost of one
        call (see `detectors.processing.Hold`)."""
        if len(batches) == 1:
            return self._update(*batches[0])
        return self._update(*_joined(batches, self._baseline.version)) if batches else []

    def _update(self, events: Sequence[dict], confidence: np.ndarray, numeric: Any, categorical: tuple,
                extra: np.ndarray, versions: int, served: Sequence[dict] | None = None) -> list[Alert]:
        """The batch's alerts from its columns (`FeatureColumns.extract_events`); `events`: its events
        (`served`: their model versions, as {"model_version": v}, if given apart)."""
        n = len(events)
        codes, absent, others = categorical
        start = self._events_seen
        self._invalid_examples.hold_batch(numeric, start)
        self._count_values(numeric, codes, confidence)
        if self._seasonal is None:
            features = self._numeric.update(numeric.x, start, self._config.rearm_quiet_events)
        else:  # the dicts of scanned events are parsed for their `ts` (only a seasonal baseline's)
            mapped = self._seasonal.apply(numeric.x, event_times(events), start)
            features = self._numeric.update(mapped, start, self._config.rearm_quiet_events, received=numeric.x)
        # the batch's timing blocks stay apart until its alerts are built
        self._timing.hold_batch(self._numeric.completed_timing_blocks())
        features += self._categorical.update(codes, others, start)
        candidates = self._schema.update(numeric.features, extra, np.vstack([numeric.status == ABSENT_KEY, absent]),
                                         np.vstack([numeric.missing, codes == MISSING_CODE]), start)
        # a missing rate that is the schema change's absent fields extends the schema episode instead
        candidates += self._as_schema(features)
        if self._confidence is not None:
            candidates += self._confidence.update(confidence[None, :], start)
        candidates += self._serving.update(events if served is None else served, start, versions)
        candidates.sort(key=ALARM_ORDER)
        alerts = []
        for c in candidates:
            key = (c.feature or "", c.family)
            episode = self._episodes.observe(key, c.event_index)
            if isinstance(c, Alarm):
                if c.more:
                    self._episodes.extend(key, c.more[-1][0])
                if episode is not None:
                    c = c.candidate()
            if episode is not None:
                c.complete_evidence()
                alerts.append(self._alert(c, episode, events[c.event_index - start]))
        alerts = self._with_diagnosis_updates(alerts, events, start)
        self._numeric.end_batch()
        self._categorical.end_batch()
        self._schema.end_batch()
        if self._confidence is not None:
            self._confidence.end_batch()
        self._timing.commit()
        self._invalid_examples.commit()
        self._events_seen += n
        return alerts

    def _count_values(self, numeric: Any, codes: np.ndarray, confidence: np.ndarray) -> None:
        missing = [numeric.missing.sum(axis=1), (codes == MISSING_CODE).sum(axis=1)]
        invalid = [numeric.invalid.sum(axis=1), (codes == INVALID_CODE).sum(axis=1)]
        if self._confidence is not None:
            missing.append([np.isnan(confidence).sum()])
            invalid.append([np.isinf(confidence).sum()])
        self._value_counts[0] += np.concatenate(missing).astype(np.int64)
        self._value_counts[1] += np.concatenate(invalid).astype(np.int64)

    def value_counts(self) -> dict[str, dict[str, int]]:
        """Missing and invalid values since the monitor started, per feature with any, in the
        baseline's order, the event's confidence last ("confidence", or "event confidence" when a
        feature has that name).

        Returns
        -------
        dict
            {feature: {"invalid": n, "missing": m}}.
        """
        names = self._numeric.names + self._categorical.names
        column = {name: k for k, name in enumerate(names)}
        order = [n for n in self._baseline.features if n in column]
        if self._confidence is not None:  # named apart from a feature that is itself called "confidence"
            conf = "event confidence" if "confidence" in column else "confidence"
            order.append(conf)
            column[conf] = len(names)
        missing, invalid = self._value_counts
        return {name: {"invalid": int(invalid[column[name]]), "missing": int(missing[column[name]])}
                for name in order if invalid[column[name]] or missing[column[name]]}

    def _as_schema(self, alarms: list[Candidate | Alarm]) -> list[Candidate | Alarm]:
        """The features' alarms, those that are a missing rate the schema change explains as schema alarms
        that only extend the schema episode (`SchemaMonitor.explains_missing`: that episode is open)."""
        missing = [c for c in alarms if c.family == "missing"]
        if not missing:
            return alarms
        # one question per alarm, each of a run's (`Alarm.more`); their build args, run by run
        runs = [[c.args, *c.more] if isinstance(c, Alarm) else [None] for c in missing]
        counts = [len(run) for run in runs]
        events = np.array([c.event_index if args is None else args[0] for c, run in zip(missing, runs) for args in run],
                          dtype=np.int64)
        since = np.array([(-1 if c.onset is None else c.onset) if args is None else args[-1]
                          for c, run in zip(missing, runs) for args in run], dtype=np.int64)
        explained = self._schema.explains_missing([c.feature for c in missing], counts, events, since,
                                                  self._config.rearm_quiet_events)
        if not explained.any():
            return alarms
        run_of = np.repeat(np.arange(len(missing)), counts)
        starts = np.cumsum([0, *counts])
        wholly = np.add.reduceat(explained.astype(np.int64), starts[:-1])  # explained alarms per run
        out = [c for c in alarms if c.family != "missing"]
        out += [c for c, n in zip(missing, wholly.tolist()) if n == 0]
        for r in np.flatnonzero((wholly > 0) & (wholly < counts)).tolist():  # a run's alarms not explained: each
            c = missing[r]
            out += [Alarm(args[0], c.rank, c.feature, c.family, c.detector, args[-1], c.build, args)
                    for args, yes in zip(runs[r], explained[starts[r]:starts[r + 1]].tolist()) if not yes]
        # ranked after the schema alarm of the same event, so that it never opens the episode itself; of the
        # same event's, the first (by rank) is the one the episode rule would see first: the rest add nothing
        # (a renamed schema: every known feature's, every CUSUM block)
        picked = np.flatnonzero(explained)
        rank_key = np.array([c.rank[0] * 2**32 + c.rank[2] for c in missing], dtype=np.int64)[run_of[picked]]
        picked = picked[np.lexsort((rank_key, events[picked]))]
        at_event = events[picked]
        for k in picked[np.r_[True, at_event[1:] != at_event[:-1]]].tolist():
            c, args = missing[run_of[k]], runs[run_of[k]][k - starts[run_of[k]]]
            rank = (AlarmSource.UNEXPECTED_FIELDS, 1 + c.rank[0], c.rank[2])
            if isinstance(c, Alarm):
                out.append(Alarm(args[0], rank, None, "schema", "schema", args[-1], c.build, args))
            else:  # in place (this batch's own candidate; `dataclasses.replace` costs more in a flood)
                c.feature, c.family, c.detector, c.rank = None, "schema", "schema", rank
                out.append(c)
        return out

    # ---- alerts --------------------------------------------------------------------------------
    def _alert(self, c: Candidate, episode: int, event: dict, update_at: int | None = None,
               first: list | None = None) -> Alert:
        """The alert of alarm c, or with `update_at` its update record: the same alert diagnosed from
        the events after it up to that event (`event`); `first` is what the alert blamed (`_defect`)."""
        e = c.event_index if update_at is None else update_at
        baseline, current, diagnosis = self._describe(c, e, None if update_at is None else c.event_index + 1)
        if c.kind != "serving":
            diagnosis = with_version_coincidence(diagnosis, c, self._serving.first_seen(), self._baseline.version)
        evidence = dict(c.evidence)
        evidence.update({k: v for k, v in diagnosis.evidence.items() if k not in evidence})
        evidence["cause"] = diagnosis.cause
        evidence["episode"] = episode
        if update_at is not None:
            events = [c.event_index + 2, e + 1]  # numbered like events_seen
            evidence["update"] = {"first_cause": first[0], "events": events}
            diagnosis = Diagnosis(diagnosis.cause, f"update: the {e - c.event_index:,} events after the alert (events "
                                  f"{events[0]:,} to {events[1]:,}) name {_blamed(_defect(evidence))}, not "
                                  f"{_blamed(first)}: {diagnosis.sentence}", diagnosis.evidence)
        unseen = self._unseen_labels(c.feature, e)
        if unseen:  # examples off: the rules compared the spellings; the alert keeps only their hashes
            current, evidence = redact_labels(current, unseen), redact_labels(evidence, unseen)
            diagnosis = Diagnosis(diagnosis.cause, redact_labels(diagnosis.sentence, unseen), diagnosis.evidence)
        ts = event.get("ts")
        version = event.get("model_version")
        alert = Alert(
            alert_id=alert_id(self._baseline.model, c.feature, c.kind, c.family, episode, self._baseline.fingerprint),
            kind=c.kind,
            model=self._baseline.model,
            model_version=self._baseline.version if version is None else quote_value(version, MAX_LABEL),
            feature=c.feature,
            detector=c.detector,
            statistic=_finite(c.statistic),
            threshold=_finite(c.threshold),
            p_value=c.p_value,
            baseline=baseline,
            current=current,
            events_seen=e + 1,
            ts=float(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) else None,
            severity=severity(c, baseline, current),
            diagnosis=diagnosis.sentence,
            evidence=evidence,
            update=update_at is not None,
        )
        if c.feature is not None and update_at is None:
            self._last_alert[c.feature] = {"alert_id": alert.alert_id, "kind": alert.kind, "detector": alert.detector,
                                           "events_seen": alert.events_seen, "severity": alert.severity}
            if (self._config.diagnosis_update_events > 0 and c.kind in ("drift", "data_quality")
                    and c.feature in self._baseline.features and c.detector != "invalid_confidence"):
                # kept as the alert showed it: with examples off, unseen labels only as their hashes
                kept = replace(c, evidence=redact_labels(c.evidence, unseen)) if unseen else c
                self._pending_updates.append({"due": e + self._config.diagnosis_update_events,
                                              "defect": _defect(evidence), "episode": episode, "candidate": kept})
        return alert

    def _with_diagnosis_updates(self, alerts: list[Alert], events: list[dict], start: int) -> list[Alert]:
        """The batch's alerts and the update records due in it, each after the alerts of its event.

        An update is published when the diagnosis of the events after the alert names a pipeline
        defect other than the alert's (another cause, factor, conversion or step). It never retracts
        one: the alert's values, when they are all after the change, are as many as the update's."""
        end = start + len(events) - 1
        due = [u for u in self._pending_updates if u["due"] <= end]
        if not due:
            return alerts
        self._pending_updates = [u for u in self._pending_updates if u["due"] > end]
        updates = []
        for u in sorted(due, key=lambda u: u["due"]):  # stable: alerts' order within an event
            update = self._alert(u["candidate"], u["episode"], events[u["due"] - start], u["due"], u["defect"])
            if update.evidence["cause"] in PIPELINE_CAUSES and _defect(update.evidence) != u["defect"]:
                updates.append(update)
        return sorted(alerts + updates, key=lambda a: (a.events_seen, a.update))

    def _describe(self, c: Candidate, e: int, since: int | None = None) -> tuple[dict, dict, Diagnosis]:
        """(training summary, recent summary, diagnosis) of the alarm's feature (or of its subject),
        from the values up to event e since `since` (by default since the alarm's change point)."""
        # values near the float limits (~1e308, valid JSON) overflow the summaries' and the rules'
        # arithmetic to inf or NaN, which they report as such or read as "no": numpy's warnings about
        # it would only be noise in the worker's log
        with np.errstate(over="ignore", invalid="ignore"):
            return self._described(c, e, since)

    def _described(self, c: Candidate, e: int, since: int | None) -> tuple[dict, dict, Diagnosis]:
        since = c.onset if since is None else since
        b = self._baseline
        if c.kind == "serving":
            served = c.evidence.get("served_versions", {})
            d = diagnose_serving(c.family, served, c.evidence.get("version"), b.version)
            return {"version": b.version}, {"served_versions": served}, d
        if c.kind == "confidence_drop" or (c.feature == "confidence" and self._confidence is not None
                                            and c.detector == "invalid_confidence"):
            current = summarise_recent(self._confidence.recent_values(0, e, since),
                                       exact=self._config.include_examples)
            base = b.confidence.summary()
            recent = self._confidence.recent_values(0, e, since)
            valid = recent[np.isfinite(recent)]
            low = float(np.mean(valid < base["p05"])) if len(valid) else None
            return base, current, diagnose_confidence(c, base, current, low)
        if c.family == "schema":
            names, absent = c.evidence["unexpected_names"], c.evidence["absent_features"]
            return ({"features": len(b.features)}, {"unexpected_names": names, "absent_features": absent},
                    diagnose_schema(names, absent))
        profile = b.features[c.feature]
        if isinstance(profile, NumericProfile):
            j = self._numeric.names.index(c.feature)
            recent = self._numeric.recent_values(j, e, since)
            current = summarise_recent(recent, exact=self._config.include_examples)
            valid = recent[np.isfinite(recent)].astype(np.float64)
            d = diagnose_numeric(profile, valid, n_missing=int(np.isnan(recent).sum()),
                                 n_invalid=int(np.isinf(recent).sum()), n_total=len(recent),
                                 invalid_examples=self._invalid_examples.at(j, e), timing=self._timing_at(j, e),
                                 quote_examples=self._config.include_examples,
                                 **_point_mass_evidence(c, recent, e, since),
                                 before_change=self._before_change(c, j, e, since))
            d = lead_with_rate(lead_with_change(d, profile.summary(), current, c), c, _rate_of(profile, c.family),
                               current.get(f"{c.family}_rate", 0.0), current["events"])
            return profile.summary(), current, d
        j = self._categorical.names.index(c.feature)
        current = self._categorical.current_summary(j, e, since)
        codes = self._categorical.recent_codes(j, e, since)
        counts = category_counts(profile, self._categorical.categories[j], codes,
                                 self._categorical.top_unseen(j, 20, event_index=e))
        timing = ChangeTiming(version_first_seen=self._serving.first_seen(until=e), baseline_version=b.version)
        tail, n_after = None, _after_change(c, e, since)
        if n_after is not None:
            after = codes[max(0, len(codes) - n_after):]
            tail = (category_counts(profile, self._categorical.categories[j], after, []),
                    int((after == MISSING_CODE).sum()), len(after))
        d = diagnose_categorical(profile, counts, n_missing=int((codes == MISSING_CODE).sum()), n_total=len(codes),
                                 timing=timing, n_values=int((codes >= 0).sum()), after_change=tail)
        d = lead_with_rate(d, c, _rate_of(profile, c.family), current.get(f"{c.family}_rate", 0.0), current["events"])
        return profile.summary(), current, d

    def _before_change(self, c: Candidate, j: int, e: int, since: int | None) -> np.ndarray | None:
        """The recent values before a worst-window value alarm's change point (`diagnose_numeric`'s
        before_change), None for another alarm."""
        if c.evidence.get("test") != WORST_WINDOW_VALUE or since is None:
            return None
        ring = self._numeric.recent_values(j, e)
        return ring[:max(0, len(ring) - (e - since + 1))]

    def _unseen_labels(self, feature: str | None, event_index: int) -> list[str]:
        """The unseen category labels an alert of `feature` may quote, to redact (none with examples on)."""
        if self._config.include_examples or feature not in self._categorical.names:
            return []
        j = self._categorical.names.index(feature)
        return [label for label, _ in self._categorical.top_unseen(j, self._config.top_unseen, event_index=event_index)]

    def _timing_at(self, j: int, event_index: int) -> ChangeTiming:
        """What dates numeric feature j's change, up to event_index."""
        ends, counts, means = self._timing.feature_at(j, event_index)
        return ChangeTiming(
            block_means=(means * Z_PER_UNIT).tolist(),
            block_counts=counts.tolist(),
            end_event=int(ends[-1]) + 1 if len(ends) else 0,
            version_first_seen=self._serving.first_seen(until=event_index),
            baseline_version=self._baseline.version,
        )

    # ---- snapshot and state ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The monitor at a glance: events seen, served version, mean confidence, per feature its
        last window's statistics, missing ratio and last alert (what `skewwatch` shows and exports),
        and "alerting": {feature or "confidence": [alert kinds]} of the episodes open now (an alarm
        within `rearm_quiet_events`)."""
        features: dict[str, Any] = {}
        for kind, bank in (("numeric", self._numeric), ("categorical", self._categorical)):  # plain numbers
            for name, missing, statistics in zip(bank.names, bank.missing_ratios(), bank.statistics()):
                features[name] = {"kind": kind, "missing_ratio": missing, "statistics": statistics,
                                  "last_alert": self._last_alert.get(name)}
        ordered = {name: features[name] for name in self._baseline.features if name in features}
        confidence_mean = None
        if self._confidence is not None:
            recent = self._confidence.recent_values(0)
            ok = recent[np.isfinite(recent)]
            # with examples off, not from so few values that the mean is a request's own value
            enough = 1 if self._config.include_examples else MIN_POOLED_SUMMARY
            confidence_mean = float(ok.mean()) if len(ok) >= enough else None
        alerting: dict[str, set[str]] = {}
        for feature, family in self._episodes.open_at(self._events_seen - 1):
            if feature and family in _FEATURE_ALARM_KINDS:  # not the model-wide schema and serving episodes
                alerting.setdefault(feature, set()).add(_FEATURE_ALARM_KINDS[family])
        return {"model": self._baseline.model, "model_version": self._serving.served_version(),
                "events_seen": self._events_seen, "confidence_mean": confidence_mean, "features": ordered,
                "alerting": {name: sorted(kinds) for name, kinds in alerting.items()}}

    def last_alerts(self) -> dict[str, dict]:
        """{feature: its last alert in brief (alert_id, kind, detector, events_seen, severity)}, only
        the features that alerted: what `snapshot` shows per feature, without computing every
        feature's statistics (the worker's status page asks it of every model). Kept in checkpoints."""
        return dict(self._last_alert)

    def state_dict(self, complete: bool = False) -> dict[str, Any]:
        """Everything the tests need to continue exactly, as plain data (numbers, strings, lists, bytes:
        msgpack packs it); `from_state` takes it back.

        With examples off (`MonitorConfig.include_examples`), no production value is kept: not the
        last raw values of the numeric features and the confidence, nor the unseen category labels.
        They only describe alerts, so a restored monitor raises the same alerts at the same events,
        with the same ids; an alert within `MonitorConfig.recent` events of the restore summarises
        the values since the restore, and its unseen labels are those seen since. `complete` keeps
        them whatever the setting, for a copy that stays in memory (a rollback): then the alerts
        after a restore are the same in every field."""
        examples = complete or self._config.include_examples
        return {
            "state_version": STATE_VERSION,
            "model": self._baseline.model,
            "config": asdict(self._config),
            "events_seen": self._events_seen,
            "numeric": self._numeric.state_dict(recent_values=examples),
            "categorical": self._categorical.state_dict(unseen_labels=examples),
            "confidence": self._confidence.state_dict(recent_values=examples) if self._confidence is not None else None,
            "episodes": self._episodes.state_dict(),
            **self._schema.state_dict(),
            **self._serving.state_dict(),
            "timing": self._timing.state_dict(),
            "last_alert": dict(self._last_alert),
            "diagnosis_updates": [{**u, "candidate": _candidate_state(u["candidate"])} for u in self._pending_updates],
            "value_counts": self._value_counts.tolist(),
            **self._invalid_examples.state_dict(),
        }

    @classmethod
    def from_state(cls, baseline: Baseline, state: dict[str, Any], config: MonitorConfig | None = None) -> ModelMonitor:
        """Continue where `state_dict()` left off (state from msgpack is fine): the same alerts at the
        same events (what an alert quotes: `state_dict`)."""
        if state.get("state_version") != STATE_VERSION:
            raise ValueError(f"monitor state version {state.get('state_version')!r} is not {STATE_VERSION}")
        if config is None and state.get("config"):
            config = MonitorConfig(**state["config"])
        m = cls(baseline, config)
        m._events_seen = int(state["events_seen"])
        m._numeric.load_state(state["numeric"])
        m._categorical.load_state(state["categorical"])
        if m._confidence is not None and state.get("confidence"):
            m._confidence.load_state(state["confidence"])
        m._episodes.load_state(state["episodes"])
        m._schema.load_state(state)
        m._serving.load_state(state)
        m._timing.load_state(state["timing"])
        m._last_alert = dict(state.get("last_alert") or {})
        m._pending_updates = [{**u, "candidate": _candidate_from_state(u["candidate"])}
                              for u in state.get("diagnosis_updates") or ()]
        m._value_counts = np.array(state["value_counts"], dtype=np.int64).reshape(m._value_counts.shape)
        m._invalid_examples.load_state(state)
        return m


class _Joined(Sequence):
    """The events of several batches as one sequence (each batch's own, made when asked for)."""

    __slots__ = ("_parts", "_starts")

    def __init__(self, parts: list[Sequence[dict]]):
        self._parts = parts
        self._starts = np.cumsum([0] + [len(p) for p in parts]).tolist()

    def __getitem__(self, i):  # type: ignore[override]
        if i < 0:
            i += self._starts[-1]
        if not 0 <= i < self._starts[-1]:
            raise IndexError(i)
        k = bisect_right(self._starts, i) - 1
        return self._parts[k][i - self._starts[k]]

    def __len__(self) -> int:
        return self._starts[-1]


def _joined(batches: Sequence[ExtractedBatch], expected: str) -> ExtractedBatch:
    """Several extracted batches as one, as `extract` would have read their events at once."""
    events = _Joined([b.events for b in batches])
    numeric, categorical, extra = join_columns([(b.numeric, b.categorical, b.extra) for b in batches], events)
    kinds = {b.versions for b in batches}
    versions = kinds.pop() if len(kinds) == 1 else VERSIONS_OTHER
    served = None
    if versions == VERSIONS_OTHER:  # each batch's versions, as serving reads them
        served = list(chain.from_iterable(
            repeat({}, len(b.events)) if b.versions == VERSIONS_NONE
            else repeat({"model_version": expected}, len(b.events)) if b.versions == VERSIONS_EXPECTED
            else b.events if b.served is None else b.served for b in batches))
    return ExtractedBatch(events, np.concatenate([b.confidence for b in batches]), numeric, categorical, extra,
                          versions, served)


def _after_change(c: Candidate, e: int, since: int | None) -> int | None:
    """How many of the last events up to e a point-mass alarm's diagnosis takes as after its change
    (None: not a point-mass alarm): those since the chain's change point but its first CUSUM block,
    where a chain that rose early puts it (unless fewer than MIN_CHANGE_VALUES would remain)."""
    if c.detector != "point_mass" or since is None:
        return None
    n = e - since + 1
    return n - T.CUSUM_BLOCK if n - T.CUSUM_BLOCK >= MIN_CHANGE_VALUES else n


def _point_mass_evidence(c: Candidate, recent: np.ndarray, e: int, since: int | None) -> dict[str, Any]:
    """A point-mass alarm's evidence for `diagnose_numeric`: the value whose share rose, the values
    after the change (`_after_change`; the recent ones reach further back)."""
    n = _after_change(c, e, since)
    if n is None:
        return {}
    tail = recent[max(0, len(recent) - n):]
    if c.evidence.get("test") == ON_COARSE_GRID:
        # the values went onto the step after the last valid value off it: a chance hit or two just
        # before the change puts the chain's change point there, more than its first block early
        off = np.flatnonzero(np.isfinite(tail) & ~on_grid(tail, c.evidence["step"]))
        if len(off) and np.count_nonzero(np.isfinite(tail[off[-1] + 1:])) >= MIN_CHANGE_VALUES:
            tail = tail[off[-1] + 1:]
    # a value beyond training's worst window in time order is no evidence against its training share: a
    # common value of a feature that drifted (a summer's calm wind) goes beyond the winter's worst too
    risen = None if c.evidence.get("test") == WORST_WINDOW_VALUE else c.evidence.get("value")
    return {"risen_value": risen, "after_change": tail}


def _defect(evidence: dict[str, Any]) -> list:
    """What an alert blames, to compare with its update's: the cause and the unit factor, conversion
    or rounding step it names (a list: it is kept in the state)."""
    return [evidence.get(k) for k in ("cause", "factor", "conversion", "step")]


def _blamed(defect: list) -> str:
    """A `_defect` in words: "unit_change (x12)", "unit_change (°C -> °F)", "rounding (step 1)"."""
    cause, factor, conversion, step = defect
    if factor is not None:
        return f"{cause} ({factor if str(factor).startswith('1/') else f'x{factor}'})"
    if conversion is not None or step is not None:
        return f"{cause} ({conversion if conversion is not None else f'step {number(step)}'})"
    return str(cause)


def _candidate_state(c: Candidate) -> dict[str, Any]:
    """An alarm awaiting its update record, as plain data."""
    return {**asdict(c), "rank": [int(r) for r in c.rank]}


def _candidate_from_state(d: dict[str, Any]) -> Candidate:
    source, order, position = d["rank"]
    return Candidate(**{**d, "rank": (AlarmSource(source), int(order), int(position))})


def _rate_of(profile: NumericProfile | CategoricalProfile, family: str) -> float:
    """The training rate a rate alarm's family compares with (missing, invalid); 0 for the others."""
    return {"missing": profile.missing_rate, "invalid": profile.invalid_rate}.get(family, 0.0)


def _finite(v: float) -> float:
    return float(v) if math.isfinite(v) else float(np.sign(v) * 1e308)

