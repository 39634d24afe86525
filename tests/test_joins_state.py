"""The joins' state as plain data (detectors.joins: `state_dict` / `load_state`): a JoinMonitor
restored from it goes on exactly as the one it was taken from."""
from __future__ import annotations

import dataclasses

import msgpack
import numpy as np
import pytest

from detectors.joins import FeatureParity, JoinConfig, JoinMonitor, RequestJoin
from tests.stream.helpers import events, training_baseline

BASELINE = dataclasses.replace(training_baseline("credit"), metric={"name": "accuracy", "value": 0.9, "n": 20_000})


def through_msgpack(state: dict) -> dict:
    """What a checkpoint keeps: msgpack, read back as the worker reads it."""
    return msgpack.unpackb(msgpack.packb(state, use_bin_type=True), raw=False, strict_map_key=False)


def traffic(n: int = 4000, seed: int = 7) -> tuple[list[dict], list[dict], list[dict]]:
    """Served events; their feature log (amount /1000 on every 8th request from 1000: a unit change;
    country lower-cased on every 5th from 2200); labels (accuracy 0.9, then 0.6 from 1500)."""
    rng = np.random.default_rng(seed)
    served = events("credit", n, seed=seed)
    truth = rng.integers(0, 2, n)
    right = rng.random(n) < np.where(np.arange(n) < 1500, 0.9, 0.6)
    for i, ev in enumerate(served):
        ev["request_id"] = f"r{i}"
        ev["prediction"] = int(truth[i] if right[i] else 1 - truth[i])
    log = []
    for i, ev in enumerate(served):
        features = dict(ev["features"])
        if i >= 1000 and i % 8 == 0:
            features["amount"] /= 1000
        if i >= 2200 and i % 5 == 0:
            features["country"] = features["country"].lower()
        log.append({"request_id": ev["request_id"], "model": "credit", "features": features, "ts": ev["ts"] + 5})
    labels = [{"request_id": f"r{i}", "label": int(truth[i]), "ts": served[i]["ts"] + 10} for i in range(n)]
    return served, log, labels


def feed(joins: JoinMonitor, served: list[dict], log: list[dict], labels: list[dict], parts: slice) -> list:
    """The records of `parts`, interleaved by slices of 100 (served, then their log, then their labels)."""
    alerts = []
    for start in range(parts.start, parts.stop, 100):
        block = slice(start, min(start + 100, parts.stop))
        alerts += joins.add_predictions(served[block])
        alerts += joins.add_feature_log(log[block][::-1])  # out of order within a block
        alerts += joins.add_labels(labels[block])
    return alerts


@pytest.mark.parametrize("include_examples", [False, True])
def test_a_restored_join_monitor_goes_on_exactly_as_the_uninterrupted_one(include_examples):
    served, log, labels = traffic()
    config = JoinConfig(ttl=3600.0, max_entries=5000, include_examples=include_examples)
    whole = JoinMonitor({"credit": BASELINE}.get, config)
    before = feed(whole, served, log, labels, slice(0, 1800))
    # the predictions of 1800..2600 arrive before the restart, their feature log and labels after
    whole.add_predictions(served[1800:2600])
    state = through_msgpack(whole.state_dict())

    restored = JoinMonitor({"credit": BASELINE}.get, config)
    assert restored.load_state(state) == []
    assert restored.counts == whole.counts and restored.counts["labels"]["waiting"] == 800
    assert through_msgpack(restored.state_dict()) == state  # the state reads back whole

    after_whole = whole.add_feature_log(log[1800:2600]) + whole.add_labels(labels[1800:2600])
    after_whole += feed(whole, served, log, labels, slice(2600, 4000))
    after = restored.add_feature_log(log[1800:2600]) + restored.add_labels(labels[1800:2600])
    after += feed(restored, served, log, labels, slice(2600, 4000))

    assert {a.kind for a in before} == {"skew"}  # the unit change was alerted before the restart...
    assert {(a.kind, a.feature) for a in after_whole} == {("skew", "country"), ("performance", None)}  # the rest after
    assert restored.snapshot() == whole.snapshot() and restored.counts == whole.counts
    # every statistic and, the changes alerted after it having begun after it, every description
    # (a description of a change that began before a restore with examples off: the test below)
    assert [a.to_dict() for a in after] == [a.to_dict() for a in after_whole]

