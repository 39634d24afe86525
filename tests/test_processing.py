"""detectors.processing, the path of the worker, replay and report: a monitor that raises, even
while its state is saved or restored for the rollback, costs only its events, never the batch."""
from __future__ import annotations

from collections import Counter

import msgpack
import numpy as np
import orjson
import pytest

from detectors.model import ModelMonitor, MonitorConfig
from detectors.processing import MONITOR_ERROR, Hold, Processed, process_events, process_messages
from detectors.routing import ModelRouter
from tests.stream.helpers import as_json, credit_baseline, events, fraud_baseline, poison_monitors  # noqa: F401 (fixtures)


def _interleaved(n: int) -> list[dict]:
    """credit and fraud events, alternating (credit at even indices)."""
    return [ev for pair in zip(events("credit", n, seed=1), events("fraud", n, seed=2)) for ev in pair]


def test_a_model_whose_state_cannot_be_saved_loses_its_events_not_the_batch(credit_baseline, fraud_baseline,
                                                                            monkeypatch):
    state_dict = ModelMonitor.state_dict

    def broken_for_credit(monitor, complete=False):
        if monitor.baseline.model == "credit":
            raise RuntimeError("state of credit is broken")
        return state_dict(monitor, complete)

    monkeypatch.setattr(ModelMonitor, "state_dict", broken_for_credit)
    router = ModelRouter([credit_baseline, fraud_baseline])
    _, rejects, counts = process_messages(router, as_json(_interleaved(50)))
    assert [i for i, _ in rejects] == list(range(0, 100, 2))
    assert {r.reason for _, r in rejects} == {MONITOR_ERROR}
    assert "RuntimeError saving its state for a rollback: state of credit is broken" in rejects[0][1].detail
    assert counts == {"fraud": 50}
    assert router.monitor("fraud").events_seen == 50 and router.monitor("credit").events_seen == 0


def test_a_model_that_cannot_be_rolled_back_loses_the_events_of_the_failed_call(credit_baseline, fraud_baseline,
                                                                               monkeypatch):
    poison_monitors(monkeypatch)
    restore = ModelRouter.restore

    def no_restore_for_credit(router, model, state):
        if model == "credit":
            raise ValueError("cannot restore credit")
        restore(router, model, state)

    monkeypatch.setattr(ModelRouter, "restore", no_restore_for_credit)
    stream = _interleaved(20)
    stream[6] = dict(stream[6], request_id="poison")  # a credit event
    router = ModelRouter([credit_baseline, fraud_baseline])
    _, rejects, counts = process_events(router, stream)
    # the call that raised held every credit event: none can be given back to a rolled-back monitor
    assert [i for i, _ in rejects] == list(range(0, 40, 2))
    assert "ValueError restoring its state for a rollback: cannot restore credit" in rejects[0][1].detail
    assert counts == {"fraud": 20} and router.monitor("fraud").events_seen == 20


@pytest.mark.parametrize("origins", [None, [7] * 6])
def test_rejects_carry_the_origin_of_their_event(credit_baseline, origins):
    stream = events("credit", 4, seed=3)
    stream[1:1] = [{"model": "nobody", "features": {}}]
    stream[4:4] = [{"model": "other", "features": {}}]
    _, rejects, counts = process_events(ModelRouter([credit_baseline]), stream, origins)
    assert [(i, r.reason) for i, r in rejects] == [(1, "unknown_model"), (4, "unknown_model")] if origins is None \
        else [(7, "unknown_model")] * 2
    assert counts == {"credit": 4}


def _deep(kind: str, depth: int = 1000) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


#: the same 1,000-deep values as JSON text (orjson writes at most 255 levels)
_DEEP_JSON = {"list": b"[" * 1000 + b"1" + b"]" * 1000, "dict": b'{"a":' * 1000 + b"1" + b"}" * 1000}


