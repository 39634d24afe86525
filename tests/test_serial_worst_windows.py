"""Worst windows (detectors/worstwindow.py): a time-ordered baseline's raised thresholds must not hide
large pipeline bugs. The training in time order says how far a window of consecutive rows goes on its
own; production clearly beyond that alarms, with the cause the diagnosis names."""
from __future__ import annotations

import msgpack
import numpy as np
import pytest

from baselines.build import build_baseline_from_columns
from baselines.profile import Baseline, BaselineError
from baselines.serial import WINDOW_SPANS, WorstWindowStats
from detectors.model import ModelMonitor, MonitorConfig
from detectors.worstwindow import run_limit, window_limit
from tests.test_serial import ar1, bursts, floats, replay

TRAIN, AT = 20_000, 4_000


def delays(n: int, seed: int) -> np.ndarray:
    """A delay-like feature in time order: whole minutes, persistent (AR(1) of rho 0.95), mostly 5-60,
    with runs of equal minutes."""
    return np.round(30 + 12 * ar1(n, 0.95, seed))


def clustered_missing(n: int, seed: int) -> np.ndarray:
    """A numeric feature whose values go missing in storms (5 % of the rows, runs of 10 on average: the
    missing indicator measures V ~ 23 over 512 events, as flights' dep_time ~ 26)."""
    x = np.random.default_rng(seed).normal(size=n)
    x[bursts(n, 0.05, 10, seed + 1)] = np.nan
    return x


def first_on(alerts: list, feature: str) -> tuple | None:
    on = [a for a in alerts if a.feature == feature and a.events_seen > AT and not a.to_dict().get("update")]
    return None if not on else (on[0].events_seen - AT, on[0].detector, on[0].evidence.get("cause"))


def baseline_of(columns: dict) -> Baseline:
    return build_baseline_from_columns("m", columns, time_ordered=True)


def test_missing_values_in_storms_alarm_only_far_beyond_the_worst_storm():
    baseline = baseline_of({"x": clustered_missing(TRAIN, 0)})
    worst = baseline.features["x"].worst_windows
    assert worst is not None and worst.missing[0] > 0.25 * WINDOW_SPANS[0]  # a storm fills much of 128 rows
    assert replay(baseline, {"x": floats(clustered_missing(40_000, 10))}) == []  # the no-change replay
    x = clustered_missing(AT + 2_000, 20)
    x[AT:][np.random.default_rng(21).random(2_000) < 0.6] = np.nan  # 60 % missing from event 4,000
    delay, detector, cause = first_on(replay(baseline, {"x": floats(x)}), "x")
    assert delay <= 400 and (detector, cause) == ("missing_rate", "missing_rate")


def test_a_value_stuck_longer_than_the_longest_training_run_alarms_as_stuck():
    train = delays(TRAIN, 1)
    baseline = baseline_of({"delay": train})
    assert replay(baseline, {"delay": floats(delays(40_000, 11))}) == []
    x = delays(AT + 2_000, 12)
    x[AT:] = 17.0
    delay, detector, cause = first_on(replay(baseline, {"delay": floats(x)}), "delay")
    longest = baseline.features["delay"].worst_windows.longest_run
    assert delay == run_limit(longest) + 1 and (detector, cause) == ("point_mass", "stuck_value")


def test_a_fill_in_time_order_alarms_as_a_default_fill():
    baseline = baseline_of({"delay": delays(TRAIN, 1)})
    x = delays(AT + 2_000, 13)
    x[AT:][np.random.default_rng(14).random(2_000) < 0.25] = 0.0  # 0 inside the range, rare in training
    delay, detector, cause = first_on(replay(baseline, {"delay": floats(x)}), "delay")
    assert delay <= 300 and (detector, cause) == ("point_mass", "default_fill")


def test_a_stuck_category_alarms_as_stuck():
    rng = np.random.default_rng(2)
    cats = np.array(["a", "b", "c", "d"])
    baseline = build_baseline_from_columns("m", {"c": list(cats[rng.integers(0, 4, TRAIN)])}, categorical=["c"],
                                           time_ordered=True)
    replayed = cats[rng.integers(0, 4, AT + 2_000)]
    replayed[AT:] = "b"
    delay, detector, cause = first_on(replay(baseline, {"c": list(replayed)}), "c")
    longest = baseline.features["c"].worst_windows.longest_run
    # the run began at most `longest` events before the change (a "b" run up to it)
    assert delay <= run_limit(longest) + 1 and (detector, cause) == ("point_mass", "stuck_value")


def test_the_alarms_do_not_depend_on_the_batch_size():
    baseline = baseline_of({"delay": delays(TRAIN, 1), "x": clustered_missing(TRAIN, 0)})
    d, x = delays(12_000, 15), clustered_missing(12_000, 16)
    d[AT:5_000] = 0.0
    d[8_000:9_000][::3] = -1.0
    x[6_000:][::2] = np.nan
    runs = [[(a.events_seen, a.feature, a.detector, a.statistic) for a in
             replay(baseline, {"delay": floats(d), "x": floats(x)}, batch)] for batch in (500, 137, 64)]
    assert any(r[2] in ("point_mass", "missing_rate") for r in runs[0])
    assert runs[0] == runs[1] == runs[2]


