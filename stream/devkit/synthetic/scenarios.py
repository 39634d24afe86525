"""Seeded synthetic streams with known change points, shared by the scenario tests and the benches.

Every generator returns a `Stream`: training columns (for `build_baseline_from_columns`) and a
list of production events in the event contract of docs/contracts.md, plus where and what the change
is. Training and production come from separate seeds so that many production runs can share
one baseline, and the baseline is a finite sample: its estimation error is part of every test.

The mixed feature set cycles through five kinds, one in five categorical::

    normal_00  N(0.5, 0.2)                       (the seed's example feature)
    lognormal_01, poisson_02 (integer counts, many ties), uniform_03,
    category_04 (skewed shares: Zipf-like over 8 categories), normal_05, ...

Some features have a small missing rate (values `None`), as real training data does. Every
event carries a `confidence` (Beta(8, 2), mean 0.8) and a binary `prediction`.

Generation is vectorised numpy; only the final assembly into dicts is a Python loop.

>>> s = mean_shift(2_000, at=1_000, k=1.0, seed=3, n_train=1_000)
>>> len(s.events), s.change_at, s.feature, sorted(s.training)[:3]
(2000, 1000, 'normal_00', ['category_04', 'category_09', 'lognormal_01'])
>>> s.events[0]["model"], s.events[0]["model_version"], sorted(s.events[0]["features"])[:2]
('synthetic', '1', ['category_04', 'category_09'])
>>> mean_shift(10, at=5, seed=3, n_train=10).events == mean_shift(10, at=5, seed=3, n_train=10).events
True
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from baselines.build import build_baseline_from_columns
from baselines.profile import Baseline
from detectors.alerts import Alert
from detectors.model import ModelMonitor

__all__ = ["MODEL", "MODEL_VERSION", "NEW_CATEGORY", "FeatureSpec", "Production", "Stream", "confidence_drop",
           "gradual_drift", "make_stream", "mean_shift", "missing_rise", "new_category", "replay", "run_scenario",
           "seed_example", "shared_baseline", "stationary", "variance_change"]

MODEL = "synthetic"
MODEL_VERSION = "1"
#: event time of the first production event; events are 10 ms apart
T0 = 1_764_000_000.0
KINDS = ("normal", "lognormal", "poisson", "uniform", "category")
#: a new category that never occurs in training
NEW_CATEGORY = "zz-unseen"


@dataclass(frozen=True)
class FeatureSpec:
    """One synthetic feature: its distribution and its missing rate."""

    name: str
    kind: str
    params: tuple[float, ...]
    missing_rate: float = 0.0

    @property
    def categories(self) -> list[str]:
        return [f"{self.name[-2:]}-c{i}" for i in range(8)]

    @property
    def shares(self) -> np.ndarray:
        w = 1.0 / np.arange(1, 9) ** 1.3  # skewed: the top category holds ~46 %, the last ~3 %
        return w / w.sum()

    @property
    def std(self) -> float:
        """Population standard deviation (numeric kinds): the unit of a 'k std' change."""
        if self.kind == "normal":
            return self.params[1]
        if self.kind == "lognormal":
            mu, sigma = self.params
            return float(np.sqrt((np.exp(sigma**2) - 1) * np.exp(2 * mu + sigma**2)))
        if self.kind == "poisson":
            return float(np.sqrt(self.params[0]))
        if self.kind == "uniform":
            return (self.params[1] - self.params[0]) / np.sqrt(12)
        raise ValueError(f"{self.name} is categorical: it has no std")

    @property
    def mean(self) -> float:
        if self.kind == "normal":
            return self.params[0]
        if self.kind == "lognormal":
            mu, sigma = self.params
            return float(np.exp(mu + sigma**2 / 2))
        if self.kind == "poisson":
            return self.params[0]
        if self.kind == "uniform":
            return (self.params[0] + self.params[1]) / 2
        raise ValueError(f"{self.name} is categorical: it has no mean")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n values: float64 (int64 for poisson), or an object array of category strings."""
        if self.kind == "normal":
            return rng.normal(self.params[0], self.params[1], n)
        if self.kind == "lognormal":
            return rng.lognormal(self.params[0], self.params[1], n)
        if self.kind == "poisson":
            return rng.poisson(self.params[0], n)
        if self.kind == "uniform":
            return rng.uniform(self.params[0], self.params[1], n)
        return _sample_categories(rng, n, self.categories, self.shares)


