"""How alerts are worded, through the monitor: the sentence and the cause describe the test that
fired, its numbers are the alert's own (baseline / current), and nothing in it contradicts itself."""
from __future__ import annotations

import functools
import re

import numpy as np

from baselines.build import build_baseline_from_columns
from detectors.alerts import Alert
from detectors.diagnosis import fmt_pct as percent
from detectors.model import ModelMonitor

N_TRAIN = 20_000


def _columns(n: int, seed: int, missing: float = 0.1, unseen: float = 0.0) -> dict[str, list]:
    """x ~ N(50, 10) and c in {a, b, c}, each `missing` missing; `unseen` of c new labels."""
    rng = np.random.default_rng(seed)
    x = [None if m else float(v) for m, v in zip(rng.random(n) < missing, rng.normal(50, 10, n))]
    labels = rng.choice(["a", "b", "c"], n).tolist()
    draw = rng.random(n)
    c = [None if r < missing else f"new{i % 7}" if r > 1 - unseen else v for i, (r, v) in enumerate(zip(draw, labels))]
    return {"x": x, "c": c}


@functools.cache
def _baseline():
    return build_baseline_from_columns("m", _columns(N_TRAIN, seed=0), categorical=("c",),
                                       confidence=np.random.default_rng(1).beta(8, 2, N_TRAIN))


def _events(columns: dict[str, list], confidence) -> list[dict]:
    return [{"model": "m", "features": {"x": x, "c": c}, "confidence": float(p)}
            for x, c, p in zip(columns["x"], columns["c"], confidence)]


def _run(*parts: tuple[dict[str, list], np.ndarray]) -> list[Alert]:
    monitor = ModelMonitor(_baseline())
    alerts = []
    for columns, confidence in parts:
        events = _events(columns, confidence)
        for i in range(0, len(events), 1000):
            alerts += monitor.update_batch(events[i:i + 1000])
    return alerts


def _steady(n: int, seed: int, **kw) -> tuple[dict[str, list], np.ndarray]:
    return _columns(n, seed, **kw), np.random.default_rng(seed).beta(8, 2, n)


def test_a_missing_rate_alert_says_the_rate_moved_not_the_shape():
    alerts = _run(_steady(3000, seed=2), _steady(3000, seed=3, missing=0.24))
    missing = {a.feature: a for a in alerts if a.detector == "missing_rate"}
    assert set(missing) == {"x", "c"}
    for a in missing.values():
        assert a.evidence["cause"] == "missing_rate", a.diagnosis
        assert "shape" not in a.diagnosis and "category shares" not in a.diagnosis
        # the shares in the sentence are the alert's own baseline and current rates
        head = re.match(r"missing rate (\S+) -> (\S+) since event ~([\d,]+)", a.diagnosis)
        assert head, a.diagnosis
        assert head.groups()[:2] == (percent(a.baseline["missing_rate"]), percent(a.current["missing_rate"]))
        assert 3000 - 300 < int(head.group(3).replace(",", "")) <= a.events_seen
