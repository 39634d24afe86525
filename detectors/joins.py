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
  ``performance`` alerts.

`RequestJoin` is the buffer both joins use: either side may arrive first, a second record of a
side for the same id is counted and dropped (the first wins: at-least-once re-delivery must not
count twice), and waiting records expire after a time-to-live or, beyond a hard cap, oldest first.
Time is stream time: a record's `ts` when it has one, else the caller's clock (the worker: the
Kafka record timestamp) or, with none, the newest time seen; so replay is deterministic.

>>> join = RequestJoin(ttl=60.0, max_entries=1000, sides=("served", "offline"))
>>> join.offer("offline", "r1", {"x": 1}, ts=10.0) is None      # the offline side first: waits
True
>>> join.offer("served", "r1", {"x": 2}, ts=11.0)               # the served side: matched
{'x': 1}
>>> join.offer("served", "r1", {"x": 3}, ts=12.0) is None      # re-delivered: a duplicate
True
>>> join.offer("served", "r2", {}, ts=13.0); join.offer("served", "r3", {}, ts=200.0)  # r2 expires
>>> join.counts
{'matched': 1, 'waiting': 1, 'duplicate_served': 1, 'duplicate_offline': 0, 'expired_served': 1, 'expired_offline': 0}
"""
from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass
from itertools import islice
from statistics import NormalDist
from typing import Any, Callable, Iterable

import numpy as np
from river import drift

from baselines.profile import Baseline, CategoricalProfile, NumericProfile, category_key
from detectors import thresholds as T
from detectors.alerts import Alert, alert_id
from detectors.cusum import bernoulli_llr_weights
from detectors.diagnosis import UNIT_FACTOR_TOLERANCE, UNIT_FACTORS, Diagnosis, fmt_count, fmt_num, fmt_pct
from detectors.episodes import EpisodeTracker
from detectors.events import Limits, Reject, parse_message, encode_value
from detectors.sketches import SpaceSaving

#: Bernoulli CUSUM on a feature's mismatch indicator: a served value may differ from the offline one
#: this often by accident (float formatting, a race); the alternative and h follow detectors.thresholds
PARITY_EXPECTED_RATE = 0.001
PARITY_ALTERNATIVE_RATE = PARITY_EXPECTED_RATE + 0.05
#: features compared per model at most (a hostile feature log cannot grow the state without bound)
MAX_PARITY_FEATURES = 1000
#: recent comparisons a feature's reported mismatch rate is measured on
PARITY_RATE_WINDOW = 1000
#: mismatches kept per feature for the typical difference and the diagnosis
PARITY_RECENT_MISMATCHES = 256
#: example request ids quoted by a skew alert
MAX_EXAMPLES = 5
#: a mismatch rate at least this high makes a skew alert critical
PARITY_CRITICAL_RATE = 0.05

#: performance test: one look every LOOK_EVERY labels, each at alpha PERFORMANCE_ALPHA (Bonferroni:
#: at most PERFORMANCE_ALPHA / LOOK_EVERY = 2e-9 false alerts per label on a stationary stream)
LOOK_EVERY = 50
PERFORMANCE_ALPHA = 1e-7
#: most recent labelled predictions the live figure is measured on (ADWIN's window, capped)
MAX_LABEL_WINDOW = 5000
#: the 0/1 error stream's change detector; a detection only shortens the window (never alerts)
LABEL_ADWIN_DELTA = T.ADWIN_DELTA
#: level of the interval reported with the live figure (the test uses its own, stricter one)
REPORTED_CI = 0.95


@dataclass(frozen=True)
class JoinConfig:
    #: seconds a record waits for its other side (labels can take days: size it to the label delay)
    ttl: float = 86_400.0
    #: records waiting per join at most; beyond it the oldest is dropped (counted as expired)
    max_entries: int = 100_000
    #: numeric features match when math.isclose(served, offline, rel_tol, abs_tol)
    rel_tol: float = 1e-6
    abs_tol: float = 1e-9
    #: a live accuracy this far below validation is tolerated (a relative MAE increase for regression)
    tolerance: float = 0.02
    #: fewest labelled predictions before the performance test runs
    min_labels: int = 200
    #: an episode re-arms after this many joined records without an alarm (as MonitorConfig)
    rearm_quiet: int = 5000
    #: show the served and offline values of the example requests in skew alerts (off by default:
    #: production features may be personal data; the request ids are always shown)
    include_examples: bool = False


class RequestJoin:
    """Symmetric join of two record streams by request id, in bounded memory (module docstring)."""

    def __init__(self, ttl: float, max_entries: int, sides: tuple[str, str]):
        self._ttl = ttl
        self._max_entries = max_entries
        self._sides = sides
        # request id -> (stamp, side, value), in stamp order (stamps never decrease)
        self._waiting: dict[str, tuple[float, str, Any]] = {}
        # request ids matched within the time-to-live: a late re-delivery is a duplicate, not a new record
        self._matched: dict[str, float] = {}
        self._now = -math.inf
        self._n_matched = 0
        self._duplicates = Counter({s: 0 for s in sides})
        self._expired = Counter({s: 0 for s in sides})

    @property
    def now(self) -> float:
        """The newest stream time seen."""
        return self._now

    @property
    def counts(self) -> dict[str, int]:
        out = {"matched": self._n_matched, "waiting": len(self._waiting)}
        out.update((f"duplicate_{s}", self._duplicates[s]) for s in self._sides)
        out.update((f"expired_{s}", self._expired[s]) for s in self._sides)
        return out

    def offer(self, side: str, request_id: str, value: Any, ts: float | None = None) -> Any | None:
        """Add one record; return the other side's value when this completes a pair."""
        self._advance(ts)
        entry = self._waiting.get(request_id)
        if entry is None:
            if request_id in self._matched:
                self._duplicates[side] += 1
                return None
            self._waiting[request_id] = (self._now, side, value)
            if len(self._waiting) > self._max_entries:
                oldest = next(iter(self._waiting))
                self._expired[self._waiting.pop(oldest)[1]] += 1
            return None
        if entry[1] == side:
            self._duplicates[side] += 1
            return None
        del self._waiting[request_id]
        self._matched[request_id] = self._now
        if len(self._matched) > self._max_entries:
            del self._matched[next(iter(self._matched))]
        self._n_matched += 1
        return entry[2]

    def _advance(self, ts: float | None) -> None:
        if ts is None or ts <= self._now:
            return
        if self._now == -math.inf:  # records from before any time was known arrived at the first time
            self._waiting = {k: (ts, side, v) for k, (_, side, v) in self._waiting.items()}
            self._matched = dict.fromkeys(self._matched, ts)
        self._now = ts
        horizon = ts - self._ttl
        waiting = self._waiting
        while waiting:
            oldest = next(iter(waiting))
            stamp, side, _ = waiting[oldest]
            if stamp >= horizon:
                break
            del waiting[oldest]
            self._expired[side] += 1
        matched = self._matched
        while matched:
            oldest = next(iter(matched))
            if matched[oldest] >= horizon:
                break
            del matched[oldest]


