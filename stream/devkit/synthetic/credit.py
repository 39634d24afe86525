"""A synthetic credit-risk model: its training data and the production traffic it then sees.

Pure numpy, seeded: the demo, the end-to-end benchmark and the tests all use the same
applicants. Fifteen mixed features (lognormal income, discrete loan terms, Poisson counts,
skewed categories, a boolean), a logistic default model that produces ``prediction``
(1 = predicted default) and ``confidence``, and the true ``label``.

Production traffic runs through phases, each one adding a problem to the previous ones, the
way incidents pile up in real systems:

1. ``normal``: applicants drawn exactly like the training set;
2. ``shift``: a real population change: incomes 30% lower, more applications from mobile;
3. ``missing``: an upstream join breaks and ``employment_years`` is null in 30% of events;
4. ``confidence``: a serving problem makes the model unsure (its logits shrink towards 0).

>>> cols = training(1000, seed=1)
>>> len(FEATURES), len(cols["income"]), sorted(set(cols["term_months"].tolist()))
(15, 1000, [12, 24, 36, 60])
>>> events = traffic(seed=1, phases=(Phase("normal", 3),))
>>> [(phase.name, sorted(event)) for phase, event in events][0]
('normal', ['confidence', 'features', 'model', 'model_version', 'prediction', 'request_id'])
"""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CATEGORICAL", "EMPLOYMENT_MISSING_RATE", "FEATURES", "MODEL", "MODEL_VERSION", "NUMERIC", "PURPOSES",
           "Phase", "baseline", "scenario", "training", "traffic"]

MODEL = "credit"
MODEL_VERSION = "1"

NUMERIC = (
    "age",
    "income",
    "loan_amount",
    "term_months",
    "credit_score",
    "debt_to_income",
    "num_open_accounts",
    "employment_years",
    "delinquencies_2y",
    "utilization",
)
CATEGORICAL = ("home_ownership", "purpose", "state", "channel", "has_cosigner")
FEATURES = NUMERIC + CATEGORICAL

TERMS = np.array([12, 24, 36, 60])
TERM_SHARES = np.array([0.10, 0.20, 0.45, 0.25])
PURPOSES = np.array(["debt_consolidation", "credit_card", "home_improvement", "car", "medical", "small_business"])
PURPOSE_SHARES = np.array([0.42, 0.22, 0.12, 0.10, 0.07, 0.07])
# Application volume by state is heavy-tailed (Zipf-like over the 20 largest markets).
STATES = np.array(
    ["CA", "TX", "FL", "NY", "IL", "PA", "OH", "GA", "NC", "MI",
     "NJ", "VA", "WA", "AZ", "MA", "TN", "IN", "MO", "MD", "WI"]
)
STATE_SHARES = 1.0 / np.arange(1, len(STATES) + 1) ** 0.9
STATE_SHARES /= STATE_SHARES.sum()
CHANNELS = np.array(["web", "mobile", "branch"])
# Training-time share of employment_years left empty by the application form.
EMPLOYMENT_MISSING_RATE = 0.01


#: rows of the training set the demo's and benches' baseline is built from
TRAINING_ROWS = 50_000


@dataclass(frozen=True)
class Phase:
    """A stretch of production traffic and what is wrong with it.

    ``events`` is the phase length; None means the phase never ends. The other fields are
    cumulative problems: `traffic` applies each phase's settings as given (the default
    scenario repeats earlier problems in later phases so that they pile up).
    """

    name: str
    events: int | None
    description: str = ""
    income_factor: float = 1.0
    channel_shares: tuple[float, float, float] = (0.55, 0.30, 0.15)
    employment_missing_rate: float = EMPLOYMENT_MISSING_RATE
    logit_scale: float = 1.0


