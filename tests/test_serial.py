"""Serial dependence (issue 13 item 6): a time-ordered baseline measures each feature's variance
inflation (baselines/serial.py) and the monitors' thresholds allow for it; off by default."""
from __future__ import annotations

import msgpack
import numpy as np
import pytest

from baselines.build import build_baseline, build_baseline_from_columns
from baselines.profile import Baseline, BaselineError
from baselines.serial import SERIAL_HORIZONS
from detectors import thresholds as T
from detectors.processing import process_events
from detectors.routing import ModelRouter
from stream.commands.cli import main as cli


def ar1(n: int, rho: float, seed: int) -> np.ndarray:
    """A stationary AR(1) series of unit variance."""
    rng = np.random.default_rng(seed)
    e = rng.normal(size=n) * np.sqrt(1 - rho**2)
    x = np.empty(n)
    x[0] = rng.normal()
    for i in range(1, n):
        x[i] = rho * x[i - 1] + e[i]
    return x


def bursts(n: int, rate: float, mean_run: float, seed: int) -> np.ndarray:
    """A missing mask in runs: a two-state Markov chain of stationary rate `rate`, runs of `mean_run`."""
    rng = np.random.default_rng(seed)
    leave = 1.0 / mean_run
    enter = leave * rate / (1 - rate)
    out = np.empty(n, dtype=bool)
    state = False
    for i, r in enumerate(rng.random(n)):
        state = (r >= leave) if state else (r < enter)
        out[i] = state
    return out


def replay(baseline: Baseline, features: dict[str, list], batch: int = 500) -> list:
    names = list(features)
    events = [{"model": baseline.model, "features": dict(zip(names, row))} for row in zip(*features.values())]
    router = ModelRouter([baseline])
    alerts = []
    for i in range(0, len(events), batch):
        alerts += process_events(router, events[i:i + batch]).alerts
    return alerts


def floats(x: np.ndarray) -> list:
    return [None if v != v else float(v) for v in x]


@pytest.mark.parametrize("time_ordered", [False, True])
def test_ar1_no_change_in_time_order_alerts_only_without_the_option(time_ordered):
    baseline = build_baseline_from_columns("m", {"x": ar1(20_000, 0.9, 0)}, time_ordered=time_ordered)
    alerts = replay(baseline, {"x": floats(ar1(40_000, 0.9, 1))})
    if time_ordered:
        assert alerts == []
    else:  # what the option is for: the CUSUM fires within a few hundred events of unchanged data
        assert alerts and alerts[0].events_seen < 2_000


def test_a_shift_of_an_ar1_stream_is_still_detected_with_the_option():
    baseline = build_baseline_from_columns("m", {"x": ar1(20_000, 0.9, 0)}, time_ordered=True)
    x = ar1(20_000, 0.9, 1)
    x[10_000:] += 1.0  # one marginal standard deviation: ~0.23 of the 1,000-event mean's
    alerts = replay(baseline, {"x": floats(x)})
    first = alerts[0]
    assert 10_000 < first.events_seen < 13_000
    assert (first.detector, first.evidence["test"]) == ("cusum", "location_up")
    assert first.threshold > 5 * T.CUSUM_H  # the raised threshold is the one reported


def test_missing_in_bursts_alerts_only_without_the_option():
    n = 60_000
    x = np.random.default_rng(2).normal(size=n)
    cat = np.array(["a", "b", "c"])[np.random.default_rng(3).integers(0, 3, n)].astype(object)
    x[bursts(n, 0.05, 60, 4)] = np.nan
    cat[bursts(n, 0.05, 60, 5)] = None
    quiet = []
    for time_ordered in (False, True):
        baseline = build_baseline_from_columns("m", {"x": x[:20_000], "c": list(cat[:20_000])},
                                               time_ordered=time_ordered)
        alerts = replay(baseline, {"x": floats(x[20_000:]), "c": list(cat[20_000:])})
        quiet.append([a for a in alerts if a.detector == "missing_rate"] == [])
    assert quiet == [False, True]


def test_independent_rows_measure_no_dependence_and_keep_the_thresholds():
    rng = np.random.default_rng(6)
    n = 20_000
    cols = {"x": rng.normal(size=n), "k": rng.integers(0, 5, n).astype(float), "c": list(rng.choice(["a", "b"], n))}
    baseline = build_baseline_from_columns("m", cols, categorical=["c"], time_ordered=True)
    for p in baseline.features.values():
        assert p.serial_inflation.shape[1] == len(SERIAL_HORIZONS)
        assert np.all(np.abs(p.serial_inflation[:, :6] - 1) < 0.25), (p.name, p.serial_inflation)
    fresh = {"x": floats(rng.normal(size=30_000)), "k": floats(rng.integers(0, 5, 30_000).astype(float)),
             "c": list(rng.choice(["a", "b"], 30_000))}
    assert replay(baseline, fresh) == []


