"""What to do next: the playbook's fix for an alert's cause, in one short sentence (`Alert.next_step`).

The diagnosis says why an alert fired; the next step says what the on-call engineer does about it.
It is read off the same data as the diagnosis sentence (`evidence.cause` and its details, the
alert's `baseline` / `current` summaries), so the two never disagree. One entry per cause that the
rules of `detectors/diagnosis.py` and `detectors/joins/` produce (docs/diagnosis.md, "What to do
next"); an unknown cause gets its kind's general step.

Names, categories and versions come from producers: each is quoted with its control characters
escaped (`detectors.fmt.printable`) and cut to 64 characters, so the step is safe to print as it is.

>>> print(next_step("drift", "latency", {"cause": "unit_change", "factor": "1/1000", "ratio": 0.00095}))
fix the serving pipeline's conversion of 'latency': it sends ~1/1000 of the training values (e.g. ms -> s); \
convert them back to the training unit before the model
>>> print(next_step("drift", "amount", {"cause": "location_shift", "shifted_share": 0.31}))
retrain on recent data: ~31% of traffic has 'amount' values unlike training (first check that no upstream change \
explains it)
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from detectors.diagnosis import LONG_RAMP, UNIT_FACTORS
from detectors.fmt import count, number, percent, printable

__all__ = ["NEXT_STEP_CAUSES", "next_step"]

#: longest quoted name, category or version in a step (the alert's own fields hold the whole text)
_QUOTED = 64


def next_step(kind: str, feature: str | None, evidence: Mapping[str, Any] | None,
              current: Mapping[str, Any] | None = None, baseline: Mapping[str, Any] | None = None) -> str:
    """The fix to try first for an alert, from its cause and the evidence behind it.

    Parameters
    ----------
    kind
        The alert's kind (`detectors.alerts.KINDS`).
    feature
        The alert's feature, or None for a model-level alert.
    evidence
        The alert's evidence: `cause` picks the step, its details fill it in.
    current, baseline
        The alert's recent and training summaries (rates, live and validation performance).

    Returns
    -------
    str
        One sentence without control characters, the action first.
    """
    evidence = evidence or {}
    alert = _Alert(kind, feature, evidence, current or {}, baseline or {})
    step = _BY_CAUSE.get(str(evidence.get("cause")))
    return step(alert) if step is not None else _BY_KIND.get(kind, _any_kind)(alert)


class _Alert:
    """What a step reads: the alert's kind, subject, evidence and summaries."""

    def __init__(self, kind: str, feature: str | None, evidence: Mapping[str, Any], current: Mapping[str, Any],
                 baseline: Mapping[str, Any]):
        self.kind, self.evidence, self.current, self.baseline = kind, evidence, current, baseline
        self.name = _quote(feature) if feature is not None else "the model's inputs"
        self.parity = kind == "skew"  # compared with the offline recomputation, not with training

    @property
    def reference(self) -> str:
        return "the offline recomputation" if self.parity else "training"

    def timing(self, key: str) -> Any:
        """A detail of the change's dating (`evidence.timing`, else the test's own change point)."""
        timing = self.evidence.get("timing")
        if isinstance(timing, Mapping) and key in timing:
            return timing[key]
        return self.evidence.get("change_start_event") if key == "start_event" else None

    def affected(self) -> str:
        """"~31% of traffic has 'x' values unlike training", or "'x' has moved" without a measured share."""
        share = self.evidence.get("shifted_share")
        if isinstance(share, (int, float)):
            return f"~{percent(share)} of traffic has {self.name} values unlike training"
        return f"{self.name} has moved away from training"


def _quote(value: Any) -> str:
    return "'" + printable(str(value)[:_QUOTED]) + "'"


def _event(n: Any) -> str:
    return f"event ~{n:,}" if isinstance(n, int) else "the change"


# ---- serving-pipeline defects: fix the pipeline ------------------------------------------------
def _unit_change(a: _Alert) -> str:
    factor, conversion = a.evidence.get("factor"), a.evidence.get("conversion")
    if isinstance(conversion, str):  # an affine conversion (temperatures)
        side = "offline" if a.parity else "training"
        return (f"fix the serving pipeline's conversion of {a.name}: it sends the {side} values converted "
                f"{printable(conversion[:_QUOTED])}; convert them back to the {side} unit before the model")
    if factor in UNIT_FACTORS:
        shown = f"~{factor} of" if factor.startswith("1/") else f"~{factor}x"
        example = f" (e.g. {UNIT_FACTORS[factor][1].split(', ')[0]})"
    else:
        shown, example = f"~{number(a.evidence.get('ratio', a.evidence.get('median_ratio')))}x", ""
    side = "offline" if a.parity else "training"
    return (f"fix the serving pipeline's conversion of {a.name}: it sends {shown} the {side} values{example}; "
            f"convert them back to the {side} unit before the model")


