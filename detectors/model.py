"""One monitor per model: every feature's tests, the confidence, data quality, serving, and the
episode rule that turns alarms into alerts.

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
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import repeat
from typing import Any

import numpy as np

from baselines.profile import Baseline, CategoricalProfile, NumericProfile
from detectors import _kernels
from detectors import thresholds as T
from detectors.alerts import Alert, alert_id
from detectors.categorical import CategoricalBank
from detectors.cusum import BlockAccumulator, CusumBank
from detectors.diagnosis import ChangeTiming, Diagnosis, diagnose_categorical, diagnose_numeric, diagnose_versions
from detectors.episodes import SERVING_FAMILIES, AlarmSource, Candidate, EpisodeTracker
from detectors.extract import INVALID, FeatureColumns, NumericValues
from detectors.numeric import Z_PER_UNIT, NumericBank, rate_weights, summarise_recent
from detectors.sketches import MAX_LABEL, SpaceSaving
from detectors.timing import BlockHistory

STATE_VERSION = 3
#: a change whose test ran at most this long from its change point is called abrupt, else gradual
ABRUPT_WITHIN_EVENTS = 1024
#: a model_version first seen this close to a test's change-point estimate is named as its likely cause
VERSION_COINCIDENCE_EVENTS = 64
#: tests that estimate where a change started (windowed tests only know their window)
CHANGE_POINT_DETECTORS = ("cusum", "page_hinkley", "adwin")
#: most model versions remembered (first-seen event, per-window counts)
MAX_VERSIONS = 16
#: blocks of each length in the change-timing history (detectors.timing)
TIMING_PER_SIZE = 8
#: raw invalid values kept per numeric feature (the last ones), quoted by the diagnosis
MAX_INVALID_EXAMPLES = 4
#: more than one model_version in a batch (ModelMonitor._serving)
_MIXED = object()


@dataclass(frozen=True)
class MonitorConfig:
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
    #: (at most TIMING_PER_SIZE of each length), so 64 blocks cover ~500k events
    timing_blocks: int = 64
    #: quote individual raw values (invalid examples) in alerts; off by default, since production
    #: features may be personal data (statistics and category labels are always shown)
    include_examples: bool = False


class ModelMonitor:
    """Watches one model's events against its training baseline (see module docstring)."""

    def __init__(self, baseline: Baseline, config: MonitorConfig | None = None):
        self._baseline = baseline
        self._config = config = config or MonitorConfig()
        numeric = [p for p in baseline.features.values() if isinstance(p, NumericProfile)]
        categorical = [p for p in baseline.features.values() if isinstance(p, CategoricalProfile)]
        self._numeric = NumericBank(numeric, config.window, config.min_window_values, config.recent)
        self._categorical = CategoricalBank(categorical, config.window, config.min_window_values,
                                            config.recent, config.top_unseen)
        self._columns = FeatureColumns(self._numeric.names, self._categorical.names, self._categorical.categories,
                                       count_extra=True)
        self._confidence = (NumericBank([baseline.confidence], config.window, config.min_window_values,
                                        config.recent, confidence=True, names=["confidence"])
                            if baseline.confidence else None)
        self._known = frozenset(baseline.features)
        self._episodes = EpisodeTracker(config.rearm_quiet_events)
        self._unexpected_names = SpaceSaving(config.max_unexpected_names)
        hit, miss, self._unexpected_rate = rate_weights(0.0, baseline.n_rows)
        self._unexpected_weights = (np.array([hit], dtype=np.int64), np.array([miss], dtype=np.int64))
        self._unexpected_blocks = BlockAccumulator(T.CUSUM_BLOCK, 1)
        self._unexpected_cusum = CusumBank(np.array([round(T.RATE_H * T.LLR_SCALE)], dtype=np.int64))
        self._version_first_seen: dict[str, int] = {}
        self._window_versions: dict[str, int] = {}
        self._last_version_mismatch = -(10**18)
        # sums of the location score over timing blocks, to date a change; the batch's own blocks are
        # kept apart until its alerts are built
        self._timing = BlockHistory(len(self._numeric.names), TIMING_PER_SIZE, config.timing_blocks)
        self._batch_timing: tuple[np.ndarray, np.ndarray] | None = None
        self._last_alert: dict[str, dict] = {}
        self._invalid_examples: list[list[str]] = [[] for _ in self._numeric.names]
        self._batch_numeric: NumericValues | None = None
        self._events_seen = 0

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
        return self.update_batch([event])

    def update_batch(self, events: list[dict]) -> list[Alert]:
        n = len(events)
        if n == 0:
            return []
        start = self._events_seen
        confidence = np.empty(n if self._confidence is not None else 0)
        numeric, (codes, _, others), extra, versions = self._columns.extract_events(events, self._baseline.version,
                                                                                   confidence)
        self._batch_numeric = numeric
        candidates = self._numeric.update(numeric.x, start)
        self._record_timing(start, n)
        candidates += self._categorical.update(codes, others, start)
        if self._confidence is not None:
            candidates += self._confidence.update(confidence[None, :], start)
        candidates += self._unexpected_fields(numeric.features, extra, start)
        candidates += self._serving(events, start, versions)
        candidates.sort()
        alerts = []
        for c in candidates:
            episode = self._episodes.observe((c.feature or "", c.family), c.event_index)
            if episode is not None:
                alerts.append(self._alert(c, episode, events[c.event_index - start]))
        self._numeric.end_batch()
        self._categorical.end_batch()
        if self._confidence is not None:
            self._confidence.end_batch()
        self._end_timing()
        self._end_invalid_examples(numeric)
        self._batch_numeric = None
        self._events_seen += n
        return alerts

    # ---- unexpected fields, serving -------------------------------------------------------------
    # ---- raw examples of invalid values, for the diagnosis -----------------------------------------
    def _invalid_examples_at(self, j: int, event_index: int) -> list[str]:
        kept = self._invalid_examples[j]
        batch = self._batch_numeric
        if batch is None:
            return list(kept)
        recent = batch.invalid_examples(j, event_index - self._events_seen, MAX_INVALID_EXAMPLES)
        return (kept + recent)[-MAX_INVALID_EXAMPLES:]

    def _end_invalid_examples(self, numeric: NumericValues) -> None:
        if not numeric.invalid_count:
            return
        last = numeric.x.shape[1] - 1
        for j in np.flatnonzero((numeric.status == INVALID).any(axis=1)).tolist():
            recent = numeric.invalid_examples(j, last, MAX_INVALID_EXAMPLES)
            self._invalid_examples[j] = (self._invalid_examples[j] + recent)[-MAX_INVALID_EXAMPLES:]

    def _unexpected_fields(self, features: Sequence[dict], extra: np.ndarray, start: int) -> list[Candidate]:
        """extra (n,) bool: the event has keys the model does not know."""
        names = [(start + int(i), name) for i in np.flatnonzero(extra) for name in features[i] if name not in self._known]
        sums, ends = self._unexpected_blocks.add(extra.astype(np.int64)[:, None], start)
        hit, miss = self._unexpected_weights
        out = []
        for event, _, stat, _ in self._unexpected_cusum.update_from_sums(sums, ends, hit, miss, T.CUSUM_BLOCK):
            seen = SpaceSaving.from_state(self._unexpected_names.state_dict(), self._unexpected_names.capacity)
            for index, name in names:
                if index <= event:
                    seen.update(name)
            top = seen.top(5)
            evidence = {"test": "unexpected_fields", "expected_rate": self._unexpected_rate,
                        "unexpected_names": [[k, c] for k, c, _ in top]}
            # one model-level episode, whichever names: a stream of ever-new names is one problem,
            # not one alert (and one tracked episode) per name
            out.append(Candidate(event_index=event, rank=(AlarmSource.UNEXPECTED_FIELDS, 0, 0), feature=None,
                                 kind="data_quality", family="unexpected_field", detector="unexpected_field",
                                 statistic=stat / T.LLR_SCALE, threshold=T.RATE_H, p_value=None, evidence=evidence))
        for _, name in names:
            self._unexpected_names.update(name)
        return out

    def _serving(self, events: list[dict], start: int, seen: int) -> list[Candidate]:
        """seen: how the batch's versions compare with the baseline's (`FeatureColumns.extract_events`)."""
        expected = self._baseline.version
        versions: list | None = None
        if seen == _kernels.VERSIONS_NONE:
            single = None
        elif seen == _kernels.VERSIONS_EXPECTED:
            single = expected
        else:
            versions = list(map(dict.get, events, repeat("model_version")))
            try:
                distinct = set(versions)
            except TypeError:  # a list or map where a version string belongs
                versions = [_version_label(v) for v in versions]
                distinct = set(versions)
            single = versions[0] if len(distinct) == 1 else _MIXED
        w = self._config.window
        if single is None or (single is not _MIXED and str(single) == expected
                              and set(self._window_versions) <= {expected}):
            # the common case: no version, or the baseline's only: counts per window, nothing to alarm
            first = (-start) % w
            for a, b in zip([0] + list(range(first, len(events), w)), list(range(first, len(events), w)) + [len(events)]):
                if single is not None and b > a:
                    self._window_versions[expected] = self._window_versions.get(expected, 0) + b - a
                if (start + b) % w == 0 and b > a:
                    self._window_versions = {}
            if single is not None and expected not in self._version_first_seen:
                self._version_first_seen[expected] = start
            return []
        if versions is None:
            versions = [single] * len(events)
        out = []
        quiet = self._config.rearm_quiet_events
        for i, version in enumerate(versions):
            index = start + i
            if version is not None:
                version = _version_label(version)
                if version not in self._version_first_seen and len(self._version_first_seen) < MAX_VERSIONS:
                    self._version_first_seen[version] = index
                if version in self._window_versions or len(self._window_versions) < MAX_VERSIONS:
                    self._window_versions[version] = self._window_versions.get(version, 0) + 1
                if expected is not None and version != expected:
                    # a mismatching stretch is one episode: only the first mismatch after a quiet spell alarms
                    if index - self._last_version_mismatch > quiet:
                        out.append(self._serving_candidate(index, "version", "model_version", version))
                    self._last_version_mismatch = index
            if (index + 1) % w == 0:
                if len(self._window_versions) > 1:
                    out.append(self._serving_candidate(index, "mixed_versions", "mixed_versions", None))
                self._window_versions = {}
        return out

    def _serving_candidate(self, index: int, family: str, detector: str, version: str | None) -> Candidate:
        served = dict(self._window_versions)
        evidence = {"served_versions": served, "baseline_version": self._baseline.version}
        if version is not None:
            evidence["version"] = version
        statistic = float(len(served)) if family == "mixed_versions" else 1.0
        return Candidate(event_index=index, rank=(AlarmSource.SERVING, SERVING_FAMILIES.index(family), 0), feature=None,
                         kind="serving", family=family, detector=detector, statistic=statistic, threshold=1.0,
                         p_value=None, evidence=evidence)

    # ---- change timing (block means of the location score) --------------------------------------
    def _record_timing(self, start: int, n: int) -> None:
        # timing blocks completed in this batch, kept apart until the batch's alerts are built
        done = self._numeric.completed_timing_blocks()
        if done is None or not len(done[1]):
            self._batch_timing = None
            return
        sums, ends = done
        self._batch_timing = (ends, sums)

    def _append_timing(self, history: BlockHistory, until: int | None = None) -> None:
        ends, sums = self._batch_timing
        if until is not None:
            ends, sums = ends[ends <= until], sums[ends <= until]
        f = len(self._numeric.names)
        history.append(ends, sums[:, :f], sums[:, f:], T.TIMING_BLOCK)

    def _timing_at(self, feature: str, event_index: int) -> ChangeTiming:
        j = self._numeric.names.index(feature)
        history = self._timing
        if self._batch_timing is not None:
            history = history.copy()
            self._append_timing(history, until=event_index)
        ends, counts, means = history.feature(j)
        return ChangeTiming(
            block_means=(means * Z_PER_UNIT).tolist(),
            block_counts=counts.tolist(),
            end_event=int(ends[-1]) + 1 if len(ends) else 0,
            version_first_seen={v: i for v, i in self._version_first_seen.items() if i <= event_index},
            baseline_version=self._baseline.version,
        )

    def _end_timing(self) -> None:
        if self._batch_timing is not None:
            self._append_timing(self._timing)
            self._batch_timing = None

    # ---- alerts --------------------------------------------------------------------------------
    def _alert(self, c: Candidate, episode: int, event: dict) -> Alert:
        baseline, current, diagnosis = self._describe(c)
        if c.kind != "serving":
            diagnosis = _with_version_coincidence(diagnosis, c, self._version_first_seen, self._baseline.version)
        severity = _severity(c, baseline, current)
        evidence = dict(c.evidence)
        evidence.update({k: v for k, v in diagnosis.evidence.items() if k not in evidence})
        evidence["cause"] = diagnosis.cause
        evidence["episode"] = episode
        ts = event.get("ts")
        version = event.get("model_version")
        alert = Alert(
            alert_id=alert_id(self._baseline.model, c.feature, c.kind, c.family, episode, self._baseline.fingerprint),
            kind=c.kind,
            model=self._baseline.model,
            model_version=str(version) if version is not None else self._baseline.version,
            feature=c.feature,
            detector=c.detector,
            statistic=_finite(c.statistic),
            threshold=_finite(c.threshold),
            p_value=c.p_value,
            baseline=baseline,
            current=current,
            events_seen=c.event_index + 1,
            ts=float(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) else None,
            severity=severity,
            diagnosis=diagnosis.sentence,
            evidence=evidence,
        )
        if c.feature is not None:
            self._last_alert[c.feature] = {"alert_id": alert.alert_id, "kind": alert.kind, "detector": alert.detector,
                                           "events_seen": alert.events_seen, "severity": alert.severity}
        return alert

    def _describe(self, c: Candidate) -> tuple[dict, dict, Diagnosis]:
        e = c.event_index
        b = self._baseline
        if c.kind == "serving":
            served = c.evidence.get("served_versions", {})
            d = diagnose_versions(served, b.version) or Diagnosis(
                c.family, f"model_version {c.evidence.get('version')} served, baseline describes {b.version}", {})
            return {"version": b.version}, {"served_versions": served}, d
        if c.kind == "confidence_drop" or (c.feature == "confidence" and self._confidence is not None
                                            and c.detector == "invalid_confidence"):
            current = summarise_recent(self._confidence.recent_values(0, e, c.onset))
            base = b.confidence.summary()
            d = _confidence_diagnosis(c, base, current, self._timing_free_change(c))
            return base, current, d
        if c.family == "unexpected_field":
            names = c.evidence.get("unexpected_names", [])
            d = Diagnosis("unexpected_field", "events carry feature names the baseline does not know ("
                          + ", ".join(str(n) for n, _ in names) + "): a renamed or new field in the serving pipeline", {})
            return {"features": len(b.features)}, {"unexpected_names": names}, d
        profile = b.features[c.feature]
        timing = self._timing_at(c.feature, e) if isinstance(profile, NumericProfile) else ChangeTiming(
            version_first_seen={v: i for v, i in self._version_first_seen.items() if i <= e}, baseline_version=b.version)
        if isinstance(profile, NumericProfile):
            j = self._numeric.names.index(c.feature)
            recent = self._numeric.recent_values(j, e, c.onset)
            current = summarise_recent(recent)
            valid = recent[np.isfinite(recent)].astype(np.float64)
            d = diagnose_numeric(profile, valid, n_missing=int(np.isnan(recent).sum()),
                                 n_invalid=int(np.isinf(recent).sum()), n_total=len(recent),
                                 invalid_examples=self._invalid_examples_at(j, e), timing=timing,
                                 quote_examples=self._config.include_examples)
            return profile.summary(), current, _lead_with_change(d, profile.summary(), current, c)
        j = self._categorical.names.index(c.feature)
        current = self._categorical.current_summary(j, e, c.onset)
        codes = self._categorical.recent_codes(j, e, c.onset)
        counts = _category_counts(profile, self._categorical.categories[j], codes,
                                  self._categorical.top_unseen(j, 20, event_index=e))
        d = diagnose_categorical(profile, counts, n_missing=int((codes == -1).sum()), n_total=len(codes), timing=timing)
        return profile.summary(), current, d

    @staticmethod
    def _timing_free_change(c: Candidate) -> str:
        return f"since event ~{c.onset:,}" if c.onset is not None else ""

    # ---- snapshot and state ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        features: dict[str, Any] = {}
        for j, name in enumerate(self._numeric.names):
            features[name] = {"kind": "numeric", "missing_ratio": self._numeric.missing_ratio(j),
                              "statistics": _plain(self._numeric.statistics(j)), "last_alert": self._last_alert.get(name)}
        for j, name in enumerate(self._categorical.names):
            features[name] = {"kind": "categorical", "missing_ratio": self._categorical.missing_ratio(j),
                              "statistics": _plain(self._categorical.statistics(j)), "last_alert": self._last_alert.get(name)}
        ordered = {name: features[name] for name in self._baseline.features if name in features}
        confidence_mean = None
        if self._confidence is not None:
            recent = self._confidence.recent_values(0)
            ok = recent[np.isfinite(recent)]
            confidence_mean = float(ok.mean()) if len(ok) else None
        return {"model": self._baseline.model, "model_version": self._served_version(),
                "events_seen": self._events_seen, "confidence_mean": confidence_mean, "features": ordered}

    def _served_version(self) -> str | None:
        if self._window_versions:
            return max(self._window_versions.items(), key=lambda kv: (kv[1], kv[0]))[0]
        return self._baseline.version

    def state_dict(self) -> dict[str, Any]:
        return {
            "state_version": STATE_VERSION,
            "model": self._baseline.model,
            "config": asdict(self._config),
            "events_seen": self._events_seen,
            "numeric": self._numeric.state_dict(),
            "categorical": self._categorical.state_dict(),
            "confidence": self._confidence.state_dict() if self._confidence is not None else None,
            "episodes": self._episodes.state_dict(),
            "unexpected_names": self._unexpected_names.state_dict(),
            "unexpected_blocks": self._unexpected_blocks.state_dict(),
            "unexpected_cusum": self._unexpected_cusum.state_dict(),
            "version_first_seen": dict(self._version_first_seen),
            "window_versions": dict(self._window_versions),
            "last_version_mismatch": self._last_version_mismatch,
            "timing": self._timing.state_dict(),
            "last_alert": dict(self._last_alert),
            "invalid_examples": [list(e) for e in self._invalid_examples],
        }

    @classmethod
    def from_state(cls, baseline: Baseline, state: dict[str, Any], config: MonitorConfig | None = None) -> "ModelMonitor":
        """Continue exactly where `state_dict()` left off (state from msgpack is fine)."""
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
        m._unexpected_names.load_state(state["unexpected_names"])
        m._unexpected_blocks.load_state(state["unexpected_blocks"])
        m._unexpected_cusum.load_state(state["unexpected_cusum"])
        m._version_first_seen = {str(k): int(v) for k, v in state["version_first_seen"].items()}
        m._window_versions = {str(k): int(v) for k, v in state["window_versions"].items()}
        m._last_version_mismatch = int(state["last_version_mismatch"])
        m._timing.load_state(state["timing"])
        m._last_alert = dict(state.get("last_alert") or {})
        m._invalid_examples = [[str(v) for v in e] for e in state["invalid_examples"]]
        return m


