"""Build a training baseline by streaming a CSV / JSONL / Parquet file, or from in-memory columns.

One pass, in chunks, in bounded memory: per column, exact moments and counts plus a bounded
uniform sample (bottom-k by random priority) for the quantile grid and the bins. A 5 GB file
is never held whole; memory is about ``reservoir_size * 16`` bytes per numeric column plus one
chunk.

Value conventions (training data):

* missing: absent, null, empty CSV field, NaN (the way pandas/numpy spell a missing float);
* invalid: present but unusable for the column's kind -- a string in a numeric column
  (JSON/Parquet/in-memory), an unparsable string (CSV), +-inf, a bool in a numeric column,
  a confidence outside [0, 1], a nested object in a categorical column.

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

import gzip
import io
import os
import sys
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from baselines.profile import (
    MAX_CATEGORIES,
    QUANTILE_PROBS,
    Baseline,
    CategoricalProfile,
    NumericProfile,
    category_key,
)

#: rows per chunk read from a file
CHUNK_ROWS = 100_000
#: at most this many rows per JSONL chunk: a row is a Python dict there, ~50x a CSV row's memory
JSONL_CHUNK_ROWS = 20_000
#: rows of a CSV read (as text) to decide each column's kind (a column still empty there is
#: decided later, from its first values)
INFER_ROWS = 20_000
#: values kept per numeric column for the quantiles (exact below this many values)
RESERVOIR_SIZE = 200_000
#: a numeric column with at most this many distinct values keeps its exact distribution
MAX_EXACT_DISCRETE = 256
#: categories stored per feature; the rest go to the "other" bucket
TOP_K_CATEGORIES = 1_000
#: distinct categories counted exactly before the counter is pruned
CATEGORY_COUNTER_CAP = 100_000
#: equal-frequency distance bins per numeric feature (fewer when values repeat)
N_BINS = 20
#: a column is numeric when at least this share of its non-missing values are numbers
NUMERIC_SHARE = 0.9
#: a numeric prediction with more distinct values than this (or non-integer) is a regression output
MAX_CLASSES = 50
#: CSV spellings of a missing value in numeric columns (categorical columns: only the empty field,
#: so that a category "NA" -- Namibia -- stays a category)
NULL_WORDS = ["", "null", "NULL", "None", "NA", "N/A", "n/a", "nan", "NaN", "-nan", "<NA>", "#N/A"]
#: CSV spellings of booleans, normalised to the keys JSON true/false get (category_key)
BOOL_WORDS = {"true": "true", "True": "true", "TRUE": "true", "false": "false", "False": "false", "FALSE": "false"}
SEED = 42

Progress = Callable[[int, "float | None"], None]


class BuildError(ValueError):
    """The training data cannot be profiled (unknown format, missing column, bad line...)."""


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
    chunk_rows: int = CHUNK_ROWS,
    reservoir_size: int = RESERVOIR_SIZE,
    top_k: int = TOP_K_CATEGORIES,
) -> Baseline:
    """Profile a CSV (.csv, .csv.gz, .tsv), JSONL (.jsonl, .ndjson, optionally .gz) or Parquet file.

    ``progress(rows_read, fraction_or_None)`` is called after each chunk; by default a status
    line is drawn on stderr when it is a terminal.
    """
    p = Path(path)
    if not p.is_file():
        raise BuildError(f"{p}: no such file")
    fmt = _format_of(p)
    roles = _Roles(confidence_column, prediction_column, label_column)
    profiler = _Profiler(roles, categorical=categorical, exclude=exclude, text=fmt == "csv",
                         reservoir_size=reservoir_size, top_k=top_k)
    report = progress if progress is not None else _terminal_progress(p.name)
    if fmt == "csv":
        frames = _csv_frames(p, profiler, chunk_rows)
    elif fmt == "jsonl":
        frames = _jsonl_frames(p, roles, min(chunk_rows, JSONL_CHUNK_ROWS))
    else:
        frames = _parquet_frames(p, chunk_rows)
    for i, (frame, fraction) in enumerate(frames):
        profiler.add(frame)
        if i == 0 and fmt == "parquet":
            profiler.check_columns()  # fail fast: every column is in the first batch
        report(profiler.rows, fraction)
    if progress is None:
        report.done()  # type: ignore[attr-defined]
    return profiler.finish(model=model, version=version, source=str(p))


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
) -> Baseline:
    """The same profiling from in-memory columns (arrays or lists of equal length).

    Values are typed as in events: None/NaN is missing, a string in a numeric column is invalid.
    """
    data = dict(columns)
    role_names = {}
    for role, values in (("confidence", confidence), ("prediction", prediction), ("label", labels)):
        if values is not None:
            name = "\x00" + role  # cannot collide with a feature name
            data[name] = values
            role_names[role] = name
    lengths = {k: len(v) for k, v in data.items()}
    if len(set(lengths.values())) > 1:
        raise BuildError(f"columns have different lengths: {lengths}")
    roles = _Roles(role_names.get("confidence"), role_names.get("prediction"), role_names.get("label"))
    profiler = _Profiler(roles, categorical=categorical, exclude=(), text=False,
                         reservoir_size=reservoir_size, top_k=top_k)
    frame = pd.DataFrame({k: pd.Series(_column(v)) for k, v in data.items()})
    for start in range(0, max(len(frame), 1), chunk_rows):
        profiler.add(frame.iloc[start:start + chunk_rows])
    profiler.check_columns()
    return profiler.finish(model=model, version=version, source="columns")


def _column(values: Any) -> Any:
    if isinstance(values, np.ndarray) or isinstance(values, pd.Series):
        return values
    return list(values)


# ---- value coercion (shared by every source) ----------------------------------------------
def _plain(s: pd.Series) -> pd.Series:
    # Parquet dictionary columns arrive as pandas Categorical: profile their values, not codes.
    return s.astype(object) if isinstance(s.dtype, pd.CategoricalDtype) else s


def _is_number_dtype(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)


def _typed_float(v: Any) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        return np.nan
    try:
        return float(v)
    except OverflowError:  # an int beyond float range
        return np.nan


def _as_floats(s: pd.Series, text: bool) -> tuple[np.ndarray, np.ndarray]:
    """Row-aligned float values (NaN where missing or invalid) and the missing mask.

    A value is valid where the result is finite; invalid where neither valid nor missing.
    """
    s = _plain(s)
    if _is_number_dtype(s):
        values = s.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)  # callers may edit it
        return values, np.isnan(values)
    missing = s.isna().to_numpy()
    if pd.api.types.is_bool_dtype(s.dtype):
        return np.full(len(s), np.nan), missing
    if text:
        values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        codes, uniques = _factorize(s)
        converted = np.array([_typed_float(u) for u in uniques] + [np.nan], dtype=np.float64)
        values = converted[codes]  # code -1 (missing) picks the trailing NaN
    return values, missing


def _category_codes(s: pd.Series, text: bool) -> tuple[np.ndarray, list[str | None]]:
    """Codes per row (-1 = missing) and the key of each code (None = invalid value)."""
    codes, uniques = _factorize(s)
    if text and isinstance(uniques.dtype, pd.StringDtype):  # the usual CSV case: vectorised
        keys = list(uniques)
        for i in np.flatnonzero(pd.Index(uniques).isin(list(BOOL_WORDS))):
            keys[i] = BOOL_WORDS[keys[i]]
    elif text:  # a column the parser read as numbers, or as mixed objects
        keys = [BOOL_WORDS.get(u, u) if isinstance(u, str) else category_key(_py(u)) for u in uniques]
    else:
        keys = [u.key if isinstance(u, _Marker) else category_key(_py(u)) for u in uniques]
    return codes, keys


class _Marker:
    """Stands for a value pandas would hash wrongly: True == 1 == 1.0 would merge a bool with a
    number, and dicts/lists (nested JSON) cannot be hashed at all."""

    def __init__(self, key: str | None):
        self.key = key  # its category key; None: invalid in any column


_TRUE, _FALSE, _NESTED = _Marker("true"), _Marker("false"), _Marker(None)


def _marked(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return _TRUE if v else _FALSE
    return _NESTED if isinstance(v, (dict, list)) else v


def _factorize(s: pd.Series) -> tuple[np.ndarray, Any]:
    s = _plain(s)
    if s.dtype == object:  # mixed Python values (JSON, lists): only here can bools and dicts hide
        s = s.map(_marked)
    return pd.factorize(s, use_na_sentinel=True)


def _py(v: Any) -> Any:
    # numpy scalars (int64, bool_) -> Python, so that category_key spells them like JSON values
    return v.item() if isinstance(v, np.generic) else v


def _infer_kind(s: pd.Series, text: bool) -> str | None:
    """'numeric' or 'categorical' from a sample of the column; None when it holds no value yet."""
    s = _plain(s)
    present = s.dropna()
    if len(present) == 0:
        return None
    if pd.api.types.is_bool_dtype(present.dtype):
        return "categorical"
    if _is_number_dtype(present):
        return "numeric"
    if text:
        if present.isin(list(BOOL_WORDS)).mean() >= NUMERIC_SHARE:
            return "categorical"
        numbers = pd.to_numeric(present, errors="coerce")
        share = float(np.isfinite(numbers.to_numpy(dtype=np.float64, na_value=np.nan)).mean())
    else:
        codes, uniques = _factorize(present)
        is_number = np.array([np.isfinite(_typed_float(u)) for u in uniques], dtype=bool)
        share = float(is_number[codes].mean())
    return "numeric" if share >= NUMERIC_SHARE else "categorical"


# ---- per-column accumulators -------------------------------------------------------------
class _NumericStats:
    """Exact count/missing/invalid/moments/min/max, a bounded uniform sample, exact few-value counts."""

    def __init__(self, name: str, reservoir_size: int, n_missing: int = 0):
        self._name = name
        self._k = reservoir_size
        self._n = 0
        self._mean = 0.0
        self._m2 = 0.0
        self._min = np.inf
        self._max = -np.inf
        self.n_missing = n_missing
        self.n_invalid = 0
        self._integer = True
        # Bottom-k sample: every value gets a random priority and the k smallest are kept,
        # a uniform sample without replacement whatever the chunking (the priority stream
        # depends only on the order of values).
        # Candidates are buffered and cut back to k only when they pass 1.5k values, so a chunk
        # costs O(chunk), not O(k); only values under the k-th smallest priority can enter.
        self._rng = np.random.default_rng([SEED, zlib.crc32(name.encode())])
        self._values: list[np.ndarray] = []
        self._priorities: list[np.ndarray] = []
        self._buffered = 0
        self._threshold = 1.0
        self._distinct: dict[float, int] | None = {}

    def add_missing(self, n: int) -> None:
        self.n_missing += n

    def add(self, values: np.ndarray, missing: np.ndarray) -> None:
        valid = np.isfinite(values)
        n_missing = int(missing.sum())
        self.n_missing += n_missing
        self.n_invalid += len(values) - n_missing - int(valid.sum())
        x = values[valid]
        if len(x):
            self._add_valid(x)

    def _add_valid(self, x: np.ndarray) -> None:
        # Chan et al.'s pairwise merge of (n, mean, M2): stable, unlike sum/sum-of-squares.
        n_b = len(x)
        mean_b = float(x.mean())
        m2_b = float(np.square(x - mean_b).sum())
        n = self._n + n_b
        delta = mean_b - self._mean
        self._mean += delta * n_b / n
        self._m2 += m2_b + delta * delta * self._n * n_b / n
        self._n = n
        self._min = min(self._min, float(x.min()))
        self._max = max(self._max, float(x.max()))
        if self._integer:
            self._integer = bool(np.all(x == np.floor(x)))
        if self._distinct is not None:
            uniques, counts = np.unique(x, return_counts=True)
            if len(uniques) <= MAX_EXACT_DISCRETE:
                for u, c in zip(uniques.tolist(), counts.tolist()):
                    self._distinct[u] = self._distinct.get(u, 0) + c
            if len(uniques) > MAX_EXACT_DISCRETE or len(self._distinct) > MAX_EXACT_DISCRETE:
                self._distinct = None  # a continuous column: the sample takes over
        self._sample_values(x)

    def _sample_values(self, x: np.ndarray) -> None:
        priority = self._rng.random(len(x))
        if self._threshold < 1.0:
            keep = priority < self._threshold
            x, priority = x[keep], priority[keep]
        self._values.append(x)
        self._priorities.append(priority)
        self._buffered += len(x)
        if self._buffered > self._k + self._k // 2:
            self._sample()

    def _sample(self) -> np.ndarray:
        """The bottom-k sample (cuts the buffer back to it)."""
        values, priority = np.concatenate(self._values or [np.empty(0)]), np.concatenate(self._priorities or [np.empty(0)])
        if len(values) > self._k:
            smallest = np.argpartition(priority, self._k - 1)[: self._k]
            values, priority = values[smallest], priority[smallest]
            self._threshold = float(priority.max())
        self._values, self._priorities, self._buffered = [values], [priority], len(values)
        return values

    def finish(self) -> NumericProfile:
        if self._n == 0:
            return NumericProfile(
                name=self._name, count=0, n_missing=self.n_missing, n_invalid=self.n_invalid,
                mean=0.0, std=0.0, min=0.0, max=0.0, quantiles=np.zeros(len(QUANTILE_PROBS)),
                bin_edges=np.empty(0), bin_freqs=np.ones(1))
        lo, hi = self._min, self._max
        sample = self._sample()
        if self._distinct is not None:
            values = np.array(sorted(self._distinct), dtype=np.float64)
            counts = np.array([self._distinct[v] for v in values.tolist()], dtype=np.float64)
        else:
            values, counts = np.sort(sample), np.ones(len(sample))
        quantiles = _quantiles_of_counts(values, counts)
        quantiles[0], quantiles[-1] = lo, hi  # the sample may miss the extremes
        quantiles = np.clip(np.maximum.accumulate(quantiles), lo, hi)
        step = (len(QUANTILE_PROBS) - 1) // N_BINS
        edges = np.unique(quantiles[step:-1:step])
        edges = edges[edges < hi]  # a bin above the maximum would always be empty
        # Shares are exact for few-valued columns and columns that fit the sample; otherwise they
        # are estimated from the uniform sample (standard error <= 0.5 / sqrt(reservoir_size)).
        bin_freqs = np.bincount(np.searchsorted(edges, values, side="left"), weights=counts,
                                minlength=len(edges) + 1) / counts.sum()
        discrete_values = discrete_freqs = None
        if self._distinct is not None:
            discrete_values, discrete_freqs = values, counts / counts.sum()
            top_values, top_counts, total = values, counts, counts.sum()
        else:
            top_values, top_counts = np.unique(sample, return_counts=True)
            repeated = top_counts >= 2  # a value seen once in the sample says nothing about fills
            top_values, top_counts, total = top_values[repeated], top_counts[repeated], len(sample)
        order = np.lexsort((top_values, -top_counts))[:10]
        return NumericProfile(
            name=self._name,
            count=self._n,
            n_missing=self.n_missing,
            n_invalid=self.n_invalid,
            mean=self._mean,
            std=float(np.sqrt(self._m2 / self._n)),  # population std (numpy's ddof=0)
            min=lo,
            max=hi,
            quantiles=quantiles,
            bin_edges=edges,
            bin_freqs=bin_freqs,
            discrete_values=discrete_values,
            discrete_freqs=discrete_freqs,
            integer_valued=self._integer,
            top_values=tuple((float(top_values[i]), float(top_counts[i] / total)) for i in order),
        )


def _quantiles_of_counts(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """np.quantile (linear) of the sorted column the value counts describe, without expanding it."""
    n = counts.sum()
    rank = QUANTILE_PROBS * (n - 1)
    below = np.floor(rank)
    cumulative = np.cumsum(counts)
    lower = values[np.searchsorted(cumulative, below, side="right")]
    upper = values[np.searchsorted(cumulative, np.minimum(below + 1, n - 1), side="right")]
    return lower + (rank - below) * (upper - lower)


class _CategoricalStats:
    def __init__(self, name: str, top_k: int, n_missing: int = 0):
        self._name = name
        self._top_k = min(top_k, MAX_CATEGORIES)  # a loader refuses more
        self._counts: Counter[str] = Counter()
        self._n = 0
        self.n_missing = n_missing
        self.n_invalid = 0
        self._pruned_distinct = 0

    def add_missing(self, n: int) -> None:
        self.n_missing += n

    def add(self, codes: np.ndarray, keys: list[str | None]) -> None:
        present = codes[codes >= 0]
        self.n_missing += len(codes) - len(present)
        for key, c in zip(keys, np.bincount(present, minlength=len(keys)).tolist()):
            if key is None:
                self.n_invalid += c
            else:
                self._counts[key] += c
                self._n += c
        if len(self._counts) > CATEGORY_COUNTER_CAP:
            # Keep the heaviest half: frequent categories survive, and the pruned mass is still
            # counted in the total (it ends in the "other" bucket). From here on n_distinct is a
            # lower bound, and a pruned category that reappears is under-counted.
            self._pruned_distinct = max(self._pruned_distinct, len(self._counts))
            self._counts = Counter(dict(self._counts.most_common(CATEGORY_COUNTER_CAP // 2)))

    def finish(self) -> CategoricalProfile:
        top = sorted(self._counts.items(), key=lambda kc: (-kc[1], kc[0]))[: self._top_k]
        kept = sum(c for _, c in top)
        return CategoricalProfile(
            name=self._name,
            count=self._n,
            n_missing=self.n_missing,
            n_invalid=self.n_invalid,
            categories={k: c / self._n for k, c in top},
            other_freq=(self._n - kept) / self._n if self._n else 0.0,
            n_distinct=max(self._pruned_distinct, len(self._counts)),
        )


class _Undecided:
    """A column with no value seen yet (only missing): its kind is decided by its first values."""

    def __init__(self, n_missing: int = 0):
        self.n_missing = n_missing

    def add_missing(self, n: int) -> None:
        self.n_missing += n


# ---- the profiler: chunks in, Baseline out --------------------------------------------------
class _Roles:
    def __init__(self, confidence: str | None, prediction: str | None, label: str | None):
        if label is not None and prediction is None:
            raise BuildError("a label column needs a prediction column (the metric compares them)")
        self.confidence, self.prediction, self.label = confidence, prediction, label

    @property
    def columns(self) -> dict[str, str]:
        named = {"confidence": self.confidence, "prediction": self.prediction, "label": self.label}
        return {col: role for role, col in named.items() if col is not None}


class _Profiler:
    def __init__(self, roles: _Roles, *, categorical: Sequence[str], exclude: Sequence[str], text: bool,
                 reservoir_size: int, top_k: int):
        self._roles = roles
        self._categorical = set(categorical)
        self._exclude = set(exclude)
        self._text = text
        self._reservoir_size = reservoir_size
        self._top_k = top_k
        self._features: dict[str, _NumericStats | _CategoricalStats | _Undecided] = {}
        self._seen: set[str] = set()
        self.rows = 0
        self._confidence = _NumericStats("confidence", reservoir_size)
        self._prediction: _NumericStats | _CategoricalStats | _Undecided = _Undecided()
        self._metric_n = 0
        self._metric_sum = 0.0  # correct predictions (accuracy) or absolute errors (mae)

    def decide(self, head: pd.DataFrame) -> None:
        """Kinds decided from the first rows read as text (CSV), before the main read."""
        self._seen.update(head.columns)
        self.check_columns()  # fail before reading a large file
        for name in head.columns:
            if name in self._exclude or name in self._roles.columns:
                continue
            self._features[name] = self._stats_for(name, self._kind(name, head[name]), 0)

    def excludes(self, name: str) -> bool:
        return name in self._exclude

    def reads_as_text(self, name: str) -> bool:
        """Whether a CSV column is read as strings (categorical features, prediction, label)."""
        role = self._roles.columns.get(name)
        return isinstance(self._features.get(name), _CategoricalStats) or role in ("prediction", "label")

    def _kind(self, name: str, s: pd.Series) -> str | None:
        if name in self._categorical:
            return "categorical"
        return _infer_kind(s, self._text)

    def _stats_for(self, name: str, kind: str | None, n_missing: int):
        if kind == "numeric":
            return _NumericStats(name, self._reservoir_size, n_missing)
        if kind == "categorical":
            return _CategoricalStats(name, self._top_k, n_missing)
        return _Undecided(n_missing)

    def add(self, frame: pd.DataFrame) -> None:
        n = len(frame)
        self._seen.update(frame.columns)
        for name in frame.columns:
            if name in self._exclude:
                continue
            role = self._roles.columns.get(name)
            if role == "confidence":
                values, missing = _as_floats(frame[name], self._text)
                values[(values < 0) | (values > 1)] = np.nan  # outside [0, 1]: invalid
                self._confidence.add(values, missing)
            elif role == "prediction":
                self._prediction = self._add_to(self._prediction, name, frame[name], prediction=True)
                if self._roles.label is not None and self._roles.label in frame.columns:
                    self._add_metric(frame[name], frame[self._roles.label])
            elif role is None:
                self._features[name] = self._add_to(self._features.get(name, _Undecided(self.rows)), name, frame[name])
        for name, stats in self._features.items():
            if name not in frame.columns:
                stats.add_missing(n)
        if self._roles.prediction is not None and self._roles.prediction not in frame.columns:
            self._prediction.add_missing(n)
        if self._roles.confidence is not None and self._roles.confidence not in frame.columns:
            self._confidence.add_missing(n)
        self.rows += n

    def _add_to(self, stats, name: str, s: pd.Series, prediction: bool = False):
        if isinstance(stats, _Undecided):
            kind = _prediction_kind(s, self._text) if prediction else self._kind(name, s)
            if kind is None:
                stats.add_missing(len(s))
                return stats
            stats = self._stats_for(name, kind, stats.n_missing)
        if isinstance(stats, _NumericStats):
            stats.add(*_as_floats(s, self._text))
        else:
            stats.add(*_category_codes(s, self._text))
        return stats

    def _add_metric(self, prediction: pd.Series, label: pd.Series) -> None:
        p_num, _ = _as_floats(prediction, self._text)
        l_num, _ = _as_floats(label, self._text)
        if isinstance(self._prediction, _NumericStats):
            both = np.isfinite(p_num) & np.isfinite(l_num)
            self._metric_n += int(both.sum())
            self._metric_sum += float(np.abs(p_num[both] - l_num[both]).sum())
            return
        p_codes, p_keys = _category_codes(prediction, self._text)
        l_codes, l_keys = _category_codes(label, self._text)
        p_key = np.array(p_keys + [None], dtype=object)[p_codes]
        l_key = np.array(l_keys + [None], dtype=object)[l_codes]
        both = np.not_equal(p_key, None) & np.not_equal(l_key, None)
        # "1" and "1.0" (CSV) or 1 and 1.0 name the same class
        correct = both & ((p_key == l_key) | (np.isfinite(p_num) & (p_num == l_num)))
        self._metric_n += int(both.sum())
        self._metric_sum += int(correct.sum())

    def check_columns(self) -> None:
        """Every column the caller named must exist (checked once the schema is known)."""
        named = [("--categorical", c) for c in sorted(self._categorical)]
        named += [("--exclude", c) for c in sorted(self._exclude)]
        named += [(f"--{role}-column", c) for c, role in self._roles.columns.items()]
        for flag, column in named:
            if column not in self._seen:
                known = ", ".join(sorted(str(c) for c in self._seen)[:20])
                raise BuildError(f"{flag} column {column!r} is not in the data (columns: {known})")

    def finish(self, *, model: str, version: str | None, source: str) -> Baseline:
        self.check_columns()
        features = {
            name: (CategoricalProfile(name=name, count=0, n_missing=stats.n_missing, n_invalid=0,
                                      categories={}, other_freq=0.0, n_distinct=0)
                   if isinstance(stats, _Undecided) else stats.finish())
            for name, stats in self._features.items()
        }
        metric = None
        if self._roles.label is not None and self._metric_n:
            name = "mae" if isinstance(self._prediction, _NumericStats) else "accuracy"
            metric = {"name": name, "value": self._metric_sum / self._metric_n, "n": self._metric_n}
        prediction = None
        if self._roles.prediction is not None and not isinstance(self._prediction, _Undecided):
            prediction = dataclasses.replace(self._prediction.finish(), name="prediction")
        confidence = None
        if self._roles.confidence is not None:
            confidence = dataclasses.replace(self._confidence.finish(), name="confidence")
        return Baseline(
            model=model,
            version=version,
            features=features,
            n_rows=self.rows,
            source=source,
            confidence=confidence,
            prediction=prediction,
            metric=metric,
        )


def _prediction_kind(s: pd.Series, text: bool) -> str | None:
    """Class labels -> categorical; a regression output (many or fractional values) -> numeric."""
    kind = _infer_kind(s, text)
    if kind != "numeric":
        return kind
    values, _ = _as_floats(s, text)
    values = values[np.isfinite(values)]
    few = len(np.unique(values)) <= MAX_CLASSES and bool(np.all(values == np.floor(values)))
    return "categorical" if few else "numeric"


# ---- sources: each yields (frame, fraction of the file read or None) ------------------------
def _format_of(p: Path) -> str:
    name = p.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith((".parquet", ".pq")) and not p.name.lower().endswith(".gz"):
        return "parquet"
    raise BuildError(f"{p}: unknown training data format (expected .csv, .csv.gz, .tsv, .jsonl, .ndjson or .parquet)")


class _Opened:
    """A binary file (transparently gunzipped) that knows how far through the raw file it is."""

    def __init__(self, p: Path):
        self._raw = open(p, "rb")
        self._size = os.fstat(self._raw.fileno()).st_size
        self.stream: io.BufferedIOBase = gzip.GzipFile(fileobj=self._raw) if p.name.lower().endswith(".gz") else self._raw

    @property
    def fraction(self) -> float | None:
        return self._raw.tell() / self._size if self._size else None

    def __enter__(self) -> "_Opened":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stream.close()
        self._raw.close()


def _csv_frames(p: Path, profiler: _Profiler, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, float | None]]:
    sep = "\t" if p.name.lower().removesuffix(".gz").endswith(".tsv") else ","
    try:
        with _Opened(p) as f:
            # Decide kinds from text, so that the parser's own guess (e.g. "007" -> 7) does not.
            head = pd.read_csv(f.stream, sep=sep, nrows=INFER_ROWS, dtype=str, keep_default_na=False,
                               na_values=NULL_WORDS)
        profiler.decide(head)
        text_columns = [c for c in head.columns if profiler.reads_as_text(c)]
        usecols = [c for c in head.columns if not profiler.excludes(c)]
        na_values = {c: ([""] if c in text_columns else NULL_WORDS) for c in usecols}
        with _Opened(p) as f:
            reader = pd.read_csv(f.stream, sep=sep, chunksize=chunk_rows, usecols=usecols,
                                 dtype={c: str for c in text_columns}, keep_default_na=False, na_values=na_values)
            with reader:
                for frame in reader:
                    yield frame, f.fraction
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise BuildError(f"{p}: cannot parse as CSV: {str(e).strip().splitlines()[0]}") from None
    except pd.errors.EmptyDataError:
        raise BuildError(f"{p}: empty file (no header)") from None


def _jsonl_frames(p: Path, roles: _Roles, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, float | None]]:
    import orjson

    role_columns = list(roles.columns)
    rows: list[dict] = []
    with _Opened(p) as f:
        try:
            for lineno, line in enumerate(f.stream, 1):
                if not line.strip():
                    continue
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    raise BuildError(f"{p}:{lineno}: invalid JSON ({e})") from None
                if not isinstance(obj, dict):
                    raise BuildError(f"{p}:{lineno}: not a JSON object")
                features = obj.get("features")
                if isinstance(features, dict):
                    # the event format: features are the `features` object; the top level holds
                    # only metadata, of which the role columns (confidence, prediction, label) count
                    for c in role_columns:
                        if c in obj:
                            features[c] = obj[c]
                    obj = features
                rows.append(obj)
                if len(rows) >= chunk_rows:
                    yield pd.DataFrame.from_records(rows), f.fraction
                    rows = []
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise BuildError(f"{p}: cannot decompress: {e}") from None
        if rows:
            yield pd.DataFrame.from_records(rows), f.fraction


def _parquet_frames(p: Path, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, float | None]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise BuildError("reading Parquet needs pyarrow: pip install 'skewwatch[parquet]'") from None
    try:
        parquet = pq.ParquetFile(p)
    except (pa.ArrowException, OSError) as e:
        raise BuildError(f"{p}: not a readable Parquet file: {e}") from None
    total = parquet.metadata.num_rows
    done = 0
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        table = pa.Table.from_batches([batch])
        while any(pa.types.is_struct(field.type) for field in table.schema):
            table = table.flatten()  # an event-shaped file: features.amount -> amount
        frame = table.to_pandas()
        frame.columns = [c.removeprefix("features.") for c in frame.columns]
        done += len(frame)
        yield frame, done / total if total else None


# ---- progress --------------------------------------------------------------------------------
class _TerminalProgress:
    """One status line on stderr, redrawn in place at most five times a second."""

    def __init__(self, label: str):
        self._label = label
        self._start = time.monotonic()
        self._last_drawn = 0.0
        self._state: tuple[int, float | None] | None = None

    def __call__(self, rows: int, fraction: float | None) -> None:
        self._state = (rows, fraction)
        if time.monotonic() - self._last_drawn >= 0.2:
            self._draw()

    def _draw(self) -> None:
        rows, fraction = self._state
        now = self._last_drawn = time.monotonic()
        rate = rows / max(now - self._start, 1e-9)
        share = f" ({100 * fraction:.0f}%)" if fraction is not None else ""
        sys.stderr.write(f"\r{self._label}: {rows:,} rows{share}, {rate:,.0f} rows/s ")
        sys.stderr.flush()

    def done(self) -> None:
        if self._state is not None:
            self._draw()  # the final count, even if the last chunk came too soon to be drawn
            sys.stderr.write("\n")
            sys.stderr.flush()


class _Silent:
    def __call__(self, rows: int, fraction: float | None) -> None:
        pass

    def done(self) -> None:
        pass


def _terminal_progress(label: str) -> _TerminalProgress | _Silent:
    return _TerminalProgress(label) if sys.stderr.isatty() else _Silent()
