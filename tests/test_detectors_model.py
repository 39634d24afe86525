"""ModelMonitor end to end on seeded streams: exact detection indices, batch-size invariance,
state round-trip, the alarm budget on stationary data, data quality, confidence and serving."""
from __future__ import annotations

import gc
import json
import tracemalloc
from functools import cache

import msgpack
import numpy as np
import pytest

from baselines.build import build_baseline_from_columns
from baselines.profile import CategoricalProfile
from detectors.alerts import Alert
from detectors.diagnosis import category_counts, label_hash
from detectors.model import ModelMonitor, MonitorConfig
from stream.devkit.synthetic import scenarios as streams

N_TRAIN = 20_000
ALERT_KEYS = {"alert_id", "kind", "model", "model_version", "feature", "detector", "statistic", "threshold",
              "p_value", "baseline", "current", "events_seen", "ts", "severity", "diagnosis", "evidence", "next_step"}


@cache
def baseline():
    rng = np.random.default_rng(0)
    columns = {
        "amount": rng.normal(0.5, 0.2, N_TRAIN),
        "count": rng.poisson(3, N_TRAIN).astype(float),
        "latency": rng.lognormal(3, 0.5, N_TRAIN),
        "country": rng.choice(["US", "FR", "DE", "IT"], N_TRAIN, p=[0.5, 0.2, 0.2, 0.1]),
    }
    return build_baseline_from_columns("credit", columns, version="3", confidence=rng.beta(8, 2, N_TRAIN),
                                       categorical=("country",))


def events(n: int, seed: int, shift_at: int | None = None, **changes) -> list[dict]:
    rng = np.random.default_rng([seed, 7])
    amount = rng.normal(0.5, 0.2, n)
    if shift_at is not None:
        amount[shift_at:] += changes.get("k", 1.0) * 0.2
    out = []
    for i in range(n):
        out.append({"model": "credit", "model_version": "3", "ts": 1_700_000_000.0 + i,
                    "features": {"amount": float(amount[i]), "count": int(rng.poisson(3)),
                                 "latency": float(rng.lognormal(3, 0.5)),
                                 "country": str(rng.choice(["US", "FR", "DE", "IT"], p=[0.5, 0.2, 0.2, 0.1]))},
                    "confidence": float(rng.beta(8, 2))})
    return out


def replay(events_: list[dict], batch: int = 1000, monitor: ModelMonitor | None = None) -> list[Alert]:
    m = monitor or ModelMonitor(baseline())
    alerts = []
    for i in range(0, len(events_), batch):
        alerts += m.update_batch(events_[i:i + batch])
    return alerts


def without_ts(alerts: list[Alert]) -> list[dict]:
    return [{k: v for k, v in a.to_dict().items() if k != "ts"} for a in alerts]


@cache
def messy_stream() -> tuple[dict, ...]:
    """Several changes at known events: mean shift, strings in a numeric feature, a new category,
    a missing feature, an unexpected field, a new model version, a confidence drop."""
    ev = events(9000, seed=3, shift_at=1500)
    for i in range(3000, 3400):
        ev[i]["features"]["count"] = "n/a"
    for i in range(4000, 9000, 3):
        ev[i]["features"]["country"] = "BR"
    for i in range(5000, 5600):
        del ev[i]["features"]["latency"]
        ev[i]["features"]["latency_ms"] = 1.0
    for i in range(6000, 9000):
        ev[i]["model_version"] = "4"
        ev[i]["confidence"] = ev[i]["confidence"] * 0.6
    return tuple(ev)


# ---- detection -------------------------------------------------------------------------------------
def test_one_std_mean_shift_is_detected_at_an_exact_event_with_a_readable_alert():
    alerts = replay(events(4000, seed=1, shift_at=2000))
    assert [(a.kind, a.feature, a.detector, a.events_seen) for a in alerts] == [("drift", "amount", "cusum", 2064)]
    a = alerts[0]
    assert set(a.to_dict()) == ALERT_KEYS
    json.dumps(a.to_dict())
    assert a.baseline["mean"] == pytest.approx(0.5, abs=0.01) and a.current["mean"] == pytest.approx(0.7, abs=0.06)
    # which test fired and when, then the numbers, once
    assert a.diagnosis.startswith("detected by cusum at event 2,064, abruptly at event ~2,000: location shift")
    assert a.diagnosis.count("0.501") == 1 and "mean moved" not in a.diagnosis
    assert a.ts == 1_700_000_000.0 + 2063 and a.model_version == "3"


