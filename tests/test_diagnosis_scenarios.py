"""Diagnosis end to end: a stream with exactly one pipeline defect, through ModelMonitor, gives an
alert whose evidence names that defect; a genuine shift of similar size is not labelled a bug.
(The rules themselves are unit-tested in test_diagnosis.py; this checks the engine wires them.)"""
import numpy as np
import pytest

from baselines.build import build_baseline_from_columns
from detectors.diagnosis import PIPELINE_CAUSES, label_hash
from detectors.fmt import percent
from detectors.model import ModelMonitor

N_TRAIN, N_PROD, CHANGE_AT = 20_000, 6_000, 2_000


def _training(rng):
    return {
        "latency_ms": rng.lognormal(4.0, 0.5, N_TRAIN),
        "amount": rng.gamma(3.0, 40.0, N_TRAIN),
        "platform": rng.choice(["ios", "android", "web"], N_TRAIN, p=[0.4, 0.35, 0.25]),
    }


def _production(rng, n=N_PROD):
    return {
        "latency_ms": rng.lognormal(4.0, 0.5, n),
        "amount": rng.gamma(3.0, 40.0, n),
        "platform": rng.choice(["ios", "android", "web"], n, p=[0.4, 0.35, 0.25]).astype(object),
    }


def _run(defect, versions=None):
    rng = np.random.default_rng(11)
    baseline = build_baseline_from_columns("m", _training(rng), version="1", categorical=("platform",))
    cols = _production(np.random.default_rng(12))
    defect(cols)
    events = []
    for i in range(N_PROD):
        ev = {"model": "m", "model_version": versions[i] if versions else "1",
              "features": {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in cols.items()}}
        events.append(ev)
    return ModelMonitor(baseline).update_batch(events)


def _first(alerts, feature):
    """The feature's first distribution alert (drift, else data quality), after checking that no
    alert of the feature names a *different* pipeline defect. A data-quality alert raised within a
    few events of an abrupt change (e.g. out of range after 8 values) summarises too few changed
    values for the value rules (detectors.diagnosis.MIN_VALUES) and may only describe what moved."""
    mine = [a for a in alerts if a.feature == feature]
    assert mine, f"no alert on {feature}: {[(a.feature, a.detector) for a in alerts]}"
    bugs = {a.evidence.get("cause") for a in mine} & PIPELINE_CAUSES
    assert len(bugs) <= 1, f"contradictory diagnoses on {feature}: {[(a.detector, a.diagnosis) for a in mine]}"
    drift = [a for a in mine if a.kind == "drift"]
    return (drift or mine)[0]


def _scale(factor):
    def defect(cols):
        cols["latency_ms"][CHANGE_AT:] *= factor
    return defect


def test_unit_change_seconds_instead_of_milliseconds():
    a = _first(_run(_scale(0.001)), "latency_ms")
    assert a.evidence["cause"] == "unit_change", a.diagnosis
    assert "1/1000" in a.diagnosis
    assert a.next_step.startswith("fix the serving pipeline's conversion of 'latency_ms': it sends ~1/1000 of")


def test_letter_case_names_the_mapping():
    def defect(cols):
        p = cols["platform"]
        p[CHANGE_AT:][p[CHANGE_AT:] == "ios"] = "IOS"
    a = _first(_run(defect), "platform")
    assert a.evidence["cause"] == "letter_case", a.diagnosis
    assert label_hash("IOS") in a.diagnosis and "ios" in a.diagnosis  # examples off: the unseen spelling hashed
    assert a.next_step == f"fix the casing of 'platform' in serving: it sends '{label_hash('IOS')}' where training " \
                          "has 'ios'"


def test_default_fill_with_zero():
    def defect(cols):
        idx = np.arange(CHANGE_AT, N_PROD)
        cols["amount"][idx[idx % 4 == 0]] = 0.0
    a = _first(_run(defect), "amount")
    assert a.evidence["cause"] == "default_fill", a.diagnosis
    assert "find where 'amount' is filled with the default value 0 (zero)" in a.next_step


def test_rounding_to_integers():
    def defect(cols):
        cols["amount"][CHANGE_AT:] = np.round(cols["amount"][CHANGE_AT:] / 50) * 50
    alerts = _run(defect)
    a = _first(alerts, "amount")
    assert a.evidence["cause"] == "rounding", a.diagnosis


