"""Alarm -> alert: one alert per (feature, test family) episode, with cooldown and re-arm."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from operator import attrgetter
from typing import Any, NamedTuple

__all__ = ["ALARM_ORDER", "RIVER_DETECTORS", "SERVING_FAMILIES", "Alarm", "AlarmSource", "Candidate", "EpisodeTracker"]


class AlarmSource(IntEnum):
    """The test that raised an alarm: the first key of the order of alarms raised at the same event.

    A Candidate's rank is (source, the test's own order, the feature's position in its bank); the
    test's own order is, for the CUSUMs, their chain (numeric.CHAINS, categorical.CHAINS), for River,
    `RIVER_DETECTORS`, for serving, `SERVING_FAMILIES`, else 0. Alerts come out in this order, so
    changing it changes which alarm of a (feature, family) opens its episode.
    """

    NUMERIC_CUSUM = 0  # a numeric feature's (or the confidence's) CUSUMs against training
    RIVER = 1  # ADWIN and Page-Hinkley within production
    KS_WINDOW = 2  # a numeric feature's tumbling window
    CATEGORICAL_CUSUM = 3
    CHI2_WINDOW = 4  # a categorical feature's tumbling window
    UNEXPECTED_FIELDS = 5
    SERVING = 6  # model versions


#: River's detectors in rank order (AlarmSource.RIVER)
RIVER_DETECTORS = ("adwin", "page_hinkley")
#: serving alarm families in rank order (AlarmSource.SERVING)
SERVING_FAMILIES = ("version", "mixed_versions")


@dataclass(order=True, kw_only=True)
class Candidate:
    """An alarm raised by a test, before the episode rule decides whether it becomes an alert."""

    event_index: int  # the model's event count index of the event that completed the evidence
    #: deterministic order among alarms at the same event: (AlarmSource, the test's own order, feature position)
    rank: tuple[AlarmSource, int, int]
    feature: str | None = field(compare=False)
    kind: str = field(compare=False)
    family: str = field(compare=False)
    detector: str = field(compare=False)
    statistic: float = field(compare=False)
    threshold: float = field(compare=False)
    p_value: float | None = field(compare=False)
    evidence: dict[str, Any] = field(compare=False, default_factory=dict)
    #: estimated first event of the change (CUSUM change point, window start), if known
    onset: int | None = field(compare=False, default=None)
    #: more evidence, as of event_index, that costs more to gather than the alarm itself: asked (before the
    #: batch ends) only of the alarm that opens an episode, not of the many that extend one in a flood
    late_evidence: Callable[[], dict[str, Any]] | None = field(compare=False, default=None)

    def complete_evidence(self) -> None:
        """Add the late evidence (after the evidence built with the alarm, in the same order as before)."""
        if self.late_evidence is not None:
            self.evidence.update(self.late_evidence())
            self.late_evidence = None


class Alarm(NamedTuple):
    """A CUSUM chain's alarm before the episode rule: what the rule reads, and how to build its Candidate.

    A flood (a renamed field, a broken producer) raises one alarm per chain per CUSUM block, nearly all
    extending an open episode: the Candidate, its floats and evidence, is built only for one that opens.
    """

    event_index: int
    rank: tuple[AlarmSource, int, int]
    feature: str | None
    family: str
    detector: str
    onset: int | None
    #: build(*args) -> the Candidate (the monitor's; it reads nothing that changes before end_batch)
    build: Callable[..., Candidate]
    args: tuple
    #: the build args (event first) of the same chain's next alarms of the batch, each within the episode
    #: rule's quiet_events of the one before: whatever this one does, they only extend its episode
    #: (`EpisodeTracker.extend` to the last of them, once)
    more: tuple[tuple, ...] = ()

    def candidate(self) -> Candidate:
        """The Candidate, keyed as the episode rule saw it (`ModelMonitor` may have re-keyed the alarm)."""
        c = self.build(*self.args)
        c.rank, c.feature, c.family, c.detector = self.rank, self.feature, self.family, self.detector
        return c


#: the order of a batch's alarms (Candidates and Alarms alike; the Candidate dataclass order): one C-built
#: key per alarm, no Python call per comparison of a flood's tens of thousands
ALARM_ORDER = attrgetter("event_index", "rank")


class EpisodeTracker:
    """An episode opens on an alarm and stays open while alarms keep coming.

    It closes (re-arms) only after `quiet_events` events without any alarm of that (feature, family):
    a drift that persists is one alert, not one per window or per CUSUM restart.

    >>> t = EpisodeTracker(quiet_events=100)
    >>> [t.observe(("x", "missing"), i) for i in (5, 50, 140, 260)]
    [1, None, None, 2]
    """

    def __init__(self, quiet_events: int):
        self._quiet = quiet_events
        self._episodes: dict[tuple[str, str], list[int]] = {}  # key -> [episode number, last alarm]

    def observe(self, key: tuple[str, str], event_index: int) -> int | None:
        """Record an alarm; return the new episode number if it opens one, None if it extends one."""
        entry = self._episodes.get(key)
        if entry is not None and event_index - entry[1] <= self._quiet:
            entry[1] = max(entry[1], event_index)  # after an `extend` past it, the episode's last alarm stays
            return None
        number = entry[0] + 1 if entry else 1
        self._episodes[key] = [number, event_index]
        return number

    def extend(self, key: tuple[str, str], event_index: int) -> None:
        """Alarms of the open episode of `key` up to event_index, each within `quiet_events` of the one
        before (a CUSUM chain's run, `Alarm.more`): the episode stays open, its last alarm at event_index."""
        entry = self._episodes[key]
        entry[1] = max(entry[1], event_index)

    def open_at(self, event_index: int) -> list[tuple[str, str]]:
        """The keys whose episode is still open at event_index: an alarm within `quiet_events` of it.

        >>> t = EpisodeTracker(quiet_events=100)
        >>> _ = [t.observe(("x", "missing"), 5), t.observe(("y", "distribution"), 90)]
        >>> t.open_at(105), t.open_at(191)
        ([('x', 'missing'), ('y', 'distribution')], [])
        """
        return [key for key, (_, last) in self._episodes.items() if event_index - last <= self._quiet]

    def state_dict(self) -> dict[str, Any]:
        """The open and closed episodes as plain data (`load_state` takes it back)."""
        return {"episodes": [[f, fam, n, last] for (f, fam), (n, last) in self._episodes.items()]}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        self._episodes = {(f, fam): [int(n), int(last)] for f, fam, n, last in state["episodes"]}
