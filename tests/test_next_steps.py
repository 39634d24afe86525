"""The next step of an alert (detectors/next_steps.py): one per cause, specific to its evidence,
safe to print, and carried by every alert without touching its id."""
from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from detectors.alerts import Alert, alert_id
from detectors.diagnosis import RATE_ALARMS
from detectors.next_steps import NEXT_STEP_CAUSES, next_step
from stream.commands.alerts import format_alert
from stream.report.gather import ModelTrace
from stream.report.html import render_html
from tests.stream.helpers import training_baseline

ROOT = Path(__file__).resolve().parents[1]
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

SEGMENT_DE = {"segment": "DE", "share_before": 0.131, "share_now": 0.61, "accuracy_now": 0.607,
              "not_in_training": False}
SEGMENT_US = {"segment": "US", "share_before": 0.48, "share_now": 0.21, "accuracy_now": 0.95, "not_in_training": False}
SEGMENT_V2 = {"segment": "2", "share_before": 0.0, "share_now": 0.55, "accuracy_now": 0.59, "not_in_training": False}
SEGMENT_NEW = {"segment": "(not in training)", "share_before": 0.05, "share_now": 0.36, "accuracy_now": 0.51,
               "not_in_training": True}

# (kind, feature, evidence, current, baseline) -> words the step must hold; the evidence is as the
# rules write it (the examples of docs/diagnosis.md)
CASES = {
    "unit_change": ("drift", "latency", {"cause": "unit_change", "ratio": 0.00095, "factor": "1/1000"}, {}, {},
                    ["conversion of 'latency'", "~1/1000 of the training values", "ms -> s"]),
    "unit_change (unnamed ratio)": ("drift", "latency", {"cause": "unit_change", "ratio": 7.31, "factor": None},
                                    {}, {}, ["conversion of 'latency'", "~7.31x the training values"]),
    "unit_change (x12)": ("drift", "tenure", {"cause": "unit_change", "ratio": 11.9, "factor": "12"}, {}, {},
                          ["~12x the training values", "years -> months"]),
    "unit_change (affine)": ("drift", "temp", {"cause": "unit_change", "conversion": "°C -> °F", "factor": None},
                             {}, {}, ["conversion of 'temp'", "training values converted °C -> °F"]),
    "unit_change (parity)": ("skew", "amount", {"cause": "unit_change", "factor": "1000", "median_ratio": 1000.0},
                             {}, {}, ["conversion of 'amount'", "~1000x the offline values"]),
    "type_change": ("data_quality", "score", {"cause": "type_change", "invalid_rate": 0.78}, {}, {},
                    ["serialisation of 'score'", "JSON numbers"]),
    "stuck_value": ("drift", "temp", {"cause": "stuck_value", "value": 0.4137, "share": 0.99}, {}, {},
                    ["'temp' is stuck at 0.414", "99%"]),
    "stuck_value (category)": ("drift", "country", {"cause": "stuck_value", "value": "FR", "share": 1.0}, {}, {},
                               ["'country' is stuck at 'FR'"]),
    "default_fill": ("drift", "income", {"cause": "default_fill", "value": 0.0, "sentinel": "zero", "share": 0.168,
                                         "missing_rate": 0.0, "baseline_missing_rate": 0.2}, {}, {},
                     ["find where 'income' is filled with the default value 0 (zero) in serving", "16.8%"]),
    "default_fill (failing source)": ("drift", "income", {"cause": "default_fill", "value": -1.0, "sentinel": "-1",
                                                          "share": 0.3, "missing_rate": 0.3,
                                                          "baseline_missing_rate": 0.0}, {}, {},
                                      ["default value -1", "upstream source", "0% -> 30%"]),
    "default_fill (category)": ("drift", "channel", {"cause": "default_fill", "value": "unknown", "share": 0.3},
                                {}, {}, ["default value 'unknown'"]),
    "rounding": ("drift", "amount", {"cause": "rounding", "step": 50.0}, {}, {}, ["rounding 'amount'", "50"]),
    "rounding (integer)": ("drift", "amount", {"cause": "rounding", "step": 1.0}, {}, {},
                           ["casting 'amount' to integer"]),
    "rounding (float32)": ("drift", "amount", {"cause": "rounding", "precision": "float32"}, {}, {},
                           ["'amount' in float64"]),
    "letter_case": ("drift", "platform", {"cause": "letter_case", "mappings": [
        {"seen": "IOS", "training": "ios", "rule": "letter_case", "share": 0.39}]}, {}, {},
        ["casing of 'platform'", "sends 'IOS' where training has 'ios'"]),
    "letter_case (parity)": ("skew", "platform", {"cause": "letter_case", "served": "IOS", "offline": "ios"}, {}, {},
                             ["casing of 'platform'", "sends 'IOS' where the offline recomputation has 'ios'"]),
    "formatting": ("drift", "platform", {"cause": "formatting", "mappings": [
        {"seen": " android ", "training": "android", "rule": "whitespace", "share": 0.36}]}, {}, {},
        ["normalise 'platform'", "' android '"]),
    "missing_rate": ("data_quality", "years", {"cause": "missing_rate", "rate": {"baseline": 0.0101, "current": 0.304}},
                     {}, {}, ["upstream source of 'years'", "1.01% to 30.4%"]),
    "missing_rate (categorical fallback)": ("data_quality", "city", {"cause": "missing_rate"}, {"missing_rate": 0.2},
                                            {"missing_rate": 0.01}, ["upstream source of 'city'", "1% to 20%"]),
    "invalid_values": ("data_quality", "age", {"cause": "invalid_values", "rate": {"baseline": 0, "current": 0.12}},
                       {}, {}, ["wrong type for 'age'", "12%"]),
    "new_category": ("drift", "device", {"cause": "new_category", "unseen_share": 0.148,
                                         "top_unseen": {"ios-tablet": 0.148}}, {}, {},
                     ["new categories of 'device'", "'ios-tablet'", "14.8% of traffic"]),
    "schema (renamed)": ("data_quality", None, {"cause": "schema", "unexpected_names": [["latency_ms", 600]],
                                                "absent_features": [["latency", 600]]}, {}, {},
                         ["rename", "'latency_ms' where the baseline expects 'latency'"]),
    "schema (new field)": ("data_quality", None, {"cause": "schema", "unexpected_names": [["debug", 3]],
                                                  "absent_features": []}, {}, {}, ["drop 'debug'"]),
    "location_shift": ("drift", "amount", {"cause": "location_shift", "shifted_share": 0.31,
                                           "change_start_event": 19_992}, {}, {},
                       ["retrain on recent data", "~31% of traffic has 'amount' values", "event ~19,992"]),
    "scale_shift": ("drift", "amount", {"cause": "scale_shift", "shifted_share": 0.12}, {}, {},
                    ["retrain on recent data", "~12% of traffic has 'amount' values unlike training"]),
    "location_scale_shift": ("drift", "amount", {"cause": "location_scale_shift"}, {}, {},
                             ["retrain on recent data", "'amount' has moved away from training"]),
    "distribution_shift": ("drift", "amount", {"cause": "distribution_shift", "shifted_share": 0.08}, {}, {},
                           ["retrain on recent data", "~8% of traffic"]),
    "category_shift": ("drift", "channel", {"cause": "category_shift", "shifted_share": 0.249}, {}, {},
                       ["retrain on recent data", "~24.9% of traffic has 'channel'"]),
    "gradual_shift": ("drift", "amount", {"cause": "gradual_shift", "shifted_share": 0.4, "timing": {
        "cause": "gradual_shift", "start_event": 10_240, "end_event": 49_664}}, {}, {},
        ["retrain on recent data", "~40% of traffic", "gradual population change"]),
    "gradual_shift (short ramp)": ("drift", "amount", {"cause": "gradual_shift", "timing": {
        "cause": "gradual_shift", "start_event": 10_000, "end_event": 12_000}}, {}, {},
        ["deploys upstream of 'amount' between event ~10,000 and ~12,000", "'amount' has moved"]),
    "abrupt_shift": ("drift", "amount", {"cause": "abrupt_shift", "shifted_share": 0.5, "timing": {
        "cause": "abrupt_shift", "start_event": 29_952}}, {}, {}, ["deploy of event ~29,952", "~50% of traffic"]),
    "from_start": ("drift", "amount", {"cause": "from_start"}, {}, {},
                   ["how serving computes 'amount'", "since the first monitored event"]),
    "version_mismatch": ("drift", "amount", {"cause": "version_mismatch", "served_versions": {"2": 1.0},
                                             "baseline_version": "1"}, {}, {},
                         ["route traffic to model_version '1'", "baseline was built for", "'2' is served"]),
    "version (serving)": ("serving", None, {"cause": "version", "version": "3", "baseline_version": "1",
                                            "served_versions": {"3": 10}}, {}, {"version": "1"},
                          ["model_version '1'", "'3' is served"]),
    "mixed_versions": ("serving", None, {"cause": "mixed_versions", "served_versions": {"1": 300, "2": 212}}, {}, {},
                       ["roll back the rollout", "'1', '2'"]),
    "mixed_versions (feature)": ("drift", "amount", {"cause": "mixed_versions", "served_versions": {"1": 0.6,
                                                                                                 "2": 0.4}}, {}, {},
                                 ["which computes 'amount' differently"]),
    "version_change": ("drift", "amount", {"cause": "version_change", "version_change": {
        "version": "2", "previous_version": "1", "change_start_event": 2000}}, {}, {},
        ["model_version '2' computes 'amount'", "roll back to '1'"]),
    "version_change (timing)": ("drift", "amount", {"cause": "version_change", "timing": {
        "cause": "version_change", "version": "2", "previous_version": "1"}}, {}, {}, ["model_version '2'"]),
    "confidence_drop": ("confidence_drop", "confidence", {"cause": "confidence_drop", "change_start_event": 49_976},
                        {}, {}, ["feature alerts since event ~49,976", "calibration"]),
    "invalid_confidence": ("data_quality", "confidence", {"cause": "invalid_confidence"}, {}, {},
                           ["output mapping", "[0, 1]"]),
    "performance_drop": ("performance", None, {"cause": "performance_drop", "metric": "accuracy",
                                               "change_labels_ago": 200},
                         {"accuracy": 0.535, "n": 200}, {"accuracy": 0.775, "n": 20_000},
                         ["drift and skew alerts since the drop (~200 labels ago)", "retrain on recent labelled data",
                          "live accuracy 53.5% vs 77.5% on validation"]),
    "performance_drop (mix change)": ("performance", None, {"cause": "performance_drop", "metric": "accuracy",
                                                            "segments": {"verdict": "mix_change", "feature": "country",
                                                                         "largest": [SEGMENT_DE, SEGMENT_US]}},
                                      {}, {}, ["traffic mix of 'country': 'DE' grew (13.1% -> 61% of labelled traffic, "
                                               "accuracy 60.7% there)", "reweight"]),
    "performance_drop (model_version)": ("performance", None, {"cause": "performance_drop", "metric": "accuracy",
                                                               "segments": {"verdict": "new_segment",
                                                                            "feature": "model_version", "segment": "2",
                                                                            "largest": [SEGMENT_V2]}}, {}, {},
                                         ["route traffic away from model_version '2' (roll it back)", "0% -> 55%"]),
    "performance_drop (not in training)": ("performance", None, {"cause": "performance_drop", "metric": "accuracy",
                                                                 "segments": {"verdict": "mix_change",
                                                                              "feature": "country",
                                                                              "largest": [SEGMENT_NEW, SEGMENT_US]}},
                                           {}, {}, ["retrain with the values of 'country' not seen in training"]),
    "performance_drop (within segments)": ("performance", None, {"cause": "performance_drop", "metric": "accuracy",
                                                                 "segments": {"verdict": "within_segments",
                                                                              "feature": "country",
                                                                              "largest": [SEGMENT_DE]}}, {}, {},
                                           ["fix the causes among this model's drift and skew alerts"]),
    "performance_drop (mae)": ("performance", None, {"cause": "performance_drop", "metric": "mae"},
                               {"mae": 1.62}, {"mae": 1.0}, ["live mae 1.62 vs 1 on validation"]),
    "missing_at_serving": ("skew", "amount", {"cause": "missing_at_serving"}, {}, {}, ["how serving fetches 'amount'"]),
    "missing_offline": ("skew", "amount", {"cause": "missing_offline"}, {}, {}, ["offline recomputation of 'amount'"]),
    "computed_differently": ("skew", "amount", {"cause": "computed_differently", "median_rel_diff": 0.12}, {}, {},
                             ["serving and the offline code of 'amount'", "median relative difference 12%"]),
    "leakage_suspect": ("leakage_suspect", "days_to_default", {"cause": "leakage_suspect", "measure": "auc"},
                        {"auc": 0.502}, {"auc": 0.999}, ["audit the timeline of 'days_to_default'",
                                                         "computed after the event it predicts",
                                                         "AUC 0.999 in training, 0.502 in production"]),
    "leakage_suspect (numeric label)": ("leakage_suspect", "x", {"cause": "leakage_suspect", "measure": "correlation"},
                                        {"correlation": 0.01}, {"correlation": 0.987},
                                        ["audit the timeline of 'x'", "correlation 0.987 in training"]),
    "computed_differently (category)": ("skew", "city", {"cause": "computed_differently", "served": "Paris",
                                                         "offline": "Lyon"}, {}, {}, ["'Paris' served"]),
    "shadow_disagreement": ("shadow", None, {"cause": "shadow_disagreement", "production": "credit",
                                             "candidate": "credit-v2", "agreement": 0.856, "expected_agreement": 0.98,
                                             "separating_features": [{"feature": "amount",
                                                                      "segment": "'amount' > 55.7"}]}, {}, {},
                            ["hold the rollout of 'credit-v2'", "disagrees with 'credit' on 14.4% of requests where "
                             "at most 2% was expected", "most where 'amount' > 55.7"]),
}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_each_cause_has_its_own_step_naming_the_feature_and_the_numbers(case):
    kind, feature, evidence, current, baseline, words = CASES[case]
    step = next_step(kind, feature, evidence, current, baseline)
    for word in words:
        assert word in step, step
    assert not CONTROL.search(step) and len(step) < 300