def test_median_delay_of_a_one_std_shift_is_under_100_events():
    delays = []
    for seed in range(8):
        alerts = replay(events(3000, seed=10 + seed, shift_at=1000))
        hits = [a.events_seen - 1000 for a in alerts if a.feature == "amount" and a.events_seen > 1000]
        delays.append(min(hits))
        assert all(a.events_seen > 1000 for a in alerts)
    assert float(np.median(delays)) <= 100, delays


def test_skew_from_the_first_event_is_caught():
    alerts = replay(events(1000, seed=2, shift_at=0, k=0.5))
    assert [(a.feature, a.detector) for a in alerts][:1] == [("amount", "cusum")]
    assert alerts[0].events_seen <= 400


def test_the_messy_stream_raises_one_alert_per_cause():
    alerts = replay(list(messy_stream()))
    got = [(a.kind, a.feature, a.detector) for a in alerts]
    assert ("drift", "amount", "cusum") in got
    assert ("data_quality", "count", "invalid_type") in got
    assert ("data_quality", "country", "unseen_category") in got
    # latency renamed latency_ms: one model-level schema alert (the names are in `current`), not also
    # latency's missing rate
    assert ("data_quality", None, "schema") in got and ("data_quality", "latency", "missing_rate") not in got
    schema = next(a for a in alerts if a.detector == "schema")
    assert schema.current["unexpected_names"][0][0] == "latency_ms"
    assert schema.current["absent_features"][0][0] == "latency"
    assert ("serving", None, "model_version") in got
    assert ("confidence_drop", "confidence", "cusum") in got
    # one alert per (feature, family) episode, never a storm
    assert len(alerts) <= 12, got
    assert len({a.alert_id for a in alerts}) == len(alerts)
    unseen = next(a for a in alerts if a.detector == "unseen_category")
    assert unseen.current["top_unseen"][0][0] == label_hash("BR")  # examples off: the label as its hash


# ---- invariances --------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 7])
def test_same_alerts_whatever_the_batch_size(batch):
    ev = list(messy_stream())[:6500]
    assert without_ts(replay(ev, batch)) == without_ts(replay(ev, 1000))


def test_state_round_trip_mid_stream_gives_the_same_later_alerts():
    ev = list(messy_stream())
    straight = replay(ev, 500)
    first = ModelMonitor(baseline())
    before = replay(ev[:4321], 500, first)
    state = msgpack.unpackb(msgpack.packb(first.state_dict(), use_bin_type=True), raw=False, strict_map_key=False)
    resumed = ModelMonitor.from_state(baseline(), state)
    assert resumed.events_seen == 4321
    after = replay(ev[4321:], 500, resumed)
    assert without_ts(before + after) == without_ts(straight)


@pytest.mark.parametrize("examples", [False, True])
def test_a_restore_inside_a_change_gives_the_same_alerts_and_its_state_no_production_value(examples):
    """The state keeps the last raw values and unseen labels only with examples on. Without them, a
    restore changes no alert's id or event, only the summary of an alert whose change began before it."""
    config = MonitorConfig(include_examples=examples)
    ev = events(3000, seed=5, shift_at=1500)
    for e in ev[1500::2]:
        e["features"]["country"] = "BR"  # an unseen label
    expected = replay(ev, 500, ModelMonitor(baseline(), config))
    assert [(a.detector, a.events_seen) for a in expected] == [("unseen_category", 1520), ("cusum", 1568)]
    first = ModelMonitor(baseline(), config)
    replay(ev[:1530], 30, first)  # after the change began, before the mean shift's alert
    packed = msgpack.packb(first.state_dict(), use_bin_type=True)
    assert (b"BR" in packed) == examples
    assert ("recent" in first.state_dict()["numeric"]) == examples
    resumed = ModelMonitor.from_state(baseline(), msgpack.unpackb(packed, raw=False, strict_map_key=False), config)
    after = replay(ev[1530:], 500, resumed)
    detection = ("alert_id", "kind", "feature", "detector", "events_seen", "statistic", "threshold")
    assert [[a.to_dict()[k] for k in detection] for a in after] == [[expected[1].to_dict()[k] for k in detection]]
    # its summary: the values since the change's estimated start (64), or with examples off since the restore
    assert after[0].current["events"] == (64 if examples else 1568 - 1530)
    assert (without_ts(after) == without_ts(expected[1:])) == examples


