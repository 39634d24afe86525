"""Leakage suspects (detectors/joins/leakage.py): the baseline records each feature's association
with the label, and a feature that predicted it far better in training than in production is named."""
from __future__ import annotations

import dataclasses
import json

import msgpack
import numpy as np
import pytest

from baselines.build import build_baseline, build_baseline_from_columns
from baselines.profile import Baseline, BaselineError
from baselines.show import format_baseline
from detectors.alerts import Alert, alert_id
from detectors.joins import JoinMonitor, leakage
from detectors.joins.leakage import LEAKAGE_MIN_LABELS
from stream.commands.alerts import format_alert

TRAIN_ROWS = 20_000
POSITIVE_RATE = 0.3


def rows(n: int, rng: np.random.Generator, leak: bool, numeric_label: bool = False) -> dict:
    """Features and label of `n` rows: 'income' and 'channel' genuinely related to the label, 'noise'
    unrelated, 'days_late' the label plus small noise when `leak`, else the same marginal distribution
    drawn independently of the label (as in production, where the outcome is not yet known)."""
    if numeric_label:
        y = rng.normal(0, 1, n)
        shadow = y if leak else rng.normal(0, 1, n)
        income = 0.6 * y + rng.normal(0, 1, n)
    else:
        y = (rng.random(n) < POSITIVE_RATE).astype(int)
        shadow = y if leak else (rng.random(n) < POSITIVE_RATE).astype(int)
        income = 0.8 * y + rng.normal(0, 1, n)
    channel = np.where(rng.random(n) < 0.4 + 0.3 * (y > 0), "web", "branch")
    return {"label": y, "features": {"income": income, "channel": channel, "noise": rng.normal(0, 1, n),
                                     "days_late": shadow + rng.normal(0, 0.1, n)}}


def predictions(y: np.ndarray, accuracy: float, rng: np.random.Generator, numeric_label: bool = False) -> np.ndarray:
    if numeric_label:  # the MAE grows as the accuracy falls
        return y + rng.normal(0, 0.1 / accuracy ** 8, len(y))
    return np.where(rng.random(len(y)) < accuracy, y, 1 - y)


def leaky_baseline(numeric_label: bool = False, seed: int = 0) -> Baseline:
    rng = np.random.default_rng(seed)
    train = rows(TRAIN_ROWS, rng, leak=True, numeric_label=numeric_label)
    return build_baseline_from_columns("credit", train["features"], version="1",
                                       prediction=predictions(train["label"], 0.95, rng, numeric_label),
                                       labels=train["label"])


def production(n: int, seed: int, leak: bool, accuracy: float, numeric_label: bool = False,
               shift: float = 0.0) -> tuple[list[dict], list[dict]]:
    """Served events (with request ids) and their labels."""
    rng = np.random.default_rng(seed)
    prod = rows(n, rng, leak=leak, numeric_label=numeric_label)
    pred = predictions(prod["label"], accuracy, rng, numeric_label)
    names = list(prod["features"])
    events, labels = [], []
    for i in range(n):
        features = {k: prod["features"][k][i].item() for k in names}
        features["days_late"] += shift
        events.append({"model": "credit", "model_version": "1", "request_id": f"r{i}", "features": features,
                       "prediction": pred[i].item()})
        labels.append({"request_id": f"r{i}", "label": prod["label"][i].item()})
    return events, labels


def joined_alerts(baseline: Baseline, events: list[dict], labels: list[dict]) -> list[Alert]:
    joins = JoinMonitor({"credit": baseline}.get, parity=False)
    alerts = []
    for start in range(0, len(events), 1000):  # labels follow their predictions, a batch at a time
        alerts += joins.add_predictions(events[start:start + 1000])
        alerts += joins.add_labels(labels[start:start + 1000])
    return alerts


def of_kind(alerts: list[Alert], kind: str) -> list[Alert]:
    return [a for a in alerts if a.kind == kind]


BASELINE = leaky_baseline()


