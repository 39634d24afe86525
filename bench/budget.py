"""The alarm budget and the detection delay, on the monitors as they are now.

    .venv/bin/python bench/budget.py [--feature-events 50M] [--seeds 30]

(1) false alerts over stationary 50-feature streams (200k events per seed) until --feature-events
    feature-events: the calibrated budget is at most 1 per 10M;
(2) the delay of a 1-standard-deviation mean shift at event 1000 (the scenario of
    tests/test_scenarios.py), its median over --seeds seeds: the issue asks <= 100 events.
Written into the budget block of bench/RESULTS.md (--no-write to skip).
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.engine import count  # noqa: E402
from bench.results import write_block  # noqa: E402
from detectors.model import ModelMonitor  # noqa: E402
from stream.devkit.synthetic import scenarios as streams  # noqa: E402
from stream.devkit.synthetic.scenarios import run_scenario  # noqa: E402

EVENTS_PER_SEED = 200_000
N_FEATURES = 50


def false_alerts(feature_events: int) -> tuple[int, int, list[str]]:
    """(feature-events fed, alerts, their descriptions) over stationary streams, one seed per 200k events."""
    fed, alerts = 0, []
    seed = 100
    while fed < feature_events:
        stream = streams.stationary(EVENTS_PER_SEED, n_features=N_FEATURES, seed=seed)
        monitor = ModelMonitor(stream.baseline())
        for i in range(0, EVENTS_PER_SEED, 1000):
            alerts += [f"seed {seed}: {a.kind}/{a.feature}/{a.detector}@{a.events_seen}"
                       for a in monitor.update_batch(stream.events[i:i + 1000])]
        fed += EVENTS_PER_SEED * N_FEATURES
        seed += 1
    return fed, len(alerts), alerts


def shift_delays(seeds: int) -> tuple[list[int], int]:
    """Delays of the first drift alert on the shifted feature, and how many seeds missed it."""
    delays, missed = [], 0
    for seed in range(1, seeds + 1):
        stream = streams.mean_shift(2_000, at=1_000, k=1.0, seed=seed)
        hits = [a.events_seen - 1_000 for a in run_scenario(stream)
                if a.kind == "drift" and a.feature == "normal_00" and a.events_seen > 1_000]
        if hits:
            delays.append(min(hits))
        else:
            missed += 1
    return delays, missed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--feature-events", type=count, default=50_000_000)
    p.add_argument("--seeds", type=int, default=30)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    t = time.perf_counter()
    fed, n_alerts, described = false_alerts(args.feature_events)
    delays, missed = shift_delays(args.seeds)
    lines = [
        "## Alarm budget and detection delay (`bench/budget.py`)",
        "",
        f"Command: `{' '.join(['.venv/bin/python', 'bench/budget.py', *sys.argv[1:]])}`  ",
        f"Date: {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} ({time.perf_counter() - t:.0f} s)",
        "",
        "| what | result | target |",
        "|---|---|---|",
        f"| false alerts, stationary {N_FEATURES}-feature streams | {n_alerts} in {fed / 1e6:.0f}M feature-events "
        f"| <= 1 per 10M |",
        f"| 1-std mean shift at event 1000, {args.seeds} seeds | median delay {statistics.median(delays):g} events "
        f"(min {min(delays)}, max {max(delays)}), {missed} missed | median <= 100 |",
    ]
    if described:
        lines += ["", "Alerts: " + "; ".join(described[:20])]
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        write_block("budget.py", report)


if __name__ == "__main__":
    main()