def _sample_categories(rng: np.random.Generator, n: int, categories: list[str], shares: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(np.cumsum(shares), rng.random(n), side="right")
    return np.asarray(categories, dtype=object)[np.minimum(idx, len(categories) - 1)]


def _mixed_features(n_features: int = 10) -> list[FeatureSpec]:
    """The mixed feature set: kinds cycle through KINDS, parameters vary with the index."""
    specs = []
    for i in range(n_features):
        kind = KINDS[i % len(KINDS)]
        j = i // len(KINDS)  # the j-th feature of this kind
        params = {
            "normal": (0.5, 0.2) if j == 0 else (10.0 * j, 1.0 + j),
            "lognormal": (3.0 + 0.1 * j, 0.8),
            "poisson": (3.0 + 2 * j,),
            "uniform": (0.0, 1.0 + j),
            "category": (),
        }[kind]
        # a small training missing rate on one feature in three: missing-rate tests need a reference
        missing = 0.01 if i % 3 == 1 else 0.0
        specs.append(FeatureSpec(f"{kind}_{i:02d}", kind, params, missing))
    return specs


@dataclass
class Production:
    """Production columns while a scenario edits them (before assembly into events)."""

    values: dict[str, np.ndarray]
    missing: dict[str, np.ndarray]  # bool mask per feature
    confidence: np.ndarray
    prediction: np.ndarray
    rng: np.random.Generator

    @property
    def n(self) -> int:
        return len(self.confidence)


@dataclass(frozen=True)
class Stream:
    """Training columns, production events and the known change."""

    training: dict[str, list]  # feature columns
    training_confidence: list[float]
    training_prediction: list[int]
    events: list[dict[str, Any]]
    specs: tuple[FeatureSpec, ...]
    change_at: int | None  # index of the first changed event (None: stationary)
    feature: str | None  # the changed feature ("confidence" for a confidence change)

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs if s.kind == "category")

    def baseline(self) -> Baseline:
        """The baseline built from the stream's training columns (`shared_baseline` caches the default one)."""
        return build_baseline_from_columns(
            MODEL,
            self.training,
            version=MODEL_VERSION,
            confidence=self.training_confidence,
            prediction=self.training_prediction,
            categorical=self.categorical,
        )