def _type_change(a: _Alert) -> str:
    return (f"fix the serialisation of {a.name} in serving: numbers arrive as strings or other non-numbers; send "
            "them as JSON numbers")


def _stuck_value(a: _Alert) -> str:
    value = a.evidence.get("value")
    shown = _quote(value) if isinstance(value, str) else number(value)
    return (f"find why {a.name} is stuck at {shown} ({percent(a.evidence.get('share'))} of recent values): a frozen "
            "upstream source or a stale cache")


def _default_fill(a: _Alert) -> str:
    ev = a.evidence
    value = ev.get("value")
    shown = _quote(value) if isinstance(value, str) else number(value)
    if ev.get("sentinel") not in (None, "a repeated value"):
        shown += f" ({printable(str(ev['sentinel'])[:_QUOTED])})"
    where = f"find where {a.name} is filled with the default value {shown}"
    missing, before = ev.get("missing_rate"), ev.get("baseline_missing_rate")
    if isinstance(missing, (int, float)) and isinstance(before, (int, float)) and missing > 2 * before + 0.01:
        return f"{where}: an upstream source of it fails (missing rate {percent(before)} -> {percent(missing)})"
    return (f"{where} in serving ({percent(ev.get('share'))} of recent values) and pass the missing value on as "
            "training saw it")


def _rounding(a: _Alert) -> str:
    ev = a.evidence
    if ev.get("precision") == "float32":
        return f"keep {a.name} in float64 in serving: it is cast to float32 where training was not"
    if ev.get("step") == 1.0:
        return f"stop casting {a.name} to integer in serving: training kept its fractions"
    return f"stop rounding {a.name} to multiples of {number(ev.get('step'))} in serving: training was not rounded"


def _spelling(a: _Alert) -> tuple[str, str] | None:
    """(as served, as the reference spells it) of the largest mismatch, if the evidence has one."""
    if a.parity and "served" in a.evidence:
        return _quote(a.evidence["served"]), _quote(a.evidence.get("offline"))
    mappings = a.evidence.get("mappings")
    if mappings and isinstance(mappings[0], Mapping):
        return _quote(mappings[0].get("seen")), _quote(mappings[0].get("training"))
    return None


def _letter_case(a: _Alert) -> str:
    pair = _spelling(a)
    shown = f": it sends {pair[0]} where {a.reference} has {pair[1]}" if pair else ""
    return f"fix the casing of {a.name} in serving{shown}"


def _formatting(a: _Alert) -> str:
    pair = _spelling(a)
    shown = f": it sends {pair[0]} where {a.reference} has {pair[1]}" if pair else ""
    return f"normalise {a.name} in serving as {a.reference} does (case, whitespace, separators){shown}"


# ---- data quality: find the source ---------------------------------------------------------------
def _missing_rate(a: _Alert) -> str:
    rate = a.evidence.get("rate")
    before, now = ((rate.get("baseline"), rate.get("current")) if isinstance(rate, Mapping)
                   else (a.baseline.get("missing_rate"), a.current.get("missing_rate")))
    moved = f": its missing rate rose from {percent(before)} to {percent(now)}" if now is not None else ""
    return f"check the upstream source of {a.name}{moved}"


def _invalid_values(a: _Alert) -> str:
    rate = a.evidence.get("rate")
    now = rate.get("current") if isinstance(rate, Mapping) else a.current.get("invalid_rate")
    share = f" ({percent(now)} of values)" if now is not None else ""
    return f"find which producer sends values of the wrong type for {a.name}{share} and fix its type"


def _new_category(a: _Alert) -> str:
    top = list(a.evidence.get("top_unseen") or {})[:3]
    share = percent(a.evidence.get("unseen_share"))
    shown = f" ({', '.join(_quote(c) for c in top)}: {share} of traffic)" if top else ""
    return (f"review the new categories of {a.name}{shown}: map them to training categories in serving if they "
            "are renamed ones, else retrain with them")


def _schema(a: _Alert) -> str:
    names = a.evidence.get("unexpected_names") or a.current.get("unexpected_names") or []
    absent = a.evidence.get("absent_features") or a.current.get("absent_features") or []
    new = _quote(names[0][0]) if names else "a new field"
    if absent:
        return (f"undo the rename in serving: events carry {new} where the baseline expects {_quote(absent[0][0])} "
                "(or rebuild the baseline if the model now reads the new name)")
    return f"drop {new} from the events, or rebuild the baseline with it if the model uses it"


# ---- population change: retrain ----------------------------------------------------------------------
def _shift(a: _Alert) -> str:
    start = a.timing("start_event")
    when = f" around event ~{start:,}" if isinstance(start, int) else ""
    return f"retrain on recent data: {a.affected()} (first check that no upstream change{when} explains it)"


