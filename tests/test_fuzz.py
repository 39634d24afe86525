"""Fuzz of the data path in-process: `decode_message` -> `ModelRouter`, the path the worker and
`replay` share. Whatever the bytes, nothing raises, every event is either monitored or rejected
with a reason (processed + rejected == produced), the alerts stay JSON-serialisable (the worker
sends them with orjson), and the monitors' state stays bounded however many distinct hostile
values arrive.

`hostile_messages` is also what tests/integration/test_reliability.py feeds a real worker.
"""
from __future__ import annotations

import math
import random
from typing import Any, NamedTuple

import msgpack
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.events import REASONS, Limits, decode_message
from detectors.routing import ModelRouter
from tests.stream.helpers import credit_baseline, events, fraud_baseline, poison_monitors  # noqa: F401 (fixtures)

FIELDS = ("model", "features", "confidence", "prediction", "ts", "model_version", "request_id")
#: values of the wrong type for any field: containers, huge and special numbers, huge strings
WRONG = ([1, 2], {"a": {"b": [1]}}, [], {}, 2**63 - 1, -(2**63), 2**64 - 1, math.nan, math.inf, -math.inf,
         True, None, "", "x" * 20_000, b"\x00\xff", 1.5)
#: bytes a message may start with that make it a list in JSON or msgpack (so several events)
_LIST_STARTS = frozenset(b"[ \t\r\n") | frozenset(range(0x90, 0xA0)) | {0xDC, 0xDD}


class Hostile(NamedTuple):
    key: bytes | None
    value: bytes
    #: accounting units: the events of a list message (each is monitored or rejected on its
    #: own), else 1 (the message is one event, or rejected whole)
    units: int
    kind: str