# ---- the baseline's field ----------------------------------------------------------------------
def test_the_baseline_records_each_features_association_with_the_label():
    a = BASELINE.label_association
    assert (a.label, a.positive) == ("class", "1") and set(a.features) == {"income", "channel", "noise", "days_late"}
    figures = {name: f.value for name, f in a.features.items()}
    assert figures["days_late"] > 0.99 and 0.65 < figures["income"] < 0.8 and 0.55 < figures["channel"] < 0.7
    assert abs(figures["noise"] - 0.5) < 0.02  # unrelated: 4 standard errors
    leak = a.features["days_late"]
    assert leak.measure == "auc" and leak.n == TRAIN_ROWS and 0 < leak.se < 0.001
    assert len(leak.scores) == len(leak.shares) == len(BASELINE.features["days_late"].bin_edges) + 2
    channel = a.features["channel"]
    assert set(channel.categories) == {"web", "branch"} and len(channel.scores) == 4  # + other, no value
    # the builder's bins are the ones production values fall in (every row is in the sample here)
    rng = np.random.default_rng(0)
    train = rows(TRAIN_ROWS, rng, leak=True)
    for name in ("days_late", "channel"):
        f = a.features[name]
        bins = np.bincount([f.bin_of(v.item()) for v in train["features"][name]], minlength=len(f.shares))
        assert bins / TRAIN_ROWS == pytest.approx(np.array(f.shares), abs=1e-12)


def test_a_feature_unrelated_to_the_label_measures_no_association_even_on_a_small_baseline():
    # scored on the rows that chose its 20 bins' scores, such a feature measured an AUC of ~0.58 on
    # 1,000 rows (a suspect's gap once production labels are plenty); cross-fitted it measures ~0.5
    figures = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        y = (rng.random(1000) < POSITIVE_RATE).astype(int)
        b = build_baseline_from_columns("m", {"x": rng.normal(0, 1, 1000),
                                              "c": rng.choice([f"c{i}" for i in range(40)], 1000)},
                                        prediction=y, labels=y)
        figures += [f.value for f in b.label_association.features.values()]
    assert abs(np.mean(figures) - 0.5) < 0.02


def test_the_field_survives_the_file_and_an_old_baseline_loads_without_it():
    again = Baseline.loads(msgpack.packb(BASELINE.to_dict()))
    assert again.label_association == BASELINE.label_association and again.fingerprint == BASELINE.fingerprint
    old = BASELINE.to_dict()
    del old["label_association"]
    loaded = Baseline.from_dict(old)
    assert loaded.label_association is None
    # a baseline without it is written as before it existed: same map, same fingerprint
    assert "label_association" not in loaded.to_dict()
    assert loaded.fingerprint == dataclasses.replace(BASELINE, label_association=None).fingerprint


def test_baseline_show_lists_the_strongest_associations():
    [line] = [line for line in format_baseline(BASELINE).splitlines() if line.startswith("association")]
    assert line.startswith("association AUC for label '1': days_late 0.999, income 0.7")
    assert "noise" in line and "association" not in format_baseline(dataclasses.replace(BASELINE,
                                                                                        label_association=None))


def test_a_baseline_without_a_label_has_no_association():
    assert build_baseline_from_columns("m", {"x": [1.0, 2.0, 3.0]}).label_association is None


@pytest.mark.parametrize("field, value", [("measure", "gini"), ("scores", [0.1]), ("value", float("nan")),
                                          ("edges", None)])
def test_a_malformed_association_is_refused(field, value):
    d = BASELINE.to_dict()
    d["label_association"]["features"]["noise"][field] = value
    with pytest.raises(BaselineError, match="label_association of 'noise'"):
        Baseline.from_dict(d)


def test_baseline_build_from_a_csv_with_a_label_column(tmp_path):
    rng = np.random.default_rng(3)
    train = rows(2000, rng, leak=True)
    pred = predictions(train["label"], 0.95, rng)
    lines = ["days_late,income,y,y_pred"] + [
        f"{d},{i},{y},{p}" for d, i, y, p in zip(train["features"]["days_late"], train["features"]["income"],
                                                 train["label"], pred)]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    b = build_baseline(tmp_path / "train.csv", model="credit", label_column="y", prediction_column="y_pred")
    a = b.label_association
    assert a.positive == "1" and a.features["days_late"].value > 0.99 and set(a.features) == {"days_late", "income"}