# ---- helpers ---------------------------------------------------------------------------------------
def _finite(v: float) -> float:
    return float(v) if math.isfinite(v) else float(np.sign(v) * 1e308)


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if isinstance(v, (float, np.floating)) else int(v) if isinstance(v, (np.integer,)) else v)
            for k, v in d.items()}


def _category_counts(profile: CategoricalProfile, categories: list[str], codes: np.ndarray,
                     top_unseen: list[list]) -> dict[str, int]:
    """Recent counts per category label, the window's "other" bucket split among the unseen values.

    That bucket also holds training categories outside the top-K (at about the training "other"
    share): only what exceeds that share is attributed to the unseen values, by their counts in the
    whole-stream sketch; the expected part has no label and is left out.
    """
    known = np.bincount(codes[codes >= 0], minlength=len(categories) + 1)
    counts = {c: int(known[i]) for i, c in enumerate(categories) if known[i]}
    expected_other = profile.other_freq * int(known.sum())
    unseen = max(0, int(known[-1]) - round(expected_other))
    total_unseen = sum(c for _, c in top_unseen)
    for label, count in top_unseen:
        if unseen and total_unseen:
            share = round(unseen * count / total_unseen)
            if share:
                counts[label] = counts.get(label, 0) + share
    return counts


def _lead_with_change(d: Diagnosis, base: dict, current: dict, c: Candidate) -> Diagnosis:
    """Start with what moved (location / scale / missingness) and where, then the rule's cause."""
    if "mean" not in current or c.kind != "drift":
        return d
    moved = []
    std_b = base["std"] or 1.0
    if abs(current["mean"] - base["mean"]) >= 0.2 * std_b:
        moved.append("location")
    if current.get("std", 0) and base["std"] and abs(math.log(max(current["std"], 1e-300) / base["std"])) >= math.log(1.25):
        moved.append("scale")
    what = " and ".join(moved) + " shift" if moved else "shape change"
    detected = f"detected by {c.detector} at event {c.event_index + 1:,}"
    since = ""
    if c.onset is not None and c.detector in CHANGE_POINT_DETECTORS and "timing" not in d.evidence:
        # the test's own change-point estimate: a large step is caught within a few hundred events
        run = c.event_index + 1 - c.onset
        since = (f"abruptly at event ~{c.onset:,}" if run <= ABRUPT_WITHIN_EVENTS
                 else f"gradually over ~{run:,} events since event ~{c.onset:,}")
    if "moved" in d.evidence:
        # the rule's own description already gives the numbers: say only which test fired, and when
        return Diagnosis(d.cause, f"{detected}{', ' + since if since else ''}: {d.sentence}", d.evidence)
    when = f"{since} ({detected})" if since else detected
    head = (f"mean moved from {base['mean']:.3g} to {current['mean']:.3g} (std {base['std']:.3g} -> "
            f"{current['std']:.3g}) {when}: {what}")
    return Diagnosis(d.cause, f"{head}; {d.sentence}", d.evidence)