def _gradual_shift(a: _Alert) -> str:
    start, end = a.timing("start_event"), a.timing("end_event")
    if (isinstance(start, int) and isinstance(end, int) and end - start < LONG_RAMP
            and not a.timing("off_training_at_oldest_kept")):
        return (f"check the deploys upstream of {a.name} between event ~{start:,} and ~{end:,} (a staged rollout); "
                f"if none, retrain on recent data: {a.affected()}")
    return f"retrain on recent data: {a.affected()}, a gradual population change"


def _abrupt_shift(a: _Alert) -> str:
    return (f"find the pipeline or upstream deploy of {_event(a.timing('start_event'))} that changed {a.name}; "
            f"retrain on recent data only if the change is real ({a.affected()})")


def _from_start(a: _Alert) -> str:
    return (f"compare how serving computes {a.name} with the training pipeline: they have differed since the first "
            "monitored event")


# ---- versions: deploy the right model ----------------------------------------------------------------
def _main_version(served: Any) -> str | None:
    if isinstance(served, Mapping) and served:
        return str(max(served.items(), key=lambda vc: vc[1])[0])
    return None


def _version_mismatch(a: _Alert) -> str:
    built_for = a.evidence.get("baseline_version") or a.baseline.get("version")
    served = a.evidence.get("version") or _main_version(a.evidence.get("served_versions"))
    served_text = f" (version {_quote(served)} is served)" if served is not None else ""
    return (f"route traffic to model_version {_quote(built_for)}, the one the baseline was built for{served_text}, "
            "or build a baseline for the version served")


def _mixed_versions(a: _Alert) -> str:
    served = a.evidence.get("served_versions")
    versions = ", ".join(_quote(v) for v in list(served)[:4]) if isinstance(served, Mapping) else "several versions"
    whose = f": check which computes {a.name} differently" if a.kind != "serving" else ""
    return f"finish or roll back the rollout: model versions {versions} are served together{whose}"


def _version_change(a: _Alert) -> str:
    detail = a.evidence.get("version_change")
    source = detail if isinstance(detail, Mapping) else a.evidence.get("timing") or {}
    new, old = source.get("version"), source.get("previous_version")
    before = f" or roll back to {_quote(old)}" if old is not None else ""
    return f"fix how model_version {_quote(new)} computes {a.name}{before}: the change began with its deployment"


# ---- the model's own outputs -------------------------------------------------------------------------
def _confidence_drop(a: _Alert) -> str:
    return (f"look at this model's feature alerts since {_event(a.evidence.get('change_start_event'))}: a shifted "
            "or broken input explains the drop; if there is none, check the deploys of the model and of its "
            "calibration")


def _invalid_confidence(a: _Alert) -> str:
    return "fix the model's output mapping: serve confidence as a number in [0, 1]"


def _performance_drop(a: _Alert) -> str:
    metric = a.evidence.get("metric") or "accuracy"
    fmt = number if metric == "mae" else percent
    segment_step = _segment_step(a, metric, fmt)
    if segment_step:
        return segment_step
    figures = ""
    if metric in a.current and metric in a.baseline:
        figures = f" (live {metric} {fmt(a.current[metric])} vs {fmt(a.baseline[metric])} on validation)"
    ago = a.evidence.get("change_labels_ago")
    since = f" since the drop (~{count(ago)} labels ago)" if isinstance(ago, int) else ""
    return (f"fix the causes among this model's drift and skew alerts{since}; if there are none, retrain on recent "
            f"labelled data{figures}")


def _segment_step(a: _Alert, metric: str, fmt: Callable[[Any], str]) -> str | None:
    """The step when the drop comes with a segment of traffic (`evidence.segments`: a new one, or a
    mix change): the segment that grew most, by its feature, rather than a retrain on everything."""
    seg = a.evidence.get("segments")
    if not isinstance(seg, Mapping) or seg.get("verdict") not in ("new_segment", "mix_change"):
        return None
    rows = [r for r in seg.get("largest") or [] if isinstance(r, Mapping)]
    if not rows:
        return None
    grown = max(rows, key=lambda r: (r.get("share_now") or 0) - (r.get("share_before") or 0))
    if seg["verdict"] == "new_segment":
        grown = next((r for r in rows if r.get("segment") == seg.get("segment")), grown)
    now = grown.get(f"{metric}_now")
    share = f"{percent(grown.get('share_before'))} -> {percent(grown.get('share_now'))} of labelled traffic"
    figure = f", {metric} {fmt(now)} there" if now is not None else ""
    if seg.get("feature") == "model_version":
        return (f"route traffic away from model_version {_quote(grown.get('segment'))} (roll it back) or fix it: the "
                f"drop comes with it ({share}{figure})")
    feature = _quote(seg.get("feature"))
    if grown.get("not_in_training"):
        return (f"retrain with the values of {feature} not seen in training, or map them to training categories in "
                f"serving: the drop comes with them ({share}{figure})")
    return (f"find what changed the traffic mix of {feature}: {_quote(grown.get('segment'))} grew ({share}{figure}) "
            "while the segments perform as before; retrain or reweight for the new mix if it is real")


