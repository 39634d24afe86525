"""The public scenario suite: generated streams with known change points through `ModelMonitor`.

Each scenario asserts what an on-call engineer would check: the right alert kind on the right
feature, how many events after the change it fired (`events_seen`), the numbers it shows, and
that nothing else fired. Streams come from `stream/devkit/synthetic/scenarios.py` (seeded: results are exact and
repeatable); training baselines are finite samples (20k rows), so their estimation error is
part of every test.
"""
from __future__ import annotations

import statistics

import msgpack
import numpy as np
import pytest

from detectors.alerts import Alert
from detectors.diagnosis import label_hash
from detectors.model import ModelMonitor
from stream.devkit.synthetic import scenarios as streams
from stream.devkit.synthetic.scenarios import Stream, replay, run_scenario, shared_baseline


def describe(alerts: list[Alert], limit: int = 12) -> str:
    """The alerts as short lines, for assertion messages."""
    lines = [
        f"  {a.kind}/{a.feature}/{a.detector} at events_seen={a.events_seen} "
        f"stat={a.statistic:.4g} thr={a.threshold:.4g}"
        for a in alerts[:limit]
    ]
    more = f"\n  ... and {len(alerts) - limit} more" if len(alerts) > limit else ""
    return f"{len(alerts)} alert(s):\n" + "\n".join(lines) + more


def assert_quiet_before_change(stream: Stream, alerts: list[Alert]) -> None:
    early = [a for a in alerts if a.events_seen <= stream.change_at]
    assert not early, f"false alarms before the change at event {stream.change_at}: " + describe(early)


def assert_only_on(feature: str, alerts: list[Alert]) -> None:
    """Every alert is on the changed feature (the other features are stationary)."""
    stray = [a for a in alerts if a.feature != feature]
    assert not stray, "alerts on unchanged features (false alarms): " + describe(stray)


# ---- the seed's example ----------------------------------------------------------------------
def test_seed_example_alerts_within_1000_events_with_the_four_numbers():
    stream = streams.seed_example(1_000)
    alerts = run_scenario(stream)
    drift = [a for a in alerts if a.kind == "drift" and a.feature == "normal_00"]
    assert drift, "no drift alert on normal_00 within 1,000 events; " + describe(alerts)
    assert_only_on("normal_00", alerts)

    # Baseline numbers come from 20k training rows: standard errors ~0.0014 (mean) and ~0.001
    # (std), so +-0.01 is > 7 SE. Current numbers come from the alert's window of n events:
    # SE(mean) = 0.4/sqrt(n), SE(std) ~= 0.4/sqrt(2n). Every alert must be within 4 SE of the truth
    # (or +-0.05, whichever is wider), and at least one must show them to one decimal, i.e.
    # within +-0.05 of 0.3 and 0.4 (an on-call engineer reads "0.5/0.2 -> 0.3/0.4").
    readable = []
    for a in drift:
        b, c = a.baseline, a.current
        assert abs(b["mean"] - 0.5) <= 0.01 and abs(b["std"] - 0.2) <= 0.01, f"baseline numbers wrong: {b}"
        n = c.get("count") or a.events_seen
        tol_mean, tol_std = max(0.05, 4 * 0.4 / np.sqrt(n)), max(0.05, 4 * 0.4 / np.sqrt(2 * n))
        assert abs(c["mean"] - 0.3) <= tol_mean and abs(c["std"] - 0.4) <= tol_std, (
            f"{a.detector} at {a.events_seen}: current {c} is not ~N(0.3, 0.4) over {n} events "
            f"(tolerance mean {tol_mean:.3f}, std {tol_std:.3f})"
        )
        if abs(c["mean"] - 0.3) <= 0.05 and abs(c["std"] - 0.4) <= 0.05:
            readable.append(a)
    assert readable, "no alert shows current mean ~0.3 and std ~0.4 to one decimal: " + "; ".join(
        f"{a.detector}@{a.events_seen} current={a.current}" for a in drift
    )


