"""Event dicts -> per-feature columns, classifying every value as valid, missing or invalid.

This is where a batch meets Python objects, so it runs compiled (`detectors._kernels.read_columns`):
one pass over each event's items (keys recognised by identity and position), no intermediate
tuples. Only categorical values the kernel cannot code by its label table (an unseen label, a
number) come back here. JSON messages can skip the dicts: `FeatureColumns.extract_scanned` reads the
documents `detectors._decode` parsed, with the same rules (docs/architecture.md, "Decoding").
Numeric: valid = int or float, finite (bool is not a number). Missing = None or key absent.
Invalid = anything else (a string, NaN, +-inf, a list...).
Categorical: `baselines.profile.category_key`, except that a boolean takes the baseline's spelling of it
(`BOOL_SPELLINGS`) and a key that is no training category but writes a number takes the training
category that writes the same number (`baselines.profile.number_spelling`: a CSV's `2.0` is the
events' `2`); None / absent = missing, dict / list = invalid.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from baselines.profile import category_key, number_spelling
from detectors import _kernels
from detectors.fmt import quote_value
from detectors.sketches import MAX_LABEL

__all__ = ["ABSENT", "ABSENT_KEY", "BOOL_SPELLINGS", "INVALID", "INVALID_CODE", "MISSING", "MISSING_CODE", "VALID",
           "FeatureColumns", "NumericValues", "TrainedSpelling", "classify_numbers", "join_columns"]

#: status of a numeric value (NumericValues.status)
VALID, MISSING, ABSENT_KEY, INVALID = range(4)
#: category codes below the known ones
MISSING_CODE = -1
INVALID_CODE = -2
_UNRESOLVED = -3
#: how a JSON boolean may be spelled among a baseline's categories, the first one present wins: as
#: `category_key` spells it (a baseline built from JSON, Parquet or in-memory booleans), then as CSV
#: writers do (pandas "True", R "TRUE"), so that a CSV's True/False column matches the booleans as well
#: as the strings
BOOL_SPELLINGS = (("false", "False", "FALSE"), ("true", "True", "TRUE"))
_COLUMN_EVENT = itemgetter(0, 1)


class TrainedSpelling:
    """A feature's value spelled as the monitors code it among the training categories, for code
    that reads events one at a time (the joins, the report): a training category as it is, a boolean
    as the baseline spells it (`BOOL_SPELLINGS`), a value that writes a number as the training
    category that writes the same number (`baselines.profile.number_spelling`; the first listed
    wins); anything else its `category_key`.

    >>> spell = TrainedSpelling(["2.0", "True", "US", "007"])
    >>> [spell(v) for v in (2, "2", 2.0, True, False, "US", "FR", 3, "7")]
    ['2.0', '2.0', '2.0', 'True', 'false', 'US', 'FR', '3', '7']
    """

    def __init__(self, categories: Iterable[str]):
        categories = list(categories)
        self._known = frozenset(categories)
        self._bools = tuple(next((s for s in spellings if s in self._known), category_key(value))
                            for value, spellings in zip((False, True), BOOL_SPELLINGS))
        self._numbers = {n: c for c in reversed(categories) if (n := number_spelling(c)) is not None}

    def __call__(self, value: str | int | float | bool) -> str:
        """The category key of `value` (a JSON scalar)."""
        if isinstance(value, bool):
            return self._bools[value]
        key = value if type(value) is str else category_key(value)
        if key in self._known or not self._numbers:
            return key
        number = number_spelling(key)
        return key if number is None else self._numbers.get(number, key)


class NumericValues:
    """Numeric features of a batch, each array (n_features, n_events).

    x holds the value if valid, NaN if missing (None or absent), +inf if invalid: the encoding the
    monitors keep for their recent events, so it is also their input (valid = finite).
    invalid_count: how many values are invalid, all features together.
    """

    __slots__ = ("x", "status", "invalid_count", "_features", "_names")

    def __init__(self, x: np.ndarray, status: np.ndarray, invalid_count: int, features: Sequence[dict],
                 names: Sequence[str]):
        self.x = x
        self.status = status
        self.invalid_count = invalid_count
        self._features = features
        self._names = names

    @property
    def features(self) -> Sequence[dict]:
        """The batch's feature maps, by event offset."""
        return self._features

    @property
    def missing(self) -> np.ndarray:
        return (self.status == MISSING) | (self.status == ABSENT_KEY)

    @property
    def invalid(self) -> np.ndarray:
        return self.status == INVALID

    def invalid_examples(self, j: int, until: int, n: int) -> list[str]:
        """The last n invalid raw values of feature j among events 0..until of the batch, oldest first."""
        at = np.flatnonzero(self.status[j, : until + 1] == INVALID)[-n:] if n > 0 else []
        name = self._names[j]
        return [quote_value(self._features[i][name], MAX_LABEL) for i in at.tolist()] if len(at) else []