def _count_monitor_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the event lists `ModelMonitor.update_batch` is called with (a bisection calls it again)."""
    calls: list[int] = []
    update_batch = ModelMonitor.update_batch
    monkeypatch.setattr(ModelMonitor, "update_batch", lambda m, evs: calls.append(len(evs)) or update_batch(m, evs))
    return calls


@pytest.mark.parametrize("encode", ["json", "msgpack"])
def test_deeply_nested_values_are_invalid_values_not_poisoned_events(credit_baseline, monkeypatch, encode):
    """A 1,000-deep value in a numeric feature, a categorical one or the confidence is that value's
    problem: the event is kept (no monitor_error, no bisection), the value counts as invalid."""
    calls = _count_monitor_calls(monkeypatch)
    stream = events("credit", 2000, seed=4)
    payloads = []
    for i, ev in enumerate(stream):  # 10% of the events carry a deep value, in turn in each place
        if i % 10 == 0:
            kind, place = ("list" if i % 20 else "dict"), ("amount", "country", "confidence")[(i // 10) % 3]
            value = "__deep__" if encode == "json" else _deep(kind)
            if place == "confidence":
                ev["confidence"] = value
            else:
                ev["features"][place] = value
        if encode == "json":
            payloads.append(orjson.dumps(ev).replace(b'"__deep__"', _DEEP_JSON[kind]))
        else:
            payloads.append(msgpack.packb(ev))
    router = ModelRouter([credit_baseline])
    result = process_messages(router, payloads)
    assert result.rejects == []
    assert result.events_by_model == {"credit": 2000}
    assert calls == [2000]
    invalid = {(a.feature, a.detector) for a in result.alerts if a.detector.startswith("invalid")}
    assert invalid == {("amount", "invalid_type"), ("country", "invalid_type"), ("confidence", "invalid_confidence")}
    state = router.monitor("credit").state_dict()
    assert all(len(e) <= 64 for kept in state["invalid_examples"] for e in kept)


#: a huge value of each shape: a 1 MB string (one of digits: a parser might try it as a number), a map
#: of 100k keys, a list of 100k items
_HUGE = {"string": "x" * 1_000_000, "digits": "1" * 1_000_000, "map": {f"k{i}": i for i in range(100_000)},
         "list": list(range(100_000))}
#: where a value can sit in an event (feature "extra" is not in the baseline)
_PLACES = ("amount", "country", "extra", "confidence", "model_version", "request_id", "ts")


@pytest.mark.parametrize("shape", sorted(_HUGE))
def test_huge_values_cost_bounded_work_and_output(credit_baseline, monkeypatch, shape):
    """A huge value anywhere in an event is that value's problem: the event is kept, the chunk is
    monitored in one call (no monitor_error, no bisection), and every alert, the snapshot and the
    state stay small, even with examples quoted. Before, a 1 MB model_version was copied whole
    into every alert (1 MB each)."""
    calls = _count_monitor_calls(monkeypatch)
    stream = events("credit", 2000, seed=4)
    for i, ev in enumerate(stream[::10]):  # 10% of the events, in turn in each place
        place = _PLACES[i % len(_PLACES)]
        if place in ("amount", "country", "extra"):
            ev["features"][place] = _HUGE[shape]
        else:
            ev[place] = _HUGE[shape]
    router = ModelRouter([credit_baseline], MonitorConfig(include_examples=True))
    result = process_events(router, stream)
    assert result.rejects == [] and result.events_by_model == {"credit": 2000}
    assert calls == [2000]
    assert result.alerts
    for alert in result.alerts:
        assert len(orjson.dumps(alert.to_dict())) < 8_000, (alert.detector, len(orjson.dumps(alert.to_dict())))
    monitor = router.monitor("credit")
    assert len(orjson.dumps(monitor.snapshot())) < 8_000
    assert len(msgpack.packb(monitor.state_dict())) < 64_000


# ---- the rollback journal: a model's state is packed once per window, a rollback re-feeds the calls since ----
def _drifting(model: str, n: int, seed: int) -> list[dict]:
    """n events of `model`, whose amount moves away from training halfway: alerts to compare."""
    return events(model, n // 2, seed) + events(model, n - n // 2, seed + 10, amount_mean=160.0)


def _packed_states(router: ModelRouter) -> dict[str, bytes]:
    return {m: msgpack.packb(router.state_dict(m, complete=True)) for m in router.monitored}


def _by_model(alerts: list) -> dict[str, list[dict]]:
    """Each model's alerts in order (a bisected call may give two models' alerts in another order)."""
    out: dict[str, list[dict]] = {}
    for a in alerts:
        out.setdefault(a.model, []).append(a.to_dict())
    return out


def _count_saves(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The models whose complete state is taken (a rollback's base), in order."""
    saves: list[str] = []
    state_dict = ModelMonitor.state_dict

    def counted(monitor, complete=False):
        if complete:
            saves.append(monitor.baseline.model)
        return state_dict(monitor, complete)

    monkeypatch.setattr(ModelMonitor, "state_dict", counted)
    return saves