def _columns(
    specs: list[FeatureSpec], rng: np.random.Generator, n: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    values = {s.name: s.sample(rng, n) for s in specs}
    missing = {s.name: rng.random(n) < s.missing_rate for s in specs}
    return values, missing


def _as_list(values: np.ndarray, missing: np.ndarray) -> list:
    out = values.tolist()
    for i in np.flatnonzero(missing).tolist():
        out[i] = None
    return out


def _confidence(rng: np.random.Generator, n: int, a: float = 8.0, b: float = 2.0) -> np.ndarray:
    return rng.beta(a, b, n)


def _prediction(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.random(n) < 0.3).astype(np.int64)


def make_stream(
    n_events: int,
    change: Callable[[Production, list[FeatureSpec]], None] | None = None,
    *,
    change_at: int | None = None,
    feature: str | None = None,
    n_features: int = 10,
    seed: int = 1,
    n_train: int = 20_000,
    train_seed: int = 0,
) -> Stream:
    """Generate training (seed `train_seed`) and production (seed `seed`), apply `change` to
    the production columns, and assemble the events."""
    specs = _mixed_features(n_features)
    train_rng = np.random.default_rng(train_seed)
    t_values, t_missing = _columns(specs, train_rng, n_train)
    training = {name: _as_list(v, t_missing[name]) for name, v in t_values.items()}
    train_confidence = _confidence(train_rng, n_train).tolist()
    train_prediction = _prediction(train_rng, n_train).tolist()

    rng = np.random.default_rng([seed, 1])  # never the training stream, even when seed == train_seed
    values, missing = _columns(specs, rng, n_events)
    prod = Production(values, missing, _confidence(rng, n_events), _prediction(rng, n_events), rng)
    if change is not None:
        change(prod, specs)
    return Stream(training, train_confidence, train_prediction, _events_from_columns(prod), tuple(specs),
                  change_at, feature)


def _events_from_columns(prod: Production) -> list[dict[str, Any]]:
    names = list(prod.values)
    columns = [_as_list(prod.values[n], prod.missing[n]) for n in names]
    n = prod.n
    ts = (T0 + 0.01 * np.arange(n)).tolist()
    return [
        {
            "model": MODEL,
            "model_version": MODEL_VERSION,
            "request_id": f"r-{i}",
            "ts": t,
            "features": dict(zip(names, row)),
            "prediction": p,
            "confidence": c,
        }
        for i, t, row, p, c in zip(range(n), ts, zip(*columns), prod.prediction.tolist(), prod.confidence.tolist())
    ]


def _spec(specs: list[FeatureSpec], name: str) -> FeatureSpec:
    return next(s for s in specs if s.name == name)


# ---- scenarios ---------------------------------------------------------------------------
def stationary(n_events: int, **kw: Any) -> Stream:
    """Production drawn from the training distributions: no alert is correct."""
    return make_stream(n_events, **kw)


def mean_shift(n_events: int, *, at: int, k: float = 1.0, feature: str = "normal_00", **kw: Any) -> Stream:
    """From event `at` on, `feature` is shifted by `k` population std (at=0: skew from the first event)."""

    def change(prod: Production, specs: list[FeatureSpec]) -> None:
        prod.values[feature] = prod.values[feature].astype(np.float64)
        prod.values[feature][at:] += k * _spec(specs, feature).std

    return make_stream(n_events, change, change_at=at, feature=feature, **kw)


def variance_change(n_events: int, *, at: int, factor: float = 2.0, feature: str = "normal_00", **kw: Any) -> Stream:
    """From event `at` on, `feature`'s spread around its mean is multiplied by `factor`; the mean is unchanged."""

    def change(prod: Production, specs: list[FeatureSpec]) -> None:
        mu = _spec(specs, feature).mean
        prod.values[feature] = prod.values[feature].astype(np.float64)
        prod.values[feature][at:] = mu + (prod.values[feature][at:] - mu) * factor

    return make_stream(n_events, change, change_at=at, feature=feature, **kw)


def gradual_drift(
    n_events: int, *, start: int, length: int, k: float = 1.0, feature: str = "normal_00", **kw: Any
) -> Stream:
    """The mean of `feature` ramps linearly from 0 to `k` std over `length` events from `start`, then stays."""

    def change(prod: Production, specs: list[FeatureSpec]) -> None:
        ramp = np.clip((np.arange(prod.n) - start + 1) / length, 0.0, 1.0)
        prod.values[feature] = prod.values[feature] + k * _spec(specs, feature).std * ramp

    return make_stream(n_events, change, change_at=start, feature=feature, **kw)


def new_category(n_events: int, *, at: int, share: float = 0.1, feature: str = "category_04", **kw: Any) -> Stream:
    """From event `at` on, a share of `feature`'s values is a category never seen in training."""

    def change(prod: Production, specs: list[FeatureSpec]) -> None:
        hit = prod.rng.random(prod.n - at) < share
        prod.values[feature][at:][hit] = NEW_CATEGORY

    return make_stream(n_events, change, change_at=at, feature=feature, **kw)


def missing_rise(n_events: int, *, at: int, rate: float = 0.1, feature: str = "lognormal_01", **kw: Any) -> Stream:
    """From event `at` on, `feature` is missing (null) at `rate` instead of its training rate."""

    def change(prod: Production, specs: list[FeatureSpec]) -> None:
        prod.missing[feature][at:] = prod.rng.random(prod.n - at) < rate

    return make_stream(n_events, change, change_at=at, feature=feature, **kw)


def confidence_drop(n_events: int, *, at: int, a: float = 5.0, b: float = 3.0, **kw: Any) -> Stream:
    """From event `at` on, confidence is Beta(a, b) (default mean 0.625) instead of Beta(8, 2) (mean 0.8)."""

    def change(prod: Production, specs: list[FeatureSpec]) -> None:
        prod.confidence[at:] = _confidence(prod.rng, prod.n - at, a, b)

    return make_stream(n_events, change, change_at=at, feature="confidence", **kw)


def seed_example(n_events: int, **kw: Any) -> Stream:
    """The seed's example: `normal_00` is N(0.5, 0.2) in training and N(0.3, 0.4) in production
    from the first event (the other features are stationary)."""

    def change(prod: Production, specs: list[FeatureSpec]) -> None:
        prod.values["normal_00"] = prod.rng.normal(0.3, 0.4, prod.n)

    return make_stream(n_events, change, change_at=0, feature="normal_00", **kw)


# ---- running a scenario --------------------------------------------------------------------
@cache
def shared_baseline(n_features: int = 10) -> Baseline:
    """The baseline of every scenario with `n_features` features: all generators share training seed 0."""
    return stationary(0, n_features=n_features).baseline()


def run_scenario(stream: Stream, batch_size: int = 1000) -> list[Alert]:
    """The stream's events through a fresh monitor of the shared baseline, `batch_size` at a time."""
    return replay(ModelMonitor(shared_baseline(len(stream.specs))), stream.events, batch_size)


def replay(monitor: ModelMonitor, events: list[dict], batch_size: int = 1000) -> list[Alert]:
    """Every alert of `monitor` over `events`, fed `batch_size` at a time."""
    alerts: list[Alert] = []
    for i in range(0, len(events), batch_size):
        alerts.extend(monitor.update_batch(events[i : i + batch_size]))
    return alerts
