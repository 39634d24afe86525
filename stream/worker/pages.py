"""The worker's web pages on the app of stream.worker.app: /metrics (Prometheus), /status.json
(where each monitor lives) and / (the status page an on-call engineer opens).

The status page puts what needs a person first: the count of models by status, the rejected
events by reason, the disabled models with the reason, then per alerted model its alerted
features, newest first, each with the alert's diagnosis sentence, its next step when the alert has
one, and the training vs alert-time numbers (at most `ALERT_ROWS`, the rest counted); last, every
model in one table (events, time since the last, alerts by kind), and with shadow pairs
(`--shadow`) a table of them (agreement of the recent windows against the expected one, confidence
difference, the labelled comparison). It reloads itself every
`REFRESH_SECONDS` (a meta refresh: no script, nothing fetched). Its cost is the models and their
alerted features, never every feature's statistics (`ModelMonitor.snapshot` is left to /metrics).
"""
from __future__ import annotations

import asyncio
import html
import sys
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

import stream.worker.app as worker  # the module, not its names: tests swap worker.service and worker.metrics
from detectors.fmt import count, number, percent, printable, quote_value
from stream.worker.metrics import REFRESH_BUDGET, REFRESH_HOLD

app, settings = worker.app, worker.settings

__all__ = ["ALERT_ROWS", "REFRESH_SECONDS", "SHADOW_WINDOWS_SHOWN", "metrics_page", "metrics_text", "render_status",
           "shadow_rows", "status_json", "status_page"]

#: the status page reloads itself this often
REFRESH_SECONDS = 10
#: alerted features shown per model (the newest); the page says how many more there are
ALERT_ROWS = 8
#: a shadow pair's most recent windows shown (their agreement, newest last)
SHADOW_WINDOWS_SHOWN = 6
#: the loop's turn between two reads of a scrape: a timer, so that what fell due during a read
#: (timers, I/O callbacks: processing woken by a fetch) runs first; sleep(0) queued the next read ahead
_BETWEEN_READS = 1e-6