def _pack(obj: Any, rng: random.Random) -> bytes:
    """JSON or msgpack at random; msgpack when JSON cannot carry the value (NaN, bytes, ...)."""
    if rng.random() < 0.5:
        try:
            return orjson.dumps(obj)
        except (TypeError, orjson.JSONEncodeError):
            pass
    return msgpack.packb(obj, use_bin_type=True)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def hostile_messages(
    n: int, seed: int, models: tuple[str, ...] = ("credit",), limits: Limits = Limits()
) -> list[Hostile]:
    """`n` messages mixing valid events of `models` with every kind of bad input; seeded."""
    rng = random.Random(seed)
    template = events(models[0], 200, seed=seed)

    def event() -> dict:
        ev = dict(rng.choice(template))
        ev["model"] = rng.choice(models)
        ev["features"] = dict(ev["features"])
        return ev

    def wrong_field() -> dict:
        ev = event()
        ev[rng.choice(FIELDS)] = rng.choice(WRONG)
        return ev

    def wrong_feature() -> dict:
        ev = event()
        ev["features"][rng.choice(["amount", "age", "country", "extra"])] = rng.choice(WRONG)
        return ev

    def unseen() -> dict:
        ev = event()
        ev["features"]["country"] = f"c{rng.getrandbits(64):x}" * rng.choice([1, 1, 1, 500])
        ev["features"][f"unexpected_{rng.getrandbits(32)}"] = 1.0
        return ev

    def single(make) -> bytes:
        return _pack(make(), rng)

    def element() -> Any:
        return rng.choice([event, event, event, wrong_field, wrong_feature, unseen,
                           lambda: dict(event(), model="ghost"), lambda: rng.choice(WRONG)])()

    out: list[Hostile] = []
    for _ in range(n):
        kind = rng.choice(["valid", "valid", "list", "list", "wrong_field", "wrong_feature", "unseen",
                           "random_bytes", "truncated", "nested", "huge", "duplicate_keys", "unknown_model",
                           "too_many_events", "too_many_features", "odd_keys"])
        units = 1
        if kind == "valid":
            value = single(event)
        elif kind == "list":
            items = [element() for _ in range(rng.randint(0, 100))]
            value = _pack(items, rng)
            units = len(items) if len(items) <= limits.max_events_per_message else 1
        elif kind == "wrong_field":
            value = single(wrong_field)
        elif kind == "wrong_feature":
            value = single(wrong_feature)
        elif kind == "unseen":
            value = single(unseen)
        elif kind == "random_bytes":
            value = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
            if value[:1] and value[0] in _LIST_STARTS:
                value = b"\x01" + value  # never a list: one unit whatever it decodes to
        elif kind == "truncated":
            whole = _pack([event() for _ in range(rng.randint(1, 20))], rng)
            value = whole[: rng.randrange(len(whole))]  # a prefix of a list is never a whole list
        elif kind == "nested":  # beyond the parsers' depth limits, or just within them
            depth = rng.choice([10, 500, 5000])
            if rng.random() < 0.5:
                value = _pack(_nested(min(depth, 500)), rng) if depth < 5000 else b"[" * depth + b"]" * depth
            else:
                value = b'{"model":"%s","features":{"amount":%s}}' % (models[0].encode(), b"[" * depth + b"]" * depth)
        elif kind == "huge":
            which = rng.choice(["message", "model", "category", "feature_name"])
            size = min(100_000, limits.max_message_bytes // 2)
            ev = event()
            if which == "message":
                ev["features"]["country"] = "y" * (limits.max_message_bytes + 1)
            elif which == "model":
                ev["model"] = "m" * size
            elif which == "category":
                ev["features"]["country"] = "z" * size
            else:
                ev["features"]["n" * size] = 1.0
            value = _pack(ev, rng)
        elif kind == "duplicate_keys":
            value = b'{"model":"%s","features":{"amount":1,"amount":"x"},"model":"%s","ts":1,"ts":[1]}' % (
                models[0].encode(), rng.choice(models + ("ghost",)).encode())
        elif kind == "unknown_model":
            value = single(lambda: dict(event(), model=f"ghost{rng.randrange(1000)}"))
        elif kind == "too_many_events":
            value = _pack([0] * (limits.max_events_per_message + 1), rng)
        elif kind == "too_many_features":
            ev = event()
            ev["features"] = {f"f{i}": i for i in range(limits.max_features_per_event + 1)}
            value = _pack(ev, rng)
        else:  # msgpack-only shapes: non-string keys, ext types, timestamps, binary values
            ev = event()
            ev["features"].update({1: 2.0, None: "n", 2.5: [1], b"amount": 3.0,
                                   "age": rng.choice([msgpack.ExtType(5, b"xx"), msgpack.Timestamp(1, 0), b"\x00"])})
            value = msgpack.packb(ev, use_bin_type=True)
        if len(value) > limits.max_message_bytes:
            units = 1  # rejected whole, unread
        key = rng.choice([None, b"", models[0].encode(), bytes(rng.getrandbits(8) for _ in range(8))])
        out.append(Hostile(key, value, units, kind))
    return out


def run(router: ModelRouter, payloads: list[bytes], limits: Limits = Limits()) -> tuple[int, list, list]:
    """(events monitored, rejects, alerts): decode each payload, route the valid events."""
    decoded, rejects = [], []
    for payload in payloads:
        evs, bad = decode_message(payload, limits)
        decoded.extend(evs)
        rejects.extend(bad)
    alerts, routed_out = router.process(decoded)
    return len(decoded) - len(routed_out), rejects + routed_out, alerts


def assert_accounted(router: ModelRouter, messages: list[Hostile], limits: Limits = Limits()) -> tuple[int, list]:
    monitored, rejects, alerts = run(router, [m.value for m in messages], limits)
    assert monitored + len(rejects) == sum(m.units for m in messages)
    assert {r.reason for r in rejects} <= set(REASONS)
    for alert in alerts:
        orjson.dumps(alert.to_dict())  # what the worker sends: must not raise
    return monitored, rejects


# ---- seeded random fuzz ------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_hostile_messages_never_raise_and_are_all_accounted_for(seed, credit_baseline, fraud_baseline):
    router = ModelRouter([credit_baseline, fraud_baseline])
    messages = hostile_messages(1500, seed, models=("credit", "fraud"))
    monitored, rejects = assert_accounted(router, messages)
    assert monitored > 0 and rejects  # the mix really has both
    assert {m.kind for m in messages} >= {"random_bytes", "truncated", "nested", "huge", "too_many_events"}


def test_smaller_caps_reject_more_and_still_account_for_everything(credit_baseline):
    limits = Limits(max_message_bytes=2_000, max_events_per_message=10, max_features_per_event=5)
    messages = hostile_messages(500, 7, limits=limits)
    _, rejects = assert_accounted(ModelRouter([credit_baseline]), messages, limits)
    assert {"oversized", "too_many_events", "too_many_features"} <= {r.reason for r in rejects}


def test_every_field_of_every_wrong_type(credit_baseline):
    """One event per (field, wrong value), alone and in a batch with good events."""
    good = events("credit", 50, seed=3)
    for field in FIELDS:
        for wrong in WRONG:
            bad = dict(good[0], **{field: wrong})
            for messages in ([bad], good[:25] + [bad] + good[25:]):
                payload = msgpack.packb(messages, use_bin_type=True)
                monitored, rejects, _ = run(ModelRouter([credit_baseline]), [payload])
                assert monitored + len(rejects) == len(messages), (field, wrong)


def test_drift_alerts_survive_hostile_fields_in_the_triggering_events(credit_baseline):
    """Alerts quote the triggering event's ts and model_version: wrong types there must still
    give a JSON-serialisable alert."""
    rng = random.Random(5)
    drifting = events("credit", 3000, seed=4, amount_mean=200.0)
    for ev in drifting:
        ev["ts"], ev["model_version"] = rng.choice(WRONG), rng.choice(WRONG)
    messages = [Hostile(None, msgpack.packb(drifting[i:i + 100], use_bin_type=True), 100, "list")
                for i in range(0, 3000, 100)]
    router = ModelRouter([credit_baseline])
    monitored, rejects, alerts = run(router, [m.value for m in messages])
    assert monitored + len(rejects) == 3000 and any(a.kind == "drift" for a in alerts)
    for alert in alerts:
        orjson.dumps(alert.to_dict())


# ---- bounded state ------------------------------------------------------------------------------
def state_bytes(router: ModelRouter, model: str) -> int:
    return len(msgpack.packb(router.state_dict(model), use_bin_type=True))


def grow(router: ModelRouter, n: int, distinct, batch: int = 1000) -> tuple[int, int]:
    """Feed `n` events, each made hostile by `distinct(event, k)` with k unique; the state's
    msgpack size (what is checkpointed) before and after."""
    template = events("credit", batch, seed=6)
    router.process(template * 2)  # warm: every fixed-size buffer full
    before = state_bytes(router, "credit")
    for start in range(0, n, batch):
        router.process([distinct(dict(e, features=dict(e["features"])), start + i) for i, e in enumerate(template)])
    return before, state_bytes(router, "credit")


def unseen_category(ev: dict, k: int) -> dict:
    ev["features"]["country"] = f"unseen-{k}-" + "u" * (k % 300)  # long ones too: labels are truncated
    return ev


def unexpected_name_and_version(ev: dict, k: int) -> dict:
    ev["features"][f"extra-{k}-" + "n" * (k % 200)] = k
    ev["model_version"] = f"v{k}"
    return ev


def test_state_stays_bounded_under_100k_distinct_unseen_categories(credit_baseline):
    """Top-K unseen values per feature (20 labels of <= 64 characters) and recent buffers of
    fixed length: the checkpoint does not grow with the count of distinct values."""
    router = ModelRouter([credit_baseline])
    before, after = grow(router, 100_000, unseen_category)
    assert router.monitor("credit").events_seen == 102_000
    assert after - before < 16_000, (before, after)


def test_state_stays_bounded_under_distinct_unexpected_names_and_versions(credit_baseline):
    """100 unexpected feature names and 16 model versions at most are tracked."""
    router = ModelRouter([credit_baseline])
    before, after = grow(router, 10_000, unexpected_name_and_version)
    assert after - before < 16_000, (before, after)


# ---- hypothesis ---------------------------------------------------------------------------------
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=50),
                         st.text(max_size=5_000).map(lambda s: s * 3))
