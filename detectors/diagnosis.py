"""Why did a feature alert? Pure rules that tell a serving-pipeline bug from a real population shift.

The engine calls one function per alert, with what its monitor keeps cheaply (the last few hundred
valid values or category counts, the window's missing / invalid counts and, optionally, a short
history of block means of the feature's score plus the model versions seen)::

    diagnose_numeric(profile, recent, n_missing=.., n_invalid=.., n_total=.., timing=..)
    diagnose_categorical(profile, counts, n_missing=.., n_total=.., timing=..)
    diagnose_change_time(timing)      # alerts without a feature profile (confidence, serving)

and words the alerts that have no feature profile (`diagnose_serving`, `diagnose_confidence`,
`diagnose_schema`); `lead_with_change` and `with_version_coincidence` then add what the
alarm's own test knows (what moved, its change-point estimate).

Each returns a `Diagnosis`: a `cause`, one `sentence` for the on-call engineer and a small JSON-ready
`evidence` map. The value rules run in a fixed order, most specific pipeline bug first (see
docs/diagnosis.md); the first that fires wins, and a plain description of what moved is the fallback.
A timing diagnosis (abrupt / gradual / model_version) is appended to a pipeline-bug diagnosis and
replaces the plain fallback.

>>> import numpy as np
>>> from baselines.profile import QUANTILE_PROBS, NumericProfile
>>> train = np.random.default_rng(0).lognormal(3.0, 0.8, 5_000)
>>> q = np.quantile(train, QUANTILE_PROBS)
>>> p = NumericProfile("latency_ms", len(train), 0, 0, float(train.mean()), float(train.std()),
...                    float(q[0]), float(q[-1]), q, q[100:1000:100], np.full(10, 0.1))
>>> recent = np.random.default_rng(1).lognormal(3.0, 0.8, 512) / 1000
>>> d = diagnose_numeric(p, recent, n_missing=0, n_invalid=0, n_total=512)
>>> d.cause, d.evidence["factor"]
('unit_change', '1/1000')
>>> print(d.sentence)  # doctest: +NORMALIZE_WHITESPACE
values look ~1/1000 of training at every quantile (e.g. ms -> s, g -> kg, B -> KiB): unit or scale change
in the serving pipeline
"""
from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from baselines.profile import QUANTILE_PROBS, CategoricalProfile, NumericProfile
from detectors.episodes import Candidate
from detectors.fmt import count, number, percent, rounded
from detectors.stats import MIN_EXPECTED

__all__ = ["AFFINE_CONVERSIONS", "ChangeTiming", "Diagnosis", "MIN_VALUES", "NOT_A_NUMBER", "NUMBER_AS_TEXT",
           "PIPELINE_CAUSES", "RATE_ALARMS", "UNIT_FACTORS", "UNIT_FACTOR_TOLERANCE", "category_counts",
           "diagnose_categorical", "diagnose_change_time", "diagnose_confidence", "diagnose_numeric",
           "diagnose_serving", "diagnose_schema", "diagnose_versions",
           "FILL_COMMON_VALUES", "FILL_LOCAL_SHARE", "FILL_RARE_SHARE", "NUMERIC_SENTINELS", "FILL_RISE",
           "MIN_CHANGE_VALUES",
           "MIN_FILL_COUNT", "MIN_REST", "ROUNDING_STEPS", "bucketing_step", "on_grid", "training_grid",
           "training_share_on_step",
           "holds_number",
           "label_hash", "lead_with_change", "lead_with_rate", "redact_example", "redact_labels",
           "unit_factor", "with_version_coincidence"]

#: causes that name a defect of the serving pipeline (a timing diagnosis is appended to them)
PIPELINE_CAUSES = frozenset(
    {"type_change", "stuck_value", "default_fill", "unit_change", "rounding", "letter_case", "formatting"}
)
#: below this many recent values the value rules do not run (too little to tell a defect from noise)
MIN_VALUES = 30
#: the "almost all values" rules (stuck, rounded) judge the values after a point-mass chain's change
#: point from this many on: 16 values all equal, or all on a grid training had for at most half its
#: values, are as unlikely under training as 2^-16
MIN_CHANGE_VALUES = 16
#: a feature whose baseline expects at least this share of values outside its stored categories is
#: ID-like: its new values are worded as a share against that expectation, not one by one
LONG_TAIL_OTHER = 0.05
#: a ramp at least this long (events) reads as a population change; a shorter one may be a staged rollout
LONG_RAMP = 10_000
#: share of the recent values that must agree for "all values" rules (stuck, rounded, integral)
ALMOST_ALL = 0.98
#: a value counts as a default fill (without a matching fall of the missing rate) only if training
#: held at most this share of it and production holds at least FILL_RISE times that share
FILL_RARE_SHARE = 0.01
FILL_RISE = 10.0
#: the fewest values a fill by a value common in training (above FILL_RARE_SHARE) is judged on
FILL_COMMON_VALUES = 128
#: a fill judged against the values just before its change (time order): at most this share in training
FILL_LOCAL_SHARE = 0.03
#: the fewest repeats of a value that can make it a fill (as the formatting rule's 5 events)
MIN_FILL_COUNT = 5
#: the fewest values other than the fill that show the rest of the distribution intact
MIN_REST = 10
#: a change whose test ran at most this long from its change point is called abrupt, else gradual
ABRUPT_WITHIN_EVENTS = 1024
#: a model_version first seen this close to a test's change-point estimate is named as its likely cause
VERSION_COINCIDENCE_EVENTS = 64
#: tests that estimate where a change started (windowed tests only know their window)
CHANGE_POINT_DETECTORS = ("cusum", "page_hinkley", "adwin", "point_mass")

# known unit / scale factors and a hint of the conversion each usually is
UNIT_FACTORS: dict[str, tuple[float, str]] = {
    "1000": (1000.0, "s -> ms, kg -> g, KiB -> B"),
    "1/1000": (1e-3, "ms -> s, g -> kg, B -> KiB"),
    "1e6": (1e6, "s -> us, MB -> B"),
    "1/1e6": (1e-6, "us -> s, B -> MB"),
    "100": (100.0, "fraction -> percent, hPa -> Pa, m -> cm, units -> cents"),
    "1/100": (1e-2, "percent -> fraction, Pa -> hPa, cm -> m, cents -> units"),
    "10": (10.0, "cm -> mm"),
    "1/10": (0.1, "mm -> cm"),
    "12": (12.0, "years -> months, feet -> inches"),
    "1/12": (1 / 12, "months -> years, inches -> feet"),
    "60": (60.0, "minutes -> seconds, hours -> minutes"),
    "1/60": (1 / 60, "seconds -> minutes, minutes -> hours"),
    "3600": (3600.0, "hours -> seconds"),
    "1/3600": (1 / 3600, "seconds -> hours"),
    "86400": (86400.0, "days -> seconds"),
    "1/86400": (1 / 86400, "seconds -> days"),
    "24": (24.0, "days -> hours"),
    "1/24": (1 / 24, "hours -> days"),
    "3.6": (3.6, "m/s -> km/h"),
    "1/3.6": (1 / 3.6, "km/h -> m/s"),
    "2.54": (2.54, "inches -> cm"),
    "1/2.54": (1 / 2.54, "cm -> inches"),
    "1.609": (1.609344, "miles -> km"),
    "1/1.609": (1 / 1.609344, "km -> miles"),
    "0.4536": (0.45359237, "lb -> kg"),
    "1/0.4536": (1 / 0.45359237, "kg -> lb"),
}
# 512 values estimate the ratio within ~10 % (heavy tails: ~25 %): x1000 and x1024 are one factor
UNIT_FACTOR_TOLERANCE = math.log(1.25)
# a feature on a ratio scale (latency, amounts) can genuinely grow by x1.6 or x2, and its quantiles
# then move exactly like a unit change's: a factor between 1/5 and 5 is named only when the ratio
# is within 4 % of it and precisely measured (see _scale_factor)
_SMALL_FACTOR = 5.0
_SMALL_FACTOR_TOLERANCE = math.log(1.04)
_SMALL_FACTOR_DISPERSION = 0.02
#: affine unit conversions (y = a x + b), which no single ratio describes: name -> (a, b, formula,
#: the range a temperature in the source unit takes on Earth: training outside it is no temperature)
AFFINE_CONVERSIONS: dict[str, tuple[float, float, str, tuple[float, float]]] = {
    "°C -> °F": (1.8, 32.0, "x1.8 + 32", (-90.0, 60.0)),
    "°F -> °C": (1 / 1.8, -32.0 / 1.8, "(x - 32) / 1.8", (-130.0, 140.0)),
    "°C -> K": (1.0, 273.15, "x + 273.15", (-90.0, 60.0)),
    "K -> °C": (1.0, -273.15, "x - 273.15", (180.0, 335.0)),
    "°F -> K": (1 / 1.8, 273.15 - 32.0 / 1.8, "(x - 32) / 1.8 + 273.15", (-130.0, 140.0)),
    "K -> °F": (1.8, 32.0 - 1.8 * 273.15, "(x - 273.15) x 1.8 + 32", (180.0, 335.0)),
}
_MIN_UNKNOWN_RATIO = 5.0
#: rounding steps tried, coarsest first
ROUNDING_STEPS = (1e6, 1e5, 1e4, 1000.0, 500.0, 100.0, 50.0, 10.0, 5.0, 1.0, 0.5, 0.1, 0.05, 0.01, 0.001)
# numeric placeholders that pipelines write for "no value"
#: numbers a pipeline writes for a value it does not have, and their names
NUMERIC_SENTINELS = {0.0: "zero", -1.0: "-1", 999.0: "999", 9999.0: "9999", 99999.0: "99999",
                      -999.0: "-999", -9999.0: "-9999", -99999.0: "-99999"}