def test_the_cases_cover_every_cause_with_a_step():
    assert {c[2]["cause"] for c in CASES.values()} == NEXT_STEP_CAUSES


def _causes_the_rules_produce() -> set[str]:
    """Every cause literal the diagnosis rules and the joins write: `Diagnosis("cause", ...)`, the
    fallbacks' tables of causes and the rate alarms."""
    sources = [ROOT / "detectors" / "diagnosis.py", *sorted((ROOT / "detectors" / "joins").glob("*.py"))]
    found: set[str] = set()
    for path in sources:
        text = path.read_text()
        found |= set(re.findall(r'Diagnosis\(\s*"(\w+)"', text))
        found |= set(re.findall(r'cause = "(\w+)"', text))
        found |= set(re.findall(r'"(\w+_shift)"', text))  # the fallback's moved -> cause table
        found |= {c for pair in re.findall(r'cause = "(\w+)" if .* else "(\w+)"', text) for c in pair}
    found |= {cause for cause, _, _ in RATE_ALARMS.values()}
    found.add("version")  # a serving alarm's family when the versions do not explain it (diagnose_serving)
    # the timing fit's "undated" never becomes an alert's cause (_with_timing keeps the value rule's)
    found.discard("undated")
    return found


def test_every_cause_the_rules_produce_has_a_step_of_its_own():
    produced = _causes_the_rules_produce()
    assert {"unit_change", "performance_drop", "missing_at_serving", "location_scale_shift", "missing_rate"} <= produced
    assert produced - NEXT_STEP_CAUSES == set()
    assert NEXT_STEP_CAUSES - produced == set()  # no step for a cause nothing produces


