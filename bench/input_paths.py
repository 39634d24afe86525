"""Input paths: how much slower than clean events each kind of bad input is monitored.

    .venv/bin/python bench/input_paths.py [--events N] [--rounds R] [--profile WORKLOAD]

A model of 50 features (5 categorical, 45 numeric; the baseline from 20k training rows) and, on
the same stationary events, the input paths a hostile or broken producer takes:

- clean: the events as they are (the reference rate);
- unseen_1 / unseen_5: a new unseen value in one / all five categoricals of every event;
- unexpected_45: the same events against a baseline of the categoricals only: 45 unexpected names
  per event (the issue's case);
- unexpected_45_new: the same, with new names in every event;
- unexpected_990_new: 990 new unexpected names per event (with the 5 known ones, the decoder's cap
  of 1,000 features per event); its rate is per event, of events 20x larger;
- wrong_schema: every field renamed (unexpected names, and every known field absent);
- unknown_model: events of a model without a baseline (dead-lettered);
- alarms: "n/a" in every feature (invalid numbers, an unseen category): every test alarming.

Then one batch as the worker's agent takes it (`stream.worker.agents` hands each partition's records
to `detectors.processing.process_messages`, in runs of about 2 MB between which the event loop
runs): 8 messages of ~0.8 MB, each a list of events of 990 new unexpected names, once per round
on a fresh router: the longest such call is the longest the loop waits (issue: under 1 s).

Each round replays every workload once, as `skewwatch replay` does (`stream.commands.replay.Replay`:
a JSONL file read and decoded, batches of 500 events, the dead letters written to memory), on a
fresh router, interleaved so that a busy machine slows all of them alike; the figure is each
workload's events/s over the same round's clean events/s: min / median / max over
the rounds, with the load average. Target: every ratio >= 1/3.
Nothing is written to bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from baselines.build import build_baseline_from_columns  # noqa: E402
from baselines.profile import Baseline  # noqa: E402
from detectors.events import Limits  # noqa: E402
from detectors.processing import process_messages  # noqa: E402
from detectors.routing import ModelRouter  # noqa: E402
from stream.commands.replay import Replay  # noqa: E402

MODEL = "shop"
N_CATEGORICAL = 5
N_NUMERIC = 45
BATCH = 500


def columns(rng: np.random.Generator, n: int) -> dict[str, list]:
    """Five categoricals with 3..11 skewed categories each, then 45 normal numeric features."""
    out: dict[str, list] = {}
    for j in range(N_CATEGORICAL):
        k = 3 + 2 * j
        shares = np.arange(k, 0, -1, dtype=float)
        out[f"cat_{j}"] = [f"v{j}_{c}" for c in rng.choice(k, n, p=shares / shares.sum())]
    for j in range(N_NUMERIC):
        out[f"num_{j:02d}"] = rng.normal(10.0 * j, 1.0 + j, n).round(3).tolist()
    return out


def baselines() -> tuple[Baseline, Baseline]:
    """(every feature, the categoricals only): the second finds 45 unexpected names in every clean event."""
    training = columns(np.random.default_rng(0), 20_000)
    categorical = [f"cat_{j}" for j in range(N_CATEGORICAL)]
    return (build_baseline_from_columns(MODEL, training, categorical=categorical),
            build_baseline_from_columns(MODEL, {k: training[k] for k in categorical}, categorical=categorical))


def workloads(n: int) -> dict[str, tuple[bool, list[dict]]]:
    """Every workload: (monitored by the categoricals-only baseline, its events); see the module docstring."""
    rng = np.random.default_rng(1)
    data = columns(rng, n)
    names = list(data)

    def clean() -> list[dict]:
        return [{"model": MODEL, "features": dict(zip(names, row))} for row in zip(*data.values())]

    def with_features(edit) -> list[dict]:
        events = clean()
        for i, ev in enumerate(events):
            ev["features"] = edit(i, ev["features"])
        return events

    def unseen(n_features: int):
        def edit(i: int, features: dict) -> dict:
            for name in names[:n_features]:
                features[name] = f"new-{name}-{i}"
            return features
        return edit

    def new_names(per_event: int):
        def edit(i: int, features: dict) -> dict:
            values = list(features.values())[N_CATEGORICAL:]
            kept = {k: features[k] for k in names[:N_CATEGORICAL]}
            kept.update((f"extra_field_{i}_{k}", values[k % N_NUMERIC]) for k in range(per_event))
            return kept
        return edit

    return {
        "clean": (False, clean()),
        "unseen_1": (False, with_features(unseen(1))),
        "unseen_5": (False, with_features(unseen(N_CATEGORICAL))),
        "unexpected_45": (True, clean()),
        "unexpected_45_new": (True, with_features(new_names(N_NUMERIC))),
        # fewer events: each is 20x larger (the rate is per event all the same)
        "unexpected_990_new": (True, with_features(new_names(990))[: max(n // 20, BATCH)]),
        "wrong_schema": (False, with_features(lambda i, f: {k.upper(): v for k, v in f.items()})),
        "unknown_model": (False, [{**ev, "model": "nobody"} for ev in clean()]),
        "alarms": (False, with_features(lambda i, f: {k: "n/a" for k in f})),
    }


def large_messages(n_messages: int = 8, size: int = 800_000, per_event: int = 990) -> list[bytes]:
    """n_messages JSON lists of events of `per_event` new unexpected names each, of about `size` bytes."""
    out = []
    for m in range(n_messages):
        events, total = [], 2
        while True:
            event = orjson.dumps({"model": MODEL, "features": {**{f"cat_{j}": f"v{j}_0" for j in range(N_CATEGORICAL)},
                                  **{f"extra_field_{m}_{len(events)}_{k}": 1.5 * k for k in range(per_event)}}})
            if total + len(event) + 1 > size:
                break
            events.append(event)
            total += len(event) + 1
        out.append(b"[" + b",".join(events) + b"]")
    return out


def run(router: ModelRouter, path: str) -> float:
    """Seconds to replay the JSONL file at path."""
    replay = Replay(router, Limits(), BATCH, lambda alerts, events: None, dead_letters=io.BytesIO())
    t0 = time.perf_counter()
    replay.run_file(path, "jsonl")
    replay.flush()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=20_000, help="events per workload (default 20000)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--profile", metavar="WORKLOAD", help="profile one run of this workload instead")
    args = p.parse_args()
    full, categorical_only = baselines()
    with tempfile.TemporaryDirectory() as tmp:
        sizes, paths, monitors = {}, {}, {}
        for name, (only_categorical, events) in workloads(args.events).items():
            sizes[name], paths[name] = len(events), os.path.join(tmp, f"{name}.jsonl")
            monitors[name] = categorical_only if only_categorical else full
            Path(paths[name]).write_bytes(b"".join(orjson.dumps(ev) + b"\n" for ev in events))
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(run, ModelRouter([monitors[args.profile]]), paths[args.profile])
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            return
        rates: dict[str, list[float]] = {name: [] for name in paths}
        batch, batch_seconds = large_messages(), []
        for _ in range(args.rounds):
            for name, path in paths.items():
                rates[name].append(sizes[name] / run(ModelRouter([monitors[name]]), path))
            router, t0 = ModelRouter([full]), time.perf_counter()
            process_messages(router, batch)
            batch_seconds.append(time.perf_counter() - t0)
    ratios = {name: [r / c for r, c in zip(rs, rates["clean"])] for name, rs in rates.items()}
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {args.rounds} rounds, "
          f"{args.events} events per workload, batches of {BATCH}")
    print(f"{'workload':<17}{'events/s (median)':>19}{'ratio to clean: min':>22}{'median':>8}{'max':>7}")
    for name, rs in ratios.items():
        print(f"{name:<17}{statistics.median(rates[name]):>19,.0f}{min(rs):>22.3f}{statistics.median(rs):>8.3f}"
              f"{max(rs):>7.3f}")
    n_events = sum(len(orjson.loads(m)) for m in batch)
    print(f"a worker batch of {len(batch)} messages of {statistics.mean(map(len, batch)) / 1e6:.2f} MB "
          f"({n_events} events of 990 new names): process_messages "
          f"{min(batch_seconds):.3f} / {statistics.median(batch_seconds):.3f} / {max(batch_seconds):.3f} s")


if __name__ == "__main__":
    main()
