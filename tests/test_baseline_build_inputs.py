"""`skewwatch baseline build` on real training files: the profile keeps what the file says, so that
untouched production data replays without alerts."""
from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from baselines import readers
from baselines.build import MIN_ROWS, BuildError, build_baseline
from stream.commands.cli import main as cli
from stream.devkit.synthetic import credit

ROOT = Path(__file__).resolve().parent.parent


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


# ---- issue item 2: columns that look like outputs, files too small to profile ---------------------
def numbers_csv(path, columns, n=MIN_ROWS):
    rng = np.random.default_rng(2)
    rows = [",".join(columns)] + [",".join(f"{v:.4f}" for v in rng.random(len(columns))) for _ in range(n)]
    path.write_text("\n".join(rows) + "\n")
    return path


def build_cli(capsys, *args) -> tuple[int, list[str]]:
    code = cli(["baseline", "build", *map(str, args)])
    return code, capsys.readouterr().err.splitlines()


def test_columns_named_like_outputs_are_profiled_with_a_warning_each(tmp_path, capsys):
    train = numbers_csv(tmp_path / "t.csv", ["amount", "credit_score", "score", "Prediction", "y_true", "target"])
    code, err = build_cli(capsys, train, "--model", "m", "-o", tmp_path / "b.msgpack")
    warnings = [line for line in err if "warning" in line]
    assert code == 0 and len(warnings) == 4, err  # not amount, nor credit_score (a feature of credit models)
    assert "'score'" in warnings[0] and "--confidence-column score" in warnings[0] and "--exclude score" in warnings[0]
    assert "'Prediction'" in warnings[1] and "--prediction-column Prediction" in warnings[1]
    assert "--label-column y_true" in warnings[2] and "--label-column target" in warnings[3]
    assert all(line.startswith("skewwatch baseline: warning: ") for line in warnings)

    code, err = build_cli(capsys, train, "--model", "m", "-o", tmp_path / "b.msgpack", "--confidence-column", "score",
                          "--prediction-column", "Prediction", "--label-column", "target", "--exclude", "y_true")
    assert code == 0 and not [line for line in err if "warning" in line], err


def test_the_deploy_guide_builds_a_baseline_its_events_replay_cleanly(tmp_path, capsys):
    # the guide's command on the walk-through's training data (examples/make_data.py writes it so)
    command = re.search(r"^skewwatch baseline build .*?(?<!\\)$", (ROOT / "deploy" / "README.md").read_text(),
                        re.MULTILINE | re.DOTALL).group(0)
    argv = shlex.split(command.replace("\\\n", " "))[1:]
    cols = credit.training(5000, seed=0)
    with open(tmp_path / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows(["" if v is None else v for v in row] for row in zip(*(list(c) for c in cols.values())))
    (tmp_path / "baselines.d").mkdir()
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for _, e in
                                credit.traffic(seed=1, phases=(credit.Phase("normal", 3000),))))
    with pytest.MonkeyPatch.context() as m:
        m.chdir(tmp_path)
        assert cli(argv) == 0
        baseline = tmp_path / argv[argv.index("-o") + 1]
        assert replay_alerts(capsys, events, baseline) == []


@pytest.mark.parametrize("name, content, message", [
    ("empty.csv", "", "empty file"),
    ("header.csv", "a,b\n", "no rows"),
    ("empty.jsonl", "", "no rows"),
    ("blank.jsonl", "\n\n", "no rows"),
    ("few.csv", "a,b\n" + "1,2\n" * (MIN_ROWS - 1), f"{MIN_ROWS - 1} rows, fewer than the {MIN_ROWS}"),
    ("excluded.csv", "a,b\n" + "1,2\n" * MIN_ROWS, "no feature left"),
])
def test_files_without_enough_to_profile_are_refused_with_one_line(tmp_path, capsys, name, content, message):
    (tmp_path / name).write_text(content)
    extra = ["--exclude", "a", "--confidence-column", "b"] if name == "excluded.csv" else []
    code, err = build_cli(capsys, tmp_path / name, "--model", "m", "-o", tmp_path / "b.msgpack", *extra)
    assert code == 2 and len(err) == 1 and message in err[0] and "Traceback" not in err[0], err
    assert not (tmp_path / "b.msgpack").exists()


def test_empty_parquet_is_refused(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"a": pa.array([], pa.float64())}), tmp_path / "t.parquet")
    code, err = build_cli(capsys, tmp_path / "t.parquet", "--model", "m", "-o", tmp_path / "b.msgpack")
    assert code == 2 and len(err) == 1 and "no rows" in err[0], err


def test_the_minimum_is_a_keyword_for_library_callers(tmp_path):
    path = numbers_csv(tmp_path / "t.csv", ["a"], n=10)
    with pytest.raises(BuildError, match=f"fewer than the {MIN_ROWS}"):
        build_baseline(path, model="m")
    assert build_baseline(path, model="m", min_rows=10).n_rows == 10


# ---- issue item 3: Parquet is read a batch at a time -----------------------------------------------
def test_parquet_is_read_in_bounded_chunks_not_whole(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(5)
    n = 800_000
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({f"x{i}": rng.normal(size=n) for i in range(5)}), path, row_group_size=50_000)
    decoded_bytes = n * 5 * 8  # 32 MB; pyarrow's default reading held about that after the first batch

    chunks = readers.parquet_frames(path, chunk_rows=10_000)
    first, _ = next(chunks)
    # the first chunk is read without loading the file: a row group's pages at most, not all of them
    assert pa.total_allocated_bytes() < decoded_bytes / 4, pa.total_allocated_bytes()
    sizes = [len(first)] + [len(frame) for frame, _ in chunks]
    assert len(sizes) >= 20 and max(sizes) <= 10_000 and sum(sizes) == n


# ---- issue item 4: only regular files --------------------------------------------------------------
@pytest.mark.parametrize("kind", ["device", "fifo", "directory"])
def test_a_non_regular_training_file_is_refused_before_reading(tmp_path, kind):
    if kind == "device":
        train = "/dev/zero"  # was read until memory ran out, had it a training file's name
    elif kind == "fifo":
        train = tmp_path / "train.csv"
        os.mkfifo(train)  # opening it would block until a writer comes
    else:
        train = tmp_path / "train.jsonl"
        train.mkdir()
    proc = subprocess.run([sys.executable, "-m", "stream.commands.cli", "baseline", "build", str(train),
                           "--model", "m", "-o", str(tmp_path / "b.msgpack")], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "not a regular file" in proc.stderr and "Traceback" not in proc.stderr


def test_a_link_to_a_device_is_refused_too(tmp_path):
    (tmp_path / "train.csv").symlink_to("/dev/zero")
    with pytest.raises(BuildError, match="not a regular file"):
        build_baseline(tmp_path / "train.csv", model="m")