def test_with_examples_off_the_state_keeps_no_mismatching_value_only_the_waiting_records():
    served, log, labels = traffic()
    joins = JoinMonitor({"credit": BASELINE}.get, JoinConfig(include_examples=False))
    feed(joins, served, log, labels, slice(0, 2000))
    joins.add_predictions(served[2000:2010])
    state = joins.state_dict()
    for feature in state["parity"]["credit"]["state"]["features"].values():
        assert feature["pairs"] == [] and feature["categories"] is None
        assert all(set(e) == {"request_id"} for e in feature["examples"])
    # what the buffers must hold until joined: the waiting served events, values included
    assert state["parity_join"]["waiting_ids"] == [f"r{i}" for i in range(2000, 2010)]
    assert state["parity_join"]["waiting_values"] == served[2000:2010]
    # kept once for both joins
    assert state["label_join"]["waiting_values"] == [None] * 10 and len(state["label_join"]["same_as_parity"]) == 10


def test_a_restore_inside_a_value_change_with_examples_off_still_words_the_alert():
    """The mismatch kinds are kept, their values are not: an alarm right after the restore, by a
    mismatch of another kind, found the restored "value" kinds with no value to describe them and
    raised (IndexError / ValueError) before the diagnosis handled it."""
    for name, change in (("country", str.lower), ("amount", lambda v: v / 1000)):
        whole = FeatureParity("credit", BASELINE)
        served = events("credit", 200, seed=3)
        i = 0
        while True:  # value mismatches until one more would alarm
            probe = FeatureParity("credit", BASELINE)
            probe.load_state(through_msgpack(whole.state_dict()))
            ev = served[i]
            if probe.compare(f"r{i}", ev, {name: change(ev["features"][name])}, i, None):
                break
            whole.compare(f"r{i}", ev, {name: change(ev["features"][name])}, i, None)
            i += 1
        restored = FeatureParity("credit", BASELINE)
        restored.load_state(through_msgpack(whole.state_dict()))
        ev = served[i]
        [alert] = restored.compare(f"r{i}", {**ev, "features": {}}, {name: ev["features"][name]}, i, None)
        assert alert.feature == name and alert.evidence["cause"] == "computed_differently"
        assert alert.current["joined"] == i + 1


def test_a_restored_buffer_keeps_its_cap_and_a_changed_baseline_starts_the_statistics_afresh():
    join = RequestJoin(ttl=100.0, max_entries=10, sides=("served", "offline"))
    for i in range(10):
        join.offer("served", f"s{i}", i, ts=float(i))
    smaller = RequestJoin(ttl=100.0, max_entries=4, sides=("served", "offline"))
    smaller.load_state(through_msgpack(join.state_dict()))
    assert smaller.counts["waiting"] == 4 and smaller.counts["expired_served"] == 6
    assert smaller.offer("offline", "s9", "o") == 9 and smaller.offer("offline", "s5", "o") is None

    served, log, labels = traffic(2000)
    joins = JoinMonitor({"credit": BASELINE}.get)
    feed(joins, served, log, labels, slice(0, 2000))
    other = dataclasses.replace(BASELINE, metric={"name": "accuracy", "value": 0.8, "n": 20_000})
    assert other.fingerprint != BASELINE.fingerprint
    restored = JoinMonitor({"credit": other}.get)
    assert restored.load_state(through_msgpack(joins.state_dict())) == ["credit"]
    assert restored.snapshot()["parity"] == {} and restored.snapshot()["performance"] == {}
    assert restored.counts == joins.counts  # the buffers and counters are not the baseline's


