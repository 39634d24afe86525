"""The training baseline: a versioned, msgpack-serialised profile of every feature.

This module is the contract between `baselines.build` (which writes profiles) and
`detectors` (which reads them). It is pure: numpy and msgpack only.

On disk a baseline is one msgpack map (never pickle: a baseline file may come from
anywhere, and unpickling is code execution)::

    {"schema": "skewwatch.baseline", "schema_version": 1, "model": ..., "features": {...}, ...}

Arrays are stored as lists of floats so that any msgpack reader can inspect a file.
"""
from __future__ import annotations

import bisect
import functools
import hashlib
import math
import os
import re
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from baselines.seasonal import SEASONAL_PERIODS, SLOT_QUANTILE_PROBS, known_timezone
from baselines.serial import CATEGORICAL_SERIES, NUMERIC_SERIES, SERIAL_HORIZONS
from detectors.fmt import quote_value

__all__ = ["ASSOCIATION_MEASURES", "MAX_CATEGORIES", "QUANTILE_PROBS", "SCHEMA", "SCHEMA_VERSION", "Baseline",
           "BaselineError", "CategoricalProfile", "FeatureAssociation", "FeatureProfile", "LabelAssociation",
           "NumericProfile", "SeasonalProfile", "category_key", "number_spelling"]

SCHEMA = "skewwatch.baseline"
SCHEMA_VERSION = 1
#: Probabilities at which `NumericProfile.quantiles` is stored: 0, 0.001, ..., 1.
QUANTILE_PROBS = np.linspace(0.0, 1.0, 1001)
#: Caps that keep a loaded file's memory bounded whatever it claims to hold.
MAX_FEATURES = 10_000
MAX_CATEGORIES = 10_000
MAX_DISCRETE_VALUES = 1_000
MAX_BINS = 1_000
MAX_FILE_BYTES = 256 * 1024 * 1024
# Caps of the msgpack decoder, far above what a valid baseline holds, so that a hostile file is
# refused before it is built in memory (an empty map: 1 byte on disk, ~64 in memory).
#: longest list: the quantile grid (1001) and the bins are the longest in a baseline
MAX_LIST_LEN = 4 * 1024
#: largest map: the features, or one feature's categories
MAX_MAP_LEN = 2 * max(MAX_FEATURES, MAX_CATEGORIES)
#: maps and lists in all: a feature's profile holds at most 18 (its map, 6 lists, top_values' 10
#: pairs, the serial inflation), its seasonal profile 3 (its map, the counts, the grids)
MAX_CONTAINERS = 21 * MAX_FEATURES + 1024
# A list's items become float64 as it is decoded (8 bytes each; a list of anything else is refused:
# two-letter strings cost ~60 bytes for 3 on disk), and all the lists and maps of a file share caps,
# so that memory is bounded by these, not by what the file claims.
#: numbers in all the lists of a file (600 MB as float64): a numeric profile holds at most ~5,000, its
#: seasonal profile 2,424 more (24 slots of 101 quantiles)
MAX_NUMBERS = 7_500 * MAX_FEATURES
#: entries in all the maps of a file (~160 bytes each at most): ~15 per profile, plus the categories
MAX_MAP_ENTRIES = 1_000_000


class BaselineError(ValueError):
    """A baseline file that is missing, corrupt, foreign or of an unsupported version."""


class _ValueCounts:
    """The rates both kinds of profile derive from their counts of valid, missing and invalid values."""

    count: int
    n_missing: int
    n_invalid: int

    @property
    def total(self) -> int:
        return self.count + self.n_missing + self.n_invalid

    @property
    def missing_rate(self) -> float:
        return self.n_missing / self.total if self.total else 0.0

    @property
    def invalid_rate(self) -> float:
        return self.n_invalid / self.total if self.total else 0.0


