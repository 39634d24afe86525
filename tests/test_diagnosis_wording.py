"""How alerts are worded, through the monitor: the sentence and the cause describe the test that
fired, its numbers are the alert's own (baseline / current), and nothing in it contradicts itself."""
from __future__ import annotations

import functools
import re

import numpy as np

from baselines.build import build_baseline_from_columns
from detectors.alerts import Alert
from detectors.diagnosis import diagnose_numeric
from detectors.fmt import number, percent
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


def _shifted_amounts(k: float) -> tuple[object, list[dict]]:
    rng = np.random.default_rng(7)
    base = build_baseline_from_columns("m", {"amount": rng.normal(70_000, 9_000, N_TRAIN)},
                                       confidence=rng.beta(8, 2, N_TRAIN))
    amounts = rng.normal(70_000, 9_000, 3000) + np.where(np.arange(3000) >= 1000, k * 9_000, 0.0)
    confidence = rng.beta(8, 2, 3000) * np.where(np.arange(3000) >= 1000, 0.7, 1.0)
    return base, [{"model": "m", "features": {"amount": float(a)}, "confidence": float(p)}
                  for a, p in zip(amounts, confidence)]


def test_sentences_write_numbers_in_the_common_format():
    base, events = _shifted_amounts(1.0)
    alerts = ModelMonitor(base).update_batch(events)
    drift = next(a for a in alerts if a.feature == "amount")
    assert "e+0" not in drift.diagnosis, drift.diagnosis
    assert f"mean {number(drift.baseline['mean'])} -> {number(drift.current['mean'])}" in drift.diagnosis


def test_a_confidence_drop_says_what_was_seen_not_a_verdict():
    base, events = _shifted_amounts(0.0)
    drop = next(a for a in ModelMonitor(base).update_batch(events) if a.kind == "confidence_drop")
    assert "out of distribution)" not in drop.diagnosis and "inputs the model has not seen" not in drop.diagnosis
    assert f"mean {number(drop.baseline['mean'])} -> {number(drop.current['mean'])}" in drop.diagnosis
    low = re.search(r"(\S+) of predictions below ([\d.]+) \(training: 5%\)", drop.diagnosis)
    assert low and float(low.group(2)) == float(number(drop.baseline["p05"])), drop.diagnosis
    assert "check" in drop.diagnosis  # suggests where to look


def test_valid_values_are_not_called_unchanged_beside_numbers_that_moved():
    rng = np.random.default_rng(3)
    profile = build_baseline_from_columns("m", {"x": rng.lognormal(3, 0.8, N_TRAIN)}).features["x"]
    recent = rng.lognormal(3, 0.8, 400) * 0.93  # a small move, under the rule's tolerance
    d = diagnose_numeric(profile, recent, n_missing=112, n_invalid=0, n_total=512)
    assert d.cause == "missing_rate"
    assert "unchanged" not in d.sentence, d.sentence


def test_a_sentence_does_not_repeat_the_alert_kind():
    base, events = _shifted_amounts(1.0)
    for a in ModelMonitor(base).update_batch(events):
        assert not a.diagnosis.lower().startswith((a.kind.replace("_", " "), a.kind)), a.diagnosis