def test_an_unknown_cause_gets_its_kinds_general_step():
    assert next_step("data_quality", "x", {"cause": "something_new"}) == "check the upstream source of 'x'"
    assert "retrain on recent data" in next_step("drift", "x", {})
    assert "compare 'x' in serving with training" in next_step("a_new_kind", "x", None)


HOSTILE = "inc\x1b[2J\u202eome\r\n" + "x" * 500


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_hostile_feature_name_or_category_is_escaped_and_cut(case):
    kind, _, evidence, current, baseline, _ = CASES[case]
    hostile_evidence = {k: (HOSTILE if isinstance(v, str) and k != "cause" else v) for k, v in evidence.items()}
    step = next_step(kind, HOSTILE, hostile_evidence, current, baseline)
    assert not CONTROL.search(step), step
    assert "x" * 65 not in step  # names are cut to 64 characters
    if "'inc" in step:  # the steps that quote the feature or a category
        assert "inc\\x1b[2J\\u202eome\\x0d\\x0a" in step


def _alert(**fields) -> Alert:
    base = dict(alert_id=alert_id("credit", "latency", "drift", "cusum", 1), kind="drift", model="credit",
                model_version="1", feature="latency", detector="cusum", statistic=40.0, threshold=35.0, p_value=None,
                baseline={"mean": 100.0}, current={"mean": 0.1}, events_seen=500, ts=None, severity="critical",
                diagnosis="values look ~1/1000 of training at every quantile",
                evidence={"cause": "unit_change", "factor": "1/1000", "ratio": 0.001})
    return Alert(**{**base, **fields})


