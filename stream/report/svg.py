"""The report's plots as inline SVG: distributions (training vs production), a test's statistic
over the replay with its threshold and alerts, the alerts' timeline. Aggregates only."""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from baselines.profile import CategoricalProfile, NumericProfile
from detectors.fmt import number, percent, printable
from stream.report.gather import is_number

if TYPE_CHECKING:
    from stream.report.gather import FeatureTrace, ModelTrace, Values

__all__ = ["BASE_COLOR", "GRID_COLOR", "INK", "KIND_COLORS", "KIND_TITLES", "MAX_BARS", "MUTED", "NEW_COLOR",
           "PROD_COLOR", "SERIES_COLORS", "THRESHOLD_COLOR", "Chart", "categorical_distribution_svg", "esc",
           "feature_charts", "numeric_distribution_svg", "shadow_svg", "timeline_svg", "timeseries_svg"]

#: bars shown per categorical feature; the rest are pooled as "all other"
MAX_BARS = 14

# the page's palette (html.py draws its chips and cards in it too): training blue, production orange,
# what alerts red
BASE_COLOR = "#4C78A8"
PROD_COLOR = "#F58518"
NEW_COLOR = "#D62728"
THRESHOLD_COLOR = "#D62728"
GRID_COLOR = "#E5E7EB"
INK = "#1F2937"
MUTED = "#6B7280"
#: the colour of each alert kind (chips, diamonds, card borders)
KIND_COLORS = {"drift": "#D62728", "data_quality": "#9467BD", "confidence_drop": "#8C564B",
               "serving": "#17BECF", "skew": "#E377C2", "performance": "#7F7F7F", "leakage_suspect": "#BCBD22",
               "shadow": "#1F77B4"}
#: each alert kind in words, for a card's verdict
KIND_TITLES = {"drift": "distribution changed", "data_quality": "data-quality problem",
               "confidence_drop": "model confidence dropped", "serving": "serving problem",
               "skew": "training / serving mismatch", "performance": "accuracy dropped",
               "leakage_suspect": "suspected label leakage", "shadow": "shadow candidate disagrees"}
#: the lines of one chart, in order
SERIES_COLORS = ("#D62728", "#9467BD", "#2CA02C")


