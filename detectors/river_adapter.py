"""Every use of River's private attributes, in one place.

River has no public way to save and restore a detector as plain data, nor to read Page-Hinkley's
test value; both need attributes River keeps private (and changes between releases). This module is
the only one that touches them, and `tests/test_river_adapter.py` checks them against the installed
River first: an upgrade outside `TESTED_RIVER_VERSIONS` fails there, not in a restored monitor.

- ADWIN: its window is the bytes River's Rust core exports itself (`AdaptiveWindowing.__getstate__`,
  a bincode record of bucket sums; not pickle), plus the drift flag of the last update.
- Page-Hinkley: the running mean, the two cumulative sums and their extremes, the drift flag.

>>> from river import drift
>>> ph = drift.PageHinkley(min_instances=1, delta=0.0, threshold=1.5, alpha=1.0)
>>> for x in (0.0, 0.0, 0.0, 4.0):  # the mean of 0, 0, 0, 4 is 1: the sum rises by 3
...     ph.update(x)
>>> page_hinkley_statistic(ph), ph.drift_detected
((3.0, 0.0), True)
"""
from __future__ import annotations

from river import drift

__all__ = ["TESTED_RIVER_VERSIONS", "adwin_state", "page_hinkley_state", "page_hinkley_statistic", "restore_adwin",
           "restore_page_hinkley"]

#: River releases whose private layout this module matches. 0.25.0 moved ADWIN's window to the Rust
#: `AdaptiveWindowing` (before it, a Cython object with no bytes state). Verified with 0.25.0 and 0.26.1
#: (tests/test_river_adapter.py and the monitor's alerts and state); a state saved under 0.25.0 restores
#: under 0.26.1.
TESTED_RIVER_VERSIONS = ">=0.25,<0.27"


def adwin_state(adwin: drift.ADWIN) -> tuple[bytes, bool]:
    """(window, drift flag of the last update) of an ADWIN, as plain data.

    Parameters
    ----------
    adwin
        The detector; left unchanged.

    Returns
    -------
    tuple of bytes and bool
        The window as River's Rust core serialises it, and whether the last update flagged a drift
        (River restarts the window at the next update when it did).
    """
    return adwin._helper.__getstate__(), bool(adwin._drift_detected)


def restore_adwin(adwin: drift.ADWIN, window: bytes, drift_detected: bool) -> None:
    """Put an `adwin_state` back into a new ADWIN built with the same parameters."""
    adwin._helper.__setstate__(bytes(window))
    adwin._drift_detected = bool(drift_detected)


def page_hinkley_state(ph: drift.PageHinkley) -> list[float | bool]:
    """[values seen, their mean, increase sum, decrease sum, lowest increase sum, highest decrease sum,
    drift flag of the last update] of a Page-Hinkley detector, as plain data."""
    return [float(ph._x_mean.n), float(ph._x_mean._mean), float(ph._sum_increase), float(ph._sum_decrease),
            float(ph._min_increase), float(ph._max_decrease), bool(ph._drift_detected)]


def restore_page_hinkley(ph: drift.PageHinkley, state: list[float | bool]) -> None:
    """Put a `page_hinkley_state` back into a new Page-Hinkley detector built with the same parameters."""
    n, mean, increase, decrease, min_increase, max_decrease, detected = state
    ph._x_mean.n, ph._x_mean._mean = float(n), float(mean)
    ph._sum_increase, ph._sum_decrease = float(increase), float(decrease)
    ph._min_increase, ph._max_decrease = float(min_increase), float(max_decrease)
    ph._drift_detected = bool(detected)


def page_hinkley_statistic(ph: drift.PageHinkley) -> tuple[float, float]:
    """Page-Hinkley's two test values after its last update: (rise, fall).

    rise is how far the increase sum stands above its lowest point, fall how far the decrease sum
    stands below its highest; River flags a drift when either exceeds its threshold (once it has seen
    `min_instances` values). Each is 0 exactly when its sum is at its extreme, i.e. where a change
    that the test later detects would have started.
    """
    return ph._sum_increase - ph._min_increase, ph._max_decrease - ph._sum_decrease