# ---- feature parity ---------------------------------------------------------------------------
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _plain_value(v: Any) -> Any:
    """A JSON-ready copy of a feature value for an alert's examples."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    return str(v)[:64]


class _FeatureParity:
    """One feature's comparisons: CUSUM on the mismatch indicator, recent rate, recent mismatches."""

    def __init__(self, numeric: bool):
        self.numeric = numeric
        self.cusum = 0
        # comparisons and mismatches since the CUSUM last stood at 0 (its change-point estimate)
        self.since_onset = 0
        self.mismatched_since_onset = 0
        self.compared = 0
        self.mismatched = 0
        self.recent = deque(maxlen=PARITY_RATE_WINDOW)  # 1 = mismatch
        self.recent_mismatches = 0
        self.kinds: deque[str] = deque(maxlen=PARITY_RECENT_MISMATCHES)
        self.pairs: deque[tuple[float, float]] = deque(maxlen=PARITY_RECENT_MISMATCHES)  # (served, offline)
        self.categories = SpaceSaving(10)  # "served\x1foffline" of categorical mismatches
        self.examples: deque[dict] = deque(maxlen=MAX_EXAMPLES)

    def add(self, mismatch: str | None, served: Any, offline: Any, request_id: str, hit: int, miss: int) -> None:
        self.compared += 1
        bit = mismatch is not None
        if len(self.recent) == self.recent.maxlen:
            self.recent_mismatches -= self.recent[0]
        self.recent.append(bit)
        self.recent_mismatches += bit
        self.cusum = max(0, self.cusum + (hit if bit else miss))
        if self.cusum == 0:
            self.since_onset = self.mismatched_since_onset = 0
        else:
            self.since_onset += 1
            self.mismatched_since_onset += bit
        if not bit:
            return
        self.mismatched += 1
        self.kinds.append(mismatch)
        if mismatch == "value":
            if self.numeric:
                self.pairs.append((float(served), float(offline)))
            else:
                self.categories.update(f"{category_key(served)}\x1f{category_key(offline)}")
        self.examples.append({"request_id": request_id, "served": _plain_value(served), "offline": _plain_value(offline)})


