"""Production tables as events: a CSV/TSV or Parquet file (`skewwatch replay`, `skewwatch report`) or a
pandas DataFrame (`stream.notebook`), one row per prediction, read with `baseline build`'s column flags.

A row becomes the event of docs/contracts.md: the columns `model`, `model_version`, `request_id` and
`ts` are the event's fields of those names; `--confidence-column` and `--prediction-column` name its
`confidence` and `prediction`; `--label-column` and `--exclude` columns are left out (delayed labels
are joined with `--labels`); every other column is a feature. A table without a `model` column is
for the model `--model` names, or the only baseline's. A table whose rows are events already (a
`features` column of objects; Parquet's nested `features.*` columns are flattened by the reader) keeps
its features as they are.

CSV is read as text, as `baseline build` reads it (baselines/readers.py), then typed by the baseline:
a numeric feature's (and the confidence's, and a numeric prediction's) values become numbers, a value
that is not one stays text (an invalid value, counted per feature), a null spelling ("NA", "null"...)
is missing; other columns stay text, as their categories were keyed, except a feature's boolean
spellings (true, True, TRUE...), which become booleans: they then match the baseline's own spelling
of a boolean, whether it was built from a CSV or from JSON (`detectors.extract.BOOL_SPELLINGS`).
Parquet and DataFrame values keep their types; NaN, None and NaT are missing. Timestamps are seconds
since the epoch: a datetime column (or ISO text) is converted.

pandas is imported only when a table is read: replay of JSONL/msgpack does not load it.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from baselines.profile import Baseline, NumericProfile
from detectors.extract import BOOL_SPELLINGS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EVENT_FIELDS", "TABLE_CHUNK_ROWS", "TableColumns", "TableError", "add_table_arguments", "check_columns",
           "column_names", "events_from_frame", "table_columns", "table_format", "table_frames"]

#: columns that are the event's own fields, not features (docs/contracts.md, "Prediction event")
EVENT_FIELDS = ("model", "model_version", "request_id", "ts")
#: a CSV's spellings of a boolean feature value
_BOOLEANS = {spelling: value for value, spellings in zip((False, True), BOOL_SPELLINGS) for spelling in spellings}
#: rows read at a time from a table file
TABLE_CHUNK_ROWS = 20_000


class TableError(ValueError):
    """A table cannot be read as events: a named column is missing, no model is known for its rows,
    or the file does not parse."""


@dataclass(frozen=True)
class TableColumns:
    """Which model a table's rows are for and what its role columns are (`baseline build`'s flags).

    Parameters
    ----------
    model
        The model of rows without a `model` column; None: the only baseline's.
    confidence_column, prediction_column
        The columns holding the model's confidence and prediction (the event's `confidence`, `prediction`).
    label_column
        The true label's column, left out (labels are joined with `--labels`).
    exclude
        Columns left out.
    """

    model: str | None = None
    confidence_column: str | None = None
    prediction_column: str | None = None
    label_column: str | None = None
    exclude: tuple[str, ...] = ()

    @property
    def named(self) -> dict[str, str]:
        """Flag -> column, of every column named (each must be in the table)."""
        named = {"--confidence-column": self.confidence_column, "--prediction-column": self.prediction_column,
                 "--label-column": self.label_column}
        out = {flag: col for flag, col in named.items() if col is not None}
        out.update({f"--exclude {col}": col for col in self.exclude})
        return out

    @property
    def left_out(self) -> frozenset[str]:
        """Columns that are neither features nor event fields."""
        return frozenset(self.exclude) | ({self.label_column} if self.label_column is not None else set())


def column_names(text: str) -> list[str]:
    """A comma-separated list of column names, as `--exclude` takes it.

    >>> column_names("a, b,,c")
    ['a', 'b', 'c']
    """
    return [n.strip() for n in text.split(",") if n.strip()]


def add_table_arguments(p: argparse.ArgumentParser) -> None:
    """Add the flags that say how a table's rows become events (replay and report)."""
    group = p.add_argument_group("tables (.csv, .tsv, .csv.gz, .parquet: one row per prediction)")
    group.add_argument("--model", help="the model the rows are for, when the table has no `model` column "
                                       "(default: the only baseline's)")
    group.add_argument("--confidence-column", help="column holding the model's confidence (the event's `confidence`)")
    group.add_argument("--prediction-column", help="column holding the model's prediction (the event's `prediction`)")
    group.add_argument("--label-column",
                       help="column holding the true label: left out (replay joins delayed labels with --labels)")
    group.add_argument("--exclude", type=column_names, action="extend", default=[], metavar="C,D",
                       help="columns to leave out")