any_value = st.recursive(json_scalars | st.binary(max_size=20),
                         lambda inner: (st.lists(inner, max_size=5)
                                        | st.dictionaries(st.text(max_size=10), inner, max_size=5)),
                         max_leaves=20)
hostile_events = st.fixed_dictionaries(
    {"model": st.sampled_from(["credit", "fraud", "ghost"]) | any_value},
    optional={"features": st.dictionaries(st.sampled_from(["amount", "age", "country"]) | st.text(max_size=20),
                                          any_value, max_size=8) | any_value,
              **{f: any_value for f in FIELDS[2:]}})
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.binary(max_size=2_000))
def test_random_bytes(data):
    events_, rejects = decode_message(data)
    assert {r.reason for r in rejects} <= set(REASONS)
    if not data[:1] or data[0] not in _LIST_STARTS:  # not a list: one event or one reject
        assert len(events_) + len(rejects) == 1


@FUZZ
@given(st.lists(hostile_events, max_size=30), st.booleans(), st.data())
def test_hostile_event_lists_through_the_router(credit_baseline, fraud_baseline, evs, as_json, data):
    payload = (msgpack.packb(evs, use_bin_type=True) if not as_json
               else orjson.dumps(evs, option=orjson.OPT_NON_STR_KEYS, default=repr))
    if data.draw(st.booleans()):  # truncated
        payload = payload[: data.draw(st.integers(0, max(len(payload) - 1, 0)))]
        units = 1
    else:
        units = len(evs)
    monitored, rejects, alerts = run(ModelRouter([credit_baseline, fraud_baseline]), [payload])
    assert monitored + len(rejects) == units
    for alert in alerts:
        orjson.dumps(alert.to_dict())


