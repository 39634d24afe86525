"""The request-id joins (detectors.joins): feature parity and delayed labels, and `replay
--feature-log / --labels`."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import orjson
import pytest

from baselines.build import build_baseline_from_columns
from detectors.diagnosis import label_hash
from detectors.events import Limits
from detectors.fmt import number, percent
from detectors.joins import (
    JoinConfig,
    JoinMonitor,
    PerformanceMonitor,
    RequestJoin,
    decode_join_records,
    wilson_interval,
)
from stream.commands.cli import main
from stream.worker import config
from tests.stream.helpers import events, training_baseline

BASELINE = training_baseline("credit")
CLASSIFIER = dataclasses.replace(BASELINE, metric={"name": "accuracy", "value": 0.9, "n": 20_000})


def served(n: int, seed: int = 1) -> list[dict]:
    evs = events("credit", n, seed=seed)
    for i, ev in enumerate(evs):
        ev["request_id"] = f"r{i}"
    return evs


def feature_log(evs: list[dict], change=lambda i, f: f) -> list[dict]:
    """The offline recomputation of `evs`' features; `change(i, features)` alters request i's."""
    return [{"request_id": ev["request_id"], "model": ev["model"], "features": change(i, dict(ev["features"]))}
            for i, ev in enumerate(evs)]


def amount_in_thousands_from(start: int, every: int):
    def change(i, f):
        if i >= start and i % every == 0:
            f["amount"] = f["amount"] / 1000
        return f
    return change


# ---- the join buffer ---------------------------------------------------------------------------
def test_either_side_may_come_first_and_duplicates_keep_the_first():
    join = RequestJoin(ttl=100.0, max_entries=10, sides=("served", "offline"))
    assert join.offer("offline", "a", "offline-a", ts=1.0) is None
    assert join.offer("offline", "a", "offline-a-again", ts=2.0) is None  # duplicate while waiting
    assert join.offer("served", "a", "served-a", ts=3.0) == "offline-a"
    assert join.offer("served", "b", "served-b", ts=4.0) is None
    assert join.offer("offline", "b", "offline-b", ts=5.0) == "served-b"
    assert join.offer("offline", "b", "late re-delivery", ts=6.0) is None  # duplicate after the match
    assert join.counts == {"matched": 2, "waiting": 0, "duplicate_served": 0, "duplicate_offline": 2,
                           "expired_served": 0, "expired_offline": 0}


def test_ids_that_never_match_expire_by_time_or_by_the_cap():
    join = RequestJoin(ttl=10.0, max_entries=100, sides=("served", "offline"))
    for i in range(1000):  # 1000 ids, one per second, none ever matched
        join.offer("served", f"s{i}", i, ts=float(i))
    assert join.counts["waiting"] == 11  # ids stamped within the last 10 s
    assert join.counts["expired_served"] == 989

    capped = RequestJoin(ttl=1e9, max_entries=100, sides=("served", "offline"))
    for i in range(1000):
        capped.offer("offline", f"o{i}", i)  # no time at all: only the cap bounds memory
    assert capped.counts["waiting"] == 100 and capped.counts["expired_offline"] == 900
    assert capped.offer("served", "o999", "s") == 999  # the newest are the ones kept
    assert capped.offer("served", "o0", "s") is None


def test_a_late_record_is_stamped_with_the_stream_time_and_lives_a_full_ttl():
    join = RequestJoin(ttl=10.0, max_entries=100, sides=("served", "offline"))
    join.offer("served", "new", 1, ts=100.0)
    join.offer("served", "old", 2, ts=5.0)  # out of order: time does not go back
    join.offer("served", "x", 3, ts=109.0)
    assert join.offer("offline", "old", 4, ts=109.5) == 2
    assert join.now == 109.5


# ---- feature parity ----------------------------------------------------------------------------
def test_a_feature_computed_differently_at_serving_time_is_named_with_its_rate_and_examples():
    evs = served(3000)
    joins = JoinMonitor({"credit": BASELINE}.get, labels=False)
    assert joins.add_predictions(evs) == []
    alerts = joins.add_feature_log(feature_log(evs, amount_in_thousands_from(1000, 8)))
    [alert] = alerts
    assert (alert.kind, alert.feature, alert.detector) == ("skew", "amount", "feature_parity")
    assert alert.alert_id and alert.model_version == "1" and alert.severity == "critical"
    # the first mismatch is request 1000; ~6 in a row of 8-spaced mismatches cross h = ln(1e9)
    assert alert.statistic > alert.threshold == pytest.approx(np.log(1e9), rel=1e-4)
    assert alert.current["mismatch_rate"] == pytest.approx(alert.current["mismatches"] / alert.current["joined"])
    # measured since the CUSUM's change point: request 1000 on, one in 8
    assert 0.1 < alert.current["mismatch_rate"] < 0.2 and alert.current["joined"] < 100
    assert 0.005 < alert.current["recent_mismatch_rate"] < 0.125
    assert alert.current["median_rel_diff"] == pytest.approx(999.0)
    assert alert.evidence["cause"] == "unit_change" and alert.evidence["factor"] == "1000"
    assert "serving value differs from the offline recomputation in" in alert.diagnosis
    assert alert.next_step.startswith("fix the serving pipeline's conversion of 'amount': it sends ~1000x the offline "
                                      "values")
    examples = alert.evidence["examples"]
    assert 1 <= len(examples) <= 5
    for ex in examples:  # request ids only: the values may be personal data
        i = int(ex["request_id"][1:])
        assert i >= 1000 and i % 8 == 0 and set(ex) == {"request_id"}
    quoting = JoinMonitor({"credit": BASELINE}.get, JoinConfig(include_examples=True), labels=False)
    quoting.add_predictions(evs)
    [with_values] = quoting.add_feature_log(feature_log(evs, amount_in_thousands_from(1000, 8)))
    for ex in with_values.evidence["examples"]:
        assert ex["served"] == pytest.approx(1000 * ex["offline"])
    # the join is event by event: the same pairs give the same alert whichever side comes first
    again = JoinMonitor({"credit": BASELINE}.get, labels=False)
    again.add_feature_log(feature_log(evs, amount_in_thousands_from(1000, 8)))
    [same] = again.add_predictions(evs)
    assert same.alert_id == alert.alert_id and same.current == alert.current and same.evidence == alert.evidence
    assert same.events_seen == 1041 < alert.events_seen == 3000  # events seen when each fired


def test_identical_features_and_float_noise_within_tolerance_give_no_alert():
    evs = served(3000)
    joins = JoinMonitor({"credit": BASELINE}.get, labels=False)
    joins.add_predictions(evs)

    def noise(i, f):
        f["amount"] = f["amount"] * (1 + 1e-9)
        f["country"] = {"US": "US", "FR": "FR", "DE": "DE"}[f["country"]]
        return f
    assert joins.add_feature_log(feature_log(evs, noise)) == []
    features = joins.snapshot()["parity"]["credit"]["features"]
    assert features["amount"] == {"compared": 3000, "mismatched": 0, "recent_mismatch_rate": 0.0}


def test_categories_compare_exactly_by_their_key_and_a_number_served_as_text_is_a_mismatch():
    joins = JoinMonitor({"credit": BASELINE}.get, labels=False)
    evs = served(400)
    for ev in evs:
        ev["features"]["country"] = ev["features"]["country"].upper()
    joins.add_predictions(evs)
    alerts = joins.add_feature_log(feature_log(evs, lambda i, f: {**f, "country": f["country"].lower()}))
    [alert] = alerts
    assert alert.feature == "country" and alert.evidence["cause"] == "letter_case"
    # the training spelling is shown; the other, a production value, only as its hash (examples off)
    assert alert.evidence["served"] in {"US", "FR", "DE"}
    assert alert.evidence["offline"] == label_hash(alert.evidence["served"].lower())
    assert f"{alert.evidence['offline']!r}" in alert.diagnosis

    typed = JoinMonitor({"credit": BASELINE}.get, labels=False)
    evs = served(400, seed=2)
    for ev in evs:
        ev["features"]["age"] = str(ev["features"]["age"])
    typed.add_predictions(evs)
    [alert] = typed.add_feature_log(feature_log(served(400, seed=2)))
    assert alert.feature == "age" and alert.evidence["cause"] == "type_change"


def test_feature_log_records_of_other_models_or_unknown_models_are_counted_not_compared():
    joins = JoinMonitor({"credit": BASELINE}.get, labels=False)
    evs = served(10)
    joins.add_predictions(evs)
    log = feature_log(evs)
    log[0]["model"] = "fraud"
    joins.add_feature_log(log)
    assert joins.counts["ignored"] == {"feature_log_unknown_model": 1}
    assert joins.counts["feature_log"]["waiting"] == 1  # r0 served, never matched


# ---- delayed labels ----------------------------------------------------------------------------
def labelled(n: int, accuracy, seed: int) -> tuple[list[dict], list[dict]]:
    """Predictions and their labels; `accuracy(i)` is the chance that prediction i is right."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    right = rng.random(n) < np.array([accuracy(i) for i in range(n)])
    evs = [{"model": "credit", "model_version": "1", "request_id": f"r{i}", "features": {}, "ts": float(i),
            "prediction": int(y[i] if right[i] else 1 - y[i])} for i in range(n)]
    return evs, [{"request_id": f"r{i}", "label": int(y[i])} for i in range(n)]


