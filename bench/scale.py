"""A fleet on one worker: many models, wide models. One worker on the embedded broker per grid
point, and what it costs: memory, event-loop stalls, a restart, and whether every event is
counted once.

    .venv/bin/python bench/scale.py [--grid 10x50,100x50,500x50,1x1000] [--events 200]
                                    [--events-per-message 10] [--write-results]

Per grid point `MODELSxFEATURES` (a fresh broker and worker each):

- The baselines of MODELS models of FEATURES features each (the mixed features of
  stream/devkit/synthetic/scenarios.py: normal, lognormal, Poisson, uniform, categorical) are in
  the baselines directory before the worker starts.
- Load: `--events` events per model, in messages of `--events-per-message`, keyed by model,
  round-robin over the models (every model is live at once); the producer's record limit is
  Kafka's default (1 MiB).
- Counted vs sent: each model's `events_seen` on /status.json (summed over the partitions),
  against what was sent; and the dead letters by reason.
- RSS: the worker's VmRSS once every event is counted (and its peak, VmHWM).
- Loop stall: the slowest answer of the worker's web server to a probe sent every 50 ms, one at
  a time, to a path no page serves (aiohttp answers 404 from the event loop: the wait is the
  loop's), over the load and over the restart.
- Scrape: GET /metrics every `SCRAPE_EVERY` s, one at a time, over the load (models busy), then
  `IDLE_SCRAPES` more once every event is counted (the gauges still catching up, nothing new):
  the median and slowest answer of each, and the text's size.
- Restart: after a checkpoint interval, `kill -9` and a new worker on the same broker; one more
  message per model is sent as it starts. Time from its start to every model serving again
  (every model's count = everything sent to it, the new message included: restored, re-read,
  each event once).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import write_block  # noqa: E402
from stream.devkit.broker import EmbeddedBroker  # noqa: E402
from stream.devkit.processes import (  # noqa: E402
    embedded_worker_env,
    free_port,
    start_worker,
    stop_worker,
    tail,
    wait_until_serving,
)
from stream.devkit.synthetic import scenarios  # noqa: E402
from stream.worker import config  # noqa: E402

SECTION = "## A fleet on one worker (bench/scale.py)"
APP_ID = "skewwatch-scale"
#: Kafka's default max.request.size / message.max.bytes
KAFKA_RECORD_LIMIT = 1024 * 1024
PROBE_EVERY = 0.05
#: a Prometheus scrape interval is ~15 s; faster here, to get several over the load
SCRAPE_EVERY = 1.0
IDLE_SCRAPES = 5
POLL_SECONDS = 0.5
START_TIMEOUT = 120.0
COUNT_TIMEOUT = 600.0


@dataclasses.dataclass
class Point:
    models: int
    features: int
    sent: int = 0
    counted: int = 0
    load_seconds: float = 0.0
    rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    stall_load: float = 0.0
    scrapes_load: list[float] = dataclasses.field(default_factory=list)
    scrapes_idle: list[float] = dataclasses.field(default_factory=list)
    scrape_bytes: int = 0
    restart_seconds: float | None = None
    stall_restart: float = 0.0
    counted_after_restart: int = 0
    sent_after_restart: int = 0
    miscounted_models: int = 0
    dead_letters: str = ""
    problem: str = ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", default="10x50,100x50,500x50,1x1000",
                        help="MODELSxFEATURES points, comma-separated (default 10x50,100x50,500x50,1x1000)")
    parser.add_argument("--events", type=int, default=200, help="events per model in the load (default 200)")
    parser.add_argument("--events-per-message", type=int, default=10, help="events per message (default 10)")
    parser.add_argument("--write-results", action="store_true", help="replace this bench's block of RESULTS.md")
    parser.add_argument("--logs", type=Path, help="copy each point's worker log into this directory")
    args = parser.parse_args()
    grid = [tuple(int(v) for v in point.split("x")) for point in args.grid.split(",")]
    points = []
    for models, features in grid:
        print(f"{models} models x {features} features ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="skewwatch-scale-") as tmp:
            point = asyncio.run(measure(Point(models, features), Path(tmp), args))
        print("   ", point, flush=True)
        points.append(point)
    table = _table(points)
    print("\n" + table)
    if args.write_results:
        command = (f".venv/bin/python bench/scale.py --grid {args.grid} --events {args.events} "
                   f"--events-per-message {args.events_per_message} --write-results")
        write_block("scale.py", f"{SECTION}\n\nCommand: `{command}`  \nDate: {time.strftime('%Y-%m-%d %H:%M')}  \n"
                                f"Machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end "
                                "of the run; the embedded broker, the producer and the worker on the same machine\n\n"
                                f"{table}\n\n{_NOTES}")
    return 0


async def measure(point: Point, workdir: Path, args: argparse.Namespace) -> Point:
    env = embedded_worker_env(workdir, app_id=APP_ID, web_port=free_port())
    cfg = config.load(env)
    stream = scenarios.make_stream(max(args.events, args.events_per_message), n_features=point.features, seed=3)
    baseline = stream.baseline()
    models = [f"model-{i:03d}" for i in range(point.models)]
    for name in models:
        dataclasses.replace(baseline, model=name).save(Path(cfg.baselines) / f"{name}.msgpack")
    broker = EmbeddedBroker(topics=config.topics(cfg))
    worker: subprocess.Popen | None = None
    log = workdir / "worker.log"
    try:
        broker.start()
        env["SKEWWATCH_BROKER"] = broker.url
        worker = start_worker(env, log)
        base = f"http://127.0.0.1:{cfg.web_port}"
        problem = wait_until_serving(f"{base}/status.json", worker, START_TIMEOUT)
        if problem:
            point.problem = f"{problem}: {tail(log, 5)}"
            return point
        worker, problem = await _run(point, worker, env, log, base, broker.bootstrap, cfg, stream, models, args)
        point.problem += problem or ""
        return point
    finally:
        if worker is not None:
            stop_worker(worker)
        broker.stop()
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            for name in ("worker.log", "worker-restarted.log"):
                if (workdir / name).exists():
                    shutil.copy(workdir / name, args.logs / f"{point.models}x{point.features}-{name}")


async def _run(point: Point, worker: subprocess.Popen, env: dict, log: Path, base: str, bootstrap: str, cfg,
               stream, models: list[str], args: argparse.Namespace) -> tuple[subprocess.Popen, str | None]:
    from aiokafka import AIOKafkaProducer

    per_message = args.events_per_message
    messages = {m: [orjson.dumps([dict(e, model=m) for e in stream.events[i:i + per_message]])
                    for i in range(0, args.events, per_message)] for m in models}
    sent: dict[str, int] = dict.fromkeys(models, 0)
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=KAFKA_RECORD_LIMIT)
        await producer.start()
        stack.push_async_callback(producer.stop)
        stall = _StallProbe(http, f"{base}/no-such-page")
        stack.callback(stall.stop)
        scrapes = _ScrapeProbe(http, f"{base}/metrics")
        stack.callback(scrapes.stop)

        async def send(model: str, value: bytes, events: int) -> None:
            await producer.send(cfg.input_topic, value, key=model.encode())
            sent[model] += events

        # the load: every model live at once
        start = time.perf_counter()
        for i in range(len(messages[models[0]])):
            for m in models:
                await send(m, messages[m][i], min(per_message, args.events - i * per_message))
        await producer.flush()
        problem = await _until_counted(http, base, sent, worker, log)
        point.load_seconds = time.perf_counter() - start
        point.stall_load = stall.worst
        scrapes.stop()
        point.scrapes_load = scrapes.seconds
        for _ in range(IDLE_SCRAPES):
            seconds, point.scrape_bytes = await _scrape(http, f"{base}/metrics")
            point.scrapes_idle.append(seconds)
            await asyncio.sleep(SCRAPE_EVERY)
        point.sent = sum(sent.values())
        counts = await _counts(http, base)
        point.counted = sum(counts.values())
        point.rss_mb, point.peak_rss_mb = _rss_mb(worker.pid)
        if problem:
            return worker, problem

        # a checkpoint of everything, then kill -9 and a new worker; a message per model as it starts
        await asyncio.sleep(cfg.checkpoint_interval * 2)
        if worker.poll() is not None:
            point.problem = f"the worker exited by itself before the kill -9 ({_crash_reason(log)}); "
        else:
            os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        stall.reset()
        started = time.perf_counter()
        worker = start_worker(env, log.with_name("worker-restarted.log"))
        log = log.with_name("worker-restarted.log")
        for m in models:
            await send(m, messages[m][0], per_message)
        await producer.flush()
        problem = await _until_counted(http, base, sent, worker, log)
        point.restart_seconds = None if problem else time.perf_counter() - started
        point.stall_restart = stall.worst
        counts = await _counts(http, base)
        point.sent_after_restart = sum(sent.values())
        point.counted_after_restart = sum(counts.values())
        point.miscounted_models = sum(counts.get(m, 0) != n for m, n in sent.items())
        status = await _status(http, base)
        point.dead_letters = ", ".join(f"{k} {v}" for k, v in sorted(status.get("rejected", {}).items())) or "none"
        return worker, problem


class _StallProbe:
    """The slowest answer of the worker's web server since the last `reset`, probed every
    PROBE_EVERY seconds, one request at a time (a request still waiting counts as it waits)."""

    def __init__(self, http, url: str):
        self._http, self._url = http, url
        self._worst = 0.0
        self._sent_at: float | None = None
        self._task = asyncio.get_running_loop().create_task(self._probe())

    @property
    def worst(self) -> float:
        waiting = time.perf_counter() - self._sent_at if self._sent_at is not None else 0.0
        return max(self._worst, waiting)

    def reset(self) -> None:
        self._worst = 0.0

    def stop(self) -> None:
        self._task.cancel()

    async def _probe(self) -> None:
        while True:
            self._sent_at = time.perf_counter()
            try:
                async with self._http.get(self._url) as response:
                    await response.read()
                self._worst = max(self._worst, time.perf_counter() - self._sent_at)
            except (aiohttp.ClientError, OSError):  # the worker is down or not serving yet
                pass
            self._sent_at = None
            await asyncio.sleep(PROBE_EVERY)


class _ScrapeProbe:
    """GET /metrics every SCRAPE_EVERY seconds, one at a time: each answer's time."""

    def __init__(self, http, url: str):
        self._http, self._url = http, url
        self.seconds: list[float] = []
        self._task = asyncio.get_running_loop().create_task(self._probe())

    def stop(self) -> None:
        self._task.cancel()

    async def _probe(self) -> None:
        while True:
            try:
                seconds, _ = await _scrape(self._http, self._url)
                self.seconds.append(seconds)
            except (aiohttp.ClientError, OSError):  # the worker is not serving yet
                pass
            await asyncio.sleep(SCRAPE_EVERY)


