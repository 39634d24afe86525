"""Which model versions are served: an alarm when one differs from the baseline's, or when several
are served within one window of events.

>>> from detectors import _kernels
>>> versions = ServedVersions("1", window=4, rearm_quiet_events=100)
>>> events = [{"model_version": v} for v in ("1", "1", "2", "2")]
>>> [(c.event_index, c.family) for c in versions.update(events, 0, _kernels.VERSIONS_OTHER)]
[(2, 'version'), (3, 'mixed_versions')]
>>> versions.first_seen(), versions.first_seen(until=1)
({'1': 0, '2': 2}, {'1': 0})
"""
from __future__ import annotations

from itertools import repeat
from typing import Any

from detectors import _kernels
from detectors.episodes import SERVING_FAMILIES, AlarmSource, Candidate
from detectors.sketches import MAX_LABEL

__all__ = ["MAX_VERSIONS", "ServedVersions"]

#: most model versions remembered (first-seen event, per-window counts)
MAX_VERSIONS = 16
#: more than one model_version in a batch (ServedVersions.update)
_MIXED = object()


def _version_label(v: Any) -> str | None:
    """A model_version as a bounded string; a list or map is bad data, labelled as such.

    >>> _version_label(3), _version_label(["a"])
    ('3', '<invalid list>')
    """
    if v is None:
        return None
    if isinstance(v, (str, int, float)):
        return str(v)[:MAX_LABEL]
    return f"<invalid {type(v).__name__}>"


class ServedVersions:
    """The model versions a model's events carry, against the baseline's.

    Parameters
    ----------
    baseline_version
        The version the baseline describes (None: any version matches).
    window
        Tumbling window of the model's events over which versions are counted.
    rearm_quiet_events
        A stretch of mismatching versions is one alarm; the next alarms only after this many events
        without a mismatch.
    """

    def __init__(self, baseline_version: str | None, window: int, rearm_quiet_events: int):
        self._expected = baseline_version
        self._window = window
        self._quiet = rearm_quiet_events
        self._first_seen: dict[str, int] = {}
        self._window_versions: dict[str, int] = {}
        self._last_mismatch = -(10**18)

    def update(self, events: list[dict], start: int, seen: int) -> list[Candidate]:
        """Count the versions of events start..; seen: how the batch's versions compare with the
        baseline's (`FeatureColumns.extract_events`)."""
        expected = self._expected
        versions: list | None = None
        if seen == _kernels.VERSIONS_NONE:
            single = None
        elif seen == _kernels.VERSIONS_EXPECTED:
            single = expected
        else:
            versions = list(map(dict.get, events, repeat("model_version")))
            try:
                distinct = set(versions)
            except TypeError:  # a list or map where a version string belongs
                versions = [_version_label(v) for v in versions]
                distinct = set(versions)
            single = versions[0] if len(distinct) == 1 else _MIXED
        w = self._window
        if single is None or (single is not _MIXED and str(single) == expected
                              and set(self._window_versions) <= {expected}):
            # the common case: no version, or the baseline's only: counts per window, nothing to alarm
            first = (-start) % w
            ends = list(range(first, len(events), w))
            for a, b in zip([0] + ends, ends + [len(events)]):
                if single is not None and b > a:
                    self._window_versions[expected] = self._window_versions.get(expected, 0) + b - a
                if (start + b) % w == 0 and b > a:
                    self._window_versions = {}
            if single is not None and expected not in self._first_seen:
                self._first_seen[expected] = start
            return []
        if versions is None:
            versions = [single] * len(events)
        out = []
        for i, version in enumerate(versions):
            index = start + i
            if version is not None:
                version = _version_label(version)
                if version not in self._first_seen and len(self._first_seen) < MAX_VERSIONS:
                    self._first_seen[version] = index
                if version in self._window_versions or len(self._window_versions) < MAX_VERSIONS:
                    self._window_versions[version] = self._window_versions.get(version, 0) + 1
                if expected is not None and version != expected:
                    # a mismatching stretch is one episode: only the first mismatch after a quiet spell alarms
                    if index - self._last_mismatch > self._quiet:
                        out.append(self._candidate(index, "version", "model_version", version))
                    self._last_mismatch = index
            if (index + 1) % w == 0:
                if len(self._window_versions) > 1:
                    out.append(self._candidate(index, "mixed_versions", "mixed_versions", None))
                self._window_versions = {}
        return out

    def _candidate(self, index: int, family: str, detector: str, version: str | None) -> Candidate:
        served = dict(self._window_versions)
        evidence = {"served_versions": served, "baseline_version": self._expected}
        if version is not None:
            evidence["version"] = version
        statistic = float(len(served)) if family == "mixed_versions" else 1.0
        return Candidate(event_index=index, rank=(AlarmSource.SERVING, SERVING_FAMILIES.index(family), 0), feature=None,
                         kind="serving", family=family, detector=detector, statistic=statistic, threshold=1.0,
                         p_value=None, evidence=evidence)

    def first_seen(self, until: int | None = None) -> dict[str, int]:
        """version -> the event it was first seen at (only those seen by event `until`, if given)."""
        if until is None:
            return dict(self._first_seen)
        return {v: i for v, i in self._first_seen.items() if i <= until}

    def served_version(self) -> str | None:
        """The version served most in the current window (the baseline's when none is seen)."""
        if self._window_versions:
            return max(self._window_versions.items(), key=lambda kv: (kv[1], kv[0]))[0]
        return self._expected

    def state_dict(self) -> dict[str, Any]:
        """The versions seen as plain data (`load_state` takes it back)."""
        return {"version_first_seen": dict(self._first_seen), "window_versions": dict(self._window_versions),
                "last_version_mismatch": self._last_mismatch}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        self._first_seen = {str(k): int(v) for k, v in state["version_first_seen"].items()}
        self._window_versions = {str(k): int(v) for k, v in state["window_versions"].items()}
        self._last_mismatch = int(state["last_version_mismatch"])
