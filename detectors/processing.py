"""The one processing path of the worker, `skewwatch replay` and `skewwatch report`: decoded events
go to their model's monitor, in order; out come the alerts, and the rejects with where each came from.

- An event of a model without a monitor is rejected with the router's reason (`unknown_model`,
  `baseline_unavailable`) and touches no monitor.
- A monitor that raises on an event (a bug in detectors/, which never should) costs only that
  event: the models of the failed call are rolled back to their state before it and the call is
  bisected down to the events the monitor raises on, which are rejected as `monitor_error`. Batching
  does not change the alerts, so the rest gives the alerts of the whole batch without those events.
  A model whose state cannot be saved (or restored) for that rollback cannot be isolated: its
  events of the call are rejected as `monitor_error` too, never raised.
  The rollback does not pack every model's state before every call: each model's state is packed
  once in a while and the calls since are logged (the last `ROLLBACK_CALLS` calls, their events by
  reference: an event handed over is not changed afterwards); a failed call restores the packed
  states of its models and feeds them the logged calls again, which gives back their state before
  it exactly (`_Journal`).

`process_messages` decodes raw messages (a Kafka micro-batch) first; `process_events` takes events
a reader has already decoded (replay's files).

>>> from detectors.routing import ModelRouter
>>> result = process_messages(ModelRouter(), [b'{"model": "nobody", "features": {}}', b"{oops"])
>>> [(i, r.reason) for i, r in result.rejects], result.alerts
([(0, 'unknown_model'), (1, 'not_decodable')], [])
"""
from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Collection, Sequence
from functools import partial
from itertools import groupby, repeat
from operator import itemgetter
from typing import Any, NamedTuple
from weakref import WeakKeyDictionary

import msgpack
import orjson

from detectors import _decode
from detectors.alerts import Alert
from detectors.events import Limits, Reject, decode_message, encode_value, model_of
from detectors.model import ModelMonitor
from detectors.routing import ModelRouter

__all__ = ["MONITOR_CHUNK", "MONITOR_ERROR", "ROLLBACK_CALLS", "Processed", "process_events", "process_messages"]

#: reason of an event its model's monitor raised on: the event is rejected (dead-lettered), the
#: rest of its batch is monitored, the caller carries on
MONITOR_ERROR = "monitor_error"

#: events handed to the monitors at once: a micro-batch of many multi-event messages is fed in
#: chunks of about this size, which keeps the decoded events and the monitors' columns in cache
#: (measured in-process: 10,000-event calls ran ~15% slower than 2,000-event ones); batching does
#: not change the alerts
MONITOR_CHUNK = 2000

#: a router's last calls whose events are kept for a rollback (`_Journal`): each model's state is
#: packed about once per this many calls instead of before every call. A count of calls (each at
#: most MONITOR_CHUNK events), not of events: the events held are a few times those a call holds
#: anyway, whatever their size. Held between calls (measured, 100 models of 50 features in calls
#: of 2000 events): 10,000 events (~41 MB) and a packed state per model (~230 kB, 23 MB in all),
#: which packing before every call held only during the call; 0 gives that back
ROLLBACK_CALLS = 5


class Processed(NamedTuple):
    """What one call of `process_messages` / `process_events` gives."""

    alerts: list[Alert]
    #: (origin, reject), in origin order: the index of the payload (or event) it came from
    rejects: list[tuple[int, Reject]]
    #: events each model's monitor took
    events_by_model: Counter