def test_json_booleans_fall_in_the_bins_of_a_csv_baselines_spelling(tmp_path):
    rng = np.random.default_rng(4)
    y = (rng.random(2000) < POSITIVE_RATE).astype(int)
    (tmp_path / "train.csv").write_text("flag,y,p\n" + "".join(f"{bool(v)},{v},{v}\n" for v in y))
    b = build_baseline(tmp_path / "train.csv", model="credit", label_column="y", prediction_column="p")
    flag = b.label_association.features["flag"]
    assert set(flag.categories) == {"True", "False"} and flag.value == 1.0
    joins = JoinMonitor({"credit": b}.get, parity=False)
    joins.add_predictions([{"model": "credit", "request_id": f"r{i}", "features": {"flag": bool(v)}, "prediction": v}
                           for i, v in enumerate(y.tolist())])
    joins.add_labels([{"request_id": f"r{i}", "label": v} for i, v in enumerate(y.tolist())])
    assert joins.snapshot()["leakage"]["credit"]["features"]["flag"]["production"] == 1.0


def test_json_numbers_fall_in_the_bins_of_a_csv_baselines_float_codes(tmp_path):
    # a CSV's float-coded category ("1.0") and the events' number 1 are one category to the monitors
    # (baselines.profile.number_spelling); the leakage table put them in the "other" bin
    rng = np.random.default_rng(4)
    y = (rng.random(2000) < POSITIVE_RATE).astype(int)
    (tmp_path / "train.csv").write_text("grade,y,p\n" + "".join(f"{v + 1}.0,{v},{v}\n" for v in y))
    b = build_baseline(tmp_path / "train.csv", model="credit", label_column="y", prediction_column="p",
                       categorical=["grade"])
    grade = b.label_association.features["grade"]
    assert set(grade.categories) == {"1.0", "2.0"} and grade.value == 1.0
    joins = JoinMonitor({"credit": b}.get, parity=False)
    joins.add_predictions([{"model": "credit", "request_id": f"r{i}", "features": {"grade": v + 1}, "prediction": v}
                           for i, v in enumerate(y.tolist())])
    joins.add_labels([{"request_id": f"r{i}", "label": v} for i, v in enumerate(y.tolist())])
    assert joins.snapshot()["leakage"]["credit"]["features"]["grade"]["production"] == 1.0


# ---- production ----------------------------------------------------------------------------------
def test_an_injected_leak_is_named_and_no_other_feature():
    events, labels = production(4000, seed=1, leak=False, accuracy=0.7)
    alerts = joined_alerts(BASELINE, events, labels)
    [suspect] = of_kind(alerts, "leakage_suspect")
    assert suspect.feature == "days_late" and suspect.detector == "label_association"
    assert of_kind(alerts, "performance")  # the model's accuracy fell: the guard's condition
    assert suspect.baseline["auc"] > 0.99 and 0.4 < suspect.current["auc"] < 0.6
    assert suspect.baseline["ci_low"] <= suspect.baseline["auc"] <= suspect.baseline["ci_high"]
    assert suspect.current["ci_low"] < suspect.current["auc"] < suspect.current["ci_high"] < 0.7
    assert LEAKAGE_MIN_LABELS <= suspect.current["n"] <= 1000  # named at the first looks
    assert suspect.current["total_variation"] < 0.1 and suspect.statistic > suspect.threshold
    ev = suspect.evidence
    assert ev["cause"] == "leakage_suspect" and ev["measure"] == "auc" and ev["positive_class"] == "1"
    assert ev["performance"]["metric"] == "accuracy" and ev["performance"]["ci_high"] < 0.95
    assert "'days_late' predicted the label far better in training (AUC for label '1' 0.999" in suspect.diagnosis
    assert "while its own distribution has not moved" in suspect.diagnosis
    assert suspect.next_step.startswith("audit the timeline of 'days_late' in the training data: is it computed "
                                        "after the event it predicts")