def test_state_is_small_and_does_not_grow():
    m = ModelMonitor(baseline())
    ev = events(3000, seed=4)
    replay(ev, 1000, m)
    size_early = len(msgpack.packb(m.state_dict()))
    for _ in range(10):
        replay(ev, 1000, m)
    size_late = len(msgpack.packb(m.state_dict()))
    # without the raw recent values (examples off); at 4 features the model's fixed part counts
    # (tests/stream/test_checkpoint_codec.py bounds a wide model's). What grows is the timing history
    # and ADWIN's buckets, logarithmically (11x the events: +30%)
    assert size_late / len(baseline().features) <= 3 * 1024
    assert size_late <= size_early * 1.5



def _allocated_kb(make) -> tuple[object, float]:
    """(make(), the KB it left allocated, as tracemalloc counts it)."""
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        made = make()
        gc.collect()
        return made, sum(d.size_diff for d in tracemalloc.take_snapshot().compare_to(before, "filename")) / 1024
    finally:
        tracemalloc.stop()


def test_a_monitor_holds_under_10_kb_per_feature_fresh_and_16_kb_after_large_batches():
    # (were 75 and 95 KB: exact transforms kept for tabled features, 4096-cell segment tables,
    # and a recent ring that was a view of its last batch's whole array)
    stream = streams.stationary(6000, n_features=50, seed=5)
    baseline_ = stream.baseline()
    ModelMonitor(baseline_).update_batch(stream.events[:100])  # imports and caches warmed up
    monitor, fresh = _allocated_kb(lambda: ModelMonitor(baseline_))
    assert fresh / 50 <= 10
    _, fed = _allocated_kb(lambda: replay(stream.events, 2000, monitor))
    assert (fresh + fed) / 50 <= 16


# ---- the alarm budget ----------------------------------------------------------------------------
def test_zero_alerts_on_200k_stationary_events_x_10_features():
    stream = streams.stationary(200_000, seed=9)
    m = ModelMonitor(stream.baseline())
    alerts = replay(stream.events, 2000, m)
    assert alerts == []
    assert m.events_seen == 200_000


