"""Write the walk-through's files: train.csv (training data of the synthetic credit-risk
model, 20k rows) and events.jsonl (60k production events that develop a population shift,
a missing-value problem and a confidence drop; 1000 events per line after the first 100).

    python examples/make_data.py [--out DIR]
"""
import argparse
import csv
from pathlib import Path

import orjson

from stream.devkit.synthetic import credit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=".", help="directory to write train.csv and events.jsonl into")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    cols = credit.training(20_000, seed=args.seed)
    names = list(cols)
    with open(out / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(names)
        for row in zip(*(list(cols[n]) for n in names)):
            w.writerow(["" if v is None else v for v in row])

    events = [e for _, e in credit.traffic(seed=args.seed + 1, phases=credit.scenario(20_000, 15_000, 15_000, 10_000))]
    with open(out / "events.jsonl", "wb") as f:
        for e in events[:100]:  # one event per line ...
            f.write(orjson.dumps(e, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
        for i in range(100, len(events), 1000):  # ... or a list of events per line
            f.write(orjson.dumps(events[i:i + 1000], option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    print(f"wrote {out / 'train.csv'} ({len(cols[names[0]])} rows) and {out / 'events.jsonl'} ({len(events)} events)")


if __name__ == "__main__":
    main()