def test_every_alert_carries_its_step_in_the_json_and_its_id_does_not_depend_on_it():
    a = _alert()
    d = a.to_dict()
    assert list(d)[-1] == "next_step" and d["next_step"] == a.next_step and "conversion of 'latency'" in a.next_step
    assert d["alert_id"] == alert_id("credit", "latency", "drift", "cusum", 1)
    assert Alert.from_dict(d) == a
    # an alert published before the field existed is read back with the step derived
    del d["next_step"]
    assert Alert.from_dict(d).next_step == a.next_step
    # a step given (e.g. read back from the topic) is kept as sent
    assert _alert(next_step="as sent").next_step == "as sent"


def test_skewwatch_alerts_prints_the_step_after_the_diagnosis_escaped():
    text = format_alert(_alert(feature="inc\x1b[2J\u202eome\r\n").to_dict())
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  next step: "))
    assert lines[at - 1].startswith(("  diagnosis: ", " " * 13))
    assert "fix the serving pipeline's conversion of 'inc\\x1b[2J\\u202eome\\x0d\\x0a'" in " ".join(text.split())
    assert not CONTROL.search(text.replace("\n", ""))


def test_the_report_shows_the_step_escaped_for_html_and_the_terminal_controls():
    trace = ModelTrace(training_baseline("credit"), every=1000, seed=0)
    hostile = "<b>x</b>\x1b[2J\u202e"
    trace.alerts = [_alert(kind="data_quality", feature=None, detector="schema", diagnosis="renamed",
                           evidence={"cause": "schema", "unexpected_names": [[hostile, 9]],
                                     "absent_features": [["amount", 9]]}).to_dict()]
    trace.events = 9
    page = render_html([trace])
    step = re.search(r'<p class="next-step"><b>next step:</b> (.*?)</p>', page).group(1)
    assert "<b>x" not in page and step == html.escape(
        "undo the rename in serving: events carry '<b>x</b>\\x1b[2J\\u202e' where the baseline expects 'amount' "
        "(or rebuild the baseline if the model now reads the new name)")


def test_a_hostile_segment_or_feature_name_in_a_performance_alert_is_escaped():
    evidence = {"cause": "performance_drop", "segments": {"verdict": "mix_change", "feature": HOSTILE, "largest": [
        {**SEGMENT_DE, "segment": HOSTILE}]}}
    step = next_step("performance", None, evidence)
    assert not CONTROL.search(step) and step.count("inc\\x1b[2J\\u202eome\\x0d\\x0a") == 2
