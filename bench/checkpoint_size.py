"""Checkpoint size: bytes per feature of one monitor's checkpoint, as the worker writes it.

    .venv/bin/python bench/checkpoint_size.py [--events N] [--features 50,200,1000] [--no-write]

Models: the demo's credit model (stream/devkit/synthetic/credit.py: 15 features, its "normal"
then "shift" phases), and the mixed synthetic models of stream/devkit/synthetic/scenarios.py
(4 numeric kinds and a categorical, cycling) at each --features width, baselines from 5k
training rows, fed N stationary events (a block of 2,000 fed again and again: the state's
size depends on the count of events, not on their values). For each: the checkpoint as format 2
wrote it (plain msgpack of the whole state, the raw recent values included) and as the worker
writes it now (stream/worker/checkpoint_codec.py at the default record limit, 900,000 bytes), with
examples off (the default) and on. No timing: sizes only. Writes its block of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402

from bench.results import write_block  # noqa: E402
from detectors.model import ModelMonitor, MonitorConfig  # noqa: E402
from stream.devkit.synthetic import credit, scenarios  # noqa: E402
from stream.worker import config  # noqa: E402
from stream.worker.checkpoint_codec import encode  # noqa: E402

__all__ = ["measure", "main"]

BLOCK = 2000


def measure(baseline, events: list[dict], n_events: int, examples: bool, limit: int) -> dict:
    """Feed `n_events` (the list, cycled) to a fresh monitor; the sizes of its checkpoint."""
    monitor = ModelMonitor(baseline, MonitorConfig(include_examples=examples))
    cycled = itertools.islice(itertools.cycle(events), n_events)
    while batch := list(itertools.islice(cycled, 1000)):
        monitor.update_batch(batch)
    n_features = len(baseline.features)
    old = len(msgpack.packb(monitor.state_dict(complete=True), use_bin_type=True))
    records = encode({"offset": n_events, "committed_floor": 0, "baseline": baseline.fingerprint},
                     monitor.state_dict(), limit, 0)
    new = sum(map(len, records))
    return {"features": n_features, "old": old, "new": new, "records": len(records),
            "largest": max(map(len, records)), "old_per_feature": old / n_features, "new_per_feature": new / n_features}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--features", default="50,200,1000")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    limit = config.load({}).max_checkpoint_bytes
    started = time.time()
    phases = credit.scenario(BLOCK // 2, BLOCK // 2, 0)[:2]  # normal, shift
    models = [("credit (demo)", credit.baseline(), [e for _, e in credit.traffic(seed=1, phases=phases)])]
    for n in (int(x) for x in args.features.split(",")):
        stream = scenarios.stationary(BLOCK, n_features=n, n_train=5000)
        models.append((f"synthetic, {n} features", stream.baseline(), stream.events))
    rows = []
    for name, baseline, events in models:
        for examples in (False, True):
            m = measure(baseline, events, args.events, examples, limit)
            rows.append((name, examples, m))
            print(f"{name:28} examples {'on ' if examples else 'off'}: format 2 {m['old_per_feature']:6.0f} B/feature; "
                  f"now {m['new_per_feature']:5.0f} B/feature in {m['records']} record(s), largest {m['largest']:,} B",
                  flush=True)
    table = ["| model | examples | format 2 (plain msgpack) | now | records | largest record |",
             "|---|---|---|---|---|---|"]
    for name, examples, m in rows:
        table.append(f"| {name} | {'on' if examples else 'off'} | {m['old_per_feature']:,.0f} B/feature "
                     f"({m['old']:,} B) | **{m['new_per_feature']:,.0f} B/feature** ({m['new']:,} B) | "
                     f"{m['records']} | {m['largest']:,} B |")
    body = "\n".join([
        "## Checkpoint size (`bench/checkpoint_size.py`)",
        "",
        f"Command: `.venv/bin/python bench/checkpoint_size.py --events {args.events} --features {args.features}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M', time.gmtime(started))} UTC",
        "",
        f"One monitor's checkpoint after {args.events:,} events, record limit {limit:,} bytes "
        "(SKEWWATCH_MAX_CHECKPOINT_BYTES). Target: <= 1,536 bytes per feature, no record over the limit.",
        "",
        *table,
    ])
    print(body)
    if not args.no_write:
        write_block("checkpoint_size.py", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