def process_messages(
    router: ModelRouter,
    payloads: Sequence[bytes],
    limits: Limits = Limits(),
    keep: Callable[[int, dict], bool] | None = None,
    *,
    columnar: bool = True,
) -> Processed:
    """Decode each payload and `process_events` its events, in order.

    A payload that is one plain JSON event of a routed model is read by the columnar decoder
    (`detectors._decode`) straight into its model's columns, without a dict; any other goes through
    `decode_message` (the reference: a reject, a list, msgpack, anything unusual). The alerts,
    rejects and monitor states are those of decoding every payload with `decode_message`.

    Parameters
    ----------
    router
        The monitors, by model.
    payloads
        Raw messages (each one event or a list of events, JSON or msgpack).
    limits
        The decoder's caps.
    keep
        `keep(index, event)` False drops an event unmonitored and unrejected (the worker's events
        already counted by a restored checkpoint); with `keep`, every payload is decoded into dicts.
    columnar
        False: `decode_message` for every payload (the reference the columnar decoder is tested against).

    Returns
    -------
    Processed
        The alerts, and the rejects with the index of the payload each came from.
    """
    alerts: list[Alert] = []
    rejects: list[tuple[int, Reject]] = []
    counts: Counter = Counter()
    # each accepted event: a dict, or (columnar) the index of its payload, whose model is known
    accepted: list[dict | int] = []
    models: list[str] = []
    origins: list[int] = []  # payload index of each accepted event
    scan = _Scanned(router, payloads, limits) if columnar and keep is None else None

    def monitor() -> None:
        if scan is None:
            result = process_events(router, accepted, origins)  # type: ignore[arg-type]
        else:
            result = scan.process(accepted, models, origins)
        alerts.extend(result.alerts)
        rejects.extend(result.rejects)
        counts.update(result.events_by_model)

    # monitored as the chunks fill, between decodes: the chunk's events are still in cache
    i, n = 0, len(payloads)
    while i < n:
        if len(accepted) >= MONITOR_CHUNK:
            monitor()
            accepted, models, origins = [], [], []
        if scan is not None:  # the run of scanned payloads from i that fits in the chunk, at once
            end = scan.run_end(i, min(n, i + MONITOR_CHUNK - len(accepted)))
            if end > i:
                accepted.extend(range(i, end))
                models.extend(scan.models(i, end))
                origins.extend(range(i, end))
                i = end
                continue
        payload = payloads[i]
        events, bad = decode_message(payload, limits)
        rejects.extend(zip(repeat(i), bad))
        if keep is not None:
            events = [ev for ev in events if keep(i, ev)]
        accepted.extend(events)
        models.extend(map(model_of, events))
        origins.extend(repeat(i, len(events)))
        i += 1
    monitor()
    rejects.sort(key=itemgetter(0))  # stable: a payload's decode rejects, then its events'
    return Processed(alerts, rejects, counts)