class FeatureParity:
    """One model's served-vs-offline comparisons, feature by feature.

    `compare` takes a joined pair: the served event and the offline recomputation's features.
    Every feature of the recomputation is compared (the offline pipeline says what it covers):
    categories by their `category_key`, numbers with `math.isclose(rel_tol, abs_tol)`, a number
    served as text is a mismatch, both sides missing is a match. A feature's kind comes from the
    baseline, else from the offline value.
    """

    def __init__(self, model: str, baseline: Baseline | None, config: JoinConfig = JoinConfig()):
        self._model = model
        self._config = config
        self._kinds = {} if baseline is None else {
            n: isinstance(p, NumericProfile) for n, p in baseline.features.items()
            if isinstance(p, (NumericProfile, CategoricalProfile))}
        self._features: dict[str, _FeatureParity] = {}
        self._hit, self._miss = bernoulli_llr_weights(PARITY_EXPECTED_RATE, PARITY_ALTERNATIVE_RATE, T.LLR_SCALE)
        self._h = round(T.RATE_H * T.LLR_SCALE)
        self._episodes = EpisodeTracker(config.rearm_quiet)
        self._joined = 0
        self._untracked_features = 0

    @property
    def joined(self) -> int:
        return self._joined

    def compare(self, request_id: str, served: dict, offline: dict, events_seen: int, ts: float | None) -> list[Alert]:
        self._joined += 1
        served_features = served.get("features") or {}
        alerts = []
        for name, off in offline.items():
            state = self._features.get(name)
            if state is None:
                if len(self._features) >= MAX_PARITY_FEATURES:
                    self._untracked_features += 1
                    continue
                numeric = self._kinds.get(name, _is_number(off))
                state = self._features[name] = _FeatureParity(numeric)
            srv = served_features.get(name)
            state.add(self._mismatch(state.numeric, srv, off), srv, off, request_id, self._hit, self._miss)
            if state.cusum > self._h:
                episode = self._episodes.observe((name, "parity"), self._joined)
                if episode is not None:
                    alerts.append(self._alert(name, state, episode, served, events_seen, ts))
                # restart: a persisting mismatch keeps alarming and so keeps its episode open
                state.cusum = state.since_onset = state.mismatched_since_onset = 0
        return alerts

    def _mismatch(self, numeric: bool, served: Any, offline: Any) -> str | None:
        """None when the values agree, else what kind of difference it is."""
        if _is_missing(served) or _is_missing(offline):
            if _is_missing(served) and _is_missing(offline):
                return None
            return "missing_at_serving" if _is_missing(served) else "missing_offline"
        if numeric:
            if not (_is_number(served) and _is_number(offline)):
                return "type"
            return None if math.isclose(served, offline, rel_tol=self._config.rel_tol,
                                        abs_tol=self._config.abs_tol) else "value"
        return None if category_key(served) == category_key(offline) else "value"

    def _alert(self, name: str, state: _FeatureParity, episode: int, served: dict,
               events_seen: int, ts: float | None) -> Alert:
        n = state.since_onset
        rate = state.mismatched_since_onset / n
        diagnosis = _parity_diagnosis(state, rate, n)
        current = {"mismatch_rate": rate, "mismatches": state.mismatched_since_onset, "joined": n,
                   "recent_mismatch_rate": state.recent_mismatches / len(state.recent),
                   "total_joined": state.compared, "total_mismatches": state.mismatched}
        if state.pairs:
            served_v, offline_v = np.array(state.pairs).T
            diff = np.abs(served_v - offline_v)
            current["median_abs_diff"] = fmt_num(np.median(diff))
            current["median_rel_diff"] = fmt_num(np.median(diff / np.maximum(np.abs(offline_v), self._config.abs_tol)))
        fields = diagnosis.alert_fields()
        fields["evidence"]["examples"] = (list(state.examples) if self._config.include_examples
                                          else [{"request_id": e["request_id"]} for e in state.examples])
        version = served.get("model_version")
        return Alert(
            alert_id=alert_id(self._model, name, "skew", "parity", episode),
            kind="skew", model=self._model, model_version=None if version is None else str(version),
            feature=name, detector="feature_parity",
            statistic=state.cusum / T.LLR_SCALE, threshold=self._h / T.LLR_SCALE, p_value=None,
            baseline={"expected_mismatch_rate": PARITY_EXPECTED_RATE, "rel_tol": self._config.rel_tol,
                      "abs_tol": self._config.abs_tol},
            current=current, events_seen=events_seen, ts=ts,
            severity="critical" if rate >= PARITY_CRITICAL_RATE else "warning",
            **fields,
        )

    def snapshot(self) -> dict[str, Any]:
        return {"joined": self._joined, "untracked_features": self._untracked_features,
                "features": {n: {"compared": s.compared, "mismatched": s.mismatched,
                                 "recent_mismatch_rate": s.recent_mismatches / len(s.recent) if s.recent else 0.0}
                             for n, s in self._features.items()}}