def test_a_restored_leakage_monitor_goes_on_exactly_as_the_uninterrupted_one():
    from tests.test_leakage import leaky_baseline, production

    baseline = leaky_baseline()
    events, labels = production(12_000, seed=2, leak=False, accuracy=0.7)  # a leaking feature found (test_leakage)
    whole = JoinMonitor({"credit": baseline}.get, parity=False)
    whole.add_predictions(events[:1000])
    whole.add_labels(labels[:300])  # 700 predictions wait for their labels over the restart
    restored = JoinMonitor({"credit": baseline}.get, parity=False)
    assert restored.load_state(through_msgpack(whole.state_dict())) == []
    assert restored.snapshot() == whole.snapshot()

    def rest(joins: JoinMonitor) -> list:
        alerts = joins.add_labels(labels[300:1000])
        for start in range(1000, 12_000, 1000):
            alerts += joins.add_predictions(events[start:start + 1000]) + joins.add_labels(labels[start:start + 1000])
        return alerts

    after_whole, after = rest(whole), rest(restored)
    assert any(a.kind == "leakage_suspect" for a in after_whole)
    assert [a.to_dict() for a in after] == [a.to_dict() for a in after_whole]
    assert restored.snapshot() == whole.snapshot()


def test_a_restored_shadow_pair_goes_on_exactly_as_the_uninterrupted_one():
    from tests.test_shadow import CLASSIFIER, PAIR, labelled_pairs

    pairs, labels = labelled_pairs(6000, 0.9, 0.8, seed=11)
    candidates_late = 2300  # the candidate's prediction of these requests comes after the restart

    def predictions(joins: JoinMonitor, block: range) -> list:
        alerts = []
        for i in block:
            alerts += joins.add_predictions([pairs[i][0]] + ([] if candidates_late <= i < 2500 else [pairs[i][1]]))
        return alerts

    whole = JoinMonitor({"credit": CLASSIFIER}.get, parity=False, shadow=[PAIR])
    predictions(whole, range(2500))
    whole.add_labels(labels[:2000])
    restored = JoinMonitor({"credit": CLASSIFIER}.get, parity=False, shadow=[PAIR])
    assert restored.load_state(through_msgpack(whole.state_dict())) == []
    assert restored.snapshot() == whole.snapshot()

    def rest(joins: JoinMonitor) -> list:
        alerts = []
        for i in range(candidates_late, 2500):
            alerts += joins.add_predictions([pairs[i][1]])
        alerts += joins.add_labels(labels[2000:2500]) + predictions(joins, range(2500, 6000))
        return alerts + joins.add_labels(labels[2500:])

    after_whole, after = rest(whole), rest(restored)
    assert restored.snapshot() == whole.snapshot()
    assert restored.counts["shadow credit=credit-v2 labels"]["matched"] == 6000  # every label joined once
    assert [a.to_dict() for a in after] == [a.to_dict() for a in after_whole]
    # the open window (restored mid-way) and the labelled errors carried over
    assert restored.snapshot()["shadow"]["credit=credit-v2"]["labels"]["verdict"] == "candidate_worse"


def test_a_shadow_comparison_taken_against_another_baseline_starts_afresh():
    from tests.test_shadow import CLASSIFIER, PAIR, labelled_pairs

    pairs, _ = labelled_pairs(1500, 0.9, 0.8, seed=3)
    whole = JoinMonitor({"credit": CLASSIFIER}.get, parity=False, shadow=[PAIR])
    for prod, cand in pairs:
        whole.add_predictions([prod, cand])
    other = dataclasses.replace(CLASSIFIER, metric={"name": "accuracy", "value": 0.8, "n": 20_000})
    restored = JoinMonitor({"credit": other}.get, parity=False, shadow=[PAIR])
    assert restored.load_state(through_msgpack(whole.state_dict())) == ["credit"]
    assert restored.snapshot()["shadow"]["credit=credit-v2"]["joined"] == 0