@dataclass(frozen=True)
class NumericProfile(_ValueCounts):
    """Training distribution of one numeric feature (or of the confidence)."""

    name: str
    count: int  # valid (finite, numeric) values
    n_missing: int  # null / absent / empty
    n_invalid: int  # present but not a finite number (strings, NaN, inf)
    mean: float
    std: float
    min: float
    max: float
    #: value at each probability of QUANTILE_PROBS (1001 values, non-decreasing)
    quantiles: np.ndarray
    #: interior edges of the distance bins (strictly increasing); bin i holds
    #: edges[i-1] < x <= edges[i], with -inf / +inf at the ends
    bin_edges: np.ndarray
    #: training share of each bin, len(bin_edges) + 1 values summing to 1
    bin_freqs: np.ndarray
    #: exact distribution when the column has few distinct values (integer counts,
    #: rounded amounts): sorted values and their shares; None otherwise
    discrete_values: np.ndarray | None = None
    discrete_freqs: np.ndarray | None = None
    integer_valued: bool = False
    #: most frequent values with their share (default-fill diagnosis), at most 10
    top_values: tuple[tuple[float, float], ...] = ()
    kind: str = field(default="numeric", init=False)
    #: from a time-ordered training file only (`baselines.serial`): the variance inflation of sums of
    #: consecutive scores, rows `NUMERIC_SERIES`, columns `SERIAL_HORIZONS`; None: events independent
    serial_inflation: np.ndarray | None = None

    def summary(self) -> dict[str, Any]:
        """The baseline side of an alert: small, JSON-ready.

        Returns
        -------
        dict
            count, mean, std, min, max, the 5/25/50/75/95th percentiles and the missing rate.
        """
        q = self.quantiles
        return {
            "count": self.count,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "p05": float(q[50]),
            "p25": float(q[250]),
            "p50": float(q[500]),
            "p75": float(q[750]),
            "p95": float(q[950]),
            "missing_rate": self.missing_rate,
        }


@dataclass(frozen=True)
class CategoricalProfile(_ValueCounts):
    """Training distribution of one categorical feature (or of the prediction)."""

    name: str
    count: int
    n_missing: int
    n_invalid: int
    #: share of each of the top-K categories (keys are strings)
    categories: dict[str, float]
    #: share of every category outside the top-K ("other" bucket)
    other_freq: float
    n_distinct: int
    kind: str = field(default="categorical", init=False)
    #: share of new values expected outside the top-K (never-seen categories included): each training
    #: row left out in turn, the share whose category the other rows do not put in the top-K (Good-
    #: Turing's n1/n when every category is kept). None in a baseline from before it was recorded.
    heldout_other_freq: float | None = None
    #: categories seen exactly once and exactly twice (Good-Turing's n1 and n2)
    n_singletons: int = 0
    n_doubletons: int = 0
    #: as `NumericProfile.serial_inflation`, rows `CATEGORICAL_SERIES`
    serial_inflation: np.ndarray | None = None

    @property
    def expected_other_freq(self) -> float:
        """Share of new values expected outside the stored categories: the held-out estimate, or
        the training "other" share for a baseline without one."""
        return max(self.other_freq, self.heldout_other_freq or 0.0)

    def summary(self, top: int = 5) -> dict[str, Any]:
        """The baseline side of an alert: small, JSON-ready.

        Parameters
        ----------
        top
            How many of the most frequent categories to list.

        Returns
        -------
        dict
            count, n_distinct, the `top` categories' shares, the "other" share and the missing rate.

        Examples
        --------
        >>> p = CategoricalProfile("country", count=10, n_missing=0, n_invalid=0,
        ...                        categories={"US": 0.7, "FR": 0.2, "DE": 0.1}, other_freq=0.0, n_distinct=3)
        >>> p.summary(top=2)["top"]
        {'US': 0.7, 'FR': 0.2}
        """
        ranked = sorted(self.categories.items(), key=lambda kv: -kv[1])[:top]
        return {
            "count": self.count,
            "n_distinct": self.n_distinct,
            "top": {k: v for k, v in ranked},
            "other": self.other_freq,
            "missing_rate": self.missing_rate,
        }


#: the profile of one feature, of either kind (`NumericProfile.kind` / `CategoricalProfile.kind` tell them apart)
FeatureProfile = NumericProfile | CategoricalProfile

#: how a feature's association with the label is measured: the AUC of its binned score (a class
#: label) or the Pearson correlation of its binned score with the label (a numeric label)
ASSOCIATION_MEASURES = ("auc", "correlation")


