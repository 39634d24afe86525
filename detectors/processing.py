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

With a `Hold`, a model's events wait until it has `Hold.events` of them (or `Hold.flush`) and are
then fed as one call: what a monitor costs per call whatever its events (~50 numpy and kernel
calls) is then paid once per few hundred events instead of once per few, when many models share a
stream. Batching does not change the alerts, so the held events give the same alerts, rejects and
states as without the hold, only later (a model's alerts in the same order; those of different
models may come in another order).

>>> from detectors.routing import ModelRouter
>>> result = process_messages(ModelRouter(), [b'{"model": "nobody", "features": {}}', b"{oops"])
>>> [(i, r.reason) for i, r in result.rejects], result.alerts
([(0, 'unknown_model'), (1, 'not_decodable')], [])
"""
from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterator, Sequence
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
from detectors.model import ExtractedBatch, ModelMonitor
from detectors.routing import ModelRouter

__all__ = ["HOLD_EVENTS", "HOLD_TOTAL", "MONITOR_CHUNK", "MONITOR_ERROR", "ROLLBACK_CALLS", "Hold", "Processed",
           "process_events", "process_messages"]

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

#: a `Hold` feeds a model's events once it holds this many: what a monitor's call costs whatever its
#: events (~0.28 ms for a 50-feature model, and ~0.5 ms more for its rollback base) is then spread
#: over at least this many (bench/engine.py (4): 100 models interleaved, calls of 2000 events)
HOLD_EVENTS = 512

#: a `Hold` holds at most about this many events in all (then the models holding the most are fed
#: until it holds half): the bound on its memory whatever the number of models, ~2.6 kB an event
#: for 50-feature JSON events (1.1 kB of columns and bookkeeping, tracemalloc, and the 1.45 kB
#: payload), ~85 MB. The worker's wall-time bound (SKEWWATCH_HOLD_SECONDS) keeps it to what arrives
#: in that time. Measured, 100 models interleaved: 65,536 gave (4) no better
HOLD_TOTAL = 32_768


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
    origins: Sequence[int] | None = None,
    hold: Hold | None = None,
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
    origins
        One number per payload that its rejects carry (the worker: the record's offset); default,
        the payload's index.
    hold
        Hold the events of each model that has fewer than `hold.events` (with those it holds
        already) in it, to feed them with its later ones (see `Hold`); their rejects, if any, come
        from a later call, with their origins. Decode rejects and unknown models are never held.

    Returns
    -------
    Processed
        The alerts, the rejects with the origin of the payload each came from, and the events
        each model's monitor took in this call (a held event counts in the call that feeds it).
    """
    alerts: list[Alert] = []
    rejects: list[tuple[int, Reject]] = []
    counts: Counter = Counter()
    # each accepted event: a dict, or (columnar) the index of its payload, whose model is known
    accepted: list[dict | int] = []
    models: list[str] = []
    indexes: list[int] = []  # payload index of each accepted event
    scan = _Scanned(router, payloads, limits) if columnar and keep is None else None

    as_origins = None if origins is None else (lambda indexes: [origins[i] for i in indexes])

    def monitor() -> None:
        if scan is None:
            result = _monitored(router, accepted, models, indexes, set(router.models), partial(_dict_monitor, router),
                                hold, _read_events, as_origins)
        else:
            result = scan.process(accepted, models, indexes, hold, as_origins)
        alerts.extend(result.alerts)
        rejects.extend(result.rejects)
        counts.update(result.events_by_model)

    # monitored as the chunks fill, between decodes: the chunk's events are still in cache
    i, n = 0, len(payloads)
    while i < n:
        if len(accepted) >= MONITOR_CHUNK:
            monitor()
            accepted, models, indexes = [], [], []
        if scan is not None:  # the run of scanned payloads from i that fits in the chunk, at once
            end = scan.run_end(i, min(n, i + MONITOR_CHUNK - len(accepted)))
            if end > i:
                accepted.extend(range(i, end))
                models.extend(scan.models(i, end))
                indexes.extend(range(i, end))
                i = end
                continue
        payload = payloads[i]
        events, bad = decode_message(payload, limits)
        rejects.extend(zip(repeat(i), bad))
        if keep is not None:
            events = [ev for ev in events if keep(i, ev)]
        accepted.extend(events)
        models.extend(map(model_of, events))
        indexes.extend(repeat(i, len(events)))
        i += 1
    monitor()
    if origins is not None:
        rejects = [(origins[i], r) for i, r in rejects]
    rejects.sort(key=itemgetter(0))  # stable: a payload's decode rejects, then its events'
    return _with_due(router, hold, Processed(alerts, rejects, counts))


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

    def process(self, items: list[dict | int], models: list[str], origins: list[int], hold: Hold | None = None,
                as_origins: Callable[[list[int]], list[int]] | None = None) -> Processed:
        """`process_events` of the items (events, or indexes of scanned payloads); `origins`: their
        payloads' indexes."""
        router = self._router
        if origins:  # the blocks before the first item's are done with (payloads are taken in order)
            first = origins[0] - origins[0] % MONITOR_CHUNK
            self._blocks = {s: b for s, b in self._blocks.items() if s >= first}
        return _monitored(router, items, models, origins, self._routed.keys(), self._monitor, hold, self.read,
                          as_origins)

    def _monitor(self, items: list[dict | int], models: list[str], origins: list[int]
                 ) -> tuple[list[Alert], list[tuple[int, dict, str]]]:
        """`_monitor_isolating` of the items: read from the columnar decoder when the monitors take
        them (logged as payload numbers: a rollback, if any, makes their dicts)."""
        if not items:
            return [], []
        return _monitor_rolling_back(self._router, items, models, origins, partial(self._route, items, models),
                                     partial(_event_of, self._payloads))

    def read(self, monitor: ModelMonitor, items: list[dict | int]) -> list[ExtractedBatch | list[dict]]:
        """A model's items read into its monitor's columns, for a `Hold`: a batch per scanned block
        (which keeps only its own payloads), or the dicts (if some item is one, as `_route` does)."""
        if dict in map(type, items):
            return _read_events(monitor, [self.event(item) for item in items])
        parts: list[ExtractedBatch | list[dict]] = []
        runs = ([(items[0] - items[0] % MONITOR_CHUNK, items)]  # type: ignore[operator]
                if items[0] // MONITOR_CHUNK == items[-1] // MONITOR_CHUNK  # type: ignore[operator]
                else groupby(items, key=lambda i: i - i % MONITOR_CHUNK))  # type: ignore[operator]
        for start, rows in runs:
            rows = list(rows)
            payloads = {r: self._payloads[r] for r in rows}  # looked up by row: only these stay alive
            try:
                parts.append(monitor.extract_scanned(self._blocks[start][0], payloads, rows))  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 (an engine bug: left to the dict path, which isolates it)
                parts.append([orjson.loads(payloads[r]) for r in rows])
        return parts

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


