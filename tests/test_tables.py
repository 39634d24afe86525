"""`skewwatch replay` and `skewwatch report` over production tables (CSV, Parquet): one row per
prediction, read with `baseline build`'s column flags, monitored exactly as the same events in JSONL."""
import doctest
import json

import orjson
import pandas as pd
import pytest

from stream.commands import tables
from stream.commands.cli import main
from stream.devkit.synthetic import credit

ROLE_FLAGS = ["--confidence-column", "conf", "--prediction-column", "pred", "--label-column", "label"]


@pytest.fixture(scope="module")
def credit_files(tmp_path_factory):
    """The credit model's baseline, and 12k events through its scenario as JSONL, CSV and Parquet."""
    d = tmp_path_factory.mktemp("tables")
    credit.baseline(0).save(d / "credit.msgpack")
    events = [e for _, e in credit.traffic(seed=1, phases=credit.scenario(3000, 3000, 3000, 3000))]
    for i, e in enumerate(events):
        e["ts"] = 1.764e9 + i * 0.25
    (d / "events.jsonl").write_bytes(b"".join(orjson.dumps(e, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
                                              for e in events))
    rows = pd.DataFrame([{**e["features"], "model_version": e["model_version"], "request_id": e["request_id"],
                          "ts": e["ts"], "pred": e["prediction"], "conf": e["confidence"], "label": 1} for e in events])
    rows.to_csv(d / "events.csv", index=False)
    rows.to_parquet(d / "events.parquet")
    return d


def _replay(capsys, *argv):
    code = main(["replay", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_a_csv_or_parquet_table_gives_the_alerts_of_the_same_events_in_jsonl(capsys, credit_files):
    d = credit_files
    code, from_jsonl, _ = _replay(capsys, d / "events.jsonl", "-b", d / "credit.msgpack")
    assert code == 0 and {a["kind"] for a in from_jsonl} == {"drift", "data_quality", "confidence_drop"}
    for name in ("events.csv", "events.parquet"):
        code, from_table, err = _replay(capsys, d / name, "-b", d / "credit.msgpack", *ROLE_FLAGS)
        assert code == 0, err
        assert "replay: 12000 events" in err and "rejected 0" in err
        assert from_table == from_jsonl, name  # alert ids, statistics, times: all the same


def test_a_csv_without_the_role_flags_profiles_the_outputs_as_unexpected_features(capsys, credit_files):
    """The flags matter as for `baseline build`: without them conf/pred/label are fields the baseline lacks."""
    d = credit_files
    code, alerts, _ = _replay(capsys, d / "events.csv", "-b", d / "credit.msgpack")
    assert code == 0
    assert any(a["kind"] == "data_quality" and "conf" in json.dumps(a) for a in alerts)


def test_csv_values_are_typed_by_the_baseline(tmp_path, capsys, credit_files):
    """A number in a numeric column is a number, text there is invalid, a null spelling is missing;
    a categorical column keeps its text; "False" matches the baseline's spelling of a boolean."""
    frame = pd.read_csv(credit_files / "events.csv", dtype=str, keep_default_na=False).head(200)
    frame.loc[0, "age"] = "forty"
    frame.loc[1, "age"] = "NA"
    frame.loc[2, "home_ownership"] = "NA"  # a category, not a missing value
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    baselines = {"credit": credit.baseline(0)}
    columns = tables.TableColumns(confidence_column="conf", prediction_column="pred", label_column="label")
    [(chunk, _)] = tables.table_frames(str(path), "csv", baselines, columns)
    events = tables.events_from_frame(chunk, baselines, columns, text=True)
    assert [e["features"]["age"] for e in events[:3]] == ["forty", None, float(frame.loc[2, "age"])]
    assert events[2]["features"]["home_ownership"] == "NA"
    assert isinstance(events[0]["features"]["has_cosigner"], bool)
    assert set(events[0]) == {"model", "model_version", "request_id", "ts", "confidence", "prediction", "features"}
    assert "label" not in events[0]["features"] and isinstance(events[0]["confidence"], float)
    code, _, err = _replay(capsys, path, "-b", credit_files / "credit.msgpack", *ROLE_FLAGS)
    assert code == 0 and "age (invalid 1, missing 1)" in err, err


def test_a_parquet_datetime_column_is_seconds_since_the_epoch():
    frame = pd.DataFrame({"ts": pd.to_datetime(["2025-12-01T00:00:00Z", None]), "x": [1.0, 2.0]})
    b = credit.baseline(0)
    events = tables.events_from_frame(frame, {"credit": b}, tables.TableColumns())
    assert [e["ts"] for e in events] == [1764547200.0, None]


@pytest.mark.parametrize("argv, message", [
    (["--confidence-column", "score"], "--confidence-column column 'score' is not in the table (columns: age,"),
    (["--exclude", "nope"], "--exclude column 'nope' is not in the table"),
])
def test_a_named_column_missing_from_the_table_is_one_line_and_exit_2(capsys, credit_files, argv, message):
    for name in ("events.csv", "events.parquet"):
        code, _, err = _replay(capsys, credit_files / name, "-b", credit_files / "credit.msgpack", *argv)
        assert code == 2 and err.startswith(f"skewwatch replay: error: {message}"), err
        assert "Traceback" not in err


def test_rows_of_a_table_without_a_model_column_need_a_model_when_several_baselines_are_loaded(
        tmp_path, capsys, credit_files):
    credit.baseline(0, model="fraud").save(tmp_path / "fraud.msgpack")
    base = [credit_files / "events.csv", "-b", credit_files / "credit.msgpack", "-b", tmp_path / "fraud.msgpack",
            *ROLE_FLAGS]
    code, _, err = _replay(capsys, *base)
    assert code == 2 and "no `model` column and 2 baselines are loaded (credit, fraud)" in err
    assert "(--model)" in err
    code, alerts, err = _replay(capsys, *base, "--model", "fraud")
    assert code == 0 and alerts and {a["model"] for a in alerts} == {"fraud"}


def test_rejected_rows_are_dead_lettered_with_their_row_number(tmp_path, capsys, credit_files):
    frame = pd.read_parquet(credit_files / "events.parquet").head(1500)
    frame["model"] = "credit"
    frame.loc[7, "model"] = None  # row 8: no model
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    dead = tmp_path / "dead.jsonl"
    code, _, err = _replay(capsys, path, "-b", credit_files / "credit.msgpack", *ROLE_FLAGS, "--dead-letter", dead)
    assert code == 0 and "rejected 1: missing_model 1" in err, err
    [letter] = [json.loads(line) for line in dead.read_text().splitlines()]
    assert letter["source"] == {"file": str(path), "row": 8}


def test_a_table_cannot_come_from_standard_input(capsys, credit_files):
    code, _, err = _replay(capsys, "-", "-b", credit_files / "credit.msgpack", "--format", "csv")
    assert code == 2 and "a table is read from a file, not from standard input" in err


def test_report_reads_a_table(tmp_path, capsys, credit_files):
    out = tmp_path / "r.html"
    code = main(["report", str(credit_files / "events.parquet"), "-b", str(credit_files / "credit.msgpack"),
                 *ROLE_FLAGS, "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    page = out.read_text()
    assert "events.parquet" in page and "income" in page and "Nothing was monitored" not in page


def test_doctests():
    assert doctest.testmod(tables).failed == 0