def table_columns(args: argparse.Namespace) -> TableColumns:
    """The `TableColumns` of the flags `add_table_arguments` added."""
    return TableColumns(args.model, args.confidence_column, args.prediction_column, args.label_column,
                        tuple(args.exclude))


def table_format(path: str) -> str | None:
    """"csv" or "parquet" for a table's file name, None for anything else (events: JSONL, msgpack).

    >>> table_format("prod.csv.gz"), table_format("prod.tsv"), table_format("p.parquet"), table_format("e.jsonl")
    ('csv', 'csv', 'parquet', None)
    """
    from baselines.formats import BuildError, format_of

    try:
        fmt = format_of(Path(path))
    except BuildError:
        return None
    return fmt if fmt in ("csv", "parquet") else None


class _ReadAs:
    """How `baselines.readers.csv_frames` reads a production table: every column as text (typed
    later by `events_from_frame`, which also leaves out the left-out columns), null spellings missing
    in the columns that hold numbers; checks that the named columns exist."""

    def __init__(self, columns: TableColumns, numbers: frozenset[str]):
        self._columns = columns
        self._numbers = numbers

    def decide(self, head: pd.DataFrame) -> None:
        check_columns(head.columns, self._columns)

    def excludes(self, name: str) -> bool:
        return False

    def reads_as_text(self, name: str) -> bool:
        return True

    def reads_null_words(self, name: str) -> bool:
        return name in self._numbers


def check_columns(present: Sequence[str], columns: TableColumns) -> None:
    """TableError unless every column the flags name is in the table."""
    for flag, col in columns.named.items():
        if col not in present:
            known = ", ".join(sorted(map(str, present))[:20])
            raise TableError(f"{flag.split()[0]} column {col!r} is not in the table (columns: {known})")


def table_frames(path: str, fmt: str, baselines: Mapping[str, Baseline], columns: TableColumns,
                 chunk_rows: int = TABLE_CHUNK_ROWS) -> Iterator[tuple[pd.DataFrame, int]]:
    """A table file's chunks, read by baselines/readers.py, as `(frame, bytes_read)`.

    Parameters
    ----------
    path
        The file.
    fmt
        "csv" (also .tsv and gzipped) or "parquet".
    baselines
        By model: which columns hold numbers (CSV null spellings count as missing there).
    columns
        The role columns.
    chunk_rows
        Rows per chunk.
    """
    from baselines.readers import BuildError, csv_frames, parquet_frames

    try:
        if fmt == "csv":
            yield from csv_frames(Path(path), _ReadAs(columns, _number_columns(baselines, columns)), chunk_rows)
            return
        first = True
        for frame, bytes_read in parquet_frames(Path(path), chunk_rows):
            if first:
                check_columns(frame.columns, columns)
                first = False
            yield frame, bytes_read
    except BuildError as e:
        raise TableError(str(e)) from None


def _number_columns(baselines: Mapping[str, Baseline], columns: TableColumns) -> frozenset[str]:
    """The columns read as numbers from text: numeric features of any of the baselines, the
    confidence, a numeric prediction, the timestamp."""
    names = {"ts"}
    for b in baselines.values():
        names.update(n for n, p in b.features.items() if isinstance(p, NumericProfile))
        if columns.prediction_column is not None and isinstance(b.prediction, NumericProfile):
            names.add(columns.prediction_column)
    if columns.confidence_column is not None:
        names.add(columns.confidence_column)
    return frozenset(names)