async def _scrape(http, url: str) -> tuple[float, int]:
    """(seconds, bytes) of one GET of `url`, its body read."""
    start = time.perf_counter()
    async with http.get(url) as response:
        body = await response.read()
    return time.perf_counter() - start, len(body)


async def _status(http, base: str) -> dict:
    """/status.json, or {} while the worker does not answer."""
    try:
        async with http.get(f"{base}/status.json") as response:
            return await response.json() if response.status == 200 else {}
    except (TimeoutError, aiohttp.ClientError, OSError):
        return {}


async def _counts(http, base: str) -> dict[str, int]:
    """Per model, its events_seen summed over the partitions' monitors."""
    counts: dict[str, int] = {}
    for partition in (await _status(http, base)).get("partitions", {}).values():
        for model, n in partition["models"].items():
            counts[model] = counts.get(model, 0) + n
    return counts


async def _until_counted(http, base: str, sent: dict[str, int], worker: subprocess.Popen, log: Path) -> str | None:
    """Poll /status.json until every model has counted what was sent to it; the problem if not."""
    deadline = time.monotonic() + COUNT_TIMEOUT
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            return f"the worker exited with code {worker.returncode} ({_crash_reason(log)})"
        counts = await _counts(http, base)
        if all(counts.get(m, 0) >= n for m, n in sent.items()):
            return None
        await asyncio.sleep(POLL_SECONDS)
    return f"not every event counted within {COUNT_TIMEOUT:.0f} s"


