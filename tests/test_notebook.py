"""`stream.notebook`: docs/notebook.md's example runs as written; DataFrames give the alerts of the
commands; nothing monitored is an error; a missing pandas is said plainly."""
import builtins
import json
import re
import warnings
from pathlib import Path

import orjson
import pandas as pd
import pytest

from baselines.build import BuildWarning, build_baseline_from_columns
from baselines.profile import Baseline
from baselines.readers import BuildError
from stream import notebook
from stream.commands.cli import main
from stream.devkit.synthetic import credit
from stream.notebook import NothingMonitored, build_baseline, monitor

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def test_the_documented_example_runs_and_shows_what_it_says(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # it saves report.html
    [code] = _python_blocks(ROOT / "docs" / "notebook.md")
    namespace: dict = {}
    exec(compile(code, "docs/notebook.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert printed.startswith("<Monitoring: 20,000 events monitored, 5 alerts (drift 3, data_quality 1, "
                              "confidence_drop 1), 0 rejected>")
    alerts = namespace["alerts"]
    assert list(alerts.columns) == ["time", *notebook.ALERT_COLUMNS] and len(alerts) == 5
    assert {"income", "employment_years", "confidence"} <= set(alerts["feature"])
    inline = namespace["report"]._repr_html_()
    assert inline.startswith("<iframe srcdoc=") and "skewwatch report: credit" in inline
    assert "<style>" not in inline  # the page is escaped into the frame: its CSS cannot restyle the notebook
    assert (tmp_path / "report.html").read_text(encoding="utf-8") == namespace["report"].html


@pytest.fixture(scope="module")
def served():
    events = [e for _, e in credit.traffic(seed=1, phases=credit.scenario(3000, 3000, 3000, 3000))]
    for i, e in enumerate(events):
        e["ts"] = 1.764e9 + i * 0.25
    return events


def test_a_frame_of_events_gives_the_alerts_of_skewwatch_replay(tmp_path, capsys, served):
    baseline = credit.baseline(0)
    baseline.save(tmp_path / "credit.msgpack")
    (tmp_path / "e.jsonl").write_bytes(b"".join(orjson.dumps(e, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
                                                for e in served))
    assert main(["replay", str(tmp_path / "e.jsonl"), "-b", str(tmp_path / "credit.msgpack")]) == 0
    replayed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    frame = pd.DataFrame([{**e["features"], "model_version": e["model_version"], "ts": e["ts"],
                           "score": e["confidence"], "pred": e["prediction"]} for e in served])
    from_frame = monitor(frame, tmp_path / "credit.msgpack", confidence_column="score", prediction_column="pred")
    from_list = monitor(served, [baseline])
    assert replayed and from_frame.alerts == replayed and from_list.alerts == replayed
    assert from_frame.events == 12_000 and from_frame.rejected == {}
    assert from_frame.alerts_frame()["time"].iloc[0] == pd.Timestamp(replayed[0]["ts"], unit="s", tz="UTC")


def test_a_frame_of_nested_events_is_read_as_events(served):
    frame = pd.DataFrame(served)
    assert "features" in frame.columns
    assert monitor(frame, credit.baseline(0)).alerts == monitor(served, credit.baseline(0)).alerts


def test_a_baseline_from_a_frame_is_the_one_baseline_build_makes_of_its_csv(tmp_path):
    frame = pd.DataFrame(credit.training(5_000, seed=2))
    roles = dict(confidence_column="confidence", prediction_column="prediction", label_column="label")
    from_frame = build_baseline(frame, model="credit", **roles)
    frame.to_csv(tmp_path / "train.csv", index=False)
    assert main(["baseline", "build", str(tmp_path / "train.csv"), "--model", "credit", "-o",
                 str(tmp_path / "b.msgpack"), *(f"--{k.replace('_', '-')}={v}" for k, v in roles.items())]) == 0
    from_file = Baseline.load(tmp_path / "b.msgpack")
    assert {n: p.kind for n, p in from_frame.features.items()} == {n: p.kind for n, p in from_file.features.items()}
    assert from_frame.features["income"].mean == pytest.approx(from_file.features["income"].mean)
    assert from_frame.metric == from_file.metric and from_frame.n_rows == 5_000


def test_a_baseline_from_a_frame_gets_the_checks_of_a_file():
    frame = pd.DataFrame(credit.training(2_000, seed=2))
    roles = dict(confidence_column="confidence", prediction_column="prediction", label_column="label")
    with pytest.raises(BuildError, match="--confidence-column column 'conf' is not in the data"):
        build_baseline(frame, model="credit", **{**roles, "confidence_column": "conf"})
    with pytest.raises(BuildError, match="DataFrame: 500 rows, fewer than the 1000"):
        build_baseline(frame.head(500), model="credit", **roles)
    assert build_baseline(frame.head(500), model="credit", min_rows=100, **roles).n_rows == 500
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_baseline(frame, model="credit", prediction_column="prediction", label_column="label")
    assert [str(w.message).split(";")[0] for w in caught if w.category is BuildWarning] == [
        "column 'confidence' looks like the model's confidence"]


def test_nothing_monitored_raises_with_the_reason(served):
    fraud = build_baseline_from_columns("fraud", {"x": [0.0, 1.0] * 600})
    with pytest.raises(NothingMonitored, match=r"12,000 events are for models without a baseline: 'credit' "
                                               r"\(12,000\); baselines loaded: 'fraud'"):
        monitor(served, fraud)
    with pytest.raises(NothingMonitored, match="the input holds no events"):
        monitor(pd.DataFrame({"x": []}), fraud)


def test_without_pandas_the_api_says_what_to_install(monkeypatch):
    baseline = credit.baseline(0, rows=1_000)
    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match="pandas is not installed: pip install pandas"):
        monitor([], baseline)