def esc(s: Any) -> str:
    """`s` as text safe inside an HTML or SVG element or a quoted attribute, its control
    characters and bidirectional overrides written out (`detectors.fmt.printable`): a name from
    the events cannot reorder or hide the text around it.

    >>> esc('<b class="x">'), esc("amount\\u202e")
    ('&lt;b class=&quot;x&quot;&gt;', 'amount\\\\u202e')
    """
    return html.escape(printable(str(s)), quote=True)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9)
    return [i * step for i in range(first, int(math.floor(hi / step + 1e-9)) + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    mults = (1, 2, 5) if len(decades) <= 3 else (1,)
    return [m * 10.0 ** d for d in decades for m in mults if lo <= m * 10.0 ** d <= hi]


@dataclass
class _Frame:
    """A plot area inside an SVG and its scales."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    x0: float
    x1: float
    y0: float
    y1: float
    log_x: bool = False

    def x(self, v: float) -> float:
        if self.log_x:
            v, a, b = math.log10(v), math.log10(self.x0), math.log10(self.x1)
        else:
            a, b = self.x0, self.x1
        return self.left + (v - a) / (b - a) * (self.width - self.left - self.right) if b > a else self.left

    def y(self, v: float) -> float:
        inner = self.height - self.top - self.bottom
        if not self.y1 > self.y0:
            return self.height - self.bottom
        return self.height - self.bottom - (v - self.y0) / (self.y1 - self.y0) * inner

    def axes(self, x_ticks: list[float], y_ticks: list[float], x_fmt=number, y_fmt=number,
             x_label: str = "", y_label: str = "") -> str:
        out = []
        xl, xr, yb, yt = self.left, self.width - self.right, self.height - self.bottom, self.top
        for t in y_ticks:
            y = self.y(t)
            out.append(f'<line x1="{xl}" x2="{xr}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID_COLOR}"/>'
                       f'<text x="{xl - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{esc(y_fmt(t))}</text>')
        for t in x_ticks:
            x = self.x(t)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{yb}" y2="{yb + 4}" stroke="{MUTED}"/>'
                       f'<text x="{x:.1f}" y="{yb + 16}" text-anchor="middle" class="tick">{esc(x_fmt(t))}</text>')
        out.append(f'<line x1="{xl}" x2="{xr}" y1="{yb}" y2="{yb}" stroke="{MUTED}"/>')
        if x_label:
            out.append(f'<text x="{(xl + xr) / 2:.1f}" y="{self.height - 4}" text-anchor="middle" class="axis">'
                       f'{esc(x_label)}</text>')
        if y_label:
            out.append(f'<text x="12" y="{(yt + yb) / 2:.1f}" text-anchor="middle" class="axis" '
                       f'transform="rotate(-90 12 {(yt + yb) / 2:.1f})">{esc(y_label)}</text>')
        return "".join(out)


def _svg(width: int, height: int, title: str, body: str, css_class: str = "plot") -> str:
    return (f'<svg class="{css_class}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="{esc(title)}"><title>{esc(title)}</title>{body}</svg>')


def _legend(items: list[tuple[str, str, str]], x: float, y: float) -> str:
    """items: (kind 'box' | 'line' | 'dash' | 'diamond', color, label), laid out left to right."""
    out = []
    for kind, color, label in items:
        if kind == "box":
            out.append(f'<rect x="{x:.1f}" y="{y - 9}" width="14" height="10" fill="{color}" fill-opacity="0.45" '
                       f'stroke="{color}"/>')
        elif kind == "diamond":
            out.append(f'<path d="M{x + 7:.1f} {y - 10} l6 6 l-6 6 l-6 -6 z" fill="{color}"/>')
        else:
            dash = ' stroke-dasharray="5 3"' if kind == "dash" else ""
            out.append(f'<line x1="{x:.1f}" x2="{x + 16:.1f}" y1="{y - 4}" y2="{y - 4}" stroke="{color}" '
                       f'stroke-width="2.5"{dash}/>')
        out.append(f'<text x="{x + 20:.1f}" y="{y}" class="legend">{esc(label)}</text>')
        x += 28 + 6.4 * len(label)
    return "".join(out)


def _step_path(frame: _Frame, edges: np.ndarray, heights: np.ndarray) -> str:
    y0 = frame.y(0.0)
    parts = [f"M{frame.x(edges[0]):.1f} {y0:.1f}"]
    for a, b, h in zip(edges[:-1], edges[1:], heights):
        y = frame.y(float(h))
        parts.append(f"L{frame.x(a):.1f} {y:.1f}L{frame.x(b):.1f} {y:.1f}")
    parts.append(f"L{frame.x(edges[-1]):.1f} {y0:.1f}Z")
    return "".join(parts)


def _numeric_bins(profile: NumericProfile, values: np.ndarray) -> tuple[np.ndarray, bool]:
    """Common bin edges for training and production, and whether the x axis is logarithmic (a
    scale change puts them decades apart)."""
    q = profile.quantiles
    lo, hi = float(q[5]), float(q[995])
    if len(values):
        plo, phi = np.quantile(values, [0.005, 0.995])
        lo, hi = min(lo, float(plo)), max(hi, float(phi))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    if lo > 0 and hi / lo >= 200:
        return np.geomspace(lo, hi, 49), True
    integer = profile.integer_valued and (not len(values) or bool(np.all(values == np.round(values))))
    if integer:
        step = max(1, math.ceil((hi - lo) / 48))
        start = math.floor(lo) - 0.5
        return start + step * np.arange(math.ceil((hi + 0.5 - start) / step) + 1), False
    return np.linspace(lo, hi, 49), False


def _training_mass(profile: NumericProfile, edges: np.ndarray) -> np.ndarray:
    """Training share in each bin: exact for a discrete column, else from the 1001 quantiles
    (mid-rank at ties, so a value repeated across many quantiles splits evenly)."""
    if profile.discrete_values is not None:
        cdf = np.concatenate([[0.0], np.cumsum(profile.discrete_freqs)])
        at = cdf[np.searchsorted(profile.discrete_values, edges, side="right")]
    else:
        q = profile.quantiles
        at = (np.searchsorted(q, edges, side="left") + np.searchsorted(q, edges, side="right")) / 2 / (len(q) - 1)
        at = np.clip(at, 0.0, 1.0)
    return np.diff(at)


def numeric_distribution_svg(profile: NumericProfile, prod: Values, prod_label: str, baseline_rows: int) -> str:
    """Training vs production histogram of a numeric feature, on common bins (a logarithmic x axis
    when a scale change puts them decades apart), with both medians marked.

    Parameters
    ----------
    profile
        The feature's training profile: its shares per bin come from the quantiles (or the exact
        discrete values).
    prod
        The production values drawn (`Values`: the whole replay, or from the first alert on).
    prod_label
        What the production values are, for the legend.
    baseline_rows
        The training rows, for the legend.

    Returns
    -------
    str
        An inline ``<svg>`` element.
    """
    values = prod.sample.values
    edges, log_x = _numeric_bins(profile, values)
    base = _training_mass(profile, edges)
    counts = np.histogram(values, edges)[0] if len(values) else np.zeros(len(edges) - 1)
    share = counts / len(values) if len(values) else counts.astype(float)
    top = float(max(base.max(), share.max(), 1e-9)) * 1.12
    f = _Frame(560, 310, 58, 18, 52, 44, float(edges[0]), float(edges[-1]), 0.0, top, log_x)
    y_ticks = _ticks(0.0, top, 4)
    x_ticks = _log_ticks(f.x0, f.x1) if log_x else _ticks(f.x0, f.x1, 6)
    body = [f.axes(x_ticks, y_ticks, y_fmt=percent, x_label=profile.name + (" (log scale)" if log_x else ""),
                   y_label="share of values")]
    body.append(f'<path d="{_step_path(f, edges, base)}" fill="{BASE_COLOR}" fill-opacity="0.35" '
                f'stroke="{BASE_COLOR}" stroke-width="1.5"/>')
    if len(values):
        body.append(f'<path d="{_step_path(f, edges, share)}" fill="{PROD_COLOR}" fill-opacity="0.25" '
                    f'stroke="{PROD_COLOR}" stroke-width="2.2"/>')
        body.append(_median_marker(f, float(np.median(values)), PROD_COLOR))
    else:
        body.append(f'<text x="{f.width / 2}" y="{f.height / 2}" text-anchor="middle" class="note">'
                    f'no valid production value ({percent(prod.missing_rate)} missing)</text>')
    body.append(_median_marker(f, float(profile.quantiles[500]), BASE_COLOR))
    training = _legend_label("training", baseline_rows, "rows", profile.missing_rate)
    production = _legend_label(prod_label, prod.valid, "values", prod.missing_rate)
    body.append(_legend([("box", BASE_COLOR, training)], f.left, 16)
                + _legend([("box", PROD_COLOR, production)], f.left, 34))
    body.append(f'<text x="{f.width - f.right}" y="16" text-anchor="end" class="note">▲ median</text>')
    return _svg(f.width, f.height, f"{profile.name}: training vs production distribution", "".join(body))


def _legend_label(what: str, n: int, unit: str, missing_rate: float) -> str:
    return f"{what} ({n:,} {unit}" + (f", {percent(missing_rate)} missing)" if missing_rate >= 0.005 else ")")


def _median_marker(f: _Frame, v: float, color: str) -> str:
    if not (f.x0 <= v <= f.x1):
        return ""
    x, y = f.x(v), f.height - f.bottom
    return f'<path d="M{x:.1f} {y - 9:.1f} l-6 9 h12 z" fill="{color}" stroke="white" stroke-width="1"/>'


def categorical_distribution_svg(profile: CategoricalProfile, prod: Values, prod_label: str, baseline_rows: int) -> str:
    """Training vs production share of each category, as paired bars: the `MAX_BARS` largest, the
    rest pooled as "all other"; a category unseen in training is red and tagged "(new)".

    Parameters are those of `numeric_distribution_svg`; returns an inline ``<svg>`` element.
    """
    known = profile.categories
    prod_counts = {label: count for label, count, _ in prod.categories.top()}
    n = max(prod.valid, 1)
    rows = [(c, share, prod_counts.get(c, 0) / n, False) for c, share in known.items()]
    rows += [(c, 0.0, k / n, True) for c, k in prod_counts.items() if c not in known]
    rows.sort(key=lambda r: (-max(r[1], r[2]), r[0]))
    shown, rest = rows[:MAX_BARS], rows[MAX_BARS:]
    base_rest = profile.other_freq + sum(r[1] for r in rest)
    prod_rest = max(0.0, 1.0 - sum(r[2] for r in shown)) if prod.valid else 0.0
    if base_rest >= 0.0005 or prod_rest >= 0.0005:
        shown.append(("all other", base_rest, prod_rest, False))
    items = [("box", BASE_COLOR, _legend_label("training", baseline_rows, "rows", profile.missing_rate)),
             ("box", PROD_COLOR, _legend_label(prod_label, prod.valid, "values", prod.missing_rate))]
    if any(r[3] for r in shown):
        items.append(("box", NEW_COLOR, "unseen in training"))
    row_h, top_pad, left = 30, 24 + 18 * len(items), 150
    width, height = 560, top_pad + row_h * len(shown) + 30
    scale = max(max((max(r[1], r[2]) for r in shown), default=0.0), 1e-9) * 1.25
    f = _Frame(width, height, left, 20, top_pad, 30, 0.0, scale, 0.0, 1.0)
    body = []
    for t in _ticks(0.0, scale, 4):
        x = f.x(t)
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top_pad - 4}" y2="{height - 30}" stroke="{GRID_COLOR}"/>'
                    f'<text x="{x:.1f}" y="{height - 14}" text-anchor="middle" class="tick">{percent(t)}</text>')
    for i, (label, b, p, new) in enumerate(shown):
        y = top_pad + i * row_h
        shown_label = label if len(label) <= 20 else label[:19] + "…"
        color = NEW_COLOR if new else INK
        tag = " (new)" if new else ""
        body.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" class="cat" fill="{color}">'
                    f'{esc(shown_label + tag)}</text>')
        body.append(f'<rect x="{left}" y="{y + 3}" width="{max(f.x(b) - left, 0.0):.1f}" height="11" '
                    f'fill="{BASE_COLOR}" fill-opacity="0.75"/>')
        pc = NEW_COLOR if new else PROD_COLOR
        body.append(f'<rect x="{left}" y="{y + 14}" width="{max(f.x(p) - left, 0.0):.1f}" height="11" fill="{pc}"/>')
        body.append(f'<text x="{max(f.x(b), f.x(p)) + 5:.1f}" y="{y + 18}" class="tick">'
                    f'{percent(b)} → {percent(p)}</text>')
    body.append(f'<line x1="{left}" x2="{left}" y1="{top_pad - 4}" y2="{height - 30}" stroke="{MUTED}"/>')
    body.append("".join(_legend([item], 10, 16 + 18 * i) for i, item in enumerate(items)))
    return _svg(width, height, f"{profile.name}: training vs production category shares", "".join(body))


@dataclass
class Chart:
    """A statistic over events, drawn by `timeseries_svg`: the lines, the level that alerts (or the
    training reference)."""

    title: str
    y_label: str
    lines: list[tuple[str, list[float | None]]]
    threshold: float | None = None
    threshold_label: str = "alert threshold"
    reference: float | None = None
    reference_label: str = ""
    y_fmt: Any = number
    #: alerts of this detector are drawn at their statistic (same scale as the lines), others on top
    alert_detector: str | None = None


def timeseries_svg(chart: Chart, x: list[int], alerts: list[dict], feature: str) -> str:
    """A statistic over the replay with its threshold or reference, and the alerts: each as a
    diamond at its detection, the estimated change start to it shaded.

    Parameters
    ----------
    chart
        What to draw (`feature_charts`).
    x
        The event count of each sample (`ModelTrace.sample_x`), the x of the lines' values.
    alerts
        The feature's alerts, as dicts (`Alert.to_dict`).
    feature
        The feature's name, for the plot's title.

    Returns
    -------
    str
        An inline ``<svg>`` element.
    """
    f_w, f_h = 560, 200
    values = [v for _, ys in chart.lines for v in ys if v is not None]
    levels = [v for v in (chart.threshold, chart.reference) if v is not None]
    alert_values = [float(a["statistic"]) for a in alerts if a["detector"] == chart.alert_detector]
    hi = max(values + levels + [1e-9])
    hi = max([hi] + [min(v, 2 * hi) for v in alert_values])  # an alert far off the scale is drawn at the top
    lo = min(values + levels + [0.0])
    if lo > 0 and lo < 0.6 * hi:
        lo = 0.0
    pad = (hi - lo) * 0.1 or 1.0
    x_max = max(x[-1] if x else 1, max((int(a["events_seen"]) for a in alerts), default=1))
    f = _Frame(f_w, f_h, 58, 18, 40, 40, 0.0, float(x_max), lo if lo == 0 else lo - pad, hi + pad)
    body = [f.axes(_ticks(0.0, float(x_max), 6), _ticks(f.y0, f.y1, 4),
                   y_fmt=chart.y_fmt, x_label="events", y_label=chart.y_label)]
    for a in alerts:  # the change's estimated start to its detection, shaded
        start = (a.get("evidence") or {}).get("change_start_event")
        if is_number(start) and start < a["events_seen"]:
            x0, x1 = f.x(max(0.0, float(start))), f.x(float(a["events_seen"]))
            body.append(f'<rect x="{x0:.1f}" y="{f.top}" width="{max(x1 - x0, 2.0):.1f}" '
                        f'height="{f_h - f.top - f.bottom}" fill="{THRESHOLD_COLOR}" fill-opacity="0.10"/>')
    for level, color in ((chart.threshold, THRESHOLD_COLOR), (chart.reference, BASE_COLOR)):
        if level is not None:
            y = f.y(level)
            body.append(f'<line x1="{f.left}" x2="{f_w - f.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{color}" '
                        f'stroke-width="1.5" stroke-dasharray="6 4"/>')
    # without a threshold the first line is production, measured against the training reference
    colors = SERIES_COLORS if chart.threshold is not None else (PROD_COLOR,) + SERIES_COLORS[1:]
    for (_, ys), color in zip(chart.lines, colors):
        pts = [f"{f.x(xi):.1f},{f.y(v):.1f}" for xi, v in zip(x, ys) if v is not None]
        if pts:
            body.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{color}" stroke-width="2" '
                        f'stroke-linejoin="round"/>')
    for a in alerts:
        xa = f.x(float(a["events_seen"]))
        body.append(f'<line x1="{xa:.1f}" x2="{xa:.1f}" y1="{f.top}" y2="{f_h - f.bottom}" '
                    f'stroke="{THRESHOLD_COLOR}" stroke-width="1"/>')
        ya = f.y(min(float(a["statistic"]), f.y1)) if a["detector"] == chart.alert_detector else f.top + 6
        body.append(f'<path d="M{xa:.1f} {ya - 7:.1f} l7 7 l-7 7 l-7 -7 z" '
                    f'fill="{KIND_COLORS.get(a["kind"], THRESHOLD_COLOR)}" stroke="white"/>')
    items = [("line", color, label) for (label, _), color in zip(chart.lines, colors)]
    if chart.threshold is not None:
        items.append(("dash", THRESHOLD_COLOR, chart.threshold_label))
    if chart.reference is not None:
        items.append(("dash", BASE_COLOR, chart.reference_label))
    if alerts:
        items.append(("diamond", THRESHOLD_COLOR, "alert"))
    body.append(f'<text x="{f.left}" y="14" class="chart-title">{esc(chart.title)}</text>')
    body.append(_legend(items, f.left, 32))
    return _svg(f_w, f_h, f"{feature}: {chart.title}", "".join(body))


def shadow_svg(pair: str, windows: list[dict], expected: float | None) -> str:
    """A shadow pair's agreement per window (`ShadowComparison.snapshot()["windows"]`) with its 95%
    interval, the expected agreement dashed, the windows below it marked with a diamond.

    >>> shadow_svg("a=b", [{"window": 1, "agreement": 0.9, "ci_low": 0.88, "ci_high": 0.92, "joined": 1000}],
    ...            None).startswith("<svg")
    True
    """
    f_w, f_h = 1100, 220
    xs = [float(w["joined"]) for w in windows]
    lows = [w["ci_low"] for w in windows] + ([expected] if expected is not None else [])
    lo = max(0.0, min(lows + [1.0]) - 0.05)
    f = _Frame(f_w, f_h, 58, 18, 40, 40, 0.0, max(xs + [1.0]), lo, 1.0)
    body = [f.axes(_ticks(0.0, f.x1, 8), _ticks(lo, 1.0, 4), y_fmt=percent, x_label="requests joined",
                   y_label="agreement")]
    if len(windows) > 1:
        band = [f"{f.x(x):.1f},{f.y(w['ci_high']):.1f}" for x, w in zip(xs, windows)]
        band += [f"{f.x(x):.1f},{f.y(w['ci_low']):.1f}" for x, w in reversed(list(zip(xs, windows)))]
        body.append(f'<polygon points="{" ".join(band)}" fill="{PROD_COLOR}" fill-opacity="0.18"/>')
    if expected is not None:
        y = f.y(expected)
        body.append(f'<line x1="{f.left}" x2="{f_w - f.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{THRESHOLD_COLOR}" '
                    'stroke-width="1.5" stroke-dasharray="6 4"/>')
    pts = " ".join(f"{f.x(x):.1f},{f.y(w['agreement']):.1f}" for x, w in zip(xs, windows))
    body.append(f'<polyline points="{pts}" fill="none" stroke="{PROD_COLOR}" stroke-width="2"/>')
    for x, w in zip(xs, windows):
        if w.get("below_expected"):
            xa, ya = f.x(x), f.y(w["agreement"])
            body.append(f'<path d="M{xa:.1f} {ya - 7:.1f} l7 7 l-7 7 l-7 -7 z" fill="{KIND_COLORS["shadow"]}" '
                        'stroke="white"/>')
    items = [("line", PROD_COLOR, "agreement per window"), ("box", PROD_COLOR, "95% interval")]
    if expected is not None:
        items.append(("dash", THRESHOLD_COLOR, "expected agreement"))
    if any(w.get("below_expected") for w in windows):
        items.append(("diamond", KIND_COLORS["shadow"], "below it: shadow alert"))
    body.append(f'<text x="{f.left}" y="14" class="chart-title">{esc(pair)}: agreement with production</text>')
    body.append(_legend(items, f.left, 32))
    return _svg(f_w, f_h, f"{pair}: agreement per window", "".join(body), "plot wide")


def feature_charts(trace: FeatureTrace, alerts: list[dict], model: ModelTrace) -> list[Chart]:
    """The charts of an alerted feature: the firing test's own statistic over time (when the snapshot
    exposes it), then PSI.

    Parameters
    ----------
    trace
        The feature's samples of the monitor's statistics.
    alerts
        The feature's alerts, as dicts (`Alert.to_dict`); the first one's test is charted.
    model
        The model's trace (its baseline, and whether `trace` is the model's confidence).
    """
    charts: list[Chart] = []
    detectors = [a["detector"] for a in alerts]
    keys = set().union(*trace.samples) if trace.samples else set()
    if trace.name == "confidence" and model.has_confidence:
        charts.append(Chart("mean prediction confidence (recent events)", "confidence",
                             [("production", trace.series("confidence_mean"))],
                             reference=model.baseline.confidence.mean, reference_label="training mean"))
        return charts
    first = next((d for d in detectors
                  if d in keys or d in ("cusum", "missing_rate", "unseen_category", "point_mass")), None)
    if first == "point_mass":
        charts.append(Chart("one value's share against training (point-mass CUSUM)", "CUSUM",
                             [("point mass", trace.series("point_mass_cusum"))],
                             # the alarming chain's: a feature's grid chains have a higher one than its others
                             threshold=next(a["threshold"] for a in alerts if a["detector"] == "point_mass"),
                             alert_detector=first))
    elif first == "cusum":
        charts.append(Chart("sequential test against training (CUSUM)", "CUSUM",
                             [("location", trace.series("cusum_location")), ("spread", trace.series("cusum_scale"))],
                             threshold=_first(trace.series("cusum_threshold")), alert_detector="cusum"))
    elif first == "missing_rate":
        charts.append(Chart("share of missing values (recent events)", "missing",
                             [("production", trace.series("missing_ratio"))],
                             reference=trace.profile.missing_rate, reference_label="training", y_fmt=percent))
    elif first == "unseen_category":
        charts.append(Chart("unseen-category test (rate CUSUM)", "CUSUM", [("unseen", trace.series("unseen_cusum"))],
                             threshold=_first(trace.series("cusum_threshold")), alert_detector=first))
    elif first is not None:
        threshold = next(float(a["threshold"]) for a in alerts if a["detector"] == first)
        charts.append(Chart(f"{first} test per window of events", first, [(first, trace.series(first))],
                             threshold=threshold, alert_detector=first))
    if "psi" in keys and first != "psi":
        charts.append(Chart("PSI: distance to training per window (0.1 moderate, 0.25 large)", "PSI",
                             [("PSI", trace.series("psi"))], threshold=0.25, threshold_label="large shift (0.25)"))
    return charts


def _first(values: list[float | None]) -> float | None:
    return next((v for v in values if v is not None), None)


def timeline_svg(model: ModelTrace, rows: list[str]) -> str:
    """Every alert on one strip per feature: when each change began (shaded) and was detected (diamond).

    Parameters
    ----------
    model
        The model's trace and its alerts.
    rows
        The strips, top to bottom: alerted features, and "(model)" for the alerts of no feature.
    """
    row_h, left, top = 26, 170, 40
    width, height = 1100, top + row_h * len(rows) + 34
    f = _Frame(width, height, left, 24, top, 34, 0.0, float(max(model.events, 1)), 0.0, 1.0)
    body = [f.axes(_ticks(0.0, f.x1, 8), [], x_label="events")]
    for i, name in enumerate(rows):
        y = top + i * row_h + row_h / 2
        body.append(f'<line x1="{left}" x2="{width - f.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID_COLOR}"/>'
                    f'<text x="{left - 10}" y="{y + 4:.1f}" text-anchor="end" class="cat">{esc(name)}</text>')
        for a in model.alerts:
            feature = a.get("feature")
            if not ((feature or "(model)") == name or (name == "(model)" and feature not in model.features)):
                continue
            color = KIND_COLORS.get(a["kind"], THRESHOLD_COLOR)
            start = (a.get("evidence") or {}).get("change_start_event")
            xa = f.x(float(a["events_seen"]))
            if is_number(start) and start < a["events_seen"]:
                x0 = f.x(max(0.0, float(start)))
                body.append(f'<rect x="{x0:.1f}" y="{y - 7:.1f}" width="{max(xa - x0, 2.0):.1f}" height="14" '
                            f'fill="{color}" fill-opacity="0.25"/>')
            body.append(f'<path d="M{xa:.1f} {y - 8:.1f} l8 8 l-8 8 l-8 -8 z" fill="{color}" stroke="white"/>')
    order = list(KIND_COLORS)
    kinds = sorted({a["kind"] for a in model.alerts}, key=lambda k: order.index(k) if k in order else 99)
    body.append(_legend([("diamond", KIND_COLORS.get(k, THRESHOLD_COLOR), k.replace("_", " ")) for k in kinds]
                        + [("box", MUTED, "change began → detected")], left, 18))
    return _svg(width, height, f"{model.baseline.model}: alerts over the replay", "".join(body), css_class="plot wide")