def _crash_reason(log: Path) -> str:
    """The first error a worker's log reports (what crashed it, before the cascade), shortened."""
    for line in log.read_text(errors="replace").splitlines():
        if "[ERROR]" in line or "[CRITICAL]" in line:
            return line.split("]: ", 1)[-1][:240].replace("|", "/").strip()
    return "no error in its log"


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.split()
    return int(fields["VmRSS"][0]) / 1024, int(fields["VmHWM"][0]) / 1024


def _table(points: list[Point]) -> str:
    lines = ["| models x features | events counted / sent | RSS (peak) | largest loop stall, load | "
             "/metrics, load (median / max) | /metrics, after (median / max, size) | "
             "restart to all serving | largest loop stall, restart | counted / sent after restart | "
             "dead letters |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        restart = f"{p.restart_seconds:.1f} s" if p.restart_seconds is not None else "not reached"
        after = (f"{p.counted_after_restart:,} / {p.sent_after_restart:,}"
                 + (f" ({p.miscounted_models} models off)" if p.miscounted_models else ""))
        row = (f"| {p.models} x {p.features} | {p.counted:,} / {p.sent:,} ({p.load_seconds:.1f} s) "
               f"| {p.rss_mb:,.0f} MB ({p.peak_rss_mb:,.0f} MB) | {p.stall_load * 1000:,.0f} ms "
               f"| {_median_max(p.scrapes_load)} | {_median_max(p.scrapes_idle)}, {p.scrape_bytes / 1e6:.1f} MB "
               f"| {restart} "
               f"| {p.stall_restart * 1000:,.0f} ms | {after} | {p.dead_letters or '-'} |")
        lines.append(row)
        if p.problem:
            lines.append(f"| {p.models} x {p.features}: problem | {p.problem[:400]} |||||||||")
    return "\n".join(lines)


def _median_max(seconds: list[float]) -> str:
    if not seconds:
        return "-"
    return f"{statistics.median(seconds) * 1000:,.0f} / {max(seconds) * 1000:,.0f} ms ({len(seconds)})"


_NOTES = """\
- Events: the scenario generator's stationary stream (`scenarios.make_stream`), the same events for
  every model with the model's name in them; messages keyed by model, round-robin over the models.
  The time in brackets after the counts runs from the first produce to the /status.json poll
  (every 0.5 s) that saw every event counted.
- Loop stall: a request every 50 ms to a path no page serves; the worst answer time over the
  load (including start-up once the web server answers) and over the restart (from the new
  worker's first answer). The /status.json polls themselves cost ~ms.
- /metrics: one scrape at a time, every 1 s over the load (count in brackets) and 5 after it, at the
  default `SKEWWATCH_FEATURE_METRICS=all`; the HTTP round trip on the same machine included.
- Restart: `kill -9` two checkpoint intervals after the load was counted, a new worker at once;
  its group join waits out the killed member's session (the broker's session timeout).
- Before (issue 14, measured on the main of 2026-12-07 with 50 features a model): 4 monitors a
  model (one per partition), RSS 1.94 GB at 100 models and 8.5 GB at 500, loop stalls of 23-34 s
  at 500 models. Now a monitor exists only on the partition its model's events use, holds ~7 KB
  a feature fresh and ~11 KB after events (tracemalloc, `tests/test_detectors_model.py`), and
  baselines, restores, monitor creation and checkpoint encoding run a step at a time
  (docs/architecture.md, "Where monitors live").
- The largest step left is one micro-batch naming 500 models (synchronous): ~50 numpy and kernel
  calls per model whatever its events (bench/engine.py, figure (4)). Its rollback snapshot is now
  packed once per 5 calls (`detectors/processing.py`, `_Journal`), not before every call: 294 ms
  at 500 models on the quiet machine of 2026-12-07 (1.1-1.8 s at load ~5 before the input path's
  chunking), 264-277 ms in the table's run. The journal keeps each model's packed state (~230 kB
  at 50 features) and up to 5 calls' events between calls: RSS at 500 models went from 666 MB
  (2026-12-07) to 869 MB with it and the point-mass chains.
- 1 x 1,000: the checkpoint is compressed and split under `SKEWWATCH_MAX_CHECKPOINT_BYTES`
  (stream/worker/checkpoint_codec.py); before that, its first checkpoint (4.5 MB) exceeded the
  producer's 1 MiB record limit and the worker exited."""


if __name__ == "__main__":
    sys.exit(main())
