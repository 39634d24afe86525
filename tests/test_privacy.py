"""Alerts carry statistics and category labels, not individual requests' values, unless asked."""
import json

import numpy as np
import orjson

from baselines.build import build_baseline_from_columns
from detectors.model import ModelMonitor, MonitorConfig
from stream.commands.cli import main

SECRET = "31337.25"


def _baseline():
    rng = np.random.default_rng(0)
    return build_baseline_from_columns("m", {"salary": rng.normal(50_000, 9_000, 5000)})


def _events():
    rng = np.random.default_rng(1)
    # from event 500 on, salaries arrive as strings ("numbers serialised as text")
    return [{"model": "m", "features": {"salary": float(v) if i < 500 else (SECRET if i % 2 else f"{v:.2f}")}}
            for i, v in enumerate(rng.normal(50_000, 9_000, 3000))]


def _alerts(config=None):
    return [a.to_dict() for a in ModelMonitor(_baseline(), config).update_batch(_events())]


def test_raw_values_are_not_quoted_by_default():
    alerts = _alerts()
    assert any(a["evidence"].get("cause") == "type_change" for a in alerts), [a["diagnosis"] for a in alerts]
    assert SECRET not in json.dumps(alerts)


def test_include_examples_quotes_them():
    alerts = _alerts(MonitorConfig(include_examples=True))
    assert SECRET in json.dumps(alerts)


def test_replay_flag(tmp_path, capsys):
    b = tmp_path / "b.msgpack"
    _baseline().save(b)
    f = tmp_path / "e.jsonl"
    f.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in _events()))
    assert main(["replay", str(f), "--baseline", str(b)]) == 0
    assert SECRET not in capsys.readouterr().out
    assert main(["replay", str(f), "--baseline", str(b), "--include-examples"]) == 0
    assert SECRET in capsys.readouterr().out


