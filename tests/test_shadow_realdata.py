"""Shadow mode on real labelled data: the Fair affairs survey (statsmodels, bundled in its wheel:
nothing is fetched; skipped without the `realdata` extra). Production is a logistic regression on
8 features; two candidates are trained differently on the same 3,000 rows: one without
`yrs_married`, one only on the happier marriages (rate_marriage >= 4). Both are served the other
3,366 requests beside production, and the delayed labels (any affair) arrive after.

Measured here (and quoted in docs/diagnosis.md, "Shadow mode"): the candidate without yrs_married
agrees with production on 94.3% of the requests, its accuracy 71.2% against 71.8% (McNemar p=0.15:
not a real difference); the happy-marriage one agrees on 98.4%, 71.7% against 71.8%."""
from __future__ import annotations

import numpy as np
import pytest

from baselines.build import build_baseline_from_columns
from detectors.joins import JoinConfig, JoinMonitor

sm = pytest.importorskip("statsmodels.api")
fair = pytest.importorskip("statsmodels.datasets.fair")

FEATURES = ["rate_marriage", "age", "yrs_married", "children", "religious", "educ", "occupation", "occupation_husb"]
CANDIDATES = ("affairs-no-years", "affairs-happy")


@pytest.fixture(scope="module")
def served():
    """The served requests' features, labels, and each model's predictions."""
    df = fair.load_pandas().data.sample(frac=1.0, random_state=0).reset_index(drop=True)
    label = (df["affairs"] > 0).astype(int).to_numpy()
    train = np.arange(len(df)) < 3000
    happy = train & (df["rate_marriage"].to_numpy() >= 4)
    x = sm.add_constant(df[FEATURES].astype(float))
    without = [f for f in FEATURES if f != "yrs_married"]
    x_without = sm.add_constant(df[without].astype(float))
    fits = {"affairs": (sm.Logit(label[train], x[train]).fit(disp=0), x),
            "affairs-no-years": (sm.Logit(label[train], x_without[train]).fit(disp=0), x_without),
            "affairs-happy": (sm.Logit(label[happy], x[happy]).fit(disp=0), x)}
    predictions = {m: (fit.predict(cols[~train]).to_numpy() > 0.5).astype(int) for m, (fit, cols) in fits.items()}
    baseline = build_baseline_from_columns("affairs", {f: df[f][train].astype(float).to_numpy() for f in FEATURES})
    rows = df[~train][FEATURES].astype(float).to_dict("records")
    return {"baseline": baseline, "rows": rows, "label": label[~train], "predictions": predictions}


def shadow_run(served, config: JoinConfig):
    joins = JoinMonitor({"affairs": served["baseline"]}.get, parity=False, config=config,
                        shadow=[("affairs", c) for c in CANDIDATES])
    alerts = []
    for i, features in enumerate(served["rows"]):
        event = {"model": "affairs", "request_id": f"r{i}", "features": features, "ts": float(i),
                 "prediction": int(served["predictions"]["affairs"][i])}
        alerts += joins.add_predictions([event] + [{**event, "model": c, "prediction": int(served["predictions"][c][i])}
                                                   for c in CANDIDATES])
    joins.add_labels([{"request_id": f"r{i}", "label": int(y)} for i, y in enumerate(served["label"])])
    return alerts, joins.snapshot()["shadow"]


def test_candidates_trained_differently_keep_their_agreement_and_are_compared_on_labels(served):
    alerts, shadow = shadow_run(served, JoinConfig(shadow_window=1000))
    assert alerts == []  # the default reference (each pair's first window): no window falls below it
    no_years, happy = shadow["affairs=affairs-no-years"], shadow["affairs=affairs-happy"]
    assert no_years["joined"] == happy["joined"] == 3366 and len(no_years["windows"]) == 3
    overall = np.mean(served["predictions"]["affairs"] == served["predictions"]["affairs-no-years"])
    assert overall == pytest.approx(0.943, abs=0.001)
    labels = no_years["labels"]
    assert labels["n"] == 3366 and labels["verdict"] == "no_real_difference"
    assert labels["production"]["accuracy"] == pytest.approx(0.718, abs=0.001)
    assert labels["candidate"]["accuracy"] == pytest.approx(0.712, abs=0.001)
    assert labels["p_value"] == pytest.approx(0.15, abs=0.01)
    assert happy["labels"]["verdict"] == "no_real_difference"
    assert np.mean(served["predictions"]["affairs"] == served["predictions"]["affairs-happy"]) > 0.98


def test_a_configured_minimum_alerts_and_names_where_the_models_part(served):
    """At a required 98% agreement the candidate without yrs_married fails from the first window: its
    disagreements sit where production is unsure (the less happy marriages), not spread evenly."""
    alerts, _ = shadow_run(served, JoinConfig(shadow_window=1000, shadow_min_agreement=0.98))
    [alert] = alerts
    assert alert.evidence["candidate"] == "affairs-no-years" and alert.evidence["window"] == 1
    [top] = alert.evidence["separating_features"]
    assert top["segment"] == "'rate_marriage' <= 4" and top["share_of_disagreements"] > 0.9
    assert alert.next_step.startswith("hold the rollout of 'affairs-no-years'")