def test_a_rollback_gives_back_the_state_before_the_call_from_a_base_many_calls_old(credit_baseline, fraud_baseline,
                                                                                   monkeypatch):
    """The bases are taken once, at the first call; a call that raises 16 calls later is rolled back
    by restoring them and feeding again the 16 calls logged since: the states are those before the
    call, byte for byte, and the run goes on with the alerts and states of a run without the event."""
    from detectors import processing

    monkeypatch.setattr(processing, "ROLLBACK_CALLS", 100)
    stream = [ev for pair in zip(_drifting("credit", 1200, 1), _drifting("fraud", 1200, 2)) for ev in pair]
    calls = [stream[i:i + 100] for i in range(0, len(stream), 100)]
    clean = ModelRouter([credit_baseline, fraud_baseline])
    expected = [a for call in calls for a in process_events(clean, call).alerts]
    saves = _count_saves(monkeypatch)
    poison_monitors(monkeypatch)
    router = ModelRouter([credit_baseline, fraud_baseline])
    alerts = [a for call in calls[:16] for a in process_events(router, call).alerts]
    assert sorted(saves) == ["credit", "fraud"]  # no state was packed after the first call
    before = _packed_states(router)
    poisoned = process_events(router, [dict(calls[16][3], request_id="poison")])
    assert [r.reason for _, r in poisoned.rejects] == [MONITOR_ERROR] and poisoned.alerts == []
    assert _packed_states(router) == before
    alerts += [a for call in calls[16:] for a in process_events(router, call).alerts]
    assert alerts and _by_model(alerts) == _by_model(expected)
    assert _packed_states(router) == _packed_states(clean)


def test_a_rollback_feeds_again_the_columnar_calls_logged_as_payload_numbers(credit_baseline, fraud_baseline,
                                                                              monkeypatch):
    """As above, through `process_messages` on JSON payloads: the calls the columnar decoder read
    are logged as payload numbers and made into dicts only for the rollback, which gives back the
    state before the failed call byte for byte."""
    from detectors import processing

    monkeypatch.setattr(processing, "ROLLBACK_CALLS", 100)
    stream = [ev for pair in zip(_drifting("credit", 1200, 1), _drifting("fraud", 1200, 2)) for ev in pair]
    calls = [[orjson.dumps(ev) for ev in stream[i:i + 100]] for i in range(0, len(stream), 100)]
    clean = ModelRouter([credit_baseline, fraud_baseline])
    expected = [a for call in calls for a in process_messages(clean, call).alerts]
    poison_monitors(monkeypatch)
    router = ModelRouter([credit_baseline, fraud_baseline])
    alerts = [a for call in calls[:16] for a in process_messages(router, call).alerts]
    before = _packed_states(router)
    poisoned = process_messages(router, [orjson.dumps(dict(stream[1603], request_id="poison"))])
    assert [r.reason for _, r in poisoned.rejects] == [MONITOR_ERROR] and poisoned.alerts == []
    assert _packed_states(router) == before
    alerts += [a for call in calls[16:] for a in process_messages(router, call).alerts]
    assert alerts and _by_model(alerts) == _by_model(expected)
    assert _packed_states(router) == _packed_states(clean)


@pytest.mark.parametrize("window", [100, 2, 0])
def test_poisoned_events_in_calls_of_two_models_cost_only_themselves(credit_baseline, fraud_baseline, monkeypatch,
                                                                     window):
    """Poisoned events of either model in the middle of calls, with a journal that keeps every call,
    lets its bases go every few calls, or keeps no call (a base before every call): the alerts and
    states of a run without them."""
    from detectors import processing

    monkeypatch.setattr(processing, "ROLLBACK_CALLS", window)
    stream = [ev for pair in zip(_drifting("credit", 1500, 3), _drifting("fraud", 1500, 4)) for ev in pair]
    poison = {5, 700, 701, 1999, 2950}
    calls = [list(range(i, min(i + 120, len(stream)))) for i in range(0, len(stream), 120)]
    clean = ModelRouter([credit_baseline, fraud_baseline])
    expected = [a for c in calls for a in process_events(clean, [stream[k] for k in c if k not in poison]).alerts]
    poison_monitors(monkeypatch)
    router = ModelRouter([credit_baseline, fraud_baseline])
    alerts, rejected = [], []
    for c in calls:
        result = process_events(router, [dict(stream[k], request_id="poison") if k in poison else stream[k] for k in c],
                                c)
        alerts += result.alerts
        rejected += [(k, r.reason) for k, r in result.rejects]
    assert rejected == [(k, MONITOR_ERROR) for k in sorted(poison)]
    assert alerts and _by_model(alerts) == _by_model(expected)
    assert _packed_states(router) == _packed_states(clean)


