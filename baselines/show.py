"""The readable view of a baseline (`skewwatch baseline show`)."""
from __future__ import annotations

import json
import time
from typing import Any

from baselines.profile import Baseline, CategoricalProfile, NumericProfile
from baselines.serial import inflation_at
from detectors.fmt import number, percent, printable

__all__ = ["baseline_json", "format_baseline"]

#: categories listed per categorical feature in the table
SHOWN_CATEGORIES = 3
#: features listed, strongest first, on the header's line of associations with the label
SHOWN_ASSOCIATIONS = 5
#: the time-ordered header line: the horizon (events) and how many features it names
SHOWN_HORIZON = 1024
SHOWN_SERIAL = 5


def format_baseline(b: Baseline) -> str:
    """The baseline for a person: a header, then one table row per feature.

    The header gives the model, version, rows, when and from what it was built, and the confidence,
    prediction, metric and the features' strongest associations with the label when the baseline
    has them; control characters in names and categories are shown escaped.

    Parameters
    ----------
    b
        The baseline to show.

    Returns
    -------
    str
        Lines without a trailing newline, as `skewwatch baseline show` prints them.

    Examples
    --------
    >>> import dataclasses
    >>> from baselines.build import build_baseline_from_columns
    >>> b = build_baseline_from_columns("credit", {"amount": [1.0, 2.0, None], "country": ["US", "US", "FR"]})
    >>> b = dataclasses.replace(b, created=0.0)  # no build time: the output does not depend on today
    >>> print(format_baseline(b))  # doctest: +NORMALIZE_WHITESPACE
    model credit  version -  rows 3  features 2 (1 numeric, 1 categorical)
    created -  source columns
    <BLANKLINE>
    feature  kind         count  missing  invalid  mean  std  min  p50  max
    amount   numeric          2    33.3%       0%   1.5  0.5    1  1.5    2
    country  categorical      3       0%       0%  2 distinct: US 66.7%, FR 33.3%
    """
    kinds = [p.kind for p in b.features.values()]
    lines = [
        f"model {b.model}  version {b.version or '-'}  rows {b.n_rows:,}  "
        f"features {len(kinds)} ({kinds.count('numeric')} numeric, {kinds.count('categorical')} categorical)",
        f"created {_when(b.created)}  source {b.source or '-'}",
    ]
    if b.confidence is not None:
        lines.append(f"confidence  {_describe(b.confidence)}")
    if b.prediction is not None:
        lines.append(f"prediction  {_describe(b.prediction)}")
    if b.metric:
        lines.append(
            f"metric      {b.metric.get('name')} {number(b.metric.get('value'))} on {b.metric.get('n', '?'):,} rows"
        )
    if b.label_association is not None and b.label_association.features:
        lines.append(f"association {_associations(b)}")
    serial = _serial(b)
    if serial:
        lines.append(f"time-ordered  {serial}")
    if b.seasonal is not None:
        s = b.seasonal
        lines.append(f"seasonal    {s.period} ({printable(s.timezone or 'UTC')}) from column "
                     f"{printable(s.timestamp_column)}: "
                     f"{len(s.counts)} numeric features mapped by slot")
    header = ["feature", "kind", "count", "missing", "invalid", "mean", "std", "min", "p50", "max"]
    rows = [header]
    for name, p in b.features.items():
        row = [name, p.kind, f"{p.count:,}", percent(p.missing_rate), percent(p.invalid_rate)]
        if isinstance(p, NumericProfile):
            row += [number(p.mean), number(p.std), number(p.min), number(float(p.quantiles[500])), number(p.max)]
            rows.append(row)
        else:
            rows.append(row + [f"{p.n_distinct:,} distinct: {_top(p)}"])
    lines.append("")
    lines += _table(rows)
    return "\n".join(map(printable, lines))  # per line: the names' own newlines are escaped too


