"""Build a training baseline by streaming a CSV / JSONL / Parquet file, or from in-memory columns.

One pass, in chunks, in bounded memory: per column, exact moments and counts plus a bounded
uniform sample (bottom-k by random priority) for the quantile grid and the bins. A 5 GB file
is never held whole; memory is about ``reservoir_size * 16`` bytes per numeric column plus one
chunk.

Modules: `baselines.readers` reads the files in chunks, `baselines.accumulate` keeps each column's
statistics (and says what counts as missing or invalid), and this module joins them: the
`Profiler` takes chunks in and gives a `Baseline` out.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> b = build_baseline_from_columns(
...     "credit", {"amount": rng.normal(0.5, 0.2, 5000), "country": ["US", "FR"] * 2500})
>>> b.features["amount"].kind, b.features["country"].kind
('numeric', 'categorical')
>>> round(b.features["amount"].mean, 2), round(b.features["amount"].std, 2)
(0.5, 0.2)
>>> b.features["country"].categories
{'FR': 0.5, 'US': 0.5}
"""
from __future__ import annotations

import dataclasses
import os
import stat
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from baselines.accumulate import (
    RESERVOIR_SIZE,
    TOP_K_CATEGORIES,
    CategoricalStats,
    LabelSample,
    NumericStats,
    Undecided,
    as_floats,
    category_codes,
    infer_kind,
    label_association,
    prediction_kind,
)
from baselines.profile import Baseline, CategoricalProfile, NumericProfile, SeasonalProfile
from baselines.readers import (
    JSONL_CHUNK_ROWS,
    BuildError,
    csv_frames,
    format_of,
    jsonl_frames,
    parquet_frames,
)
from baselines.seasonal import SEASONAL_PERIODS, SeasonalStats, known_timezone, slot_of, timestamps
from baselines.serial import SerialStats

__all__ = ["MIN_ROWS", "OUTPUT_LIKE_NAMES", "BuildError", "BuildWarning", "Profiler", "Progress", "Roles", "Warn",
           "build_baseline", "build_baseline_from_columns", "build_baseline_from_frame", "output_like_role"]

#: rows per chunk read from a file
CHUNK_ROWS = 100_000
#: fewest rows a training file must have. The profile's quantile grid has a step of 1/1000, and the
#: monitors widen their thresholds by the baseline's own sampling error: the CUSUM reference by
#: 4 / sqrt(n) standard scores (at 1000 rows already +0.13 on the calibrated 0.25) and the windowed
#: KS distance by 2.5 / sqrt(n) (0.08 at 1000 rows, about the critical distance of a 1000-event
#: window). Below 1000 rows the grid interpolates between a handful of values and those allowances
#: outgrow the changes the tests are built to catch: the baseline would look fine and detect little.
MIN_ROWS = 1_000
#: column names (lower case, "-", "." and spaces read as "_") that usually hold the model's outputs or
#: the true label: profiled as features they are missing from every event (data-quality alerts at
#: once), so the builder warns unless the role's column was named
OUTPUT_LIKE_NAMES = {
    "confidence": {"confidence", "conf", "score", "model_score", "confidence_score", "probability", "prob", "proba",
                   "pred_proba", "predict_proba", "predicted_proba", "predicted_probability", "prediction_probability",
                   "prediction_confidence"},
    "prediction": {"prediction", "predictions", "pred", "preds", "predicted", "predicted_label", "predicted_class",
                   "y_pred", "yhat", "y_hat", "model_prediction", "model_output"},
    "label": {"label", "labels", "target", "y", "y_true", "truth", "ground_truth", "actual", "outcome", "class"},
}
_ROLE_WORDS = {"confidence": "the model's confidence", "prediction": "the model's prediction",
               "label": "the true label"}
#: progress(rows_read, bytes_read, total_bytes): called after each chunk of a file; total_bytes is the
#: file's size on disk, None when unknown (or 0)
Progress = Callable[[int, int, "int | None"], None]
#: warn(message): told of each column that looks like an output but is profiled as a feature
Warn = Callable[[str], None]


class BuildWarning(UserWarning):
    """A column profiled as a feature looks like one of the model's outputs (`build_baseline` without `warn`)."""