def process_events(router: ModelRouter, events: list[dict], origins: Sequence[int] | None = None,
                   hold: Hold | None = None) -> Processed:
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
    hold
        Hold the events of models with few events in the call (see `process_messages` and `Hold`).

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
    return _with_due(router, hold, _monitored(router, events, list(map(model_of, events)), origins, set(router.models),
                                              partial(_dict_monitor, router), hold, _read_events))


def _with_due(router: ModelRouter, hold: Hold | None, result: Processed) -> Processed:
    """`result` (its rejects in origin order) and what feeding the models the call made due gives,
    at the end of a `process_messages` / `process_events` call."""
    if hold is None or not hold.due:
        return result
    fed = hold.feed_due(router)
    return Processed(result.alerts + fed.alerts, sorted(result.rejects + fed.rejects, key=itemgetter(0)),
                     result.events_by_model + fed.events_by_model)


def _dict_monitor(router: ModelRouter, events: list[dict], _: list[str], origins: Sequence[int]
                  ) -> tuple[list[Alert], list[tuple[int, dict, str]]]:
    return _monitor_isolating(router, events, origins)


def _monitored(router: ModelRouter, items: list, models: list[str], origins: Sequence[int], known: Collection[str],
               monitor: Callable[[list, list[str], Sequence[int]], tuple[list[Alert], list[tuple[int, dict, str]]]],
               hold: Hold | None = None,
               read: Callable[[ModelMonitor, list], list[ExtractedBatch | list[dict]]] | None = None,
               as_origins: Callable[[list[int]], list[int]] | None = None) -> Processed:
    """The items (events, or scanned payload numbers) of the `known` models through `monitor(items,
    models, origins)` in chunks of `MONITOR_CHUNK`, the events it could not monitor rejected as
    `monitor_error`; the items of other models rejected with the router's reasons (those are dicts:
    only a dict's model can be unknown), touching no monitor. With a `hold`, the items it takes
    wait there instead, read into their monitors' columns (`read(monitor, items)`), with their
    origins as the caller numbers them (`as_origins(origins)`)."""
    rejects: list[tuple[int, Reject]] = []
    if not set(models) <= known:  # the common case skips this Python loop (known: a set or dict keys)
        keep = [k for k, model in enumerate(models) if model in known]
        rejects = [(origins[k], r) for k, item in enumerate(items) if models[k] not in known
                   for r in router.process([item])[1]]
        items, origins, models = [items[k] for k in keep], [origins[k] for k in keep], [models[k] for k in keep]
    if hold is not None and items:
        items, models, origins = hold.take(router, items, models, origins, read or _read_events, as_origins)
    counts = Counter(models)
    alerts: list[Alert] = []
    for start in range(0, len(items), MONITOR_CHUNK):
        end = start + MONITOR_CHUNK
        found, poisoned = monitor(items[start:end], models[start:end], origins[start:end])
        alerts.extend(found)
        rejects += _poisoned_rejects(poisoned, counts)
    rejects.sort(key=itemgetter(0))
    return Processed(alerts, rejects, +counts)


