"""Event dicts -> per-feature columns, classifying every value as valid, missing or invalid.

This is where most of a batch's time goes, so the clean case (every numeric feature present and a
plain number) is one C-level pass; dirty columns fall back to per-value classification.
Numeric: valid = int or float, finite (bool is not a number). Missing = None or key absent.
Invalid = anything else (a string, NaN, +-inf, a list...).
Categorical: `baselines.profile.category_key`; None / absent = missing, dict / list = invalid.
"""
from __future__ import annotations

import math
from itertools import repeat
from operator import itemgetter
from typing import Any, Sequence

import numpy as np

from baselines.profile import category_key


class _Absent:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<absent>"


#: stands for a feature key missing from an event (counts as missing *and* as absent)
ABSENT = _Absent()


def _row_getter(names: Sequence[str]):
    """One event's values as a tuple, in `names` order; KeyError if any key is absent."""
    if len(names) == 1:
        only = names[0]
        return lambda features: (features[only],)
    return itemgetter(*names)


def _rows(features: list[dict], names: Sequence[str], getter) -> tuple[list[tuple], bool]:
    """(rows, some key was absent)."""
    try:
        return list(map(getter, features)), False
    except KeyError:
        return [tuple(map(f.get, names, repeat(ABSENT))) for f in features], True
    except TypeError:  # not a dict (the decoder guarantees one; be safe anyway)
        return [tuple(map(f.get, names, repeat(ABSENT))) if isinstance(f, dict) else (ABSENT,) * len(names)
                for f in features], True


