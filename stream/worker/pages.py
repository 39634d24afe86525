"""The worker's web pages on the app of stream.worker.app: /metrics (Prometheus), /status.json
(where each monitor lives) and / (a small HTML status page)."""
from __future__ import annotations

import html
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

import stream.worker.app as worker  # the module, not its names: tests swap worker.service and worker.metrics
from detectors.fmt import number

app, settings = worker.app, worker.settings

__all__ = ["metrics_page", "render_status", "status_json", "status_page"]


@app.page("/metrics")
async def metrics_page(web: Any, request: Any) -> Any:
    """The Prometheus metrics, the model gauges refreshed first."""
    worker.service.update_gauges()
    return web.bytes(worker.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@app.page("/status.json")
async def status_json(web: Any, request: Any) -> Any:
    """Where each monitor lives: per assigned partition, each model's events seen."""
    service = worker.service
    return web.json({
        "app_id": settings.app_id,
        "partitions": {str(p): {"last_offset": m.last_offset,
                                "models": {name: m.router.monitor(name).events_seen for name in m.router.models}}
                       for p, m in sorted(service.partitions.items())},
        "models": service.models,
        "unavailable": service.unavailable,
        "last_alerts": service.last_alerts,
    })


@app.page("/")
async def status_page(web: Any, request: Any) -> Any:
    """The HTML status page (`render_status`)."""
    return web.html(render_status())


def render_status() -> str:
    """A small HTML page: each model's features, their current statistics, the last alert."""
    service = worker.service
    esc = html.escape
    parts = ["<!doctype html><meta charset=utf-8><title>skewwatch</title>",
             "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style>",
             f"<h1>skewwatch worker <small>{esc(settings.app_id)}</small></h1>",
             f"<p>input <code>{esc(settings.input_topic)}</code>, partitions here: "
             f"{sorted(service.partitions) or 'none yet'} &middot; <a href=/metrics>/metrics</a> &middot; "
             "<a href=/status.json>/status.json</a></p>"]
    for model, why in service.unavailable.items():
        parts.append(f"<h2>{esc(model)}</h2><p><b>disabled:</b> {esc(why)}</p>")
    snapshots = service.snapshots()
    for model in service.models:
        snap = snapshots.get(model)
        parts.append(f"<h2>{esc(model)}</h2>")
        if snap is None:
            parts.append("<p>no events yet</p>")
            continue
        parts.append(f"<p>version {esc(str(snap.get('model_version')))}, events seen {snap.get('events_seen')}, "
                     f"confidence mean {_fmt(snap.get('confidence_mean'))}</p>")
        features = snap.get("features", {})
        names = sorted({s for f in features.values() for s in (f.get("statistics") or {})})
        parts.append("<table><tr><th>feature</th><th>kind</th><th>missing</th>"
                     + "".join(f"<th>{esc(n)}</th>" for n in names) + "<th>last alert</th></tr>")
        for name, f in features.items():
            stats = f.get("statistics") or {}
            last = f.get("last_alert")
            parts.append(f"<tr><td>{esc(name)}</td><td>{esc(str(f.get('kind')))}</td><td>{_fmt(f.get('missing_ratio'))}</td>"
                         + "".join(f"<td>{_fmt(stats.get(n))}</td>" for n in names)
                         + f"<td>{esc(_alert_line(last)) if last else ''}</td></tr>")
        parts.append("</table>")
        last = service.last_alerts.get(model)
        if last:
            parts.append(f"<p>last alert: {esc(_alert_line(last))}</p>")
    return "\n".join(parts)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return number(value)  # the one number format of alerts, `skewwatch alerts` and the report
    return "" if value is None else html.escape(str(value))


def _alert_line(alert: dict) -> str:
    return (f"{alert.get('kind')} {alert.get('feature') or ''} by {alert.get('detector')}: "
            f"{alert.get('statistic')} > {alert.get('threshold')} ({alert.get('severity')}) "
            f"{alert.get('diagnosis') or ''}")