def test_events_a_monitor_took_outside_the_journal_are_kept_by_a_rollback(credit_baseline, monkeypatch):
    """A monitor fed between two calls outside `process_events` (its events are in no logged call)
    gets a new base: a rollback keeps those events instead of going back to before them."""
    stream = _drifting("credit", 900, 5)
    router = ModelRouter([credit_baseline])
    process_events(router, stream[:300])
    router.monitor("credit").update_batch(stream[300:600])
    poison_monitors(monkeypatch)
    before = _packed_states(router)
    assert process_events(router, [dict(stream[600], request_id="poison")]).rejects[0][1].reason == MONITOR_ERROR
    assert _packed_states(router) == before


def test_a_monitor_restored_between_calls_is_rolled_back_to_its_restored_state(credit_baseline, monkeypatch):
    """A checkpoint restored between two calls (another monitor, the same event count) gets a new
    base: a rollback goes back to the restored state, not to the replaced monitor's."""
    router, other = ModelRouter([credit_baseline]), ModelRouter([credit_baseline])
    process_events(router, events("credit", 300, seed=6))
    process_events(other, _drifting("credit", 300, 7))
    router.restore("credit", other.state_dict("credit", complete=True))
    poison_monitors(monkeypatch)
    before = _packed_states(router)
    assert process_events(router, [dict(events("credit", 1, seed=8)[0], request_id="poison")]).rejects
    assert _packed_states(router) == before == _packed_states(other)