@dataclass(frozen=True)
class FeatureAssociation:
    """How well one feature predicted the label in training, on a few bins of the feature.

    The bins: a numeric feature's `edges` (its profile's: bin i holds edges[i-1] < x <= edges[i]),
    or a categorical feature's most frequent `categories` and one bin of every other category;
    last, one bin of no value (missing or invalid). A row's score is its bin's training `scores`
    entry: the bin's share of the positive class (measure "auc"), or its mean label ("correlation").
    `value` is that score's AUC or correlation with the label on the `n` training rows, cross-fitted
    (each half scored with the other half's bin scores), `se` its standard error (DeLong's for the
    AUC; 1 / sqrt(n - 3) on Fisher's z for a correlation);
    `shares` the bins' shares of those rows. Production rows are scored with the same `scores`, so
    the two figures measure the same rule.

    >>> a = FeatureAssociation("auc", scores=(0.1, 0.8, 0.3), shares=(0.5, 0.4, 0.1), value=0.85, se=0.01, n=2000,
    ...                        edges=(1.0,))
    >>> [a.bin_of(v) for v in (0.5, 1.0, 7, None, "x", float("nan"))]
    [0, 0, 1, 2, 2, 2]
    """

    measure: str
    scores: tuple[float, ...]
    shares: tuple[float, ...]
    value: float
    se: float
    n: int
    edges: tuple[float, ...] | None = None
    categories: tuple[str, ...] | None = None

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.categories or ())}

    def bin_of(self, value: Any) -> int:
        """The bin of an event's value (as decoded from JSON or msgpack); the last bin is "no value"."""
        none = len(self.scores) - 1
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return none
        if self.categories is not None:
            key = category_key(value) if isinstance(value, (str, int, float, bool)) else None
            return self._index.get(key, none - 1)  # anything else: the other categories' bin
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return none
        return bisect.bisect_left(self.edges, value)  # as np.searchsorted(side="left"), without an array per call


@dataclass(frozen=True)
class LabelAssociation:
    """Each feature's association with the true label in training (`baseline build --label-column`).

    `label` is "class" (measured on the `positive` class against the rest) or "numeric"; `features`
    holds the features with a measure (not every feature need have one).
    """

    label: str
    positive: str | None
    features: dict[str, FeatureAssociation]


@dataclass(frozen=True)
class SeasonalProfile:
    """Each numeric feature's quantiles per slot of the clock (`baseline build --seasonal`;
    `baselines.seasonal`): `period` ("hour-of-day" or "day-of-week"), the training column the slots
    were read from, and per feature its valid values per slot (`counts`, (slots,)) and their
    quantile grids at `baselines.seasonal.SLOT_QUANTILE_PROBS` (`quantiles`, (slots, 101)). The
    slots are UTC's, or the IANA `timezone`'s local time's."""

    period: str
    timestamp_column: str
    counts: dict[str, np.ndarray]
    quantiles: dict[str, np.ndarray]
    timezone: str | None = None