# ---- the guard against a monitor that raises ----------------------------------------------------
@pytest.mark.parametrize("pack", [msgpack.packb, orjson.dumps])  # the dict path, the columnar decoder
@pytest.mark.parametrize("chunk", [333, 2000, 100_000])
def test_an_event_a_monitor_raises_on_costs_only_itself(credit_baseline, monkeypatch, chunk, pack):
    """detectors.processing isolates events that make a monitor raise (a detectors/ bug): they are
    rejected as monitor_error, the rest of the batch gives exactly the alerts and state of a
    run without them, whatever the chunks the batch is fed to the monitors in."""
    from detectors import processing
    from detectors.processing import MONITOR_ERROR, process_messages

    monkeypatch.setattr(processing, "MONITOR_CHUNK", chunk)

    stream = events("credit", 1500, seed=8) + events("credit", 2500, seed=9, amount_mean=160.0)
    poison = {17, 1800, 3999}
    payloads = [pack(dict(ev, request_id="poison") if i in poison else ev) for i, ev in enumerate(stream)]
    clean = ModelRouter([credit_baseline])
    expected = [a.to_dict() for a in clean.process([ev for i, ev in enumerate(stream) if i not in poison])[0]]
    router = ModelRouter([credit_baseline])
    poison_monitors(monkeypatch)
    alerts, rejects, counts = process_messages(router, payloads)
    assert sorted(i for i, _ in rejects) == sorted(poison) and {r.reason for _, r in rejects} == {MONITOR_ERROR}
    assert "TypeError" in rejects[0][1].detail
    assert counts == {"credit": len(stream) - len(poison)}
    assert [a.to_dict() for a in alerts] == expected
    assert router.state_dict("credit") == clean.state_dict("credit")