def _parity_diagnosis(state: _FeatureParity, rate: float, n: int) -> Diagnosis:
    kinds = Counter(state.kinds)
    kind, k = kinds.most_common(1)[0]
    share = k / len(state.kinds)
    head = (f"serving value differs from the offline recomputation in {fmt_pct(rate)} of the {fmt_count(n)} joined requests "
            "since the change began")
    evidence: dict[str, Any] = {"mismatch_kinds": dict(kinds)}
    if kind == "missing_at_serving":
        return Diagnosis("missing_at_serving", f"{head} (missing at serving in {fmt_pct(share)} of them, the offline "
                         "pipeline has a value): the serving pipeline drops or fails to fetch the feature", evidence)
    if kind == "missing_offline":
        return Diagnosis("missing_offline", f"{head} (the offline recomputation has no value in {fmt_pct(share)} of them): "
                         "check the offline pipeline before the serving one", evidence)
    if kind == "type":
        return Diagnosis("type_change", f"{head} (served as a non-number in {fmt_pct(share)} of them): "
                         "type or parsing difference in the serving pipeline", evidence)
    if state.numeric:
        return _numeric_parity(state, head, evidence)
    [(label, count, _), *_] = state.categories.top(1)
    served, _, offline = label.partition("\x1f")
    evidence.update(served=served, offline=offline, share_of_mismatches=fmt_num(count / max(state.categories.total, 1)))
    if served.strip().lower() == offline.strip().lower():
        cause = "letter_case" if served.strip() == served and offline.strip() == offline else "formatting"
        return Diagnosis(cause, f"{head} ({served!r} served where the offline recomputation has {offline!r}): "
                         "letter case or formatting differs in the serving pipeline", evidence)
    return Diagnosis("computed_differently", f"{head} (e.g. {served!r} served where the offline recomputation has "
                     f"{offline!r}): the feature is computed differently at serving time", evidence)


