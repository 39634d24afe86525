"""Event dicts -> per-feature columns, classifying every value as valid, missing or invalid.

This is where most of a batch's time goes, so the common case runs at C level: one
`itemgetter` per event for the known features, and one `struct.pack` per event that turns the
numeric values into float64 and, in the same pass, rejects anything that is not a number (None, a
string — which numpy would silently parse —, a list). Only the events it rejects, and the values
equal to 0 or 1 (a bool packs as 0.0 / 1.0), are looked at one value at a time.
Numeric: valid = int or float, finite (bool is not a number). Missing = None or key absent.
Invalid = anything else (a string, NaN, +-inf, a list...).
Categorical: `baselines.profile.category_key`; None / absent = missing, dict / list = invalid.
"""
from __future__ import annotations

import math
import struct
from itertools import repeat, starmap
from operator import getitem, itemgetter
from typing import Any, NamedTuple, Sequence

import numpy as np

from baselines.profile import category_key
from detectors.sketches import MAX_LABEL


class _Absent:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<absent>"


#: stands for a feature key missing from an event (counts as missing *and* as absent)
ABSENT = _Absent()


def row_getter(names: Sequence[str]):
    """One event's values in `names` order (a tuple; the bare value for one name, which
    `value_rows` wraps); KeyError if any key is absent."""
    return itemgetter(*names)


def value_rows(features: list[dict], names: Sequence[str], getter) -> list[tuple]:
    """Each event's values in `names` order, ABSENT where a key is missing."""
    try:
        if len(names) == 1:
            return list(zip(map(getter, features)))  # 1-tuples, made at C level
        return list(map(getter, features))
    except KeyError:
        return [tuple(map(f.get, names, repeat(ABSENT))) for f in features]
    except TypeError:  # not a dict (the decoder guarantees one; be safe anyway)
        return [tuple(map(f.get, names, repeat(ABSENT))) if isinstance(f, dict) else (ABSENT,) * len(names)
                for f in features]


def example(value: Any) -> str:
    """How an invalid value is quoted in a diagnosis: a string as itself, anything else as its repr."""
    return (value if isinstance(value, str) else repr(value))[:MAX_LABEL]


class NumericValues(NamedTuple):
    """Numeric features of a batch, each array (n_features, n_events); x is NaN unless valid."""

    x: np.ndarray
    missing: np.ndarray
    invalid: np.ndarray
    absent: np.ndarray
    #: the raw values, rows[event][feature] (what `invalid_examples` quotes)
    rows: Sequence[tuple]

    def invalid_examples(self, j: int, until: int, n: int) -> list[str]:
        """The last n invalid raw values of feature j among events 0..until of the batch, oldest first."""
        at = np.flatnonzero(self.invalid[j, : until + 1])[-n:] if n > 0 else []
        return [example(self.rows[i][j]) for i in at.tolist()] if len(at) else []


VALID, MISSING, ABSENT_KEY, INVALID = range(4)


def _classify(value: Any) -> tuple[float, int]:
    """(float value, VALID / MISSING / ABSENT_KEY / INVALID) of one raw value."""
    t = type(value)
    if t is float or t is int or (isinstance(value, (int, float)) and t is not bool):
        try:
            v = float(value)
        except OverflowError:
            return math.nan, INVALID
        return (v, VALID) if math.isfinite(v) else (math.nan, INVALID)
    if value is None:
        return math.nan, MISSING
    if value is ABSENT:
        return math.nan, ABSENT_KEY
    return math.nan, INVALID


def classify_numbers(column: Sequence[Any]) -> NumericValues:
    """One column of raw values (the confidence), as a (1, n) NumericValues.

    >>> v = classify_numbers([1, 2.5, None, "3", True, float("nan"), ABSENT])
    >>> v.x[0, :2].tolist(), v.missing[0].tolist(), v.invalid[0].tolist(), v.absent[0].tolist()[-1]
    ([1.0, 2.5], [False, False, True, False, False, False, True], [False, False, False, True, True, True, False], True)
    >>> v.invalid_examples(0, until=6, n=4)
    ['3', 'True', 'nan']
    """
    return NumericColumns(["value"]).from_rows([(v,) for v in column])