@app.page("/metrics")
async def metrics_page(web: Any, request: Any) -> Any:
    """The Prometheus metrics (`metrics_text`)."""
    return web.bytes(await metrics_text(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def metrics_text() -> bytes:
    """The model gauges refreshed, then the text built in a thread.

    The gauges are read from the monitors on the loop (processing changes them there), for
    `REFRESH_HOLD` at a time (at least one model; a 50-feature model takes ~1 ms, ~3 ms when a
    window closed since its last read) with the loop free in between, until `REFRESH_BUDGET` has
    passed since the scrape started: a scrape holds processing for a few ms at a time, and when
    processing keeps the loop busy it reads fewer models rather than waiting for it again and again.
    The text of hundreds of models is megabytes: written in a thread, off the loop, from each
    model's lines written when its gauges were set (stream.worker.metrics.Metrics.exposition).
    """
    start = time.perf_counter()
    while worker.service.update_gauges(budget=REFRESH_HOLD) and time.perf_counter() - start < REFRESH_BUDGET:
        await asyncio.sleep(_BETWEEN_READS)
    return await asyncio.to_thread(worker.metrics.exposition)


@app.page("/status.json")
async def status_json(web: Any, request: Any) -> Any:
    """Where each monitor lives (per assigned partition, each model's events seen), the models loaded and
    disabled, each model's last alert and the wall time of its last events, the rejects by reason."""
    service = worker.service
    return web.json({
        "app_id": settings.app_id,
        "partitions": {str(p): {"last_offset": m.last_offset,
                                "models": {name: monitor.events_seen
                                           for name, monitor in sorted(m.router.monitors().items())}}
                       for p, m in sorted(service.partitions.items())},
        "models": service.models,
        "unavailable": service.unavailable,
        "baseline_file_problems": service.baseline_file_problems,
        "last_alerts": service.last_alerts,
        "last_event_at": service.last_event_at,
        "rejected": dict(service.rejects.by_reason),
    })


@app.page("/")
async def status_page(web: Any, request: Any) -> Any:
    """The HTML status page (`render_status`)."""
    return web.html(render_status())


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222;max-width:75em}
h1{font-size:1.4em;margin:.2em 0}h1 small{color:#666;font-weight:normal}
h2{font-size:1.2em;margin:1.2em 0 .3em}h3{font-size:1em;margin:0 0 .3em}
.meta{color:#555}code{font-size:.95em}
table{border-collapse:collapse;margin:.3em 0}table.models{width:100%}
td,th{padding:3px 10px;text-align:left;vertical-align:top}
th{border-bottom:1px solid #bbb}tr+tr td{border-top:1px solid #eee}td.n{text-align:right}
.badge{display:inline-block;white-space:nowrap;padding:0 .5em;border-radius:3px;font-weight:600;color:#fff;
background:#888}
.critical .badge.sev,.badge.critical{background:#c62828}.warning .badge.sev,.badge.warning{background:#e08a00}
.badge.ok{background:#2e7d32}.badge.disabled{background:#6a1b9a}.badge.idle{background:#78909c}
.rejects{border:2px solid #c62828;background:#fdecea;padding:.5em 1em;border-radius:4px}
.rejects h2{margin-top:0;color:#c62828}
.alert{border-left:6px solid #888;background:#fafafa;padding:.5em 1em;margin:.6em 0}
.alert.critical{border-color:#c62828;background:#fdf3f2}.alert.warning{border-color:#e08a00;background:#fff8ec}
.diagnosis{font-size:1.05em;margin:.2em 0}.next{margin:.2em 0}.numbers td,.numbers th{padding:1px 10px}
.more{color:#555;font-style:italic}.nowrap{white-space:nowrap}
section.disabled{border:2px solid #6a1b9a;background:#f5eef8;padding:.5em 1em;border-radius:4px;margin-top:.6em}
section.disabled h2{margin-top:0;color:#6a1b9a}
"""


def render_status(now: float | None = None) -> str:
    """The status page as HTML: every piece of text from a model, a feature, an alert or a reject
    is escaped (`printable`, then HTML-escaped), so a hostile name shows as text.

    Parameters
    ----------
    now
        Wall-clock seconds the ages are measured from (default: the current time).
    """
    service = worker.service
    now = time.time() if now is None else now
    models = _models(service)
    n_alerted = sum(1 for m in models if m["status"] == "alerted")
    title = f"{n_alerted} alerted · skewwatch" if n_alerted else "skewwatch"  # what a browser tab shows
    parts = ["<!DOCTYPE html>", "<html lang=en><head><meta charset=utf-8>",
             f"<meta http-equiv=refresh content={REFRESH_SECONDS}>",
             f"<title>{_text(title)} worker {_text(settings.app_id)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>skewwatch worker <small>{_text(settings.app_id)}</small></h1>",
             f"<p class=meta>input <code>{_text(settings.input_topic)}</code>, partitions here: "
             f"{_text(', '.join(map(str, sorted(service.partitions))) or 'none yet')} · "
             f"{time.strftime('%H:%M:%S UTC', time.gmtime(now))}, reloads every {REFRESH_SECONDS} s · "
             "<a href=/metrics>/metrics</a> · <a href=/status.json>/status.json</a></p>"]
    parts.append(f"<p><b>{_text(_summary(models))}</b></p>")
    parts += _rejects(service)
    parts += _disabled(models)
    parts += _file_problems(service)
    for m in models:
        if m["status"] == "alerted":
            parts += _alerted_model(service, m, now)
    parts += shadow_rows(_shadow_snapshot())
    parts += _model_table(service, models, now)
    parts.append("</body></html>")
    return "\n".join(parts)


def _shadow_snapshot() -> dict[str, dict]:
    """The shadow pairs' comparisons, when the joins run with pairs (their module is loaded only then:
    stream.worker.app.DISCOVERED_MODULES), else none."""
    joins = sys.modules.get("stream.worker.joins")
    return joins.joins.shadow_snapshot() if joins is not None else {}


def shadow_rows(snapshot: dict[str, dict]) -> list[str]:
    """The status page's table of shadow pairs (`ShadowMonitor.snapshot()`), empty without pairs.

    >>> shadow_rows({})
    []
    """
    if not snapshot:
        return []
    rows = []
    for name, pair in snapshot.items():
        windows = pair.get("windows") or []
        reference = pair.get("reference") or {}
        below = any(w.get("below_expected") for w in windows[-1:])
        badge = (f"<span class='badge {'warning' if below else 'ok'}'>{'disagrees' if below else 'agrees'}</span>"
                 if windows and reference else "<span class='badge idle'>first window</span>")
        recent = ", ".join(percent(w["agreement"]) for w in windows[-SHADOW_WINDOWS_SHOWN:]) or "-"
        live = pair.get("live") or {}
        if live.get("n"):
            recent += f" (open window: {percent(live.get('agreement'))} of {count(live['n'])})"
        last = windows[-1] if windows else {}
        confidence = number(last["confidence_diff"]["mean"]) if "confidence_diff" in last else "-"
        labels = pair.get("labels")
        labelled = "-"
        if labels:
            metric = labels["metric"]
            fmt = number if metric == "mae" else percent
            labelled = (f"{metric} {fmt(labels['candidate'][metric])} vs {fmt(labels['production'][metric])} "
                        f"(n={count(labels['n'])}): "
                        f"{(labels['verdict'] or 'too few labels').replace('_', ' ')}")
        rows.append(f"<tr><td><b>{_text(name)}</b></td><td>{badge}</td><td class=n>{count(pair.get('joined', 0))}"
                    f"</td><td>{_text(recent)}</td><td>{_text(percent(reference.get('expected')))}</td>"
                    f"<td class=n>{_text(confidence)}</td><td>{_text(labelled)}</td></tr>")
    return ["<h2>Shadow candidates</h2>",
            "<table class=models><tr><th>production=candidate</th><th>status</th><th>joined</th>"
            "<th>agreement, recent windows</th><th>expected</th><th>confidence diff.</th><th>labelled</th></tr>",
            *rows, "</table>"]


def _models(service: Any) -> list[dict]:
    """Every model the worker knows, those that need a person first: alerted (newest alert first),
    disabled, without events, then the rest, by name."""
    out = []
    for model in service.models:
        alerted = service.alerted(model)
        events = service.events_seen(model)
        status = "alerted" if alerted else "ok" if events else "idle"
        newest = (alerted[0][0][0] if alerted else None) or 0.0  # when its newest alert was sent
        out.append({"model": model, "status": status, "alerted": alerted, "events": events, "newest": newest,
                    "baseline": service.baseline(model)})
    for model, why in service.unavailable.items():
        out.append({"model": model, "status": "disabled", "why": why, "alerted": [], "events": 0, "newest": 0.0,
                    "baseline": None})
    order = {"alerted": 0, "disabled": 1, "idle": 2, "ok": 3}
    out.sort(key=lambda m: (order[m["status"]], -m["newest"], m["model"]))
    for i, m in enumerate(out):
        m["anchor"] = f"m{i}"  # the model's section: its name may hold any character, its position none
    return out


def _summary(models: list[dict]) -> str:
    """"2 models alerted, 1 disabled, 3 without events yet, 40 without alert"."""
    n = {status: sum(1 for m in models if m["status"] == status) for status in ("alerted", "disabled", "idle", "ok")}
    said = [f"{count(n['alerted'])} {'model' if n['alerted'] == 1 else 'models'} alerted",
            f"{count(n['disabled'])} disabled", f"{count(n['idle'])} without events yet",
            f"{count(n['ok'])} without alert"]
    return ", ".join(said)


def _disabled(models: list[dict]) -> list[str]:
    rows = [f"<li><b>{_text(m['model'])}</b>: {_text(m['why'])}</li>" for m in models if m["status"] == "disabled"]
    if not rows:
        return []
    return ["<section class=disabled><h2>Disabled: not monitored</h2>",
            "<p>Their events are dead-lettered as <code>baseline_unavailable</code> until the baseline file is"
            " fixed (picked up without a restart).</p>", "<ul>", *rows, "</ul></section>"]


def _file_problems(service: Any) -> list[str]:
    rows = [f"<li><b>{_text(model)}</b>: {_text(why)}</li>" for model, why in service.baseline_file_problems.items()]
    if not rows:
        return []
    return ["<section class=disabled><h2>Baseline files to fix: still monitored</h2>",
            "<p>These models keep the baseline they were loaded with; the file below is not used until it is"
            " fixed or removed.</p>", "<ul>", *rows, "</ul></section>"]


def _rejects(service: Any) -> list[str]:
    tally = service.rejects
    total = sum(tally.by_reason.values())
    if not total:
        return ["<p class=meta>No rejected events since the worker started.</p>"]
    rows = []
    for reason, n in tally.by_reason.most_common():
        examples = "<br>".join(f"{_text(detail)} ({count(k)})" for detail, k in tally.details(reason))
        rows.append(f"<tr><td><b>{_text(reason)}</b></td><td class=n>{count(n)}</td><td>{examples}</td></tr>")
    return ["<section class=rejects>",
            f"<h2>{count(total)} rejected events since the worker started</h2>",
            f"<p>Not monitored; each is on the dead-letter topic <code>{_text(settings.dead_letter_topic)}</code>"
            " with its reason.</p>",
            "<table><tr><th>reason</th><th>events</th><th>most frequent details</th></tr>", *rows, "</table>",
            "</section>"]


def _model_table(service: Any, models: list[dict], now: float) -> list[str]:
    if not models:
        return ["<h2>Models</h2><p>No baseline loaded: nothing is monitored.</p>"]
    rows = []
    for m in models:
        model, status = m["model"], m["status"]
        name = _text(model)
        if status == "alerted":
            critical = any(a.get("severity") == "critical" for alerts in m["alerted"] for _, a in alerts)
            badge = (f"<span class='badge {'critical' if critical else 'warning'}'>"
                     f"{len(m['alerted'])} alerted</span>")
            name = f"<a href=#{m['anchor']}>{name}</a>"
        elif status == "disabled":
            badge = f"<span class='badge disabled'>disabled</span> {_text(m['why'])}"
        elif status == "idle":
            badge = "<span class='badge idle'>no events yet</span>"
        else:
            badge = "<span class='badge ok'>no alert</span>"
        seen = "" if status == "disabled" else _last_event(service, m, now)
        rows.append(f"<tr><td><b>{name}</b></td><td>{badge}</td><td class=n>{count(m['events'])}</td>"
                    f"<td class=nowrap>{seen}</td><td>{_alert_counts(service, model)}</td><td>{_baseline(m)}</td></tr>")
    return ["<h2>All models</h2>",
            "<table class=models><tr><th>model</th><th>status</th><th>events</th><th>last event</th>"
            "<th>alerts since start</th><th>baseline</th></tr>", *rows, "</table>"]


def _alerted_model(service: Any, m: dict, now: float) -> list[str]:
    model, alerted = m["model"], m["alerted"]
    parts = [f"<section class=model id={m['anchor']}><h2>{_text(model)}</h2>",
             f"<p class=meta>{count(m['events'])} events, the last {_last_event(service, m, now)}; "
             f"{_baseline(m)}; alerts since start: {_alert_counts(service, model) or 'none'}</p>"]
    for alerts in alerted[:ALERT_ROWS]:
        parts += _alert_card(alerts, now)
    features = m["baseline"].features if m["baseline"] is not None else {}
    quiet = len(features) - sum(1 for alerts in alerted if alerts[0][1].get("feature") in features)
    more = []
    if len(alerted) > ALERT_ROWS:
        more.append(f"{count(len(alerted) - ALERT_ROWS)} more alerted (older) not shown: "
                    "<code>skewwatch alerts</code> lists every alert")
    more.append(f"{count(quiet)} of {count(len(features))} features without an alert")
    parts.append(f"<p class=more>{'; '.join(more)}.</p></section>")
    return parts


def _severity(alert: dict) -> str:
    return alert["severity"] if alert.get("severity") in ("critical", "warning") else "warning"


def _about(alert: dict, sent: float | None, now: float, kind: bool = True) -> str:
    """"drift · cusum 38.7 over 35 · at event 3080, 2 min ago" (without the kind: from "cusum")."""
    test = _text(alert.get("detector"))
    if alert.get("statistic") is not None:
        test += f" {_text(number(alert.get('statistic')))} over {_text(number(alert.get('threshold')))}"
    when = [f"at event {count(alert['events_seen'])}"] if isinstance(alert.get("events_seen"), int) else []
    when.append(_ago(now - sent) if sent is not None else "before the worker restarted")
    return f"{_text(alert.get('kind')) + ' · ' if kind else ''}{test} · {_text(', '.join(when))}"


def _last_event(service: Any, m: dict, now: float) -> str:
    last = service.last_event_at.get(m["model"])
    return _ago(now - last) if last is not None else "none since the worker started" if m["events"] else "-"


def _alert_counts(service: Any, model: str) -> str:
    kinds = service.alert_counts.get(model)
    return ", ".join(f"{_text(k)} {count(n)}" for k, n in sorted(kinds.items())) if kinds else ""


def _baseline(m: dict) -> str:
    b = m["baseline"]
    return f"baseline version {_text(b.version)}, {count(len(b.features))} features" if b is not None else ""


def _alert_card(alerts: list[tuple[float | None, dict]], now: float) -> list[str]:
    """One subject's card: its newest critical alert (else its newest) in full, its other kinds in a line each."""
    sent, alert = next((pair for pair in alerts if pair[1].get("severity") == "critical"), alerts[0])
    severity = _severity(alert)
    feature = alert.get("feature")
    subject = _text(feature if feature is not None else alert.get("kind"))  # a model-wide alert: its kind
    about = _about(alert, sent, now, kind=feature is not None)
    parts = [f"<article class='alert {severity}'>",
             f"<h3><span class='badge sev'>{severity}</span> {subject} <span class=meta>· {about}</span></h3>"]
    parts += [f"<p class=meta>also <span class='badge {_severity(a)}'>{_severity(a)}</span> {_about(a, s, now)}</p>"
              for s, a in alerts if a is not alert]
    if "diagnosis" not in alert:  # restored from a checkpoint: the monitor keeps alerts in brief
        parts.append("<p class=meta>The sentence and the numbers are in the alert on the alert topic "
                     f"(<code>skewwatch alerts</code>; alert_id {_text(alert.get('alert_id'))}).</p></article>")
        return parts
    parts.append(f"<p class=diagnosis>{_text(alert.get('diagnosis') or '')}</p>")
    if alert.get("next_step"):
        parts.append(f"<p class=next><b>Next step:</b> {_text(alert['next_step'])}</p>")
    rows = _comparison(alert.get("baseline") or {}, alert.get("current") or {})
    if rows:
        current = alert.get("current") or {}
        n = current.get("events", current.get("count"))
        at = f"at the alert (last {count(n)} events)" if isinstance(n, int) else "at the alert"
        parts.append(f"<table class=numbers><tr><th></th><th>training</th><th>{at}</th></tr>"
                     + "".join(f"<tr><td>{_text(label)}</td><td class=n>{_text(b)}</td><td class=n>{_text(c)}</td></tr>"
                               for label, b, c in rows) + "</table>")
    parts.append("</article>")
    return parts


#: the summary numbers of an alert shown as training vs current: (key, label)
_MOMENTS = (("mean", "mean"), ("std", "std"), ("p50", "median"))
_RATES = (("missing_rate", "missing"), ("invalid_rate", "invalid"), ("unseen_share", "unseen categories"))
#: categories shown per categorical alert (those with the largest share, in training or now)
_SHARES_SHOWN = 4


def _comparison(base: dict, current: dict) -> list[tuple[str, str, str]]:
    """(label, training, current) rows of an alert's `baseline` and `current` summaries."""
    rows = []
    for key, label in _MOMENTS:
        if _is_number(base.get(key)) or _is_number(current.get(key)):
            rows.append((label, number(base.get(key)), number(current.get(key))))
    for key, label in _RATES:
        b, c = base.get(key), current.get(key)
        if (_is_number(b) and b) or (_is_number(c) and c):  # a rate that is 0 in both says nothing
            rows.append((label, percent(b) if _is_number(b) else "-", percent(c) if _is_number(c) else "-"))
    b_top, c_top = base.get("top"), current.get("top")
    if isinstance(b_top, dict) or isinstance(c_top, dict):
        b_top, c_top = b_top if isinstance(b_top, dict) else {}, c_top if isinstance(c_top, dict) else {}
        shown = sorted(set(b_top) | set(c_top), key=lambda k: -max(b_top.get(k, 0), c_top.get(k, 0)))
        rows += [(f"share of '{quote_value(label)}'", percent(b_top.get(label, 0)), percent(c_top.get(label, 0)))
                 for label in shown[:_SHARES_SHOWN]]
    if current.get("top_unseen"):
        rows.append(("unseen values", "-", _counted(current["top_unseen"])))
    if isinstance(current.get("served_versions"), dict):
        rows.append(("model version", str(base.get("version", "-")),
                     ", ".join(f"{quote_value(v)} ({count(n)} event{'' if n == 1 else 's'})"
                               for v, n in current["served_versions"].items())))
    for key, label in (("unexpected_names", "unexpected fields"), ("absent_features", "absent fields")):
        if current.get(key):
            rows.append((label, "-", _counted(current[key])))
    return rows


def _counted(items: Any, shown: int = 5) -> str:
    """[[label, count], ...] (or labels) as "a (12), b (3)", at most `shown` of them."""
    if not isinstance(items, (list, tuple)):
        return quote_value(items)
    text = []
    for item in items[:shown]:
        if isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], int):
            text.append(f"{quote_value(item[0])} ({count(item[1])})")
        else:
            text.append(quote_value(item))
    return ", ".join(text) + (f" and {count(len(items) - shown)} more" if len(items) > shown else "")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ago(seconds: float) -> str:
    """How long ago, for people: "just now", "42 s ago", "7 min ago", "3 h ago", "2 d ago"."""
    s = max(0.0, seconds)
    if s < 2:
        return "just now"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if s >= size:
            return f"{int(s // size)} {unit} ago"
    return f"{int(s)} s ago"


def _text(value: Any) -> str:
    """Any value as page text: control characters written out (`printable`), then HTML-escaped."""
    return html.escape(printable(value if isinstance(value, str) else str(value)))