# ---- public API ------------------------------------------------------------------------
def build_baseline(
    path: str | os.PathLike,
    *,
    model: str,
    version: str | None = None,
    confidence_column: str | None = None,
    prediction_column: str | None = None,
    label_column: str | None = None,
    categorical: Sequence[str] = (),
    exclude: Sequence[str] = (),
    progress: Progress | None = None,
    warn: Warn | None = None,
    min_rows: int = MIN_ROWS,
    chunk_rows: int = CHUNK_ROWS,
    reservoir_size: int = RESERVOIR_SIZE,
    top_k: int = TOP_K_CATEGORIES,
    time_ordered: bool = False,
    timestamp_column: str | None = None,
    seasonal: str | None = None,
    timezone: str | None = None,
) -> Baseline:
    """Profile a CSV (.csv, .csv.gz, .tsv), JSONL (.jsonl, .ndjson, optionally .gz) or Parquet file.

    Parameters
    ----------
    path
        The training file; its name says its format.
    model, version
        What the baseline belongs to (events carry `model`).
    confidence_column, prediction_column, label_column
        Columns holding the model's outputs and the true label rather than features.
    categorical, exclude
        Columns profiled as categorical whatever they look like; columns left out.
    progress
        Called after each chunk with plain data: ``progress(rows_read, bytes_read, total_bytes)``
        (see `Progress`). Nothing is drawn here: the CLI supplies a terminal display.
    warn
        Called with one sentence per column profiled as a feature although its name looks like an
        output (`output_like_role`) whose role was not given; default: a `BuildWarning`.
    min_rows
        Fewest rows the file must have (`MIN_ROWS`: why).
    chunk_rows, reservoir_size, top_k
        Rows per chunk, values sampled per numeric column, categories kept per feature.
    time_ordered
        The rows are in time order, as production sends them: measure each feature's serial
        dependence (`baselines.serial`), which the monitors' thresholds then allow for.
    timestamp_column, seasonal
        Together: the column of each row's time (seconds since the epoch, a datetime or ISO 8601 text;
        not a feature) and the period ("hour-of-day", "day-of-week": `baselines.seasonal`) of the
        numeric features' profiles per slot, against which the monitors compare each event in its
        slot (by the event's `ts`).
    timezone
        With seasonal: the slots are the hours or weekdays of this IANA time zone's local time (summer
        time included), not UTC's.

    Returns
    -------
    Baseline
        The profile; raises BuildError when the file cannot be profiled: not a regular file (refused
        before it is opened), unreadable, no rows or fewer than min_rows, no feature left once the
        excluded and role columns are set aside.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = Path(d) / "train.csv"
    ...     _ = path.write_text("amount,country,score\\n" + "".join(f"{i},US,0.9\\n" for i in range(1000)))
    ...     b = build_baseline(path, model="credit", confidence_column="score")
    >>> b.n_rows, {name: p.kind for name, p in b.features.items()}, round(b.confidence.mean, 3)
    (1000, {'amount': 'numeric', 'country': 'categorical'}, 0.9)
    """
    p = Path(path)
    try:
        st = p.stat()  # before opening it: opening a FIFO blocks until someone writes to it
    except FileNotFoundError:
        raise BuildError(f"{p}: no such file") from None
    except OSError as e:
        raise BuildError(f"{p}: cannot read: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):  # a device such as /dev/zero would be read until memory ran out
        raise BuildError(f"{p}: not a regular file; training data is a CSV, JSONL or Parquet file")
    fmt = format_of(p)
    roles = Roles(confidence_column, prediction_column, label_column)
    profiler = Profiler(roles, categorical=categorical, exclude=exclude, text=fmt == "csv",
                        reservoir_size=reservoir_size, top_k=top_k, warn=warn or _build_warning,
                        time_ordered=time_ordered, timestamp_column=timestamp_column, seasonal=seasonal,
                        timezone=timezone)
    total_bytes = st.st_size or None
    if fmt == "csv":
        frames = csv_frames(p, profiler, chunk_rows)
    elif fmt == "jsonl":
        frames = jsonl_frames(p, roles, min(chunk_rows, JSONL_CHUNK_ROWS))
    else:
        frames = parquet_frames(p, chunk_rows)
    for i, (frame, bytes_read) in enumerate(frames):
        profiler.add(frame)
        if i == 0 and fmt == "parquet":
            profiler.check_columns()  # fail fast: every column is in the first batch
            profiler.check_features()
        if progress is not None:
            progress(profiler.rows, bytes_read, total_bytes)
    if profiler.rows == 0:
        raise BuildError(f"{p}: no rows to profile" + (" (only a header)" if fmt == "csv" else ""))
    profiler.check_features()
    _check_rows(str(p), profiler.rows, min_rows)
    return profiler.finish(model=model, version=version, source=str(p))


def output_like_role(name: str) -> str | None:
    """The role ("confidence", "prediction", "label") a column's name suggests, None for a feature's name.

    >>> [output_like_role(n) for n in ("score", "y_pred", "Target", "credit_score", "amount")]
    ['confidence', 'prediction', 'label', None, None]
    """
    key = name.strip().lower().replace("-", "_").replace(".", "_").replace(" ", "_")
    return next((role for role, names in OUTPUT_LIKE_NAMES.items() if key in names), None)


def _build_warning(message: str) -> None:
    warnings.warn(message, BuildWarning, stacklevel=1)  # about the training data, not a call site


def build_baseline_from_columns(
    model: str,
    columns: Mapping[str, Any],
    *,
    version: str | None = None,
    confidence: Any = None,
    prediction: Any = None,
    labels: Any = None,
    categorical: Sequence[str] = (),
    reservoir_size: int = RESERVOIR_SIZE,
    top_k: int = TOP_K_CATEGORIES,
    chunk_rows: int = CHUNK_ROWS,
    time_ordered: bool = False,
    timestamps: Any = None,
    seasonal: str | None = None,
    timezone: str | None = None,
) -> Baseline:
    """The same profiling from in-memory columns (arrays or lists of equal length).

    Values are typed as in events: None/NaN is missing, a string in a numeric column is invalid.
    No minimum number of rows and no warning about output-like names: the caller says what each
    column is.

    Parameters
    ----------
    model, version
        What the baseline belongs to (events carry `model`).
    columns
        Feature name -> values (numpy array, pandas Series or any sized iterable).
    confidence, prediction, labels
        The model's confidence in [0, 1], its prediction and the true label, one per row (None:
        absent). Labels need a prediction: the baseline's metric compares them.
    categorical
        Features profiled as categorical whatever they look like.
    reservoir_size, top_k, chunk_rows
        Values sampled per numeric column, categories kept per feature, rows profiled at a time.
    time_ordered
        As for `build_baseline`: the rows are in time order.
    timestamps, seasonal, timezone
        Each row's time (seconds since the epoch), the period of the numeric features' profiles per
        slot and its time zone, as `build_baseline`'s timestamp_column, seasonal and timezone.

    Returns
    -------
    Baseline
        The profile (its `source` is "columns"); BuildError when the columns' lengths differ.

    Examples
    --------
    >>> b = build_baseline_from_columns("credit", {"amount": [10.0, None, 30.0], "country": ["US", "FR", 3]},
    ...                                 prediction=[1, 0, 1], labels=[1, 1, 1])
    >>> b.features["amount"].mean, b.features["amount"].missing_rate, b.features["country"].categories["3"]
    (20.0, 0.3333333333333333, 0.3333333333333333)
    >>> b.metric
    {'name': 'accuracy', 'value': 0.6666666666666666, 'n': 3}
    """
    data = dict(columns)
    role_names = {}
    for role, values in (("confidence", confidence), ("prediction", prediction), ("label", labels),
                         ("timestamp", timestamps)):
        if values is not None:
            name = "\x00" + role  # cannot collide with a feature name
            data[name] = values
            role_names[role] = name
    lengths = {k: len(v) for k, v in data.items()}
    if len(set(lengths.values())) > 1:
        raise BuildError(f"columns have different lengths: {lengths}")
    frame = pd.DataFrame({k: pd.Series(_column(v)) for k, v in data.items()})
    return _build_from_frame(frame, Roles(role_names.get("confidence"), role_names.get("prediction"),
                                          role_names.get("label")),
                             model=model, version=version, categorical=categorical, exclude=(), warn=None,
                             checked=False, min_rows=0, source="columns", reservoir_size=reservoir_size, top_k=top_k,
                             chunk_rows=chunk_rows, time_ordered=time_ordered,
                             timestamp_column=role_names.get("timestamp"), seasonal=seasonal, timezone=timezone)


def build_baseline_from_frame(
    frame: pd.DataFrame,
    *,
    model: str,
    version: str | None = None,
    confidence_column: str | None = None,
    prediction_column: str | None = None,
    label_column: str | None = None,
    categorical: Sequence[str] = (),
    exclude: Sequence[str] = (),
    warn: Warn | None = None,
    min_rows: int = MIN_ROWS,
    source: str = "DataFrame",
    reservoir_size: int = RESERVOIR_SIZE,
    top_k: int = TOP_K_CATEGORIES,
    chunk_rows: int = CHUNK_ROWS,
    time_ordered: bool = False,
    timestamp_column: str | None = None,
    seasonal: str | None = None,
    timezone: str | None = None,
) -> Baseline:
    """Profile a pandas DataFrame of training rows, with `build_baseline`'s column arguments and checks.

    Values are typed as in events (None/NaN is missing, a string in a numeric column is invalid);
    the checks are those of a file: every named column exists, a feature is left, at least
    `min_rows` rows, a warning for output-like feature names.

    Parameters
    ----------
    frame
        One row per training example, one column per feature and role.
    model, version, confidence_column, prediction_column, label_column, categorical, exclude, warn, min_rows,
    time_ordered, timestamp_column, seasonal, timezone
        As for `build_baseline`.
    source
        Where the rows came from, kept in the baseline.
    reservoir_size, top_k, chunk_rows
        Values sampled per numeric column, categories kept per feature, rows profiled at a time.

    Returns
    -------
    Baseline
        The profile; BuildError when it cannot be built (see `build_baseline`).

    Examples
    --------
    >>> frame = pd.DataFrame({"amount": range(1000), "country": ["US", "FR"] * 500, "p": [0.9] * 1000})
    >>> b = build_baseline_from_frame(frame, model="credit", confidence_column="p")
    >>> sorted(b.features), b.n_rows, b.source
    (['amount', 'country'], 1000, 'DataFrame')
    >>> build_baseline_from_frame(frame.head(10), model="credit", confidence_column="p")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    baselines.formats.BuildError: DataFrame: 10 rows, fewer than the 1000 a baseline needs ...
    """
    return _build_from_frame(frame, Roles(confidence_column, prediction_column, label_column), model=model,
                             version=version, categorical=categorical, exclude=exclude,
                             warn=warn or _build_warning, checked=True, min_rows=min_rows, source=source,
                             reservoir_size=reservoir_size, top_k=top_k, chunk_rows=chunk_rows,
                             time_ordered=time_ordered, timestamp_column=timestamp_column, seasonal=seasonal,
                             timezone=timezone)


def _build_from_frame(frame: pd.DataFrame, roles: Roles, *, model: str, version: str | None,
                      categorical: Sequence[str], exclude: Sequence[str], warn: Warn | None, checked: bool,
                      min_rows: int, source: str, reservoir_size: int, top_k: int, chunk_rows: int,
                      time_ordered: bool = False, timestamp_column: str | None = None,
                      seasonal: str | None = None, timezone: str | None = None) -> Baseline:
    """The profile of an in-memory frame, in chunks of `chunk_rows`; `checked`: a feature is left and
    there are `min_rows` rows (`build_baseline_from_columns` checks neither: the caller said what each
    column is)."""
    profiler = Profiler(roles, categorical=categorical, exclude=exclude, text=False,
                        reservoir_size=reservoir_size, top_k=top_k, warn=warn, time_ordered=time_ordered,
                        timestamp_column=timestamp_column, seasonal=seasonal, timezone=timezone)
    for start in range(0, max(len(frame), 1), chunk_rows):
        profiler.add(frame.iloc[start:start + chunk_rows])
    profiler.check_columns()
    if checked:
        profiler.check_features()
        _check_rows(source, profiler.rows, min_rows)
    return profiler.finish(model=model, version=version, source=source)


def _check_rows(source: str, rows: int, min_rows: int) -> None:
    if rows < min_rows:
        raise BuildError(f"{source}: {rows} rows, fewer than the {min_rows} a baseline needs for its quantiles "
                         "and thresholds to mean anything")


def _column(values: Any) -> Any:
    if isinstance(values, np.ndarray) or isinstance(values, pd.Series):
        return values
    return list(values)


# ---- the profiler: chunks in, Baseline out --------------------------------------------------
class Roles:
    """Which columns hold the model's confidence, prediction and the true label (None: absent)."""

    def __init__(self, confidence: str | None, prediction: str | None, label: str | None):
        if label is not None and prediction is None:
            raise BuildError("a label column needs a prediction column (the metric compares them)")
        self.confidence, self.prediction, self.label = confidence, prediction, label

    @property
    def columns(self) -> dict[str, str]:
        named = {"confidence": self.confidence, "prediction": self.prediction, "label": self.label}
        return {col: role for role, col in named.items() if col is not None}


class Profiler:
    """Chunks of rows in (`add`), a `Baseline` out (`finish`): one accumulator per column, plus the
    prediction, the confidence and the metric (prediction vs label)."""

    def __init__(self, roles: Roles, *, categorical: Sequence[str], exclude: Sequence[str], text: bool,
                 reservoir_size: int, top_k: int, warn: Warn | None = None, time_ordered: bool = False,
                 timestamp_column: str | None = None, seasonal: str | None = None, timezone: str | None = None):
        if (timestamp_column is None) != (seasonal is None):
            raise BuildError("--seasonal and --timestamp-column go together: the period, and the column of each "
                             "row's time")
        if seasonal is not None and seasonal not in SEASONAL_PERIODS:
            raise BuildError(f"--seasonal {seasonal!r}: not a period ({', '.join(SEASONAL_PERIODS)})")
        if timezone is not None and (seasonal is None or not known_timezone(timezone)):
            raise BuildError(f"--timezone {timezone!r}: " + ("goes with --seasonal" if seasonal is None else
                                                              "not an IANA time zone (e.g. America/New_York)"))
        self._roles = roles
        self._warn = warn  # None: no warning about output-like names (columns given in memory)
        self._categorical = set(categorical)
        self._exclude = set(exclude)
        self._text = text
        self._reservoir_size = reservoir_size
        self._top_k = top_k
        self._features: dict[str, NumericStats | CategoricalStats | Undecided] = {}
        self._seen: set[str] = set()
        self.rows = 0
        self._confidence = NumericStats("confidence", reservoir_size)
        self._prediction: NumericStats | CategoricalStats | Undecided = Undecided()
        self._metric_n = 0
        self._metric_sum = 0.0  # correct predictions (accuracy) or absolute errors (mae)
        # rows (features and label) for each feature's association with the label
        self._label_sample = LabelSample() if roles.label is not None else None
        #: per feature, its series in time order (None: the rows are not in time order)
        self._serial: dict[str, SerialStats] | None = {} if time_ordered else None
        self._timestamp_column, self._period, self._timezone = timestamp_column, seasonal, timezone
        #: per numeric feature, its values per slot of the period (none without --seasonal)
        self._seasonal: dict[str, SeasonalStats] = {}
        self._slots = np.empty(0, dtype=np.int64)  # the chunk's rows' slots

    def decide(self, head: pd.DataFrame) -> None:
        """Kinds decided from the first rows read as text (CSV), before the main read."""
        self._seen.update(head.columns)
        self.check_columns()  # fail before reading a large file
        for name in head.columns:
            if name in self._exclude or name in self._roles.columns or name == self._timestamp_column:
                continue
            self._warn_if_output_like(name)
            self._features[name] = self._stats_for(name, self._kind(name, head[name]), 0)
        self.check_features()

    def excludes(self, name: str) -> bool:
        """Whether the column is left out (`exclude`)."""
        return name in self._exclude

    def reads_as_text(self, name: str) -> bool:
        """Whether a CSV column is read as strings: all but numeric features and the confidence, so that
        the parser never types a value that may be a category ("True" -> True, "1.0" -> 1.0)."""
        role = self._roles.columns.get(name)
        if role is not None:
            return role != "confidence"
        return not isinstance(self._features.get(name), NumericStats)

    def reads_null_words(self, name: str) -> bool:
        """Whether a CSV column's null spellings ("NA", "null"...) are missing, not text: numeric columns,
        and the columns still undecided (the first rows, read to decide, counted them as missing)."""
        role = self._roles.columns.get(name)
        if role is not None:
            return role == "confidence"
        return not isinstance(self._features.get(name), CategoricalStats)

    def _kind(self, name: str, s: pd.Series) -> str | None:
        if name in self._categorical:
            return "categorical"
        return infer_kind(s, self._text)

    def _stats_for(self, name: str, kind: str | None, n_missing: int):
        if kind == "numeric":
            return NumericStats(name, self._reservoir_size, n_missing)
        if kind == "categorical":
            return CategoricalStats(name, self._top_k, n_missing)
        return Undecided(n_missing)

    def add(self, frame: pd.DataFrame) -> None:
        """Take a chunk of rows: each column to its accumulator (a column absent from it counts as missing)."""
        n = len(frame)
        self._seen.update(frame.columns)
        if self._period is not None:
            self._slots = (slot_of(timestamps(frame[self._timestamp_column]), self._period, self._timezone)
                           if self._timestamp_column in frame.columns else np.full(n, -1, dtype=np.int64))
        for name in frame.columns:
            if name in self._exclude or name == self._timestamp_column:
                continue
            role = self._roles.columns.get(name)
            if role == "confidence":
                values, missing = as_floats(frame[name], self._text)
                values[(values < 0) | (values > 1)] = np.nan  # outside [0, 1]: invalid
                self._confidence.add(values, missing)
            elif role == "prediction":
                self._prediction = self._add_to(self._prediction, name, frame[name], prediction=True)
                if self._roles.label is not None and self._roles.label in frame.columns:
                    self._add_metric(frame[name], frame[self._roles.label])
            elif role is None:
                stats = self._features.get(name)
                if stats is None:
                    self._warn_if_output_like(name)
                    stats = Undecided(self.rows)
                self._features[name] = self._add_to(stats, name, frame[name])
        for name, stats in self._features.items():
            if name not in frame.columns:
                stats.add_missing(n)
        if self._roles.prediction is not None and self._roles.prediction not in frame.columns:
            self._prediction.add_missing(n)
        if self._roles.confidence is not None and self._roles.confidence not in frame.columns:
            self._confidence.add_missing(n)
        if self._label_sample is not None and self._roles.label in frame.columns:
            self._label_sample.add(frame[[c for c in frame.columns if c not in self._exclude and (
                c == self._roles.label or c not in self._roles.columns)]])
        self.rows += n

    def _add_to(self, stats, name: str, s: pd.Series, prediction: bool = False):
        if isinstance(stats, Undecided):
            kind = prediction_kind(s, self._text) if prediction else self._kind(name, s)
            if kind is None:
                stats.add_missing(len(s))
                return stats
            stats = self._stats_for(name, kind, stats.n_missing)
        if isinstance(stats, NumericStats):
            columns = as_floats(s, self._text)
            stats.add(*columns)
        else:
            columns = category_codes(s, self._text)
            stats.add(*columns)
        if self._serial is not None and not prediction:
            self._add_serial(name, stats, columns)
        if self._period is not None and not prediction and isinstance(stats, NumericStats):
            if name not in self._seasonal:
                self._seasonal[name] = SeasonalStats(name, self._period)
            self._seasonal[name].add(columns[0], self._slots)
        return stats

    def _add_serial(self, name: str, stats: NumericStats | CategoricalStats, columns: tuple) -> None:
        """The chunk's column to the feature's series in time order (rows before the feature's kind was
        decided, all missing, are not in it)."""
        serial = self._serial.get(name)
        if serial is None:
            kind = "numeric" if isinstance(stats, NumericStats) else "categorical"
            serial = self._serial[name] = SerialStats(kind, name, self._top_k)
        if serial.kind == "numeric":  # a seasonal baseline's scores are ranks within the slot
            serial.add_numeric(*columns, self._slots if self._period is not None else None)
        else:
            serial.add_categorical(*columns)

    def _add_metric(self, prediction: pd.Series, label: pd.Series) -> None:
        p_num, _ = as_floats(prediction, self._text)
        l_num, _ = as_floats(label, self._text)
        if isinstance(self._prediction, NumericStats):
            both = np.isfinite(p_num) & np.isfinite(l_num)
            self._metric_n += int(both.sum())
            self._metric_sum += float(np.abs(p_num[both] - l_num[both]).sum())
            return
        p_codes, p_keys = category_codes(prediction, self._text)
        l_codes, l_keys = category_codes(label, self._text)
        p_key = np.array(p_keys + [None], dtype=object)[p_codes]
        l_key = np.array(l_keys + [None], dtype=object)[l_codes]
        both = np.not_equal(p_key, None) & np.not_equal(l_key, None)
        # "1" and "1.0" (CSV) or 1 and 1.0 name the same class
        correct = both & ((p_key == l_key) | (np.isfinite(p_num) & (p_num == l_num)))
        self._metric_n += int(both.sum())
        self._metric_sum += int(correct.sum())

    def _warn_if_output_like(self, name: str) -> None:
        role = output_like_role(str(name))
        if self._warn is not None and role is not None and role not in self._roles.columns.values():
            self._warn(f"column {name!r} looks like {_ROLE_WORDS[role]}; profiled as a feature, it is missing from "
                       f"events that carry it outside `features`: name it with --{role}-column {name} or leave it "
                       f"out with --exclude {name}")

    def check_features(self) -> None:
        """At least one column must be left to profile as a feature."""
        if not self._features:
            known = ", ".join(sorted(str(c) for c in self._seen)[:20])
            raise BuildError(f"no feature left to profile: every column is excluded or holds a role "
                             f"(columns: {known})")

    def check_columns(self) -> None:
        """Every column the caller named must exist (checked once the schema is known)."""
        named = [("--categorical", c) for c in sorted(self._categorical)]
        named += [("--exclude", c) for c in sorted(self._exclude)]
        named += [(f"--{role}-column", c) for c, role in self._roles.columns.items()]
        named += [("--timestamp-column", self._timestamp_column)] if self._timestamp_column is not None else []
        for flag, column in named:
            if column not in self._seen:
                known = ", ".join(sorted(str(c) for c in self._seen)[:20])
                raise BuildError(f"{flag} column {column!r} is not in the data (columns: {known})")

    def finish(self, *, model: str, version: str | None, source: str) -> Baseline:
        """The baseline of every row added; a column that only ever held missing values is categorical and empty.

        Parameters
        ----------
        model, version
            What the baseline belongs to.
        source
            Where the rows came from (a file name), kept in the baseline.
        """
        self.check_columns()
        features = {
            name: (CategoricalProfile(name=name, count=0, n_missing=stats.n_missing, n_invalid=0,
                                      categories={}, other_freq=0.0, n_distinct=0)
                   if isinstance(stats, Undecided) else stats.finish())
            for name, stats in self._features.items()
        }
        for name, serial in (self._serial or {}).items():
            features[name] = dataclasses.replace(features[name], serial_inflation=serial.finish())
        metric = None
        if self._roles.label is not None and self._metric_n:
            name = "mae" if isinstance(self._prediction, NumericStats) else "accuracy"
            metric = {"name": name, "value": self._metric_sum / self._metric_n, "n": self._metric_n}
        prediction = None
        if self._roles.prediction is not None and not isinstance(self._prediction, Undecided):
            prediction = dataclasses.replace(self._prediction.finish(), name="prediction")
        confidence = None
        if self._roles.confidence is not None:
            confidence = dataclasses.replace(self._confidence.finish(), name="confidence")
        association = None
        if metric is not None and self._label_sample is not None:
            association = label_association(self._label_sample.rows(), self._roles.label, features,
                                            numeric_label=metric["name"] == "mae", text=self._text)
        seasonal = None
        if self._period is not None:
            grids = {name: stats.finish() for name, stats in self._seasonal.items()
                     if isinstance(features[name], NumericProfile)}
            seasonal = SeasonalProfile(self._period, self._timestamp_column, {n: c for n, (c, _) in grids.items()},
                                       {n: q for n, (_, q) in grids.items()}, self._timezone)
        return Baseline(
            model=model,
            version=version,
            features=features,
            n_rows=self.rows,
            source=source,
            confidence=confidence,
            prediction=prediction,
            metric=metric,
            label_association=association,
            seasonal=seasonal,
        )
