"""One column of training data, chunk by chunk: its values typed, its kind decided, its statistics kept.

Numeric columns keep exact moments and counts plus a bounded uniform sample (bottom-k by random
priority) for the quantile grid and the bins; categorical columns keep exact counts, pruned beyond a
cap. `baselines.build` feeds them; they know nothing of files.

Value conventions (training data):

* missing: absent, null, empty CSV field, NaN (the way pandas/numpy spell a missing float);
* invalid: present but unusable for the column's kind -- a string in a numeric column
  (JSON/Parquet/in-memory), an unparsable string (CSV), +-inf, a bool in a numeric column,
  a confidence outside [0, 1], a nested object in a categorical column;
* a category: CSV text exactly as written (no boolean or number is guessed: "True" and "1.0" stay
  so); a typed value (JSON, Parquet, in memory) keyed as an event's is (`category_key`).
"""
from __future__ import annotations

import math
import zlib
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from baselines.profile import (
    MAX_CATEGORIES,
    QUANTILE_PROBS,
    CategoricalProfile,
    FeatureAssociation,
    FeatureProfile,
    LabelAssociation,
    NumericProfile,
    category_key,
)
from detectors.stats import binned_auc, binned_correlation

__all__ = ["ASSOCIATION_CATEGORIES", "CATEGORY_COUNTER_CAP", "LABEL_SAMPLE_ROWS", "RESERVOIR_SIZE", "TOP_K_CATEGORIES",
           "CategoricalStats", "LabelSample", "NumericStats", "Undecided", "as_floats", "category_codes", "infer_kind",
           "label_association", "prediction_kind"]

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
SEED = 42
#: labelled rows sampled (uniformly) for the features' association with the label
LABEL_SAMPLE_ROWS = 20_000
#: a categorical feature's most frequent categories that get a bin of their own in the association
#: (few: a bin's score is a share measured on its rows, noisy for small bins)
ASSOCIATION_CATEGORIES = 20


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