# ---- the columnar decoder against the dict path ----------------------------------------------------
#: JSON texts of feature values that the two decoders must read alike: numbers at the edges of int64 /
#: uint64 / double, -0, exponents, escapes, unicode, booleans, nulls, containers, unseen labels
_ODD_VALUES = [b"0", b"-0", b"-0.0", b"1E2", b"1e-400", b"1e400", b"9223372036854775807", b"9223372036854775808",
               b"-9223372036854775809", b"18446744073709551616", b"123456789012345678901234567890", b"1.5e308",
               b"true", b"false", b"null", b"[]", b"{}", b'[1, {"a": null}]', b'"US"', b'"F\\u0052"',
               b'"\\u00e9t\\u00e9"',
               b'"caf\xc3\xa9"', b'"\\ud83d\\ude00"', b'"\\ud800"', b'"a\\"b"', b'"\\u0000"', b'"\xff"', b'"12"', b'""',
               b"NaN", b"Infinity", b"0.1", b"100", b"-3", b"2.5e1"]
_ODD_FIELDS = [b'"model_version": "1"', b'"model_version": "2"', b'"model_version": null', b'"model_version": 1',
               b'"confidence": 0.5', b'"confidence": 2', b'"confidence": null', b'"confidence": "x"',
               b'"confidence": true', b'"request_id": "r\\n1"', b'"ts": 1764000000.5', b'"extra": {"deep": [1, [2]]}',
               b'"features": {"amount": 1}', b'"model": "fraud"', b'"model": "ghost"', b'"model": ""', b'"model": 3',
               b'"model": "cr\\u0065dit"', b'"confidence": 1', b'"confidence": 1.0', b'"confidence": 0',
               b'"confidence": -0.0', b'"confidence": 1.0000000000000002', b'"confidence": -1e-300']


def _odd_json(rng: random.Random, template: list[dict]) -> bytes:
    """A JSON event written by hand around the columnar decoder's edges: odd values in its
    features (duplicated keys among them), odd top-level fields, odd spacing."""
    ev = rng.choice(template)
    feats = [b'"%s": %s' % (k.encode(), orjson.dumps(v)) for k, v in ev["features"].items()]
    for _ in range(rng.randint(0, 3)):
        name = rng.choice([b"amount", b"age", b"country", b"unexpected", b"am\\u006fount"])
        feats.insert(rng.randrange(len(feats) + 1), b'"%s": %s' % (name, rng.choice(_ODD_VALUES)))
    if rng.random() < 0.2:
        rng.shuffle(feats)
    fields = [b'"model": "%s"' % ev["model"].encode(), b'"features": {%s}' % b", ".join(feats),
              b'"confidence": %s' % orjson.dumps(ev["confidence"]), b'"ts": %s' % orjson.dumps(ev["ts"])]
    fields += rng.sample(_ODD_FIELDS, rng.randint(0, 2))
    space = rng.choice([b"", b" ", b"\n", b"\t "])
    return space + b"{" + b",".join(fields) + b"}" + space


def _outcome(router: ModelRouter, result) -> tuple:
    return ([a.to_dict() for a in result.alerts], [(i, r.reason, r.detail, r.raw) for i, r in result.rejects],
            dict(result.events_by_model),
            {m: msgpack.packb(router.state_dict(m, complete=True)) for m in router.monitored})


