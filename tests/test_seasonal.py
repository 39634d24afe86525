"""Seasonal baselines (issue 13 item 6): `baseline build --timestamp-column ts --seasonal hour-of-day`
keeps each numeric feature's quantiles per hour (baselines/seasonal.py), and the monitors compare each
event with its hour by its `ts` (detectors/seasonal.py)."""
from __future__ import annotations

import msgpack
import numpy as np
import pandas as pd
import pytest

from baselines.build import build_baseline, build_baseline_from_columns
from baselines.formats import BuildError
from baselines.profile import Baseline, BaselineError
from detectors.model import ModelMonitor
from detectors.processing import process_events
from detectors.routing import ModelRouter
from stream.commands.cli import main as cli

STEP = 180.0  # seconds between events: 480 a day


def daily(n: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(ts, x): a feature whose mean follows the hour (amplitude 3 sd), one row every STEP seconds."""
    rng = np.random.default_rng(seed)
    ts = 1_700_000_000.0 + np.arange(n) * STEP
    hour = ts / 3600 % 24
    return ts, 3 * np.sin(hour / 24 * 2 * np.pi) + rng.normal(size=n) + shift


def replay(baseline: Baseline, ts: np.ndarray, x: np.ndarray, batch: int = 500) -> list:
    events = [{"model": baseline.model, "ts": float(t), "features": {"x": float(v)}} for t, v in zip(ts, x)]
    router = ModelRouter([baseline])
    alerts = []
    for i in range(0, len(events), batch):
        alerts += process_events(router, events[i:i + batch]).alerts
    return alerts


@pytest.fixture(scope="module")
def baselines() -> tuple[Baseline, Baseline]:
    ts, x = daily(48_000, 0)
    return (build_baseline_from_columns("m", {"x": x}),
            build_baseline_from_columns("m", {"x": x}, timestamps=ts, seasonal="hour-of-day"))


def test_in_time_order_only_the_seasonal_baseline_is_quiet(baselines):
    plain, seasonal = baselines
    ts, x = daily(30_000, 1)
    assert [a for a in replay(plain, ts, x) if a.kind == "drift"]  # the night looks like a change
    assert replay(seasonal, ts, x) == []


def test_a_real_change_is_still_detected(baselines):
    _, seasonal = baselines
    ts, x = daily(6_000, 2)
    x[3_000:] += 1.0  # one sd at every hour
    alerts = replay(seasonal, ts, x)
    assert [(a.kind, a.feature) for a in alerts][:1] == [("drift", "x")]
    assert 3_000 < alerts[0].events_seen < 3_600


def test_a_unit_change_stays_out_of_range_and_the_alert_quotes_raw_values(baselines):
    _, seasonal = baselines
    ts, x = daily(3_000, 3)
    x[1_000:] *= 1000
    alerts = replay(seasonal, ts, x)
    out = [a for a in alerts if a.detector == "out_of_range"]
    assert out and out[0].events_seen < 1_100
    assert out[0].current["p95"] > 100  # the recent values summarised are the events' own


def test_events_without_ts_are_compared_with_the_whole_profile(baselines):
    _, seasonal = baselines
    ts, x = daily(600, 4)
    monitor = ModelMonitor(seasonal)
    events = [{"model": "m", "features": {"x": float(v)}} for v in x]
    timed = [{**e, "ts": float(t)} for e, t in zip(events, ts)]
    assert np.array_equal(monitor._seasonal.apply(np.array([x]), np.full(600, np.nan), 0), np.array([x]))
    mapped = monitor._seasonal.apply(np.array([x]), ts, 0)
    assert not np.allclose(mapped, np.array([x]))
    # the same events in other batches map alike (the ties' draws hash the event index)
    a = [(r.events_seen, r.detector) for r in ModelMonitor(seasonal).update_batch(timed)]
    b = [(r.events_seen, r.detector) for i in range(0, 600, 7) for r in monitor.update_batch(timed[i:i + 7])]
    assert a == b


def test_round_trip_and_fingerprint(baselines, tmp_path):
    plain, seasonal = baselines
    seasonal.save(tmp_path / "s.msgpack")
    loaded = Baseline.load(tmp_path / "s.msgpack")
    assert loaded.fingerprint == seasonal.fingerprint != plain.fingerprint
    assert loaded.seasonal.period == "hour-of-day"
    assert np.array_equal(loaded.seasonal.quantiles["x"], seasonal.seasonal.quantiles["x"])
    assert np.array_equal(loaded.seasonal.counts["x"], seasonal.seasonal.counts["x"])
    # without the option the key is absent: the map, and so the fingerprint, are as before it existed
    assert "seasonal" not in plain.to_dict()
    d = seasonal.to_dict()
    del d["seasonal"]
    assert Baseline.from_dict(d).fingerprint == plain.fingerprint


def test_a_malformed_seasonal_profile_is_refused(baselines):
    d = baselines[1].to_dict()
    d["seasonal"]["features"]["x"]["quantiles"] = d["seasonal"]["features"]["x"]["quantiles"][:-1]
    with pytest.raises(BaselineError, match="seasonal profile of 'x'"):
        Baseline.loads(msgpack.packb(d))
    d["seasonal"]["period"] = "hour-of-year"
    with pytest.raises(BaselineError, match="period"):
        Baseline.loads(msgpack.packb(d))


def test_cli_build_seasonal(tmp_path, capsys):
    ts, x = daily(6_000, 5)
    train = tmp_path / "train.csv"
    iso = np.datetime_as_string(ts.astype("datetime64[s]"), unit="s")
    train.write_text("when,x,c\n" + "".join(f"{t}Z,{v:.4f},{'a' if v > 0 else 'b'}\n" for t, v in zip(iso, x)))
    out = tmp_path / "b.msgpack"
    assert cli(["baseline", "build", str(train), "-o", str(out), "--model", "m", "--timestamp-column", "when",
                "--seasonal", "hour-of-day"]) == 0
    b = Baseline.load(out)
    assert list(b.features) == ["x", "c"]  # the time is no feature
    assert b.seasonal.counts["x"].sum() == 6_000 and list(b.seasonal.counts) == ["x"]
    night, noon = b.seasonal.quantiles["x"][[18, 6], 50]  # sin peaks at 6 h, bottoms at 18 h
    assert night < -2 < 2 < noon
    assert cli(["baseline", "show", str(out)]) == 0
    assert "seasonal    hour-of-day (UTC) from column when: 1 numeric features" in capsys.readouterr().out
    assert cli(["baseline", "build", str(train), "-o", str(out), "--model", "m", "--timestamp-column", "when",
                "--seasonal", "day-of-week", "--timezone", "Europe/Paris"]) == 0
    assert Baseline.load(out).seasonal.quantiles["x"].shape == (7, 101)
    assert cli(["baseline", "show", str(out)]) == 0
    assert "seasonal    day-of-week (Europe/Paris) from column when" in capsys.readouterr().out
    with pytest.raises(BuildError, match="go together"):
        build_baseline(train, model="m", seasonal="hour-of-day")
    assert cli(["baseline", "build", str(train), "-o", str(out), "--model", "m", "--timestamp-column", "then",
                "--seasonal", "hour-of-day"]) == 2
    assert "--timestamp-column column 'then' is not in the data" in capsys.readouterr().err


def test_a_time_zone_moves_the_slots_with_summer_time():
    """Traffic on New York's clock: in UTC its hours move by one twice a year, in the time zone they stay."""
    rng = np.random.default_rng(6)
    ts = 1_704_067_200.0 + np.arange(60_000) * 600.0  # 2024, every 10 minutes
    local = pd.to_datetime(ts, unit="s", utc=True).tz_convert("America/New_York")
    x = np.asarray(local.hour) * 10.0 + rng.normal(size=len(ts))  # follows the local hour
    utc = build_baseline_from_columns("m", {"x": x}, timestamps=ts, seasonal="hour-of-day")
    zoned = build_baseline_from_columns("m", {"x": x}, timestamps=ts, seasonal="hour-of-day",
                                        timezone="America/New_York")
    assert zoned.seasonal.timezone == "America/New_York" and utc.seasonal.timezone is None
    spread = [np.ptp(b.seasonal.quantiles["x"][:, [25, 75]], axis=1).max() for b in (utc, zoned)]
    assert spread[0] > 5 > spread[1]  # UTC's slots mix two local hours
    assert Baseline.loads(msgpack.packb(zoned.to_dict())).seasonal.timezone == "America/New_York"
    d = zoned.to_dict()
    d["seasonal"]["timezone"] = "Mars/Olympus"
    with pytest.raises(BaselineError, match="not a time zone"):
        Baseline.from_dict(d)
    with pytest.raises(BuildError, match="not an IANA time zone"):
        build_baseline_from_columns("m", {"x": x}, timestamps=ts, seasonal="hour-of-day", timezone="Mars/Olympus")


def test_the_columnar_decoder_reads_the_events_ts(baselines):
    """JSON messages read straight into the columns (`detectors._decode`) map as their dicts do."""
    import orjson

    from detectors.processing import process_messages

    _, seasonal = baselines
    ts, x = daily(3_000, 7)
    x[1_500:] += 1.0
    payloads = [orjson.dumps({"model": "m", "ts": float(t), "features": {"x": float(v)}}) for t, v in zip(ts, x)]
    runs = [[(a.events_seen, a.detector, a.statistic) for a in
             process_messages(ModelRouter([seasonal]), payloads, columnar=columnar).alerts]
            for columnar in (True, False)]
    assert runs[0] == runs[1] and runs[0]


def test_held_events_map_by_their_ts_as_events_fed_at_once(baselines):
    """The worker's hold (detectors.processing.Hold) feeds a model's waiting batches as one: their
    `ts` are read from each batch's events (JSON read by the columnar decoder, or dicts)."""
    import orjson

    from detectors.processing import Hold, process_messages

    _, seasonal = baselines
    ts, x = daily(3_000, 8)
    x[1_500:] += 1.0
    events = [{"model": "m", "ts": float(t), "features": {"x": float(v)}} for t, v in zip(ts, x)]
    expected = [a.to_dict() for a in process_events(ModelRouter([seasonal]), events).alerts]
    for columnar in (True, False):
        router, hold, alerts = ModelRouter([seasonal]), Hold(events=300), []
        for i in range(0, len(events), 70):
            call = events[i:i + 70]
            alerts += (process_messages(router, [orjson.dumps(e) for e in call], hold=hold) if columnar
                       else process_events(router, call, hold=hold)).alerts
        alerts += hold.flush(router).alerts
        assert expected and [a.to_dict() for a in alerts] == expected