class NumericColumns:
    """Numeric features as a (n_features, n_events) matrix plus masks, from per-event rows."""

    def __init__(self, names: Sequence[str]):
        self._names = list(names)
        self._pack = struct.Struct(f"={len(self._names)}d").pack
        self._nan_row = self._pack(*[math.nan] * len(self._names))

    def from_rows(self, rows: list[tuple]) -> NumericValues:
        m, n = len(self._names), len(rows)
        packed: list[bytes] = []
        rejected: list[int] = []
        events = starmap(self._pack, rows)
        while True:  # the iterator carries on after a row it rejects
            try:
                packed.extend(events)
                break
            except (struct.error, TypeError, OverflowError):
                rejected.append(len(packed))
                packed.append(self._nan_row)
        with_none, odd = [], []
        for i in rejected:  # mostly rows with a null: pack them again with NaN for None
            try:
                packed[i] = self._pack(*[math.nan if v is None else v for v in rows[i]])
                with_none.append(i)
            except (struct.error, TypeError, OverflowError):
                odd.append(i)
        x = np.frombuffer(b"".join(packed), dtype=np.float64).reshape(n, m).T.copy()
        missing = np.zeros((m, n), dtype=bool)
        absent = np.zeros((m, n), dtype=bool)
        invalid = ~np.isfinite(x)
        bools = (x == 0.0) | (x == 1.0)
        if with_none:
            # NaN there is a None (missing) or a NaN that was sent (invalid)
            jj, ii = np.nonzero(invalid[:, with_none])
            rows_at = [with_none[k] for k in ii.tolist()]
            for j, i in zip(jj.tolist(), rows_at):
                if rows[i][j] is None:
                    missing[j, i], invalid[j, i] = True, False
        for i in odd:
            bools[:, i] = False
            for j, value in enumerate(rows[i]):
                v, what = _classify(value)
                x[j, i] = v
                missing[j, i] = what == MISSING or what == ABSENT_KEY
                absent[j, i] = what == ABSENT_KEY
                invalid[j, i] = what == INVALID
        if bools.any():
            # numbers equal to 0 or 1: a bool among them packed as one
            jj, ii = np.nonzero(bools)
            objects = list(map(getitem, map(rows.__getitem__, ii.tolist()), jj.tolist()))
            if list(map(type, objects)).count(bool):
                for j, i, v in zip(jj.tolist(), ii.tolist(), objects):
                    if type(v) is bool:
                        invalid[j, i] = True
        x[invalid] = math.nan
        return NumericValues(x, missing, invalid, absent, rows)

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
        # a boolean feature's values are True/False, not their labels: coded in one pass when the
        # whole column is bool and both are training categories (True == 1 as a dict key, so the
        # label table itself cannot hold them)
        self._bool_codes = [{b: table[category_key(b)] for b in (False, True)}
                            if category_key(False) in table and category_key(True) in table else None
                            for table in self._codes]

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
            bools = self._bool_codes[j]
            if bools is not None and n and type(column[0]) is bool and set(map(type, column)) == {bool}:
                codes[j] = np.fromiter(map(bools.__getitem__, column), dtype=np.int64, count=n)
                continue
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
        self._numeric_names = list(numeric)
        self._categorical_names = list(categorical)
        self._numeric_getter = row_getter(self._numeric_names) if self._numeric_names else None
        self._categorical_getter = row_getter(self._categorical_names) if self._categorical_names else None
        self.numeric = NumericColumns(numeric)
        self.categorical = CategoricalColumns(categorical, categories)

    def extract(self, features: list[dict]):
        """(NumericValues, (codes, absent, others) categorical)."""
        n = len(features)
        if self._numeric_getter is not None:
            numeric = self.numeric.from_rows(value_rows(features, self._numeric_names, self._numeric_getter))
        else:
            z = np.zeros((0, n), dtype=bool)
            numeric = NumericValues(np.zeros((0, n)), z, z, z, [()] * n)
        if self._categorical_getter is not None and n:
            columns = list(zip(*value_rows(features, self._categorical_names, self._categorical_getter)))
        else:
            columns = [()] * len(self._categorical_names)
        return numeric, self.categorical.from_columns(columns, n)