class _Scanned:
    """The columnar decoder over a call's payloads: scanned in blocks of `MONITOR_CHUNK` as they
    are reached, each block's parsed documents kept until its events are monitored."""

    def __init__(self, router: ModelRouter, payloads: Sequence[bytes], limits: Limits):
        self._router = router
        self._payloads = payloads if isinstance(payloads, list) else list(payloads)
        self._limits = limits
        self._routed = {m: m for m in router.models}
        #: by first payload index: (the scanned block, each payload's model or None)
        self._blocks: dict[int, tuple[Any, list[str | None]]] = {}

    def _block(self, i: int) -> tuple[int, list[str | None]]:
        """(first payload index, each payload's model or None) of the block of payload i, scanned
        when first asked for."""
        start = i - i % MONITOR_CHUNK
        block = self._blocks.get(start)
        if block is None:
            lim = self._limits
            block = self._blocks[start] = _decode.scan(self._payloads[start:start + MONITOR_CHUNK], start, self._routed,
                                                       lim.max_message_bytes, lim.max_model_name,
                                                       lim.max_features_per_event)
        return start, block[1]

    def run_end(self, i: int, limit: int) -> int:
        """The end of the run of payloads from i (up to limit) that the columnar decoder took."""
        start, names = self._block(i)
        limit = min(limit, start + len(names))
        try:
            return names.index(None, i - start, limit - start) + start
        except ValueError:
            return limit

    def models(self, i: int, end: int) -> list[str]:
        """The models of the scanned payloads i..end-1 (of one block)."""
        start, names = self._block(i)
        return names[i - start:end - start]  # type: ignore[return-value]

    def event(self, item: dict | int) -> dict:
        """An accepted event as `decode_message` gives it."""
        return _event_of(self._payloads, item)

    def process(self, items: list[dict | int], models: list[str], origins: list[int]) -> Processed:
        """`process_events` of the items (events, or indexes of scanned payloads)."""
        router = self._router
        if origins:  # the blocks before the first item's are done with (payloads are taken in order)
            first = origins[0] - origins[0] % MONITOR_CHUNK
            self._blocks = {s: b for s, b in self._blocks.items() if s >= first}
        return _monitored(router, items, models, origins, self._routed.keys(), self._monitor)

    def _monitor(self, items: list[dict | int], models: list[str], origins: list[int]
                 ) -> tuple[list[Alert], list[tuple[int, dict, str]]]:
        """`_monitor_isolating` of the items: read from the columnar decoder when the monitors take
        them; when a monitor raises (or cannot be rolled back), rolled back and left to
        `_monitor_isolating` as dicts, which isolates the events it raises on."""
        if not items:
            return [], []
        router = self._router
        journal = _journal(router)
        counts = Counter(models)
        broken = journal.save(router, counts)
        if not broken:
            try:
                alerts = self._route(items, models)
            except Exception:  # noqa: BLE001 (any engine bug: isolated on the dict path)
                broken = journal.roll_back(router, counts)
            else:  # logged as payload numbers: a rollback, if any, makes their dicts
                journal.log(items, models, counts, partial(_event_of, self._payloads))
                return alerts, []
        events = [self.event(item) for item in items]
        if broken:  # as _monitor_isolating: these models' events are not monitored, the others are
            poisoned = [(o, ev, broken[ev["model"]]) for o, ev in zip(origins, events) if ev["model"] in broken]
            rest = [k for k, ev in enumerate(events) if ev["model"] not in broken]
            alerts, more = _monitor_isolating(self._router, [events[k] for k in rest], [origins[k] for k in rest])
            return alerts, poisoned + more
        return _monitor_isolating(self._router, events, origins)

    def _route(self, items: list[dict | int], models: list[str]) -> list[Alert]:
        """`ModelRouter.process` of the items: each model's events to its monitor, models in order of
        first appearance; a model's scanned events read from their blocks, unless some of its events
        here are dicts (then all of them are)."""
        if len(set(models)) == 1:  # the common chunk: one model
            by_model = {models[0]: items}
        else:
            by_model = {}
            for item, model in zip(items, models):
                group = by_model.get(model)
                if group is None:
                    group = by_model[model] = []
                group.append(item)
        alerts: list[Alert] = []
        for model, group in by_model.items():
            monitor = self._router.monitor(model)
            if dict in map(type, group):
                alerts.extend(monitor.update_batch([self.event(item) for item in group]))
                continue
            # runs of one block each (payload numbers only grow); batching does not change a monitor's alerts
            runs = ([(group[0] - group[0] % MONITOR_CHUNK, group)]  # type: ignore[operator]
                    if group[0] // MONITOR_CHUNK == group[-1] // MONITOR_CHUNK  # type: ignore[operator]
                    else groupby(group, key=lambda i: i - i % MONITOR_CHUNK))  # type: ignore[operator]
            for start, rows in runs:
                alerts.extend(monitor.update_scanned(self._blocks[start][0], self._payloads, list(rows)))
        return alerts


def _event_of(payloads: Sequence[bytes], item: dict | int) -> dict:
    """An accepted event (a dict, or the number of a scanned payload) as `decode_message` gives it."""
    return item if type(item) is dict else orjson.loads(payloads[item])  # type: ignore[return-value]


def _itself(event: dict) -> dict:
    return event


