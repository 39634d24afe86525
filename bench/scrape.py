"""Scrape benchmark: what a /metrics scrape costs the worker, in process, no broker.

    .venv/bin/python bench/scrape.py [--models 100,500] [--repeat 3] [--no-write]

Models: the 50-feature model of bench/engine.py (stream/devkit/synthetic/scenarios.py), each with
its own monitor fed 1000 stationary events on its home partition (of 4, as producers keyed by
model spread them), its gauges all set once before the runs (the catch-up of the first scrapes).

(1) A scrape as the worker serves it (`stream.worker.pages.metrics_text` on an event loop, the
    text built in a thread), default SKEWWATCH_FEATURE_METRICS (`all`), per fleet size:
    - busy: every model got 10 events since the previous scrape (fed before it, not timed);
    - idle: no model did, and the scrapes after the busy one have read every model's gauges.
    Reported: the scrape's wall time, the models whose gauges it read (one at a time, for
    stream.worker.metrics.REFRESH_BUDGET), the longest of those reads, the longest a 1-ms ticker
    on the loop waited during the scrape (the reads, and the text's thread holding the GIL in one
    C call), the text's size; and, on the same registry, what prometheus_client's
    `generate_latest` takes to write it (the text before per-model lines, same bytes).
(2) The text per SKEWWATCH_FEATURE_METRICS level for the largest fleet: one real snapshot observed
    under that many model names (series as many busy 50-feature models have), `Metrics.exposition`
    against `generate_latest` of the same registry.

Runs are interleaved (each run does every fleet and mode, then every level); min / median / max
over `--repeat` runs. Written into the scrape block of bench/RESULTS.md (--no-write to skip).
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

import stream.worker.app as worker  # noqa: E402
from bench.results import write_block  # noqa: E402
from detectors.events import Limits  # noqa: E402
from detectors.model import ModelMonitor  # noqa: E402
from stream.devkit.synthetic import scenarios  # noqa: E402
from stream.worker import pages  # noqa: E402
from stream.worker.config import FEATURE_METRICS  # noqa: E402
from stream.worker.metrics import REFRESH_BUDGET, Metrics  # noqa: E402
from stream.worker.service import DetectionService, PartitionMonitors  # noqa: E402

N_FEATURES = 50
PARTITIONS = 4
BUSY_EVENTS = 10
#: the ticker's period: its wait past a tick's due time is how long something held the loop
TICK = 0.001


@dataclasses.dataclass
class Fleet:
    service: DetectionService
    home: list[ModelMonitor]  # each model's monitor, on its home partition
    fed: int  # events given to each monitor so far


@dataclasses.dataclass
class Scrape:
    seconds: float
    models_read: int
    longest_read: float  # the longest single read of the gauges on the loop
    ticker_wait: float  # the longest a ticker on the loop waited past its due time during the scrape
    size: int
    series: int


def build_fleet(n_models: int, events: list[dict]) -> Fleet:
    base = scenarios.shared_baseline(N_FEATURES)
    baselines = [dataclasses.replace(base, model=f"m{i:03d}") for i in range(n_models)]
    service = DetectionService(tempfile.mkdtemp(), Metrics(CollectorRegistry()), limits=Limits())
    for p in range(PARTITIONS):
        service.partitions[p] = PartitionMonitors(p, baselines)
    home = [service.partitions[i % PARTITIONS].router.monitor(b.model) for i, b in enumerate(baselines)]
    for monitor in home:
        monitor.update_batch([{**e, "model": monitor.baseline.model} for e in events[:1000]])
    fleet = Fleet(service, home, 1000)
    catch_up(fleet)
    return fleet


def catch_up(fleet: Fleet) -> None:
    """Read every model whose gauges lag its monitor (what the next scrapes would do)."""
    while fleet.service.update_gauges():
        pass


def feed(fleet: Fleet, events: list[dict]) -> None:
    """BUSY_EVENTS more events to every model (cycling through `events`)."""
    start = fleet.fed % (len(events) - BUSY_EVENTS)
    for monitor in fleet.home:
        monitor.update_batch([{**e, "model": monitor.baseline.model} for e in events[start:start + BUSY_EVENTS]])
    fleet.fed += BUSY_EVENTS


async def served() -> tuple[bytes, float, float]:
    """(the /metrics text, seconds it took, the longest a ticker on the loop waited meanwhile)."""
    loop = asyncio.get_running_loop()
    waited = [0.0]

    async def tick() -> None:
        while True:
            due = loop.time() + TICK
            await asyncio.sleep(TICK)
            waited.append(loop.time() - due)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(2 * TICK)
    waited.clear()
    start = time.perf_counter()
    text = await pages.metrics_text()
    seconds = time.perf_counter() - start
    ticker.cancel()
    return text, seconds, max(waited, default=0.0)


def scrape(fleet: Fleet, loop: asyncio.AbstractEventLoop) -> Scrape:
    """One /metrics scrape as the worker serves it, its reads of the gauges timed one by one."""
    service = fleet.service
    reads: list[tuple[float, int]] = []
    update_gauges = service.update_gauges

    def timed_update_gauges(budget: float) -> int:
        start = time.perf_counter()
        read = update_gauges(budget)
        reads.append((time.perf_counter() - start, read))
        return read

    service.update_gauges = timed_update_gauges
    worker.service, worker.metrics = service, service.metrics
    try:
        text, seconds, ticker_wait = loop.run_until_complete(served())
    finally:
        del service.update_gauges
    series = sum(1 for line in text.splitlines() if not line.startswith(b"#"))
    return Scrape(seconds, sum(n for _, n in reads), max(t for t, _ in reads), ticker_wait, len(text), series)


def timed(f, *args) -> float:
    start = time.perf_counter()
    f(*args)
    return time.perf_counter() - start


def spread(values: list[float], scale: float = 1000.0, unit: str = "ms") -> str:
    """min / median / max."""
    return " / ".join(f"{v * scale:.0f}" for v in (min(values), statistics.median(values), max(values))) + f" {unit}"


def level_metrics(n_models: int, snap: dict) -> dict[str, Metrics]:
    out = {}
    for level in FEATURE_METRICS:
        metrics = Metrics(CollectorRegistry(), feature_metrics=level)
        for i in range(n_models):
            metrics.observe_snapshot({**snap, "model": f"m{i:03d}"})
        out[level] = metrics
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="100,500", help="fleet sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs")
    parser.add_argument("--no-write", action="store_true", help="print only, leave bench/RESULTS.md alone")
    args = parser.parse_args()
    sizes = [int(n) for n in args.models.split(",")]
    t = time.perf_counter()
    load_before = os.getloadavg()[0]
    events = scenarios.stationary(2000, n_features=N_FEATURES).events
    fleets = {n: build_fleet(n, events) for n in sizes}
    snap = fleets[max(sizes)].home[0].snapshot()
    levels = level_metrics(max(sizes), snap)
    loop = asyncio.new_event_loop()
    scrapes: dict[tuple[int, str], list[Scrape]] = defaultdict(list)
    before: dict[int, list[float]] = defaultdict(list)
    level_times: dict[tuple[str, str], list[float]] = defaultdict(list)
    for _ in range(args.repeat):
        for n, fleet in fleets.items():
            feed(fleet, events)
            scrapes[n, "busy"].append(scrape(fleet, loop))
            catch_up(fleet)
            scrapes[n, "idle"].append(scrape(fleet, loop))
            before[n].append(timed(generate_latest, fleet.service.metrics.registry))
        for level, metrics in levels.items():
            level_times[level, "now"].append(timed(metrics.exposition))
            level_times[level, "before"].append(timed(generate_latest, metrics.registry))
    loop.close()
    load_after = os.getloadavg()[0]

    rows = []
    for (n, mode), runs in scrapes.items():
        rows.append(f"| {n} | {mode} | **{spread([s.seconds for s in runs])}** | "
                    f"{'/'.join(str(s.models_read) for s in runs)} | {spread([s.longest_read for s in runs])} | "
                    f"{spread([s.ticker_wait for s in runs])} | "
                    f"{runs[0].series:,} | {runs[0].size / 1e6:.2f} MB | {spread(before[n])} |")
    lag_notes = []
    for n in sizes:
        read = statistics.median(s.models_read for s in scrapes[n, "busy"])
        lag_notes.append(f"{n} models: {read:.0f} read per scrape, each re-read every ~{n / max(read, 1):.0f} scrapes")
    level_rows = []
    for level, metrics in levels.items():
        text = metrics.exposition()
        series = sum(1 for line in text.splitlines() if not line.startswith(b"#"))
        level_rows.append(f"| `{level}` | {series:,} | {len(text) / 1e6:.2f} MB | "
                          f"{spread(level_times[level, 'now'])} | {spread(level_times[level, 'before'])} |")
    lines = [
        f"Command: `{' '.join(['.venv/bin/python', 'bench/scrape.py', *sys.argv[1:]])}`  ",
        f"Date: {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} ({time.perf_counter() - t:.0f} s), "
        f"{os.cpu_count()} cores, load average {load_before:.1f} before, {load_after:.1f} after (shared machine); "
        f"min / median / max of {args.repeat} interleaved runs",
        "",
        f"(1) A /metrics scrape (`metrics_text`), models of {N_FEATURES} features on {PARTITIONS} partitions, "
        f"`SKEWWATCH_FEATURE_METRICS=all` (the default); busy: every model got {BUSY_EVENTS} events since "
        f"the previous scrape; gauges read one model at a time until {REFRESH_BUDGET * 1000:.0f} ms after "
        "the scrape started:",
        "",
        "| models | fleet | scrape | models read (per run) | longest read | ticker's longest wait | series | size "
        "| generate_latest of the same registry (before) |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "While every model is busy, a model's gauges lag its monitor by the scrapes it takes to read them "
        f"all ({'; '.join(lag_notes)}); an idle model's are read once after its last events.",
        "",
        f"(2) The /metrics text for {max(sizes)} models of {N_FEATURES} features by SKEWWATCH_FEATURE_METRICS "
        "(one snapshot observed under each model name; stationary features, so `drifting` shows none):",
        "",
        "| level | series | size | `Metrics.exposition` | generate_latest (before) |",
        "|---|---|---|---|---|",
        *level_rows,
    ]
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        write_block("scrape.py", report, heading="## Scrape (`bench/scrape.py`)")


if __name__ == "__main__":
    main()
