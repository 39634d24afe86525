"""detectors.routing: one monitor per model; a baseline is the same one when its content is
(`Baseline.fingerprint`), whenever and wherever it was built."""
from __future__ import annotations

import dataclasses

from baselines.profile import Baseline
from detectors.routing import ModelRouter
from tests.stream.helpers import credit_baseline, events, training_baseline  # noqa: F401 (fixtures)


def test_a_baseline_rebuilt_from_the_same_data_keeps_the_monitor_and_its_alert_ids_never_repeat(tmp_path,
                                                                                               credit_baseline):
    router = ModelRouter([credit_baseline])
    first = router.process(events("credit", 2500, seed=1, amount_mean=160.0))[0]
    assert any(a.feature == "amount" for a in first), "the drift must be alerted for this test to mean anything"

    # the training data profiled again, later: another file, the same content
    rebuilt = dataclasses.replace(training_baseline("credit", seed=0), created=credit_baseline.created + 86_400.0)
    rebuilt.save(tmp_path / "credit.msgpack")
    rebuilt = Baseline.load(tmp_path / "credit.msgpack")
    assert rebuilt.created != credit_baseline.created and rebuilt.fingerprint == credit_baseline.fingerprint
    monitor = router.monitor("credit")
    router.set_baseline(rebuilt)
    assert router.monitor("credit") is monitor and monitor.events_seen == 2500

    # the drift goes, then comes back: a new episode, under new ids
    router.process(events("credit", 8000, seed=2))
    again = router.process(events("credit", 2500, seed=3, amount_mean=160.0))[0]
    assert any(a.feature == "amount" for a in again)
    assert not {a.alert_id for a in again} & {a.alert_id for a in first}


def test_a_baseline_of_other_content_starts_a_fresh_monitor(credit_baseline):
    router = ModelRouter([credit_baseline])
    router.process(events("credit", 100, seed=1))
    router.set_baseline(training_baseline("credit", seed=5))
    assert router.monitor("credit").events_seen == 0


def test_a_monitor_is_created_at_its_models_first_event_only(credit_baseline):
    # (a router built one monitor per model up front: every partition held every model's)
    router = ModelRouter([credit_baseline, training_baseline("fraud", seed=3)])
    assert router.models == ["credit", "fraud"] and router.monitored == [] and not router.monitors()
    router.process(events("fraud", 10, seed=1))
    assert router.monitored == ["fraud"] and router.monitors()["fraud"].events_seen == 10
    assert router.unmonitored(["credit", "fraud", "nobody", "credit"]) == ["credit"]
    router.set_baseline(training_baseline("fraud", seed=4))  # other content: the monitor goes, no new one yet
    assert router.monitored == []