def _version_label(v: Any) -> str | None:
    """A model_version as a bounded string; a list or map is bad data, labelled as such."""
    if v is None:
        return None
    if isinstance(v, (str, int, float)):
        return str(v)[:MAX_LABEL]
    return f"<invalid {type(v).__name__}>"


def _with_version_coincidence(d: Diagnosis, c: Candidate, first_seen: dict[str, int],
                               baseline_version: str | None) -> Diagnosis:
    """Relate the alert's own change-point estimate to a model_version that appeared then.

    The block-history fit of the diagnosis dates only changes a few blocks old; a test that fires
    within events of a deploy knows its onset already. A version first seen within
    VERSION_COINCIDENCE_EVENTS of it (or a tenth of the span since) is named; the cause becomes
    `version_change` unless a more specific pipeline defect (unit, case, fill...) was found.
    """
    if c.onset is None or "version_change" in (d.cause, (d.evidence.get("timing") or {}).get("cause")):
        return d
    tolerance = max(VERSION_COINCIDENCE_EVENTS, (c.event_index - c.onset) // 10)
    near = sorted((abs(first - c.onset), first, v) for v, first in first_seen.items()
                  if 0 < first <= c.event_index and abs(first - c.onset) <= tolerance)
    if not near:
        return d
    _, first, version = near[0]
    earlier = [(f, v) for v, f in first_seen.items() if f < first]
    previous = max(earlier)[1] if earlier else baseline_version
    sentence = (f"{d.sentence}; the change starts at event ~{c.onset:,}, when model_version "
                f"{previous} -> {version} appeared (event {first:,}): check what that deployment changed")
    evidence = {**d.evidence, "version_change": {"version": version, "previous_version": previous,
                                                 "version_first_seen": first, "change_start_event": c.onset}}
    return Diagnosis(d.cause if d.is_pipeline_bug else "version_change", sentence, evidence)


def _confidence_diagnosis(c: Candidate, base: dict, current: dict, since: str) -> Diagnosis:
    if c.kind != "confidence_drop":
        return Diagnosis("invalid_confidence", "confidence values that are not numbers in [0, 1] are being served: "
                         "a broken output mapping in the serving pipeline", {})
    return Diagnosis("confidence_drop", f"prediction confidence fell from mean {base['mean']:.3g} (p50 {base['p50']:.3g}) "
                     f"to {current.get('mean', float('nan')):.3g} (p50 {current.get('p50', float('nan')):.3g}) {since}: "
                     "inputs the model has not seen in training (out of distribution)", {})


def _severity(c: Candidate, base: dict, current: dict) -> str:
    if c.kind == "drift" and "mean" in current and base.get("std"):
        large = (abs(current["mean"] - base["mean"]) >= 0.5 * base["std"]
                 or abs(math.log(max(current.get("std", 0.0), 1e-300) / base["std"])) >= math.log(1.5))
        return "critical" if large else "warning"
    if c.kind == "data_quality":
        rate = current.get("missing_rate", 0.0) if c.family == "missing" else current.get(
            "invalid_rate", 0.0) if c.family == "invalid" else current.get("unseen_share", 0.0)
        return "critical" if rate >= 0.1 else "warning"
    if c.kind == "confidence_drop":
        return "critical" if base.get("mean", 0) - current.get("mean", 0) >= 0.1 else "warning"
    return "warning" if c.kind == "serving" else "critical"