def test_alarms_do_not_depend_on_the_batch_size():
    baseline = build_baseline_from_columns("m", {"x": ar1(20_000, 0.9, 0)}, time_ordered=True)
    x = ar1(16_000, 0.9, 1)
    x[6_000:] += 1.5
    runs = [[(a.events_seen, a.detector, a.statistic) for a in replay(baseline, {"x": floats(x)}, batch)]
            for batch in (500, 137)]
    assert runs[0] and runs[0] == runs[1]


def test_the_field_is_optional_and_survives_a_file(tmp_path):
    plain = build_baseline_from_columns("m", {"x": ar1(5_000, 0.5, 0)})
    assert plain.features["x"].serial_inflation is None
    assert "serial_inflation" not in plain.to_dict()["features"]["x"]  # older baselines: same content
    ordered = build_baseline_from_columns("m", {"x": ar1(5_000, 0.5, 0), "c": ["a", None] * 2_500},
                                          time_ordered=True)
    ordered.save(tmp_path / "b.msgpack")
    loaded = Baseline.load(tmp_path / "b.msgpack")
    for name in ("x", "c"):
        assert np.array_equal(loaded.features[name].serial_inflation, ordered.features[name].serial_inflation)
    assert loaded.fingerprint == ordered.fingerprint
    assert loaded.features["c"].serial_inflation.shape == (2, len(SERIAL_HORIZONS))


def test_a_malformed_field_is_refused():
    d = build_baseline_from_columns("m", {"x": ar1(2_000, 0.5, 0)}, time_ordered=True).to_dict()
    d["features"]["x"]["serial_inflation"] = [1.0] * 7
    with pytest.raises(BaselineError, match="serial_inflation"):
        Baseline.loads(msgpack.packb(d))


def test_chunks_carry_the_windows_over():
    x = ar1(20_000, 0.9, 0)
    whole = build_baseline_from_columns("m", {"x": x}, time_ordered=True).features["x"].serial_inflation
    chunked = build_baseline_from_columns("m", {"x": x}, time_ordered=True,
                                          chunk_rows=3_001).features["x"].serial_inflation
    # the same windows; the ranks come from the first chunk (3,001 rows here), which moves the
    # spread score's centre a little
    assert np.allclose(chunked[0], whole[0], rtol=0.05)
    assert np.allclose(chunked[1], whole[1], rtol=0.25)


def test_cli_build_time_ordered(tmp_path, capsys):
    train = tmp_path / "train.csv"
    x = ar1(3_000, 0.95, 0)
    train.write_text("x,c\n" + "".join(f"{v:.4f},{'a' if v > 0 else 'b'}\n" for v in x))
    out = tmp_path / "b.msgpack"
    assert cli(["baseline", "build", str(train), "-o", str(out), "--model", "m", "--time-ordered"]) == 0
    b = Baseline.load(out)
    assert b.features["x"].serial_inflation[0, 3] > 10  # V over 64 events of an AR(1) of rho 0.95
    assert cli(["baseline", "show", str(out)]) == 0
    assert "time-ordered  variance inflation of sums over 1,024 events: x x" in capsys.readouterr().out
    assert build_baseline(train, model="m").features["x"].serial_inflation is None


def test_an_inflation_of_one_is_no_change_at_all():
    """V = 1 at every horizon (independent events) gives the monitors of a baseline without the field."""
    rng = np.random.default_rng(7)
    n = 5_000
    plain = build_baseline_from_columns("m", {"x": rng.normal(size=n), "c": list(rng.choice(["a", "b", None], n))})
    ones = Baseline.from_dict({**plain.to_dict(), "features": {
        name: {**d, "serial_inflation": [1.0] * (3 if d["kind"] == "numeric" else 2) * len(SERIAL_HORIZONS)}
        for name, d in plain.to_dict()["features"].items()}})
    x = rng.normal(size=6_000)
    x[3_000:] += 0.5
    c = list(rng.choice(["a", "b", None, "z"], 6_000, p=[0.3, 0.3, 0.3, 0.1]))
    runs = [[(a.events_seen, a.feature, a.detector, a.statistic, a.threshold)
             for a in replay(b, {"x": floats(x), "c": c})] for b in (plain, ones)]
    assert runs[0] and runs[0] == runs[1]
