"""The decoder: every input gives events or reasoned rejects, never an exception."""
import json

import msgpack
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.events import REASONS, Limits, Reject, dead_letter_record, decode_message, events_from_value

EVENT = {"model": "credit", "model_version": "3", "features": {"amount": 12.5, "country": "US", "income": None}}


@pytest.mark.parametrize("encode", [orjson.dumps, msgpack.packb], ids=["json", "msgpack"])
def test_one_event_and_a_list_decode_in_both_formats(encode):
    assert decode_message(encode(EVENT)) == ([EVENT], [])
    events, rejects = decode_message(encode([EVENT, EVENT]))
    assert events == [EVENT, EVENT] and rejects == []


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"{not json", "not_decodable"),
        (b"\xc1\xc1\xc1", "not_decodable"),
        (b"42", "not_an_object"),
        (b'"a string"', "not_an_object"),
        (b'{"features": {}}', "missing_model"),
        (b'{"model": "", "features": {}}', "missing_model"),
        (b'{"model": 7, "features": {}}', "missing_model"),
        (b'{"model": "m"}', "features_not_object"),
        (b'{"model": "m", "features": [1, 2]}', "features_not_object"),
    ],
)
def test_structurally_unusable_messages_are_rejected_with_their_reason(payload, reason):
    events, rejects = decode_message(payload)
    assert events == []
    assert [r.reason for r in rejects] == [reason]
    assert rejects[0].raw == payload and rejects[0].detail


def test_bad_values_do_not_reject_the_event():
    ev = {"model": "m", "features": {"x": "oops", "y": float("nan"), "z": [1]}, "confidence": 7}
    events, rejects = decode_message(msgpack.packb(ev))
    assert len(events) == 1 and rejects == []


def test_bad_elements_of_a_list_are_rejected_one_by_one():
    events, rejects = decode_message(orjson.dumps([EVENT, 3, {"model": "m", "features": None}, EVENT]))
    assert events == [EVENT, EVENT]
    assert [r.reason for r in rejects] == ["not_an_object", "features_not_object"]
    assert rejects[0].raw == b"3" and "element 1" in rejects[0].detail
    assert json.loads(rejects[1].raw) == {"model": "m", "features": None}


def test_size_caps():
    limits = Limits(max_message_bytes=100, max_events_per_message=2, max_features_per_event=3)
    big = orjson.dumps({"model": "m", "features": {"x": "a" * 200}})
    assert decode_message(big, limits)[1][0].reason == "oversized"
    assert decode_message(orjson.dumps([EVENT] * 3), Limits(max_events_per_message=2))[1][0].reason == "too_many_events"
    many = orjson.dumps({"model": "m", "features": {f"f{i}": i for i in range(4)}})
    assert decode_message(many, limits)[1][0].reason == "too_many_features"


def test_deep_nesting_is_rejected_not_a_crash():
    deep = b"[" * 100_000 + b"]" * 100_000
    events, rejects = decode_message(deep, Limits(max_message_bytes=1_000_000))
    assert events == [] and rejects[0].reason == "not_decodable"


def test_a_deep_value_built_in_python_is_dead_lettered_not_a_crash():
    deep: object = 1
    for _ in range(100_000):  # deeper than orjson, msgpack and repr go
        deep = {"a": [deep]}
    events, rejects = events_from_value([{"model": "m", "features": {}}, {"features": deep}])
    assert len(events) == 1 and rejects[0].reason == "missing_model"
    assert rejects[0].raw.startswith(b"{'features': {'a': [{'a': [")


def test_dead_letter_record_keeps_the_original_bytes():
    rec = dead_letter_record(Reject("not_decodable", "bad", b"\xff\x00"), {"offset": 4})
    assert rec["raw"] is None and rec["raw_b64"] == "/wA=" and rec["source"] == {"offset": 4}
    orjson.dumps(rec)  # always serialisable


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_and_are_fully_accounted(data):
    events, rejects = decode_message(data)
    assert all(r.reason in REASONS for r in rejects)
    assert all(isinstance(e, dict) and isinstance(e["features"], dict) for e in events)
    if not events and not rejects:  # only an empty list holds nothing
        assert msgpack.unpackb(data) == [] if data[:1] == b"\x90" else orjson.loads(data) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(json_values | st.fixed_dictionaries({"model": st.text(max_size=5), "features": json_values}),
                max_size=5))
def test_every_element_of_a_list_is_an_event_or_a_reject(items):
    events, rejects = decode_message(msgpack.packb(items))
    assert len(events) + len(rejects) == len(items)


_items = st.one_of(
    st.fixed_dictionaries({"model": st.one_of(st.text(max_size=6), st.integers(), st.none()),
                           "features": st.one_of(st.dictionaries(st.text(max_size=3), st.integers(), max_size=5),
                                                 st.lists(st.integers(), max_size=2), st.none())}),
    st.fixed_dictionaries({"features": st.just({})}),
    st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_items, max_size=6))
def test_all_usable_is_every_item_passing_the_per_event_check(items):
    from detectors.events import _check, all_usable

    limits = Limits(max_model_name=4, max_features_per_event=3)
    expected = bool(items) and all(type(i) is dict and _check(i, limits) is None for i in items)
    assert all_usable(items, limits) == expected