# ---- the alarm budget ----------------------------------------------------------------------
@pytest.mark.parametrize("n_events, n_features, seed", [
    (200_000, 10, 7),  # the figure: 2M feature-events
    (40_000, 50, 8),  # 2M more, over the 50-feature mix (more parameters of every kind)
], ids=["200k_x_10", "40k_x_50"])
def test_zero_alerts_on_stationary_events(n_events, n_features, seed):
    stream = streams.stationary(n_events, n_features=n_features, seed=seed)
    monitor = ModelMonitor(shared_baseline(n_features))
    alerts = replay(monitor, stream.events)
    assert monitor.events_seen == n_events
    assert alerts == [], "false alarms on stationary data: " + describe(alerts)


# ---- numeric changes -------------------------------------------------------------------------
def test_variance_only_change_is_caught():
    stream = streams.variance_change(6_000, at=2_000, factor=2.0)
    alerts = run_scenario(stream)
    assert_quiet_before_change(stream, alerts)
    assert_only_on("normal_00", alerts)
    drift = [a for a in alerts if a.kind == "drift" and a.feature == "normal_00"]
    assert drift, "variance doubling at event 2000 not caught in 4000 events; " + describe(alerts)
    first = min(a.events_seen for a in drift)
    assert first <= 3_000, f"variance change caught only {first - 2_000} events after it; " + describe(drift)
    # the alert must show what moved: the spread (std ~0.4 vs 0.2), not the mean
    assert any(a.current["std"] > 1.5 * a.baseline["std"] for a in drift), describe(drift) + "".join(
        f"\n  current={a.current}" for a in drift
    )


def test_gradual_drift_is_caught_during_the_ramp():
    stream = streams.gradual_drift(25_000, start=2_000, length=20_000, k=1.0)
    alerts = run_scenario(stream)
    assert_quiet_before_change(stream, alerts)
    assert_only_on("normal_00", alerts)
    drift = [a for a in alerts if a.kind == "drift" and a.feature == "normal_00"]
    assert drift, "a 1-std ramp over 20k events was not caught; " + describe(alerts)
    first = min(a.events_seen for a in drift)
    assert first <= 22_000, f"gradual drift caught only at event {first}, after the ramp ended at 22000"


def test_skew_present_from_event_0_is_caught_within_a_few_hundred_events():
    # 1 std shift from the very first production event: ADWIN and Page-Hinkley compare the
    # stream with its own past and never see it; the baseline-referenced tests must.
    stream = streams.mean_shift(2_000, at=0, k=1.0)
    alerts = run_scenario(stream)
    assert_only_on("normal_00", alerts)
    drift = [a for a in alerts if a.kind == "drift" and a.feature == "normal_00"]
    assert drift, "skew from event 0 not caught in 2000 events; " + describe(alerts)
    first = min(a.events_seen for a in drift)
    assert first <= 300, f"skew from event 0 caught only at event {first}; " + describe(drift)


def test_median_delay_of_a_1_std_mean_shift_is_at_most_100_events():
    change_at, runs = 1_000, 30
    delays, false_alarms, missed = [], [], []
    for seed in range(1, runs + 1):
        stream = streams.mean_shift(change_at + 1_000, at=change_at, k=1.0, seed=seed)
        alerts = run_scenario(stream)
        false_alarms += [(seed, a) for a in alerts if a.events_seen <= change_at or a.feature != "normal_00"]
        hits = [a.events_seen for a in alerts
                if a.kind == "drift" and a.feature == "normal_00" and a.events_seen > change_at]
        if hits:
            delays.append(min(hits) - change_at)
        else:
            missed.append(seed)
    assert not false_alarms, "false alarms: " + "; ".join(
        f"seed {s}: {a.kind}/{a.feature}/{a.detector}@{a.events_seen}" for s, a in false_alarms
    )
    assert not missed, f"shift missed within 1000 events for seeds {missed}; delays of the others: {sorted(delays)}"
    median = statistics.median(delays)
    assert median <= 100, f"median delay {median} events > 100; delays: {sorted(delays)}"