def _numeric_parity(state: _FeatureParity, head: str, evidence: dict) -> Diagnosis:
    served, offline = np.array(state.pairs).T
    rel = np.abs(served - offline) / np.maximum(np.abs(offline), 1e-300)
    evidence["median_rel_diff"] = fmt_num(np.median(rel))
    same_sign = (served * offline) > 0
    if same_sign.sum() >= len(served) / 2:
        log_ratio = float(np.median(np.log(served[same_sign] / offline[same_sign])))
        for name, (factor, hint) in UNIT_FACTORS.items():
            if abs(log_ratio - math.log(factor)) < UNIT_FACTOR_TOLERANCE:
                evidence.update(factor=name, median_ratio=fmt_num(math.exp(log_ratio)))
                return Diagnosis("unit_change", f"{head} (served values are ~x{name} the offline ones, e.g. {hint}): "
                                 "unit or scale change in the serving pipeline", evidence)
    return Diagnosis("computed_differently", f"{head} (median relative difference {fmt_pct(float(np.median(rel)))}): "
                     "the feature is computed differently at serving time", evidence)


# ---- delayed labels ---------------------------------------------------------------------------
def wilson_interval(successes: float, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion (good at small n and near 0 or 1).

    >>> [round(x, 3) for x in wilson_interval(90, 100, 1.96)]
    [0.826, 0.945]
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _same_class(prediction: Any, label: Any) -> bool:
    return category_key(prediction) == category_key(label)


class PerformanceMonitor:
    """One model's labelled predictions against its validation figure (`Baseline.metric`).

    Classification ("accuracy"): the 0/1 error of each labelled prediction feeds River ADWIN; the
    live accuracy is measured on ADWIN's window (the labels since the last change it found, at
    most MAX_LABEL_WINDOW). Every LOOK_EVERY labels, once min_labels are in the window, a score
    test asks whether the live accuracy is below validation - tolerance - the validation figure's
    own sampling error (4 standard errors); the alert fires when p < PERFORMANCE_ALPHA.
    Regression ("mae"): the same on the absolute error, with a normal interval, against
    validation MAE x (1 + tolerance).
    """

    def __init__(self, model: str, metric: dict[str, Any] | None, config: JoinConfig = JoinConfig()):
        self._model = model
        self._metric = metric
        self._config = config
        self._regression = bool(metric) and metric.get("name") == "mae"
        self._adwin = drift.ADWIN(delta=LABEL_ADWIN_DELTA)
        self._errors: deque[float] = deque(maxlen=MAX_LABEL_WINDOW)
        self._episodes = EpisodeTracker(config.rearm_quiet)
        self._z_test = NormalDist().inv_cdf(1 - PERFORMANCE_ALPHA)
        self._z_reported = NormalDist().inv_cdf(0.5 + REPORTED_CI / 2)
        self._labelled = 0
        self._unscorable = 0
        self._change_at: int | None = None

    @property
    def labelled(self) -> int:
        return self._labelled

    def update(self, prediction: dict, label: Any, events_seen: int, ts: float | None) -> list[Alert]:
        """One labelled prediction (`prediction`: the remembered {"prediction", "model_version"})."""
        predicted = prediction.get("prediction")
        if self._regression:
            if not (_is_number(predicted) and _is_number(label)) or not math.isfinite(predicted - label):
                self._unscorable += 1
                return []
            error = abs(predicted - label)
        else:
            if _is_missing(predicted) or _is_missing(label):
                self._unscorable += 1
                return []
            error = 0.0 if _same_class(predicted, label) else 1.0
        self._labelled += 1
        self._errors.append(error)
        self._adwin.update(error)
        if self._adwin.drift_detected:  # River restarts ADWIN's window with the next label
            self._change_at = self._labelled
        if not self._metric or self._labelled % LOOK_EVERY:
            return []
        return self._look(prediction, events_seen, ts)

    def _window(self) -> np.ndarray:
        n = min(int(self._adwin.width), len(self._errors))
        return np.fromiter(islice(self._errors, len(self._errors) - n, None), float, n)

    def _look(self, prediction: dict, events_seen: int, ts: float | None) -> list[Alert]:
        errors = self._window()
        n = len(errors)
        if n < self._config.min_labels:
            return []
        value, n_val = float(self._metric["value"]), int(self._metric.get("n") or 0)
        if self._regression:
            mean, sd = float(errors.mean()), float(errors.std(ddof=1)) or 1e-12
            allowance = 0.0 if n_val <= 1 else T.BASELINE_ALLOWANCE_SD * sd / math.sqrt(n_val)
            bound = value * (1 + self._config.tolerance) + allowance
            z = (mean - bound) / (sd / math.sqrt(n))
            half = self._z_reported * sd / math.sqrt(n)
            live = {"mae": mean, "ci_low": max(0.0, mean - half), "ci_high": mean + half, "n": n}
            base = {"mae": value, "n": n_val}
        else:
            accuracy = 1.0 - float(errors.mean())
            allowance = 0.0 if n_val <= 0 else T.BASELINE_ALLOWANCE_SD * math.sqrt(value * (1 - value) / n_val)
            bound = value - self._config.tolerance - allowance
            if bound <= 0:
                return []
            # the score test of "accuracy >= bound": rejected exactly when Wilson's upper limit is below it
            z = (bound - accuracy) / math.sqrt(bound * (1 - bound) / n) if bound < 1 else 0.0
            low, high = wilson_interval(accuracy * n, n, self._z_reported)
            live = {"accuracy": accuracy, "ci_low": low, "ci_high": high, "n": n}
            base = {"accuracy": value, "n": n_val}
        if z <= self._z_test:
            return []
        episode = self._episodes.observe((None, "performance"), self._labelled)
        if episode is None:
            return []
        p_value = 0.5 * math.erfc(z / math.sqrt(2))
        version = prediction.get("model_version")
        return [Alert(
            alert_id=alert_id(self._model, None, "performance", self._metric.get("name", "accuracy"), episode),
            kind="performance", model=self._model, model_version=None if version is None else str(version),
            feature=None, detector="label_join", statistic=z, threshold=self._z_test, p_value=p_value,
            baseline=base, current=live, events_seen=events_seen, ts=ts,
            severity="critical",
            **self._diagnosis(base, live, bound, p_value).alert_fields(),
        )]

    def _diagnosis(self, base: dict, live: dict, bound: float, p_value: float) -> Diagnosis:
        name = "mae" if self._regression else "accuracy"
        fmt = (lambda v: f"{v:.4g}") if self._regression else _pct_precise
        since = ("" if self._change_at is None else
                 f"; ADWIN dates the change ~{fmt_count(self._labelled - self._change_at)} labels ago")
        sentence = (f"live {name} {fmt(live[name])} ({REPORTED_CI:.0%} CI {fmt(live['ci_low'])}-{fmt(live['ci_high'])}, "
                    f"n={live['n']:,} labelled predictions) vs {fmt(base[name])} on validation (n={base['n']:,}): "
                    f"the model really performs worse in production (p={p_value:.1g}){since}")
        return Diagnosis("performance_drop", sentence, {
            "metric": name, "test_bound": fmt_num(bound), "alpha_per_look": PERFORMANCE_ALPHA, "look_every": LOOK_EVERY,
            "labelled": self._labelled, "change_labels_ago": None if self._change_at is None else self._labelled - self._change_at})

    def snapshot(self) -> dict[str, Any]:
        errors = self._window()
        mean = float(errors.mean()) if len(errors) else None
        figure = mean if self._regression or mean is None else 1.0 - mean
        return {"labelled": self._labelled, "unscorable": self._unscorable, "window": len(errors),
                "metric": "mae" if self._regression else "accuracy", "live": figure,
                "validation": None if not self._metric else self._metric.get("value")}


def _pct_precise(x: float) -> str:
    return f"{100 * x:.1f}%"


# ---- both joins, many models ------------------------------------------------------------------
def record_time(record: dict, default: float | None) -> float | None:
    """A record's stream time: its finite numeric `ts`, else `default`."""
    ts = record.get("ts")
    if _is_number(ts) and math.isfinite(ts):
        return float(ts)
    return default


class JoinMonitor:
    """The two joins for every model: the one object `replay` and the worker feed.

    `baseline_of(model)` returns the model's baseline, or None for a model that is not monitored
    (its records are counted as `unknown_model` and ignored). `parity` / `labels` switch a join off
    (replay without --feature-log need not remember served features).
    """

    def __init__(self, baseline_of: Callable[[str], Baseline | None], config: JoinConfig = JoinConfig(),
                 parity: bool = True, labels: bool = True):
        self._baseline_of = baseline_of
        self._config = config
        self._parity_join = RequestJoin(config.ttl, config.max_entries, ("served", "offline")) if parity else None
        self._label_join = RequestJoin(config.ttl, config.max_entries, ("prediction", "label")) if labels else None
        self._parity: dict[str, tuple[Baseline, FeatureParity]] = {}
        self._performance: dict[str, tuple[Baseline, PerformanceMonitor]] = {}
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
        if self._ignored:
            out["ignored"] = dict(self._ignored)
        return out

    def add_predictions(self, events: Iterable[dict], default_ts: float | None = None) -> list[Alert]:
        """Remember served events that carry a request id (events of unmonitored models are skipped)."""
        alerts: list[Alert] = []
        for ev in events:
            model = ev.get("model")
            if self._baseline_of(model) is None:
                continue
            self._events_seen[model] += 1
            request_id = ev.get("request_id")
            if not isinstance(request_id, str) or not request_id:
                continue
            ts = record_time(ev, default_ts)
            if self._parity_join is not None:
                offline = self._parity_join.offer("served", request_id, ev, ts)
                if offline is not None:
                    alerts += self._compare(request_id, ev, offline)
            if self._label_join is not None and "prediction" in ev:
                label = self._label_join.offer("prediction", request_id, ev, ts)
                if label is not None:
                    alerts += self._score(ev, label["label"])
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
        return alerts

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
        entry = self._performance.get(model)
        if entry is None or entry[0] is not baseline:
            entry = self._performance[model] = (baseline, PerformanceMonitor(model, baseline.metric, self._config))
        now = self._label_join.now
        return entry[1].update(prediction, label, self._events_seen[model], now if now > -math.inf else None)

    def snapshot(self) -> dict[str, Any]:
        return {"counts": self.counts,
                "parity": {m: p.snapshot() for m, (_, p) in self._parity.items()},
                "performance": {m: p.snapshot() for m, (_, p) in self._performance.items()}}


# ---- decoding the join topics -----------------------------------------------------------------
def decode_join_records(data: bytes, kind: str, limits: Limits = Limits()) -> tuple[list[dict], list[Reject]]:
    """One message of the feature log (`kind` "feature_log") or of the labels ("labels"): one record
    or a list, JSON or msgpack, like prediction events. Never raises on any input bytes.

    >>> decode_join_records(b'[{"request_id": "r1", "label": 1}, {"label": 0}]', "labels")[0]
    [{'request_id': 'r1', 'label': 1}]
    >>> [r.reason for r in decode_join_records(b'{"request_id": "r1", "model": "m"}', "feature_log")[1]]
    ['features_not_object']
    """
    if len(data) > limits.max_message_bytes:
        return [], [Reject("oversized", f"message of {len(data)} bytes exceeds {limits.max_message_bytes}", data)]
    obj, err = parse_message(data, limits)
    if err is not None:
        return [], [Reject("not_decodable", err, data)]
    items = obj if type(obj) is list else [obj]
    if len(items) > limits.max_events_per_message:
        return [], [Reject("too_many_events", f"{len(items)} records in one message exceeds "
                           f"{limits.max_events_per_message}", data)]
    records, rejects = [], []
    for item in items:
        problem = _join_record_problem(item, kind, limits)
        if problem is None:
            records.append(item)
        else:
            rejects.append(Reject(problem[0], problem[1], data if item is obj else encode_value(item)))
    return records, rejects


def _join_record_problem(rec: Any, kind: str, limits: Limits) -> tuple[str, str] | None:
    if type(rec) is not dict:
        return "not_an_object", f"a {type(rec).__name__}, not a {kind} record object"
    request_id = rec.get("request_id")
    if type(request_id) is not str or not request_id:
        return "missing_request_id", "no non-empty string 'request_id' field"
    if kind == "labels":
        if _is_missing(rec.get("label")):
            return "missing_label", "no 'label' field (or it is null)"
        return None
    model = rec.get("model")
    if type(model) is not str or not model or len(model) > limits.max_model_name:
        return "missing_model", "no non-empty string 'model' field"
    features = rec.get("features")
    if type(features) is not dict:
        return "features_not_object", "'features' absent or not an object"
    if len(features) > limits.max_features_per_event:
        return "too_many_features", f"{len(features)} features exceeds {limits.max_features_per_event}"
    return None