def _monitor_rolling_back(router: ModelRouter, items: list, models: list[str], origins: Sequence[int],
                          route: Callable[[], list[Alert]], event_of: Callable[[Any], dict]
                          ) -> tuple[list[Alert], list[tuple[int, dict, str]]]:
    """`route()` (it monitors the items, however it reads them) under the journal; when it raises
    (or a model cannot be rolled back), its models rolled back and the items left to
    `_monitor_isolating` as dicts (`event_of(item)`), which isolates the events a monitor raises on."""
    journal = _journal(router)
    counts = Counter(models)
    broken = journal.save(router, counts)
    if not broken:
        try:
            alerts = route()
        except Exception:  # noqa: BLE001 (any engine bug: isolated on the dict path)
            broken = journal.roll_back(router, counts)
        else:
            journal.log(items, models, counts, event_of)
            return alerts, []
    events = [event_of(item) for item in items]
    if broken:  # as _monitor_isolating: these models' events are not monitored, the others are
        poisoned = [(o, ev, broken[ev["model"]]) for o, ev in zip(origins, events) if ev["model"] in broken]
        rest = [k for k, ev in enumerate(events) if ev["model"] not in broken]
        alerts, more = _monitor_isolating(router, [events[k] for k in rest], [origins[k] for k in rest])
        return alerts, poisoned + more
    return _monitor_isolating(router, events, origins)


def _read_events(monitor: ModelMonitor, events: list[dict]) -> list[ExtractedBatch | list[dict]]:
    """A model's events read into its monitor's columns, for a `Hold` (the dicts themselves if that
    raises: an engine bug, isolated when they are fed)."""
    try:
        return [monitor.extract(events)]
    except Exception:  # noqa: BLE001
        return [events]


def _poisoned_rejects(poisoned: list[tuple[int, dict, str]], counts: Counter) -> list[tuple[int, Reject]]:
    """The `monitor_error` rejects of the events a monitor could not take, uncounted from `counts`."""
    rejects = []
    for origin, ev, detail in poisoned:
        counts[ev["model"]] -= 1
        rejects.append((origin, Reject(MONITOR_ERROR, detail[:300], encode_value(ev))))
    return rejects


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


