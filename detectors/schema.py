"""Events whose feature names the baseline does not know: a renamed or new field upstream.

A Bernoulli CUSUM on the share of events carrying such names (none in training), and the most
frequent names (bounded). A feature the baseline knows but an event lacks is a missing value, the
feature monitors' business (detectors.numeric, detectors.categorical).

>>> import numpy as np
>>> fields = UnexpectedFields(frozenset({"x"}), n_rows=10_000, max_names=10)
>>> alarms = fields.update([{"x": 1.0, "y": 2.0}] * 64, np.ones(64, bool), start=0)
>>> alarms[0].event_index, alarms[0].family, alarms[0].evidence["unexpected_names"]
(7, 'unexpected_field', [['y', 8]])
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from detectors import thresholds as T
from detectors.cusum import BlockAccumulator, CusumBank
from detectors.episodes import AlarmSource, Candidate
from detectors.numeric import rate_weights
from detectors.sketches import SpaceSaving

__all__ = ["UnexpectedFields"]


class UnexpectedFields:
    """Alarms on events with feature names outside `known`.

    Parameters
    ----------
    known
        The baseline's feature names.
    n_rows
        The baseline's rows: the expected rate of unexpected names is 0 with that much evidence.
    max_names
        Unexpected names tracked (the most frequent, Space-Saving).
    """

    def __init__(self, known: frozenset[str], n_rows: int, max_names: int):
        self._known = known
        self._names = SpaceSaving(max_names)
        hit, miss, self._expected_rate = rate_weights(0.0, n_rows)
        self._weights = (np.array([hit], dtype=np.int64), np.array([miss], dtype=np.int64))
        self._blocks = BlockAccumulator(T.CUSUM_BLOCK, 1)
        self._cusum = CusumBank(np.array([round(T.RATE_H * T.LLR_SCALE)], dtype=np.int64))

    def update(self, features: Sequence[dict], extra: np.ndarray, start: int) -> list[Candidate]:
        """features: the events start..'s feature maps; extra (n,) bool: the event has keys the model
        does not know."""
        names = [(start + int(i), name) for i in np.flatnonzero(extra)
                 for name in features[i] if name not in self._known]
        sums, ends = self._blocks.add(extra.astype(np.int64)[:, None], start)
        hit, miss = self._weights
        out = []
        for event, _, stat, _ in self._cusum.update_from_sums(sums, ends, hit, miss, T.CUSUM_BLOCK):
            seen = SpaceSaving.from_state(self._names.state_dict(), self._names.capacity)
            for index, name in names:
                if index <= event:
                    seen.update(name)
            top = seen.top(5)
            evidence = {"test": "unexpected_fields", "expected_rate": self._expected_rate,
                        "unexpected_names": [[k, c] for k, c, _ in top]}
            # one model-level episode, whichever names: a stream of ever-new names is one problem,
            # not one alert (and one tracked episode) per name
            out.append(Candidate(event_index=event, rank=(AlarmSource.UNEXPECTED_FIELDS, 0, 0), feature=None,
                                 kind="data_quality", family="unexpected_field", detector="unexpected_field",
                                 statistic=stat / T.LLR_SCALE, threshold=T.RATE_H, p_value=None, evidence=evidence))
        for _, name in names:
            self._names.update(name)
        return out

    def state_dict(self) -> dict[str, Any]:
        """The names, blocks and CUSUM as plain data (`load_state` takes it back)."""
        return {"unexpected_names": self._names.state_dict(), "unexpected_blocks": self._blocks.state_dict(),
                "unexpected_cusum": self._cusum.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        self._names.load_state(state["unexpected_names"])
        self._blocks.load_state(state["unexpected_blocks"])
        self._cusum.load_state(state["unexpected_cusum"])
