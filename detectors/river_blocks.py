"""River's ADWIN and Page-Hinkley on block means of a feature's PIT scores.

Both compare production with its own past (changes *within* production); the CUSUMs of
`detectors.cusum` cover skew against training. Feeding one value per block of events keeps their
per-event cost small and makes their input close to normal whatever the feature's distribution, so
one calibration (detectors/thresholds.py) holds for every feature.

State is plain data (Page-Hinkley's few floats, ADWIN's window as bytes), read and restored through
`detectors.river_adapter`, the one module that touches River's private attributes.
"""
from __future__ import annotations

import math
from typing import Any

from detectors import thresholds
from detectors.river_adapter import (
    ADWIN,
    PageHinkley,
    adwin_state,
    page_hinkley_state,
    page_hinkley_statistic,
    restore_adwin,
    restore_page_hinkley,
)

__all__ = ["BlockChangeDetectors"]


class BlockChangeDetectors:
    """ADWIN on the block mean of u in [0, 1] and Page-Hinkley on its standardised value.

    >>> import random
    >>> rng, det = random.Random(1), BlockChangeDetectors()
    >>> means = [rng.gauss(0.5 + (0.05 if i >= 40 else 0.0), 0.018) for i in range(80)]  # sd of 256 u's
    >>> [(i, r) for i, m in enumerate(means) if (r := det.update(m, 256))]
    [(46, 'page_hinkley')]
    """

    def __init__(self):
        self._adwin = self._new_adwin()
        self._ph = self._new_page_hinkley()
        # where Page-Hinkley's cumulative sums last stood at their extremes: the change-point estimate
        self._ph_low_at = -1
        self._ph_high_at = -1
        self._statistic = 0.0
        self._onset = -1

    @staticmethod
    def _new_adwin() -> ADWIN:
        return ADWIN(delta=thresholds.ADWIN_DELTA, clock=1, grace_period=thresholds.RIVER_GRACE_BLOCKS)

    @staticmethod
    def _new_page_hinkley() -> PageHinkley:
        return PageHinkley(
            min_instances=thresholds.RIVER_GRACE_BLOCKS,
            delta=thresholds.PAGE_HINKLEY_DELTA,
            threshold=thresholds.PAGE_HINKLEY_THRESHOLD,
            alpha=1.0,
        )

    @property
    def adwin_width(self) -> int:
        """Blocks in ADWIN's window: those since the last change it detected (or the start)."""
        return int(self._adwin.width)

    @property
    def statistic(self) -> float:
        """At the last detection: Page-Hinkley's test value, or the blocks ADWIN dropped."""
        return self._statistic

    @property
    def onset(self) -> int:
        """At the last detection: the estimated last unchanged event (-1: the start)."""
        return self._onset

    def update(self, mean_u: float, n_valid: int, event: int = 0) -> str | None:
        """Feed one block ending at `event`; return "adwin" / "page_hinkley" when that detector flags a change."""
        width = self._adwin.width
        self._adwin.update(mean_u)
        ph = self._ph
        # standardised: N(0, 1) under "no change" for any block size
        ph.update((mean_u - 0.5) * math.sqrt(12.0 * n_valid))
        if self._adwin.drift_detected:
            kept = self._adwin.width
            self._statistic = float(width + 1 - kept)
            self._onset = int(event - kept * thresholds.RIVER_BLOCK)
            return "adwin"
        rise, fall = page_hinkley_statistic(ph)
        if ph.drift_detected:
            self._statistic = float(max(rise, fall))
            self._onset = self._ph_low_at if rise >= fall else self._ph_high_at
            return "page_hinkley"
        # a sum at its extreme: where a change the test detects later would have started
        if rise <= 0.0:
            self._ph_low_at = event
        if fall <= 0.0:
            self._ph_high_at = event
        return None

    def state_dict(self) -> dict[str, Any]:
        """Both detectors as plain data (`load_state` takes it back)."""
        window, adwin_drift = adwin_state(self._adwin)
        return {
            "adwin": window,
            "adwin_drift": adwin_drift,
            "ph": page_hinkley_state(self._ph),
            "marks": [self._ph_low_at, self._ph_high_at, self._onset, self._statistic],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        self._adwin = self._new_adwin()
        restore_adwin(self._adwin, state["adwin"], state["adwin_drift"])
        self._ph = self._new_page_hinkley()
        restore_page_hinkley(self._ph, state["ph"])
        low, high, onset, statistic = state["marks"]
        self._ph_low_at, self._ph_high_at, self._onset = int(low), int(high), int(onset)
        self._statistic = float(statistic)