def _associations(b: Baseline) -> str:
    """The features that predicted the label best in training: "AUC for label '1': x 0.999, y 0.72"."""
    a = b.label_association
    neutral = 0.5 if a.label == "class" else 0.0
    what = f"AUC for label '{a.positive}'" if a.label == "class" else "correlation with the label"
    strongest = sorted(a.features.items(), key=lambda nf: -abs(nf[1].value - neutral))
    shown = ", ".join(f"{name} {number(f.value)}" for name, f in strongest[:SHOWN_ASSOCIATIONS])
    more = f" (+{len(strongest) - SHOWN_ASSOCIATIONS} more)" if len(strongest) > SHOWN_ASSOCIATIONS else ""
    return f"{what}: {shown}{more}"


def baseline_json(b: Baseline) -> str:
    """The whole baseline as indented JSON; arrays (quantiles, bins) stay on one line each.

    >>> from baselines.build import build_baseline_from_columns
    >>> text = baseline_json(build_baseline_from_columns("credit", {"country": ["US", "FR"]}))
    >>> print(text[text.index('"features"'):text.index('"confidence"')].rstrip())
    "features": {
        "country": {
          "kind": "categorical",
          "count": 2,
          "n_missing": 0,
          "n_invalid": 0,
          "categories": {
            "FR": 0.5,
            "US": 0.5
          },
          "other_freq": 0.0,
          "n_distinct": 2,
          "heldout_other_freq": 1.0,
          "n_singletons": 2,
          "n_doubletons": 0
        }
      },
    """
    return _json(b.to_dict(), "")


def _json(value: Any, indent: str) -> str:
    """`value` as JSON, maps and lists of maps or lists indented under `indent`, flat lists on one line.

    >>> print(_json({"a": {"b": [1, 2.5]}, "c": None}, ""))
    {
      "a": {
        "b": [1, 2.5]
      },
      "c": null
    }
    """
    if isinstance(value, dict) and value:
        inner = indent + "  "
        items = [f"{inner}{json.dumps(str(k))}: {_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        inner = indent + "  "
        return "[\n" + ",\n".join(inner + _json(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value, separators=(", ", ": "))


def _serial(b: Baseline) -> str:
    """The serial dependence measured in a time-ordered baseline: V over SHOWN_HORIZON events of each
    feature's most dependent series, the most dependent features first; "" when none was measured."""
    measured = [(float(inflation_at(p.serial_inflation.max(axis=0), SHOWN_HORIZON)), name)
                for name, p in b.features.items() if p.serial_inflation is not None]
    if not measured:
        return ""
    measured.sort(key=lambda vn: -vn[0])
    shown = ", ".join(f"{name} x{number(v)}" for v, name in measured[:SHOWN_SERIAL])
    more = f", +{len(measured) - SHOWN_SERIAL} more" if len(measured) > SHOWN_SERIAL else ""
    return (f"variance inflation of sums over {SHOWN_HORIZON:,} events: {shown}{more} "
            "(the monitors' thresholds allow for it)")


def _describe(p: NumericProfile | CategoricalProfile) -> str:
    head = f"{p.kind}, {p.count:,} values, missing {percent(p.missing_rate)}, invalid {percent(p.invalid_rate)}"
    if isinstance(p, NumericProfile):
        q = p.quantiles
        return (f"{head}; mean {number(p.mean)} std {number(p.std)} "
                f"p05 {number(float(q[50]))} p50 {number(float(q[500]))} p95 {number(float(q[950]))}")
    return f"{head}; {_top(p)}"


def _top(p: CategoricalProfile) -> str:
    if not p.categories:
        return "(no values)"
    ranked = sorted(p.categories.items(), key=lambda kv: -kv[1])[:SHOWN_CATEGORIES]
    shown = ", ".join(f"{k} {percent(v)}" for k, v in ranked)
    rest = 1.0 - sum(v for _, v in ranked)
    if rest > 5e-5:
        shown += f", ... {percent(rest)}"
    return shown


def _table(rows: list[list[str]]) -> list[str]:
    n = len(rows[0])
    widths = [0] * n
    for r in rows:
        cells = r if len(r) == n else r[:-1]  # a categorical row ends with free text
        for i, c in enumerate(cells):
            widths[i] = max(widths[i], len(c))
    out = []
    for r in rows:
        aligned = r[: len(r) if len(r) == n else -1]
        cells = [c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(aligned)]
        if len(r) < n:
            cells.append(r[-1])
        out.append("  ".join(cells).rstrip())
    return out


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else "-"