# ---- categorical, data quality, confidence -----------------------------------------------------
def test_new_category_is_caught_as_data_quality_with_the_unseen_value():
    stream = streams.new_category(3_000, at=1_000, share=0.1)
    alerts = run_scenario(stream)
    assert_quiet_before_change(stream, alerts)
    assert_only_on("category_04", alerts)
    dq = [a for a in alerts if a.kind == "data_quality" and a.feature == "category_04"]
    assert dq, "10% of a never-seen category from event 1000 not reported as data_quality; " + describe(alerts)
    first = min(dq, key=lambda a: a.events_seen)
    assert first.events_seen <= 2_000, describe(dq)
    # the on-call engineer needs the offending value, not only a share
    # examples off (the default): the unseen value is named by its hash
    assert label_hash(streams.NEW_CATEGORY) in repr(first.to_dict()), (
        f"the unseen value is not in the alert: {first.to_dict()}")


def test_missing_rate_rise_is_caught_as_data_quality():
    stream = streams.missing_rise(3_000, at=1_000, rate=0.1)
    alerts = run_scenario(stream)
    assert_quiet_before_change(stream, alerts)
    assert_only_on("lognormal_01", alerts)
    dq = [a for a in alerts if a.kind == "data_quality" and a.feature == "lognormal_01"]
    assert dq, "missing rate 1% -> 10% from event 1000 not reported as data_quality; " + describe(alerts)
    first = min(dq, key=lambda a: a.events_seen)
    assert first.events_seen <= 2_000, describe(dq)
    # the training rate is 1% of 20k rows (SE 0.0007); the current rate is ~10% over the alert's window
    assert abs(first.baseline["missing_rate"] - 0.01) <= 0.003, first.baseline
    assert first.current["missing_rate"] >= 0.05, first.current


def test_confidence_drop_is_caught_as_confidence_drop():
    stream = streams.confidence_drop(3_000, at=1_000)
    alerts = run_scenario(stream)
    assert_quiet_before_change(stream, alerts)
    stray = [a for a in alerts if a.kind != "confidence_drop"]
    assert not stray, "only the confidence changed, yet: " + describe(stray)
    drops = [a for a in alerts if a.kind == "confidence_drop"]
    assert drops, "confidence mean 0.8 -> 0.625 from event 1000 not reported as confidence_drop; " + describe(alerts)
    first = min(drops, key=lambda a: a.events_seen)
    assert first.events_seen <= 2_000, describe(drops)
    assert first.current["mean"] < first.baseline["mean"] - 0.1, (first.baseline, first.current)


# ---- what the alert says -----------------------------------------------------------------------
def test_every_alert_carries_what_the_on_call_engineer_needs():
    """Alerts of every test that fires in the scenarios above (CUSUM, out-of-range, Page-Hinkley,
    unseen category, missing rate, confidence): the contract fields, filled and consistent."""
    scenarios = [
        streams.seed_example(1_000),
        streams.gradual_drift(25_000, start=2_000, length=20_000, k=1.0),
        streams.new_category(3_000, at=1_000),
        streams.missing_rise(3_000, at=1_000),
        streams.confidence_drop(3_000, at=1_000),
    ]
    problems, detectors = [], set()
    for stream in scenarios:
        for a in run_scenario(stream):
            detectors.add(a.detector)
            where = f"{a.kind}/{a.feature}/{a.detector}@{a.events_seen}"
            event = stream.events[a.events_seen - 1]  # the event that made it fire
            if (a.model, a.model_version, a.ts) != (streams.MODEL, streams.MODEL_VERSION, event["ts"]):
                problems.append(f"{where}: model/version/ts {(a.model, a.model_version, a.ts)} != the firing event's")
            if not a.statistic >= a.threshold:
                problems.append(f"{where}: statistic {a.statistic:.4g} below its threshold {a.threshold:.4g}")
            if not (a.baseline and a.current and a.diagnosis.strip()):
                problems.append(f"{where}: empty baseline, current or diagnosis")
            if a.severity not in ("warning", "critical"):
                problems.append(f"{where}: severity {a.severity!r}")
    assert {"cusum", "page_hinkley", "out_of_range", "unseen_category", "missing_rate"} <= detectors, detectors
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("stream, word", [
    (lambda: streams.mean_shift(8_000, at=5_000, k=1.0), "abrupt"),  # a 1-std step at event 5000
    (lambda: streams.gradual_drift(25_000, start=2_000, length=20_000, k=1.0), "gradual"),  # a ramp over 2000-22000
], ids=["abrupt", "gradual"])
def test_diagnosis_tells_an_abrupt_change_from_a_gradual_one(stream, word):
    drift = [a for a in run_scenario(stream()) if a.kind == "drift"]
    assert drift, "not caught"
    assert word in drift[0].diagnosis, f"{describe(drift)}\n  diagnosis: {drift[0].diagnosis!r}"