@pytest.mark.parametrize("examples", [True, False])
def test_state_round_trip_inside_a_window_gives_the_same_alerts(examples):
    baseline = baseline_of({"delay": delays(TRAIN, 1), "x": clustered_missing(TRAIN, 0)})
    d, x = delays(10_000, 17), clustered_missing(10_000, 18)
    d[AT:][::3] = 0.0
    x[7_000:][::2] = np.nan
    events = [{"model": "m", "features": {"delay": a, "x": b}} for a, b in zip(floats(d), floats(x))]
    config = MonitorConfig(include_examples=examples)

    def run(monitor: ModelMonitor, rows: list) -> list:
        out = []
        for i in range(0, len(rows), 500):
            out += monitor.update_batch(rows[i:i + 500])
        return [(a.feature, a.detector, a.events_seen) for a in out if not a.to_dict().get("update")]

    straight = run(ModelMonitor(baseline, config), events)
    first = ModelMonitor(baseline, config)
    before = run(first, events[:4_100])  # inside the fill's first window
    state = msgpack.unpackb(msgpack.packb(first.state_dict(), use_bin_type=True), raw=False, strict_map_key=False)
    after = run(ModelMonitor.from_state(baseline, state, config), events[4_100:])
    assert any(d == "missing_rate" for _, d, _ in straight) and before + after == straight
    # examples off: no production value of a numeric feature in the checkpoint
    assert (state["numeric"]["worst_window"]["last"] is None) == (not examples)


def test_the_fields_are_optional_and_survive_a_file(tmp_path):
    plain = build_baseline_from_columns("m", {"x": ar1(5_000, 0.5, 0)})
    assert plain.features["x"].worst_windows is None
    assert "worst_windows" not in plain.to_dict()["features"]["x"]  # older baselines: same content
    again = Baseline.loads(msgpack.packb(plain.to_dict()))
    assert again.features["x"].worst_windows is None and again.fingerprint == plain.fingerprint
    ordered = baseline_of({"x": ar1(5_000, 0.5, 0), "c": ["a", None] * 2_500})
    ordered.save(tmp_path / "b.msgpack")
    loaded = Baseline.load(tmp_path / "b.msgpack")
    for name in ("x", "c"):
        assert loaded.features[name].worst_windows == ordered.features[name].worst_windows
    assert loaded.fingerprint == ordered.fingerprint
    assert loaded.features["c"].worst_windows.missing[0] == 64  # every other row of 128


def test_a_malformed_field_is_refused():
    d = baseline_of({"x": ar1(2_000, 0.5, 0)}).to_dict()
    d["features"]["x"]["worst_windows"]["missing"] = [1, 2]
    with pytest.raises(BaselineError, match="worst_windows"):
        Baseline.loads(msgpack.packb(d))


def test_chunks_give_the_same_worst_windows():
    x = clustered_missing(20_000, 3)
    x[5_000:5_300] = 1.5
    whole = baseline_of({"x": x}).features["x"].worst_windows
    chunked = build_baseline_from_columns("m", {"x": x}, time_ordered=True, chunk_rows=3_001).features["x"]
    assert chunked.worst_windows == whole and whole.longest_run >= 300
    acc = WorstWindowStats()
    for i in range(0, len(x), 777):
        acc.add(x[i:i + 777])
    assert acc.finish() == whole


def test_window_limits_leave_room_above_the_worst():
    assert np.all(window_limit(np.array([0, 10, 100, 500])) > np.array([0, 10, 100, 500]))
    assert run_limit(0) == 16


def test_a_fill_is_judged_against_the_values_before_it_only_for_a_value_rare_in_training():
    from detectors.diagnosis import diagnose_numeric
    rng = np.random.default_rng(5)
    train = np.round(rng.normal(30, 20, 20_000))  # -1 is rare (~0.1 %), 30 common (~2 %)
    p = build_baseline_from_columns("m", {"d": train}).features["d"]
    # in time order a calm spell: values near 10, far from training's spread; a fill of -1 into it
    before = np.round(rng.normal(10, 3, 300))
    after = np.round(rng.normal(10, 3, 200))
    after[rng.random(200) < 0.25] = -1.0

    def cause(values, local):
        return diagnose_numeric(p, values, n_missing=0, n_invalid=0, n_total=len(values), before_change=local).cause

    assert cause(after, None) != "default_fill"  # the rest is no sample of the whole training
    assert cause(after, before) == "default_fill"
    # the values before hold -1 as often: no rise at the change, no fill
    assert cause(after, np.where(rng.random(300) < 0.25, -1.0, before)) != "default_fill"