def process_events(router: ModelRouter, events: list[dict], origins: Sequence[int] | None = None) -> Processed:
    """Feed decoded events to their models' monitors, in order and in chunks of `MONITOR_CHUNK`,
    isolating the events a monitor raises on (see the module docstring).

    Parameters
    ----------
    router
        The monitors, by model.
    events
        Usable events (as `decode_message` returns them).
    origins
        One number per event that its reject carries (the worker: the payload index); default,
        the event's index in `events`.

    Returns
    -------
    Processed
        The alerts, the rejects in origin order, and the events each model's monitor took.

    Examples
    --------
    >>> from baselines.profile import Baseline
    >>> router = ModelRouter([Baseline("credit", "1", {}, n_rows=1000)])
    >>> result = process_events(router, [{"model": "credit", "features": {}}, {"model": "fraud", "features": {}}])
    >>> result.events_by_model, [(origin, r.reason) for origin, r in result.rejects]
    (Counter({'credit': 1}), [(1, 'unknown_model')])
    """
    origins = range(len(events)) if origins is None else origins
    return _monitored(router, events, list(map(model_of, events)), origins, set(router.models),
                      lambda chunk, _, chunk_origins: _monitor_isolating(router, chunk, chunk_origins))


def _monitored(router: ModelRouter, items: list, models: list[str], origins: Sequence[int], known: Collection[str],
               monitor: Callable[[list, list[str], Sequence[int]], tuple[list[Alert], list[tuple[int, dict, str]]]]
               ) -> Processed:
    """The items (events, or scanned payload numbers) of the `known` models through `monitor(items,
    models, origins)` in chunks of `MONITOR_CHUNK`, the events it could not monitor rejected as
    `monitor_error`; the items of other models rejected with the router's reasons (those are dicts:
    only a dict's model can be unknown), touching no monitor."""
    rejects: list[tuple[int, Reject]] = []
    if not set(models) <= known:  # the common case skips this Python loop (known: a set or dict keys)
        keep = [k for k, model in enumerate(models) if model in known]
        rejects = [(origins[k], r) for k, item in enumerate(items) if models[k] not in known
                   for r in router.process([item])[1]]
        items, origins, models = [items[k] for k in keep], [origins[k] for k in keep], [models[k] for k in keep]
    counts = Counter(models)
    alerts: list[Alert] = []
    for start in range(0, len(items), MONITOR_CHUNK):
        end = start + MONITOR_CHUNK
        found, poisoned = monitor(items[start:end], models[start:end], origins[start:end])
        alerts.extend(found)
        for origin, ev, detail in poisoned:
            counts[ev["model"]] -= 1
            rejects.append((origin, Reject(MONITOR_ERROR, detail[:300], encode_value(ev))))
    rejects.sort(key=itemgetter(0))
    return Processed(alerts, rejects, +counts)


def _monitor_isolating(router: ModelRouter, events: list[dict], origins: Sequence[int]
                       ) -> tuple[list[Alert], list[tuple[int, dict, str]]]:
    """`router.process(events)`'s alerts, and the (origin, event, why) of the events it could not
    monitor: those a monitor raises on, found by rollback and bisection, and those of a model that
    cannot be rolled back."""
    if not events:
        return [], []
    journal = _journal(router)
    models = list(map(model_of, events))
    counts = Counter(models)
    broken = journal.save(router, counts)
    if not broken:
        try:
            alerts = router.process(events)[0]
        except Exception as error:  # noqa: BLE001 (any engine bug: isolate it, never lose the batch)
            broken = journal.roll_back(router, counts)
            if not broken and len(events) == 1:
                return [], [(origins[0], events[0], _why(events[0]["model"], error))]
        else:
            journal.log(events, models, counts)
            return alerts, []
    if broken:  # no rollback for these models: their events here are not monitored, the others are
        poisoned = [(o, ev, broken[ev["model"]]) for o, ev in zip(origins, events) if ev["model"] in broken]
        rest = [k for k, ev in enumerate(events) if ev["model"] not in broken]
        alerts, more = _monitor_isolating(router, [events[k] for k in rest], [origins[k] for k in rest])
        return alerts, poisoned + more
    mid = len(events) // 2
    first, bad_first = _monitor_isolating(router, events[:mid], origins[:mid])
    second, bad_second = _monitor_isolating(router, events[mid:], origins[mid:])
    return first + second, bad_first + bad_second


class _Base:
    """A model's state packed at a call boundary, the point its rollback starts from."""

    __slots__ = ("events_seen", "monitor", "seq", "state")

    def __init__(self, monitor: ModelMonitor, state: bytes, seq: int):
        #: the monitor the state is of: a restore or a new baseline puts another in the router
        self.monitor = monitor
        self.state = state
        #: the first call logged after the state
        self.seq = seq
        #: the monitor's events_seen after the logged calls: another count means events it took
        #: outside `process_events`, which the log does not hold
        self.events_seen = monitor.events_seen