def classify_numbers(column: Sequence[Any]) -> NumericValues:
    """One column of raw values (the confidence), as a (1, n) NumericValues; ABSENT: no value at all.

    >>> v = classify_numbers([1, 2.5, None, "3", True, float("nan"), ABSENT])
    >>> v.x[0, :2].tolist(), v.missing[0].tolist(), v.invalid[0].tolist(), bool(v.status[0, -1] == ABSENT_KEY)
    ([1.0, 2.5], [False, False, True, False, False, False, True], [False, False, False, True, True, True, False], True)
    >>> v.invalid_examples(0, until=6, n=4)
    ['3', 'True', 'nan']
    """
    numbers, _, _ = FeatureColumns(["value"], [], []).extract([{} if v is ABSENT else {"value": v} for v in column])
    return numbers


def join_columns(parts: Sequence[tuple[NumericValues, tuple[np.ndarray, np.ndarray, list], np.ndarray]],
                 events: Sequence[dict]) -> tuple[NumericValues, tuple[np.ndarray, np.ndarray, list], np.ndarray]:
    """The (numeric, categorical, extra) columns `FeatureColumns.extract_events` gives, of batches read
    apart, as reading their `events` (all of them, in order) at once would give them."""
    offsets = np.cumsum([0] + [numeric.x.shape[1] for numeric, _, _ in parts]).tolist()
    first, first_others = parts[0][0], parts[0][1][2]
    numeric = NumericValues(np.concatenate([p[0].x for p in parts], axis=1),
                            np.concatenate([p[0].status for p in parts], axis=1),
                            sum(p[0].invalid_count for p in parts), _FeatureMaps(events), first._names)
    others = [[(i + at, label) for (_, categorical, _), at in zip(parts, offsets) for i, label in categorical[2][j]]
              for j in range(len(first_others))] if any(any(p[1][2]) for p in parts) else \
        [[] for _ in first_others]
    categorical = (np.concatenate([p[1][0] for p in parts], axis=1), np.concatenate([p[1][1] for p in parts], axis=1),
                   others)
    return numeric, categorical, np.concatenate([p[2] for p in parts])


class _Absent:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<absent>"


#: stands for a value that is not there at all (classify_numbers)
ABSENT = _Absent()


class _FeatureMaps(Sequence):
    """The 'features' maps of a list of events, looked up when asked for (rarely: to quote an
    invalid value, resolve an unseen label or name an unexpected field)."""

    __slots__ = ("_events",)

    def __init__(self, events: list[dict]):
        self._events = events

    def __getitem__(self, i):  # type: ignore[override]
        return self._events[i]["features"]

    def __len__(self) -> int:
        return len(self._events)


