"""`skewwatch report`: a replay that also records what it takes to *see* a drift, written as one
self-contained HTML page (inline CSS and SVG: no script, no external request).

It reads the files with replay's own reader (decode_message -> ModelRouter.process), so the page
shows exactly the alerts `skewwatch replay` prints. Along the way it records, per model and feature:

- every statistic of `ModelMonitor.snapshot()`, sampled every `--window` events (the test over time);
- a bounded sample of the production values (numeric: a reservoir; categorical: a Space-Saving
  top-K), for the whole file and from the feature's first alert on (the distribution plot).

Privacy: the page holds aggregates only (histograms, shares, summary statistics and the alerts' own
diagnosis); never an event, a request id or a single production value.
"""
from __future__ import annotations

import argparse
import html
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import orjson

from baselines.profile import Baseline, CategoricalProfile, NumericProfile, category_key
from detectors.events import Limits
from detectors.extract import classify_numbers
from detectors.model import ModelMonitor, MonitorConfig
from detectors.routing import ModelRouter
from detectors.sketches import SpaceSaving
from stream.commands.replay import Replay, UsageError, load_inputs

#: production values kept per feature (and again from its first alert on) for the distribution plot
SAMPLE_SIZE = 20_000
#: categories counted per feature (Space-Saving: any category above 1/capacity of the values is held)
TOP_CATEGORIES = 64
#: time-series samples kept per model; beyond it every other one is dropped and the step doubles
MAX_SAMPLES = 1_500
#: most model versions counted for the header (the rest are "other")
MAX_VERSIONS = 16
#: bars shown per categorical feature; the rest are pooled as "all other"
MAX_BARS = 14


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("events", nargs="+", metavar="EVENTS",
                   help="JSONL file or msgpack stream of events, as for `skewwatch replay`; '-' reads JSONL from stdin")
    p.add_argument("--baseline", "-b", action="append", required=True, metavar="B",
                   help="a baseline file; repeat for several models")
    p.add_argument("-o", "--output", default="report.html", metavar="FILE", help="the HTML page to write (default report.html)")
    p.add_argument("--window", type=int, default=MonitorConfig.window, metavar="N",
                   help=f"sample the statistics every N events of a model (default {MonitorConfig.window}, the monitors' window)")
    p.add_argument("--format", choices=("auto", "jsonl", "msgpack"), default="auto",
                   help="input format (default: by extension, else by the first byte)")
    p.add_argument("--max-message-bytes", type=int, default=Limits.max_message_bytes,
                   help=f"larger messages are rejected as 'oversized' (default {Limits.max_message_bytes})")


def run(args: argparse.Namespace) -> int:
    if args.window < 1 or args.max_message_bytes < 1:
        return _usage_error("--window and --max-message-bytes must be positive")
    try:
        baselines = load_inputs(args.baseline, args.events)
    except UsageError as e:
        return _usage_error(str(e))
    started = time.perf_counter()
    recorder = Recorder(baselines.values(), window=args.window, limits=Limits(max_message_bytes=args.max_message_bytes))
    for path in args.events:
        recorder.run_file(path, args.format)
    recorder.finish()
    recorder.print_summary(time.perf_counter() - started, sys.stderr)
    page = render_html(recorder.traces, sources=["standard input" if p == "-" else Path(p).name for p in args.events])
    Path(args.output).write_text(page, encoding="utf-8")
    print(f"report: wrote {args.output} ({len(page) // 1024} KiB)", file=sys.stderr)
    return 0


def _usage_error(msg: str) -> int:
    print(f"skewwatch report: error: {msg}", file=sys.stderr)
    return 2


# ---- gathering ----------------------------------------------------------------------------------
class _AlertLines:
    """Where replay's flush writes its alerts (JSON lines); the recorder reads them back."""

    def __init__(self) -> None:
        self._data = bytearray()

    def write(self, b: bytes) -> None:
        self._data += b

    def flush(self) -> None:
        pass

    def take(self) -> list[dict]:
        lines, self._data = bytes(self._data).splitlines(), bytearray()
        return [orjson.loads(line) for line in lines]


class _Reservoir:
    """A uniform sample of at most `capacity` values of a stream (Vitter's algorithm R, vectorised)."""

    def __init__(self, capacity: int, rng: np.random.Generator):
        self._values = np.empty(capacity)
        self._rng = rng
        self._seen = 0

    @property
    def seen(self) -> int:
        return self._seen

    @property
    def values(self) -> np.ndarray:
        return self._values[: min(self._seen, len(self._values))]

    def add(self, x: np.ndarray) -> None:
        cap = len(self._values)
        fill = min(max(cap - self._seen, 0), len(x))
        self._values[self._seen:self._seen + fill] = x[:fill]
        rest = x[fill:]
        if len(rest):
            slots = self._rng.integers(0, self._seen + fill + np.arange(1, len(rest) + 1))
            keep = slots < cap
            self._values[slots[keep]] = rest[keep]
        self._seen += len(x)


