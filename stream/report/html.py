"""The report page: one self-contained HTML document (inline CSS and SVG, no script, nothing
fetched) with a section per model and a card per feature."""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from detectors.fmt import number, percent, printable
from stream.report.gather import FeatureTrace, ModelTrace, Values, is_number
from stream.report.svg import (
    KIND_COLORS,
    KIND_TITLES,
    MUTED,
    THRESHOLD_COLOR,
    categorical_distribution_svg,
    esc,
    feature_charts,
    numeric_distribution_svg,
    shadow_svg,
    timeline_svg,
    timeseries_svg,
)

__all__ = ["render_html"]

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
.banner { background: #FEF3C7; border: 1px solid #F59E0B; border-left: 6px solid #D97706; border-radius: 10px;
          padding: 12px 16px; margin: 0 0 16px; font-size: 16px; }
.banner.empty { background: #FEE2E2; border-color: #F87171; border-left-color: #B91C1C; }
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
.next-step { background: #ECFDF5; border: 1px solid #A7F3D0; border-radius: 8px; padding: 8px 12px; margin: 6px 0; }
.next-step b { color: #065F46; }
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


def render_html(traces: Sequence[ModelTrace], sources: Sequence[str] = (), rejected: Mapping[str, int] | None = None,
                unmonitored: str = "", shadow: Mapping[str, dict] | None = None) -> str:
    """The whole page: a banner if anything was rejected or nothing monitored, then one section per model.

    Parameters
    ----------
    traces
        What was recorded per model (`stream.report.gather`).
    sources
        The input files' names, for the subtitle.
    rejected
        Rejects by reason (`Replay.rejected`).
    unmonitored
        The sentence on events of models without a baseline (`replay.unmonitored_sentence`), if any.
    shadow
        The shadow pairs' comparisons (`ShadowMonitor.snapshot()`), with `--shadow`.

    Returns
    -------
    str
        The HTML document.
    """
    rejected = rejected or {}
    models = ", ".join(t.baseline.model for t in traces) or "no model"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>skewwatch report: {esc(models)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>skewwatch report: {esc(models)}</h1>",
        f'<p class="sub">{esc(", ".join(sources) or "events")} replayed through the monitors against the training '
        f'baseline · generated {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}</p>',
        _rejected_banner(sum(t.events for t in traces), rejected, unmonitored),
    ]
    if shadow:
        parts.append(_shadow_section(shadow))
    for t in traces:
        parts.append(_model_section(t, several=len(traces) > 1, rejected=sum(rejected.values())))
    parts.append('<footer>Plots show aggregates only (shares per bin or category, summary statistics); no event '
                 'or request is reproduced. Generated by <code>skewwatch report</code>.</footer>')
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _shadow_section(shadow: Mapping[str, dict]) -> str:
    """Per shadow pair: its agreement per window against the expected one, its confidence difference and,
    with labels, both models' figures and whether their difference is real."""
    out = ['<section id="shadow"><h2>Shadow candidates</h2>']
    for name, pair in shadow.items():
        windows = pair.get("windows") or []
        reference = pair.get("reference") or {}
        expected = reference.get("expected")
        source = ("configured minimum" if reference.get("source") == "configured" else
                  f"first window's {percent(reference['agreement'])} less the tolerance and its sampling error"
                  if reference else "not yet known")
        below = sum(1 for w in windows if w.get("below_expected"))
        facts = [f"{pair.get('joined', 0):,} requests joined", f"{len(windows)} windows",
                 f"expected agreement {percent(expected)} ({source})",
                 f"{below} below it" if below else "none below it"]
        if pair.get("task") == "regression" and pair.get("regression_tolerance") is not None:
            facts.append(f"agreeing: predictions within {number(pair['regression_tolerance'])}")
        last = windows[-1] if windows else None
        if last and "confidence_diff" in last:
            facts.append(f"confidence difference (candidate - production) {number(last['confidence_diff']['mean'])}")
        out.append(f'<article class="card quiet"><header><h3>{esc(name)}</h3>'
                   f'<span class="verdict">{esc(" · ".join(facts))}</span></header>')
        if windows:
            out.append(shadow_svg(name, windows, expected))
        labels = pair.get("labels")
        if labels:
            metric = labels["metric"]
            fmt = number if metric == "mae" else percent
            rows = "".join(f"<tr><td>{side}</td><td class=\"num\">{fmt(labels[side][metric])}</td>"
                           f"<td class=\"num\">{fmt(labels[side]['ci_low'])} - {fmt(labels[side]['ci_high'])}</td>"
                           "</tr>" for side in ("production", "candidate"))
            verdict = (labels["verdict"] or "too few labelled requests for a verdict").replace("_", " ")
            out.append(f'<table class="evidence"><tr><th>on {labels["n"]:,} labelled requests</th><th>{esc(metric)}'
                       f'</th><th>95% interval</th></tr>{rows}</table>'
                       f'<p>{esc(verdict)} ({esc(labels["test"])}, p={labels["p_value"]:.2g}; difference '
                       f'{fmt(labels["difference"])}, 95% interval {fmt(labels["difference_ci_low"])} to '
                       f'{fmt(labels["difference_ci_high"])})</p>')
        out.append("</article>")
    out.append("</section>")
    return "\n".join(out)


def _rejected_banner(monitored: int, rejected: Mapping[str, int], unmonitored: str) -> str:
    """What was not monitored, first thing on the page: nothing at all, or the rejects by reason."""
    total = sum(rejected.values())
    if monitored and not total:
        return ""
    by_reason = ", ".join(f"{esc(reason)} {n:,}" for reason, n in Counter(rejected).most_common())
    if monitored:
        text = f"<b>{total:,} rejected, not monitored:</b> {by_reason}."
    elif total:
        text = f"<b>Nothing was monitored.</b> {total:,} rejected: {by_reason}."
    else:
        text = "<b>Nothing was monitored.</b> The input holds no events."
    if unmonitored:
        text += f" {esc(unmonitored)}."
    if total:
        text += " <code>skewwatch replay --dead-letter FILE</code> writes each one with its reason."
    return f'<div class="banner{"" if monitored else " empty"}">{text}</div>'


def _model_section(t: ModelTrace, several: bool, rejected: int = 0) -> str:
    b = t.baseline
    by_kind = Counter(a["kind"] for a in t.alerts)
    alerted: list[str] = []
    for a in t.alerts:
        name = a.get("feature")
        if name in t.features and name not in alerted:
            alerted.append(name)
    model_level = [a for a in t.alerts if a.get("feature") not in t.features]
    out = [f'<section id="model-{esc(b.model)}">']
    if several:
        out.append(f"<h2>Model {esc(b.model)}</h2>")
    # the all-clear only when every event was monitored: rejects can hide what production looks like
    quiet = ("none: production looks like training" if t.events and not rejected
             else f"none among the monitored events; {rejected:,} rejected (see above)" if t.events
             else "no event monitored")
    chips = ("".join(_chip(k, f"{n} {k.replace('_', ' ')}") for k, n in by_kind.most_common())
             or f'<span class="s">{esc(quiet)}</span>')
    served = ", ".join(f"{v} ({n:,})" for v, n in t.versions.most_common(4)) or "–"
    out.append('<div class="tiles">'
               f'<div class="tile"><div class="k">Model</div><div class="v">{esc(b.model)}</div>'
               f'<div class="s">baseline version {esc(b.version or "–")} · {b.n_rows:,} training rows</div></div>'
               f'<div class="tile"><div class="k">Events</div><div class="v">{t.events:,}</div>'
               f'<div class="s">{esc(_span(t))}</div></div>'
               f'<div class="tile"><div class="k">Alerts</div><div class="v">{len(t.alerts)}</div>'
               f'<div>{chips}</div></div>'
               f'<div class="tile"><div class="k">Features alerted</div>'
               f'<div class="v">{len(alerted)} of {len(t.features)}</div>'
               f'<div class="s">served versions: {esc(served)}</div></div>'
               '</div>')
    if t.alerts:
        rows = alerted + (["(model)"] if model_level else [])
        out.append(f'<div class="panel">{timeline_svg(t, rows)}</div>')
        out.append(_alert_table(t, f"Alerts of {b.model}" if several else "Alerts"))
    for a in model_level:
        out.append(f'<article class="card"><header><h3>{esc(a.get("feature") or "model")}</h3>'
                   f'<span class="verdict">{esc(KIND_TITLES.get(a["kind"], a["kind"]))}</span>{_severity(a)}</header>'
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
    if not t.events:
        return "–"
    if t.ts_min is None:
        return "events carry no timestamps"
    fmt = "%Y-%m-%d %H:%M:%S"
    lo = datetime.fromtimestamp(t.ts_min, UTC)
    hi = datetime.fromtimestamp(t.ts_max, UTC)
    last = hi.strftime(fmt if hi.date() != lo.date() else "%H:%M:%S")
    return f"{lo.strftime(fmt)} → {last} UTC ({_duration(t.ts_max - t.ts_min)})"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _severity(a: dict) -> str:
    sev = a.get("severity") or "warning"
    return f'<span class="sev {esc(sev)}">{esc(sev)}</span>'


def _alert_table(t: ModelTrace, heading: str) -> str:
    rows = []
    for a in t.alerts:
        feature = a.get("feature")
        link = (f'<a href="#f-{esc(t.baseline.model)}-{esc(feature)}">{esc(feature)}</a>' if feature in t.features
                else esc(feature or "–"))
        rows.append(f'<tr data-alert-id="{esc(a["alert_id"])}"><td class="num">{int(a["events_seen"]):,}</td>'
                    f'<td>{_chip(a["kind"], a["kind"].replace("_", " "))}</td>'
                    f'<td>{link}</td><td>{esc(a["detector"])}</td><td>{_severity(a)}</td>'
                    f'<td>{esc(a.get("diagnosis") or "")}</td></tr>')
    return (f'<h2>{esc(heading)}</h2><div class="panel"><table><thead><tr><th>at event</th><th>kind</th>'
            '<th>feature</th><th>test</th><th>severity</th><th>diagnosis</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></div>")


def _chip(kind: str, label: str) -> str:
    """A label on the alert kind's colour."""
    return f'<span class="chip" style="background:{KIND_COLORS.get(kind, MUTED)}">{esc(label)}</span>'


def _diagnoses(alerts: list[dict]) -> str:
    seen: list[str] = []
    out = []
    for a in alerts:
        d = a.get("diagnosis") or ""
        if d and d not in seen:
            seen.append(d)
            cause = (a.get("evidence") or {}).get("cause")
            label = f"{a['kind'].replace('_', ' ')}" + (f" · {str(cause).replace('_', ' ')}" if cause else "")
            out.append(f'<p class="diagnosis"><b>{esc(label)}:</b> {esc(d)}</p>')
            if a.get("next_step"):  # it quotes producers' names: controls and bidi overrides written out too
                out.append(f'<p class="next-step"><b>next step:</b> {esc(printable(a["next_step"]))}</p>')
    return "".join(out)


#: (key in the alert's baseline / current summaries, row label, format)
_EVIDENCE_ROWS = (("mean", "mean", number), ("std", "spread (std)", number), ("p50", "median", number),
                  ("missing_rate", "missing", percent), ("invalid_rate", "invalid values", percent),
                  ("unseen_share", "unseen categories", percent))


def _evidence_table(a: dict) -> str:
    base, cur = a.get("baseline") or {}, a.get("current") or {}
    rows = []
    for key, label, fmt in _EVIDENCE_ROWS:
        bv, cv = base.get(key), cur.get(key)
        if key in ("invalid_rate", "unseen_share") and not ((bv or 0) > 0 or (cv or 0) > 0):
            continue
        if is_number(bv) or is_number(cv):
            rows.append(f'<tr><td>{label}</td><td class="num">{fmt(bv) if is_number(bv) else "–"}</td>'
                        f'<td class="num">{fmt(cv) if is_number(cv) else "–"}</td></tr>')
    if isinstance(base.get("top"), dict) and isinstance(cur.get("top"), dict):
        def shares(d: dict) -> str:
            return ", ".join(f"{k} {percent(v)}" for k, v in list(d.items())[:3])
        rows.append(f'<tr><td>top categories</td><td>{esc(shares(base["top"]))}</td>'
                    f'<td>{esc(shares(cur["top"]))}</td></tr>')
    if not rows:
        return ""
    n = cur.get("events") or cur.get("count")
    head = f"at the alert{f' (last {int(n):,} events)' if is_number(n) else ''}"
    return (f'<table class="evidence"><thead><tr><th></th><th>training</th><th>{esc(head)}</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _distribution(f: FeatureTrace, values: Values, label: str) -> str:
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
    charts = "".join(timeseries_svg(c, t.sample_x, alerts, f.name) for c in feature_charts(f, alerts, t))
    return (f'<article class="card" id="f-{esc(t.baseline.model)}-{esc(f.name)}" style="border-left-color:{color}">'
            f'<header><h3>{esc(f.name)}</h3><span class="verdict">{esc(verdict)}</span>{_severity(worst)}</header>'
            f'{_diagnoses(alerts)}'
            f'<div class="plots"><div>{_distribution(f, since, label)}{_evidence_table(alerts[0])}</div>'
            f'<div class="stack">{charts}</div></div>'
            "</article>")


def _quiet_card(t: ModelTrace, f: FeatureTrace) -> str:
    return (f'<article class="card quiet" id="f-{esc(t.baseline.model)}-{esc(f.name)}"><header><h3>{esc(f.name)}</h3>'
            f'<span class="verdict">no alert</span></header>{_distribution(f, f.overall, "production")}</article>')