def test_an_accuracy_drop_is_alerted_with_the_interval_and_the_sample_size():
    evs, labels = labelled(6000, lambda i: 0.9 if i < 3000 else 0.75, seed=1)
    joins = JoinMonitor({"credit": CLASSIFIER}.get, parity=False)
    joins.add_predictions(evs)
    [alert] = joins.add_labels(labels)
    assert (alert.kind, alert.detector, alert.feature) == ("performance", "label_join", None)
    assert alert.baseline == {"accuracy": 0.9, "n": 20_000}
    current = alert.current
    assert current["n"] >= JoinConfig.min_labels
    assert current["ci_low"] < current["accuracy"] < current["ci_high"] < 0.9 - JoinConfig.tolerance
    expected = wilson_interval(current["accuracy"] * current["n"], current["n"], 1.959964)
    assert (current["ci_low"], current["ci_high"]) == pytest.approx(expected)
    assert 0.65 < current["accuracy"] < 0.85
    assert alert.p_value < 1e-7 and alert.statistic > alert.threshold
    assert f"n={current['n']:,} labelled predictions" in alert.diagnosis and "vs 90% on validation" in alert.diagnosis
    assert 3000 < alert.evidence["labelled"] < 4000  # found within ~1000 labels of the drop
    assert alert.next_step.startswith("fix the causes among this model's drift and skew alerts")
    assert f"live accuracy {percent(current['accuracy'])} vs 90% on validation" in alert.next_step


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_a_stationary_label_stream_at_the_validation_accuracy_gives_no_alert(seed):
    evs, labels = labelled(15_000, lambda i: 0.9, seed=seed)
    joins = JoinMonitor({"credit": CLASSIFIER}.get, parity=False)
    joins.add_predictions(evs)
    assert joins.add_labels(labels) == []
    live = joins.snapshot()["performance"]["credit"]
    assert live["labelled"] == 15_000 and abs(live["live"] - 0.9) < 0.03


