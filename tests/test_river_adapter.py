"""The River adapter against the installed River: its private layout is what detectors.river_adapter
expects. A River upgrade outside TESTED_RIVER_VERSIONS fails here first; check the adapter against the
new release's drift/adwin.py and drift/page_hinkley.py, then widen the range."""
from __future__ import annotations

import subprocess
import sys

import msgpack
import numpy as np
import river
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from river import drift

from detectors.river_adapter import (
    TESTED_RIVER_VERSIONS,
    adwin_state,
    page_hinkley_state,
    page_hinkley_statistic,
    restore_adwin,
    restore_page_hinkley,
)

MIN_INSTANCES = 10


def _adwin() -> drift.ADWIN:
    return drift.ADWIN(delta=0.01, clock=1, grace_period=MIN_INSTANCES)


def _page_hinkley() -> drift.PageHinkley:
    return drift.PageHinkley(min_instances=MIN_INSTANCES, delta=0.05, threshold=8.0, alpha=1.0)


def _stream(seed: int, n: int = 600) -> list[float]:
    """N(0, 1) with a step of one sd every 150 values: several detections, each followed by a restart."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n) + (np.arange(n) // 150) % 2).tolist()


def _msgpack_round_trip(state):
    return msgpack.unpackb(msgpack.packb(state, use_bin_type=True), raw=False)


def test_installed_river_is_a_tested_release():
    assert Version(river.__version__) in SpecifierSet(TESTED_RIVER_VERSIONS), (
        f"river {river.__version__} is outside {TESTED_RIVER_VERSIONS}: check detectors/river_adapter.py against it")


def test_adwin_state_round_trips_and_the_restored_detector_continues_exactly():
    values = _stream(seed=1)
    straight = _adwin()
    expected = []
    for x in values:
        straight.update(x)
        expected.append((straight.drift_detected, straight.width))
    assert any(flag for flag, _ in expected)
    for cut in (1, 149, 300, 451):  # at the start, before, around and after detections
        first = _adwin()
        for x in values[:cut]:
            first.update(x)
        window, detected = _msgpack_round_trip(list(adwin_state(first)))
        assert isinstance(window, bytes)
        resumed = _adwin()
        restore_adwin(resumed, window, detected)
        got = expected[:cut]
        for x in values[cut:]:
            resumed.update(x)
            got.append((resumed.drift_detected, resumed.width))
        assert got == expected, cut


def test_page_hinkley_state_round_trips_and_the_restored_detector_continues_exactly():
    values = _stream(seed=2)
    straight = _page_hinkley()
    expected = []
    for x in values:
        straight.update(x)
        expected.append((straight.drift_detected, page_hinkley_statistic(straight)))
    assert any(flag for flag, _ in expected)
    for cut in (1, 149, 300, 451):
        first = _page_hinkley()
        for x in values[:cut]:
            first.update(x)
        resumed = _page_hinkley()
        restore_page_hinkley(resumed, _msgpack_round_trip(page_hinkley_state(first)))
        got = expected[:cut]
        for x in values[cut:]:
            resumed.update(x)
            got.append((resumed.drift_detected, page_hinkley_statistic(resumed)))
        assert got == expected, cut


def test_page_hinkley_statistic_is_what_river_flags_on():
    ph = _page_hinkley()
    seen, detections = 0, 0
    for x in _stream(seed=3):
        if ph.drift_detected:  # River restarts the test on the update after a detection
            seen = 0
        ph.update(x)
        seen += 1
        rise, fall = page_hinkley_statistic(ph)
        assert rise >= 0.0 and fall >= 0.0
        assert ph.drift_detected == (seen >= MIN_INSTANCES and max(rise, fall) > ph.threshold)
        detections += ph.drift_detected
    assert detections >= 2


def test_the_detectors_load_without_river_drift_package_and_its_scipy_stats():
    """`river.drift`'s __init__ imports every detector, and KSWIN's scipy.stats with them (~0.7 s of
    every start-up); the adapter loads only ADWIN's and Page-Hinkley's own modules."""
    code = ("import sys, stream.commands.replay, detectors.model, detectors.joins; "
            "print(sorted(m for m in ('river.drift', 'scipy.stats') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_already_imported_river_drift_is_used_as_it_is():
    code = ("from river import drift; from detectors import river_adapter as a; "
            "print(a.ADWIN is drift.ADWIN and a.PageHinkley is drift.PageHinkley)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
