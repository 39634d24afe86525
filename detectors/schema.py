"""Events whose feature names differ from the baseline's: a renamed or new field upstream.

A Bernoulli CUSUM on the share of events carrying names the baseline does not know (none in
training) raises one model-level `schema` alarm, which names the most frequent unexpected names
(bounded: Space-Saving) and the known features absent from those events, with counts. A known
feature absent from an event without unexpected names is a missing value (a producer that omits
nulls), the feature monitors' business (detectors.numeric, detectors.categorical); absent from
events that carry unexpected names, it is part of the schema change: `SchemaMonitor.explains_missing`
tells the monitor which missing-rate alarms are that, so that a renamed field is one alert, not
one per feature.

>>> import numpy as np
>>> schema = SchemaMonitor(["x"], n_rows=10_000, max_names=10, recent=512)
>>> absent = np.zeros((1, 64), bool)
>>> alarms = schema.update([{"x": 1.0, "y": 2.0}] * 64, np.ones(64, bool), absent, absent, start=0)
>>> alarms[0].complete_evidence()  # the names as of the alarm's event: asked only of an alarm that opens an episode
>>> alarms[0].event_index, alarms[0].family, alarms[0].evidence["unexpected_names"]
(7, 'schema', [['y', 8]])
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from detectors import thresholds as T
from detectors.cusum import BlockAccumulator, CusumBank
from detectors.episodes import AlarmSource, Candidate
from detectors.numeric import rate_weights
from detectors.recent import RecentRing
from detectors.sketches import PendingValues, SpaceSaving

__all__ = ["NAMES_SHOWN", "SchemaMonitor"]

#: unexpected names and absent features an alert names, each (the most frequent)
NAMES_SHOWN = 10
#: a known feature's recent event: no value (None, or absent), absent from an event with unexpected names
MISSING, ABSENT_OFFSCHEMA = 1, 2


class SchemaMonitor:
    """Alarms on events with feature names outside the baseline's (see the module docstring).

    Parameters
    ----------
    known
        The baseline's feature names, in the order of the `absent` rows `update` takes.
    n_rows
        The baseline's rows: the expected rate of unexpected names is 0 with that much evidence.
    max_names
        Unexpected names tracked (the most frequent, Space-Saving).
    recent
        Recent events kept per feature for `explains_missing`.
    """

    def __init__(self, known: Sequence[str], n_rows: int, max_names: int, recent: int):
        self._known = frozenset(known)
        self._known_order = list(known)
        self._known_index = {name: j for j, name in enumerate(self._known_order)}
        self._names = SpaceSaving(max_names)
        hit, miss, self._expected_rate = rate_weights(0.0, n_rows)
        self._weights = (np.array([hit], dtype=np.int64), np.array([miss], dtype=np.int64))
        self._blocks = BlockAccumulator(T.CUSUM_BLOCK, 1)
        self._cusum = CusumBank(np.array([round(T.RATE_H * T.LLR_SCALE)], dtype=np.int64))
        #: per known feature: events it was absent from while they carried unexpected names
        self._absent_counts = np.zeros(len(self._known_order), dtype=np.int64)
        #: per known feature, its last `recent` events: MISSING, or ABSENT_OFFSCHEMA (absent from an event
        #: with unexpected names), else 0; the batch's apart until end_batch (`explains_missing` reads both)
        self._recent = RecentRing(len(self._known_order), recent, 0, np.uint8)
        self._start = 0
        self._last_alarm = -1
        self._batch_alarms: list[int] = []
        #: this batch's feature maps that carry unexpected names: the sketch takes their names but the
        #: known ones at end_batch
        self._pending_names = PendingValues(grouped=True, exclude=self._known)
        #: for the batch's alarms' evidence: the absent counts before it, and its cumulative ones
        self._absent_counts_before = self._absent_counts
        self._absent_cumulative: np.ndarray | None = None

    def update(self, features: Sequence[dict], extra: np.ndarray, absent: np.ndarray, missing: np.ndarray,
               start: int) -> list[Candidate]:
        """Feed events start..; return the schema alarms they raise.

        Parameters
        ----------
        features
            The events' feature maps.
        extra
            (n,) bool: the event has names the baseline does not know.
        absent
            (n_known, n) bool: the known feature's key is not in the event at all.
        missing
            (n_known, n) bool: the known feature has no value (None, or absent), as its monitor counts it.
        start
            The first event's index.
        """
        offschema = absent & extra
        # absent implies missing: 2 = ABSENT_OFFSCHEMA
        self._recent.hold_batch(missing.astype(np.uint8) + offschema, start)
        self._start = start
        sums, ends = self._blocks.add(extra.astype(np.int64)[:, None], start)
        hit, miss = self._weights
        alarms = [(event, stat) for event, _, stat, _ in self._cusum.update_from_sums(sums, ends, hit, miss,
                                                                                       T.CUSUM_BLOCK)]
        # the names join the sketch at end_batch; an alarm that opens an episode reads the tops as of its event
        self._pending_names.hold([(i, features[i]) for i in np.flatnonzero(extra).tolist()])
        self._absent_cumulative = np.cumsum(offschema, axis=1) if alarms else None
        out = []
        for event, stat in alarms:
            # one model-level episode, whichever names: a stream of ever-new names is one problem,
            # not one alert (and one tracked episode) per name
            out.append(Candidate(event_index=event, rank=(AlarmSource.UNEXPECTED_FIELDS, 0, 0), feature=None,
                                 kind="data_quality", family="schema", detector="schema",
                                 statistic=stat / T.LLR_SCALE, threshold=T.RATE_H, p_value=None,
                                 evidence={"test": "schema", "expected_rate": self._expected_rate},
                                 late_evidence=partial(self._names_evidence, event)))
        self._absent_counts_before = self._absent_counts
        self._absent_counts = self._absent_counts + offschema.sum(axis=1)
        self._batch_alarms = [event for event, _ in alarms]
        return out

    def _names_evidence(self, event: int) -> dict[str, Any]:
        """The unexpected names and the absent features up to `event` (of this batch)."""
        names = self._pending_names.as_of(self._names, event - self._start)
        absent_counts = self._absent_counts_before + self._absent_cumulative[:, event - self._start]
        return {"unexpected_names": [[name, c] for name, c, _ in names.top(NAMES_SHOWN)],
                "absent_features": self._ranked_absent(absent_counts)}

    def _ranked_absent(self, counts: np.ndarray) -> list[list]:
        order = np.argsort(-counts, kind="stable")[:NAMES_SHOWN]
        return [[self._known_order[j], int(counts[j])] for j in order.tolist() if counts[j]]

    def explains_missing(self, features: Sequence[str], counts: Sequence[int], events: np.ndarray, since: np.ndarray,
                         quiet_events: int) -> np.ndarray:
        """Of missing-rate alarms of this batch, whether each is this schema change: the schema alarmed
        within `quiet_events` before it, and at least half of the feature's missing values since the
        change's start (`since`; at most its last `recent` events) were its absence from events carrying
        unexpected names. counts[i] alarms of features[i], in turn, at `events` with their change starts
        `since` (-1: none known); (n,) bool. All at once: in a flood every feature's missing rate alarms
        every CUSUM block."""
        if not len(events):
            return np.zeros(0, dtype=bool)
        batch = np.array(self._batch_alarms, dtype=np.int64)  # the batch's alarms, in event order
        before = np.searchsorted(batch, events, side="right")
        last = batch[np.maximum(before - 1, 0)] if len(batch) else np.zeros(len(events), dtype=np.int64)
        last = np.where(before > 0, last, self._last_alarm)
        recent_alarm = (last >= 0) & (events - last <= quiet_events)
        # per feature asked about: cumulative counts of missing and of absent-offschema over its recent
        # events then the batch's (row r of each: the r-th feature asked about)
        rows: dict[int, int] = {}
        row_of_run = [rows.setdefault(self._known_index[name], len(rows)) for name in features]
        recent = np.stack([self._recent.ring_and_batch(j) for j in rows])
        zero = np.zeros((len(rows), 1), dtype=np.int64)
        missing = np.hstack([zero, np.cumsum(recent >= MISSING, axis=1)])
        offschema = np.hstack([zero, np.cumsum(recent == ABSENT_OFFSCHEMA, axis=1)])
        row = np.repeat(np.array(row_of_run), counts)
        end = self._recent.filled + events - self._start + 1
        first = np.maximum(np.maximum(end - self._recent.length, 0),
                           np.where(since >= 0, end - (events - since + 1), 0))
        n_missing = missing[row, end] - missing[row, first]
        n_offschema = offschema[row, end] - offschema[row, first]
        return recent_alarm & (0 < n_missing) & (n_missing <= 2 * n_offschema)

    def end_batch(self) -> None:
        """After the batch's alerts are built: its events join the recent ones."""
        if self._batch_alarms:
            self._last_alarm = self._batch_alarms[-1]
        self._pending_names.commit(self._names)
        self._absent_cumulative = None
        self._batch_alarms = []
        self._recent.commit()

    def state_dict(self) -> dict[str, Any]:
        """The names, absences, blocks and CUSUM as plain data (`load_state` takes it back)."""
        ring = self._recent.state_dict()
        return {"unexpected_names": self._names.state_dict(), "unexpected_blocks": self._blocks.state_dict(),
                "unexpected_cusum": self._cusum.state_dict(), "schema_absent": self._absent_counts.tolist(),
                "schema_last_alarm": self._last_alarm, "schema_recent": zlib.compress(ring["recent"], 1),
                "schema_recent_filled": ring["recent_filled"]}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        self._names.load_state(state["unexpected_names"])
        self._blocks.load_state(state["unexpected_blocks"])
        self._cusum.load_state(state["unexpected_cusum"])
        self._absent_counts = np.array(state["schema_absent"], dtype=np.int64)
        self._last_alarm = int(state["schema_last_alarm"])
        # compressed: the record is almost all zeros while no field is renamed (~8 bytes per feature)
        raw = zlib.decompressobj().decompress(state["schema_recent"], len(self._known_order) * self._recent.length)
        self._recent.load_state({"recent": raw, "recent_filled": state["schema_recent_filled"]})
