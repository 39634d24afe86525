"""Feature parity: what was served vs the offline pipeline's recomputation of the same request.

A Bernoulli CUSUM per feature on the mismatch indicator raises ``skew`` alerts, each with a
diagnosis of the mismatches (missing on one side, a type or unit change, letter case...).
"""
from __future__ import annotations

import math
from collections import Counter, deque
from typing import Any

import numpy as np

from baselines.profile import Baseline, CategoricalProfile, NumericProfile, category_key
from detectors import thresholds as T
from detectors.alerts import Alert, alert_id
from detectors.cusum import bernoulli_llr_weights
from detectors.diagnosis import UNIT_FACTORS, Diagnosis, redact_labels, unit_factor
from detectors.episodes import EpisodeTracker
from detectors.fmt import count, percent, quote_value, rounded
from detectors.joins.config import DEFAULT_JOIN_CONFIG, JoinConfig
from detectors.joins.wire import is_missing, is_number
from detectors.numeric import MIN_POOLED_SUMMARY, POOLED_VALUES, pooled_quantiles
from detectors.sketches import MAX_LABEL, SpaceSaving

__all__ = ["FeatureParity"]

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


def _plain_value(v: Any) -> Any:
    """A JSON-ready copy of a feature value for an alert's examples (a string or anything else
    quoted within MAX_LABEL characters, however long or deep)."""
    if v is None or isinstance(v, (bool, int)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    return quote_value(v, MAX_LABEL)


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
        self.examples.append({"request_id": quote_value(request_id, MAX_LABEL), "served": _plain_value(served),
                              "offline": _plain_value(offline)})

    def state_dict(self, values: bool) -> dict[str, Any]:
        """Plain data (`load_state`). values=False: without the mismatching values (the pairs, the
        categories' spellings, the examples' values), which only describe alerts."""
        return {"numeric": self.numeric, "cusum": self.cusum, "since_onset": self.since_onset,
                "mismatched_since_onset": self.mismatched_since_onset, "compared": self.compared,
                "mismatched": self.mismatched, "recent": bytes(self.recent),
                "recent_mismatches": self.recent_mismatches, "kinds": list(self.kinds),
                "pairs": [list(p) for p in self.pairs] if values else [],
                "categories": self.categories.state_dict() if values else None,
                "examples": list(self.examples) if values else [{"request_id": e["request_id"]} for e in self.examples]}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        self.cusum, self.since_onset = int(state["cusum"]), int(state["since_onset"])
        self.mismatched_since_onset = int(state["mismatched_since_onset"])
        self.compared, self.mismatched = int(state["compared"]), int(state["mismatched"])
        self.recent.extend(bool(b) for b in state["recent"])
        self.recent_mismatches = int(state["recent_mismatches"])
        self.kinds.extend(state["kinds"])
        self.pairs.extend((float(a), float(b)) for a, b in state["pairs"])
        if state["categories"] is not None:
            self.categories.load_state(state["categories"])
        self.examples.extend(state["examples"])


class FeatureParity:
    """One model's served-vs-offline comparisons, feature by feature.

    `compare` takes a joined pair: the served event and the offline recomputation's features.
    Every feature of the recomputation is compared (the offline pipeline says what it covers):
    categories by their `category_key`, numbers with `math.isclose(rel_tol, abs_tol)`, a number
    served as text is a mismatch, both sides missing is a match. A feature's kind comes from the
    baseline, else from the offline value.
    """

    def __init__(self, model: str, baseline: Baseline | None, config: JoinConfig = DEFAULT_JOIN_CONFIG):
        self._model = model
        # alert ids are counted against this baseline (see detectors.alerts.alert_id)
        self._reference = baseline.fingerprint if baseline is not None else ""
        self._config = config
        self._kinds = {} if baseline is None else {
            n: isinstance(p, NumericProfile) for n, p in baseline.features.items()
            if isinstance(p, (NumericProfile, CategoricalProfile))}
        # with examples off an alert shows a category only if training had it (see _alert)
        self._training_labels = {} if baseline is None else {
            n: set(p.categories) for n, p in baseline.features.items() if isinstance(p, CategoricalProfile)}
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
        """Compare one joined request feature by feature; return the skew alerts it opens.

        Parameters
        ----------
        request_id
            The request both sides describe.
        served
            The served event (its "features" and "model_version").
        offline
            The offline recomputation's features.
        events_seen
            The model's events so far (the alert's `events_seen`).
        ts
            Stream time of the join (the alert's `ts`).
        """
        self._joined += 1
        served_features = served.get("features") or {}
        alerts = []
        for name, off in offline.items():
            state = self._features.get(name)
            if state is None:
                if len(self._features) >= MAX_PARITY_FEATURES:
                    self._untracked_features += 1
                    continue
                numeric = self._kinds.get(name, is_number(off))
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
        if is_missing(served) or is_missing(offline):
            if is_missing(served) and is_missing(offline):
                return None
            return "missing_at_serving" if is_missing(served) else "missing_offline"
        if numeric:
            if not (is_number(served) and is_number(offline)):
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
        exact = self._config.include_examples
        if state.pairs:
            served_v, offline_v = np.array(state.pairs).T
            diff = np.abs(served_v - offline_v)
            # an absolute difference of one request is nearly its value (x1000: the served one):
            # with examples off, pooled like any quantile of values, or not given
            if exact:
                current["median_abs_diff"] = rounded(np.median(diff))
            elif len(diff) >= MIN_POOLED_SUMMARY:
                current["median_abs_diff"] = rounded(pooled_quantiles(np.sort(diff), (0.5,), POOLED_VALUES)[0])
            current["median_rel_diff"] = rounded(np.median(diff / np.maximum(np.abs(offline_v), self._config.abs_tol)))
        fields = diagnosis.alert_fields()
        evidence = fields["evidence"]
        evidence["examples"] = (list(state.examples) if exact
                                else [{"request_id": e["request_id"]} for e in state.examples])
        if not exact and "served" in evidence:  # production spellings outside training: hashed
            known = self._training_labels.get(name, set())
            fields = redact_labels(fields, [evidence[side] for side in ("served", "offline")
                                            if evidence[side] not in known])
        version = served.get("model_version")
        return Alert(
            alert_id=alert_id(self._model, name, "skew", "parity", episode, self._reference),
            kind="skew", model=self._model, model_version=None if version is None else quote_value(version, MAX_LABEL),
            feature=name, detector="feature_parity",
            statistic=state.cusum / T.LLR_SCALE, threshold=self._h / T.LLR_SCALE, p_value=None,
            baseline={"expected_mismatch_rate": PARITY_EXPECTED_RATE, "rel_tol": self._config.rel_tol,
                      "abs_tol": self._config.abs_tol},
            current=current, events_seen=events_seen, ts=ts,
            severity="critical" if rate >= PARITY_CRITICAL_RATE else "warning",
            **fields,
        )

    def state_dict(self) -> dict[str, Any]:
        """The comparisons as plain data (`load_state` takes it back into a FeatureParity of the same
        model and baseline). With examples off (JoinConfig.include_examples) no mismatching value is
        kept: a restored skew alert describes only the mismatches since the restore."""
        values = self._config.include_examples
        return {"features": {n: f.state_dict(values) for n, f in self._features.items()},
                "episodes": self._episodes.state_dict(), "joined": self._joined,
                "untracked_features": self._untracked_features}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        self._features = {}
        for name, feature in state["features"].items():
            self._features[name] = _FeatureParity(bool(feature["numeric"]))
            self._features[name].load_state(feature)
        self._episodes.load_state(state["episodes"])
        self._joined, self._untracked_features = int(state["joined"]), int(state["untracked_features"])

    def snapshot(self) -> dict[str, Any]:
        """Requests joined, features left untracked, and per feature its comparisons and recent mismatch rate."""
        return {"joined": self._joined, "untracked_features": self._untracked_features,
                "features": {n: {"compared": s.compared, "mismatched": s.mismatched,
                                 "recent_mismatch_rate": s.recent_mismatches / len(s.recent) if s.recent else 0.0}
                             for n, s in self._features.items()}}


def _parity_diagnosis(state: _FeatureParity, rate: float, n: int) -> Diagnosis:
    kinds = Counter(state.kinds)
    kind, k = kinds.most_common(1)[0]
    share = k / len(state.kinds)
    head = (f"serving value differs from the offline recomputation in {percent(rate)} of the {count(n)} "
            "joined requests since the change began")
    evidence: dict[str, Any] = {"mismatch_kinds": dict(kinds)}
    if kind == "missing_at_serving":
        return Diagnosis("missing_at_serving", f"{head} (missing at serving in {percent(share)} of them, the offline "
                         "pipeline has a value): the serving pipeline drops or fails to fetch the feature", evidence)
    if kind == "missing_offline":
        return Diagnosis("missing_offline", f"{head} (the offline recomputation has no value in {percent(share)} of "
                         "them): check the offline pipeline before the serving one", evidence)
    if kind == "type":
        return Diagnosis("type_change", f"{head} (served as a non-number in {percent(share)} of them): "
                         "type or parsing difference in the serving pipeline", evidence)
    if not (state.pairs if state.numeric else state.categories.total):
        # value mismatches from before a restore, whose values the checkpoint does not keep (examples off)
        return Diagnosis("computed_differently", f"{head}: the feature is computed differently at serving time",
                         evidence)
    if state.numeric:
        return _numeric_parity(state, head, evidence)
    [(label, label_count, _), *_] = state.categories.top(1)
    served, _, offline = label.partition("\x1f")
    evidence.update(served=served, offline=offline,
                    share_of_mismatches=rounded(label_count / max(state.categories.total, 1)))
    if served.strip().lower() == offline.strip().lower():
        cause = "letter_case" if served.strip() == served and offline.strip() == offline else "formatting"
        return Diagnosis(cause, f"{head} ({served!r} served where the offline recomputation has {offline!r}): "
                         "letter case or formatting differs in the serving pipeline", evidence)
    return Diagnosis("computed_differently", f"{head} (e.g. {served!r} served where the offline recomputation has "
                     f"{offline!r}): the feature is computed differently at serving time", evidence)


def _numeric_parity(state: _FeatureParity, head: str, evidence: dict) -> Diagnosis:
    served, offline = np.array(state.pairs).T
    rel = np.abs(served - offline) / np.maximum(np.abs(offline), 1e-300)
    evidence["median_rel_diff"] = rounded(np.median(rel))
    same_sign = (served * offline) > 0
    if same_sign.sum() >= len(served) / 2:
        log_ratio = float(np.median(np.log(served[same_sign] / offline[same_sign])))
        name = unit_factor(log_ratio)
        if name is not None:
            evidence.update(factor=name, median_ratio=rounded(math.exp(log_ratio)))
            return Diagnosis("unit_change", f"{head} (served values are ~x{name} the offline ones, e.g. "
                             f"{UNIT_FACTORS[name][1]}): unit or scale change in the serving pipeline", evidence)
    return Diagnosis("computed_differently", f"{head} (median relative difference {percent(float(np.median(rel)))}): "
                     "the feature is computed differently at serving time", evidence)