# ---- feature parity (skew) -----------------------------------------------------------------------------
def _missing_at_serving(a: _Alert) -> str:
    return (f"fix how serving fetches {a.name}: it is missing where the offline recomputation has a value "
            "(a failing lookup, a timeout, a fallback path)")


def _missing_offline(a: _Alert) -> str:
    return f"check the offline recomputation of {a.name} first: it has no value where serving has one"


def _computed_differently(a: _Alert) -> str:
    pair = _spelling(a)
    if pair:
        shown = f" ({pair[0]} served where the offline recomputation has {pair[1]})"
    elif isinstance(a.evidence.get("median_rel_diff"), (int, float)):
        shown = f" (median relative difference {percent(a.evidence['median_rel_diff'])})"
    else:
        shown = ""
    return f"diff the serving and the offline code of {a.name} and make them compute it the same way{shown}"


# ---- label leakage ---------------------------------------------------------------------------------------
def _leakage_suspect(a: _Alert) -> str:
    measure = a.evidence.get("measure") or "auc"
    figures = ""
    if isinstance(a.baseline.get(measure), (int, float)) and isinstance(a.current.get(measure), (int, float)):
        word = "AUC" if measure == "auc" else "correlation"
        figures = f" ({word} {number(a.baseline[measure])} in training, {number(a.current[measure])} in production)"
    return (f"audit the timeline of {a.name} in the training data: is it computed after the event it predicts, or "
            f"from the label?{figures} If so, rebuild it as of prediction time and retrain without the leak")


# ---- shadow mode ------------------------------------------------------------------------------------------
def _shadow_disagreement(a: _Alert) -> str:
    candidate, production = _quote(a.evidence.get("candidate")), _quote(a.evidence.get("production"))
    agreement, expected = a.evidence.get("agreement"), a.evidence.get("expected_agreement")
    figures = ""
    if isinstance(agreement, (int, float)) and isinstance(expected, (int, float)):
        figures = f" on {percent(1 - agreement)} of requests where at most {percent(1 - expected)} was expected"
    splits = [s for s in a.evidence.get("separating_features") or [] if isinstance(s, Mapping)]
    where = f", most where {printable(str(splits[0].get('segment'))[:2 * _QUOTED])}" if splits else ""
    return (f"hold the rollout of {candidate}: it disagrees with {production}{figures}{where}; compare the two models "
            "on those requests (and on labels) before promoting it")


#: cause (`evidence.cause`) -> its next step
_BY_CAUSE: dict[str, Callable[[_Alert], str]] = {
    "unit_change": _unit_change, "type_change": _type_change, "stuck_value": _stuck_value,
    "default_fill": _default_fill, "rounding": _rounding, "letter_case": _letter_case, "formatting": _formatting,
    "missing_rate": _missing_rate, "invalid_values": _invalid_values, "new_category": _new_category,
    "schema": _schema,
    "location_shift": _shift, "scale_shift": _shift, "location_scale_shift": _shift, "distribution_shift": _shift,
    "category_shift": _shift, "gradual_shift": _gradual_shift, "abrupt_shift": _abrupt_shift,
    "from_start": _from_start,
    "version_mismatch": _version_mismatch, "version": _version_mismatch, "mixed_versions": _mixed_versions,
    "version_change": _version_change,
    "confidence_drop": _confidence_drop, "invalid_confidence": _invalid_confidence,
    "performance_drop": _performance_drop,
    "missing_at_serving": _missing_at_serving, "missing_offline": _missing_offline,
    "computed_differently": _computed_differently,
    "leakage_suspect": _leakage_suspect,
    "shadow_disagreement": _shadow_disagreement,
}
#: the causes with a step of their own
NEXT_STEP_CAUSES = frozenset(_BY_CAUSE)


def _any_kind(a: _Alert) -> str:
    return f"read the diagnosis and compare {a.name} in serving with training"


#: an alert whose cause has no entry: its kind's general step
_BY_KIND: dict[str, Callable[[_Alert], str]] = {
    "drift": _shift,
    "data_quality": lambda a: f"check the upstream source of {a.name}",
    "skew": _computed_differently,
    "serving": _version_mismatch,
    "confidence_drop": _confidence_drop,
    "performance": _performance_drop,
    "leakage_suspect": _leakage_suspect,
    "shadow": _shadow_disagreement,
}