class _Held:
    """One model's held events: read into its monitor's columns as they came, a batch per call."""

    __slots__ = ("baseline", "parts", "origins", "since")

    def __init__(self, baseline: Any, since: float):
        #: the baseline they were read against (None: read against several: fed as dicts)
        self.baseline = baseline
        #: an ExtractedBatch per call, or the call's events as dicts if reading them raised
        self.parts: list[ExtractedBatch | list[dict]] = []
        self.origins: list[int] = []
        #: time.monotonic() when the oldest came
        self.since = since

    def events(self) -> list[dict]:
        """The held events as dicts, in order."""
        return [ev for part in self.parts for ev in (part if type(part) is list else part.events)]


class Hold:
    """Events waiting for their model to have enough of them to feed as one call.

    Many models in one stream give each model few events per call, and a monitor's call costs
    about the same whatever its events (~50 numpy and kernel calls: ~0.28 ms for a 50-feature
    model, the cost of ~100 events). `process_messages` and `process_events` with a hold feed a
    model's events at once only when the call has at least `events` of them and nothing of the
    model is held; otherwise they are read into the model's columns at once (while in cache; the
    reading depends on the baseline alone, not on the monitor's state) and wait here, and the
    model's held batches are monitored as one (`ModelMonitor.update_extracted`) at the end of the
    call that brings them to `events`, or by `flush`. Batching does not change the alerts, so every
    event gives what it gives without the hold, only later: `flush` bounds how late. An event held
    is in no monitor's state yet (nor in `ModelMonitor.events_seen`), and its rejects, if the
    monitor raises on it, come from the call that feeds it, with its origin.

    What is held of an event: its columns (~1.1 kB at 50 features, with their bookkeeping) and the
    means to make its dict when an alert or a reject asks for it (its JSON payload, when the
    columnar decoder read it; else its dict, by reference). At most about `total` events in all:
    past it, the models holding the most are fed until half as many are held.

    Parameters
    ----------
    events
        A model's events fed at once, at least (`HOLD_EVENTS`).
    total
        Events held in all, about at most (`HOLD_TOTAL`).

    Examples
    --------
    >>> from baselines.profile import Baseline
    >>> router, hold = ModelRouter([Baseline("credit", "1", {}, n_rows=1000)]), Hold(events=3)
    >>> event = {"model": "credit", "features": {}}
    >>> process_events(router, [event, event], hold=hold).events_by_model, len(hold)
    (Counter(), 2)
    >>> process_events(router, [event], hold=hold).events_by_model, len(hold)
    (Counter({'credit': 3}), 0)
    >>> process_events(router, [event], hold=hold).events_by_model, hold.flush(router).events_by_model
    (Counter(), Counter({'credit': 1}))
    """

    def __init__(self, events: int = HOLD_EVENTS, total: int = HOLD_TOTAL):
        self.events = events
        self.total = total
        self._held: dict[str, _Held] = {}
        #: the models to feed at the end of the call (a dict: in the order they became due)
        self._due: dict[str, None] = {}
        self._count = 0

    def __len__(self) -> int:
        """Events held."""
        return self._count

    @property
    def due(self) -> bool:
        """Whether some model is to be fed at the end of the call (`feed_due`)."""
        return bool(self._due)

    def oldest(self) -> float | None:
        """`time.monotonic()` when the oldest event held came; None if none is."""
        return min((held.since for held in self._held.values()), default=None)

    def first_origin(self) -> int | None:
        """The smallest origin of a held event (the worker: the oldest offset not yet fed); None if none is."""
        return min((held.origins[0] for held in self._held.values()), default=None)

    def take(self, router: ModelRouter, items: list, models: list[str], origins: Sequence[int],
             read: Callable[[ModelMonitor, list], list[ExtractedBatch | list[dict]]],
             as_origins: Callable[[list[int]], list[int]] | None) -> tuple[list, list[str], list[int]]:
        """Of a call's items (all of routed models), hold those of each model that has held events
        or fewer than `events` in the call, read by `read(its monitor, its items)`, with their
        origins as the caller numbers them (`as_origins`); return the others, to feed now."""
        by_model: dict[str, list[int]] = {}
        for k, model in enumerate(models):
            rows = by_model.get(model)
            if rows is None:
                rows = by_model[model] = []
            rows.append(k)
        fed: list[int] = []
        for model, rows in by_model.items():
            held = self._held.get(model)
            if held is None and len(rows) >= self.events:
                fed.extend(rows)
                continue
            monitor = router.monitor(model)
            if held is None:
                held = self._held[model] = _Held(monitor.baseline, time.monotonic())
            elif held.baseline is not monitor.baseline:  # a new baseline meanwhile: the dicts, fed to it
                held.baseline = None
            held.parts += read(monitor, [items[k] for k in rows])
            mine = [origins[k] for k in rows]
            held.origins += mine if as_origins is None else as_origins(mine)
            self._count += len(rows)
            if len(held.origins) >= self.events:
                self._due[model] = None
        if self._count > self.total:
            self._make_room()
        if len(fed) == len(items):
            return items, models, list(origins)
        fed.sort()
        return [items[k] for k in fed], [models[k] for k in fed], [origins[k] for k in fed]

    def _make_room(self) -> None:
        """Past `total`: the models holding the most made due until the others hold half of it."""
        waiting = self._count - sum(len(self._held[m].origins) for m in self._due)
        for model in sorted(self._held, key=lambda m: -len(self._held[m].origins)):
            if waiting <= self.total // 2:
                break
            if model not in self._due:
                self._due[model] = None
                waiting -= len(self._held[model].origins)

    def feed_due(self, router: ModelRouter) -> Processed:
        """Feed the models the call made due: the end of a `process_messages` / `process_events`."""
        due, self._due = list(self._due), {}
        return self._feed(router, due)

    def waiting(self, older_than: float | None = None) -> list[str]:
        """The models with held events (those whose oldest held event came more than `older_than`
        seconds ago)."""
        if older_than is None:
            return list(self._held)
        limit = time.monotonic() - older_than
        return [m for m, held in self._held.items() if held.since <= limit]

    def flush(self, router: ModelRouter, older_than: float | None = None,
              models: Collection[str] | None = None) -> Processed:
        """Feed every held event (or those of the models whose oldest held event came more than
        `older_than` seconds ago, or of `models`: a caller that lets other work run between
        models); the rejects carry their origins."""
        models = self.waiting(older_than) if models is None else [m for m in models if m in self._held]
        for model in models:
            self._due.pop(model, None)
        return self._feed(router, models)

    def drop(self) -> None:
        """Forget every held event (their monitors are gone: a partition revoked)."""
        self._held.clear()
        self._due.clear()
        self._count = 0

    def _feed(self, router: ModelRouter, models: list[str]) -> Processed:
        """Each model's held events through its monitor, as one call (rolled back and isolated as
        `process_events` does when it raises)."""
        alerts: list[Alert] = []
        rejects: list[tuple[int, Reject]] = []
        counts: Counter = Counter()
        for model in models:
            held = self._held.pop(model)
            self._count -= len(held.origins)
            monitor = router.monitors().get(model)
            batches = held.parts
            if monitor is None or monitor.baseline is not held.baseline or list in map(type, batches):
                # a model disabled or given another baseline meanwhile, or events read as dicts: as dicts
                result = process_events(router, held.events(), held.origins)
                alerts += result.alerts
                rejects += result.rejects
                counts.update(result.events_by_model)
                continue
            n = len(held.origins)
            events = _HeldEvents(batches)
            found, poisoned = _monitor_rolling_back(router, events, [model] * n, held.origins,
                                                    partial(monitor.update_extracted, batches), _itself)
            mine = Counter({model: n})
            rejects += _poisoned_rejects(poisoned, mine)
            alerts += found
            counts.update(mine)
        rejects.sort(key=itemgetter(0))
        return Processed(alerts, rejects, +counts)


class _HeldEvents:
    """The events of held batches, made into dicts only when read (by a rollback)."""

    __slots__ = ("_batches",)

    def __init__(self, batches: list[ExtractedBatch]):
        self._batches = batches

    def __iter__(self) -> Iterator[dict]:
        for batch in self._batches:
            yield from batch.events