def events_from_frame(frame: pd.DataFrame, baselines: Mapping[str, Baseline], columns: TableColumns,
                      text: bool = False) -> list[dict]:
    """The events of a table's rows (see the module docstring).

    Parameters
    ----------
    frame
        The rows.
    baselines
        The loaded baselines, by model: the default model, and (`text`) which columns hold numbers.
    columns
        The role columns.
    text
        The values are text (a CSV read as text): numbers are parsed where the baseline expects them.

    Returns
    -------
    list of dict
        One event per row, in order (usable or not: the caller checks them as any message).

    Examples
    --------
    >>> import pandas as pd
    >>> from baselines.profile import Baseline
    >>> b = Baseline("credit", "1", {}, n_rows=1000)
    >>> frame = pd.DataFrame({"age": [41.0, None], "country": ["US", "FR"], "p": [0.9, 0.7], "y": [1, 0]})
    >>> events_from_frame(frame, {"credit": b}, TableColumns(confidence_column="p", label_column="y"))
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'confidence': 0.9, 'model': 'credit', 'features': {'age': 41.0, 'country': 'US'}},
     {'confidence': 0.7, 'model': 'credit', 'features': {'age': None, 'country': 'FR'}}]
    """
    check_columns(list(frame.columns), columns)
    numbers = _number_columns(baselines, columns) if text else frozenset()
    roles = {col: role for col, role in ((columns.confidence_column, "confidence"),
                                         (columns.prediction_column, "prediction")) if col is not None}
    nested = "features" in frame.columns  # rows that are events already: every column is a field
    fields: dict[str, list] = {}
    features: dict[str, list] = {}
    for name in frame.columns:
        if name in columns.left_out:
            continue
        feature = not (name in roles or nested or name in EVENT_FIELDS)
        values = _values(frame[name], name in numbers, text, timestamps=name == "ts", booleans=feature)
        if name in roles:
            fields[roles[name]] = values
        elif nested or name in EVENT_FIELDS:
            fields[str(name)] = values
        else:
            features[str(name)] = values
    n = len(frame)
    if "model" not in fields:
        fields["model"] = [_default_model(baselines, columns)] * n
    names = list(fields)
    events = [dict(zip(names, values)) for values in zip(*fields.values())]
    if not nested:
        feature_names = list(features)
        for event, values in zip(events, zip(*features.values()) if features else ((),) * n):
            event["features"] = dict(zip(feature_names, values))
    return events


def _default_model(baselines: Mapping[str, Baseline], columns: TableColumns) -> str:
    if columns.model is not None:
        return columns.model
    if len(baselines) == 1:
        return next(iter(baselines))
    raise TableError(f"the table has no `model` column and {len(baselines)} baselines are loaded "
                     f"({', '.join(sorted(baselines)) or 'none'}): say which model its rows are for (--model)")


def _values(s: pd.Series, number: bool, text: bool, timestamps: bool, booleans: bool) -> list[Any]:
    """A column's values as an event holds them: plain Python values, None for a missing one (`booleans`:
    a text column's boolean spellings as booleans)."""
    import pandas as pd

    if timestamps:
        return _seconds(s)
    if text and number:
        parsed = pd.to_numeric(s, errors="coerce").tolist()
        # missing (NaN: a null spelling) -> None; a number -> it; anything else stays text (invalid)
        return [None if isinstance(v, float) else (x if x == x else v) for v, x in zip(s.tolist(), parsed)]
    if text:
        spelled = _BOOLEANS if booleans else {}
        return [None if isinstance(v, float) else spelled.get(v, v) for v in s.tolist()]
    return s.astype(object).where(s.notna(), None).tolist()


def _seconds(s: pd.Series) -> list[float | None]:
    """Timestamps as seconds since the epoch: numbers as they are, datetimes (or ISO text) converted."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(s):
        times = s
    else:
        numbers = pd.to_numeric(s, errors="coerce")
        if numbers.notna().sum() >= s.notna().sum():
            return numbers.astype(object).where(numbers.notna(), None).tolist()
        times = pd.to_datetime(s, errors="coerce", utc=True, format="ISO8601")
    if getattr(times.dt, "tz", None) is None:
        times = times.dt.tz_localize("UTC")
    seconds = (times - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return seconds.astype(object).where(seconds.notna(), None).tolist()