# ---- the hold: a model's events fed together once it has enough of them -------------------------
def _rough(model: str, n: int, seed: int) -> list[dict]:
    """A drifting stream with every kind of value the columns join: unseen and invalid categories,
    invalid and missing numbers, an unexpected field, model versions absent, the baseline's and other."""
    out = []
    for i, ev in enumerate(_drifting(model, n, seed)):
        features = dict(ev["features"])
        if i % 7 == 3 and i > n // 3:
            features["country"] = f"Z{i % 5}"
        if i % 13 == 5:
            features["amount"] = "n/a"
        if i % 11 == 2:
            del features["age"]
        if i % 17 == 0:
            features["country"] = ["not", "a", "label"]
        if i % 19 == 4:
            features["surprise"] = 1
        ev = dict(ev, features=features)
        if (i // 150) % 3 == 1:
            ev["model_version"] = "2" if i % 2 else "1"
        elif (i // 150) % 3 == 2:
            del ev["model_version"]
        out.append(ev)
    return out


def _two_models(n: int) -> list[dict]:
    """credit and fraud, unevenly interleaved: runs of either, single events, both."""
    credit, fraud = iter(_rough("credit", n, 21)), iter(_rough("fraud", n, 22))
    rng = np.random.default_rng(5)
    out = []
    for run in rng.integers(1, 60, 4 * n):
        source = credit if len(out) % 3 else fraud
        out += [ev for _, ev in zip(range(run), source)]
        if len(out) >= 2 * n - 60:
            break
    return out + list(credit) + list(fraud)


def _states(router: ModelRouter) -> dict[str, bytes]:
    return {m: msgpack.packb(router.state_dict(m, complete=True)) for m in router.monitored}


@pytest.mark.parametrize("columnar", [False, True])
@pytest.mark.parametrize("hold_events", [1, 40, 333])
def test_the_hold_gives_the_alerts_counts_and_states_of_feeding_every_event_at_once(credit_baseline, fraud_baseline,
                                                                                   columnar, hold_events):
    """Calls of 1 to 150 events of two models, held until a model has `hold_events` (and flushed at
    the end): each model's alerts in the same order, the same counts, and states byte for byte."""
    stream = _two_models(1500)
    rng = np.random.default_rng(hold_events)
    cuts = np.cumsum(rng.integers(1, 150, len(stream))).tolist()
    calls = [stream[a:b] for a, b in zip([0] + cuts, cuts) if a < len(stream)]
    clean = ModelRouter([credit_baseline, fraud_baseline])
    expected = process_events(clean, stream)
    router, hold = ModelRouter([credit_baseline, fraud_baseline]), Hold(hold_events)
    alerts, counts, held = [], Counter(), []
    for call in calls:
        result = (process_messages(router, as_json(call), hold=hold) if columnar
                  else process_events(router, call, hold=hold))
        alerts += result.alerts
        counts += result.events_by_model
        held.append(len(hold))
        assert not result.rejects
    flushed = hold.flush(router)
    alerts += flushed.alerts
    counts += flushed.events_by_model
    assert len(hold) == 0 and (hold_events == 1 or max(held) > 0)
    assert expected.alerts and _by_model(alerts) == _by_model(expected.alerts)
    assert counts == expected.events_by_model
    assert _states(router) == _states(clean)


@pytest.mark.parametrize("columnar", [False, True])
def test_a_held_event_the_monitor_raises_on_is_rejected_alone_when_fed(credit_baseline, fraud_baseline, monkeypatch,
                                                                      columnar):
    """Poisoned events among held ones: rejected as monitor_error, with the origin the caller gave
    their payload, by the call that feeds them; the rest gives the alerts and states of a run
    without them, and the counts leave them out."""
    stream = _two_models(1200)
    poison = {10, 11, 500, 1777, len(stream) - 1}
    clean = ModelRouter([credit_baseline, fraud_baseline])
    expected = process_events(clean, [ev for k, ev in enumerate(stream) if k not in poison])
    poison_monitors(monkeypatch)
    router, hold = ModelRouter([credit_baseline, fraud_baseline]), Hold(50)
    alerts, rejected, counts = [], [], Counter()
    for start in range(0, len(stream), 90):
        call = [dict(stream[k], request_id="poison") if k in poison else stream[k]
                for k in range(start, min(start + 90, len(stream)))]
        origins = [1000 + k for k in range(start, start + len(call))]
        fed = (process_messages(router, as_json(call), origins=origins, hold=hold) if columnar
               else process_events(router, call, origins, hold=hold))
        for result in (fed, hold.flush(router) if start + 90 >= len(stream) else Processed([], [], Counter())):
            alerts += result.alerts
            rejected += [(k, r.reason) for k, r in result.rejects]
            counts += result.events_by_model
    assert sorted(rejected) == [(1000 + k, MONITOR_ERROR) for k in sorted(poison)]
    assert alerts and _by_model(alerts) == _by_model(expected.alerts)
    assert counts == expected.events_by_model and _states(router) == _states(clean)


def test_the_hold_feeds_the_models_holding_the_most_past_its_total(credit_baseline, fraud_baseline):
    """Past `total` events held, the biggest holders are fed until half of it is held; unknown
    models and undecodable payloads are rejected at once, never held."""
    router, hold = ModelRouter([credit_baseline, fraud_baseline]), Hold(events=1000, total=100)
    credit, fraud = events("credit", 80, seed=1), events("fraud", 30, seed=2)
    first = process_events(router, credit[:60] + fraud, hold=hold)
    assert first.events_by_model == {} and len(hold) == 90
    second = process_messages(router, as_json(credit[60:] + [{"model": "nobody", "features": {}}]) + [b"{oops"],
                              hold=hold)
    assert second.events_by_model == {"credit": 80} and len(hold) == 30
    assert [(i, r.reason) for i, r in second.rejects] == [(20, "unknown_model"), (21, "not_decodable")]


def test_held_events_of_a_model_whose_baseline_changed_go_to_the_new_one(credit_baseline):
    """Events held against one baseline and fed after the model got another (or was disabled) are
    fed to what the router has then, as events arriving then would be."""
    router, hold = ModelRouter([credit_baseline]), Hold(events=100)
    process_events(router, events("credit", 10, seed=1), hold=hold)
    router.disable_model("credit", "baseline file deleted")
    result = hold.flush(router)
    assert [r.reason for _, r in result.rejects] == ["baseline_unavailable"] * 10 and not result.events_by_model
