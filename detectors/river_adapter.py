"""Every use of River's private attributes, in one place.

River has no public way to save and restore a detector as plain data, nor to read Page-Hinkley's
test value; both need attributes River keeps private (and changes between releases). This module is
the only one that touches them, and `tests/test_river_adapter.py` checks them against the installed
River first: an upgrade outside `TESTED_RIVER_VERSIONS` fails there, not in a restored monitor.

- ADWIN: its window is the bytes River's Rust core exports itself (`AdaptiveWindowing.__getstate__`,
  a bincode record of bucket sums; not pickle), plus the drift flag of the last update.
- Page-Hinkley: the running mean, the two cumulative sums and their extremes, the drift flag.

It also loads the two detectors skewwatch uses, `ADWIN` and `PageHinkley`, from River's own module
files without running `river.drift`'s package `__init__`, which imports every detector and
KSWIN's scipy.stats with them: ~0.7 s of every start-up (`skewwatch replay`, the worker) for code
skewwatch never runs. If `river.drift` is already imported, its classes are used as they are.

>>> ph = PageHinkley(min_instances=1, delta=0.0, threshold=1.5, alpha=1.0)
>>> for x in (0.0, 0.0, 0.0, 4.0):  # the mean of 0, 0, 0, 4 is 1: the sum rises by 3
...     ph.update(x)
>>> page_hinkley_statistic(ph), ph.drift_detected
((3.0, 0.0), True)
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["ADWIN", "TESTED_RIVER_VERSIONS", "PageHinkley", "adwin_state", "page_hinkley_state",
           "page_hinkley_statistic", "restore_adwin", "restore_page_hinkley"]

#: River releases whose private layout this module matches. 0.25.0 moved ADWIN's window to the Rust
#: `AdaptiveWindowing` (before it, a Cython object with no bytes state). Verified with 0.25.0 and 0.26.1
#: (tests/test_river_adapter.py and the monitor's alerts and state); a state saved under 0.25.0 restores
#: under 0.26.1.
TESTED_RIVER_VERSIONS = ">=0.25,<0.27"


def _drift_module(name: str) -> ModuleType:
    """River's `river/drift/<name>.py`, without the package `__init__` of `river.drift` (see above)."""
    if "river.drift" in sys.modules:
        return importlib.import_module(f"river.drift.{name}")
    river = importlib.util.find_spec("river")
    path = Path(next(iter(river.submodule_search_locations))) / "drift" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"detectors._river_drift_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ADWIN = _drift_module("adwin").ADWIN
PageHinkley = _drift_module("page_hinkley").PageHinkley


def adwin_state(adwin: ADWIN) -> tuple[bytes, bool]:
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


def restore_adwin(adwin: ADWIN, window: bytes, drift_detected: bool) -> None:
    """Put an `adwin_state` back into a new ADWIN built with the same parameters."""
    adwin._helper.__setstate__(bytes(window))
    adwin._drift_detected = bool(drift_detected)


def page_hinkley_state(ph: PageHinkley) -> list[float | bool]:
    """[values seen, their mean, increase sum, decrease sum, lowest increase sum, highest decrease sum,
    drift flag of the last update] of a Page-Hinkley detector, as plain data."""
    return [float(ph._x_mean.n), float(ph._x_mean._mean), float(ph._sum_increase), float(ph._sum_decrease),
            float(ph._min_increase), float(ph._max_decrease), bool(ph._drift_detected)]


def restore_page_hinkley(ph: PageHinkley, state: list[float | bool]) -> None:
    """Put a `page_hinkley_state` back into a new Page-Hinkley detector built with the same parameters."""
    n, mean, increase, decrease, min_increase, max_decrease, detected = state
    ph._x_mean.n, ph._x_mean._mean = float(n), float(mean)
    ph._sum_increase, ph._sum_decrease = float(increase), float(decrease)
    ph._min_increase, ph._max_decrease = float(min_increase), float(max_decrease)
    ph._drift_detected = bool(detected)


def page_hinkley_statistic(ph: PageHinkley) -> tuple[float, float]:
    """Page-Hinkley's two test values after its last update: (rise, fall).

    rise is how far the increase sum stands above its lowest point, fall how far the decrease sum
    stands below its highest; River flags a drift when either exceeds its threshold (once it has seen
    `min_instances` values). Each is 0 exactly when its sum is at its extreme, i.e. where a change
    that the test later detects would have started.
    """
    return ph._sum_increase - ph._min_increase, ph._max_decrease - ph._sum_decrease
