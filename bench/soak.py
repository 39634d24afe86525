"""Soak: one worker on the embedded broker at a steady rate near its capacity, for a long time.

    .venv/bin/python bench/soak.py [--minutes 30] [--load 0.7] [--rate EVENTS_PER_S] [--write-results]

First a capacity probe (`--probe-messages` messages of 100 events, produced as fast as
possible; events/s from the first produce to the last event processed), then a steady feed at
`--load` x that capacity (or `--rate`), 100 events per message, for `--minutes`. Traffic is the
demo's credit model (15 features), stationary, with `--unseen-share` of the events carrying a
never-seen category value, every one distinct (what must not grow the monitor's state).

Every `--sample-seconds` (default 60): the worker's RSS (/proc/<pid>/status VmRSS), the
metric series it exposes (a label leak would grow them), the events it monitored, its consumer
lag (skewwatch_consumer_lag_messages, summed over partitions) and the broker's RSS. It prints a
table, and with `--write-results` writes it into its part of the "Reliability" section of
bench/RESULTS.md. Loopback only; it stops by itself (or on Ctrl-C) and stops every process it started.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import write_block  # noqa: E402
from stream import config, credit  # noqa: E402
from stream.broker import EmbeddedBroker, free_port  # noqa: E402
from stream.demo import (  # noqa: E402
    credit_baseline, embedded_worker_env, metric_value, start_worker, stop_worker, tail, wait_until_serving,
)

SECTION = "## Reliability (bench/soak.py, tests/integration/test_reliability.py)"
EVENTS_PER_MESSAGE = 100
#: distinct pre-encoded messages cycled through (each event's unseen value is still unique:
#: they are stamped per message)
POOL_MESSAGES = 200
TICK = 0.1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--load", type=float, default=0.7, help="share of the measured capacity to feed")
    p.add_argument("--rate", type=float, default=None, help="events/s to feed (skips the probe)")
    p.add_argument("--probe-messages", type=int, default=1500)
    p.add_argument("--sample-seconds", type=float, default=60.0)
    p.add_argument("--unseen-share", type=float, default=0.01)
    p.add_argument("--broker-budget-mb", type=float, default=4000.0,
                   help="the embedded broker keeps every record in memory: the rate is capped so that "
                        "the run adds at most this much, and the run stops if its RSS passes 1.5x this")
    p.add_argument("--write-results", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="skewwatch-soak-") as tmp:
        return asyncio.run(soak(Path(tmp), args))


def _rss_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024


def _scrape(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


class Sample(dict):
    """minute, worker RSS MB, broker RSS MB, metric series, events, lag."""


def _sample(t: float, worker_pid: int, broker_pid: int, metrics_url: str) -> Sample:
    text = _scrape(metrics_url)
    series = [line for line in text.splitlines() if line and not line.startswith("#")]
    lag = sum(float(m.group(1)) for m in re.finditer(r"^skewwatch_consumer_lag_messages\{[^}]*\} (\S+)$", text, re.M))
    return Sample(minute=t / 60, worker_rss=_rss_mb(worker_pid), broker_rss=_rss_mb(broker_pid), series=len(series),
                  events=metric_value(text, "skewwatch_events_total", f'model="{credit.MODEL}"'), lag=lag,
                  alerts=sum(float(m.group(1)) for m in re.finditer(r"^skewwatch_alerts_total\{[^}]*\} (\S+)$", text, re.M)))


def _messages() -> list[list[dict]]:
    events = [e for _, e in itertools.islice(credit.traffic(seed=7), POOL_MESSAGES * EVENTS_PER_MESSAGE)]
    return [events[i:i + EVENTS_PER_MESSAGE] for i in range(0, len(events), EVENTS_PER_MESSAGE)]


async def soak(workdir: Path, args: argparse.Namespace) -> int:
    from aiokafka import AIOKafkaProducer

    env = embedded_worker_env(workdir, app_id="skewwatch-soak", web_port=free_port())
    cfg = config.load(env)
    credit_baseline().save(Path(cfg.baselines) / f"{credit.MODEL}.msgpack")
    metrics_url = f"http://127.0.0.1:{cfg.web_port}/metrics"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with EmbeddedBroker(topics=config.topics(cfg)) as broker:
        env["SKEWWATCH_BROKER"] = broker.url
        log = workdir / "worker.log"
        worker = start_worker(env, log)
        try:
            problem = wait_until_serving(metrics_url, worker, 60)
            if problem:
                print(f"{problem}\n{tail(log)}", file=sys.stderr)
                return 1
            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5, max_request_size=4 * 1024 * 1024)
            await producer.start()
            try:
                pool = _messages()
                serial = itertools.count()

                def next_message() -> bytes:
                    n = next(serial)
                    events = pool[n % len(pool)]
                    k = int(len(events) * args.unseen_share)
                    stamped = [dict(e, features=dict(e["features"], purpose=f"unseen-{n}-{i}")) if i < k else e
                               for i, e in enumerate(events)]
                    return orjson.dumps(stamped)

                capacity = None if args.rate else await _capacity(producer, cfg.input_topic, metrics_url, next_message,
                                                                  args.probe_messages, worker)
                rate = args.rate or args.load * capacity
                per_event = len(next_message()) / EVENTS_PER_MESSAGE
                affordable = args.broker_budget_mb * 2**20 / (args.minutes * 60 * per_event)
                if rate > affordable:
                    print(f"capping {rate:,.0f} events/s to {affordable:,.0f}: the embedded broker would hold more than "
                          f"--broker-budget-mb {args.broker_budget_mb:g} ({per_event:.0f} bytes/event)", flush=True)
                    rate = affordable
                print(f"feeding {rate:,.0f} events/s ({EVENTS_PER_MESSAGE} per message) for {args.minutes} min", flush=True)
                samples = await _feed(producer, cfg.input_topic, rate, args, next_message, worker.pid, broker.pid,
                                      metrics_url, stop)
            finally:
                await producer.stop()
            if worker.poll() is not None:
                print(f"the worker died:\n{tail(log)}", file=sys.stderr)
                return 1
        finally:
            stop_worker(worker)
    table = _table(samples, rate, capacity)
    print(table)
    if args.write_results:
        _write_results(table, samples, rate, args)
    return 0


async def _capacity(producer, topic: str, metrics_url: str, next_message, n: int, worker) -> float:
    """Events/s of the worker on a burst of `n` messages (after a warm-up of 100)."""
    async def burst(count: int) -> float:
        start_events = metric_value(await asyncio.to_thread(_scrape, metrics_url), "skewwatch_events_total",
                                    f'model="{credit.MODEL}"')
        target = start_events + count * EVENTS_PER_MESSAGE
        t0 = time.monotonic()
        for _ in range(count):
            await producer.send(topic, next_message(), key=credit.MODEL.encode())
        await producer.flush()
        while True:
            text = await asyncio.to_thread(_scrape, metrics_url)
            if metric_value(text, "skewwatch_events_total", f'model="{credit.MODEL}"') >= target:
                return count * EVENTS_PER_MESSAGE / (time.monotonic() - t0)
            if worker.poll() is not None:
                raise RuntimeError("the worker died during the capacity probe")
            await asyncio.sleep(0.1)

    await burst(100)
    capacity = await burst(n)
    print(f"capacity probe: {capacity:,.0f} events/s ({n} messages of {EVENTS_PER_MESSAGE})", flush=True)
    return capacity


async def _feed(producer, topic: str, rate: float, args, next_message, worker_pid: int, broker_pid: int,
                metrics_url: str, stop: asyncio.Event) -> list[Sample]:
    """Send at `rate` events/s (whole messages, paced every TICK) and sample periodically."""
    start = time.monotonic()
    end = start + args.minutes * 60
    samples = [await asyncio.to_thread(_sample, 0.0, worker_pid, broker_pid, metrics_url)]
    print(_row(samples[-1]), flush=True)
    next_sample = start + args.sample_seconds
    owed = 0.0
    while not stop.is_set() and time.monotonic() < end:
        owed += rate * TICK / EVENTS_PER_MESSAGE
        for _ in range(int(owed)):
            await producer.send(topic, next_message(), key=credit.MODEL.encode())
        owed -= int(owed)
        now = time.monotonic()
        if now >= next_sample:
            samples.append(await asyncio.to_thread(_sample, now - start, worker_pid, broker_pid, metrics_url))
            print(_row(samples[-1]), flush=True)
            next_sample += args.sample_seconds
            if samples[-1]["broker_rss"] > 1.5 * args.broker_budget_mb:
                print("stopping early: the embedded broker's RSS passed 1.5x --broker-budget-mb", flush=True)
                break
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, start + TICK * (1 + (now - start) // TICK) - time.monotonic()))
        except asyncio.TimeoutError:
            pass
    await producer.flush()
    await asyncio.sleep(2)  # let the worker drain the last messages before the final sample
    samples.append(await asyncio.to_thread(_sample, time.monotonic() - start, worker_pid, broker_pid, metrics_url))
    print(_row(samples[-1]), flush=True)
    return samples


HEADER = "| minute | worker RSS MB | broker RSS MB | metric series | events monitored | consumer lag (messages) | alerts |\n|---|---|---|---|---|---|---|"


def _row(s: Sample) -> str:
    return (f"| {s['minute']:.1f} | {s['worker_rss']:.0f} | {s['broker_rss']:.0f} | {s['series']} | "
            f"{s['events']:,.0f} | {s['lag']:.0f} | {s['alerts']:.0f} |")


def _table(samples: list[Sample], rate: float, capacity: float | None) -> str:
    first, last = samples[0], samples[-1]
    steady = samples[1:] or samples
    lags = [s["lag"] for s in steady]
    summary = (f"\nworker RSS {first['worker_rss']:.0f} MB at start, {steady[0]['worker_rss']:.0f} MB after the first "
               f"sample, {last['worker_rss']:.0f} MB at the end; lag max {max(lags):.0f}, last {lags[-1]:.0f} messages; "
               f"{last['events']:,.0f} events monitored at {rate:,.0f} events/s offered"
               + (f" ({rate / capacity:.0%} of the {capacity:,.0f} events/s probed)" if capacity else "") + "; "
               f"metric series {first['series']} -> {last['series']}")
    return "\n".join([HEADER, *(_row(s) for s in samples)]) + "\n" + summary


def _write_results(table: str, samples: list[Sample], rate: float, args: argparse.Namespace) -> None:
    """Replace this benchmark's block (between its markers) at the end of RESULTS.md, under the
    Reliability section heading; the other sections are left as they are."""
    command = (f".venv/bin/python bench/soak.py --minutes {args.minutes:g} --load {args.load:g} "
               f"--broker-budget-mb {args.broker_budget_mb:g}") + (
        f" --rate {args.rate:g}" if args.rate else "") + " --write-results"
    block = (f"### Soak (`bench/soak.py`)\n\nCommand: `{command}`  \nDate: {time.strftime('%Y-%m-%d %H:%M')}  \n"
             f"Machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end of the run; the embedded broker, the "
             f"producer and one worker on the same machine. {EVENTS_PER_MESSAGE} credit-model events (15 features) "
             f"per message, {args.unseen_share:.0%} of events with a distinct never-seen `purpose` value.\n\n{table}")
    write_block("soak.py", block, heading=SECTION)


if __name__ == "__main__":
    sys.exit(main())
