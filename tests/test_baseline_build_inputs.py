"""`skewwatch baseline build` on real training files: the profile keeps what the file says, so that
untouched production data replays without alerts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from baselines import readers
from baselines.build import build_baseline
from stream.commands.cli import main as cli


def write_training_csv(path, n=2000, seed=0):
    """A CSV as pandas writes it: a True/False column, a float-formatted code column."""
    rng = np.random.default_rng(seed)
    lines = ["amount,country,is_new,code"]
    for _ in range(n):
        lines.append(f"{rng.normal(50, 10):.3f},{rng.choice(['US', 'FR', 'DE'])},"
                     f"{rng.choice(['True', 'False'])},{rng.choice(['1.0', '2.0', '3.0'])}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_events(path, booleans_as, n=3000, seed=1):
    """Serving events with the training distribution; is_new as JSON booleans or as the CSV's strings."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for _ in range(n):
            is_new = bool(rng.random() < 0.5)
            f.write(json.dumps({"model": "m", "features": {
                "amount": float(rng.normal(50, 10)), "country": str(rng.choice(["US", "FR", "DE"])),
                "is_new": is_new if booleans_as == "json" else str(is_new),
                "code": str(rng.choice(["1.0", "2.0", "3.0"]))}}) + "\n")
    return path


def replay_alerts(capsys, events, baseline) -> list[dict]:
    assert cli(["replay", str(events), "--baseline", str(baseline)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


# ---- issue 13, item 1: the builder keeps what the file says -------------------------------------
def test_csv_text_is_kept_as_written(tmp_path):
    b = build_baseline(write_training_csv(tmp_path / "train.csv"), model="m", categorical=["code"])
    assert set(b.features["is_new"].categories) == {"True", "False"}
    assert set(b.features["code"].categories) == {"1.0", "2.0", "3.0"}


def test_a_column_decided_late_is_not_typed_by_the_parser(tmp_path, monkeypatch):
    # empty in the rows that decide the kinds: its kind comes from its first values, still as text
    monkeypatch.setattr(readers, "INFER_ROWS", 10)
    lines = ["x,flag,code"] + [f"{i},," for i in range(20)]
    lines += [f"{i},{['True', 'False'][i % 2]},{['1.0', 'A'][i % 2]}" for i in range(1000)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    b = build_baseline(tmp_path / "t.csv", model="m")
    assert b.features["flag"].categories == {"False": 0.5, "True": 0.5}
    assert b.features["code"].categories == {"1.0": 0.5, "A": 0.5}
    assert b.features["flag"].n_missing == 20


@pytest.mark.parametrize("booleans_as", ["json", "strings"])
def test_untouched_data_replays_without_alerts(tmp_path, capsys, booleans_as):
    baseline = tmp_path / "b.msgpack"
    build_baseline(write_training_csv(tmp_path / "train.csv"), model="m", categorical=["code"]).save(baseline)
    events = write_events(tmp_path / "events.jsonl", booleans_as)
    assert replay_alerts(capsys, events, baseline) == []