class FeatureColumns:
    """The known features of a batch's feature maps, numeric and categorical, in one pass.

    Categorical codes: c in [0, K) is the c-th training category of the feature, K stands for any
    other value (unseen, or in training's "other" bucket), -1 missing, -2 invalid.
    """

    def __init__(self, numeric: Sequence[str], categorical: Sequence[str], categories: Sequence[Sequence[str]],
                 count_extra: bool = False):
        self._numeric_names = tuple(sys.intern(str(n)) for n in numeric)
        self._categorical_names = tuple(sys.intern(str(n)) for n in categorical)
        self._column_of = {name: k for k, name in enumerate(self._numeric_names + self._categorical_names)}
        self._codes = tuple({c: i for i, c in enumerate(cats)} for cats in categories)
        # a boolean value is coded by its spelling among the categories, which the label table cannot
        # look up itself (True == 1 as a dict key); none there: resolved as the unseen category_key(b)
        self._bool_codes = np.array([[next((table[s] for s in spellings if s in table), _UNRESOLVED)
                                      for spellings in BOOL_SPELLINGS]
                                     for table in self._codes], dtype=np.int64).reshape(-1, 2)
        # the values the kernel leaves unresolved, spelled as a training category where one matches
        self._spellings = tuple(TrainedSpelling(cats) for cats in categories)
        self._count_extra = count_extra

    def extract(self, features: list[dict]) -> tuple[NumericValues, tuple[np.ndarray, np.ndarray, list], np.ndarray]:
        """(NumericValues, (codes, absent, others) categorical, extra).

        others: per categorical feature the (event offset, label) of every value coded K; extra
        (n,) bool: the event has keys that are none of these features (only with count_extra).
        """
        return self._extract(features, features, None)[:3]

    def extract_events(self, events: list[dict], expected_version: str | None, confidence: np.ndarray
                       ) -> tuple[NumericValues, tuple[np.ndarray, np.ndarray, list], np.ndarray, int]:
        """`extract` of the events' 'features' maps, in the same pass their top-level fields: each
        event's 'confidence' into confidence (n,), unless it has length 0 (a valid number in [0, 1],
        NaN if missing, +inf if invalid), and how their 'model_version's compare with
        expected_version: `_kernels.VERSIONS_NONE`, `VERSIONS_EXPECTED` or `VERSIONS_OTHER`.
        Returns (NumericValues, categorical, extra, versions)."""
        return self._extract(events, _FeatureMaps(events), (expected_version, confidence))

    def _extract(self, items: list[dict], features: Sequence[dict], top: tuple | None):
        f, m = len(self._numeric_names), len(self._categorical_names)
        x, status, codes, absent, extra = self._arrays(len(items))
        unresolved, invalid, versions = _kernels.read_columns(items, self._column_of, f, self._codes, self._bool_codes,
                                                              x, status, codes, absent.view(np.uint8),
                                                              extra.view(np.uint8), top)
        if unresolved:  # every value of an unseen flood: Python ints and one numpy write for them all
            maps = [ev["features"] for ev in features._events] if isinstance(features, _FeatureMaps) else features
            names = self._categorical_names
            others = self._resolve(codes, ((j, i, maps[i][names[j]])
                                           for j, i in zip(*(a.tolist() for a in np.nonzero(codes == _UNRESOLVED)))))
        else:
            others = [[] for _ in range(m)]
        numeric = NumericValues(x, status, invalid, features, self._numeric_names)
        return numeric, (codes, absent, others), extra, versions

    def extract_scanned(self, block: Any, rows: list[int], events: Sequence[dict], expected_version: str | None,
                        confidence: np.ndarray
                        ) -> tuple[NumericValues, tuple[np.ndarray, np.ndarray, list], np.ndarray, int]:
        """`extract_events` of the JSON events a `detectors._decode` block scanned at `rows`, read from
        its documents: no event dict is made. `events`: the same events as dicts (made when asked
        for: to quote an invalid value or name an unexpected field)."""
        x, status, codes, absent, extra = self._arrays(len(rows))
        unresolved, invalid, versions = block.fill(rows, self._column_of, len(self._numeric_names), self._codes,
                                                   self._bool_codes, x, status, codes, absent.view(np.uint8),
                                                   extra.view(np.uint8), expected_version, confidence)
        unresolved.sort(key=_COLUMN_EVENT)  # as the dict path meets them: column by column, events in order
        others = self._resolve(codes, unresolved)
        numeric = NumericValues(x, status, invalid, _FeatureMaps(events), self._numeric_names)
        return numeric, (codes, absent, others), extra, versions

    def _arrays(self, n: int) -> tuple[np.ndarray, ...]:
        """The columns of n events, to fill: x, status, codes, absent, extra."""
        f, m = len(self._numeric_names), len(self._categorical_names)
        return (np.empty((f, n)), np.empty((f, n), dtype=np.uint8), np.empty((m, n), dtype=np.int64),
                np.empty((m, n), dtype=np.bool_), np.zeros(n if self._count_extra else 0, dtype=np.bool_))

    def _resolve(self, codes: np.ndarray, values: Iterable[tuple[int, int, Any]]) -> list[list[tuple[int, str]]]:
        """Code the (column j, event i, value) the kernel left unresolved, by `TrainedSpelling`; the
        `others` of `extract`: per categorical feature the (event offset, label) of every value coded K."""
        others: list[list[tuple[int, str]]] = [[] for _ in self._categorical_names]
        at_j, at_i, resolved = [], [], []
        tables, spellings = self._codes, self._spellings
        for j, i, value in values:
            key = spellings[j](value)
            code = tables[j].get(key, -1)
            if code < 0:
                code = len(tables[j])
                others[j].append((i, key))
            at_j.append(j)
            at_i.append(i)
            resolved.append(code)
        if resolved:
            codes[at_j, at_i] = resolved
        return others
