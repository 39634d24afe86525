"""skewwatch from Python, for notebooks: a baseline from a pandas DataFrame, the monitors over a DataFrame
(or a list) of events, the alerts as records or a DataFrame, and the HTML report shown inline.

The same code as the commands, not a copy of it: `baselines.build` profiles the training frame
(`baseline build`'s column arguments and checks), `stream.commands.tables` turns rows into events as
`skewwatch replay` does for a CSV or Parquet file, `stream.report.gather` runs replay's processing
(detectors/processing.py) and records what `stream.report.html` draws. The same rows give the same
alerts, with the same `alert_id`, as `skewwatch replay` of the same events. docs/notebook.md has a
worked example.

It imports neither Faust nor Kafka; pandas (a dependency of skewwatch) is imported when first needed.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from baselines.profile import Baseline

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ALERT_COLUMNS", "Monitoring", "NothingMonitored", "Report", "build_baseline", "monitor"]

#: the columns of `Monitoring.alerts_frame`: the alert contract's fields, in its order (docs/contracts.md)
ALERT_COLUMNS = ("alert_id", "kind", "model", "model_version", "feature", "detector", "statistic", "threshold",
                 "p_value", "baseline", "current", "events_seen", "ts", "severity", "diagnosis", "evidence",
                 "next_step")
#: height of the inline report's frame, in pixels (it scrolls inside)
REPORT_HEIGHT = 900


class NothingMonitored(ValueError):
    """No event was monitored (no events, all rejected, or all for models without a baseline): never an
    all-clear. The message says why, as `skewwatch replay` does."""


def _pandas():
    """pandas, imported on first use, with what to do when it is missing."""
    try:
        import pandas
    except ImportError:
        raise ImportError("stream.notebook works on pandas DataFrames, and pandas is not installed: "
                          "pip install pandas (or reinstall skewwatch, which depends on it)") from None
    return pandas


def build_baseline(
    frame: pd.DataFrame,
    *,
    model: str,
    version: str | None = None,
    confidence_column: str | None = None,
    prediction_column: str | None = None,
    label_column: str | None = None,
    categorical: Sequence[str] = (),
    exclude: Sequence[str] = (),
    min_rows: int | None = None,
    time_ordered: bool = False,
    timestamp_column: str | None = None,
    seasonal: str | None = None,
    timezone: str | None = None,
) -> Baseline:
    """Profile a training DataFrame into a baseline, as `skewwatch baseline build` profiles a file.

    Parameters
    ----------
    frame
        One row per training example; every column not named below is a feature.
    model, version
        What the baseline belongs to (events carry `model`).
    confidence_column, prediction_column, label_column
        The columns holding the model's confidence, its prediction and the true label.
    categorical, exclude
        Columns profiled as categorical whatever they look like; columns left out.
    min_rows
        Fewest rows accepted (default `baselines.build.MIN_ROWS`, and why).
    time_ordered
        The rows are in time order, as production sends them (`baseline build --time-ordered`):
        each feature's serial dependence is measured and the monitors' thresholds allow for it.
    timestamp_column, seasonal, timezone
        The column of each row's time and the period ("hour-of-day", "day-of-week") of the numeric
        features' profiles per slot of the clock, in UTC or the IANA `timezone` (`baseline build
        --timestamp-column --seasonal --timezone`): each event is compared with its slot by its `ts`.

    Returns
    -------
    Baseline
        Save it with ``baseline.save("credit.msgpack")`` for the worker or `skewwatch replay`;
        `baselines.formats.BuildError` when the frame cannot be profiled (a named column missing,
        no feature left, too few rows). A feature whose name looks like an output (score, target...)
        draws a `baselines.build.BuildWarning`.
    """
    _pandas()
    from baselines.build import MIN_ROWS, build_baseline_from_frame

    return build_baseline_from_frame(
        frame, model=model, version=version, confidence_column=confidence_column,
        prediction_column=prediction_column, label_column=label_column, categorical=categorical,
        exclude=exclude, min_rows=MIN_ROWS if min_rows is None else min_rows, time_ordered=time_ordered,
        timestamp_column=timestamp_column, seasonal=seasonal, timezone=timezone)


def monitor(
    events: pd.DataFrame | Iterable[dict],
    baselines: Baseline | str | os.PathLike | Sequence[Baseline | str | os.PathLike],
    *,
    model: str | None = None,
    confidence_column: str | None = None,
    prediction_column: str | None = None,
    label_column: str | None = None,
    exclude: Sequence[str] = (),
    window: int | None = None,
    include_examples: bool = False,
) -> Monitoring:
    """Run the monitors over production events, in order, as `skewwatch replay` and `report` do.

    Parameters
    ----------
    events
        A DataFrame with one row per prediction (columns as for a table given to `skewwatch replay`:
        `model`, `model_version`, `request_id`, `ts` are the event's fields, the role columns below,
        every other column a feature; or a `features` column of dicts), or event dicts as in
        docs/contracts.md.
    baselines
        A baseline, a baseline file's path, or several (one per model).
    model
        The model of rows without a `model` column (default: the only baseline's).
    confidence_column, prediction_column, label_column, exclude
        As for `build_baseline`: the confidence and prediction columns become the event's
        `confidence` and `prediction`; the label and excluded columns are left out.
    window
        Sample the statistics the report plots every this many events (default: the monitors' window).
    include_examples
        Quote individual values in alerts, as `replay --include-examples` (off: features may be
        personal data).

    Returns
    -------
    Monitoring
        The alerts and counts, and the report. `NothingMonitored` when no event was monitored.
    """
    _pandas()
    from detectors.events import Limits
    from detectors.model import MonitorConfig
    from stream.commands.tables import TABLE_CHUNK_ROWS, TableColumns, events_from_frame
    from stream.report.gather import Recorder

    loaded = _baselines(baselines)
    columns = TableColumns(model, confidence_column, prediction_column, label_column, tuple(exclude))
    recorder = Recorder(loaded, window=window or MonitorConfig.window, limits=Limits(), table=columns,
                        config=MonitorConfig(include_examples=include_examples))
    replay = recorder.replay
    if _is_frame(events):
        by_model = {b.model: b for b in loaded}
        for start in range(0, len(events), TABLE_CHUNK_ROWS):
            chunk = events.iloc[start:start + TABLE_CHUNK_ROWS]
            replay.run_values(events_from_frame(chunk, by_model, columns), {"frame": "events"}, "row", start)
    else:
        replay.run_values(list(events), {"events": "list"}, "index")
    recorder.finish()
    problem = replay.nothing_monitored()
    if problem is not None:
        raise NothingMonitored(problem)
    return Monitoring(recorder)


def _baselines(given: Any) -> list[Baseline]:
    items = [given] if isinstance(given, (Baseline, str, os.PathLike)) else list(given)
    return [b if isinstance(b, Baseline) else Baseline.load(b) for b in items]


def _is_frame(events: Any) -> bool:
    pd = _pandas()
    return isinstance(events, pd.DataFrame)


@dataclass
class Report:
    """`skewwatch report`'s page for a monitoring run: shown inline by Jupyter (`_repr_html_`, in a frame
    so that its style stays its own), or `save`d as a self-contained HTML file."""

    #: the whole page: inline CSS and SVG, no script, nothing fetched
    html: str
    height: int = field(default=REPORT_HEIGHT)

    def _repr_html_(self) -> str:
        """The page in an iframe (`srcdoc`): a notebook's own styles and the page's do not mix."""
        return (f'<iframe srcdoc="{escape(self.html, quote=True)}" style="width: 100%; '
                f'height: {self.height}px; border: 1px solid #ddd" title="skewwatch report"></iframe>')

    def save(self, path: str | os.PathLike) -> Path:
        """Write the page to `path` (UTF-8); returns the path."""
        p = Path(path)
        p.write_text(self.html, encoding="utf-8")
        return p


class Monitoring:
    """What `monitor` found: the alerts, the counts, and the report.

    Attributes
    ----------
    alerts
        The alerts as dicts (the alert contract, `Alert.to_dict`), per model in the order raised.
    events
        Events monitored.
    rejected
        Events (or messages) rejected, by reason.
    """

    def __init__(self, recorder: Any):
        from stream.commands.replay import unmonitored_sentence

        self._recorder = recorder
        replay = recorder.replay
        self.alerts: list[dict] = [a for t in recorder.traces for a in t.alerts]
        self.events: int = replay.events
        self.rejected: dict[str, int] = dict(replay.rejected)
        #: the sentence on events of models without a baseline, "" when there were none
        self.unmonitored: str = (unmonitored_sentence(replay.unmonitored_models, replay.router.models)
                                 if replay.unmonitored_models else "")

    def alerts_frame(self) -> pd.DataFrame:
        """The alerts as a DataFrame, one row each, the contract's fields as columns (`ALERT_COLUMNS`;
        `baseline`, `current` and `evidence` hold dicts) and `time`, the alert's `ts` as a UTC datetime."""
        pd = _pandas()
        frame = pd.DataFrame.from_records(self.alerts, columns=list(ALERT_COLUMNS))
        frame.insert(0, "time", pd.to_datetime(frame["ts"].astype(float), unit="s", utc=True))
        return frame

    def report(self, height: int = REPORT_HEIGHT) -> Report:
        """`skewwatch report`'s page for this run (`height`: of its inline frame, in pixels)."""
        from stream.report.html import render_html

        replay = self._recorder.replay
        page = render_html(self._recorder.traces, sources=["DataFrame"], rejected=replay.rejected,
                           unmonitored=self.unmonitored)
        return Report(page, height)

    def __repr__(self) -> str:
        kinds: dict[str, int] = {}
        for a in self.alerts:
            kinds[a["kind"]] = kinds.get(a["kind"], 0) + 1
        alerts = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
        rejected = sum(self.rejected.values())
        return (f"<Monitoring: {self.events:,} events monitored, {len(self.alerts)} alerts"
                + (f" ({alerts})" if alerts else "") + f", {rejected:,} rejected"
                + "".join(f" {k} {n:,}" for k, n in self.rejected.items()) + ">")
