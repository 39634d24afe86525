"""Small baselines and event streams for the stream and integration tests."""
from __future__ import annotations

import numpy as np
import orjson
import pytest

from baselines.build import build_baseline_from_columns
from baselines.profile import Baseline


def training_baseline(model: str = "credit", seed: int = 0, n: int = 4_000, version: str = "1") -> Baseline:
    rng = np.random.default_rng(seed)
    return build_baseline_from_columns(
        model,
        {"amount": rng.normal(100.0, 20.0, n), "age": rng.normal(40.0, 10.0, n),
         "country": rng.choice(["US", "FR", "DE"], n).tolist()},
        version=version,
        confidence=rng.beta(8, 2, n),
    )


def events(model: str, n: int, seed: int, amount_mean: float = 100.0, age_mean: float = 40.0,
           t0: float = 1_764_000_000.0) -> list[dict]:
    """`n` events (10 ms apart from `t0`); the means move the features away from training."""
    rng = np.random.default_rng(seed)
    amount = rng.normal(amount_mean, 20.0, n)
    age = rng.normal(age_mean, 10.0, n)
    country = rng.choice(["US", "FR", "DE"], n)
    confidence = rng.beta(8, 2, n)
    return [{"model": model, "model_version": "1", "features": {"amount": float(a), "age": float(g), "country": str(c)},
             "confidence": float(p), "ts": t0 + 0.01 * i}
            for i, (a, g, c, p) in enumerate(zip(amount, age, country, confidence))]


def as_json(evs: list[dict]) -> list[bytes]:
    return [orjson.dumps(e) for e in evs]


# Fixtures, imported by the test modules that use them (a second conftest.py next to
# tests/integration/conftest.py would clash under --doctest-modules).
@pytest.fixture(scope="session")
def credit_baseline() -> Baseline:
    return training_baseline("credit", seed=0)


@pytest.fixture(scope="session")
def fraud_baseline() -> Baseline:
    return training_baseline("fraud", seed=1)


def poison_monitors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every `ModelMonitor` raise after the real update of a batch holding an event with
    request_id "poison": the state is half-updated, as an engine bug would leave it."""
    from detectors.model import ModelMonitor

    update_batch = ModelMonitor.update_batch

    def raise_on_poison(monitor: ModelMonitor, evs: list[dict]) -> list:
        alerts = update_batch(monitor, evs)
        if any(e.get("request_id") == "poison" for e in evs):
            raise TypeError("unhashable type: 'list'")
        return alerts

    monkeypatch.setattr(ModelMonitor, "update_batch", raise_on_poison)
    update_extracted = ModelMonitor.update_extracted

    def extracted_raise_on_poison(monitor: ModelMonitor, batches: list) -> list:
        alerts = update_extracted(monitor, batches)
        if any(e.get("request_id") == "poison" for b in batches for e in b.events):
            raise TypeError("unhashable type: 'list'")
        return alerts

    monkeypatch.setattr(ModelMonitor, "update_extracted", extracted_raise_on_poison)
    update_scanned = ModelMonitor.update_scanned

    def scanned_raise_on_poison(monitor: ModelMonitor, block, payloads: list[bytes], rows: list[int]) -> list:
        alerts = update_scanned(monitor, block, payloads, rows)
        if any(orjson.loads(payloads[r]).get("request_id") == "poison" for r in rows):
            raise TypeError("unhashable type: 'list'")
        return alerts

    monkeypatch.setattr(ModelMonitor, "update_scanned", scanned_raise_on_poison)