def _mostly_absent(n: int, seed: int, missing: float = 0.8, invalid: float = 0.6) -> dict[str, list]:
    """Columns whose expected rates are above one half: x is `missing` missing, y `invalid` invalid
    (strings), c is one of 10 labels of which training keeps 2 (8 in 10 values unseen)."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 1.0, (2, n))
    return {"x": [None if m else float(v) for m, v in zip(rng.random(n) < missing, values[0])],
            "y": ["n/a" if b else float(v) for b, v in zip(rng.random(n) < invalid, values[1])],
            "c": rng.choice([f"L{i}" for i in range(10)], n, p=[0.12, 0.11] + [0.09625] * 8).tolist()}


def _mostly_absent_baseline():
    return build_baseline_from_columns("m", _mostly_absent(N_TRAIN, seed=0), categorical=("c",), top_k=2)


def _as_events(columns: dict[str, list]) -> list[dict]:
    names = list(columns)
    return [{"model": "m", "features": dict(zip(names, row))} for row in zip(*columns.values())]


def test_rates_expected_above_one_half_do_not_false_alarm():
    """Exchangeable no-change events (the training distribution, other draws) raise nothing when a
    feature is 80% missing, 60% invalid or 80% unseen in training; a 0.5 cap on the expected rate
    once fired on any run of ~31 missing values."""
    base = _mostly_absent_baseline()
    assert base.features["x"].missing_rate > 0.75 and base.features["c"].other_freq > 0.7
    m = ModelMonitor(base)
    alerts = replay(_as_events(_mostly_absent(150_000, seed=1)), 5000, m)
    assert [(a.feature, a.detector) for a in alerts] == []


def test_a_high_missing_rate_that_rises_is_still_caught():
    stream = _as_events(_mostly_absent(6000, seed=2, missing=0.95))
    alerts = replay(stream, 1000, ModelMonitor(_mostly_absent_baseline()))
    missing = [a for a in alerts if a.detector == "missing_rate"]
    assert [a.feature for a in missing] == ["x"] and missing[0].events_seen < 1000


# ---- bad values, confidence, serving -----------------------------------------------------------------
def test_bad_values_count_against_data_quality_and_only_alert_when_significant():
    ev = events(3000, seed=5)
    for i in (10, 500, 1500):  # a few: not significant
        ev[i]["features"]["amount"] = float("nan")
        ev[i]["confidence"] = 1.7
    assert replay(ev) == []
    for i in range(2000, 2300):
        ev[i]["confidence"] = "high"
    alerts = replay(ev)
    assert [(a.kind, a.feature, a.detector) for a in alerts] == [("data_quality", "confidence", "invalid_confidence")]


def test_version_mismatch_is_one_serving_alert():
    ev = events(8000, seed=6)
    for e in ev[1000:]:
        e["model_version"] = "4"
    alerts = replay(ev, 333)
    assert [(a.kind, a.detector, a.events_seen) for a in alerts] == [("serving", "model_version", 1001)]


def test_snapshot_reports_current_statistics():
    m = ModelMonitor(baseline())
    replay(events(2500, seed=7, shift_at=0), 1000, m)
    snap = m.snapshot()
    assert snap["events_seen"] == 2500 and snap["model"] == "credit"
    amount = snap["features"]["amount"]
    assert amount["kind"] == "numeric" and amount["statistics"]["ks"] > 0.3 and amount["statistics"]["psi"] > 0.2
    assert amount["last_alert"]["kind"] == "drift"
    assert snap["features"]["country"]["kind"] == "categorical"
    assert 0.75 < snap["confidence_mean"] < 0.85
    json.dumps(snap)


def test_snapshot_statistics_follow_each_closed_window():
    """The window statistics are kept per closed window: after more windows close (a drift starting
    between two snapshots), the snapshot's features are those a monitor restored from the same state
    computes afresh, and they moved."""
    m = ModelMonitor(baseline())
    ev = events(4000, seed=7, shift_at=2000)
    replay(ev[:1500], 500, m)
    before = m.snapshot()
    replay(ev[1500:3000], 500, m)
    after = m.snapshot()
    fresh = ModelMonitor.from_state(baseline(), msgpack.unpackb(msgpack.packb(m.state_dict(), use_bin_type=True),
                                                                raw=False, strict_map_key=False)).snapshot()
    assert after["features"] == fresh["features"]
    assert {type(v) for f in after["features"].values() for v in f["statistics"].values()} <= {float, int}  # no numpy
    assert after["features"]["amount"]["statistics"]["ks"] != before["features"]["amount"]["statistics"]["ks"]
    assert after["features"]["country"]["statistics"] != before["features"]["country"]["statistics"]


def test_snapshot_names_the_features_alerting_now_by_kind_until_their_episode_closes():
    ev = list(messy_stream())
    m = ModelMonitor(baseline())
    replay(ev[:4000], 1000, m)
    # strings in "count" from event 3000, a shift of "amount" from 1500; the schema episode has no feature
    assert m.snapshot()["alerting"] == {"amount": ["drift"], "count": ["data_quality"]}
    restored = ModelMonitor.from_state(baseline(), msgpack.unpackb(msgpack.packb(m.state_dict()), raw=False))
    assert restored.snapshot()["alerting"] == m.snapshot()["alerting"]
    replay(ev[4000:], 1000, m)
    # "count" is valid again since event 3400: its episode closed after rearm_quiet_events (5000)
    assert m.snapshot()["alerting"] == {"amount": ["drift"], "country": ["data_quality"],
                                        "confidence": ["confidence_drop"]}


def test_numbers_sent_as_strings_are_invalid_and_diagnosed_from_the_raw_values():
    ev = events(3000, seed=8)
    for i in range(1000, 3000, 2):
        ev[i]["features"]["latency"] = str(round(ev[i]["features"]["latency"], 3))
    for batch in (1000, 7):
        alerts = replay(ev, batch)
        assert [(a.kind, a.feature, a.detector) for a in alerts] == [("data_quality", "latency", "invalid_type")]
        assert "arrive as strings that hold numbers" in alerts[0].diagnosis, alerts[0].diagnosis
        assert alerts[0].evidence["cause"] == "type_change"


def test_unseen_category_counts_leave_out_the_training_other_share():
    # a window of 1000: 900 training categories, 100 in "other", of which ~training's other share is expected
    rare = CategoricalProfile("c", 1000, 0, 0, {"US": 0.9}, 0.05, n_distinct=30)
    codes = np.array([0] * 900 + [1] * 100)
    counts = category_counts(rare, ["US"], codes, [["BR", 60], ["MX", 40]])
    assert counts == {"US": 900, "BR": 30, "MX": 20}  # 100 - 5% of 1000 = 50 unseen, split 60:40


def test_value_counts_cover_every_event_and_survive_a_checkpoint():
    b = build_baseline_from_columns("m", {"age": [30.0, 40.0] * 500, "c": ["a", "b"] * 500},
                                    categorical=["c"], confidence=[0.5] * 1000)
    events = [{"model": "m", "features": {"age": "forty", "c": None}, "confidence": 1.7},
              {"model": "m", "features": {"c": ["x"]}}, {"model": "m", "features": {"age": 35.0, "c": "a"}}]
    m = ModelMonitor(b)
    m.update_batch(events[:2])
    restored = ModelMonitor.from_state(b, msgpack.unpackb(msgpack.packb(m.state_dict()), strict_map_key=False))
    restored.update_batch(events[2:])
    assert restored.value_counts() == {"age": {"invalid": 1, "missing": 1}, "c": {"invalid": 1, "missing": 1},
                                       "confidence": {"invalid": 1, "missing": 2}}


@pytest.mark.parametrize("quiet", [4, 40, 5000])
def test_a_chains_run_of_alarms_gives_the_alerts_of_its_alarms_one_by_one(monkeypatch, quiet):
    """A numeric CUSUM chain's alarms within quiet_events of each other come as one Alarm (`Alarm.more`):
    the alerts are those of the alarms one by one, with other tests alarming in between (windows, River),
    episodes closing and reopening, and part of a run explained by a renamed field."""
    from detectors.model import MonitorConfig
    from detectors.numeric import NumericBank

    stream = streams.stationary(9000, seed=8, n_train=5000)
    evs = [dict(ev, features=dict(ev["features"])) for ev in stream.events]
    names = [s.name for s in stream.specs if s.kind != "category"][:3]
    for i, ev in enumerate(evs):
        f = ev["features"]
        if 1000 <= i < 2500 or 4000 <= i < 4200 or 6000 <= i < 8000 and i % 3:
            f[names[0]] = "n/a"  # invalid: bursts with gaps
        if 2000 <= i < 3000 and isinstance(f.get(names[1]), float):
            f[names[1]] = f[names[1]] * 3 + 50  # drift
        if 5000 <= i < 7000:
            f[names[2].upper()] = f.pop(names[2])  # renamed: missing, explained by the schema change
        if 5500 <= i < 5800:
            f.pop(names[0], None)  # missing, not renamed

    def alerts(run_gap):
        if run_gap is None:
            update = NumericBank.update
            monkeypatch.setattr(NumericBank, "update", lambda self, x, start, gap=0: update(self, x, start, 0))
        monitor = ModelMonitor(stream.baseline(), MonitorConfig(rearm_quiet_events=quiet))
        out = [a.to_dict() for k in range(0, len(evs), 700) for a in monitor.update_batch(evs[k:k + 700])]
        monkeypatch.undo()
        return out

    one_by_one = alerts(None)
    assert len(one_by_one) >= 3
    assert alerts(quiet) == one_by_one
