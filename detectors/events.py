"""Decoding prediction events: bytes in, structurally valid events and reasoned rejects out.

One message (a Kafka record value, or one line / one msgpack object of a replay file) holds
one event or a list of events, as JSON or msgpack, detected per message. An event is
rejected only when it is structurally unusable; a bad single value inside an accepted
event is the monitors' business (it counts against that feature's data quality).

>>> events, rejects = decode_message(b'{"model": "credit", "features": {"amount": 12.5}}')
>>> events[0]["features"], rejects
({'amount': 12.5}, [])
>>> _, rejects = decode_message(b'[{"model": "credit", "features": []}, 7]')
>>> [r.reason for r in rejects]
['features_not_object', 'not_an_object']
"""
from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import msgpack
import orjson

from detectors import _kernels
from detectors.fmt import quote_value

__all__ = ["REASONS", "Limits", "ParsedEvents", "Reject", "all_usable", "dead_letter_record", "decode_message",
           "encode_value", "events_from_value", "model_of", "parse_message"]

#: Why a message or event was rejected (the `reason` label of metrics and dead letters).
REASONS = (
    "not_decodable",  # neither JSON nor msgpack
    "oversized",  # message larger than Limits.max_message_bytes
    "too_many_events",  # a list longer than Limits.max_events_per_message
    "not_an_object",  # a JSON/msgpack value that is not a map
    "missing_model",  # no non-empty string `model`
    "features_not_object",  # `features` absent or not a map
    "too_many_features",  # more than Limits.max_features_per_event features
    "unknown_model",  # no baseline for this model (routing)
    "baseline_unavailable",  # the model's baseline file is corrupt or was deleted (routing)
    "monitor_error",  # the model's monitor raised on the event (a bug; the worker isolates it)
    "missing_request_id",  # a feature-log record or label without a request id (detectors.joins.wire)
    "missing_label",  # a label record without its label (detectors.joins.wire)
)

#: The model of an accepted event (every event `decode_message` returns has a string one).
model_of = itemgetter("model")

#: First bytes of a msgpack map or array; anything else is tried as JSON first.
_MSGPACK_CONTAINER = frozenset([*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF])


@dataclass(frozen=True)
class Limits:
    """Caps that keep one hostile message from costing unbounded memory or time."""

    max_message_bytes: int = 1_000_000
    max_events_per_message: int = 10_000
    max_features_per_event: int = 1_000
    max_model_name: int = 200


@dataclass(frozen=True)
class Reject:
    """A rejected message or event: the reason label, a readable detail, and the bytes to
    dead-letter (the original message, or the offending element of a list re-encoded)."""

    reason: str
    detail: str
    raw: bytes


def decode_message(data: bytes, limits: Limits = Limits()) -> tuple[list[dict], list[Reject]]:
    """Decode one message into (events, rejects); never raises on any input bytes.

    Parameters
    ----------
    data
        One message: an event or a list of events, JSON or msgpack.
    limits
        The caps a message must keep to (size, events, features, model name).

    Returns
    -------
    tuple of list of dict and list of Reject
        The usable events, in message order, and one `Reject` per unusable message or element.

    Examples
    --------
    >>> import msgpack
    >>> decode_message(msgpack.packb([{"model": "credit", "features": {"x": 1}}, "7"]))[0]
    [{'model': 'credit', 'features': {'x': 1}}]
    >>> [r.reason for r in decode_message(b"[1, 2, 3]", Limits(max_events_per_message=2))[1]]
    ['too_many_events']
    """
    if len(data) > limits.max_message_bytes:
        return [], [Reject("oversized", f"message of {len(data)} bytes exceeds {limits.max_message_bytes}", data)]
    obj, err = parse_message(data, limits)
    if err is not None:
        return [], [Reject("not_decodable", err, data)]
    return events_from_value(obj, data, limits)


def events_from_value(obj: Any, raw: bytes | None = None, limits: Limits = Limits()) -> tuple[list[dict], list[Reject]]:
    """Split an already-parsed message into events and rejects (`raw`: its original bytes)."""
    if type(obj) is dict:
        reason = _check(obj, limits)
        if reason is None:
            return [obj], []
        return [], [Reject(reason[0], reason[1], raw if raw is not None else encode_value(obj))]
    if type(obj) is not list:
        return [], [Reject("not_an_object", f"message is a {type(obj).__name__}, not an event object or a list",
                           raw if raw is not None else encode_value(obj))]
    if len(obj) > limits.max_events_per_message:
        return [], [Reject("too_many_events",
                           f"{len(obj)} events in one message exceeds {limits.max_events_per_message}",
                           raw if raw is not None else b"")]
    if all_usable(obj, limits):
        return obj, []
    events: list[dict] = []
    rejects: list[Reject] = []
    for i, item in enumerate(obj):
        if type(item) is dict:
            reason = _check(item, limits)
            if reason is None:
                events.append(item)
                continue
            reason = (reason[0], f"element {i}: {reason[1]}")
        else:
            reason = ("not_an_object", f"element {i} is a {type(item).__name__}, not an event object")
        rejects.append(Reject(reason[0], reason[1], encode_value(item)))
    return events, rejects