def test_labels_may_come_before_their_predictions_and_duplicates_count_once():
    evs, labels = labelled(3000, lambda i: 0.9 if i < 1000 else 0.6, seed=3)
    joins = JoinMonitor({"credit": CLASSIFIER}.get, parity=False)
    joins.add_labels(labels + labels[:100])
    alerts = joins.add_predictions(evs)
    assert [a.kind for a in alerts] == ["performance"]
    assert joins.counts["labels"] == {"matched": 3000, "waiting": 0, "duplicate_prediction": 0, "duplicate_label": 100,
                                      "expired_prediction": 0, "expired_label": 0}


def test_a_regression_models_mae_rise_is_alerted():
    monitor = PerformanceMonitor("price", {"name": "mae", "value": 1.0, "n": 10_000})
    rng = np.random.default_rng(4)
    errors = np.concatenate([rng.exponential(1.0, 2000), rng.exponential(1.6, 2000)])
    alerts = [a for i, e in enumerate(errors) for a in monitor.update({"prediction": float(e)}, 0.0, i + 1, None)]
    [alert] = alerts
    assert alert.baseline == {"mae": 1.0, "n": 10_000} and alert.current["mae"] > alert.current["ci_low"] > 1.02
    assert "labels detect a rise of the MAE of" in alert.diagnosis
    assert alert.evidence["segments"]["verdict"] == "one_segment"  # no version, no feature: nothing to split
    quiet = PerformanceMonitor("price", {"name": "mae", "value": 1.0, "n": 10_000})
    assert not [a for i, e in enumerate(rng.exponential(1.0, 10_000))
                for a in quiet.update({"prediction": float(e)}, 0.0, i, None)]