class _Values:
    """Production values of one feature: a bounded sample plus the missing / invalid counts."""

    def __init__(self, numeric: bool, rng: np.random.Generator):
        self.sample = _Reservoir(SAMPLE_SIZE, rng) if numeric else None
        self.categories = None if numeric else SpaceSaving(TOP_CATEGORIES)
        self.valid = 0
        self.missing = 0
        self.invalid = 0

    @property
    def total(self) -> int:
        return self.valid + self.missing + self.invalid

    @property
    def missing_rate(self) -> float:
        return self.missing / self.total if self.total else 0.0

    def add_numbers(self, x: np.ndarray, missing: np.ndarray, invalid: np.ndarray) -> None:
        ok = ~(missing | invalid)
        self.sample.add(x[ok])
        self.valid += int(ok.sum())
        self.missing += int(missing.sum())
        self.invalid += int(invalid.sum())

    def add_labels(self, labels: Sequence[str | None | bool]) -> None:
        """labels: category keys, None for missing, False for invalid."""
        for label, n in Counter(labels).items():
            if label is None:
                self.missing += n
            elif label is False:
                self.invalid += n
            else:
                self.valid += n
                self.categories.update(label, n)


class FeatureTrace:
    """What the report knows about one feature (or the confidence) of one model."""

    def __init__(self, name: str, profile: NumericProfile | CategoricalProfile, rng: np.random.Generator):
        self.name = name
        self.profile = profile
        self.numeric = isinstance(profile, NumericProfile)
        self._rng = rng
        self.overall = _Values(self.numeric, rng)
        #: values from the feature's first alert on (None until it alerts)
        self.since_alert: _Values | None = None
        self.alert_at: int | None = None
        #: one dict of snapshot statistics per sample of the model
        self.samples: list[dict[str, float]] = []

    def start_since_alert(self, event_index: int) -> None:
        self.alert_at = event_index
        self.since_alert = _Values(self.numeric, self._rng)

    def series(self, key: str) -> list[float | None]:
        return [s.get(key) for s in self.samples]


class ModelTrace:
    """Everything recorded for one model along the replay."""

    def __init__(self, baseline: Baseline, every: int, seed: int):
        rng = np.random.default_rng(seed)
        self.baseline = baseline
        self.features: dict[str, FeatureTrace] = {
            name: FeatureTrace(name, p, rng) for name, p in baseline.features.items()}
        self.has_confidence = baseline.confidence is not None and "confidence" not in self.features
        if self.has_confidence:
            self.features["confidence"] = FeatureTrace("confidence", baseline.confidence, rng)
        self.every = every
        self.next_sample = every
        self.sample_x: list[int] = []
        self.alerts: list[dict] = []
        self.events = 0
        self.ts_min: float | None = None
        self.ts_max: float | None = None
        self.versions: Counter[str] = Counter()

    def record(self, events: list[dict], start: int, alerts: list[dict]) -> None:
        """One batch of this model's events (the monitor's events start..start+n-1) and its alerts."""
        self.events += len(events)
        self.alerts.extend(alerts)
        for a in alerts:
            f = self.features.get(a.get("feature") or "")
            if f is not None and f.since_alert is None:
                f.start_since_alert(int(a["events_seen"]))
        self._record_meta(events)
        feats = [e["features"] for e in events]
        for name, f in self.features.items():
            if f.numeric:
                if name == "confidence" and self.has_confidence:
                    v = classify_numbers([e.get("confidence") for e in events])
                    x, missing, invalid = v.x[0], v.missing[0], v.invalid[0]
                    outside = (x < 0.0) | (x > 1.0)  # the monitor counts these as invalid too
                    invalid = invalid | outside
                else:
                    v = classify_numbers([d.get(name) for d in feats])
                    x, missing, invalid = v.x[0], v.missing[0], v.invalid[0]
                f.overall.add_numbers(x, missing, invalid)
                if f.since_alert is not None:
                    k = max(0, f.alert_at - start)
                    f.since_alert.add_numbers(x[k:], missing[k:], invalid[k:])
            else:
                labels = [_label(d.get(name)) for d in feats]
                f.overall.add_labels(labels)
                if f.since_alert is not None:
                    f.since_alert.add_labels(labels[max(0, f.alert_at - start):])

    def _record_meta(self, events: list[dict]) -> None:
        ts = [t for t in (e.get("ts") for e in events) if isinstance(t, (int, float)) and not isinstance(t, bool)
              and math.isfinite(t)]
        if ts:
            lo, hi = min(ts), max(ts)
            self.ts_min = lo if self.ts_min is None else min(self.ts_min, lo)
            self.ts_max = hi if self.ts_max is None else max(self.ts_max, hi)
        for version, n in Counter(e.get("model_version") for e in events).items():
            key = "(none)" if version is None else str(version)[:32]
            if key in self.versions or len(self.versions) < MAX_VERSIONS:
                self.versions[key] += n
            else:
                self.versions["other"] += n

    def maybe_sample(self, monitor: ModelMonitor, final: bool = False) -> None:
        seen = monitor.events_seen
        if seen < self.next_sample and not (final and seen and (not self.sample_x or self.sample_x[-1] != seen)):
            return
        snap = monitor.snapshot()
        self.sample_x.append(seen)
        for name, fs in snap["features"].items():
            if name in self.features:
                stats = {k: float(v) for k, v in fs["statistics"].items() if _is_number(v)}
                stats["missing_ratio"] = float(fs["missing_ratio"])
                self.features[name].samples.append(stats)
        if self.has_confidence:
            mean = snap.get("confidence_mean")
            self.features["confidence"].samples.append({} if mean is None else {"confidence_mean": float(mean)})
        while self.next_sample <= seen:
            self.next_sample += self.every
        if len(self.sample_x) > MAX_SAMPLES:
            self.sample_x = self.sample_x[1::2]
            for f in self.features.values():
                f.samples = f.samples[1::2]
            self.every *= 2
            self.next_sample = self.sample_x[-1] + self.every