def classify_numbers(column: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(values with NaN where not valid, missing, invalid, absent) for one column of raw values.

    >>> x, missing, invalid, absent = classify_numbers([1, 2.5, None, "3", True, float("nan"), ABSENT])
    >>> x[:2].tolist(), missing.tolist(), invalid.tolist(), absent.tolist()[-1]
    ([1.0, 2.5], [False, False, True, False, False, False, True], [False, False, False, True, True, True, False], True)
    """
    n = len(column)
    values = [math.nan] * n
    missing = np.zeros(n, dtype=bool)
    invalid = np.zeros(n, dtype=bool)
    absent = np.zeros(n, dtype=bool)
    for i, v in enumerate(column):
        t = type(v)
        if t is float or t is int:
            try:
                values[i] = float(v)
            except OverflowError:
                invalid[i] = True
        elif v is None:
            missing[i] = True
        elif v is ABSENT:
            missing[i] = absent[i] = True
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            values[i] = float(v)
        else:
            invalid[i] = True
    x = np.array(values, dtype=np.float64)
    nonfinite = ~np.isfinite(x) & ~missing & ~invalid
    invalid |= nonfinite
    x[nonfinite] = math.nan
    return x, missing, invalid, absent


def _numeric_fast(column: Sequence[Any]) -> np.ndarray | None:
    """The column as float64 when every value is a plain number (bools excepted below), else None."""
    try:
        arr = np.array(column)
    except (ValueError, TypeError):
        return None
    if arr.ndim != 1 or arr.dtype.kind not in "fiu":
        return None
    return arr.astype(np.float64, copy=False)


class NumericColumns:
    """Numeric features as a (n_features, n_events) matrix plus masks, from per-feature columns."""

    def __init__(self, names: Sequence[str]):
        self._names = list(names)

    def from_columns(self, columns: Sequence[Sequence[Any]], n: int, some_absent: bool
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(x, missing, invalid, absent), each (n_features, n_events); x is NaN unless valid."""
        m = len(self._names)
        if m == 0:
            z = np.zeros((0, n), dtype=bool)
            return np.zeros((0, n)), z, z, z
        if not some_absent:
            try:
                whole = np.array(columns)
            except (ValueError, TypeError):
                whole = None
            if whole is not None and whole.ndim == 2 and whole.dtype.kind in "fiu":
                x = whole.astype(np.float64, copy=False)
                missing = np.zeros((m, n), dtype=bool)
                invalid = ~np.isfinite(x)
                # numpy turns True/False into 1.0/0.0: look at the objects behind those values only
                for j, i in np.argwhere((x == 0.0) | (x == 1.0)):
                    if type(columns[j][i]) is bool:
                        invalid[j, i] = True
                x[invalid] = math.nan
                return x, missing, invalid, missing
        x = np.empty((m, n))
        missing = np.zeros((m, n), dtype=bool)
        invalid = np.zeros((m, n), dtype=bool)
        absent = np.zeros((m, n), dtype=bool)
        for j, column in enumerate(columns):
            fast = None if some_absent and ABSENT in column else _numeric_fast(column)
            if fast is not None:
                x[j] = fast
                invalid[j] = ~np.isfinite(fast)
                for i in np.flatnonzero((fast == 0.0) | (fast == 1.0)):
                    if type(column[i]) is bool:
                        invalid[j, i] = True
                x[j, invalid[j]] = math.nan
            else:
                x[j], missing[j], invalid[j], absent[j] = classify_numbers(column)
        return x, missing, invalid, absent


#: category codes below the known ones
MISSING_CODE = -1
INVALID_CODE = -2
_UNRESOLVED = -3


class CategoricalColumns:
    """Extracts categorical features as (n_features, n_events) integer codes.

    Code c in [0, K) is the c-th training category of the feature, K stands for any other value
    (unseen, or in training's "other" bucket), -1 missing, -2 invalid.
    """

    def __init__(self, names: Sequence[str], categories: Sequence[Sequence[str]]):
        self._names = list(names)
        self._codes = [{c: i for i, c in enumerate(cats)} for cats in categories]

    def from_columns(self, columns: Sequence[Sequence[Any]], n: int
                     ) -> tuple[np.ndarray, np.ndarray, list[list[tuple[int, str]]]]:
        """(codes, absent, per feature the (event offset, label) of every value coded K)."""
        m = len(self._names)
        codes = np.empty((m, n), dtype=np.int64)
        absent = np.zeros((m, n), dtype=bool)
        others: list[list[tuple[int, str]]] = [[] for _ in range(m)]
        for j, column in enumerate(columns):
            table = self._codes[j]
            other = len(table)
            try:
                col = np.fromiter(map(table.get, column, repeat(_UNRESOLVED)), dtype=np.int64, count=n)
            except TypeError:  # an unhashable value (list, dict): resolve every value
                col = np.full(n, _UNRESOLVED, dtype=np.int64)
            for i in np.flatnonzero(col == _UNRESOLVED):
                v = column[i]
                if v is None:
                    col[i] = MISSING_CODE
                elif v is ABSENT:
                    col[i] = MISSING_CODE
                    absent[j, i] = True
                elif isinstance(v, (dict, list, tuple)):
                    col[i] = INVALID_CODE
                else:
                    key = category_key(v)
                    code = table.get(key, other)
                    col[i] = code
                    if code == other:
                        others[j].append((int(i), key))
            codes[j] = col
        return codes, absent, others


class FeatureColumns:
    """One pass over the events' feature maps for every known feature, numeric and categorical."""

    def __init__(self, numeric: Sequence[str], categorical: Sequence[str], categories: Sequence[Sequence[str]]):
        self._names = list(numeric) + list(categorical)
        self._n_numeric = len(numeric)
        self._getter = _row_getter(self._names) if self._names else None
        self.numeric = NumericColumns(numeric)
        self.categorical = CategoricalColumns(categorical, categories)

    def extract(self, features: list[dict]):
        """((x, missing, invalid, absent) numeric, (codes, absent, others) categorical)."""
        n = len(features)
        if self._names and n:
            rows, some_absent = _rows(features, self._names, self._getter)
            columns = list(zip(*rows))
        else:
            some_absent, columns = False, [()] * len(self._names)
        k = self._n_numeric
        return self.numeric.from_columns(columns[:k], n, some_absent), self.categorical.from_columns(columns[k:], n)