# ---- decoding and replay -------------------------------------------------------------------------
def test_join_records_are_decoded_like_events_and_bad_ones_rejected_with_a_reason():
    ok, bad = decode_join_records(orjson.dumps([{"request_id": "a", "label": 0}, {"request_id": "", "label": 1},
                                                {"request_id": "b"}, 7]), "labels")
    assert ok == [{"request_id": "a", "label": 0}]
    assert [r.reason for r in bad] == ["missing_request_id", "missing_label", "not_an_object"]
    assert decode_join_records(b"{nope", "feature_log")[1][0].reason == "not_decodable"


def test_the_worker_settings_default_to_the_join_config():
    cfg = config.load({})
    assert (cfg.join_ttl, cfg.join_max_entries) == (JoinConfig.ttl, JoinConfig.max_entries)
    assert {cfg.feature_log_topic, cfg.labels_topic, config.joins_topic(cfg)} <= set(config.topics(cfg))


def test_replay_joins_the_feature_log_and_the_labels_in_ts_order(tmp_path, capsys):
    baseline = tmp_path / "credit.msgpack"
    CLASSIFIER.save(baseline)
    evs, labels = labelled(5000, lambda i: 0.9 if i < 2000 else 0.7, seed=5)
    features = served(5000, seed=6)
    for ev, f in zip(evs, features):
        ev["features"] = f["features"]
    log = feature_log(evs, amount_in_thousands_from(1000, 4))
    for i, (rec, lab) in enumerate(zip(log, labels)):
        rec["ts"] = lab["ts"] = i + 0.5  # each arrives just after its event
    log.insert(10, {"request_id": "never-served", "model": "credit", "features": {}, "ts": 10.0})
    paths = {}
    for name, rows in (("events", evs), ("log", log), ("labels", labels)):
        paths[name] = tmp_path / f"{name}.jsonl"
        paths[name].write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n{bad line\n")
    code = main(["replay", str(paths["events"]), "--baseline", str(baseline), "--feature-log", str(paths["log"]),
                 "--labels", str(paths["labels"]), "--join-ttl", "100", "--batch-size", "333"])
    out, err = capsys.readouterr()
    assert code == 0
    alerts = [json.loads(line) for line in out.splitlines()]
    by_kind = {(a["kind"], a["feature"]): a for a in alerts}
    assert by_kind[("skew", "amount")]["evidence"]["cause"] == "unit_change"
    assert 2000 < by_kind[("performance", None)]["evidence"]["labelled"] < 3500
    assert "replay: join feature_log: matched 5000, waiting 0" in err
    assert "expired_offline 1" in err  # never-served expired after 100 s of event time
    assert "replay: join labels: matched 5000" in err
    assert "rejected 3" in err  # the bad line of each file


def test_skew_and_performance_alert_ids_belong_to_their_baseline():
    """A new baseline restarts the episode count: its alerts must not reuse the old baseline's ids,
    or a consumer that deduplicates on alert_id drops them (as the feature monitors' ids already do)."""
    other = training_baseline("credit", seed=9)  # another profile of the same model
    assert other.fingerprint != BASELINE.fingerprint

    def skew_id(baseline):
        evs = served(3000)
        joins = JoinMonitor({"credit": baseline}.get, labels=False)
        joins.add_predictions(evs)
        [alert] = joins.add_feature_log(feature_log(evs, amount_in_thousands_from(1000, 8)))
        return alert.alert_id

    def performance_id(baseline):
        evs, labels = labelled(6000, lambda i: 0.9 if i < 3000 else 0.75, seed=1)
        joins = JoinMonitor({"credit": dataclasses.replace(baseline, metric=CLASSIFIER.metric)}.get, parity=False)
        joins.add_predictions(evs)
        [alert] = joins.add_labels(labels)
        return alert.alert_id

    assert skew_id(BASELINE) == skew_id(BASELINE) != skew_id(other)
    assert performance_id(BASELINE) == performance_id(BASELINE) != performance_id(other)


def test_every_reason_a_join_record_is_rejected_for_is_a_listed_reason():
    from detectors.events import REASONS

    records = b'[{"model": "credit"}, {"request_id": "r1", "model": "credit"}, {"request_id": ""}]'
    for kind in ("feature_log", "labels"):
        _, rejects = decode_join_records(records, kind, Limits())
        assert rejects and {r.reason for r in rejects} <= set(REASONS), [r.reason for r in rejects]


# ---- is the problem real? (the performance alert's checks) ---------------------------------------
def segmented(n: int, accuracy, country, version, seed: int) -> tuple[list[dict], list[dict]]:
    """Predictions with a country and a model_version, and their labels; prediction i is right with
    probability accuracy(i, country, version)."""
    rng = np.random.default_rng(seed)
    evs, labels = [], []
    for i in range(n):
        c, v = country(i, rng), version(i, rng)
        y = int(rng.integers(0, 2))
        right = rng.random() < accuracy(i, c, v)
        evs.append({"model": "credit", "model_version": v, "request_id": f"r{i}", "ts": float(i),
                    "features": {"country": c}, "prediction": y if right else 1 - y})
        labels.append({"request_id": f"r{i}", "label": y, "ts": i + 0.5})
    return evs, labels


def first_performance_alert(evs, labels):
    joins = JoinMonitor({"credit": CLASSIFIER}.get, parity=False)
    joins.add_predictions(evs)
    return joins.add_labels(labels)[0]


def countries(shares_before, shares_after, at=3000):
    return lambda i, rng: str(rng.choice(["US", "FR", "DE"], p=shares_before if i < at else shares_after))


def version_one(i, rng):
    return "1"


def test_a_drop_in_every_segment_is_told_apart_from_a_mix_change():
    a = first_performance_alert(*segmented(8000, lambda i, c, v: 0.9 if i < 3000 else 0.75,
                                           countries([0.4, 0.3, 0.3], [0.4, 0.3, 0.3]), version_one, seed=1))
    seg = a.evidence["segments"]
    assert seg["verdict"] == "within_segments" and seg["feature"] == "country"
    assert {r["segment"] for r in seg["largest"]} == {"US", "FR", "DE"}
    assert all(r["accuracy_now"] < r["accuracy_before"] for r in seg["largest"])
    assert "the drop holds within the largest segments of 'country'" in a.diagnosis
    assert a.next_step.startswith("fix the causes among this model's drift and skew alerts")


def test_a_traffic_mix_change_towards_a_weak_segment_is_named_as_such():
    # DE was always served worse; from label 3000 on it is most of the traffic
    a = first_performance_alert(*segmented(8000, lambda i, c, v: 0.6 if c == "DE" else 0.95,
                                           countries([0.5, 0.4, 0.1], [0.2, 0.2, 0.6]), version_one, seed=1))
    seg = a.evidence["segments"]
    assert seg["verdict"] == "mix_change" and seg["feature"] == "country"
    assert seg["mix_effect"] > 2 * abs(seg["within_effect"])
    [de] = [r for r in seg["largest"] if r["segment"] == "DE"]
    assert de["share_before"] < 0.2 < 0.5 < de["share_now"] and abs(de["accuracy_now"] - de["accuracy_before"]) < 0.1
    assert (f"a traffic mix change in 'country': the new mix alone, at each segment's figure of before, accounts "
            f"for {number(100 * seg['mix_effect'])} points of the drop") in a.diagnosis
    assert a.next_step.startswith("find what changed the traffic mix of 'country': 'DE' grew")


def test_the_segments_of_a_float_coded_categorical_are_its_training_categories():
    # a CSV's float-coded grades ("1.0") and the events' numbers (1) are one category to the monitors;
    # the segments put every event in NOT_IN_TRAINING, and the verdict could not see the mix
    rng = np.random.default_rng(3)
    trained = build_baseline_from_columns("credit", {"grade": rng.choice(["1.0", "2.0", "3.0"], 5_000).tolist()},
                                          categorical=("grade",))
    joins = JoinMonitor({"credit": dataclasses.replace(trained, metric=CLASSIFIER.metric)}.get, parity=False)
    def grades(i, rng):
        return int(rng.choice([1, 2, 3], p=[0.5, 0.4, 0.1] if i < 3000 else [0.2, 0.2, 0.6]))
    evs, labels = segmented(8000, lambda i, c, v: 0.6 if c == 3 else 0.95, grades, version_one, seed=1)
    for ev in evs:
        ev["features"] = {"grade": ev["features"].pop("country")}
    joins.add_predictions(evs)
    seg = joins.add_labels(labels)[0].evidence["segments"]
    assert seg["verdict"] == "mix_change" and seg["feature"] == "grade"
    assert {r["segment"] for r in seg["largest"]} == {"1.0", "2.0", "3.0"}


def test_a_new_model_version_serving_worse_is_named():
    a = first_performance_alert(*segmented(
        8000, lambda i, c, v: 0.55 if v == "2" else 0.9, countries([0.4, 0.3, 0.3], [0.4, 0.3, 0.3]),
        lambda i, rng: "2" if i >= 3000 and rng.random() < 0.5 else "1", seed=1))
    seg = a.evidence["segments"]
    assert seg["verdict"] in ("new_segment", "mix_change") and seg["feature"] == "model_version"
    assert a.next_step.startswith("route traffic away from model_version '2' (roll it back)")


def test_a_model_version_absent_before_the_drop_is_a_new_segment():
    # version 2 (30% accurate) takes 30% of the traffic from label 4,800: the kept labels before the
    # window hold almost none of it, so its figure before is unknown and the mix cannot explain it
    a = first_performance_alert(*segmented(
        8000, lambda i, c, v: 0.3 if v == "2" else 0.9, countries([0.4, 0.3, 0.3], [0.4, 0.3, 0.3]),
        lambda i, rng: "2" if i >= 4800 and rng.random() < 0.3 else "1", seed=3))
    seg = a.evidence["segments"]
    assert (seg["verdict"], seg["feature"], seg["segment"]) == ("new_segment", "model_version", "2")
    assert "the drop comes with a new segment of model_version: '2'" in a.diagnosis
    assert a.next_step.startswith("route traffic away from model_version '2' (roll it back)")


def test_a_category_never_seen_in_training_that_the_model_fails_on_is_named():
    def country(i, rng):
        return "IT" if i >= 3000 and rng.random() < 0.4 else str(rng.choice(["US", "FR", "DE"]))
    a = first_performance_alert(*segmented(8000, lambda i, c, v: 0.5 if c == "IT" else 0.9, country, version_one,
                                           seed=1))
    seg = a.evidence["segments"]
    assert seg["feature"] == "country" and seg["verdict"] in ("new_segment", "mix_change")
    assert any(r["not_in_training"] and r["segment"] == "(not in training)" for r in seg["largest"])
    assert "IT" not in a.diagnosis + orjson.dumps(a.to_dict()).decode()  # the production value itself is not kept
    assert a.next_step.startswith("retrain with the values of 'country' not seen in training")


def test_without_labels_before_the_change_the_segments_are_not_compared():
    a = first_performance_alert(*segmented(3000, lambda i, c, v: 0.7, countries([0.4, 0.3, 0.3], [0.4, 0.3, 0.3]),
                                           version_one, seed=2))
    assert a.evidence["segments"]["verdict"] == "no_history"
    assert "too few labels before the change" in a.diagnosis


def test_the_stated_minimum_detectable_drop_is_detected_at_the_stated_power():
    a = first_performance_alert(*segmented(8000, lambda i, c, v: 0.9 if i < 3000 else 0.75,
                                           countries([0.4, 0.3, 0.3], [0.4, 0.3, 0.3]), version_one, seed=1))
    ev, n = a.evidence, a.current["n"]
    assert ev["detection_power"] == 0.8
    assert ev["measured_change"] == pytest.approx(0.9 - a.current["accuracy"], abs=1e-3)
    assert ev["enough_labels"] == (ev["measured_change"] >= ev["minimum_detectable_change"])
    assert f"{n:,} labels detect a drop of" in a.diagnosis
    # simulate the same test (score test of "accuracy >= bound" at the alert's threshold) at a true
    # accuracy of validation minus the stated minimum: it rejects ~80% of the time
    bound, z_test = ev["test_bound"], a.threshold
    accuracy = np.random.default_rng(0).binomial(n, 0.9 - ev["minimum_detectable_change"], 20_000) / n
    power = np.mean((bound - accuracy) / np.sqrt(bound * (1 - bound) / n) > z_test)
    assert power == pytest.approx(0.8, abs=0.04)


def test_many_labels_make_a_large_drop_clear():
    evs, labels = segmented(3400, lambda i, c, v: 0.9 if i < 2000 else 0.55,
                            countries([0.4, 0.3, 0.3], [0.4, 0.3, 0.3]), version_one, seed=3)
    a = first_performance_alert(evs, labels)
    assert a.evidence["enough_labels"] and "is above it: enough labels for the claim" in a.diagnosis


def _deep_list(depth: int = 1000) -> list:
    value: list = [1]
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("shape", ["deep", "string", "map"])
def test_huge_or_deep_served_values_give_a_bounded_skew_alert(shape):
    """Before: a 1,000-deep value raised RecursionError (str() in the examples and category keys),
    a 1 MB string was quoted whole in each of 5 examples (5 MB alerts), and a 100k-key map cost
    3-11 s per 250 mismatches (str() of the whole map each time)."""
    huge = {"deep": _deep_list(), "string": "x" * 1_000_000, "map": {f"k{i}": i for i in range(100_000)}}[shape]
    evs = [dict(ev, prediction=1) for ev in served(3000)]
    log = feature_log(evs)
    for i in range(1000, 3000, 8):  # the mismatching requests also carry a 1 MB model_version and request id
        evs[i]["request_id"] = log[i]["request_id"] = f"r{i}-" + "y" * 1_000_000
        evs[i]["model_version"] = "v" * 1_000_000
        evs[i]["features"]["amount" if i % 16 else "country"] = huge
    joins = JoinMonitor({"credit": CLASSIFIER}.get, JoinConfig(include_examples=True))
    alerts = joins.add_predictions(evs) + joins.add_feature_log(log)
    alerts += joins.add_labels([{"request_id": ev["request_id"], "label": int(i < 1000)} for i, ev in enumerate(evs)])
    assert {(a.kind, a.feature) for a in alerts} >= {("skew", "amount"), ("skew", "country"), ("performance", None)}
    for alert in alerts:
        assert len(orjson.dumps(alert.to_dict())) < 4_000, (alert.kind, alert.feature)