@pytest.mark.filterwarnings("error::RuntimeWarning")  # values near the float limits: no numpy noise in the log
@pytest.mark.parametrize("seed", range(3))
def test_the_columnar_decoder_gives_what_the_dict_path_gives(seed, credit_baseline, fraud_baseline, monkeypatch):
    """Random valid and invalid payloads (JSON mostly: the columnar decoder's; hostile ones of every
    kind; JSON written around its edges) with a drift, split into random calls and monitor chunks:
    the alerts, the rejects (reasons, details, bytes, order), the counts and every monitor's
    state are the same whether JSON events are read into the columns or decoded into dicts."""
    from detectors import processing
    from detectors.processing import process_messages

    rng = random.Random(seed)
    monkeypatch.setattr(processing, "MONITOR_CHUNK", rng.choice([64, 500, 2000]))
    template = (events("credit", 300, seed=seed) + events("fraud", 300, seed=seed + 1)
                + events("credit", 300, seed=seed + 2, amount_mean=170.0, age_mean=55.0))
    drift = events("credit", 3000, seed=seed + 3, amount_mean=170.0)
    payloads: list[bytes] = []
    hostile = [m.value for m in hostile_messages(600, seed, models=("credit", "fraud"))]
    for k in range(6000):
        roll = rng.random()
        if roll < 0.6:
            ev = drift[k % len(drift)] if k > 3000 else rng.choice(template)
            payloads.append(orjson.dumps(ev))
        elif roll < 0.8:
            payloads.append(_odd_json(rng, template))
        else:
            payloads.append(rng.choice(hostile))
    splits = sorted(rng.sample(range(1, len(payloads)), 5))

    def no_rollback(*args):  # no monitor raises here: a rollback would hide a columnar path gone to dicts
        raise AssertionError("a monitor raised")

    monkeypatch.setattr(processing._Journal, "roll_back", no_rollback)
    outcomes = []
    for columnar in (True, False):
        router = ModelRouter([credit_baseline, fraud_baseline])
        results = [process_messages(router, payloads[a:b], columnar=columnar)
                   for a, b in zip([0, *splits], [*splits, len(payloads)])]
        outcomes.append([_outcome(router, r) for r in results[:-1]] + [_outcome(router, results[-1])])
    for got, expected in zip(*outcomes):
        assert got[0] == expected[0]
        assert got[1] == expected[1]
        assert got[2] == expected[2]
        assert got[3] == expected[3]
    assert any(o[0] for o in outcomes[1]) and any(o[1] for o in outcomes[1])  # alerts and rejects both


@pytest.mark.parametrize("seed", range(3))
def test_the_columnar_decoder_reads_the_columns_the_dict_reader_reads(seed, credit_baseline):
    """Column for column (values, statuses, codes, absent and extra flags, the invalid count, the
    versions, the unseen labels): the scanned JSON events against their dicts, on JSON written
    around the decoder's edges."""
    import numpy as np

    from detectors import _decode
    from detectors.events import ParsedEvents
    from detectors.model import ModelMonitor

    rng = random.Random(seed)
    template = events("credit", 100, seed=seed)
    payloads = [_odd_json(rng, template) for _ in range(3000)]
    block, models = _decode.scan(payloads, 0, {"credit": "credit"}, 10**6, 200, 1000)
    rows = [i for i, m in enumerate(models) if m is not None]
    assert len(rows) > 1000
    columns = ModelMonitor(credit_baseline)._columns
    conf_scanned, conf_dicts = np.empty(len(rows)), np.empty(len(rows))
    dicts = [orjson.loads(payloads[i]) for i in rows]
    scanned = columns.extract_scanned(block, rows, ParsedEvents(payloads, rows), "1", conf_scanned)
    expected = columns.extract_events(dicts, "1", conf_dicts)
    for got, want in ((scanned[0].x, expected[0].x), (scanned[0].status, expected[0].status),
                      (scanned[1][0], expected[1][0]), (scanned[1][1], expected[1][1]), (scanned[2], expected[2]),
                      (conf_scanned, conf_dicts)):
        np.testing.assert_array_equal(got, want)
        assert np.array_equal(np.signbit(got), np.signbit(want)) if got.dtype.kind == "f" else True
    assert scanned[0].invalid_count == expected[0].invalid_count
    assert scanned[1][2] == expected[1][2] and scanned[3] == expected[3]