def parse_message(data: bytes, limits: Limits) -> tuple[Any, str | None]:
    """(the decoded value, None), or (None, why not): JSON unless the first byte opens a msgpack
    map or array, msgpack as the fallback. Never raises on any input bytes.

    >>> parse_message(b'{"a": 1}', Limits()), parse_message(b"{oops", Limits())[1][:12]
    (({'a': 1}, None), 'invalid JSON')
    """
    if not data[:1] or data[0] not in _MSGPACK_CONTAINER:
        try:
            return orjson.loads(data), None
        except orjson.JSONDecodeError as e:
            json_error = f"invalid JSON: {e}"
    else:
        json_error = None
    try:
        return (
            msgpack.unpackb(
                data,
                raw=False,
                strict_map_key=False,
                max_array_len=limits.max_events_per_message * 10,
                max_map_len=limits.max_features_per_event * 10,
            ),
            None,
        )
    except Exception as e:  # noqa: BLE001 (msgpack raises many unrelated types on garbage: ValueError, ExtraData...)
        return None, json_error or f"invalid msgpack: {type(e).__name__}"


def all_usable(items: list, limits: Limits = Limits()) -> bool:
    """Whether every item of a non-empty list is a usable event (what `_check` passes), in one
    compiled pass rather than a Python loop: a message of many events is almost always all good.

    >>> all_usable([{"model": "m", "features": {}}]), all_usable([{"model": "", "features": {}}]), all_usable([])
    (True, False, False)
    """
    return type(items) is list and _kernels.usable_events(items, limits.max_model_name, limits.max_features_per_event)


def _check(ev: dict, limits: Limits) -> tuple[str, str] | None:
    """What makes `ev` unusable, as (reason, detail); None when it is a usable event."""
    model = ev.get("model")
    if type(model) is not str or not model or len(model) > limits.max_model_name:
        return "missing_model", "no non-empty string 'model' field"
    feats = ev.get("features")
    if type(feats) is not dict:
        what = "absent" if feats is None else "a " + type(feats).__name__
        return "features_not_object", f"'features' is {what}, not an object"
    if len(feats) > limits.max_features_per_event:
        return "too_many_features", f"{len(feats)} features exceeds {limits.max_features_per_event}"
    return None


class ParsedEvents(Sequence):
    """The events of JSON messages the columnar decoder took (`detectors._decode`), each parsed into
    its dict (`orjson.loads`, as `decode_message` would) only when asked for: the monitors read their
    columns from the decoder and want the dict of a few events (an alert's, an invalid value's).

    >>> events = ParsedEvents([b'{"model": "a", "features": {}}', b'{"model": "b", "features": {"x": 1}}'], [1])
    >>> len(events), events[0]["features"]
    (1, {'x': 1})
    """

    __slots__ = ("_payloads", "_rows", "_parsed")

    def __init__(self, payloads: Sequence[bytes], rows: list[int]):
        self._payloads = payloads
        self._rows = rows
        self._parsed: dict[int, dict] = {}

    def __getitem__(self, i):  # type: ignore[override]
        event = self._parsed.get(i)
        if event is None:
            event = self._parsed[i] = orjson.loads(self._payloads[self._rows[i]])
        return event

    def __len__(self) -> int:
        return len(self._rows)


def encode_value(obj: Any) -> bytes:
    """Bytes for dead-lettering a decoded value: JSON when it can be, msgpack otherwise."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        try:
            return msgpack.packb(obj, use_bin_type=True)
        except Exception:  # noqa: BLE001 (whatever msgpack cannot pack: a dead letter must never raise)
            return quote_value(obj, 10_000).encode("utf-8", "replace")


def dead_letter_record(reject: Reject, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dead-letter contract shared by `replay --dead-letter` and the worker's topic:
    the reason, a readable detail, the original bytes (as text when they are UTF-8, always
    as base64) and where they came from.

    >>> dead_letter_record(Reject("not_decodable", "invalid JSON", b"{oops"), {"line": 3})["raw"]
    '{oops'
    """
    try:
        text: str | None = reject.raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {
        "reason": reject.reason,
        "detail": reject.detail,
        "raw": text,
        "raw_b64": base64.b64encode(reject.raw).decode("ascii"),
        "source": source or {},
    }