def _label(v: Any) -> str | None | bool:
    if v is None:
        return None
    if isinstance(v, (dict, list, tuple)):
        return False
    return category_key(v)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class Recorder(Replay):
    """replay's reader and flush, fed in batches of exactly `window` events so that every sample
    falls on a window edge of a single-model stream; alerts do not depend on the batching."""

    def __init__(self, baselines: Iterable[Baseline], window: int = MonitorConfig.window,
                 limits: Limits = Limits(), seed: int = 0):
        self._alert_lines = _AlertLines()
        super().__init__(ModelRouter(baselines), limits, window, self._alert_lines, None)
        self.traces = [ModelTrace(self.router.baseline(m), window, seed) for m in self.router.models]
        self._by_model = {t.baseline.model: t for t in self.traces}

    def flush(self, full_only: bool = True) -> None:
        # always whole windows here (every sample on a window edge); finish() takes the rest
        while len(self.pending) >= self.batch_size:
            self._process(self.batch_size)

    def finish(self) -> None:
        self.flush()
        if self.pending:
            self._process(len(self.pending))
        for t in self.traces:
            t.maybe_sample(self.router.monitor(t.baseline.model), final=True)

    def _process(self, n: int) -> None:
        batch, rest = self.pending[:n], self.pending[n:]
        starts = {m: self.router.monitor(m).events_seen for m in self._by_model}
        self.pending = batch
        super().flush()
        self.pending = rest
        alerts = self._alert_lines.take()
        groups: dict[str, list[dict]] = {}
        for e in batch:
            if e["model"] in self._by_model:
                groups.setdefault(e["model"], []).append(e)
        for model, events in groups.items():
            trace = self._by_model[model]
            trace.record(events, starts[model], [a for a in alerts if a["model"] == model])
            trace.maybe_sample(self.router.monitor(model))


def gather(baselines: Iterable[Baseline], paths: Sequence[str], window: int = MonitorConfig.window,
           fmt: str = "auto") -> list[ModelTrace]:
    """Replay `paths` through the monitors and record what the report shows."""
    recorder = Recorder(baselines, window=window)
    for path in paths:
        recorder.run_file(path, fmt)
    recorder.finish()
    return recorder.traces


# ---- rendering: SVG ----------------------------------------------------------------------------------
BASE_COLOR = "#4C78A8"
PROD_COLOR = "#F58518"
NEW_COLOR = "#D62728"
THRESHOLD_COLOR = "#D62728"
GRID_COLOR = "#E5E7EB"
INK = "#1F2937"
MUTED = "#6B7280"
KIND_COLORS = {"drift": "#D62728", "data_quality": "#9467BD", "confidence_drop": "#8C564B",
               "serving": "#17BECF", "skew": "#E377C2", "performance": "#7F7F7F"}
KIND_TITLES = {"drift": "distribution changed", "data_quality": "data-quality problem",
               "confidence_drop": "model confidence dropped", "serving": "serving problem",
               "skew": "training / serving mismatch", "performance": "accuracy dropped"}