def scenario(normal: int, shift: int, missing: int, confidence: int | None = None) -> tuple[Phase, ...]:
    """The default incident: normal, then a population shift, then missing values, then low confidence.

    Lengths are in events; the demo derives them from its rate so that each problem shows
    within seconds.
    """
    normal_phase = Phase("normal", normal, "applicants look like the training data")
    shift_phase = dataclasses.replace(
        normal_phase,
        name="shift",
        events=shift,
        description="population shift: incomes 30% lower, mobile applications up from 30% to 55%",
        income_factor=0.7,
        channel_shares=(0.35, 0.55, 0.10),
    )
    missing_phase = dataclasses.replace(
        shift_phase,
        name="missing",
        events=missing,
        description="broken upstream join: employment_years is null in 30% of events",
        employment_missing_rate=0.30,
    )
    confidence_phase = dataclasses.replace(
        missing_phase,
        name="confidence",
        events=confidence,
        description="serving problem: the model's logits shrink, its confidence drops towards 0.5",
        logit_scale=0.25,
    )
    return (normal_phase, shift_phase, missing_phase, confidence_phase)


def training(n: int, seed: int = 0) -> dict[str, Any]:
    """``n`` training rows as columns: the FEATURES plus ``prediction``, ``confidence``, ``label``.

    Numeric columns are numpy arrays except ``employment_years``, a list with None where the
    form was left empty (the builder counts None as missing, NaN as invalid).
    """
    rng = np.random.default_rng(seed)
    cols, missing = _applicants(rng, n, Phase("training", n))
    cols.update(_score(rng, cols, missing, logit_scale=1.0))
    cols["employment_years"] = [None if m else v for v, m in zip(cols["employment_years"].tolist(), missing)]
    return cols


def traffic(seed: int = 0, phases: tuple[Phase, ...] | None = None, chunk: int = 1000) -> Iterator[tuple[Phase, dict]]:
    """Production events as ``(phase, event)`` pairs, phase after phase.

    Events follow the prediction-event contract (no ``ts``: the producer stamps the time it
    sends). The iterator is endless when the last phase has ``events=None``.
    """
    rng = np.random.default_rng(seed)
    request_ids = itertools.count()
    for phase in phases if phases is not None else scenario(20_000, 20_000, 20_000):
        remaining = phase.events
        while remaining is None or remaining > 0:
            n = chunk if remaining is None else min(chunk, remaining)
            for event in _events(rng, n, phase, request_ids):
                yield phase, event
            if remaining is not None:
                remaining -= n


def _events(rng: np.random.Generator, n: int, phase: Phase, request_ids: Iterator[int]) -> list[dict]:
    cols, missing = _applicants(rng, n, phase)
    scored = _score(rng, cols, missing, logit_scale=phase.logit_scale)
    names = list(FEATURES)
    # tolist() turns numpy scalars into Python ones, which every encoder accepts.
    rows = zip(*(cols[name].tolist() for name in names))
    events = []
    for row, is_missing, prediction, confidence, rid in zip(
        rows, missing.tolist(), scored["prediction"].tolist(), scored["confidence"].tolist(), request_ids
    ):
        features = dict(zip(names, row))
        if is_missing:
            features["employment_years"] = None
        events.append(
            {
                "model": MODEL,
                "model_version": MODEL_VERSION,
                "request_id": f"r-{rid}",
                "features": features,
                "prediction": prediction,
                "confidence": confidence,
            }
        )
    return events