# ---- one alert per change, and the same alerts whatever the batching -----------------------------
def test_long_sustained_drift_gives_one_alert_per_feature_and_family():
    stream = streams.mean_shift(100_000, at=1_000, k=1.0)
    alerts = run_scenario(stream)
    assert_quiet_before_change(stream, alerts)
    assert_only_on("normal_00", alerts)
    assert alerts, "sustained drift not caught; " + describe(alerts)
    per_test = {}
    for a in alerts:
        per_test.setdefault((a.feature, a.kind, a.detector), []).append(a.events_seen)
    repeated = {k: v for k, v in per_test.items() if len(v) > 1}
    assert not repeated, f"one sustained shift re-alerted (storm): {repeated}"
    assert len({a.alert_id for a in alerts}) == len(alerts), describe(alerts)


def _several_changes(n_events: int = 5_000) -> Stream:
    """A mean shift, a new category and a missing-rate rise at different events."""

    def change(prod: streams.Production, specs: list[streams.FeatureSpec]) -> None:
        prod.values["normal_00"][1_500:] += 0.2
        prod.values["category_04"][2_500::7] = streams.NEW_CATEGORY
        prod.missing["lognormal_01"][3_500::8] = True

    return streams.make_stream(n_events, change, change_at=1_500, seed=11)


def _without_ts(alerts: list[Alert]) -> list[dict]:
    return [{k: v for k, v in a.to_dict().items() if k != "ts"} for a in alerts]


def test_same_alerts_for_batch_sizes_1_37_and_1000():
    stream = _several_changes()
    by_size = {size: _without_ts(run_scenario(stream, batch_size=size)) for size in (1000, 37, 1)}
    assert by_size[1000], "the scenario should alert (mean shift, new category, missing rise)"
    for size in (37, 1):
        assert by_size[size] == by_size[1000], (
            f"batch size {size} gives different alerts than 1000:\n"
            f"  {size}: {[(a['feature'], a['detector'], a['events_seen']) for a in by_size[size]]}\n"
            f"  1000: {[(a['feature'], a['detector'], a['events_seen']) for a in by_size[1000]]}"
        )


def test_alert_ids_are_equal_across_a_rerun_and_a_restart_from_state():
    stream = _several_changes()
    first = run_scenario(stream)
    again = run_scenario(stream)
    assert [a.alert_id for a in first] == [a.alert_id for a in again]

    # a restart mid-stream from msgpack'd state continues as if uninterrupted
    half = len(stream.events) // 2
    monitor = ModelMonitor(shared_baseline())
    before = replay(monitor, stream.events[:half])
    state = msgpack.unpackb(msgpack.packb(monitor.state_dict()), strict_map_key=False)
    after = replay(ModelMonitor.from_state(shared_baseline(), state), stream.events[half:])
    assert _without_ts(before + after) == _without_ts(first)
