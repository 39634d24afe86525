"""An unseen-category flood costs each value one sketch update, whatever the alarms: the alarms'
top unseen values (asked every CUSUM block in a flood) carry on from the last one's instead of
replaying the batch's values into a new sketch copy each time. Counted, not timed."""
from __future__ import annotations

import copy

from detectors.model import ModelMonitor
from detectors.sketches import SpaceSaving
from stream.devkit.synthetic import scenarios as streams


def test_an_unseen_flood_costs_each_value_a_bounded_number_of_sketch_updates(monkeypatch):
    stream = streams.stationary(4000, seed=5, n_train=5000)
    events = copy.deepcopy(stream.events)
    for i, ev in enumerate(events):
        for name in stream.categorical:
            ev["features"][name] = f"new-{name}-{i}"
    calls = []
    update, update_each = SpaceSaving.update, SpaceSaving.update_each
    monkeypatch.setattr(SpaceSaving, "update",
                        lambda self, value, count=1: (calls.append(1), update(self, value, count)))

    def counted_update_each(self, values, exclude=None):
        values = list(values)
        calls.extend([1] * len(values))
        update_each(self, values, exclude)

    monkeypatch.setattr(SpaceSaving, "update_each", counted_update_each)
    monitor = ModelMonitor(stream.baseline())
    alerts = [a for i in range(0, len(events), 1000) for a in monitor.update_batch(events[i:i + 1000])]
    assert {(a.feature, a.detector) for a in alerts} >= {(n, "unseen_category") for n in stream.categorical}
    values = len(events) * len(stream.categorical)
    # each value: once into its feature's sketch, at most once more into the copy the alarms read
    # (a second copy when an alert asks about an earlier event than the last alarm did)
    assert values <= len(calls) <= 3 * values, (len(calls), values)