@dataclass(frozen=True)
class Baseline:
    """Everything skewwatch knows about a model's training data.

    Built by `baselines.build`, written with `save` and read back, validated, with `load`. The file
    is a msgpack map (never pickle): see the module's docstring.

    >>> from baselines.build import build_baseline_from_columns
    >>> b = build_baseline_from_columns("credit", {"amount": [1.0, 2.0, 3.0], "country": ["US", "FR", "US"]})
    >>> b.model, b.n_rows, list(b.features)
    ('credit', 3, ['amount', 'country'])
    """

    model: str
    version: str | None
    features: dict[str, FeatureProfile]  # in column order
    n_rows: int
    created: float = field(default_factory=time.time)
    source: str = ""
    confidence: NumericProfile | None = None
    prediction: FeatureProfile | None = None
    #: validation figure, e.g. {"name": "accuracy", "value": 0.91, "n": 20000}
    metric: dict[str, Any] | None = None
    #: each feature's association with the label in training (leakage suspects); None in a baseline
    #: built without a label column, or before it was recorded
    label_association: LabelAssociation | None = None
    #: the numeric features' profiles per slot of the clock; None in a baseline built without
    #: --seasonal, or before it was recorded
    seasonal: SeasonalProfile | None = None

    @functools.cached_property
    def fingerprint(self) -> str:
        """A hash of the profile's content (not of when or from where it was built).

        The same training data profiled again gives the same fingerprint, a different one does not:
        16 hexadecimal digits.

        >>> from baselines.build import build_baseline_from_columns
        >>> a = build_baseline_from_columns("m", {"x": [1.0, 2.0, 3.0]})
        >>> b = build_baseline_from_columns("m", {"x": [1.0, 2.0, 3.0]})
        >>> c = build_baseline_from_columns("m", {"x": [1.0, 2.0, 4.0]})
        >>> a.fingerprint == b.fingerprint != c.fingerprint, len(a.fingerprint)
        (True, 16)
        """
        d = self.to_dict()
        del d["created"], d["source"]
        return hashlib.blake2b(msgpack.packb(d, use_bin_type=True), digest_size=8).hexdigest()

    # ---- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The baseline as plain data (the map written to disk): arrays become lists of floats.

        >>> from baselines.build import build_baseline_from_columns
        >>> d = build_baseline_from_columns("m", {"x": [1.0, 2.0]}).to_dict()
        >>> d["schema"], d["schema_version"], d["features"]["x"]["kind"]
        ('skewwatch.baseline', 1, 'numeric')
        """
        d = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "version": self.version,
            "created": self.created,
            "source": self.source,
            "n_rows": self.n_rows,
            "features": {n: _profile_to_dict(p) for n, p in self.features.items()},
            "confidence": _profile_to_dict(self.confidence) if self.confidence else None,
            "prediction": _profile_to_dict(self.prediction) if self.prediction else None,
            "metric": self.metric,
        }
        if self.label_association is not None:  # absent otherwise: older baselines keep their fingerprint
            d["label_association"] = _association_to_dict(self.label_association)
        if self.seasonal is not None:  # the same: absent unless built with --seasonal
            d["seasonal"] = _seasonal_to_dict(self.seasonal)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Baseline:
        """A baseline from plain data (`to_dict`'s map, as decoded from a file), validated.

        Parameters
        ----------
        d
            The decoded map; anything else is refused.

        Returns
        -------
        Baseline
            Raises BaselineError with a readable reason when `d` is not a baseline this skewwatch
            reads (foreign, of another schema version, malformed, beyond the caps).

        Examples
        --------
        >>> Baseline.from_dict({"schema": "other"})
        Traceback (most recent call last):
        ...
        baselines.profile.BaselineError: not a skewwatch baseline (no 'schema: skewwatch.baseline' field)
        """
        if not isinstance(d, Mapping) or d.get("schema") != SCHEMA:
            raise BaselineError("not a skewwatch baseline (no 'schema: skewwatch.baseline' field)")
        v = d.get("schema_version")
        if v != SCHEMA_VERSION:
            raise BaselineError(
                f"baseline schema version {v!r} is not supported (this skewwatch reads {SCHEMA_VERSION}); "
                "rebuild it with `skewwatch baseline build`"
            )
        try:
            model = _str(d["model"], "model")
            feats = d["features"]
            if not isinstance(feats, Mapping):
                raise BaselineError("'features' must be a map")
            if len(feats) > MAX_FEATURES:
                raise BaselineError(f"{len(feats)} features exceeds the cap of {MAX_FEATURES}")
            features = {_str(n, "feature name"): _profile_from_dict(n, p) for n, p in feats.items()}
            conf = d.get("confidence")
            pred = d.get("prediction")
            version = d.get("version")
            return cls(
                model=model,
                version=None if version is None else str(version),
                features=features,
                n_rows=int(d["n_rows"]),
                created=float(d.get("created") or 0.0),
                source=str(d.get("source") or ""),
                confidence=_profile_from_dict("confidence", conf) if conf else None,
                prediction=_profile_from_dict("prediction", pred) if pred else None,
                metric=dict(d["metric"]) if d.get("metric") else None,
                label_association=_association_from_dict(d.get("label_association"), features),
                seasonal=_seasonal_from_dict(d.get("seasonal"), features),
            )
        except BaselineError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise BaselineError(f"malformed baseline: {type(e).__name__}: {e}") from None

    def save(self, path: str | Path) -> None:
        """Write the baseline to `path` as msgpack, atomically (a temporary file renamed over it).

        Parameters
        ----------
        path
            The file to write; an existing one is replaced.

        Examples
        --------
        >>> import tempfile
        >>> from baselines.build import build_baseline_from_columns
        >>> b = build_baseline_from_columns("credit", {"amount": [1.0, 2.0, 3.0]})
        >>> with tempfile.TemporaryDirectory() as d:
        ...     b.save(Path(d) / "credit.baseline")
        ...     sorted(p.name for p in Path(d).iterdir())
        ['credit.baseline']
        """
        data = msgpack.packb(self.to_dict(), use_bin_type=True)
        tmp = Path(str(path) + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a watcher never sees a half-written file

    @classmethod
    def load(cls, path: str | Path) -> Baseline:
        """Read and validate a baseline file; BaselineError says what is wrong with it.

        Bounded before parsing: only a regular file (a device such as /dev/zero or a FIFO would
        be read forever), of at most MAX_FILE_BYTES by its size before reading, and `loads`' cap
        on decoded objects.

        Parameters
        ----------
        path
            A file written by `save` (or `skewwatch baseline build`).

        Returns
        -------
        Baseline
            The baseline as saved: same content, same `fingerprint`.

        Examples
        --------
        >>> import tempfile
        >>> from baselines.build import build_baseline_from_columns
        >>> b = build_baseline_from_columns("credit", {"amount": [1.0, 2.0, 3.0]})
        >>> with tempfile.TemporaryDirectory() as d:
        ...     b.save(Path(d) / "credit.baseline")
        ...     loaded = Baseline.load(Path(d) / "credit.baseline")
        >>> loaded.model, loaded.features["amount"].mean, loaded.fingerprint == b.fingerprint
        ('credit', 2.0, True)
        >>> Baseline.load("/nonexistent/credit.baseline")
        Traceback (most recent call last):
        ...
        baselines.profile.BaselineError: /nonexistent/credit.baseline: cannot read baseline: No such file or directory
        """
        p = Path(path)
        try:
            # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer; fstat then
            # checks the very file opened (a path checked before the open could be swapped meanwhile)
            fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise BaselineError(f"{p}: not a regular file; a baseline is a file written by "
                                        "`skewwatch baseline build`")
                if st.st_size > MAX_FILE_BYTES:  # refused on its size, before a byte is read
                    raise BaselineError(f"{p}: {st.st_size} bytes, over the cap of a baseline file "
                                        f"({MAX_FILE_BYTES} bytes)")
                with open(fd, "rb", closefd=False) as f:
                    raw = f.read(MAX_FILE_BYTES + 1)  # bounded even if the file grows meanwhile
            finally:
                os.close(fd)
        except OSError as e:
            raise BaselineError(f"{p}: cannot read baseline: {e.strerror or e}") from None
        if len(raw) > MAX_FILE_BYTES:
            raise BaselineError(f"{p}: over the cap of a baseline file ({MAX_FILE_BYTES} bytes)")
        return cls.loads(raw, name=str(p))

    @classmethod
    def loads(cls, raw: bytes, name: str = "<bytes>") -> Baseline:
        """Decode and validate a baseline from msgpack bytes (see `load`).

        Parameters
        ----------
        raw
            The bytes of a baseline file.
        name
            What to call them in an error message (a file name).

        Returns
        -------
        Baseline
            Raises BaselineError when `raw` is not msgpack, not a baseline, or holds more than
            any baseline does (MAX_CONTAINERS, MAX_NUMBERS, MAX_MAP_ENTRIES), or a list of
            anything but numbers: refused as it is decoded, before it is built whole.

        Examples
        --------
        >>> import msgpack
        >>> from baselines.build import build_baseline_from_columns
        >>> b = build_baseline_from_columns("credit", {"amount": [1.0, 2.0, 3.0]})
        >>> Baseline.loads(msgpack.packb(b.to_dict())).fingerprint == b.fingerprint
        True
        >>> Baseline.loads(b"not msgpack", name="upload.bin")
        Traceback (most recent call last):
        ...
        baselines.profile.BaselineError: upload.bin: not a msgpack file (ExtraData); is it a skewwatch baseline?
        """
        containers = numbers = entries = 0

        def container() -> None:
            nonlocal containers
            containers += 1
            if containers > MAX_CONTAINERS:
                raise BaselineError(f"more than {MAX_CONTAINERS} maps and lists: not a baseline this skewwatch reads")

        def decoded_map(d: dict) -> dict:
            nonlocal entries
            container()
            entries += len(d)
            if entries > MAX_MAP_ENTRIES:
                raise BaselineError(f"more than {MAX_MAP_ENTRIES} map entries: not a baseline this skewwatch reads")
            return d

        def decoded_list(items: list) -> np.ndarray:
            nonlocal numbers
            container()
            try:
                arr = np.asarray(items)  # a list of lists of one length: a 2-D array (top_values)
            except ValueError:  # lists of different lengths
                arr = None
            if arr is None or arr.dtype.kind not in "fiu":
                raise BaselineError("a list holds something else than numbers (a baseline's lists hold only numbers)")
            numbers += arr.size
            if numbers > MAX_NUMBERS:
                raise BaselineError(f"more than {MAX_NUMBERS} numbers in lists: not a baseline this skewwatch reads")
            return arr.astype(np.float64, copy=False)

        try:
            d = msgpack.unpackb(raw, raw=False, strict_map_key=False, max_bin_len=0, max_ext_len=0,
                                max_array_len=MAX_LIST_LEN, max_map_len=MAX_MAP_LEN,
                                object_hook=decoded_map, list_hook=decoded_list)
        except BaselineError as e:
            raise BaselineError(f"{name}: {e}") from None
        except Exception as e:  # noqa: BLE001 (msgpack raises several unrelated types on garbage)
            raise BaselineError(
                f"{name}: not a msgpack file ({type(e).__name__}); is it a skewwatch baseline?"
            ) from None
        try:
            return cls.from_dict(d)
        except BaselineError as e:
            raise BaselineError(f"{name}: {e}") from None


# ---- helpers ---------------------------------------------------------------------------
def _str(x: Any, what: str) -> str:
    if not isinstance(x, str) or not x:
        raise BaselineError(f"{what} must be a non-empty string, got {type(x).__name__}")
    return x


def _floats(x: Any, what: str, max_len: int) -> np.ndarray:
    if not isinstance(x, (list, tuple, np.ndarray)) or np.ndim(x) != 1:
        raise BaselineError(f"{what} must be a list of numbers")
    if len(x) > max_len:
        raise BaselineError(f"{what} has {len(x)} entries, cap {max_len}")
    arr = np.asarray(x, dtype=np.float64)
    return arr


def _profile_to_dict(p: FeatureProfile) -> dict[str, Any]:
    if isinstance(p, NumericProfile):
        return {
            "kind": "numeric",
            "count": p.count,
            "n_missing": p.n_missing,
            "n_invalid": p.n_invalid,
            "mean": p.mean,
            "std": p.std,
            "min": p.min,
            "max": p.max,
            "quantiles": [float(v) for v in p.quantiles],
            "bin_edges": [float(v) for v in p.bin_edges],
            "bin_freqs": [float(v) for v in p.bin_freqs],
            "discrete_values": None if p.discrete_values is None else [float(v) for v in p.discrete_values],
            "discrete_freqs": None if p.discrete_freqs is None else [float(v) for v in p.discrete_freqs],
            "integer_valued": p.integer_valued,
            "top_values": [[float(v), float(f)] for v, f in p.top_values],
            **_serial_to_dict(p),
        }
    return {
        "kind": "categorical",
        "count": p.count,
        "n_missing": p.n_missing,
        "n_invalid": p.n_invalid,
        "categories": dict(p.categories),
        "other_freq": p.other_freq,
        "n_distinct": p.n_distinct,
        "heldout_other_freq": p.heldout_other_freq,
        "n_singletons": p.n_singletons,
        "n_doubletons": p.n_doubletons,
        **_serial_to_dict(p),
    }


def _serial_to_dict(p: FeatureProfile) -> dict[str, Any]:
    """The optional serial-dependence field, flat; absent when not measured (an older baseline's
    content and fingerprint stay as they were)."""
    if p.serial_inflation is None:
        return {}
    return {"serial_inflation": [float(v) for v in p.serial_inflation.ravel()]}


def _serial_from_dict(name: Any, d: Mapping, series: tuple[str, ...]) -> np.ndarray | None:
    raw = d.get("serial_inflation")
    if raw is None:
        return None
    shape = (len(series), len(SERIAL_HORIZONS))
    v = _floats(raw, f"{name}.serial_inflation", shape[0] * shape[1])
    if len(v) != shape[0] * shape[1] or not np.all(np.isfinite(v)) or np.any(v < 0):
        raise BaselineError(f"feature {name!r}: serial_inflation must be {shape[0] * shape[1]} finite "
                            f"non-negative numbers ({', '.join(series)} at {len(SERIAL_HORIZONS)} horizons)")
    return v.reshape(shape)


def _profile_from_dict(name: Any, d: Any) -> FeatureProfile:
    if not isinstance(d, Mapping):
        raise BaselineError(f"feature {name!r}: profile must be a map")
    kind = d.get("kind")
    if kind == "numeric":
        q = _floats(d["quantiles"], f"{name}.quantiles", len(QUANTILE_PROBS))
        if len(q) != len(QUANTILE_PROBS) or not np.all(np.diff(q) >= 0) or not np.all(np.isfinite(q)):
            raise BaselineError(
                f"feature {name!r}: quantiles must be {len(QUANTILE_PROBS)} finite non-decreasing values"
            )
        edges = _floats(d["bin_edges"], f"{name}.bin_edges", MAX_BINS)
        freqs = _floats(d["bin_freqs"], f"{name}.bin_freqs", MAX_BINS + 1)
        if len(freqs) != len(edges) + 1 or (len(edges) and not np.all(np.diff(edges) > 0)):
            raise BaselineError(f"feature {name!r}: bin_edges/bin_freqs are inconsistent")
        dv, df = d.get("discrete_values"), d.get("discrete_freqs")
        if dv is not None:
            dv = _floats(dv, f"{name}.discrete_values", MAX_DISCRETE_VALUES)
            df = _floats(df, f"{name}.discrete_freqs", MAX_DISCRETE_VALUES)
            if len(dv) != len(df) or (len(dv) > 1 and not np.all(np.diff(dv) > 0)):
                raise BaselineError(f"feature {name!r}: discrete_values/discrete_freqs are inconsistent")
        top_values = d.get("top_values")
        top = tuple((float(v), float(f)) for v, f in (() if top_values is None else top_values)[:10])
        vals = [float(d[k]) for k in ("mean", "std", "min", "max")]
        if not all(math.isfinite(v) for v in vals):
            raise BaselineError(f"feature {name!r}: mean/std/min/max must be finite")
        return NumericProfile(
            name=str(name),
            count=int(d["count"]),
            n_missing=int(d["n_missing"]),
            n_invalid=int(d.get("n_invalid", 0)),
            mean=vals[0],
            std=vals[1],
            min=vals[2],
            max=vals[3],
            quantiles=q,
            bin_edges=edges,
            bin_freqs=freqs,
            discrete_values=dv,
            discrete_freqs=df,
            integer_valued=bool(d.get("integer_valued", False)),
            top_values=top,
            serial_inflation=_serial_from_dict(name, d, NUMERIC_SERIES),
        )
    if kind == "categorical":
        cats = d["categories"]
        if not isinstance(cats, Mapping) or len(cats) > MAX_CATEGORIES:
            raise BaselineError(f"feature {name!r}: categories must be a map of at most {MAX_CATEGORIES} entries")
        heldout = d.get("heldout_other_freq")  # absent from baselines built before it was recorded
        if heldout is not None and not 0.0 <= float(heldout) <= 1.0:
            raise BaselineError(f"feature {name!r}: heldout_other_freq must be a share in [0, 1]")
        return CategoricalProfile(
            name=str(name),
            count=int(d["count"]),
            n_missing=int(d["n_missing"]),
            n_invalid=int(d.get("n_invalid", 0)),
            categories={str(k): float(v) for k, v in cats.items()},
            other_freq=float(d.get("other_freq", 0.0)),
            n_distinct=int(d.get("n_distinct", len(cats))),
            heldout_other_freq=None if heldout is None else float(heldout),
            n_singletons=int(d.get("n_singletons", 0)),
            n_doubletons=int(d.get("n_doubletons", 0)),
            serial_inflation=_serial_from_dict(name, d, CATEGORICAL_SERIES),
        )
    raise BaselineError(f"feature {name!r}: unknown profile kind {kind!r}")


def _association_to_dict(a: LabelAssociation) -> dict[str, Any]:
    return {"label": a.label, "positive": a.positive, "features": {
        name: {"measure": f.measure, "scores": list(f.scores), "shares": list(f.shares), "value": f.value,
               "se": f.se, "n": f.n, "edges": None if f.edges is None else list(f.edges),
               # a map, category -> its bin: a baseline file's lists hold only numbers
               "categories": None if f.categories is None else {c: i for i, c in enumerate(f.categories)}}
        for name, f in a.features.items()}}


def _association_from_dict(d: Any, profiles: Mapping[str, FeatureProfile]) -> LabelAssociation | None:
    if d is None:
        return None
    if not isinstance(d, Mapping) or d.get("label") not in ("class", "numeric") or not isinstance(
            d.get("features"), Mapping):
        raise BaselineError("label_association must be a map with 'label' (class or numeric) and 'features'")
    features = {}
    for name, f in d["features"].items():
        if name not in profiles or not isinstance(f, Mapping) or f.get("measure") not in ASSOCIATION_MEASURES:
            raise BaselineError(f"label_association of {name!r}: not a feature of the baseline, or no known measure")
        scores = tuple(_floats(f["scores"], f"{name}.association.scores", MAX_BINS + 2).tolist())
        shares = tuple(_floats(f["shares"], f"{name}.association.shares", MAX_BINS + 2).tolist())
        edges = None if f.get("edges") is None else tuple(_floats(f["edges"], f"{name}.association.edges",
                                                                  MAX_BINS).tolist())
        categories = f.get("categories")
        if categories is not None:  # category -> its bin, the bins 0..k-1
            if (not isinstance(categories, Mapping) or len(categories) > MAX_BINS
                    or sorted(categories.values()) != list(range(len(categories)))):
                raise BaselineError(f"label_association of {name!r}: categories must map each to its bin 0..k-1")
            categories = tuple(str(c) for c, _ in sorted(categories.items(), key=lambda ci: ci[1]))
        values = [float(f["value"]), float(f["se"]), *scores, *shares]
        bins = None if (edges is None) == (categories is None) else len(edges if categories is None else categories)
        if bins is None or not len(scores) == len(shares) == bins + 2 or not all(map(math.isfinite, values)):
            raise BaselineError(f"label_association of {name!r}: bins, scores and shares are inconsistent")
        features[str(name)] = FeatureAssociation(str(f["measure"]), scores, shares, values[0], values[1],
                                                 int(f["n"]), edges, categories)
    positive = d.get("positive")
    return LabelAssociation(str(d["label"]), None if positive is None else str(positive), features)


def _seasonal_to_dict(s: SeasonalProfile) -> dict[str, Any]:
    return {"period": s.period, "timestamp_column": s.timestamp_column, "timezone": s.timezone, "features": {
        # each feature's grids flat, slot after slot: one list per feature (MAX_LIST_LEN)
        name: {"counts": [int(c) for c in s.counts[name]], "quantiles": [float(v) for v in s.quantiles[name].ravel()]}
        for name in s.counts}}


def _seasonal_from_dict(d: Any, profiles: Mapping[str, FeatureProfile]) -> SeasonalProfile | None:
    if d is None:
        return None
    if (not isinstance(d, Mapping) or d.get("period") not in SEASONAL_PERIODS
            or not isinstance(d.get("features"), Mapping)):
        raise BaselineError(f"seasonal must be a map with 'period' ({' or '.join(SEASONAL_PERIODS)}) and 'features'")
    timezone = d.get("timezone")
    if timezone is not None and not (isinstance(timezone, str) and known_timezone(timezone)):
        raise BaselineError(f"seasonal timezone {quote_value(timezone)}: not a time zone this machine knows")
    slots, width = SEASONAL_PERIODS[d["period"]][1], len(SLOT_QUANTILE_PROBS)
    counts, quantiles = {}, {}
    for name, f in d["features"].items():
        if not isinstance(profiles.get(name), NumericProfile) or not isinstance(f, Mapping):
            raise BaselineError(f"seasonal profile of {name!r}: not a numeric feature of the baseline")
        c = _floats(f["counts"], f"{name}.seasonal.counts", slots)
        q = _floats(f["quantiles"], f"{name}.seasonal.quantiles", slots * width)
        if (len(c) != slots or len(q) != slots * width or not np.all(np.isfinite(q)) or np.any(c < 0)
                or not np.all(np.diff(q.reshape(slots, width), axis=1) >= 0)):
            raise BaselineError(f"seasonal profile of {name!r}: {slots} counts and {slots} grids of {width} finite "
                                "non-decreasing quantiles expected")
        counts[str(name)], quantiles[str(name)] = c.astype(np.int64), q.reshape(slots, width)
    return SeasonalProfile(str(d["period"]), str(d.get("timestamp_column") or ""), counts, quantiles, timezone)


def category_key(v: Any) -> str:
    """The one spelling of a categorical value, shared by the builder and the monitors.

    Parameters
    ----------
    v
        A category as decoded from an event or read from training data.

    Returns
    -------
    str
        Strings as they are, booleans as JSON spells them, whole floats as integers.

    Examples
    --------
    >>> [category_key(x) for x in ("US", 3, 3.0, True, 2.5, 10**5000)]
    ['US', '3', '3', 'true', '2.5', '<int of 16610 bits>']
    >>> category_key({"a": [1, 2]})  # not a category; quoted within 64 characters, however deep or long
    "{'a': [1, 2]}"
    """
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (list, tuple, dict)):  # str() of a 1,000-deep one raises, of a 100k-key one costs its size
        return quote_value(v)
    try:
        return str(v)
    except ValueError:  # an int too long to print (sys.get_int_max_str_digits): bad input, not a crash
        return f"<int of {v.bit_length()} bits>"


# a decimal number as a CSV writes a code: no leading zero (`007` is an identity), no exponent or separator
_DECIMAL = re.compile(r"(-?)(0|[1-9][0-9]{0,39})(?:\.([0-9]{1,40}))?")


def number_spelling(key: str) -> str | None:
    """The one spelling of the number a category key writes, or None if it writes none.

    A categorical value that is not itself a training category matches the training category
    that writes the same number (detectors/extract.py): a CSV's float-coded `2.0` and the events'
    `2`, `2.0` or `"2"` are one category. Leading zeros and exponents make no number here.

    >>> [number_spelling(k) for k in ("2.0", "2", "-3.50", "0.0", "-0", "007", "1e3", "2.", "US")]
    ['2', '2', '-3.5', '0', '0', None, None, None, None]
    """
    m = _DECIMAL.fullmatch(key)
    if m is None:
        return None
    sign, whole, fraction = m.groups()
    fraction = (fraction or "").rstrip("0")
    spelled = whole + ("." + fraction if fraction else "")
    return spelled if spelled == "0" else sign + spelled