_CATEGORY_SENTINELS = frozenset(
    {"", "unknown", "none", "null", "nil", "nan", "n/a", "na", "missing", "default", "other", "-", "?",
     "undefined", "0", "-1", "unk", "not set", "(not set)"}
)
_NUMBER = re.compile(r"^\s*[-+]?(\d[\d,_]*\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
#: what a monitor keeps of an invalid value instead of the value, with examples off
NUMBER_AS_TEXT = "<a number as text>"
NOT_A_NUMBER = "<not a number>"


def holds_number(example: str) -> bool:
    """Whether a quoted invalid value (or its redaction) is a number written as text.

    >>> holds_number(" 12,500.50"), holds_number("N/A"), holds_number(NUMBER_AS_TEXT)
    (True, False, True)
    """
    return example == NUMBER_AS_TEXT or _NUMBER.match(example) is not None


def label_hash(label: str) -> str:
    """A category label as alerts show it with examples off: a short hash, equal for equal labels.

    >>> label_hash("marker-1") == label_hash("marker-1") != label_hash("marker-2"), len(label_hash("x"))
    (True, 9)
    """
    return "#" + hashlib.blake2b(label.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()


def redact_labels(value: Any, labels: Iterable[str]) -> Any:
    """`value` (a sentence, or a JSON-ready tree of them) with each of `labels` replaced by its
    `label_hash`: a string equal to a label, and a label quoted (repr) inside a sentence.

    The rules compare unseen labels with training ones first (letter case, formatting); this keeps
    their conclusion and counts, not the production spellings.

    >>> redact_labels({"top": [["PARIS", 3]], "s": "'PARIS' <-> 'Paris'"}, ["PARIS"])
    {'top': [['#2e3f6b3a', 3]], 's': "'#2e3f6b3a' <-> 'Paris'"}
    """
    table = {label: label_hash(label) for label in labels}
    return _redact(value, table) if table else value


def _redact(value: Any, table: dict[str, str]) -> Any:
    if isinstance(value, str):
        if value in table:
            return table[value]
        for label, hashed in table.items():
            if label in value:
                value = value.replace(repr(label), repr(hashed))
        return value
    if isinstance(value, dict):
        return {_redact(k, table): _redact(v, table) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(v, table) for v in value)
    return value


def redact_example(example: str) -> str:
    """An invalid value as a monitor keeps it with examples off: only whether it holds a number.

    >>> redact_example("31337.25"), redact_example("secret")
    ('<a number as text>', '<not a number>')
    """
    return NUMBER_AS_TEXT if holds_number(example) else NOT_A_NUMBER


@dataclass(frozen=True)
class Diagnosis:
    """The most likely cause of an alert, in words and as data."""

    cause: str
    sentence: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def is_pipeline_bug(self) -> bool:
        return self.cause in PIPELINE_CAUSES

    def alert_fields(self) -> dict[str, Any]:
        """The `diagnosis` and `evidence` fields of an Alert (evidence carries the cause)."""
        return {"diagnosis": self.sentence, "evidence": {"cause": self.cause, **self.evidence}}


@dataclass(frozen=True)
class ChangeTiming:
    """What a monitor keeps cheaply to date a change and relate it to model versions.

    `block_means` are the means of the feature's score over consecutive blocks of events, oldest
    first, with `block_counts` events each (blocks may differ in size, e.g. merged older blocks).
    The score must be centred on training: about 0 while production looks like training (e.g.
    sqrt(12) * (u - 1/2) for the training-CDF value u). `end_event` is the monitor's event count
    after the last block, so block i starts at end_event - sum(block_counts[i:]).
    `version_first_seen` maps each model_version to the event count at which it first appeared;
    `served_versions` counts model_version over the recent window.
    """

    block_means: Sequence[float] = ()
    block_counts: Sequence[int] = ()
    end_event: int = 0
    version_first_seen: Mapping[str, int] = field(default_factory=dict)
    served_versions: Mapping[str, int] = field(default_factory=dict)
    baseline_version: str | None = None


# ---- numeric ---------------------------------------------------------------------------------
def diagnose_numeric(
    profile: NumericProfile,
    recent: np.ndarray | Sequence[float],
    *,
    n_missing: int,
    n_invalid: int,
    n_total: int,
    invalid_examples: Sequence[str] = (),
    timing: ChangeTiming | None = None,
    quote_examples: bool = True,
    risen_value: float | None = None,
    after_change: np.ndarray | Sequence[float] | None = None,
    before_change: np.ndarray | Sequence[float] | None = None,
) -> Diagnosis:
    """Diagnose a numeric feature from its recent valid values and the same window's counts.

    `recent` holds the valid (finite) values of the window; `n_missing` and `n_invalid` count the
    window's null and non-numeric values, `n_total` all its events; `invalid_examples` are a few of
    the raw invalid values as strings. They decide the numbers-as-strings rule; with
    `quote_examples` False (production features may be personal data) none is quoted.
    `risen_value`: a value whose share of the events a sequential test against its training share
    found risen (the point-mass chain that alarmed, detectors/pointmass.py): the fill rule takes that
    test as the evidence it otherwise waits FILL_COMMON_VALUES values for. `after_change`: the valid
    values since that chain's change point, when `recent` reaches further back (it holds at least a
    few dozen events): the stuck-value and rounding rules, whose "almost all values" the values before
    the change would dilute, judge these from MIN_CHANGE_VALUES on. `before_change`: the values just
    before the change, when the alarm compared production with a time-ordered training's worst windows
    (detectors/worstwindow.py): in time order a few hundred consecutive values are no sample of the
    whole training, so the fill rule asks the other values to match these instead.
    """
    x = np.asarray(recent, dtype=np.float64)
    x = x[np.isfinite(x)]
    tail = None if after_change is None else np.asarray(after_change, dtype=np.float64)
    tail = None if tail is None else tail[np.isfinite(tail)]
    value = (
        _numbers_as_strings(profile, n_invalid, n_total, invalid_examples, quote_examples)
        or (tail is not None and len(tail) < len(x)
            and (_constant_value(profile, tail, n_missing, n_total, MIN_CHANGE_VALUES)
                 or _rounding(profile, tail, MIN_CHANGE_VALUES)))
        or _constant_value(profile, x, n_missing, n_total)
        or _unit_change(profile, x)
        or _rounding(profile, x)
        or _default_fill(profile, x, n_missing, n_total, risen_value, before_change)
        or _numeric_fallback(profile, x, n_missing, n_invalid, n_total)
    )
    return _with_timing(value, timing)


def _numbers_as_strings(p: NumericProfile, n_invalid: int, n_total: int, examples: Sequence[str],
                        quote: bool = True) -> Diagnosis | None:
    if not n_total or not examples:
        return None
    rate = n_invalid / n_total
    if not _rate_rose(rate, p.invalid_rate, n_total):
        return None
    numeric = [e for e in examples if holds_number(str(e))]
    # guard: text such as "N/A" or "abc" is bad data, not numbers serialised as strings
    if len(numeric) < max(1, 0.8 * len(examples)):
        return None
    evidence = {"invalid_rate": rounded(rate), "baseline_invalid_rate": rounded(p.invalid_rate),
                "examples_checked": len(examples), "examples_holding_numbers": len(numeric)}
    if quote:
        evidence["numeric_examples"] = [str(e)[:40] for e in numeric[:3]]
    return Diagnosis(
        "type_change",
        f"{percent(rate)} of values arrive as strings that hold numbers"
        f"{f' (e.g. {numeric[0]!r})' if quote else ''}; training had "
        f"{percent(p.invalid_rate)} invalid: numbers are serialised as strings in the serving pipeline",
        evidence,
    )


def _constant_value(p: NumericProfile, x: np.ndarray, n_missing: int, n_total: int,
                    min_values: int = MIN_VALUES) -> Diagnosis | None:
    if len(x) < min_values or p.std <= 0:
        return None
    values, counts = np.unique(x, return_counts=True)
    top = int(np.argmax(counts))
    v, share = float(values[top]), counts[top] / len(x)
    baseline_share = _numeric_share(p, v)
    # guard: a value that already dominated training (a zero-inflated feature) is not stuck
    if share < ALMOST_ALL or baseline_share >= 0.5:
        return None
    sentinel = _sentinel_name(p, v)
    if sentinel is not None:
        return _default_fill_diagnosis(p, v, share, baseline_share, sentinel, n_missing, n_total)
    return Diagnosis(
        "stuck_value",
        f"{percent(share)} of recent values equal {number(v)} (training std {number(p.std)}, share of that value "
        f"{percent(baseline_share)}): the feature is stuck (a frozen upstream source or a cached value)",
        {"value": rounded(v), "share": rounded(share), "baseline_share": rounded(baseline_share),
         "baseline_std": rounded(p.std), "n_values": int(len(x))},
    )


def unit_factor(log_ratio: float) -> str | None:
    """The name of the known unit factor (`UNIT_FACTORS`) nearest a measured ratio (given as its
    log), or None when none is within its tolerance (tighter between 1/5 and 5).

    >>> unit_factor(math.log(11.7)), unit_factor(math.log(2.0)), unit_factor(math.log(2.5))
    ('12', None, '2.54')
    """
    name, (factor, _) = min(UNIT_FACTORS.items(), key=lambda kv: abs(math.log(kv[1][0]) - log_ratio))
    small = 1 / _SMALL_FACTOR < factor < _SMALL_FACTOR
    return name if abs(math.log(factor) - log_ratio) <= (_SMALL_FACTOR_TOLERANCE if small
                                                         else UNIT_FACTOR_TOLERANCE) else None


def _unit_change(p: NumericProfile, x: np.ndarray) -> Diagnosis | None:
    if len(x) < MIN_VALUES:
        return None
    inner = slice(100, 901)  # p10..p90: the tails of a few hundred values are too noisy
    qt = p.quantiles[inner]
    qp = np.quantile(x, QUANTILE_PROBS[inner])
    iqr_t = p.quantiles[750] - p.quantiles[250]
    iqr_p = float(np.subtract(*np.quantile(x, [0.75, 0.25])))
    if iqr_t <= 0 or iqr_p <= 0:
        return None
    return (_grid_conversion(p, x) or _scale_factor(p, x, qt, qp, iqr_t, iqr_p)
            or _affine_conversion(p, x, qt, qp, iqr_t))


def _grid_conversion(p: NumericProfile, x: np.ndarray) -> Diagnosis | None:
    """A factor between 1/5 and 5 read off the values' grid: training was measured on a grid (whole
    miles, 0.1 m/s) and the values that left it all lie on the known factor times it (x / 1.609344 a
    whole number of miles). Quantile ratios cannot tell x3.6 from a genuine tripling on a few dozen
    values; no growth of the population puts every new value on 3.6 times the old grid. The
    pre-change values of a window, on training's grid, are left out."""
    grid = training_grid(p)
    if grid is None:
        return None
    off = x[~on_grid(x, grid)]
    if len(off) < MIN_CHANGE_VALUES:
        return None
    small = [name for name, (f, _) in UNIT_FACTORS.items() if 1 / _SMALL_FACTOR < f < _SMALL_FACTOR]
    shares = {name: float(np.mean(on_grid(off / UNIT_FACTORS[name][0], grid))) for name in small}
    name = max(shares, key=shares.__getitem__)
    if shares[name] < ALMOST_ALL:
        return None
    factor = UNIT_FACTORS[name][0]
    converted = x[on_grid(x / factor, grid)]  # the values after the change (and training's on both grids)
    # the grid names the factor; the size only has to agree within its noise: the geometric-mean ratio
    # of the positive values, 3 standard errors (24 whole-mile distances x1.609 measure 1.29)
    train_logs = np.log(p.quantiles[1:-1][p.quantiles[1:-1] > 0])
    logs = np.log(converted[converted > 0])
    if len(train_logs) < len(p.quantiles) // 2 or len(logs) < MIN_CHANGE_VALUES:
        return None
    log_r = float(np.mean(logs) - np.mean(train_logs))
    if abs(log_r - math.log(factor)) > max(UNIT_FACTOR_TOLERANCE, 3 * float(np.std(train_logs)) / math.sqrt(len(logs))):
        return None
    iqr_t = p.quantiles[750] - p.quantiles[250]
    iqr_p = float(np.subtract(*np.quantile(converted, [0.75, 0.25])))
    evidence = {"ratio": rounded(math.exp(log_r)), "factor": name,
                "grid": {"training_step": grid, "values_off_it": int(len(off)),
                         "share_on_converted_grid": rounded(shares[name])},
                "spread_ratio": rounded(iqr_p / iqr_t) if iqr_t > 0 else None,
                "quantiles": _unit_evidence(p, converted)}
    shown = f"~{name}" if name.startswith("1/") else f"~{name}x"
    return Diagnosis("unit_change", f"values look {shown} of training (e.g. {UNIT_FACTORS[name][1]}): "
                     f"{percent(shares[name])} of the {count(len(off))} values off training's grid of "
                     f"{number(grid)} lie on {shown.lstrip('~')} times it: unit change in the serving pipeline",
                     evidence)


def training_grid(p: NumericProfile) -> float | None:
    """The coarsest step (`ROUNDING_STEPS`) that training's values are on (ALMOST_ALL of them), None for
    values of full precision.

    >>> from baselines.profile import QUANTILE_PROBS
    >>> q = np.round(np.linspace(0.4, 9.5, len(QUANTILE_PROBS)), 1)  # wind in m/s, on a 0.1 grid
    >>> p = NumericProfile("wind", 1000, 0, 0, 3.3, 1.5, 0.4, 9.5, q, q[100:1000:100], np.full(10, 0.1))
    >>> training_grid(p), bucketing_step(p)
    (0.1, 0.5)
    """
    return next((step for step, share in zip(ROUNDING_STEPS, _shares_on_steps(p)) if share >= ALMOST_ALL), None)


def _shares_on_steps(p: NumericProfile) -> list[float]:
    """`training_share_on_step` of every ROUNDING_STEPS step, the quantile grid against all of them
    at once (one step at a time cost ~0.5 ms a feature, and a monitor's creation asks it for each
    numeric feature: 0.49 s at 1,000 features)."""
    steps = np.asarray(ROUNDING_STEPS)
    if p.discrete_values is not None and p.discrete_freqs is not None:
        on = on_grid(p.discrete_values[None, :], steps[:, None])
        total = max(np.sum(p.discrete_freqs), 1e-12)
        return [float(np.sum(p.discrete_freqs[row]) / total) for row in on]
    shares = np.mean(on_grid(p.quantiles[None, 1:-1], steps[:, None]), axis=1).tolist()
    return [1.0 if p.integer_valued and step <= 1 else share for step, share in zip(ROUNDING_STEPS, shares)]


def bucketing_step(p: NumericProfile) -> float | None:
    """The finest step (`ROUNDING_STEPS`) coarse enough that values bucketed onto it change what a model
    sees (at least a tenth of training's IQR, coarser than training's own grid) and that training holds
    under half its values on (the rounding rule's guard); None if none."""
    iqr = p.quantiles[750] - p.quantiles[250]
    grid = training_grid(p)
    fine_enough = [s for s in ROUNDING_STEPS if s >= iqr / 10 and (grid is None or s > grid)]
    step = min(fine_enough, default=None)
    return step if step is not None and iqr > 0 and training_share_on_step(p, step) < 0.5 else None


def _unit_evidence(p: NumericProfile, x: np.ndarray) -> dict[str, Any]:
    return {f"p{k:02d}": [rounded(p.quantiles[10 * k]), rounded(float(np.quantile(x, k / 100)))] for k in (5, 50, 95)}


def _scale_factor(p: NumericProfile, x: np.ndarray, qt: np.ndarray, qp: np.ndarray, iqr_t: float,
                  iqr_p: float) -> Diagnosis | None:
    # quantiles near zero make wild ratios (a feature centred on 0): leave them out
    tiny = 0.1 * float(np.median(np.abs(qt)))
    usable = (np.sign(qt) == np.sign(qp)) & (np.abs(qt) > tiny) & (qp != 0)
    if usable.mean() < 0.5:
        return None
    log_ratios = np.log(qp[usable] / qt[usable])
    log_r = float(np.median(log_ratios))
    # how far production, scaled back by the ratio, is from training: median over quantiles, in
    # training IQRs (absolute, so quantiles near zero of a centred feature do not blow it up)
    misfit = float(np.median(np.abs(qp / math.exp(log_r) - qt))) / iqr_t
    spread_log_ratio = math.log(iqr_p / iqr_t)
    # guard: under x -> R*x the spread scales by R too; a location shift of a feature with a small
    # coefficient of variation also gives near-constant quantile ratios, but leaves the spread alone.
    # The IQR of n values is known within ~1/sqrt(n) in log: 0.3 at 512 values, 0.41 at 96. A
    # few-valued feature's IQR jumps between its levels: there a ratio that fits far better than a
    # shift (the quantiles' differences kept) decides
    shift_misfit = float(np.median(np.abs(qp - float(np.median(qp - qt)) - qt))) / iqr_t
    if abs(spread_log_ratio - log_r) > max(0.3, 4 / math.sqrt(len(x))) and not misfit < 0.25 * shift_misfit:
        return None
    name = unit_factor(log_r)
    # a factor between 1/5 and 5 converts a physical measurement (length, weight, speed: positive
    # values) and is named only when the quantile ratios agree within 2 % (their median absolute
    # deviation): a wide feature that doubled measures "2.2" as often as "2" (kg -> lb)
    if (name is not None and 1 / _SMALL_FACTOR < UNIT_FACTORS[name][0] < _SMALL_FACTOR
            and (p.quantiles[10] <= 0 or float(np.median(np.abs(log_ratios - log_r))) > _SMALL_FACTOR_DISPERSION)):
        name = None
    known = name is not None and misfit <= 0.15
    unknown = abs(log_r) >= math.log(_MIN_UNKNOWN_RATIO) and misfit <= 0.1
    if not (known or unknown):
        return None
    ratio = math.exp(log_r)
    evidence = {"ratio": rounded(ratio), "factor": name if known else None, "misfit_iqr": rounded(misfit),
                "spread_ratio": rounded(iqr_p / iqr_t), "quantiles": _unit_evidence(p, x)}
    if known:
        shown = f"~{name}" if name.startswith("1/") else f"~{name}x"
        sentence = (f"values look {shown} of training at every quantile (e.g. {UNIT_FACTORS[name][1]}): unit or scale "
                    "change in the serving pipeline")
    else:
        sentence = f"values look ~{number(ratio)}x training at every quantile: scale change in the serving pipeline"
    return Diagnosis("unit_change", sentence, evidence)


def _affine_conversion(p: NumericProfile, x: np.ndarray, qt: np.ndarray, qp: np.ndarray,
                       iqr_t: float) -> Diagnosis | None:
    """Temperatures: production equals training converted by a known affine map at every quantile."""
    # only temperatures convert this way: training must lie (p01..p99) where the source unit's do
    lo, hi = float(p.quantiles[10]), float(p.quantiles[990])
    plausible = {name: c for name, c in AFFINE_CONVERSIONS.items() if c[3][0] <= lo and hi <= c[3][1]}
    if not plausible:
        return None
    name, (a, b, formula, _) = min(plausible.items(),
                                   key=lambda kv: float(np.median(np.abs(qp - (kv[1][0] * qt + kv[1][1])))))
    # in converted training IQRs, like the factor's misfit (the quantiles of n values are off by
    # ~1/sqrt(n) IQRs: 0.15 at 512 values, 0.2 at 96); training itself must fit much worse
    misfit = float(np.median(np.abs(qp - (a * qt + b)))) / (a * iqr_t)
    unchanged = float(np.median(np.abs(qp - qt))) / iqr_t
    if misfit > max(0.15, 2 / math.sqrt(len(x))) or unchanged < 1.0:
        return None
    # near its centre a feature x0.4536 (lb -> kg) looks like °F -> °C, and x3.6 like °C -> °F: a
    # known factor that fits as well is the better explanation (the factor rule missed it on noise)
    if min(float(np.median(np.abs(qp / f - qt))) for f, _ in UNIT_FACTORS.values()) / iqr_t <= misfit:
        return None
    return Diagnosis("unit_change", f"values look like training converted {name} ({formula}) at every quantile: unit "
                     "change in the serving pipeline",
                     {"conversion": name, "factor": None, "misfit_iqr": rounded(misfit),
                      "quantiles": _unit_evidence(p, x)})


def _rounding(p: NumericProfile, x: np.ndarray, min_values: int = MIN_VALUES) -> Diagnosis | None:
    if len(x) < min_values:
        return None
    iqr_t = p.quantiles[750] - p.quantiles[250]
    for step in ROUNDING_STEPS:
        # guard: only a step coarse against training's spread can move the distribution
        if step < iqr_t / 100 or _on_step(x, step) < ALMOST_ALL:
            continue
        train_share = training_share_on_step(p, step)
        if train_share >= 0.5:  # guard: training was on this grid already (integer features)
            return None
        if step == 1.0:
            sentence = (f"{percent(_on_step(x, step))} of recent values are whole numbers where training had fractions "
                        f"({percent(train_share)} whole): values are rounded or cast to integer in the serving "
                        "pipeline")
        else:
            sentence = (f"{percent(_on_step(x, step))} of recent values are multiples of {number(step)} where training "
                        f"had {percent(train_share)}: values are rounded in the serving pipeline")
        return Diagnosis("rounding", sentence, {
            "step": step, "share_on_step": rounded(_on_step(x, step)), "baseline_share_on_step": rounded(train_share),
            "n_distinct": int(len(np.unique(x))), "n_values": int(len(x))})
    return _float32(p, x)


def _float32(p: NumericProfile, x: np.ndarray) -> Diagnosis | None:
    exact = x.astype(np.float32).astype(np.float64) == x
    fractional = x != np.round(x)
    if exact.mean() < ALMOST_ALL or fractional.mean() < 0.5:
        return None
    # guard: float32 training data (its min and max, real sample values, are float32-exact too)
    ends = np.array([p.min, p.max])
    if np.all(ends.astype(np.float32).astype(np.float64) == ends):
        return None
    return Diagnosis(
        "rounding",
        f"{percent(exact.mean())} of recent values are exact float32 numbers where training had float64: "
        "values are cast to float32 in the serving pipeline",
        {"precision": "float32", "share_float32": rounded(exact.mean()), "n_values": int(len(x))},
    )


def _default_fill(p: NumericProfile, x: np.ndarray, n_missing: int, n_total: int,
                  risen_value: float | None = None, before: np.ndarray | Sequence[float] | None = None
                  ) -> Diagnosis | None:
    if len(x) < MIN_VALUES:
        return None
    values, counts = np.unique(x, return_counts=True)
    n = len(x)
    # the value that rose most above its training share (a fill of 0 into a few-valued feature need
    # not be its most frequent value); the top of a few dozen values seen 3 times is the largest of
    # many chances: a fill repeats MIN_FILL_COUNT times
    repeated = np.flatnonzero(counts >= MIN_FILL_COUNT)
    if not len(repeated):
        return None
    shares = {int(i): _numeric_share(p, float(values[i])) for i in repeated}
    top = max(shares, key=lambda i: (counts[i] / n - shares[i], counts[i]))
    v, k, baseline_share = float(values[top]), int(counts[top]), shares[top]
    share = k / n
    # positive evidence that training makes a repeat implausible: a value rare in training now
    # FILL_RISE times as frequent, or a share that rose as the missing rate fell (the fills). A value
    # common in training (a rounded reading, 0 of a zero-inflated feature) repeats in serially
    # correlated traffic without any fill
    missing = n_missing / n_total if n_total else 0.0
    drop = p.missing_rate - missing
    fills_missing = (drop >= 0.05 and (share - baseline_share) * n / max(n_total, 1) >= 0.5 * drop
                     and _share_rose(k, n, baseline_share, min_ratio=1.0))
    # a value rare in training must rise FILL_RISE times; a common one (0 of a delay) the usual 3
    # times but over at least FILL_COMMON_VALUES values: persistent readings hold one rounded value
    # for hours, a few dozen consecutive events are not evidence against training's share. Unless a
    # point-mass chain alarmed on this very value: its sequential test against the training share
    # (the baseline's own sampling error allowed for) is that evidence
    if baseline_share <= FILL_RARE_SHARE:
        rose = _share_rose(k, n, baseline_share, min_ratio=FILL_RISE)
    else:
        rose = (n >= FILL_COMMON_VALUES or v == risen_value) and _share_rose(k, n, baseline_share)
    if not (rose or fills_missing):
        return None
    # guard: a real shift moves the whole distribution; a fill adds a point mass and leaves the
    # other values distributed as in training, around the value too (a real level sits among
    # neighbours that rose with it)
    rest = x[x != v]
    if len(rest) < MIN_REST and not fills_missing:  # too few other values to see them intact
        return None
    local = None if before is None else np.asarray(before, dtype=np.float64)
    local = None if local is None else local[np.isfinite(local)]
    if (local is not None and baseline_share <= FILL_LOCAL_SHARE and len(rest) >= MIN_REST
            and np.count_nonzero(local != v) >= MIN_REST
            and _share_rose(k, n, np.count_nonzero(local == v) / len(local))):
        # time order: a value rare in training whose share rose at the change point, and the other values
        # distributed as just before it (two-sample KS); a common value (a calm spell's wind speed) is not
        # judged on a local reference, whose weather may be the same shift
        local = local[local != v]
        if _ks_two_sample(rest, local) > 1.63 * math.sqrt(1 / len(rest) + 1 / len(local)) + 0.05:
            return None
        sentinel = _sentinel_name(p, v) or "a repeated value"
        return _default_fill_diagnosis(p, v, share, baseline_share, sentinel, n_missing, n_total)
    # the KS test is loose on a few dozen values: values outside the training range, which training
    # makes as rare as 1 in its rows, show a moved distribution on their own
    outside = int(np.count_nonzero((rest < p.min) | (rest > p.max)))
    if len(rest) >= MIN_REST and (
            _ks_to_training(p, rest, v, baseline_share) > 1.63 / math.sqrt(len(rest)) + 0.05
            or (outside >= 2 and outside >= 0.02 * len(rest))
            or _crowded_around(p, rest, v, baseline_share)):
        return None
    sentinel = _sentinel_name(p, v) or "a repeated value"
    return _default_fill_diagnosis(p, v, share, baseline_share, sentinel, n_missing, n_total)


def _crowded_around(p: NumericProfile, rest: np.ndarray, v: float, share_v: float) -> bool:
    """Whether the values other than v crowd around it: their share within 5 % of training's
    probability mass either side of v (of its atom, when training held v often) is over twice
    what training puts there (plus 5 points, and 5 sigmas)."""
    q = p.quantiles
    left, right = int(np.searchsorted(q, v, side="left")), int(np.searchsorted(q, v, side="right"))
    if left < right:  # ties: training's atom at v spans these probabilities
        u_lo, u_hi = float(QUANTILE_PROBS[left]), float(QUANTILE_PROBS[right - 1])
    else:
        u_lo = u_hi = float(np.interp(v, q, QUANTILE_PROBS))
    lo = -math.inf if u_lo <= 0.05 else float(np.interp(u_lo - 0.05, QUANTILE_PROBS, q))
    hi = math.inf if u_hi >= 0.95 else float(np.interp(u_hi + 0.05, QUANTILE_PROBS, q))
    # what training puts in [lo, hi] besides v: the bounds may fall on an atom of a few-valued feature
    expected = min(1.0, max(0.0, _training_mass(p, lo, hi) - share_v) / max(1e-12, 1 - share_v))
    k = int(np.count_nonzero((rest >= lo) & (rest <= hi)))
    n = len(rest)
    return k / n > 2 * expected + 0.05 and (k - n * expected) >= 5 * math.sqrt(n * max(expected, 0.01))


def _training_mass(p: NumericProfile, lo: float, hi: float) -> float:
    """Training's share of values in [lo, hi] (exact for few-valued features, else from the quantiles)."""
    if p.discrete_values is not None and p.discrete_freqs is not None:
        inside = (p.discrete_values >= lo) & (p.discrete_values <= hi)
        return float(np.sum(p.discrete_freqs[inside]) / max(np.sum(p.discrete_freqs), 1e-12))
    q = p.quantiles
    below_hi = 1.0 if hi >= q[-1] else float(QUANTILE_PROBS[np.searchsorted(q, hi, side="right") - 1]) \
        if hi in q else float(np.interp(hi, q, QUANTILE_PROBS))
    below_lo = 0.0 if lo <= q[0] else float(QUANTILE_PROBS[np.searchsorted(q, lo, side="left")]) \
        if lo in q else float(np.interp(lo, q, QUANTILE_PROBS))
    return max(0.0, below_hi - below_lo)


def _default_fill_diagnosis(p: NumericProfile, v: float, share: float, baseline_share: float, sentinel: str,
                            n_missing: int, n_total: int) -> Diagnosis:
    missing = n_missing / n_total if n_total else 0.0
    sentence = (f"value {number(v)} ({sentinel}) makes {percent(share)} of recent values against "
                f"{percent(baseline_share)} in training")
    if p.missing_rate >= 0.01 and missing < p.missing_rate / 2:
        sentence += (f", while the missing rate fell from {percent(p.missing_rate)} to {percent(missing)}: "
                     "missing values are filled with a default at serving")
    elif missing > 2 * p.missing_rate + 0.01:
        sentence += (f", while the missing rate rose from {percent(p.missing_rate)} to {percent(missing)}: "
                     "an upstream source fails and its values are replaced by a default")
    else:
        sentence += ": a default or fill value replaces real values in the serving pipeline"
    return Diagnosis("default_fill", sentence, {
        "value": rounded(v), "sentinel": sentinel, "share": rounded(share), "baseline_share": rounded(baseline_share),
        "missing_rate": rounded(missing), "baseline_missing_rate": rounded(p.missing_rate)})


def _numeric_fallback(p: NumericProfile, x: np.ndarray, n_missing: int, n_invalid: int, n_total: int) -> Diagnosis:
    missing = n_missing / n_total if n_total else 0.0
    invalid = n_invalid / n_total if n_total else 0.0
    evidence: dict[str, Any] = {
        "baseline": {"mean": rounded(p.mean), "std": rounded(p.std), "p50": rounded(p.quantiles[500]),
                     "iqr": rounded(p.quantiles[750] - p.quantiles[250]), "missing_rate": rounded(p.missing_rate),
                     "invalid_rate": rounded(p.invalid_rate)},
        "current": {"missing_rate": rounded(missing), "invalid_rate": rounded(invalid), "n_values": int(len(x))},
    }
    rates = []
    if _rate_rose(missing, p.missing_rate, n_total):
        rates.append(("missing_rate", f"missing rate {percent(p.missing_rate)} -> {percent(missing)}: values are lost "
                      "upstream of serving"))
    if _rate_rose(invalid, p.invalid_rate, n_total):
        rates.append(("invalid_values", f"non-numeric values {percent(p.invalid_rate)} -> {percent(invalid)}: values "
                      "of the wrong type reach serving"))
    if len(x) < 2:
        cause, sentence = rates[0] if rates else ("distribution_shift", "too few recent values to describe")
        return Diagnosis(cause, sentence, evidence)
    mean, std, median = float(x.mean()), float(x.std()), float(np.median(x))
    iqr_t = p.quantiles[750] - p.quantiles[250]
    iqr_p = float(np.subtract(*np.quantile(x, [0.75, 0.25])))
    unit = iqr_t / 1.349 if iqr_t > 0 else p.std or 1.0  # the IQR of a normal is 1.349 std
    location_z = (median - p.quantiles[500]) / unit
    # a training spread of 0 (a constant feature) has no ratio: any spread now is a change of scale
    spread = iqr_p / iqr_t if iqr_t > 0 else std / p.std if p.std > 0 else None
    outside = float(np.mean((x < p.min) | (x > p.max)))
    evidence["current"].update({"mean": rounded(mean), "std": rounded(std), "p50": rounded(median),
                                "iqr": rounded(iqr_p), "outside_training_range": rounded(outside)})
    location = abs(location_z) >= 0.25
    scale = std > 0 if spread is None else not 0.8 <= spread <= 1.25
    moved = {(True, True): "location+scale", (True, False): "location", (False, True): "scale"}.get((location, scale))
    # the share of traffic the change affects, for the next step: at least this share of the values
    # crossed some value relative to training (the KS distance, a lower bound of the share moved)
    evidence.update({"moved": moved or "shape", "location_shift_std": rounded(location_z),
                     "spread_ratio": None if spread is None else rounded(spread),
                     "shifted_share": rounded(_ks_to_training(p, x))})
    numbers = (f"mean {number(p.mean)} -> {number(mean)}, std {number(p.std)} -> {number(std)}, "
               f"median {number(p.quantiles[500])} -> {number(median)}")
    if outside >= 0.01:
        numbers += f"; {percent(outside)} of values outside the training range [{number(p.min)}, {number(p.max)}]"
    if moved is None and rates:  # the values still look like training: the rate is the news
        cause, sentence = rates[0]
        return Diagnosis(cause, f"{sentence}; valid values without a significant move ({numbers})", evidence)
    what = {"location+scale": "location and spread changed", "location": "location shift, spread unchanged",
            "scale": "spread changed, location unchanged", None: "shape or tails changed"}[moved]
    cause = {"location": "location_shift", "scale": "scale_shift",
             "location+scale": "location_scale_shift"}.get(moved or "", "distribution_shift")
    return Diagnosis(cause, "; ".join([f"{what}: {numbers}"] + [s for _, s in rates]), evidence)


# ---- categorical -----------------------------------------------------------------------------
# normalisations tried in order: the first under which an unseen category meets a training one names the defect
def _nfkc(s: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", s).split()).casefold()


def _number_form(s: str) -> str:
    try:
        f = float(s.replace(",", "").strip())
    except ValueError:
        return s
    return repr(f) if math.isfinite(f) else s


def _without_separators(s: str) -> str:
    # a number keeps its dot and sign: removing them would turn "1.0" into "10" and "-1" into "1"
    return s if _NUMBER.match(s) else re.sub(r"[-_.\s]+", "", _nfkc(s))


_NORMALISATIONS = (
    ("letter_case", "letter case", str.casefold),
    ("whitespace", "surrounding whitespace", str.strip),
    ("letter_case+whitespace", "letter case and whitespace", lambda s: s.strip().casefold()),
    ("unicode_whitespace", "unicode form or inner whitespace", _nfkc),
    # before separators: "1.0" is the number 1 reformatted, not "10" with a dot in it
    ("number_format", "number formatting", _number_form),
    ("separators", "separators ('-', '_', ' ', '.')", _without_separators),
)


def diagnose_categorical(
    profile: CategoricalProfile,
    counts: Mapping[str, int],
    *,
    n_missing: int,
    n_total: int,
    timing: ChangeTiming | None = None,
    n_values: int | None = None,
    after_change: tuple[Mapping[str, int], int, int] | None = None,
) -> Diagnosis:
    """Diagnose a categorical feature from its recent category counts (keys spelt by
    `baselines.profile.category_key`) and the same window's missing count and event count.

    n_values: the window's valid values, when `counts` leave some out (`category_counts` leaves out
    the part of the "other" bucket training predicts); by default the sum of `counts`.
    after_change: (counts, missing count, events) since a point-mass chain's change point, when the
    window reaches further back: a category taking over is judged on these from MIN_CHANGE_VALUES on."""
    counts = {str(k): int(c) for k, c in counts.items() if c > 0}
    n = max(n_values or 0, sum(counts.values()))
    stuck = None
    if after_change is not None and after_change[2] < n_total:
        tail = {str(k): int(c) for k, c in after_change[0].items() if c > 0}
        stuck = _category_dominates(profile, tail, sum(tail.values()), after_change[1], after_change[2],
                                    MIN_CHANGE_VALUES) if tail else None
        stuck = stuck if stuck is not None and stuck.cause == "stuck_value" else None
    value = (
        stuck
        or _formatting(profile, counts, n)
        or _category_dominates(profile, counts, n, n_missing, n_total)
        or _categorical_fallback(profile, counts, n, n_missing, n_total)
    )
    return _with_timing(value, timing)


def _formatting(p: CategoricalProfile, counts: dict[str, int], n: int) -> Diagnosis | None:
    unseen = {c: k for c, k in counts.items() if c not in p.categories}
    unseen_total = sum(unseen.values())
    if not unseen_total:
        return None
    indexes = []
    for rule, words, norm in _NORMALISATIONS:
        index: dict[str, str] = {}
        for t, _ in sorted(p.categories.items(), key=lambda kv: kv[1]):
            index[norm(t)] = t  # the most frequent training spelling wins a collision
        indexes.append((rule, words, norm, index))
    mappings = []
    for c, k in sorted(unseen.items(), key=lambda kv: -kv[1]):
        for rule, _, norm, index in indexes:
            t = index.get(norm(c))
            if t is not None:
                mappings.append({"seen": c, "training": t, "rule": rule, "share": rounded(k / n), "count": k})
                break
    matched = sum(m["count"] for m in mappings)
    # guard: genuinely new categories (no training spelling matches) are not formatting; a few
    # accidental matches among many new values do not explain the alert either. Only the stored
    # categories can be matched: of an ID-like feature's respelt values, about their share does
    if matched < 5 or matched < 0.5 * (1.0 - p.expected_other_freq) * unseen_total:
        return None
    rules = {m["rule"] for m in mappings}
    cause = "letter_case" if rules == {"letter_case"} else "formatting"
    words = " / ".join(w for r, w, _, _ in indexes if r in rules)
    shown = ", ".join(f"{m['seen']!r} ↔ {m['training']!r}" for m in mappings[:3])
    more = f" and {len(mappings) - 3} more" if len(mappings) > 3 else ""
    return Diagnosis(
        cause,
        f"unseen categories match training categories after normalising {words} ({shown}{more}), "
        f"{percent(matched / n)} of recent values: preprocessing mismatch in the serving pipeline",
        {"mappings": [{k: v for k, v in m.items() if k != "count"} for m in mappings[:10]],
         "matched_share": rounded(matched / n), "unseen_share": rounded(unseen_total / n), "n_mappings": len(mappings)},
    )


def _category_dominates(p: CategoricalProfile, counts: dict[str, int], n: int, n_missing: int,
                        n_total: int, min_values: int = MIN_VALUES) -> Diagnosis | None:
    if n < min_values or not n_total:
        return None
    floor = p.other_freq / max(1, p.n_distinct - len(p.categories)) if p.n_distinct > len(p.categories) else 0.0
    missing = n_missing / n_total
    present = 1 - p.missing_rate - p.invalid_rate  # training shares are of present values; compare per event

    def rise(c: str) -> float:
        return counts[c] / n_total - p.categories.get(c, floor) * present

    c = max(counts, key=rise)
    k, share, baseline_share = counts[c], counts[c] / n, p.categories.get(c, floor)
    evidence = {"value": c, "share": rounded(share), "baseline_share": rounded(baseline_share),
                "missing_rate": rounded(missing), "baseline_missing_rate": rounded(p.missing_rate)}
    # missing values filled with a real category: its rise per event matches the fall of the missing rate
    drop = p.missing_rate - missing
    if drop >= 0.05 and rise(c) >= 0.5 * drop and _share_rose(k, n_total, baseline_share * present, min_ratio=1.0):
        return Diagnosis("default_fill", f"category {c!r} makes {percent(share)} of recent values against "
                         f"{percent(baseline_share)} in training, while the missing rate fell from "
                         f"{percent(p.missing_rate)} to {percent(missing)}: missing values are filled with a default "
                         "at serving", evidence)
    top_training = max(p.categories.values(), default=0.0)
    # a real category gaining share is a population shift unless it takes over almost everything:
    # taking over is the evidence then, not a rise by 3x (the largest of 3 airports, 36 %, cannot triple)
    takes_over = share >= ALMOST_ALL and top_training < 0.8 and _share_rose(k, n, baseline_share, min_ratio=1.0)
    if not (takes_over or _share_rose(k, n, baseline_share)):
        return None
    # a placeholder common in training ("0", "other" as real codes) may just gain share: a fill
    # needs the share far above training's, as for numbers
    if c.strip().casefold() in _CATEGORY_SENTINELS and _share_rose(k, n, baseline_share, min_ratio=FILL_RISE):
        return Diagnosis("default_fill", f"category {c!r} makes {percent(share)} of recent values against "
                         f"{percent(baseline_share)} in training: a default or placeholder replaces real values in the "
                         "serving pipeline", evidence)
    if takes_over:
        return Diagnosis("stuck_value", f"{percent(share)} of recent values are {c!r} (training: "
                         f"{percent(baseline_share)}, largest category {percent(top_training)}): the feature is stuck "
                         "at one category", evidence)
    return None


def _categorical_fallback(p: CategoricalProfile, counts: dict[str, int], n: int, n_missing: int,
                          n_total: int) -> Diagnosis:
    missing = n_missing / n_total if n_total else 0.0
    unseen = sorted(((c, k) for c, k in counts.items() if c not in p.categories), key=lambda ck: -ck[1])
    unseen_total = sum(k for _, k in unseen)
    unseen_share = unseen_total / n if n else 0.0
    expected_other = p.expected_other_freq
    evidence: dict[str, Any] = {"missing_rate": rounded(missing), "baseline_missing_rate": rounded(p.missing_rate),
                                "unseen_share": rounded(unseen_share), "baseline_other_share": rounded(p.other_freq),
                                "expected_other_share": rounded(expected_other)}
    # the unseen counts are what exceeds the share training predicts outside its categories: they must
    # exceed it by 2 % of the values and 5 binomial sigmas of that share
    if n and unseen_total >= max(0.02 * n, 5 * math.sqrt(n * expected_other * (1 - expected_other))):
        evidence["top_unseen"] = {c: rounded(k / n) for c, k in unseen[:5]}
        if expected_other < LONG_TAIL_OTHER:
            top = ", ".join(f"{c!r} ({percent(k / n)})" for c, k in unseen[:3])
            what = ("1 category unseen in training makes" if len(unseen) == 1
                    else f"{len(unseen)} categories unseen in training make")
            return Diagnosis("new_category", f"{what} {percent(unseen_share)} of recent values: {top}", evidence)
        # ID-like: an unseen value is the rule, and one value's share of a few hundred says nothing
        outside = 1.0 - sum(counts.get(c, 0) for c in p.categories) / n
        return Diagnosis("new_category", f"{percent(outside)} of recent values are outside the training categories "
                         f"against {percent(expected_other)} expected from training's long tail (values seen once "
                         f"stand for the never-seen ones); most frequent new values: "
                         f"{', '.join(repr(c) for c, _ in unseen[:3])}", evidence)
    if _rate_rose(missing, p.missing_rate, n_total):
        return Diagnosis("missing_rate", f"missing rate {percent(p.missing_rate)} -> {percent(missing)}: values are "
                         "lost upstream of serving", evidence)
    if not n:
        return Diagnosis("category_shift", "no recent values to compare", evidence)
    # the share of traffic the change affects, for the next step: the values above their training share
    # (total variation distance; the values outside the training categories against the share expected there)
    outside_now = 1.0 - sum(counts.get(c, 0) for c in p.categories) / n
    evidence["shifted_share"] = rounded(sum(max(0.0, counts.get(c, 0) / n - share) for c, share in p.categories.items())
                                        + max(0.0, outside_now - expected_other))
    # a category expected fewer than MIN_EXPECTED times in n values has no share to speak of: those are
    # one cell, and the values outside the training categories another, as in the chi-square test
    large = [c for c, share in p.categories.items() if share * n >= MIN_EXPECTED]
    moves: list[tuple[str | None, str, float, float]] = [(c, repr(c), p.categories[c], counts.get(c, 0) / n)
                                                         for c in large]  # (category, words, training, now)
    rare = len(p.categories) - len(large)
    if rare or expected_other or unseen:
        outside = (expected_other, 1.0 - sum(counts.get(c, 0) for c in p.categories) / n)
        rest = (max(0.0, 1.0 - expected_other - sum(m[2] for m in moves)),
                max(0.0, 1.0 - outside[1] - sum(m[3] for m in moves)))
        evidence["long_tail"] = {"rare_categories": rare, "rare_share": [rounded(v) for v in rest],
                                 "outside_share": [rounded(v) for v in outside]}
        moves.append((None, "values outside the training categories", *outside))
        if rare:
            moves.append((None, f"{count(rare)} rare training categories (under {percent(MIN_EXPECTED / n)} each)",
                          *rest))
    moves = sorted(moves, key=lambda m: -abs(m[3] - m[2]))[:3]
    evidence["largest_moves"] = {c: [rounded(b), rounded(now)] for c, _, b, now in moves if c is not None}
    text = ", ".join(f"{words} {percent(b)} -> {percent(now)}" for _, words, b, now in moves)
    return Diagnosis("category_shift", f"category shares moved: {text}", evidence)


# ---- timing and versions ---------------------------------------------------------------------
def diagnose_change_time(timing: ChangeTiming) -> Diagnosis | None:
    """Abrupt or gradual, and does it coincide with a model_version? None when nothing is datable.

    Fits the block means with a step (one change point) and with a ramp (flat, linear from s to e,
    flat); the ramp is preferred only when it fits clearly better.
    """
    versions = _versions(timing)
    change = _fit_change(timing)
    if change is None:
        return versions
    kind, start, end, before, after, off_at_oldest = change
    evidence: dict[str, Any] = {"change": kind, "start_event": start, "end_event": end,
                                "score_before": rounded(before), "score_after": rounded(after)}
    if kind == "from_start":
        evidence.pop("end_event")
        base = Diagnosis("from_start", f"the feature differs from training since the first monitored event (score "
                         f"{number(after)}): skew from the start points to the serving pipeline, not to a change in "
                         "production", evidence)
        return _merge_versions(base, versions)
    if kind == "undated":
        base = Diagnosis("undated", f"off training (score {number(after)}) over all the ~{count(end - start)} "
                         f"events of kept history: the change began before event {start:,} and cannot be dated",
                         evidence)
        return _merge_versions(base, versions)
    # a version change explains a change that starts within its resolution (a block, or a tenth of a ramp)
    resolution = max(_block_at(timing, start), (end - start) // 10)
    coincident = sorted((abs(first - start), v, first) for v, first in timing.version_first_seen.items()
                        if abs(first - start) <= resolution and first > 0)
    if coincident:
        _, v, first = coincident[0]
        earlier = [(f, u) for u, f in timing.version_first_seen.items() if f < first]
        previous = max(earlier)[1] if earlier else timing.baseline_version
        evidence.update({"version": v, "version_first_seen": first, "previous_version": previous})
        frm = f"{previous} -> {v}" if previous and previous != v else v
        return Diagnosis("version_change", f"{kind} change at event ~{start:,} coincides with model_version {frm} "
                         f"(first served at event {first:,}): the new deployment computes this feature differently",
                         evidence)
    if kind == "abrupt":
        base = Diagnosis("abrupt_shift", f"abrupt change at event ~{start:,} with no model_version change: points to a "
                         "pipeline or upstream deploy at that time", evidence)
    elif off_at_oldest:
        # already off training when the kept history begins: the ramp's true start is unknown
        oldest = int(timing.end_event - sum(timing.block_counts))
        evidence["off_training_at_oldest_kept"] = oldest
        base = Diagnosis("gradual_shift", f"gradual shift over at least ~{count(end - start)} events (events "
                         f"{start:,} to {end:,}, already off training at event {oldest:,}, the oldest kept): real "
                         "population change, consider retraining", evidence)
    elif end - start >= LONG_RAMP:
        base = Diagnosis("gradual_shift", f"gradual shift over ~{count(end - start)} events (events {start:,} to "
                         f"{end:,}): real population change, consider retraining", evidence)
    else:
        base = Diagnosis("gradual_shift", f"change ramped over ~{count(end - start)} events (events {start:,} to "
                         f"{end:,}): a staged rollout upstream or a fast population change; check deploys in that "
                         "span", evidence)
    return _merge_versions(base, versions)


def diagnose_versions(served_versions: Mapping[str, int], baseline_version: str | None) -> Diagnosis | None:
    """Served model_version differs from the baseline's, or several versions are served together."""
    total = sum(served_versions.values())
    if not total:
        return None
    shares = {str(v): c / total for v, c in sorted(served_versions.items(), key=lambda vc: -vc[1])}
    evidence = {"served_versions": {v: rounded(s) for v, s in shares.items()}, "baseline_version": baseline_version}
    mixed = [v for v, s in shares.items() if s >= 0.05]
    if len(mixed) > 1:
        text = ", ".join(f"{v} ({percent(shares[v])})" for v in mixed)
        return Diagnosis("mixed_versions", f"model versions {text} are served together: a partial rollout; check "
                         "whether one of them computes this feature differently", evidence)
    main = next(iter(shares))
    if baseline_version is not None and main != baseline_version:
        return Diagnosis("version_mismatch", f"model_version {main} is served but the baseline describes version "
                         f"{baseline_version}: rebuild the baseline for {main} or check the deployment", evidence)
    return None


def _versions(t: ChangeTiming) -> Diagnosis | None:
    return diagnose_versions(t.served_versions, t.baseline_version)


def _merge_versions(base: Diagnosis, versions: Diagnosis | None) -> Diagnosis:
    """Skew since the first event is explained by the versions served; a dated change keeps its cause."""
    if versions is None:
        return base
    if base.cause in ("from_start", "undated"):
        return Diagnosis(versions.cause, f"{versions.sentence}; {base.sentence}",
                         {**base.evidence, **versions.evidence})
    return Diagnosis(base.cause, f"{base.sentence}; {versions.sentence}", {**base.evidence, **versions.evidence})


def _fit_change(t: ChangeTiming) -> tuple[str, int, int, float, float, bool] | None:
    """(kind, start event, end event, level before, level after, already off training at the oldest block)."""
    y = np.asarray(t.block_means, dtype=np.float64)
    w = np.asarray(t.block_counts, dtype=np.float64)
    if len(y) != len(w) or len(y) < 2 or np.any(w <= 0):
        return None
    starts = t.end_event - np.cumsum(w[::-1])[::-1]
    centres = starts + w / 2
    # steps: one change at every inner block boundary
    step_g = (np.arange(len(y))[None, :] >= np.arange(1, len(y))[:, None]).astype(np.float64)
    step_sse, step_a, step_b = _weighted_fit(step_g, y, w)
    # ramps: flat, linear from s to e, flat; s and e on at most ~64 boundaries (the fit is O(pairs x blocks))
    bounds = np.concatenate([starts, [t.end_event]])
    bounds = bounds[np.unique(np.linspace(0, len(bounds) - 1, min(len(bounds), 64)).round().astype(int))]
    s, e = np.meshgrid(bounds, bounds, indexing="ij")
    s, e = s[e > s], e[e > s]
    ramp_g = np.clip((centres[None, :] - s[:, None]) / (e - s)[:, None], 0.0, 1.0)
    ramp_sse, ramp_a, ramp_b = _weighted_fit(ramp_g, y, w)
    i, j = int(np.argmin(step_sse)), int(np.argmin(ramp_sse))
    # per-event noise from the best fit's residuals (near 1 for a standardised score)
    sigma2 = max(float(min(ramp_sse[j], step_sse[i])) / max(1, len(y) - 4), 1e-12)
    n_before, n_after = float(w[: i + 1].sum()), float(w[i + 1 :].sum())
    jump_z = abs(step_b[i] - step_a[i]) / math.sqrt(sigma2 * (1 / n_before + 1 / n_after))
    if jump_z < 6:
        # no change inside the history: a level off training since event 0 is skew from the start;
        # off training over a history that starts later, the change is older than the history
        level = float(np.sum(w * y) / w.sum())
        if abs(level) / math.sqrt(sigma2 / w.sum()) < 6:
            return None
        kind = "from_start" if starts[0] <= 0 else "undated"
        return kind, int(max(starts[0], 0)), int(t.end_event), 0.0, level, kind == "undated"
    if step_sse[i] - ramp_sse[j] > 16 * sigma2 and e[j] - s[j] > 2 * _block_at(t, int(s[j])):
        flat_before = float(np.sum(w[ramp_g[j] == 0]))
        off_at_oldest = starts[0] > 0 and (flat_before == 0 or abs(ramp_a[j]) / math.sqrt(sigma2 / flat_before) >= 4)
        return "gradual", int(s[j]), int(e[j]), float(ramp_a[j]), float(ramp_b[j]), bool(off_at_oldest)
    at = int(starts[i + 1])
    return "abrupt", at, at, float(step_a[i]), float(step_b[i]), False


def _weighted_fit(g: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares y ~ a + (b - a) * g per row of g, weighted by w: (sse, a, b) per row."""
    sw = w.sum()
    gm = (g * w).sum(axis=1) / sw
    ym = float((y * w).sum() / sw)
    gc = g - gm[:, None]
    var = (w * gc**2).sum(axis=1)
    slope = np.where(var > 0, (w * gc * (y - ym)).sum(axis=1) / np.where(var > 0, var, 1.0), 0.0)
    a = ym - slope * gm
    resid = y[None, :] - (a[:, None] + slope[:, None] * g)
    return (w * resid**2).sum(axis=1), a, a + slope


def _block_at(t: ChangeTiming, event: int) -> int:
    counts = np.asarray(t.block_counts, dtype=np.int64)
    starts = t.end_event - np.cumsum(counts[::-1])[::-1]
    i = int(np.clip(np.searchsorted(starts, event, side="right") - 1, 0, len(counts) - 1))
    return int(counts[i])


def _with_timing(value: Diagnosis, timing: ChangeTiming | None) -> Diagnosis:
    when = diagnose_change_time(timing) if timing is not None else None
    if when is None:
        return value
    # a named pipeline defect stays the cause; otherwise the timing is the better explanation, if it has one
    cause = value.cause if value.is_pipeline_bug or when.cause == "undated" else when.cause
    return Diagnosis(cause, f"{value.sentence}; {when.sentence}",
                     {**value.evidence, "timing": {"cause": when.cause, **when.evidence}})


# ---- alerts without a feature profile -----------------------------------------------------------
def diagnose_serving(family: str, served_versions: Mapping[str, int], version: str | None,
                     baseline_version: str | None) -> Diagnosis:
    """A serving alarm (`detectors.serving`): the versions served, else the one mismatching version."""
    return diagnose_versions(served_versions, baseline_version) or Diagnosis(
        family, f"model_version {version} served, baseline describes {baseline_version}", {})


def diagnose_schema(unexpected: Sequence[Sequence], absent: Sequence[Sequence]) -> Diagnosis:
    """A schema alarm (`detectors.schema`): the most frequent unexpected names and the known features
    absent from those events, each a [name, events] pair.

    >>> d = diagnose_schema([["latency_ms", 600], ["debug", 3]], [["latency", 600]])
    >>> d.cause, d.sentence[d.sentence.index("("):]
    ('schema', '(latency_ms in 600 events, debug in 3) and lack known ones (latency in 600): a renamed field in \
the serving pipeline')
    """
    def listed(pairs: Sequence[Sequence], unit: str) -> str:
        return ", ".join(f"{name} in {count(n)}{unit if k == 0 else ''}" for k, (name, n) in
                         enumerate(pairs))

    sentence = f"events carry feature names the baseline does not know ({listed(unexpected, ' events')})"
    if absent:
        return Diagnosis("schema", f"{sentence} and lack known ones ({listed(absent, '')}): a renamed field in "
                         "the serving pipeline", {})
    return Diagnosis("schema", f"{sentence}: a new field in the serving pipeline", {})


def diagnose_confidence(c: Candidate, base: dict, current: dict, low_share: float | None = None) -> Diagnosis:
    """A confidence alarm: a drop (against the training summary `base`) or values that are not numbers.

    A drop is described by what was seen, not by a verdict: the mean and median confidence against
    training's, and `low_share`, the share of recent predictions below training's 5th percentile
    (5% in training), with the usual causes to check.

    >>> c = Candidate(event_index=3099, rank=(0,), feature="confidence", kind="confidence_drop",
    ...               family="confidence", detector="cusum", statistic=40.0, threshold=35.0, p_value=None, onset=3000)
    >>> training = {"mean": 0.8, "p50": 0.82, "p05": 0.6}
    >>> print(diagnose_confidence(c, training, {"mean": 0.62, "p50": 0.64}, 0.41).sentence)
    ... # doctest: +NORMALIZE_WHITESPACE
    prediction confidence fell since event ~3,000: mean 0.8 -> 0.62, median 0.82 -> 0.64; 41% of predictions below
    0.6 (training: 5%): inputs unlike training (a population shift, or a feature broken upstream: check the
    features' alerts of the same time) or a changed model or calibration (check deployments)
    """
    if c.kind != "confidence_drop":
        return Diagnosis("invalid_confidence", "confidence values that are not numbers in [0, 1] are being served: "
                         "a broken output mapping in the serving pipeline", {})
    since = f" since event ~{c.onset:,}" if c.onset is not None else ""
    seen = (f"mean {number(base['mean'])} -> {number(current.get('mean'))}, "
            f"median {number(base['p50'])} -> {number(current.get('p50'))}")
    evidence: dict[str, Any] = {}
    if low_share is not None and "p05" in base:
        seen += f"; {percent(low_share)} of predictions below {number(base['p05'])} (training: 5%)"
        evidence = {"low_confidence_share": rounded(low_share), "low_confidence_below": rounded(base["p05"])}
    return Diagnosis("confidence_drop", f"prediction confidence fell{since}: {seen}: inputs unlike training (a "
                     "population shift, or a feature broken upstream: check the features' alerts of the same time) "
                     "or a changed model or calibration (check deployments)", evidence)


# ---- what the alarm's test adds ----------------------------------------------------------------
def lead_with_change(d: Diagnosis, base: dict, current: dict, c: Candidate) -> Diagnosis:
    """Start a numeric drift's diagnosis with what moved (location / scale / missingness) and where,
    then the rule's cause. base, current: the training and recent summaries."""
    if "mean" not in current or c.kind != "drift":
        return d
    moved = []
    std_b = base["std"] or 1.0
    if abs(current["mean"] - base["mean"]) >= 0.2 * std_b:
        moved.append("location")
    if (current.get("std", 0) and base["std"]
            and abs(math.log(max(current["std"], 1e-300) / base["std"])) >= math.log(1.25)):
        moved.append("scale")
    what = " and ".join(moved) + " shift" if moved else "shape change"
    detected = f"detected by {c.detector} at event {c.event_index + 1:,}"
    since = ""
    if c.onset is not None and c.detector in CHANGE_POINT_DETECTORS and "timing" not in d.evidence:
        # the test's own change-point estimate: a large step is caught within a few hundred events
        run = c.event_index + 1 - c.onset
        since = (f"abruptly at event ~{c.onset:,}" if run <= ABRUPT_WITHIN_EVENTS
                 else f"gradually over ~{run:,} events since event ~{c.onset:,}")
    if "moved" in d.evidence:
        # the rule's own description already gives the numbers: say only which test fired, and when
        return Diagnosis(d.cause, f"{detected}{', ' + since if since else ''}: {d.sentence}", d.evidence)
    when = f"{since} ({detected})" if since else detected
    head = (f"mean {number(base['mean'])} -> {number(current['mean'])} (std {number(base['std'])} -> "
            f"{number(current['std'])}) {when}: {what}")
    return Diagnosis(d.cause, f"{head}; {d.sentence}", d.evidence)


#: rate alarms (family) -> (cause, what rose, what it usually means)
RATE_ALARMS = {
    "missing": ("missing_rate", "missing rate", "values are lost upstream of serving"),
    "invalid": ("invalid_values", "invalid values", "values of the wrong type reach serving"),
}


def lead_with_rate(d: Diagnosis, c: Candidate, base_rate: float, current_rate: float,
                   n_current: int) -> Diagnosis:
    """Word a rate alarm (a missing or invalid rate CUSUM) by the rate that rose, not by the values.

    The value rules still run: a pipeline defect they name (numbers sent as strings, a default
    fill) stays the cause and follows the rate; otherwise the cause is the rate's own
    (`missing_rate`, `invalid_values`), since the alarm says nothing about the values' shape.

    Parameters
    ----------
    d
        The value rules' diagnosis of the feature.
    c
        The alarm; its family says which rate, its onset since when.
    base_rate, current_rate
        The training rate and the rate over the `n_current` recent events (since the onset, at least
        a few dozen events: the alert's "current").
    n_current
        Events the current rate is measured on.

    Examples
    --------
    >>> c = Candidate(event_index=25_300, rank=(0,), feature="x", kind="data_quality", family="missing",
    ...               detector="missing_rate", statistic=21.0, threshold=20.7, p_value=None, evidence={}, onset=24_984)
    >>> print(lead_with_rate(Diagnosis("distribution_shift", "shape or tails changed"), c, 0.1, 0.24, 317).sentence)
    missing rate 10% -> 24% since event ~24,984 (317 events): values are lost upstream of serving
    """
    if c.family not in RATE_ALARMS:
        return d
    cause, what, meaning = RATE_ALARMS[c.family]
    span = c.event_index + 1 - c.onset if c.onset is not None else None
    if span is None:
        where = f"over the last {n_current:,} events"
    elif span == n_current:  # the rate since the change: its steady level
        where = f"since event ~{c.onset:,} ({n_current:,} events)"
    elif span < n_current:
        where = f"over the last {n_current:,} events, rising since event ~{c.onset:,}"
    else:
        where = f"since event ~{c.onset:,} (last {n_current:,} events)"
    head = f"{what} {percent(base_rate)} -> {percent(current_rate)} {where}"
    if d.is_pipeline_bug:
        return Diagnosis(d.cause, f"{head}; {d.sentence}", d.evidence)
    return Diagnosis(cause, f"{head}: {meaning}", {**d.evidence, "rate": {
        "baseline": rounded(base_rate), "current": rounded(current_rate), "events": n_current}})


def with_version_coincidence(d: Diagnosis, c: Candidate, first_seen: Mapping[str, int],
                             baseline_version: str | None) -> Diagnosis:
    """Relate the alert's own change-point estimate to a model_version that appeared then.

    The block-history fit of the diagnosis dates only changes a few blocks old; a test that fires
    within events of a deploy knows its onset already. A version first seen within
    VERSION_COINCIDENCE_EVENTS of it (or a tenth of the span since) is named; the cause becomes
    `version_change` unless a more specific pipeline defect (unit, case, fill...) was found.
    """
    if c.onset is None or "version_change" in (d.cause, (d.evidence.get("timing") or {}).get("cause")):
        return d
    tolerance = max(VERSION_COINCIDENCE_EVENTS, (c.event_index - c.onset) // 10)
    near = sorted((abs(first - c.onset), first, v) for v, first in first_seen.items()
                  if 0 < first <= c.event_index and abs(first - c.onset) <= tolerance)
    if not near:
        return d
    _, first, version = near[0]
    earlier = [(f, v) for v, f in first_seen.items() if f < first]
    previous = max(earlier)[1] if earlier else baseline_version
    sentence = (f"{d.sentence}; the change starts at event ~{c.onset:,}, when model_version "
                f"{previous} -> {version} appeared (event {first:,}): check what that deployment changed")
    evidence = {**d.evidence, "version_change": {"version": version, "previous_version": previous,
                                                 "version_first_seen": first, "change_start_event": c.onset}}
    return Diagnosis(d.cause if d.is_pipeline_bug else "version_change", sentence, evidence)


def category_counts(profile: CategoricalProfile, categories: list[str], codes: np.ndarray,
                    top_unseen: list[list]) -> dict[str, int]:
    """Recent counts per category label (`diagnose_categorical`'s counts), the window's "other"
    bucket split among the unseen values.

    codes: the recent category codes (index into `categories`, len(categories) for "other",
    negative for missing or invalid); top_unseen: [label, count] of the unseen values, most
    frequent first. The "other" bucket also holds training categories outside the top-K (at about
    the training "other" share): only what exceeds that share is attributed to the unseen values,
    by their counts in the whole-stream sketch; the expected part has no label and is left out.
    """
    known = np.bincount(codes[codes >= 0], minlength=len(categories) + 1)
    counts = {c: int(known[i]) for i, c in enumerate(categories) if known[i]}
    expected_other = profile.expected_other_freq * int(known.sum())
    unseen = max(0, int(known[-1]) - round(expected_other))
    total_unseen = sum(c for _, c in top_unseen)
    for label, label_count in top_unseen:
        if unseen and total_unseen:
            share = round(unseen * label_count / total_unseen)
            if share:
                counts[label] = counts.get(label, 0) + share
    return counts


# ---- helpers ---------------------------------------------------------------------------------
def _share_rose(k: int, n: int, baseline_share: float, min_ratio: float = 3.0) -> bool:
    """k of n is far above the training share: at least 5 %, min_ratio x training and 5 binomial sigmas."""
    p0 = min(max(baseline_share, 0.001), 0.999)
    return k / n >= max(0.05, min_ratio * p0) and (k - n * p0) / math.sqrt(n * p0 * (1 - p0)) >= 5


def _rate_rose(rate: float, baseline_rate: float, n: int) -> bool:
    return n > 0 and _share_rose(round(rate * n), n, baseline_rate)


def _numeric_share(p: NumericProfile, v: float) -> float:
    """Training share of exactly v: exact when the profile is discrete, else from top values / quantile ties."""
    if p.discrete_values is not None and p.discrete_freqs is not None:
        hit = np.flatnonzero(p.discrete_values == v)
        return float(p.discrete_freqs[hit[0]]) if len(hit) else 0.0
    top = max((f for tv, f in p.top_values if tv == v), default=0.0)
    ties = float(np.count_nonzero(p.quantiles == v)) / len(p.quantiles)
    return max(top, ties)


def _sentinel_name(p: NumericProfile, v: float) -> str | None:
    if v in NUMERIC_SENTINELS:
        return NUMERIC_SENTINELS[v]
    tol = 1e-3 * (p.std or abs(p.mean) or 1.0)  # imputers use a mean computed on a slightly different sample
    if abs(v - p.mean) <= tol:
        return "training mean"
    if abs(v - p.quantiles[500]) <= tol:
        return "training median"
    if v in (p.min, p.max):
        return "training min" if v == p.min else "training max"
    return None


def on_grid(x: np.ndarray, step: float) -> np.ndarray:
    """Which of x are multiples of step (up to float error relative to the value itself); NaN and
    infinities are not."""
    ratio = x / step  # |x - round(x / step) step| <= 1e-9 |x|, in fewer passes over x
    with np.errstate(invalid="ignore"):
        return np.abs(ratio - np.round(ratio)) <= 1e-9 * np.abs(ratio)


def _on_step(x: np.ndarray, step: float) -> float:
    """Share of x that are multiples of step."""
    return float(np.mean(on_grid(x, step)))


def training_share_on_step(p: NumericProfile, step: float) -> float:
    """Training's share of values that are multiples of step: exact for a few-valued feature, else
    the share of its quantile grid (p0.1..p99.9)."""
    if p.discrete_values is not None and p.discrete_freqs is not None:
        dv = p.discrete_values
        on = on_grid(dv, step)
        return float(np.sum(p.discrete_freqs[on]) / max(np.sum(p.discrete_freqs), 1e-12))
    if p.integer_valued and step <= 1:
        return 1.0
    return _on_step(p.quantiles[1:-1], step)


def _ks_two_sample(a: np.ndarray, b: np.ndarray) -> float:
    """The KS distance between the empirical distributions of a and b.

    >>> _ks_two_sample(np.array([1.0, 2.0]), np.array([2.0, 3.0]))
    0.5
    """
    a, b = np.sort(a), np.sort(b)
    points = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, points, side="right") / len(a)
                               - np.searchsorted(b, points, side="right") / len(b))))


def _ks_to_training(p: NumericProfile, rest: np.ndarray, v: float = math.nan, share_v: float = 0.0) -> float:
    """KS distance between `rest` and the training distribution conditioned on x != v (v of training
    share `share_v`; the default NaN equals nothing: the whole training distribution)."""
    if p.discrete_values is not None and p.discrete_freqs is not None:
        # few-valued training: compare the two step functions at every value either side takes
        points = np.union1d(p.discrete_values, np.unique(rest))
        cdf = np.cumsum(p.discrete_freqs)[np.searchsorted(p.discrete_values, points, side="right") - 1]
        cdf = np.where(points < p.discrete_values[0], 0.0, cdf)
        emp = np.searchsorted(np.sort(rest), points, side="right") / len(rest)
        cdf = np.where(points >= v, cdf - share_v, cdf) / max(1e-12, 1 - share_v)
        return float(np.max(np.abs(emp - cdf)))
    xs = np.sort(rest)
    cdf = np.interp(xs, p.quantiles, QUANTILE_PROBS)  # training CDF from its quantile grid
    cdf = np.where(xs >= v, cdf - share_v, cdf) / max(1e-12, 1 - share_v)
    n = len(xs)
    return float(max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(0, n) / n)))