def test_stuck_feature():
    def defect(cols):
        cols["latency_ms"][CHANGE_AT:] = 57.0
    a = _first(_run(defect), "latency_ms")
    assert a.evidence["cause"] == "stuck_value", a.diagnosis


def test_version_change_coinciding_with_the_shift():
    def defect(cols):
        cols["amount"][CHANGE_AT:] *= 1.5
    versions = ["1"] * CHANGE_AT + ["2"] * (N_PROD - CHANGE_AT)
    a = _first(_run(defect, versions), "amount")
    assert a.evidence["cause"] == "version_change", a.diagnosis
    assert a.evidence["version_change"]["previous_version"] == "1" and "1 -> 2" in a.diagnosis
    assert a.next_step.startswith("fix how model_version '2' computes 'amount' or roll back to '1'")


def test_a_version_change_far_from_the_shift_is_not_blamed():
    def defect(cols):
        cols["amount"][CHANGE_AT:] *= 1.5
    versions = ["1"] * 500 + ["2"] * (N_PROD - 500)
    a = _first(_run(defect, versions), "amount")
    assert a.evidence["cause"] != "version_change", a.diagnosis


@pytest.mark.parametrize("shift", [1.5, 0.7])
def test_a_genuine_population_shift_is_not_labelled_a_pipeline_bug(shift):
    def defect(cols):
        rng = np.random.default_rng(5)
        cols["amount"][CHANGE_AT:] = rng.gamma(3.0, 40.0 * shift, N_PROD - CHANGE_AT)
    a = _first(_run(defect), "amount")
    assert a.evidence["cause"] not in PIPELINE_CAUSES, a.diagnosis
    # the shift moves the whole distribution: the step is to retrain, with the share of traffic it moved
    share = a.evidence["shifted_share"]
    assert 0.1 < share < 0.6 and f"retrain on recent data: ~{percent(share)} of traffic has 'amount'" in a.next_step


def _persistent(rng, n, level, sd, phi=0.995):
    """Hourly readings: a daily cycle and weather that persists for days (AR(1))."""
    noise = rng.normal(0, sd * np.sqrt(1 - phi**2), n)
    weather = np.empty(n)
    weather[0] = 0.0
    for i in range(1, n):
        weather[i] = phi * weather[i - 1] + noise[i]
    return level + 0.5 * sd * np.sin(2 * np.pi * np.arange(n) / 24) + weather


def _departures(rng, n, per_day=150):
    """Clock times HHMM, a third on the hour, each day's flights in time order."""
    minutes = rng.choice([0, 0, 0, 0, 0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55], n)
    times = rng.choice(np.arange(5, 23) * 100, n) + minutes
    return np.concatenate([np.sort(day) for day in np.array_split(times, n // per_day)]).astype(float)


@pytest.mark.parametrize("seed", range(4))
def test_a_later_season_in_time_order_blames_no_pipeline(seed):
    """Real shifts of rounded, serially correlated readings (dew point in whole degrees, pressure in
    tenths of hPa) and of departure times (on the hour often): rounded values repeat for hours, a
    common value repeats within a day. Alerts, yes; a pipeline defect (or an update naming one), no."""
    rng = np.random.default_rng(seed)
    training = {"dew_point": np.round(_persistent(rng, 8_000, 8.0, 5.0)),
                "pressure": np.round(_persistent(rng, 8_000, 1013.0, 8.0, 0.99), 1),
                "departure": _departures(rng, 8_000)}
    later = {"dew_point": np.round(_persistent(rng, 6_000, 14.0, 5.0)),
             "pressure": np.round(_persistent(rng, 6_000, 1009.0, 8.0, 0.99), 1),
             "departure": _departures(rng, 6_000)}
    baseline = build_baseline_from_columns("m", training, version="1")
    events = [{"model": "m", "features": {k: float(v[i]) for k, v in later.items()}} for i in range(6_000)]
    alerts = ModelMonitor(baseline).update_batch(events)
    assert alerts
    blamed = [(a.feature, a.events_seen, a.diagnosis) for a in alerts if a.evidence["cause"] in PIPELINE_CAUSES]
    assert not blamed