def _applicants(rng: np.random.Generator, n: int, phase: Phase) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Feature columns and the mask of events whose employment_years is missing."""
    age = np.clip(np.round(21 + rng.gamma(4.0, 4.5, n)), 21, 80).astype(np.int64)
    income = np.round(rng.lognormal(np.log(62_000), 0.5, n) * phase.income_factor, -2)
    # Loans scale with income, capped by the lender's product range.
    loan_amount = np.clip(np.round(income * rng.lognormal(np.log(0.22), 0.45, n), -1), 1_000, 40_000)
    term_months = rng.choice(TERMS, n, p=TERM_SHARES)
    credit_score = np.clip(np.round(rng.normal(690, 55, n)), 300, 850).astype(np.int64)
    debt_to_income = np.round(rng.beta(2.2, 6.0, n) * 0.8, 3)
    num_open_accounts = rng.poisson(6.0, n)
    employment_years = np.round(np.minimum(age - 18, rng.exponential(6.0, n)), 1)
    delinquencies_2y = rng.poisson(0.3 + 0.5 * (credit_score < 620), n)
    utilization = np.round(rng.beta(2.0, 3.0, n), 3)
    # Home ownership rises with age: mortgages from the thirties, outright ownership later.
    own_weight = np.clip((age - 25) / 60, 0.02, 0.6)
    u = rng.random(n)
    home_ownership = np.where(u < own_weight * 0.35, "OWN", np.where(u < own_weight * 1.35, "MORTGAGE", "RENT"))
    purpose = rng.choice(PURPOSES, n, p=PURPOSE_SHARES)
    state = rng.choice(STATES, n, p=STATE_SHARES)
    channel = rng.choice(CHANNELS, n, p=np.asarray(phase.channel_shares))
    has_cosigner = rng.random(n) < 0.08
    missing = rng.random(n) < phase.employment_missing_rate
    cols = {
        "age": age,
        "income": income,
        "loan_amount": loan_amount,
        "term_months": term_months,
        "credit_score": credit_score,
        "debt_to_income": debt_to_income,
        "num_open_accounts": num_open_accounts,
        "employment_years": employment_years,
        "delinquencies_2y": delinquencies_2y,
        "utilization": utilization,
        "home_ownership": home_ownership,
        "purpose": purpose,
        "state": state,
        "channel": channel,
        "has_cosigner": has_cosigner,
    }
    return cols, missing


def _score(
    rng: np.random.Generator, cols: dict[str, np.ndarray], missing: np.ndarray, logit_scale: float
) -> dict[str, np.ndarray]:
    """The true default risk, the label drawn from it, and the model's prediction and confidence."""
    # The model imputes a missing employment_years with its training mean (5 years): missing
    # values alone barely move its scores, so the confidence drop stays a separate incident.
    employment = np.where(missing, 5.0, cols["employment_years"])
    risk_logit = (
        -1.6
        - 0.014 * (cols["credit_score"] - 690)
        + 3.0 * (cols["debt_to_income"] - 0.22)
        + 0.45 * cols["delinquencies_2y"]
        - 0.3 * (np.log(cols["income"]) - np.log(62_000))
        + 0.4 * (cols["term_months"] == 60)
        + 1.5 * (cols["utilization"] - 0.4)
        - 0.05 * (employment - 5.0)
        - 0.5 * cols["has_cosigner"]
        + 0.4 * (cols["purpose"] == "small_business")
    )
    label = (rng.random(len(risk_logit)) < _sigmoid(risk_logit)).astype(np.int64)
    # The model is good but not perfect: its logit is the true one plus estimation noise.
    model_logit = (risk_logit + rng.normal(0.0, 0.5, len(risk_logit))) * logit_scale
    p_default = _sigmoid(model_logit)
    prediction = (p_default >= 0.5).astype(np.int64)
    confidence = np.round(np.maximum(p_default, 1.0 - p_default), 4)
    return {"prediction": prediction, "confidence": confidence, "label": label}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def baseline(seed: int = 0, model: str = MODEL, rows: int = TRAINING_ROWS):
    """The baseline of the synthetic credit model, from its training set.

    Parameters
    ----------
    seed
        Seed of the training set (`training`).
    model
        The model name the baseline carries.
    rows
        Rows of the training set.

    Returns
    -------
    baselines.profile.Baseline
        The FEATURES (CATEGORICAL ones categorical), the confidence, the prediction and its accuracy.

    Examples
    --------
    >>> b = baseline(rows=2_000)
    >>> b.model, len(b.features), b.metric["name"], b.confidence is not None
    ('credit', 15, 'accuracy', True)
    """
    from baselines.build import build_baseline_from_columns

    columns = training(rows, seed=seed)
    return build_baseline_from_columns(
        model,
        {name: columns[name] for name in FEATURES},
        version=MODEL_VERSION,
        confidence=columns["confidence"].tolist(),
        prediction=columns["prediction"],
        labels=columns["label"],
        categorical=CATEGORICAL,
    )
