"""Scrape benchmark: what a /metrics scrape costs the worker, in process, no broker.

    .venv/bin/python bench/scrape.py [--models 20] [--fleet 500] [--no-write]

Models: the 50-feature model of bench/engine.py (stream/devkit/synthetic/scenarios.py), each fed
1000 stationary events on its own monitor, spread over 4 partitions as producers keyed by model do
(4 monitors per model; the 3 not on the model's partition see no event).

(1) refreshing the gauges (`DetectionService.update_gauges`) for `--models` models, against the
    peer measured in the same run: what a scrape did before (a snapshot of every monitor of every
    partition, then the gauges of each model's busiest): on the first scrape, on a scrape after
    10% of the models got events, and on one where nothing changed.
(2) the text of /metrics (`Metrics.exposition`) for `--fleet` models, per SKEWWATCH_FEATURE_METRICS
    level: one real snapshot observed under `--fleet` model names (building that many monitors
    would take ~2 GB here), so the series are those of as many busy 50-feature models.

Written into the scrape block of bench/RESULTS.md (--no-write to skip).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry  # noqa: E402

from bench.results import write_block  # noqa: E402
from detectors.events import Limits  # noqa: E402
from stream.devkit.synthetic import scenarios  # noqa: E402
from stream.worker.config import FEATURE_METRICS  # noqa: E402
from stream.worker.metrics import REFRESH_BUDGET, Metrics  # noqa: E402
from stream.worker.service import DetectionService, PartitionMonitors  # noqa: E402

N_FEATURES = 50
PARTITIONS = 4


def timed(f) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def old_scrape(service: DetectionService) -> None:
    """The scrape before issue 14: every monitor's snapshot, the busiest one's gauges per model."""
    best: dict[str, dict] = {}
    for monitors in service.partitions.values():
        for model in monitors.router.models:
            snap = monitors.router.monitor(model).snapshot()
            if model not in best or snap["events_seen"] > best[model]["events_seen"]:
                best[model] = snap
    for snap in best.values():
        if snap["events_seen"]:
            service.metrics.observe_snapshot(snap)


def refresh_figures(n_models: int, events: list[dict]) -> list[str]:
    base = scenarios.shared_baseline(N_FEATURES)
    baselines = [dataclasses.replace(base, model=f"m{i:03d}") for i in range(n_models)]
    service = DetectionService(tempfile.mkdtemp(), Metrics(CollectorRegistry()), limits=Limits())
    for p in range(PARTITIONS):
        service.partitions[p] = PartitionMonitors(p, baselines)
    home = [service.partitions[i % PARTITIONS].router.monitor(b.model) for i, b in enumerate(baselines)]
    for monitor in home:
        monitor.update_batch([{**e, "model": monitor.baseline.model} for e in events[:1000]])
    rows = []

    def row(what: str) -> None:
        start = time.perf_counter()
        read = service.update_gauges()
        new = time.perf_counter() - start
        old = timed(lambda: old_scrape(service))
        rows.append(f"| {what} | {new * 1000:.0f} ms ({read} models read) | {old * 1000:.0f} ms |")

    row("first")
    while service.update_gauges():  # the scrapes that follow catch up
        pass
    for monitor in home[: max(1, n_models // 10)]:
        monitor.update_batch([{**e, "model": monitor.baseline.model} for e in events[1000:1100]])
    row(f"after {max(1, n_models // 10)} of the {n_models} models got events")
    row("nothing new since the last")
    return rows


def exposition_figures(n_models: int, events: list[dict], repeat: int = 5) -> list[str]:
    monitor = PartitionMonitors(0, [scenarios.shared_baseline(N_FEATURES)]).router.monitor(scenarios.MODEL)
    monitor.update_batch(events)
    snap = monitor.snapshot()
    rows = []
    for level in FEATURE_METRICS:
        metrics = Metrics(CollectorRegistry(), feature_metrics=level)
        for i in range(n_models):
            metrics.observe_snapshot({**snap, "model": f"m{i:03d}"})
        text = metrics.exposition()
        series = sum(1 for line in text.splitlines() if not line.startswith(b"#"))
        times = [timed(metrics.exposition) for _ in range(repeat)]
        rows.append(f"| `{level}` | {series:,} | {len(text) / 1e6:.2f} MB | {statistics.median(times) * 1000:.0f} ms |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=20, help="models with real monitors for (1)")
    parser.add_argument("--fleet", type=int, default=500, help="models whose series (2) exposes")
    parser.add_argument("--no-write", action="store_true", help="print only, leave bench/RESULTS.md alone")
    args = parser.parse_args()
    t = time.perf_counter()
    events = scenarios.stationary(1100, n_features=N_FEATURES).events
    refresh = refresh_figures(args.models, events)
    exposition = exposition_figures(args.fleet, events)
    lines = [
        f"Command: `{' '.join(['.venv/bin/python', 'bench/scrape.py', *sys.argv[1:]])}`  ",
        f"Date: {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} ({time.perf_counter() - t:.0f} s), "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (shared machine)",
        "",
        f"(1) Refreshing the gauges, {args.models} models of {N_FEATURES} features on {PARTITIONS} partitions "
        f"(budget {REFRESH_BUDGET * 1000:.0f} ms per scrape):",
        "",
        "| scrape | now | before (every monitor's snapshot) |",
        "|---|---|---|",
        *refresh,
        "",
        f"(2) The /metrics text for {args.fleet} models of {N_FEATURES} features (median of 5), by "
        "SKEWWATCH_FEATURE_METRICS; stationary features, so `drifting` shows none:",
        "",
        "| level | series | size | generate_latest |",
        "|---|---|---|---|",
        *exposition,
    ]
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        write_block("scrape.py", report, heading="## Scrape (`bench/scrape.py`)")


if __name__ == "__main__":
    main()