class _Journal:
    """The rollback of one router's monitors, kept across calls: each model's state packed at some
    call boundary (`_Base`) and the events of the calls since (by reference; callers do not change
    an event once handed over). A call that raises rolls its models back by restoring their packed
    states and feeding them again their events of the logged calls, in the same batches: the
    monitors are deterministic, so that gives the state each had before the failed call, and the
    alerts of that re-run, already given, are dropped.

    So a model's state is packed about once per `ROLLBACK_CALLS` calls, not before every call: with
    many models in one stream each call holds few events of each, and packing their states (~0.3 ms
    for a 50-feature model) before every call cost more than monitoring them.
    """

    def __init__(self) -> None:
        self._bases: dict[str, _Base] = {}
        #: (seq, items, their models, item -> event dict) of the calls that went through
        self._calls: deque[tuple[int, list, list[str], Callable[[Any], dict]]] = deque()
        self._next_seq = 0

    def save(self, router: ModelRouter, counts: Counter) -> dict[str, str]:
        """Before a call of the models in `counts`: a base for each that has no usable one;
        {model: why its state could not be taken}."""
        broken: dict[str, str] = {}
        for model in counts:
            monitor = router.monitor(model)
            base = self._bases.get(model)
            if base is not None and base.monitor is monitor and base.events_seen == monitor.events_seen:
                continue
            self._bases.pop(model, None)
            try:  # packed: a copy that the failed call cannot half-update; complete: alerts after it quote the same
                state = msgpack.packb(monitor.state_dict(complete=True), use_bin_type=True)
            except Exception as error:  # noqa: BLE001
                broken[model] = _why(model, error, " saving its state for a rollback")
            else:
                self._bases[model] = _Base(monitor, state, self._next_seq)
        return broken

    def log(self, items: list, models: list[str], counts: Counter, event_of: Callable[[Any], dict] = _itself
            ) -> None:
        """After a call that went through: its items (events, or what `event_of` makes them from) and
        their models, for a later rollback; the oldest calls past `ROLLBACK_CALLS` are let go, and the
        bases that needed them with them."""
        for model, n in counts.items():
            self._bases[model].events_seen += n
        self._calls.append((self._next_seq, items, models, event_of))
        self._next_seq += 1
        if len(self._calls) > ROLLBACK_CALLS:
            while len(self._calls) > ROLLBACK_CALLS:
                self._calls.popleft()
            first = self._calls[0][0] if self._calls else self._next_seq
            self._bases = {model: base for model, base in self._bases.items() if base.seq >= first}

    def roll_back(self, router: ModelRouter, counts: Counter) -> dict[str, str]:
        """After a call that raised: the models in `counts` back to their state before it;
        {model: why} of those that could not be. Their bases are dropped (their monitors are new)."""
        broken: dict[str, str] = {}
        for model in counts:
            base = self._bases.pop(model)
            try:
                router.restore(model, msgpack.unpackb(base.state, raw=False, strict_map_key=False))
                monitor = router.monitor(model)
                for seq, items, models, event_of in self._calls:
                    if seq >= base.seq:
                        group = [event_of(item) for item, m in zip(items, models) if m == model]
                        if group:
                            monitor.update_batch(group)
            except Exception as error:  # noqa: BLE001
                broken[model] = _why(model, error, " restoring its state for a rollback")
        return broken


#: the rollback journals, one per router, gone with it
_JOURNALS: WeakKeyDictionary[ModelRouter, _Journal] = WeakKeyDictionary()


def _journal(router: ModelRouter) -> _Journal:
    journal = _JOURNALS.get(router)
    if journal is None:
        journal = _JOURNALS[router] = _Journal()
    return journal



def _why(model: str, error: Exception, doing: str = "") -> str:
    return f"the monitor of model {model!r} raised {type(error).__name__}{doing}: {error}"