def as_floats(s: pd.Series, text: bool) -> tuple[np.ndarray, np.ndarray]:
    """Row-aligned float values (NaN where missing or invalid) and the missing mask.

    A value is valid where the result is finite; invalid where neither valid nor missing.

    Parameters
    ----------
    s
        One column of a chunk.
    text
        Whether the column was read as text (CSV): numbers are then parsed from their spelling.

    Returns
    -------
    values, missing
        float64 values and a bool mask, both one per row.

    Examples
    --------
    >>> values, missing = as_floats(pd.Series([1, "x", None, True], dtype=object), text=False)
    >>> values.tolist(), missing.tolist()
    ([1.0, nan, nan, nan], [False, False, True, False])
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


def category_codes(s: pd.Series, text: bool) -> tuple[np.ndarray, list[str | None]]:
    """Codes per row (-1 = missing) and the key of each code (None = invalid value).

    Text (CSV) is its own key, exactly as written: "True" stays "True" and "1.0" stays "1.0" (the
    monitors match a JSON boolean with the baseline's spelling of it, see `detectors.extract`).
    Typed values (JSON, Parquet, in memory) are keyed as events are (`category_key`).

    Examples
    --------
    >>> codes, keys = category_codes(pd.Series(["US", True, None, 1.0, "US"], dtype=object), text=False)
    >>> codes.tolist(), keys
    ([0, 1, -1, 2, 0], ['US', 'true', '1'])
    """
    codes, uniques = _factorize(s)
    if text:
        keys = [u if isinstance(u, str) else category_key(_py(u)) for u in uniques]
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


def infer_kind(s: pd.Series, text: bool) -> str | None:
    """'numeric' or 'categorical' from a sample of the column; None when it holds no value yet.

    A column is numeric when at least NUMERIC_SHARE of its present values are numbers (parsed from
    their spelling when `text`).

    >>> [infer_kind(pd.Series(v), text=True) for v in (["1", "2.5", "007"], ["1", "x"], [None, None])]
    ['numeric', 'categorical', None]
    """
    s = _plain(s)
    present = s.dropna()
    if len(present) == 0:
        return None
    if pd.api.types.is_bool_dtype(present.dtype):
        return "categorical"
    if _is_number_dtype(present):
        return "numeric"
    if text:
        numbers = pd.to_numeric(present, errors="coerce")
        share = float(np.isfinite(numbers.to_numpy(dtype=np.float64, na_value=np.nan)).mean())
    else:
        codes, uniques = _factorize(present)
        is_number = np.array([np.isfinite(_typed_float(u)) for u in uniques], dtype=bool)
        share = float(is_number[codes].mean())
    return "numeric" if share >= NUMERIC_SHARE else "categorical"


def prediction_kind(s: pd.Series, text: bool) -> str | None:
    """Class labels -> categorical; a regression output (many or fractional values) -> numeric.

    >>> prediction_kind(pd.Series([0, 1, 1, 0]), text=False), prediction_kind(pd.Series([0.2, 1.7]), text=False)
    ('categorical', 'numeric')
    """
    kind = infer_kind(s, text)
    if kind != "numeric":
        return kind
    values, _ = as_floats(s, text)
    values = values[np.isfinite(values)]
    few = len(np.unique(values)) <= MAX_CLASSES and bool(np.all(values == np.floor(values)))
    return "categorical" if few else "numeric"


# ---- per-column accumulators -------------------------------------------------------------
class NumericStats:
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
        """Count `n` rows where the column is absent."""
        self.n_missing += n

    def add(self, values: np.ndarray, missing: np.ndarray) -> None:
        """Take a chunk's values and missing mask, as `as_floats` gives them."""
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
        values = np.concatenate(self._values or [np.empty(0)])
        priority = np.concatenate(self._priorities or [np.empty(0)])
        if len(values) > self._k:
            smallest = np.argpartition(priority, self._k - 1)[: self._k]
            values, priority = values[smallest], priority[smallest]
            self._threshold = float(priority.max())
        self._values, self._priorities, self._buffered = [values], [priority], len(values)
        return values

    def finish(self) -> NumericProfile:
        """The column's profile: moments, quantile grid and bins from the sample (or exact counts).

        >>> stats = NumericStats("x", reservoir_size=1000)
        >>> stats.add(*as_floats(pd.Series([1.0, 2.0, None, 3.0]), text=False))
        >>> p = stats.finish()
        >>> p.count, p.n_missing, p.mean, p.integer_valued
        (3, 1, 2.0, True)
        """
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


class CategoricalStats:
    """Exact category counts (pruned to the heaviest half beyond CATEGORY_COUNTER_CAP), missing and invalid counts."""

    def __init__(self, name: str, top_k: int, n_missing: int = 0):
        self._name = name
        self._top_k = min(top_k, MAX_CATEGORIES)  # a loader refuses more
        self._counts: Counter[str] = Counter()
        self._n = 0
        self.n_missing = n_missing
        self.n_invalid = 0
        self._pruned_distinct = 0

    def add_missing(self, n: int) -> None:
        """Count `n` rows where the column is absent."""
        self.n_missing += n

    def add(self, codes: np.ndarray, keys: list[str | None]) -> None:
        """Take a chunk's codes and keys, as `category_codes` gives them."""
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
        """The column's profile: the `top_k` heaviest categories' shares, the rest as "other".

        >>> stats = CategoricalStats("country", top_k=1)
        >>> stats.add(*category_codes(pd.Series(["US", "US", "FR", None]), text=True))
        >>> p = stats.finish()
        >>> p.categories, round(p.other_freq, 3), p.n_missing, p.n_distinct
        ({'US': 0.6666666666666666}, 0.333, 1, 2)
        """
        ranked = sorted(self._counts.items(), key=lambda kc: (-kc[1], kc[0]))
        top = ranked[: self._top_k]
        kept = sum(c for _, c in top)
        n_with = Counter(self._counts.values())
        return CategoricalProfile(
            name=self._name,
            count=self._n,
            n_missing=self.n_missing,
            n_invalid=self.n_invalid,
            categories={k: c / self._n for k, c in top},
            other_freq=(self._n - kept) / self._n if self._n else 0.0,
            n_distinct=max(self._pruned_distinct, len(self._counts)),
            heldout_other_freq=_heldout_other(ranked, self._top_k, self._n),
            n_singletons=n_with[1],
            n_doubletons=n_with[2],
        )


def _heldout_other(ranked: list[tuple[str, int]], top_k: int, n: int) -> float:
    """Share of new values outside the top-K, by leaving each training row out in turn.

    ranked: (category, count), in the top-K's order. A row left out, its category keeps count - 1;
    the row counts as "other" unless that still ranks in the top-K of the other rows. That is
    Good-Turing's reasoning: a category seen once stands for the never-seen ones (n1 / n when every
    category is kept), and the top-K's own selection, which inflates its training shares (a uniform
    4,000-level column: the top 1,000 hold ~34% of 50k rows, and ~25% of new ones), is undone.

    >>> _heldout_other([("a", 5), ("b", 3), ("c", 1)], top_k=3, n=9)  # only c's row leaves the top-K
    0.1111111111111111
    >>> _heldout_other([("a", 5), ("b", 3), ("c", 3)], top_k=2, n=11)  # b, one row fewer, ranks below c
    0.5454545454545454
    """
    if not n:
        return 0.0
    first_out = (-ranked[top_k][1], ranked[top_k][0]) if len(ranked) > top_k else None
    stays = sum(c for key, c in ranked[:top_k]
                if c > 1 and (first_out is None or (1 - c, key) < first_out))
    return (n - stays) / n


class Undecided:
    """A column with no value seen yet (only missing): its kind is decided by its first values."""

    def __init__(self, n_missing: int = 0):
        self.n_missing = n_missing

    def add_missing(self, n: int) -> None:
        """Count `n` rows where the column is absent."""
        self.n_missing += n


class LabelSample:
    """A uniform sample of whole rows (bottom-k by random priority, like `NumericStats`' values), for
    the features' association with the label: the features' bins are known only once every row has
    been read, so rows are kept, not counts."""

    def __init__(self, size: int = LABEL_SAMPLE_ROWS):
        self._k = size
        self._rng = np.random.default_rng([SEED, 1])
        self._frames: list[pd.DataFrame] = []
        self._priorities: list[np.ndarray] = []
        self._buffered = 0
        self._threshold = 1.0

    def add(self, frame: pd.DataFrame) -> None:
        """Take a chunk of rows (the feature columns and the label's)."""
        priority = self._rng.random(len(frame))
        keep = priority < self._threshold
        self._frames.append(frame.loc[keep])
        self._priorities.append(priority[keep])
        self._buffered += int(keep.sum())
        if self._buffered > self._k + self._k // 2:
            self.rows()

    def rows(self) -> pd.DataFrame:
        """The sample (cuts the buffer back to it); a column a chunk lacked is missing in its rows."""
        if not self._frames:
            return pd.DataFrame()
        frame = pd.concat(self._frames, ignore_index=True) if len(self._frames) > 1 else self._frames[0]
        priority = np.concatenate(self._priorities)
        if len(frame) > self._k:
            smallest = np.sort(np.argpartition(priority, self._k - 1)[: self._k])
            frame, priority = frame.iloc[smallest].reset_index(drop=True), priority[smallest]
            self._threshold = float(priority.max())
        self._frames, self._priorities, self._buffered = [frame], [priority], len(frame)
        return frame


def label_association(rows: pd.DataFrame, label: str, profiles: dict[str, FeatureProfile], numeric_label: bool,
                      text: bool) -> LabelAssociation | None:
    """Each feature's association with the label on the sampled rows (None: no usable label).

    A class label is measured on its `positive` class against the rest: the rarer of the two most
    frequent classes (a binary label's minority class); the feature's score in a bin is the bin's
    share of that class, and the measure the AUC of that score. A numeric label: the score is the
    bin's mean label, the measure its correlation with the label. Both cross-fitted (each half of the
    rows scored with the other half's bin scores), so that a feature unrelated to the label measures
    ~0.5 (AUC) or ~0 (correlation), as production will.
    """
    if label not in rows.columns or not len(rows):
        return None
    if numeric_label:
        y, _ = as_floats(rows[label], text)
        labelled = np.isfinite(y)
        positive = None
    else:
        codes, keys = category_codes(rows[label], text)
        key = np.array(keys + [None], dtype=object)[codes]
        labelled = np.not_equal(key, None)
        classes = Counter(key[labelled].tolist()).most_common(2)
        if len(classes) < 2 or classes[1][1] < 2:  # an AUC needs two rows of each side
            return None
        positive = min(classes, key=lambda kc: (kc[1], kc[0]))[0]
        y = (key == positive).astype(np.float64)
    rows, y = rows.loc[labelled], y[labelled]
    if len(y) < 4:
        return None
    features = {}
    for name, profile in profiles.items():
        column = rows[name] if name in rows.columns else pd.Series([None] * len(rows), dtype=object)
        if isinstance(profile, NumericProfile):
            edges, categories = tuple(profile.bin_edges.tolist()), None
            x, _ = as_floats(column, text)
            bins = np.where(np.isfinite(x), np.searchsorted(profile.bin_edges, np.nan_to_num(x), side="left"),
                            len(edges) + 1)
        elif profile.count:
            edges, categories = None, tuple(list(profile.categories)[:ASSOCIATION_CATEGORIES])
            codes, keys = category_codes(column, text)
            index = {c: i for i, c in enumerate(categories)}
            per_code = np.array([index.get(k, len(categories)) for k in keys] + [len(categories) + 1])
            bins = per_code[codes]  # code -1 (missing) picks the trailing "no value" bin
        else:
            continue
        n_bins = (len(edges) if categories is None else len(categories)) + 2
        features[name] = _feature_association(bins, y, n_bins, numeric_label, edges, categories)
    return LabelAssociation("numeric" if numeric_label else "class", positive, features)


def _bin_table(bins: np.ndarray, y: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, label sum, score) per bin; an empty bin scores as the whole sample does (its production
    values are ranked as average)."""
    counts = np.bincount(bins, minlength=n_bins).astype(np.float64)
    sums = np.bincount(bins, weights=y, minlength=n_bins)
    return counts, sums, np.where(counts > 0, sums / np.maximum(counts, 1), y.mean() if len(y) else 0.0)


def _feature_association(bins: np.ndarray, y: np.ndarray, n_bins: int, numeric_label: bool,
                         edges: tuple[float, ...] | None, categories: tuple[str, ...] | None) -> FeatureAssociation:
    n = len(y)
    counts, _, scores = _bin_table(bins, y, n_bins)
    # The figure is cross-fitted: each half of the rows scored with the other half's bin scores, the
    # two figures averaged. Scored on the rows that chose them, 20 bins of a feature unrelated to the
    # label reach an AUC of ~0.58 on 1,000 rows; cross-fitted, ~0.5, as production will measure.
    half = np.random.default_rng([SEED, 2]).permutation(n) % 2 == 0
    figures = []
    for fit, score in ((half, ~half), (~half, half)):
        _, _, fitted = _bin_table(bins[fit], y[fit], n_bins)
        b, t = bins[score], y[score]
        c, s = np.bincount(b, minlength=n_bins), np.bincount(b, weights=t, minlength=n_bins)
        if numeric_label:
            r = binned_correlation(fitted, c, s, np.bincount(b, weights=t * t, minlength=n_bins))
            figures.append((r, 1 / math.sqrt(max(len(t) - 3, 1))))
        else:
            figures.append(binned_auc(fitted, s, c - s))
    value = (figures[0][0] + figures[1][0]) / 2
    se = math.hypot(figures[0][1], figures[1][1]) / 2
    if not math.isfinite(se):  # a half with a single row of a class: no interval, no comparison
        se = 1.0
    return FeatureAssociation("correlation" if numeric_label else "auc", tuple(scores.tolist()),
                              tuple((counts / n).tolist()), value, se, n, edges, categories)