def _leaves(value, out: list) -> list:
    """Every float, int and string in a nested structure (bytes blobs are not read)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _leaves(k, out)
            _leaves(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _leaves(v, out)
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        out.append(value)
    return out


def _marker_stream():
    """Unique salaries (each drawn once) that jump at event 300, unique invalid strings from 600, and
    a confidence of unique values; each raw value occurs once."""
    rng = np.random.default_rng(5)
    salaries = rng.normal(50_000, 9_000, 2000) + np.where(np.arange(2000) >= 300, 40_000, 0)
    confidence = rng.beta(8, 2, 2000) * np.where(np.arange(2000) >= 300, 0.5, 1.0)
    events = [{"model": "m", "features": {"salary": float(v) if i < 600 or i % 3 else f"secret-{i}"},
               "confidence": float(p)} for i, (v, p) in enumerate(zip(salaries, confidence))]
    raw = {v for ev in events for v in (ev["features"]["salary"], ev["confidence"])}
    return events, raw


def test_no_single_production_value_in_alerts_snapshot_or_state_with_examples_off():
    rng = np.random.default_rng(0)
    base = build_baseline_from_columns("m", {"salary": rng.normal(50_000, 9_000, 5000)},
                                       confidence=rng.beta(8, 2, 5000))
    events, raw = _marker_stream()
    monitor = ModelMonitor(base)
    alerts = []
    for i in range(0, len(events), 1):  # one event per batch: the snapshot after each holds few values
        alerts += monitor.update_batch(events[i:i + 1])
        if i in (0, 1, 350, 1999):
            leaked = raw & set(_leaves(monitor.snapshot(), []))
            assert not leaked, (i, leaked)
    assert {a.detector for a in alerts} >= {"cusum", "invalid_type"}
    for a in alerts:
        leaked = raw & set(_leaves(a.to_dict(), []))
        assert not leaked, (a.detector, leaked)
        assert "secret-" not in a.diagnosis
    state = monitor.state_dict()
    assert not raw & set(_leaves(state, [])), raw & set(_leaves(state, []))
    assert "secret-" not in json.dumps(_leaves(state, []))


def test_with_examples_on_the_extremes_and_examples_are_the_values():
    rng = np.random.default_rng(0)
    base = build_baseline_from_columns("m", {"salary": rng.normal(50_000, 9_000, 5000)},
                                       confidence=rng.beta(8, 2, 5000))
    events, raw = _marker_stream()
    alerts = ModelMonitor(base, MonitorConfig(include_examples=True)).update_batch(events)
    drift = next(a for a in alerts if a.feature == "salary" and a.detector == "cusum")
    assert drift.current["max"] in raw


def test_unseen_labels_are_hashed_in_alerts_with_examples_off_and_the_case_bug_still_named():
    rng = np.random.default_rng(0)
    base = build_baseline_from_columns("m", {"city": rng.choice(["Paris", "Lyon", "Nice"], 5000).tolist()},
                                       categorical=("city",))
    # from event 500: unique new labels (personal, say), then from 2000 the training labels upper-cased
    events = [{"model": "m", "features": {"city": str(rng.choice(["Paris", "Lyon", "Nice"])) if i < 500
                                          else f"marker-{i}" if i < 2000 else str(rng.choice(["PARIS", "LYON"]))}}
              for i in range(4000)]
    off = ModelMonitor(base).update_batch(events)
    text = json.dumps([a.to_dict() for a in off])
    assert "marker-" not in text and "PARIS" not in text, text
    assert any(a.evidence["cause"] == "new_category" for a in off)
    on = ModelMonitor(base, MonitorConfig(include_examples=True)).update_batch(events)
    assert "marker-" in json.dumps([a.to_dict() for a in on])


def test_a_letter_case_bug_is_named_without_quoting_the_unseen_spelling():
    rng = np.random.default_rng(0)
    base = build_baseline_from_columns("m", {"city": rng.choice(["Paris", "Lyon", "Nice"], 5000).tolist()},
                                       categorical=("city",))
    events = [{"model": "m", "features": {"city": str(rng.choice(["Paris", "Lyon"])) if i < 500
                                          else str(rng.choice(["PARIS", "LYON"]))}} for i in range(3000)]
    alerts = ModelMonitor(base).update_batch(events)
    case = [a for a in alerts if a.evidence["cause"] == "letter_case"]
    assert case, [a.diagnosis for a in alerts]
    assert "PARIS" not in json.dumps([a.to_dict() for a in alerts]) and "'Paris'" in case[0].diagnosis


def _joined_alerts(include_examples: bool):
    """Skew alerts of a join whose served `city` is a unique personal-looking label from request 300
    on (offline: the training spelling) and whose served `salary` is the offline one x1000."""
    from detectors.joins import JoinConfig, JoinMonitor

    rng = np.random.default_rng(0)
    base = build_baseline_from_columns("m", {"salary": rng.normal(50_000, 9_000, 5000),
                                             "city": rng.choice(["Paris", "Lyon"], 5000).tolist()},
                                       categorical=("city",))
    salaries = rng.normal(50, 9, 3000)
    served, offline = [], []
    for i, s in enumerate(salaries):
        city = str(rng.choice(["Paris", "Lyon"]))
        offline.append({"request_id": f"r{i}", "model": "m", "features": {"salary": float(s), "city": city}})
        served.append({"request_id": f"r{i}", "model": "m", "features": {
            "salary": float(s) * (1000 if i >= 300 and i % 3 == 0 else 1),
            "city": f"marker-{i}" if i >= 300 and i % 3 == 1 else city}})
    joins = JoinMonitor({"m": base}.get, JoinConfig(include_examples=include_examples), labels=False)
    alerts = joins.add_predictions(served) + joins.add_feature_log(offline)
    raw = {v for ev in served + offline for v in ev["features"].values()}
    raw |= {abs(a["features"]["salary"] - b["features"]["salary"]) for a, b in zip(served, offline)} - {0.0}
    return [a.to_dict() for a in alerts], raw


def test_skew_alerts_quote_no_production_value_or_difference_with_examples_off():
    """Before: the alert named the most frequent mismatching pair ('marker-301' served where the
    offline recomputation has 'Lyon') and, from a handful of mismatches, a median absolute
    difference that was one request's (served - offline), i.e. almost its salary."""
    alerts, raw = _joined_alerts(include_examples=False)
    assert {(a["feature"], a["evidence"]["cause"]) for a in alerts} == {("salary", "unit_change"),
                                                                         ("city", "computed_differently")}
    text = json.dumps(alerts)
    assert "marker-" not in text, text
    assert "Lyon" in text or "Paris" in text  # the training spelling is shown
    leaked = {v for v in _leaves(alerts, []) if isinstance(v, float)} & raw
    assert not leaked, leaked
    on, _ = _joined_alerts(include_examples=True)
    assert "marker-" in json.dumps(on)