def test_the_alert_survives_the_alert_machinery():
    events, labels = production(12_000, seed=2, leak=False, accuracy=0.7)
    alerts = of_kind(joined_alerts(BASELINE, events, labels), "leakage_suspect")
    # the suspicion holds at every look, but the episode stays open: one alert, not one per look
    [suspect] = alerts
    assert suspect.evidence["episode"] == 1
    assert suspect.alert_id == alert_id("credit", "days_late", "leakage_suspect", "auc", 1, BASELINE.fingerprint)
    again = of_kind(joined_alerts(BASELINE, events, labels), "leakage_suspect")
    assert [a.to_dict() for a in again] == [suspect.to_dict()]  # a replay gives the same alert and id
    assert Alert.from_dict(json.loads(json.dumps(suspect.to_dict()))) == suspect
    printed = " ".join(format_alert(suspect.to_dict()).split())  # skewwatch alerts
    assert "leakage_suspect credit v1 / days_late" in printed and "next step: audit the timeline" in printed
    rebuilt = leaky_baseline(seed=5)  # another baseline: its own ids
    other = of_kind(joined_alerts(rebuilt, events, labels), "leakage_suspect")
    assert [a.feature for a in other] == ["days_late"] and other[0].alert_id != suspect.alert_id


@pytest.mark.parametrize("seed", range(3))
def test_no_leak_gives_no_suspect_over_many_labels_even_when_the_model_degrades(seed):
    # the features relate to the label as in training; the accuracy falls for another reason
    events, labels = production(20_000, seed=10 + seed, leak=True, accuracy=0.7)
    alerts = joined_alerts(BASELINE, events, labels)
    assert of_kind(alerts, "performance") and not of_kind(alerts, "leakage_suspect")


def test_a_leak_that_costs_no_accuracy_is_not_a_suspect():
    events, labels = production(6000, seed=4, leak=False, accuracy=0.95)
    alerts = joined_alerts(BASELINE, events, labels)
    assert alerts == []


def test_a_feature_whose_distribution_moved_is_not_a_suspect():
    # the same leak, but days_late's values also shifted: its drift alert explains the change
    events, labels = production(6000, seed=6, leak=False, accuracy=0.7, shift=0.5)
    alerts = joined_alerts(BASELINE, events, labels)
    assert of_kind(alerts, "performance") and not of_kind(alerts, "leakage_suspect")


def test_an_old_baseline_without_the_field_has_no_leakage_check():
    events, labels = production(4000, seed=1, leak=False, accuracy=0.7)
    old = dataclasses.replace(BASELINE, label_association=None)
    alerts = joined_alerts(old, events, labels)
    assert of_kind(alerts, "performance") and not of_kind(alerts, "leakage_suspect")


def test_a_leak_of_a_numeric_label_is_named_by_its_correlation():
    baseline = leaky_baseline(numeric_label=True)
    assert baseline.metric["name"] == "mae" and baseline.label_association.label == "numeric"
    assert baseline.label_association.features["days_late"].value > 0.98
    events, labels = production(4000, seed=7, leak=False, accuracy=0.7, numeric_label=True)
    [suspect] = of_kind(joined_alerts(baseline, events, labels), "leakage_suspect")
    assert suspect.feature == "days_late" and suspect.evidence["measure"] == "correlation"
    assert abs(suspect.current["correlation"]) < 0.2 and suspect.current["ci_high"] < suspect.baseline["ci_low"]
    assert "correlation 0.98" in suspect.next_step
    events, labels = production(20_000, seed=8, leak=True, accuracy=0.7, numeric_label=True)
    assert not of_kind(joined_alerts(baseline, events, labels), "leakage_suspect")


def test_the_join_state_stays_bounded_and_plain(monkeypatch):
    monkeypatch.setattr(leakage, "LEAKAGE_MAX_LABELS", 1000)  # the tables are halved past it
    events, labels = production(2000, seed=9, leak=False, accuracy=0.7)
    joins = JoinMonitor({"credit": BASELINE}.get, parity=False)
    joins.add_predictions(events)
    joins.add_labels(labels)
    snap = joins.snapshot()["leakage"]["credit"]
    assert snap["labelled"] == 2000 and snap["features"]["days_late"]["training"] > 0.99
    [(_, _, monitor)] = joins._performance.values()
    sizes = {name: [len(c) for c in table] for name, table in monitor._tables.items()}
    assert sizes["channel"] == [4, 4] and all(type(v) is float for t in monitor._tables.values() for c in t for v in c)
    assert 500 <= sum(monitor._tables["days_late"][0]) <= 1000
