"""What reading a baseline file costs the worker: the widest baseline the caps allow, and hostile files.

    .venv/bin/python bench/baseline_files.py [--features 10000]

(1) a valid baseline of --features numeric features (MAX_FEATURES by default): its size on disk,
    the time and peak memory (RSS of a fresh process) to load it;
(2) the event loop's longest stall while the worker's timer rescans a directory holding it
    (`DetectionService.rescan_off_loop`: parsed in a thread), against `rescan` on the loop;
(3) the peak memory of reading hostile files: 16M empty maps in 16 MB, 16M two-letter strings in
    50 MB (a list holds numbers only), the most map entries the caps let through (MAX_MAP_ENTRIES,
    distinct keys), the most numbers (MAX_NUMBERS), and a 1 GB file (the size cap, checked
    before reading).
Prints the figures; docs/reliability.md quotes them.
"""
from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

import msgpack

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from baselines.build import build_baseline_from_columns  # noqa: E402

#: 16M empty maps, 1 byte each on disk: 4,000 lists of 4,000 (each list within the decoder's list cap)
_LIST_OF_4000 = b"\xdc" + (4_000).to_bytes(2, "big")
NESTED_EMPTY_MAPS = _LIST_OF_4000 + (_LIST_OF_4000 + b"\x80" * 4_000) * 4_000


def hostile_files(d: Path) -> list[tuple[Path, str]]:
    """The hostile files of (3), written into `d`, with what each is."""
    from baselines.profile import MAX_MAP_ENTRIES, MAX_MAP_LEN, MAX_NUMBERS

    files = {"16M empty maps": NESTED_EMPTY_MAPS,
             "16M two-letter strings in lists": (_LIST_OF_4000 + b"\xa2ab" * 4_000) * 4_000}
    maps = MAX_MAP_ENTRIES // MAX_MAP_LEN  # the most entries, in the fewest maps: distinct 8-letter keys
    files[f"{maps * MAX_MAP_LEN:,} map entries (MAX_MAP_ENTRIES)"] = b"".join(
        [b"\xde" + maps.to_bytes(2, "big")]
        + [msgpack.packb(i) + msgpack.packb({f"{i:03x}{j:05x}": 1.5 for j in range(MAX_MAP_LEN)}) for i in range(maps)])
    middle = _LIST_OF_4000 + (_LIST_OF_4000 + b"\x07" * 4_000) * 4_000  # 16M fixints: 1 byte each on disk
    n = MAX_NUMBERS // 16_000_000 + 1
    files[f"{n * 16}M numbers in lists, over MAX_NUMBERS"] = b"\xdc" + n.to_bytes(2, "big") + middle * n
    out = []
    for i, (what, raw) in enumerate(files.items()):
        path = d / f"hostile-{i}.msgpack"
        path.write_bytes(raw)
        out.append((path, what))
    huge = d / "huge.msgpack"
    with open(huge, "wb") as f:
        f.truncate(1 << 30)  # sparse
    return [*out, (huge, "a 1 GB file (sparse)")]


def wide_baseline(path: Path, features: int) -> None:
    """A valid baseline of `features` numeric features: one profile of 5,000 training values, repeated."""
    import numpy as np

    one = build_baseline_from_columns("wide", {"x": np.random.default_rng(0).normal(0, 1, 5_000)}).to_dict()
    profile = one["features"]["x"]
    one["features"] = {f"f{i}": profile for i in range(features)}
    path.write_bytes(msgpack.packb(one, use_bin_type=True))


def measure_in_child(path: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS MB, outcome) of `Baseline.load(path)` in a fresh process (VmHWM: unlike
    ru_maxrss, not inherited from the parent across exec)."""
    code = ("import re, sys, time\nfrom baselines.profile import Baseline, BaselineError\n"
            "t = time.perf_counter()\n"
            "try:\n    Baseline.load(sys.argv[1]); outcome = 'loaded'\n"
            "except BaselineError as e:\n    outcome = 'refused: ' + str(e).split(': ', 1)[1][:60]\n"
            "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
            "print(time.perf_counter() - t, int(hwm) / 1024, outcome, sep='|')")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout.strip()
    seconds, rss, outcome = out.split("|")
    return float(seconds), float(rss), outcome


async def longest_stall(rescan) -> float:
    """The event loop's longest lateness (seconds) for a 10 ms ticker while `rescan` runs."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    done = False

    async def ticker():
        nonlocal worst
        while not done:
            t = loop.time()
            await asyncio.sleep(0.01)
            worst = max(worst, loop.time() - t - 0.01)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    result = rescan()
    if asyncio.iscoroutine(result):
        await result
    await asyncio.sleep(0.05)
    done = True
    await task
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=10_000)
    args = parser.parse_args()
    from prometheus_client import CollectorRegistry

    from stream.worker.metrics import Metrics
    from stream.worker.service import DetectionService

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        wide = d / "baselines" / "wide.msgpack"
        wide.parent.mkdir()
        wide_baseline(wide, args.features)
        seconds, rss, outcome = measure_in_child(wide)
        print(f"wide baseline, {args.features} features, {wide.stat().st_size / 1e6:.1f} MB: {outcome} in "
              f"{seconds:.2f} s, peak RSS {rss:.0f} MB")
        for name, rescan in (("rescan_off_loop (the worker's timer)", "rescan_off_loop"),
                             ("rescan on the loop", "rescan")):
            service = DetectionService(str(wide.parent), Metrics(CollectorRegistry()))
            stall = asyncio.run(longest_stall(getattr(service, rescan)))
            assert service.models == ["wide"]
            print(f"  longest event-loop stall during {name}: {stall * 1000:.0f} ms")
        for path, what in hostile_files(d):
            seconds, rss, outcome = measure_in_child(path)
            print(f"{what}, {path.stat().st_size / 1e6:.0f} MB: {outcome} in {seconds:.2f} s, peak RSS {rss:.0f} MB")
        empty = d / "empty.msgpack"
        empty.write_bytes(b"")
        print(f"(a fresh process that refuses an empty file: peak RSS {measure_in_child(empty)[1]:.0f} MB)")


if __name__ == "__main__":
    main()
