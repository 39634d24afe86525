"""The join topics' records as they arrive: decoding a message, a record's stream time, and what
counts as a number or a missing value in a decoded record."""
from __future__ import annotations

import math
from typing import Any

from detectors.events import Limits, Reject, encode_value, parse_message

__all__ = ["decode_join_records", "is_missing", "is_number", "record_time"]


def is_number(v: Any) -> bool:
    """An int or float, not a bool (JSON true is not 1 here).

    >>> is_number(1.5), is_number(True), is_number("2")
    (True, False, False)
    """
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_missing(v: Any) -> bool:
    """None or NaN: no value on this side of a join.

    >>> is_missing(None), is_missing(float("nan")), is_missing(0)
    (True, True, False)
    """
    return v is None or (isinstance(v, float) and math.isnan(v))


def record_time(record: dict, default: float | None) -> float | None:
    """A record's stream time: its finite numeric `ts`, else `default`."""
    ts = record.get("ts")
    if is_number(ts) and math.isfinite(ts):
        return float(ts)
    return default


def decode_join_records(data: bytes, kind: str, limits: Limits = Limits()) -> tuple[list[dict], list[Reject]]:
    """One message of the feature log (`kind` "feature_log") or of the labels ("labels"): one record
    or a list, JSON or msgpack, like prediction events. Never raises on any input bytes.

    >>> decode_join_records(b'[{"request_id": "r1", "label": 1}, {"label": 0}]', "labels")[0]
    [{'request_id': 'r1', 'label': 1}]
    >>> [r.reason for r in decode_join_records(b'{"request_id": "r1", "model": "m"}', "feature_log")[1]]
    ['features_not_object']
    """
    if len(data) > limits.max_message_bytes:
        return [], [Reject("oversized", f"message of {len(data)} bytes exceeds {limits.max_message_bytes}", data)]
    obj, err = parse_message(data, limits)
    if err is not None:
        return [], [Reject("not_decodable", err, data)]
    items = obj if type(obj) is list else [obj]
    if len(items) > limits.max_events_per_message:
        return [], [Reject("too_many_events", f"{len(items)} records in one message exceeds "
                           f"{limits.max_events_per_message}", data)]
    records, rejects = [], []
    for item in items:
        problem = _join_record_problem(item, kind, limits)
        if problem is None:
            records.append(item)
        else:
            rejects.append(Reject(problem[0], problem[1], data if item is obj else encode_value(item)))
    return records, rejects


def _join_record_problem(rec: Any, kind: str, limits: Limits) -> tuple[str, str] | None:
    if type(rec) is not dict:
        return "not_an_object", f"a {type(rec).__name__}, not a {kind} record object"
    request_id = rec.get("request_id")
    if type(request_id) is not str or not request_id:
        return "missing_request_id", "no non-empty string 'request_id' field"
    if kind == "labels":
        if is_missing(rec.get("label")):
            return "missing_label", "no 'label' field (or it is null)"
        return None
    model = rec.get("model")
    if type(model) is not str or not model or len(model) > limits.max_model_name:
        return "missing_model", "no non-empty string 'model' field"
    features = rec.get("features")
    if type(features) is not dict:
        return "features_not_object", "'features' absent or not an object"
    if len(features) > limits.max_features_per_event:
        return "too_many_features", f"{len(features)} features exceeds {limits.max_features_per_event}"
    return None