SERIES_COLORS = ("#D62728", "#9467BD", "#2CA02C")


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _num(v: float | None) -> str:
    """A short readable number: 1.2M, 35k, 612, 0.25, 0.0031."""
    if v is None or not math.isfinite(v):
        return "–"
    a = abs(v)
    for at_least, scale, suffix in ((1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if a >= at_least:
            return f"{v / scale:.3g}{suffix}"
    if a >= 100 or a == 0:
        return f"{v:.0f}"
    return f"{v:.3g}"


def _pct(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    p = v * 100
    return f"{p:.0f}%" if p >= 10 or p == 0 else f"{p:.1f}%" if p >= 0.1 else "<0.1%"


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
        return self.height - self.bottom - (v - self.y0) / (self.y1 - self.y0) * inner if self.y1 > self.y0 else self.height - self.bottom

    def axes(self, x_ticks: list[float], y_ticks: list[float], x_fmt=_num, y_fmt=_num,
             x_label: str = "", y_label: str = "") -> str:
        out = []
        xl, xr, yb, yt = self.left, self.width - self.right, self.height - self.bottom, self.top
        for t in y_ticks:
            y = self.y(t)
            out.append(f'<line x1="{xl}" x2="{xr}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID_COLOR}"/>'
                       f'<text x="{xl - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_e(y_fmt(t))}</text>')
        for t in x_ticks:
            x = self.x(t)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{yb}" y2="{yb + 4}" stroke="{MUTED}"/>'
                       f'<text x="{x:.1f}" y="{yb + 16}" text-anchor="middle" class="tick">{_e(x_fmt(t))}</text>')
        out.append(f'<line x1="{xl}" x2="{xr}" y1="{yb}" y2="{yb}" stroke="{MUTED}"/>')
        if x_label:
            out.append(f'<text x="{(xl + xr) / 2:.1f}" y="{self.height - 4}" text-anchor="middle" class="axis">{_e(x_label)}</text>')
        if y_label:
            out.append(f'<text x="12" y="{(yt + yb) / 2:.1f}" text-anchor="middle" class="axis" '
                       f'transform="rotate(-90 12 {(yt + yb) / 2:.1f})">{_e(y_label)}</text>')
        return "".join(out)


def _svg(width: int, height: int, title: str, body: str, css_class: str = "plot") -> str:
    return (f'<svg class="{css_class}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>{body}</svg>')


def _legend(items: list[tuple[str, str, str]], x: float, y: float) -> str:
    """items: (kind 'box' | 'line' | 'dash' | 'diamond', color, label), laid out left to right."""
    out = []
    for kind, color, label in items:
        if kind == "box":
            out.append(f'<rect x="{x:.1f}" y="{y - 9}" width="14" height="10" fill="{color}" fill-opacity="0.45" stroke="{color}"/>')
        elif kind == "diamond":
            out.append(f'<path d="M{x + 7:.1f} {y - 10} l6 6 l-6 6 l-6 -6 z" fill="{color}"/>')
        else:
            dash = ' stroke-dasharray="5 3"' if kind == "dash" else ""
            out.append(f'<line x1="{x:.1f}" x2="{x + 16:.1f}" y1="{y - 4}" y2="{y - 4}" stroke="{color}" stroke-width="2.5"{dash}/>')
        out.append(f'<text x="{x + 20:.1f}" y="{y}" class="legend">{_e(label)}</text>')
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


def numeric_distribution_svg(profile: NumericProfile, prod: _Values, prod_label: str, baseline_rows: int) -> str:
    values = prod.sample.values
    edges, log_x = _numeric_bins(profile, values)
    base = _training_mass(profile, edges)
    counts = np.histogram(values, edges)[0] if len(values) else np.zeros(len(edges) - 1)
    share = counts / len(values) if len(values) else counts.astype(float)
    top = float(max(base.max(), share.max(), 1e-9)) * 1.12
    f = _Frame(560, 310, 58, 18, 52, 44, float(edges[0]), float(edges[-1]), 0.0, top, log_x)
    y_ticks = _ticks(0.0, top, 4)
    x_ticks = _log_ticks(f.x0, f.x1) if log_x else _ticks(f.x0, f.x1, 6)
    body = [f.axes(x_ticks, y_ticks, y_fmt=_pct, x_label=profile.name + (" (log scale)" if log_x else ""),
                   y_label="share of values")]
    body.append(f'<path d="{_step_path(f, edges, base)}" fill="{BASE_COLOR}" fill-opacity="0.35" stroke="{BASE_COLOR}" stroke-width="1.5"/>')
    if len(values):
        body.append(f'<path d="{_step_path(f, edges, share)}" fill="{PROD_COLOR}" fill-opacity="0.25" stroke="{PROD_COLOR}" stroke-width="2.2"/>')
        body.append(_median_marker(f, float(np.median(values)), PROD_COLOR))
    else:
        body.append(f'<text x="{f.width / 2}" y="{f.height / 2}" text-anchor="middle" class="note">'
                    f'no valid production value ({_pct(prod.missing_rate)} missing)</text>')
    body.append(_median_marker(f, float(profile.quantiles[500]), BASE_COLOR))
    body.append(_legend([("box", BASE_COLOR, _legend_label("training", baseline_rows, "rows", profile.missing_rate))], f.left, 16)
                + _legend([("box", PROD_COLOR, _legend_label(prod_label, prod.valid, "values", prod.missing_rate))], f.left, 34))
    body.append(f'<text x="{f.width - f.right}" y="16" text-anchor="end" class="note">▲ median</text>')
    return _svg(f.width, f.height, f"{profile.name}: training vs production distribution", "".join(body))


def _legend_label(what: str, n: int, unit: str, missing_rate: float) -> str:
    return f"{what} ({n:,} {unit}" + (f", {_pct(missing_rate)} missing)" if missing_rate >= 0.005 else ")")


def _median_marker(f: _Frame, v: float, color: str) -> str:
    if not (f.x0 <= v <= f.x1):
        return ""
    x, y = f.x(v), f.height - f.bottom
    return f'<path d="M{x:.1f} {y - 9:.1f} l-6 9 h12 z" fill="{color}" stroke="white" stroke-width="1"/>'


def categorical_distribution_svg(profile: CategoricalProfile, prod: _Values, prod_label: str, baseline_rows: int) -> str:
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
                    f'<text x="{x:.1f}" y="{height - 14}" text-anchor="middle" class="tick">{_pct(t)}</text>')
    for i, (label, b, p, new) in enumerate(shown):
        y = top_pad + i * row_h
        shown_label = label if len(label) <= 20 else label[:19] + "…"
        color = NEW_COLOR if new else INK
        tag = " (new)" if new else ""
        body.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" class="cat" fill="{color}">{_e(shown_label + tag)}</text>')
        body.append(f'<rect x="{left}" y="{y + 3}" width="{max(f.x(b) - left, 0.0):.1f}" height="11" fill="{BASE_COLOR}" fill-opacity="0.75"/>')
        pc = NEW_COLOR if new else PROD_COLOR
        body.append(f'<rect x="{left}" y="{y + 14}" width="{max(f.x(p) - left, 0.0):.1f}" height="11" fill="{pc}"/>')
        body.append(f'<text x="{max(f.x(b), f.x(p)) + 5:.1f}" y="{y + 18}" class="tick">{_pct(b)} → {_pct(p)}</text>')
    body.append(f'<line x1="{left}" x2="{left}" y1="{top_pad - 4}" y2="{height - 30}" stroke="{MUTED}"/>')
    body.append("".join(_legend([item], 10, 16 + 18 * i) for i, item in enumerate(items)))
    return _svg(width, height, f"{profile.name}: training vs production category shares", "".join(body))


@dataclass
class _Chart:
    """A statistic over events: the lines, the level that alerts (or the training reference)."""

    title: str
    y_label: str
    lines: list[tuple[str, list[float | None]]]
    threshold: float | None = None
    threshold_label: str = "alert threshold"
    reference: float | None = None
    reference_label: str = ""
    y_fmt: Any = _num
    #: alerts of this detector are drawn at their statistic (same scale as the lines), others on top
    alert_detector: str | None = None


def timeseries_svg(chart: _Chart, x: list[int], alerts: list[dict], feature: str) -> str:
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
    body = [f.axes(_ticks(0.0, float(x_max), 6), _ticks(f.y0, f.y1, 4), x_fmt=lambda v: _num(v),
                   y_fmt=chart.y_fmt, x_label="events", y_label=chart.y_label)]
    for a in alerts:  # the change's estimated start to its detection, shaded
        start = (a.get("evidence") or {}).get("change_start_event")
        if _is_number(start) and start < a["events_seen"]:
            x0, x1 = f.x(max(0.0, float(start))), f.x(float(a["events_seen"]))
            body.append(f'<rect x="{x0:.1f}" y="{f.top}" width="{max(x1 - x0, 2.0):.1f}" height="{f_h - f.top - f.bottom}" '
                        f'fill="{THRESHOLD_COLOR}" fill-opacity="0.10"/>')
    for level, color in ((chart.threshold, THRESHOLD_COLOR), (chart.reference, BASE_COLOR)):
        if level is not None:
            y = f.y(level)
            body.append(f'<line x1="{f.left}" x2="{f_w - f.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{color}" '
                        f'stroke-width="1.5" stroke-dasharray="6 4"/>')
    for (label, ys), color in zip(chart.lines, SERIES_COLORS if chart.threshold is not None else (PROD_COLOR,) + SERIES_COLORS[1:]):
        pts = [f"{f.x(xi):.1f},{f.y(v):.1f}" for xi, v in zip(x, ys) if v is not None]
        if pts:
            body.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{color}" stroke-width="2" stroke-linejoin="round"/>')
    for a in alerts:
        xa = f.x(float(a["events_seen"]))
        body.append(f'<line x1="{xa:.1f}" x2="{xa:.1f}" y1="{f.top}" y2="{f_h - f.bottom}" stroke="{THRESHOLD_COLOR}" stroke-width="1"/>')
        ya = f.y(min(float(a["statistic"]), f.y1)) if a["detector"] == chart.alert_detector else f.top + 6
        body.append(f'<path d="M{xa:.1f} {ya - 7:.1f} l7 7 l-7 7 l-7 -7 z" fill="{KIND_COLORS.get(a["kind"], THRESHOLD_COLOR)}" stroke="white"/>')
    items = []
    for (label, _), color in zip(chart.lines, SERIES_COLORS if chart.threshold is not None else (PROD_COLOR,) + SERIES_COLORS[1:]):
        items.append(("line", color, label))
    if chart.threshold is not None:
        items.append(("dash", THRESHOLD_COLOR, chart.threshold_label))
    if chart.reference is not None:
        items.append(("dash", BASE_COLOR, chart.reference_label))
    if alerts:
        items.append(("diamond", THRESHOLD_COLOR, "alert"))
    body.append(f'<text x="{f.left}" y="14" class="chart-title">{_e(chart.title)}</text>')
    body.append(_legend(items, f.left, 32))
    return _svg(f_w, f_h, f"{feature}: {chart.title}", "".join(body))


def _charts(trace: FeatureTrace, alerts: list[dict], model: ModelTrace) -> list[_Chart]:
    """The firing test's own statistic over time (when the snapshot exposes it), then PSI."""
    charts: list[_Chart] = []
    detectors = [a["detector"] for a in alerts]
    keys = set().union(*trace.samples) if trace.samples else set()
    if trace.name == "confidence" and model.has_confidence:
        charts.append(_Chart("mean prediction confidence (recent events)", "confidence",
                             [("production", trace.series("confidence_mean"))],
                             reference=model.baseline.confidence.mean, reference_label="training mean"))
        return charts
    first = next((d for d in detectors if d in keys or d in ("cusum", "missing_rate", "unseen_category")), None)
    if first == "cusum":
        charts.append(_Chart("sequential test against training (CUSUM)", "CUSUM",
                             [("location", trace.series("cusum_location")), ("spread", trace.series("cusum_scale"))],
                             threshold=_first(trace.series("cusum_threshold")), alert_detector="cusum"))
    elif first == "missing_rate":
        charts.append(_Chart("share of missing values (recent events)", "missing",
                             [("production", trace.series("missing_ratio"))],
                             reference=trace.profile.missing_rate, reference_label="training", y_fmt=_pct))
    elif first == "unseen_category":
        charts.append(_Chart("unseen-category test (rate CUSUM)", "CUSUM", [("unseen", trace.series("unseen_cusum"))],
                             threshold=_first(trace.series("cusum_threshold")), alert_detector=first))
    elif first is not None:
        threshold = next(float(a["threshold"]) for a in alerts if a["detector"] == first)
        charts.append(_Chart(f"{first} test per window of events", first, [(first, trace.series(first))],
                             threshold=threshold, alert_detector=first))
    if "psi" in keys and first != "psi":
        charts.append(_Chart("PSI: distance to training per window (0.1 moderate, 0.25 large)", "PSI",
                             [("PSI", trace.series("psi"))], threshold=0.25, threshold_label="large shift (0.25)"))
    return charts


def _first(values: list[float | None]) -> float | None:
    return next((v for v in values if v is not None), None)


def timeline_svg(model: ModelTrace, rows: list[str]) -> str:
    """Every alert on one strip per feature: when each change began (shaded) and was detected (diamond)."""
    row_h, left, top = 26, 170, 40
    width, height = 1100, top + row_h * len(rows) + 34
    f = _Frame(width, height, left, 24, top, 34, 0.0, float(max(model.events, 1)), 0.0, 1.0)
    body = [f.axes(_ticks(0.0, f.x1, 8), [], x_label="events")]
    for i, name in enumerate(rows):
        y = top + i * row_h + row_h / 2
        body.append(f'<line x1="{left}" x2="{width - f.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID_COLOR}"/>'
                    f'<text x="{left - 10}" y="{y + 4:.1f}" text-anchor="end" class="cat">{_e(name)}</text>')
        for a in model.alerts:
            if (a.get("feature") or "(model)") != name and not (name == "(model)" and a.get("feature") not in model.features):
                continue
            color = KIND_COLORS.get(a["kind"], THRESHOLD_COLOR)
            start = (a.get("evidence") or {}).get("change_start_event")
            xa = f.x(float(a["events_seen"]))
            if _is_number(start) and start < a["events_seen"]:
                x0 = f.x(max(0.0, float(start)))
                body.append(f'<rect x="{x0:.1f}" y="{y - 7:.1f}" width="{max(xa - x0, 2.0):.1f}" height="14" fill="{color}" fill-opacity="0.25"/>')
            body.append(f'<path d="M{xa:.1f} {y - 8:.1f} l8 8 l-8 8 l-8 -8 z" fill="{color}" stroke="white"/>')
    kinds = sorted({a["kind"] for a in model.alerts}, key=lambda k: list(KIND_COLORS).index(k) if k in KIND_COLORS else 99)
    body.append(_legend([("diamond", KIND_COLORS.get(k, THRESHOLD_COLOR), k.replace("_", " ")) for k in kinds]
                        + [("box", MUTED, "change began → detected")], left, 18))
    return _svg(width, height, f"{model.baseline.model}: alerts over the replay", "".join(body), css_class="plot wide")


# ---- rendering: the page -------------------------------------------------------------------------
_CSS = """
:root { --ink: #1F2937; --muted: #6B7280; --line: #E5E7EB; --bg: #F3F4F6; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 15px/1.45 "DejaVu Sans", "Segoe UI", Helvetica, Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 28px 0 12px; }
h3 { font-size: 18px; margin: 0; }
.sub { color: var(--muted); margin: 0 0 16px; }
.tiles { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin-bottom: 16px; }
.tile { background: white; border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
.tile .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.tile .v { font-size: 22px; font-weight: bold; margin-top: 2px; }
.tile .s { color: var(--muted); font-size: 13px; }
.chip { display: inline-block; white-space: nowrap; border-radius: 999px; padding: 1px 10px; margin: 2px 4px 2px 0;
        color: white; font-size: 13px; font-weight: bold; }
.sev { display: inline-block; border-radius: 4px; padding: 0 6px; font-size: 12px; font-weight: bold; }
.sev.critical { background: #FEE2E2; color: #991B1B; } .sev.warning { background: #FEF3C7; color: #92400E; }
.card { background: white; border: 1px solid var(--line); border-left: 6px solid #D62728; border-radius: 10px;
        padding: 16px 18px; margin: 14px 0; }
.card.quiet { border-left-color: #9CA3AF; }
.card header { display: flex; align-items: baseline; gap: 10px; flex-wrap: wrap; margin-bottom: 8px; }
.verdict { font-size: 15px; color: var(--muted); }
.diagnosis { background: #FFF7ED; border: 1px solid #FED7AA; border-radius: 8px; padding: 8px 12px; margin: 6px 0; }
.diagnosis b { color: #9A3412; }
.plots { display: grid; grid-template-columns: 1fr 1fr; gap: 8px 16px; align-items: start; }
.plots .stack { display: flex; flex-direction: column; gap: 6px; }
svg.plot { width: 100%; height: auto; max-width: 560px; overflow: visible; }
svg.wide { max-width: 1100px; }
svg text { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; fill: var(--ink); }
svg .tick { font-size: 11px; fill: var(--muted); } svg .axis { font-size: 12px; fill: var(--muted); }
svg .legend { font-size: 12px; } svg .cat { font-size: 12.5px; } svg .note { font-size: 12px; fill: var(--muted); }
svg .chart-title { font-size: 13px; font-weight: bold; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: normal; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
table.evidence { width: auto; min-width: 360px; margin: 8px 0 12px; }
.panel { background: white; border: 1px solid var(--line); border-radius: 10px; padding: 12px 16px; }
details { margin: 14px 0; } summary { cursor: pointer; font-size: 17px; font-weight: bold; padding: 6px 0; }
.quietgrid { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.quietgrid .card { margin: 0; }
a { color: #1D4ED8; text-decoration: none; }
footer { color: var(--muted); font-size: 12px; margin-top: 28px; }
@media (max-width: 900px) { .plots, .quietgrid, .tiles { grid-template-columns: 1fr; } }
"""


def render_html(traces: Sequence[ModelTrace], sources: Sequence[str] = ()) -> str:
    """The whole page: one section per model."""
    models = ", ".join(t.baseline.model for t in traces) or "no model"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>skewwatch report: {_e(models)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>skewwatch report: {_e(models)}</h1>",
        f'<p class="sub">{_e(", ".join(sources) or "events")} replayed through the monitors against the training '
        f'baseline · generated {datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}</p>',
    ]
    for t in traces:
        parts.append(_model_section(t, several=len(traces) > 1))
    parts.append('<footer>Plots show aggregates only (shares per bin or category, summary statistics); no event '
                 'or request is reproduced. Generated by <code>skewwatch report</code>.</footer>')
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _model_section(t: ModelTrace, several: bool) -> str:
    b = t.baseline
    by_kind = Counter(a["kind"] for a in t.alerts)
    alerted: list[str] = []
    for a in t.alerts:
        name = a.get("feature")
        if name in t.features and name not in alerted:
            alerted.append(name)
    model_level = [a for a in t.alerts if a.get("feature") not in t.features]
    out = [f'<section id="model-{_e(b.model)}">']
    if several:
        out.append(f"<h2>Model {_e(b.model)}</h2>")
    chips = "".join(f'<span class="chip" style="background:{KIND_COLORS.get(k, MUTED)}">{n} {_e(k.replace("_", " "))}</span>'
                    for k, n in by_kind.most_common()) or '<span class="s">none: production looks like training</span>'
    served = ", ".join(f"{v} ({n:,})" for v, n in t.versions.most_common(4)) or "–"
    out.append('<div class="tiles">'
               f'<div class="tile"><div class="k">Model</div><div class="v">{_e(b.model)}</div>'
               f'<div class="s">baseline version {_e(b.version or "–")} · {b.n_rows:,} training rows</div></div>'
               f'<div class="tile"><div class="k">Events</div><div class="v">{t.events:,}</div>'
               f'<div class="s">{_e(_span(t))}</div></div>'
               f'<div class="tile"><div class="k">Alerts</div><div class="v">{len(t.alerts)}</div><div>{chips}</div></div>'
               f'<div class="tile"><div class="k">Features alerted</div><div class="v">{len(alerted)} of {len(t.features)}</div>'
               f'<div class="s">served versions: {_e(served)}</div></div>'
               '</div>')
    if t.alerts:
        rows = alerted + (["(model)"] if model_level else [])
        out.append(f'<div class="panel">{timeline_svg(t, rows)}</div>')
        out.append(_alert_table(t, f"Alerts of {b.model}" if several else "Alerts"))
    for a in model_level:
        out.append(f'<article class="card"><header><h3>{_e(a.get("feature") or "model")}</h3>'
                   f'<span class="verdict">{_e(KIND_TITLES.get(a["kind"], a["kind"]))}</span>{_severity(a)}</header>'
                   f'{_diagnoses([a])}</article>')
    for name in alerted:
        out.append(_feature_card(t, t.features[name], [a for a in t.alerts if a.get("feature") == name]))
    quiet = [f for name, f in t.features.items() if name not in alerted]
    if quiet:
        out.append(f"<details><summary>Features without alerts ({len(quiet)})</summary><div class=\"quietgrid\">")
        for f in quiet:
            out.append(_quiet_card(t, f))
        out.append("</div></details>")
    out.append("</section>")
    return "\n".join(out)


def _span(t: ModelTrace) -> str:
    if t.ts_min is None:
        return "events carry no timestamps"
    fmt = "%Y-%m-%d %H:%M:%S"
    lo = datetime.fromtimestamp(t.ts_min, timezone.utc)
    hi = datetime.fromtimestamp(t.ts_max, timezone.utc)
    return f"{lo.strftime(fmt)} → {hi.strftime(fmt if hi.date() != lo.date() else '%H:%M:%S')} UTC ({_duration(t.ts_max - t.ts_min)})"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _severity(a: dict) -> str:
    sev = a.get("severity") or "warning"
    return f'<span class="sev {_e(sev)}">{_e(sev)}</span>'


def _alert_table(t: ModelTrace, heading: str) -> str:
    rows = []
    for a in t.alerts:
        feature = a.get("feature")
        link = f'<a href="#f-{_e(t.baseline.model)}-{_e(feature)}">{_e(feature)}</a>' if feature in t.features else _e(feature or "–")
        rows.append(f'<tr data-alert-id="{_e(a["alert_id"])}"><td class="num">{int(a["events_seen"]):,}</td>'
                    f'<td><span class="chip" style="background:{KIND_COLORS.get(a["kind"], MUTED)}">{_e(a["kind"].replace("_", " "))}</span></td>'
                    f'<td>{link}</td><td>{_e(a["detector"])}</td><td>{_severity(a)}</td><td>{_e(a.get("diagnosis") or "")}</td></tr>')
    return (f'<h2>{_e(heading)}</h2><div class="panel"><table><thead><tr><th>at event</th><th>kind</th><th>feature</th>'
            '<th>test</th><th>severity</th><th>diagnosis</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table></div>")


def _diagnoses(alerts: list[dict]) -> str:
    seen: list[str] = []
    out = []
    for a in alerts:
        d = a.get("diagnosis") or ""
        if d and d not in seen:
            seen.append(d)
            cause = (a.get("evidence") or {}).get("cause")
            label = f"{a['kind'].replace('_', ' ')}" + (f" · {str(cause).replace('_', ' ')}" if cause else "")
            out.append(f'<p class="diagnosis"><b>{_e(label)}:</b> {_e(d)}</p>')
    return "".join(out)


#: (key in the alert's baseline / current summaries, row label, format)
_EVIDENCE_ROWS = (("mean", "mean", _num), ("std", "spread (std)", _num), ("p50", "median", _num),
                  ("missing_rate", "missing", _pct), ("invalid_rate", "invalid values", _pct),
                  ("unseen_share", "unseen categories", _pct))


def _evidence_table(a: dict) -> str:
    base, cur = a.get("baseline") or {}, a.get("current") or {}
    rows = []
    for key, label, fmt in _EVIDENCE_ROWS:
        bv, cv = base.get(key), cur.get(key)
        if key in ("invalid_rate", "unseen_share") and not ((bv or 0) > 0 or (cv or 0) > 0):
            continue
        if _is_number(bv) or _is_number(cv):
            rows.append(f'<tr><td>{label}</td><td class="num">{fmt(bv) if _is_number(bv) else "–"}</td>'
                        f'<td class="num">{fmt(cv) if _is_number(cv) else "–"}</td></tr>')
    if isinstance(base.get("top"), dict) and isinstance(cur.get("top"), dict):
        def shares(d: dict) -> str:
            return ", ".join(f"{k} {_pct(v)}" for k, v in list(d.items())[:3])
        rows.append(f'<tr><td>top categories</td><td>{_e(shares(base["top"]))}</td><td>{_e(shares(cur["top"]))}</td></tr>')
    if not rows:
        return ""
    n = cur.get("events") or cur.get("count")
    head = f"at the alert{f' (last {int(n):,} events)' if _is_number(n) else ''}"
    return (f'<table class="evidence"><thead><tr><th></th><th>training</th><th>{_e(head)}</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _distribution(f: FeatureTrace, values: _Values, label: str) -> str:
    rows = f.profile.count + f.profile.n_missing + f.profile.n_invalid
    if f.numeric:
        return numeric_distribution_svg(f.profile, values, label, rows)
    return categorical_distribution_svg(f.profile, values, label, rows)


def _feature_card(t: ModelTrace, f: FeatureTrace, alerts: list[dict]) -> str:
    kinds = sorted({a["kind"] for a in alerts})
    verdict = ", ".join(KIND_TITLES.get(k, k) for k in kinds)
    worst = next((a for a in alerts if a.get("severity") == "critical"), alerts[0])
    color = KIND_COLORS.get(alerts[0]["kind"], THRESHOLD_COLOR)
    since = f.since_alert if f.since_alert is not None and f.since_alert.total else f.overall
    label = f"production from event {f.alert_at:,}" if since is f.since_alert else "production"
    charts = "".join(timeseries_svg(c, t.sample_x, alerts, f.name) for c in _charts(f, alerts, t))
    return (f'<article class="card" id="f-{_e(t.baseline.model)}-{_e(f.name)}" style="border-left-color:{color}">'
            f'<header><h3>{_e(f.name)}</h3><span class="verdict">{_e(verdict)}</span>{_severity(worst)}</header>'
            f'{_diagnoses(alerts)}'
            f'<div class="plots"><div>{_distribution(f, since, label)}{_evidence_table(alerts[0])}</div>'
            f'<div class="stack">{charts}</div></div>'
            "</article>")


def _quiet_card(t: ModelTrace, f: FeatureTrace) -> str:
    return (f'<article class="card quiet" id="f-{_e(t.baseline.model)}-{_e(f.name)}"><header><h3>{_e(f.name)}</h3>'
            f'<span class="verdict">no alert</span></header>{_distribution(f, f.overall, "production")}</article>')
