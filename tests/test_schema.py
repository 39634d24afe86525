"""The schema alert: events whose feature names differ from the baseline's raise one model-level
`schema` alert naming the unexpected and absent fields with counts, not one alert per feature."""
from __future__ import annotations

import copy

import pytest

from detectors.model import ModelMonitor
from stream.devkit.synthetic import scenarios as streams


@pytest.fixture(scope="module")
def stream():
    return streams.stationary(2000, seed=3, n_train=5000)


def renamed(events: list[dict]) -> list[dict]:
    out = copy.deepcopy(events)
    for ev in out:
        ev["features"] = {name.upper(): value for name, value in ev["features"].items()}
    return out


@pytest.mark.parametrize("batch", [1, 7, 20])
def test_twenty_events_in_the_wrong_schema_raise_exactly_one_schema_alert(stream, batch):
    monitor = ModelMonitor(stream.baseline())
    assert monitor.update_batch(stream.events[:1000]) == []
    wrong = renamed(stream.events[1000:1020])
    alerts = [a for i in range(0, 20, batch) for a in monitor.update_batch(wrong[i:i + batch])]
    assert [(a.kind, a.feature, a.detector) for a in alerts] == [("data_quality", None, "schema")]
    names = list(stream.baseline().features)
    alert = alerts[0]
    # by the alarm's event, every renamed field has been seen that many times, unexpected and absent alike
    seen = alert.events_seen - 1000
    assert sorted(alert.current["unexpected_names"]) == sorted([n.upper(), seen] for n in names)
    assert sorted(alert.current["absent_features"]) == sorted([n, seen] for n in names)
    assert "NORMAL_00" in alert.diagnosis and "normal_00" in alert.diagnosis


def test_a_field_absent_without_unexpected_names_is_a_missing_value(stream):
    """A producer that omits null fields: the feature's missing rate, no schema alert."""
    monitor = ModelMonitor(stream.baseline())
    events = copy.deepcopy(stream.events[:1200])
    for ev in events[1000:]:
        del ev["features"]["normal_00"]
    alerts = monitor.update_batch(events)
    assert [(a.feature, a.detector) for a in alerts] == [("normal_00", "missing_rate")]


def test_names_stay_bounded_and_cheap_under_ever_new_names(stream):
    monitor = ModelMonitor(stream.baseline())
    events = copy.deepcopy(stream.events[:2000])
    for i, ev in enumerate(events):
        ev["features"].update((f"junk_{i}_{k}", 1.0) for k in range(50))
    alerts = monitor.update_batch(events)
    assert [(a.feature, a.detector) for a in alerts] == [(None, "schema")]
    state = monitor.state_dict()
    assert len(state["unexpected_names"]["items"]) == monitor.config.max_unexpected_names
    assert len(alerts[0].current["unexpected_names"]) <= 10
